"""Deploying safely: status, sql, check, the migration lock, checksums, order,
PostgreSQL's DDL lock_timeout, failing migrations and the command's output.

Every test that touches a database runs on SQLite and on PostgreSQL (the
``db_url`` fixture) unless the feature exists on one backend only. Nothing is
mocked: the commands open real databases, and the concurrency tests start
real processes.
"""

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import (
    LAUNCHER,
    MIGRATIONS,
    MIGRATIONS_DIR,
    STEP_LINE,
    clean_env,
    concurrent_indexes,
    fetch,
    opened,
    postgres_only,
    run_cli,
    sqlite_only,
    sqlite_path,
)

from bitloot_lite import schema
from bitloot_lite.db import is_postgres
from bitloot_lite.errors import EditedMigration, LockTimeout, MigrationFailed, OutOfOrder
from bitloot_lite.locking import migration_lock
from bitloot_lite.migrating import (
    DDL_LOCK_TIMEOUT,
    HISTORY_TABLE,
    check,
    migrate,
    preview,
    rollback,
    status,
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: The newest shipped migration, and how many there are (the extra migrations the tests
#: write are numbered 900, after any shipped one).
NEWEST = MIGRATIONS[-1]
COUNT = len(MIGRATIONS)



pytestmark = pytest.mark.usefixtures("unrelated_cwd")


# --- running the command ------------------------------------------------------------------------


def ok(*args):
    result = run_cli(*args)
    assert result.exit_code == 0, f"{args} exited {result.exit_code}:\n{result.output}"
    return result


def fails(code, *args):
    """Run ``args``; expect exit ``code`` and an 'Error: ...' line on stderr."""
    result = run_cli(*args)
    assert result.exit_code == code, f"{args} exited {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[-1].startswith("Error: "), result.stderr
    return result


def process(*args, timeout=60):
    """Run ``python -m bitloot_lite ARGS`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "bitloot_lite", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=clean_env(),
    )


def steps(output):
    """[(verb, name)] of the 'applied NAME (0.012s)' / 'rolled back NAME (...)' lines."""
    return [match.groups() for match in map(STEP_LINE.match, output.splitlines()) if match]


# --- reading the database ------------------------------------------------------------------------


def is_pg(url):
    return url.startswith(("postgresql:", "postgres:"))


def history_rows(database):
    """Every column of every history row, by id; None when there is no history table."""
    if HISTORY_TABLE not in database.get_tables():
        return None
    return fetch(database, f'SELECT * FROM "{HISTORY_TABLE}" ORDER BY "id"')


def applied(url):
    """The names in the history table, oldest first ([] when there is none)."""
    with opened(url) as database:
        return [row[1] for row in history_rows(database) or []]


def history_counts(url):
    with opened(url) as database:
        return dict(fetch(
            database, f'SELECT "name", count(*) FROM "{HISTORY_TABLE}" GROUP BY "name"'
        ))


def tables(url):
    with opened(url) as database:
        return set(database.get_tables()) - {HISTORY_TABLE}


def enum_types(url):
    with opened(url) as database:
        return [name for (name,) in fetch(
            database,
            "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace "
            "AND typtype = 'e' ORDER BY 1",
        )]


def catalog(database):
    """The raw catalog: what schema.snapshot leaves out (object ids, the history table ...)."""
    if is_postgres(database):
        queries = [
            "SELECT c.oid::bigint, c.relname, c.relkind FROM pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace ORDER BY 2",
            "SELECT t.oid::bigint, t.typname FROM pg_type t "
            "WHERE t.typnamespace = 'public'::regnamespace ORDER BY 2",
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' ORDER BY 1, 2",
        ]
        return [row for sql in queries for row in fetch(database, sql)]
    return (
        fetch(database, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
        + fetch(database, "PRAGMA schema_version")
        + fetch(database, "PRAGMA user_version")
    )


def sqlite_bytes(url):
    """The SQLite file's bytes, once everything committed is checkpointed into it."""
    path = sqlite_path(url)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def full_state(url):
    """Everything a command that must change nothing has to leave as it was."""
    with opened(url) as database:
        snapshot = schema.snapshot(database)
        state = {
            "schema": snapshot,
            "catalog": catalog(database),
            "history_exists": HISTORY_TABLE in database.get_tables(),
            "history": history_rows(database),
            "rows": {
                table: sorted(map(repr, fetch(database, f'SELECT * FROM "{table}"')))
                for table in snapshot["tables"]
            },
        }
    if not is_pg(url):
        state["file"] = sqlite_bytes(url)
    return state


def create_empty(url):
    """Make sure the database exists (a SQLite file is created by its first connection)."""
    with opened(url):
        pass


def insert_order(url, email="buyer@example.com"):
    with opened(url) as database:
        database.execute_sql(
            f'INSERT INTO "orders" ("id", "email") VALUES ({database.param}, {database.param})',
            ("6f1c1d0e-8a53-4a4e-9a47-0c6b8f1d2e3a", email),
        )


def with_password(url, password="hunter2"):
    """``url`` with a password (the test server trusts local connections: it is ignored)."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


# --- migrations folders ---------------------------------------------------------------------------


@pytest.fixture
def migrations_copy(tmp_path, monkeypatch):
    """A copy of the shipped migrations in their place, to edit, remove or add files in:
    a clone whose migrations/ a developer edits ($BITLOOT_SHIPPED_MIGRATIONS_DIR)."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in MIGRATIONS_DIR.glob("0*.py"):
        shutil.copy(path, folder)
    monkeypatch.setenv("BITLOOT_SHIPPED_MIGRATIONS_DIR", str(folder))
    return folder


@pytest.fixture
def user_migrations(tmp_path):
    """An empty folder for a user's own migrations (``--migrations``), run after the shipped."""
    folder = tmp_path / "my_migrations"
    folder.mkdir()
    return folder


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


EXTRA_900 = '''\
"""900_create_extras: a throwaway table, after the real migrations."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "extras" ("id" INTEGER NOT NULL PRIMARY KEY)')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "extras"')
'''

#: Valid DDL and a data change first, then a statement that fails.
HALF_DONE_900 = '''\
"""900_half_done: changes things, then fails."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "half_done" ("id" INTEGER NOT NULL PRIMARY KEY)')
    migrator.sql('ALTER TABLE "orders" ADD COLUMN "halfDone" INTEGER')
    migrator.sql('CREATE INDEX "IDX_half_done" ON "orders" ("email")')
    migrator.sql('DELETE FROM "orders"')
    migrator.sql('INSERT INTO "no_such_table" ("id") VALUES (1)')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "half_done"')
'''

#: Applies fine; its rollback changes things, then fails.
BAD_ROLLBACK_900 = '''\
"""900_bad_rollback: a rollback that changes things, then fails."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "extras" ("id" INTEGER NOT NULL PRIMARY KEY)')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "extras"')
    migrator.sql('DROP TABLE "keys"')
    migrator.sql('SELECT * FROM "no_such_table"')
'''

#: Records the lock_timeout its own statements run with (PostgreSQL).
PROBE_900 = '''\
"""900_probe_lock_timeout: records current_setting('lock_timeout')."""


def migrate(migrator, database, *, fake=False):
    migrator.sql(
        'CREATE TABLE "probe" AS SELECT current_setting(\\'lock_timeout\\') AS "setting"'
    )


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "probe"')
'''


# === 1. status ==================================================================================


def test_status_exits_1_while_anything_is_pending_and_0_when_nothing_is(db_url):
    create_empty(db_url)  # status reads; it does not make a SQLite file
    empty = run_cli("status", "--database", db_url)
    assert empty.exit_code == 1, empty.output
    assert [line.split()[:2] for line in empty.stdout.splitlines()] == [
        ["pending", name] for name in MIGRATIONS
    ]

    ok("migrate", "-q", "--to", "002_create_payments", "--database", db_url)
    partly = run_cli("status", "--database", db_url)
    assert partly.exit_code == 1, partly.output
    lines = partly.stdout.splitlines()
    for line, name in zip(lines[:2], MIGRATIONS[:2], strict=True):
        assert re.fullmatch(  # then its description, its docstring's first line
            rf"applied  {name}  \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC  \S.*", line
        ), line
    assert [line.split("  ")[:2] for line in lines[2:]] == [
        ["pending", name] for name in MIGRATIONS[2:]]

    ok("migrate", "-q", "--database", db_url)
    done = ok("status", "--database", db_url)
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [
        ["applied", name] for name in MIGRATIONS
    ]

    ok("rollback", "-q", "--database", db_url)
    assert run_cli("status", "--database", db_url).exit_code == 1


def test_status_json_lists_every_migration_for_scripts(db_url):
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    ok("migrate", "-q", "--to", "003_create_webhook_logs", "--database", db_url)
    finished = dt.datetime.now(dt.timezone.utc)

    result = run_cli("status", "--json", "--database", db_url)

    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["database"] == db_url
    entries = document["migrations"]
    assert [entry["name"] for entry in entries] == MIGRATIONS
    for entry in entries:
        assert set(entry) >= {"name", "applied", "applied_at", "edited"}
        assert entry["edited"] is False
    for entry in entries[:3]:
        assert entry["applied"] is True
        when = dt.datetime.fromisoformat(entry["applied_at"])
        assert when.utcoffset() == dt.timedelta(0), entry  # UTC, and says so
        assert started - dt.timedelta(seconds=1) <= when <= finished, entry
    for entry in entries[3:]:
        assert entry["applied"] is False
        assert entry["applied_at"] is None

    ok("migrate", "-q", "--database", db_url)
    result = ok("status", "--json", "--database", db_url)
    assert all(entry["applied"] for entry in json.loads(result.stdout)["migrations"])


def test_status_exits_2_on_errors(sqlite_url, tmp_path):
    unreachable = "postgresql://u:hunter2@127.0.0.1:1/x"
    for args in (
        ["--database", unreachable],
        ["--json", "--database", unreachable],
        ["--database", "foo://u:hunter2@host/db"],
        ["--database", sqlite_url, "--migrations", tmp_path / "missing"],
    ):
        result = fails(2, "status", *args)
        assert result.stdout == ""
        assert "hunter2" not in result.output


def test_status_does_not_create_the_history_table(db_url):
    create_empty(db_url)
    before = full_state(db_url)
    assert run_cli("status", "--database", db_url).exit_code == 1
    assert run_cli("status", "--json", "--database", db_url).exit_code == 1
    assert full_state(db_url) == before
    assert before["history_exists"] is False


# === 2. sql =====================================================================================


def blocks(output):
    """{name: (direction, [statement lines])} from `bitloot-lite sql`, in output order."""
    found = {}
    current = None
    for line in output.splitlines():
        header = re.match(r"^-- (migrate|rollback) (\S+)$", line)
        if header:
            current = []
            found[header.group(2)] = (header.group(1), current)
        elif current is not None:
            current.append(line)
    return found


def test_sql_on_an_empty_database_prints_every_migration_and_changes_nothing(db_url):
    create_empty(db_url)
    before = full_state(db_url)

    result = ok("sql", "--database", db_url)

    assert full_state(db_url) == before
    assert before["history_exists"] is False  # ... and sql did not create it either
    out = result.stdout
    assert list(blocks(out)) == MIGRATIONS
    assert all(direction == "migrate" for direction, _ in blocks(out).values())
    assert out.count("BEGIN;") == COUNT and out.count("COMMIT;") == COUNT
    assert out.count(f'INSERT INTO "{HISTORY_TABLE}"') == COUNT
    assert 'CREATE TABLE "orders"' in out
    assert 'CREATE UNIQUE INDEX "IDX_payments_externalId"' in out
    assert 'CREATE TABLE "keys"' in out
    # 006's unique indexes: CONCURRENTLY after its commit on PostgreSQL, plain on SQLite
    concurrently = "CONCURRENTLY " if is_pg(db_url) else ""
    for index, on in (("UQ_orders_kinguinReservationId", '"orders" ("kinguinReservationId")'),
                      ("UQ_keys_storageRef", '"keys" ("storageRef")')):
        assert f'CREATE UNIQUE INDEX {concurrently}"{index}" ON {on}' in out
    assert not re.search(r"^SELECT ", out, re.MULTILINE)  # reads are left out
    if is_pg(db_url):
        assert 'CREATE TYPE "payments_status_enum"' in out
        assert 'CREATE TYPE "orders_status_enum"' in out
        milliseconds = int(DDL_LOCK_TIMEOUT * 1000)
        assert out.count(f"SET LOCAL lock_timeout = {milliseconds};") == COUNT
        assert "_orders_rebuild" not in out
    else:
        assert 'CREATE TABLE "_orders_rebuild"' in out
        assert 'ALTER TABLE "_orders_rebuild" RENAME TO "orders"' in out
        assert "CHK_orders_status" in out
        assert "CREATE TYPE" not in out and "SET LOCAL" not in out

    # What it printed is what migrate then does.
    ok("migrate", "-q", "--database", db_url)
    assert applied(db_url) == MIGRATIONS


def test_sql_of_a_partly_migrated_database_prints_only_what_is_pending(db_url):
    ok("migrate", "-q", "--to", "002_create_payments", "--database", db_url)
    insert_order(db_url)
    before = full_state(db_url)

    everything = ok("sql", "--database", db_url).stdout
    up_to_004 = ok("sql", "--to", "004_orders_status_enum", "--database", db_url).stdout

    assert full_state(db_url) == before
    assert list(blocks(everything)) == MIGRATIONS[2:]
    assert list(blocks(up_to_004)) == MIGRATIONS[2:4]
    enum_block = "\n".join(blocks(everything)["004_orders_status_enum"][1])
    if is_pg(db_url):
        assert 'CREATE TYPE "orders_status_enum"' in enum_block
        assert "SET LOCAL lock_timeout" in enum_block
    else:
        assert "_orders_rebuild" in enum_block
    assert "payments_status_enum" not in everything  # 002 is applied: not again

    ok("migrate", "-q", "--database", db_url)
    assert history_counts(db_url) == dict.fromkeys(MIGRATIONS, 1)


#: What each of the newest migrations' rollback prints (a part of it), by backend.
ROLLBACK_SQL = {
    "006_unique_reservation_storage_ref": {
        "both": ['DROP INDEX IF EXISTS "UQ_orders_kinguinReservationId"',
                 'DROP INDEX IF EXISTS "UQ_keys_storageRef"']},
    "005_add_keys_reservation": {
        "both": ['DROP TABLE "keys"', 'ALTER TABLE "orders" DROP COLUMN "kinguinReservationId"']},
    "004_orders_status_enum": {
        "postgres": ['DROP TYPE "orders_status_enum"'],
        "sqlite": ['CREATE TABLE "_orders_rebuild"']},
}


@pytest.mark.parametrize("count", [1, 2, 3])
def test_sql_rollback_prints_the_rollback_and_changes_nothing(db_url, count):
    ok("migrate", "-q", "--database", db_url)
    insert_order(db_url)
    before = full_state(db_url)

    result = ok("sql", "--rollback", count, "--database", db_url)

    assert full_state(db_url) == before
    found = blocks(result.stdout)
    assert list(found) == MIGRATIONS[::-1][:count]  # newest first
    assert all(direction == "rollback" for direction, _ in found.values())
    out = result.stdout
    assert out.count(f'DELETE FROM "{HISTORY_TABLE}"') == count
    backend = "postgres" if is_pg(db_url) else "sqlite"
    for name, (_direction, lines) in found.items():
        block = "\n".join(lines)
        wanted = ROLLBACK_SQL[name]
        for statement in wanted.get("both", []) + wanted.get(backend, []):
            assert statement in block, (name, statement, block)
    if is_pg(db_url):
        assert out.count("SET LOCAL lock_timeout") == count
    assert "payments" not in out


def test_sql_of_an_up_to_date_database_says_so(db_url):
    ok("migrate", "-q", "--database", db_url)
    before = full_state(db_url)
    result = ok("sql", "--database", db_url)
    assert result.stdout.startswith("-- nothing to migrate")
    assert full_state(db_url) == before


def test_sql_rollback_of_more_than_applied_is_an_error_and_changes_nothing(db_url):
    ok("migrate", "-q", "--to", "001_init_orders", "--database", db_url)
    before = full_state(db_url)
    result = fails(1, "sql", "--rollback", 2, "--database", db_url)
    assert "cannot roll back 2" in result.stderr
    assert full_state(db_url) == before


def test_preview_returns_each_migrations_statements(db_url, database):
    migrate(database, to="003_create_webhook_logs")
    before = full_state(db_url)

    steps_ = preview(database)
    back = preview(database, rollback_steps=1)

    # On PostgreSQL a migration's concurrent index builds (005's, 006's) follow it.
    expected = []
    for name in MIGRATIONS[3:]:
        expected.append((name, "migrate"))
        if is_postgres(database) and concurrent_indexes(name):
            expected.append((name, "after commit"))
    if is_postgres(database):
        assert ("005_add_keys_reservation", "after commit") in expected
    assert [(name, direction) for name, direction, _ in steps_] == expected
    assert [(name, direction) for name, direction, _ in back] == [
        ("003_create_webhook_logs", "rollback"),
    ]
    for _name, _direction, statements in steps_ + back:
        assert statements and all(isinstance(sql, str) for sql, _params in statements)
    assert full_state(db_url) == before


@postgres_only
def test_sql_leaves_the_history_tables_id_sequence_as_it_was(db_url):
    """The issue says "exactly as it was, history table included": nextval() is not
    transactional, so previewing the history INSERTs must not leave the id sequence advanced."""
    ok("migrate", "-q", "--to", "002_create_payments", "--database", db_url)
    sequence = f'SELECT last_value, is_called FROM "{HISTORY_TABLE}_id_seq"'
    with opened(db_url) as database:
        before = fetch(database, sequence)

    ok("sql", "--database", db_url)
    ok("sql", "--rollback", 1, "--database", db_url)

    with opened(db_url) as database:
        assert fetch(database, sequence) == before
    ok("migrate", "-q", "--database", db_url)
    with opened(db_url) as database:
        ids = [row[0] for row in fetch(database, f'SELECT "id" FROM "{HISTORY_TABLE}"')]
    assert sorted(ids) == list(range(1, COUNT + 1))


@sqlite_only
def test_sql_on_sqlite_shows_the_foreign_keys_pragmas_migrate_runs(db_url):
    """migrate turns foreign keys off before each migration's BEGIN (else 004's rebuild
    would cascade-delete every child row when it drops orders): the exact SQL says so."""
    ok("migrate", "-q", "--to", "003_create_webhook_logs", "--database", db_url)

    out = ok("sql", "--database", db_url).stdout

    off = re.search(r"^PRAGMA foreign_keys\s*=\s*(OFF|0|false);?$", out, re.I | re.M)
    assert off, out
    begin = out.index("BEGIN;", out.index("-- migrate 004_orders_status_enum"))
    assert off.start() < begin
    assert off.start() < out.index('DROP TABLE "orders"')


# === 3. check ===================================================================================


def test_check_passes_on_a_migrated_database(db_url):
    ok("migrate", "-q", "--database", db_url)
    result = ok("check", "--database", db_url)
    assert "matches the schema" in result.stdout
    assert result.stderr == ""
    with opened(db_url) as database:
        assert check(database) == ([], [])


def test_check_catches_a_dropped_index_and_an_added_column(db_url):
    ok("migrate", "-q", "--database", db_url)
    with opened(db_url) as database:
        database.execute_sql('DROP INDEX "IDX_payments_status"')

    dropped = run_cli("check", "--database", db_url)

    assert dropped.exit_code == 1, dropped.output
    assert dropped.stdout.splitlines() == ["index IDX_payments_status missing on payments"]
    assert "1 difference(s)" in dropped.stderr

    with opened(db_url) as database:
        database.execute_sql('ALTER TABLE "orders" ADD COLUMN "extra" TEXT')

    both = run_cli("check", "--database", db_url)

    assert both.exit_code == 1, both.output
    lines = both.stdout.splitlines()
    assert "index IDX_payments_status missing on payments" in lines
    assert any(re.search(r"\borders\.extra\b.*not expected", line) for line in lines), lines
    assert all("extra" in line or "IDX_payments_status" in line for line in lines), lines

    with opened(db_url) as database:
        database.execute_sql('CREATE INDEX "IDX_payments_status" ON "payments" ("status")')
        database.execute_sql('ALTER TABLE "orders" DROP COLUMN "extra"')
    ok("check", "--database", db_url)


def test_check_catches_tables_columns_types_nullability_indexes_and_constraints(db_url):
    ok("migrate", "-q", "--database", db_url)
    changes = {
        'DROP TABLE "keys"': r"^table keys missing$",
        'CREATE INDEX "IDX_stray" ON "orders" ("email")':
            r"^index IDX_stray on orders not expected$",
        'CREATE TABLE "stray" ("id" INTEGER)': r"^table stray not expected$",
    }
    if is_pg(db_url):
        changes.update({
            'ALTER TABLE "webhook_logs" DROP CONSTRAINT "UQ_webhook_idempotency"':
                r"UQ_webhook_idempotency missing on webhook_logs$",
            'ALTER TABLE "payments" ALTER COLUMN "provider" DROP NOT NULL':
                r"^payments\.provider: nullable, expected NOT NULL$",
            'ALTER TABLE "orders" ALTER COLUMN "email" TYPE text':
                r"^orders\.email: type text, expected character varying\(320\)$",
            'ALTER TABLE "payments" DROP CONSTRAINT "FK_af929a5f2a400fdb6913b4967e1"':
                r"FK_af929a5f2a400fdb6913b4967e1 missing on payments$",
        })
    else:
        changes['DROP INDEX "UQ_webhook_idempotency"'] = (
            r"UQ_webhook_idempotency missing on webhook_logs$"
        )
    with opened(db_url) as database:
        for statement in changes:
            database.execute_sql(statement)

    result = run_cli("check", "--database", db_url)

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    for expected in changes.values():
        assert any(re.search(expected, line) for line in lines), (expected, lines)
    assert re.search(r"^\d+ difference\(s\) on ", result.stderr, re.M), result.stderr


def test_check_reports_pending_migrations(db_url):
    ok("migrate", "-q", "--to", "003_create_webhook_logs", "--database", db_url)

    result = run_cli("check", "--database", db_url)

    assert result.exit_code == 1, result.output
    # The three applied ones are exactly as they should be: only the pending ones differ.
    assert result.stdout.splitlines() == [f"migration {name} pending" for name in MIGRATIONS[3:]]


def test_check_exits_2_on_errors(sqlite_url, tmp_path):
    for args in (
        ["--database", "postgresql://u:hunter2@127.0.0.1:1/x"],
        ["--database", "not-a-url"],
        ["--database", sqlite_url, "--migrations", tmp_path / "missing"],
    ):
        result = fails(2, "check", *args)
        assert result.stdout == ""
        assert "hunter2" not in result.output


# === 4. concurrent deploys ======================================================================


def start_together(count, args, folder):
    """Start ``count`` real processes running the CLI with ``args``, released at once."""
    barrier = folder / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(barrier), *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        )
        for _ in range(count)
    ]
    deadline = time.monotonic() + 60
    while len(list(folder.glob("go.ready.*"))) < count:
        assert time.monotonic() < deadline, "the processes never became ready"
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.01)
    barrier.touch()
    results = []
    for p in processes:
        out, err = p.communicate(timeout=120)
        results.append((p.returncode, out, err))
    return results


def test_concurrent_migrate_processes_all_succeed_and_apply_each_migration_once(
    db_url, tmp_path
):
    create_empty(db_url)
    folder = tmp_path / "barrier"
    folder.mkdir()

    results = start_together(6, ["migrate", "--database", db_url], folder)

    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out}\n{err}"
    assert history_counts(db_url) == dict.fromkeys(MIGRATIONS, 1)
    appliers = [i for i, (_code, out, _err) in enumerate(results) if steps(out)]
    assert len(appliers) == 1, [out for _code, out, _err in results]
    assert steps(results[appliers[0]][1]) == [("applied", name) for name in MIGRATIONS]
    for i, (_code, out, err) in enumerate(results):
        if i != appliers[0]:
            assert out.strip() == f"nothing to migrate: {db_url} is up to date", out
        # Waiting for the lock is reported, and that is all that goes to stderr.
        for line in err.splitlines():
            assert line.startswith("waiting for the migration lock"), err
    ok("check", "--database", db_url)


def test_concurrent_migrate_processes_on_a_partly_migrated_database(db_url, tmp_path):
    ok("migrate", "-q", "--to", "002_create_payments", "--database", db_url)
    insert_order(db_url)
    folder = tmp_path / "barrier"
    folder.mkdir()

    results = start_together(4, ["migrate", "--database", db_url], folder)

    assert [code for code, _out, _err in results] == [0] * 4, results
    assert history_counts(db_url) == dict.fromkeys(MIGRATIONS, 1)
    applied_lines = [step for _code, out, _err in results for step in steps(out)]
    assert sorted(applied_lines) == [("applied", name) for name in MIGRATIONS[2:]]
    with opened(db_url) as database:
        assert fetch(database, 'SELECT count(*) FROM "orders"') == [(1,)]


def holder_pid(database, url):
    """The pid the lock's holder is reported by: the backend's on PostgreSQL, ours on SQLite."""
    if is_pg(url):
        return fetch(database, "SELECT pg_backend_pid()")[0][0]
    return os.getpid()


def test_a_held_lock_times_out_with_a_clear_error_and_applies_nothing(db_url):
    create_empty(db_url)
    with opened(db_url) as holder, migration_lock(holder):
        pid = holder_pid(holder, db_url)
        started = time.monotonic()
        result = process("migrate", "--lock-timeout", 1, "--database", db_url)
        elapsed = time.monotonic() - started
        assert applied(db_url) == []
        assert tables(db_url) == set()

    assert result.returncode == 1, result.stderr
    assert 1 <= elapsed < 15
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("waiting for the migration lock"), result.stderr
    assert f"pid {pid}" in lines[0]
    assert lines[-1].startswith("Error: "), result.stderr
    assert "migration lock" in lines[-1]
    assert re.search(r"\b1s\b", lines[-1]), lines[-1]
    assert "Traceback" not in result.stderr

    # Released: the next deploy migrates.
    after = process("migrate", "--lock-timeout", 1, "--database", db_url)
    assert after.returncode == 0, after.stderr
    assert steps(after.stdout) == [("applied", name) for name in MIGRATIONS]
    assert after.stderr == ""


def test_a_waiting_migrate_goes_on_once_the_lock_is_released(db_url, tmp_path):
    create_empty(db_url)
    stderr_path = tmp_path / "stderr"
    with opened(db_url) as holder:
        with migration_lock(holder), open(stderr_path, "w") as stderr:
            waiter = subprocess.Popen(
                [sys.executable, "-m", "bitloot_lite", "migrate", "--database", db_url],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=clean_env(),
            )
            deadline = time.monotonic() + 30
            while "waiting for the migration lock" not in stderr_path.read_text():
                assert waiter.poll() is None, waiter.communicate()
                assert time.monotonic() < deadline, "the waiting was never reported"
                time.sleep(0.05)
            time.sleep(0.3)
            assert waiter.poll() is None  # still waiting, having applied nothing
            assert applied(db_url) == []
        out, _ = waiter.communicate(timeout=60)

    assert waiter.returncode == 0, stderr_path.read_text()
    assert steps(out) == [("applied", name) for name in MIGRATIONS]
    assert history_counts(db_url) == dict.fromkeys(MIGRATIONS, 1)


def test_the_lock_times_out_in_the_library_too(db_url, database):
    waits = []
    with opened(db_url) as holder, migration_lock(holder):
        pid = holder_pid(holder, db_url)
        for call in (
            lambda: migrate(database, lock_timeout=0.3, on_wait=waits.append),
            lambda: rollback(database, lock_timeout=0.3, on_wait=waits.append),
        ):
            with pytest.raises(LockTimeout) as info:
                call()
            assert info.value.seconds == 0.3
            assert f"pid {pid}" in info.value.holder
            assert "migration lock" in str(info.value)
    assert len(waits) == 2 and all(f"pid {pid}" in holder for holder in waits)
    assert applied(db_url) == []
    assert migrate(database, lock_timeout=0.3) == MIGRATIONS


@pytest.fixture
def other_pg_url(pg_admin, pg_url):
    """A second throwaway database on the same server as ``pg_url``."""
    name = f"{urlsplit(pg_url).path[1:]}_other"
    pg_admin.execute_sql(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(pg_url)._replace(path=f"/{name}"))
    pg_admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@postgres_only
def test_the_lock_and_its_holder_belong_to_one_database(db_url, other_pg_url):
    """Advisory locks are per database: a deploy of another database on the same server
    neither blocks this one nor is reported as holding its lock."""
    from bitloot_lite.locking import _PostgresLock  # who holds it, without waiting

    with opened(other_pg_url) as elsewhere, migration_lock(elsewhere, timeout=0):
        with opened(db_url) as database:
            assert _PostgresLock(database).holder() is None
            assert migrate(database, lock_timeout=0.5) == MIGRATIONS
        with opened(db_url) as holder, migration_lock(holder, timeout=0):
            pid = holder_pid(holder, db_url)
            with opened(db_url) as database, pytest.raises(LockTimeout) as info:
                rollback(database, lock_timeout=0.2)
            assert info.value.holder.startswith(f"pid {pid}"), info.value.holder
    assert applied(db_url) == MIGRATIONS


@sqlite_only
def test_the_sqlite_lock_is_a_file_beside_the_database(db_url):
    create_empty(db_url)
    ok("migrate", "-q", "--database", db_url)
    assert Path(f"{sqlite_path(db_url)}.migrate-lock").exists()


# === 5. checksums ===============================================================================


def test_the_history_records_each_files_sha256(db_url, migrations_copy):
    ok("migrate", "-q", "--database", db_url)
    with opened(db_url) as database:
        rows = fetch(database, f'SELECT "name", "checksum" FROM "{HISTORY_TABLE}" ORDER BY "id"')
    assert [name for name, _ in rows] == MIGRATIONS
    for name, checksum in rows:
        assert SHA256.match(checksum), checksum
        assert checksum == sha256_of(migrations_copy / f"{name}.py")


def test_an_applied_migration_edited_since_is_caught(db_url, migrations_copy):
    where = ["--database", db_url]
    ok("migrate", "-q", "--to", "003_create_webhook_logs", *where)
    edited = migrations_copy / "002_create_payments.py"
    original = edited.read_bytes()
    with edited.open("a") as handle:
        handle.write("# a harmless-looking comment\n")
    before = full_state(db_url)

    status_result = fails(2, "status", *where)
    json_result = fails(2, "status", "--json", *where)
    migrate_result = fails(1, "migrate", *where)
    rollback_result = fails(1, "rollback", *where)

    for result in (status_result, json_result, migrate_result, rollback_result):
        message = result.stderr.splitlines()[-1]
        assert "002_create_payments" in message
        assert "001_init_orders" not in message and "003_create_webhook_logs" not in message
        assert "--allow-edited" in message
        assert result.stdout == ""
    assert full_state(db_url) == before  # nothing applied, nothing undone

    # The library says which one.
    with opened(db_url) as database:
        for call in (
            lambda: status(database),
            lambda: migrate(database),
            lambda: rollback(database),
        ):
            with pytest.raises(EditedMigration) as info:
                call()
            assert info.value.names == ["002_create_payments"]

    # Knowingly: status lists it, flagged; migrate and rollback go on.
    flagged = run_cli("status", "--allow-edited", *where)
    assert flagged.exit_code == 1, flagged.output
    assert [line for line in flagged.stdout.splitlines() if "edited" in line] == [
        line for line in flagged.stdout.splitlines() if "002_create_payments" in line
    ]
    document = json.loads(run_cli("status", "--json", "--allow-edited", *where).stdout)
    assert [entry["name"] for entry in document["migrations"] if entry["edited"]] == [
        "002_create_payments"
    ]
    assert steps(ok("migrate", "--allow-edited", *where).stdout) == [
        ("applied", name) for name in MIGRATIONS[3:]
    ]
    assert steps(ok("rollback", "--allow-edited", *where).stdout) == [("rolled back", NEWEST)]
    assert applied(db_url) == MIGRATIONS[:-1]

    # Restored: nothing to allow any more.
    edited.write_bytes(original)
    assert run_cli("status", *where).exit_code == 1
    ok("migrate", "-q", *where)
    ok("status", *where)


def test_editing_a_pending_migration_is_fine(db_url, migrations_copy):
    where = ["--database", db_url]
    ok("migrate", "-q", "--to", "003_create_webhook_logs", *where)
    pending_file = migrations_copy / "004_orders_status_enum.py"
    with pending_file.open("a") as handle:
        handle.write("# reviewed\n")

    assert run_cli("status", *where).exit_code == 1
    ok("migrate", "-q", *where)
    ok("status", *where)
    with opened(db_url) as database:
        (checksum,) = fetch(
            database,
            f'SELECT "checksum" FROM "{HISTORY_TABLE}" WHERE "name" = {database.param}',
            ("004_orders_status_enum",),
        )[0]
    assert checksum == sha256_of(pending_file)  # the file as applied


# === 6. order ===================================================================================


@pytest.mark.parametrize("with_later", [False, True], ids=["alone", "with-a-later-900"])
def test_a_pending_migration_older_than_the_newest_applied_is_refused(
    db_url, migrations_copy, with_later
):
    where = ["--database", db_url]
    late = migrations_copy / "003_create_webhook_logs.py"
    late_text = late.read_bytes()
    late.unlink()
    ok("migrate", "-q", *where)
    assert applied(db_url) == [name for name in MIGRATIONS if name != MIGRATIONS[2]]
    late.write_bytes(late_text)
    if with_later:
        (migrations_copy / "900_create_extras.py").write_text(EXTRA_900)
    before = full_state(db_url)

    result = fails(1, "migrate", *where)

    assert "003_create_webhook_logs" in result.stderr
    assert "--allow-out-of-order" in result.stderr
    assert result.stdout == ""
    assert full_state(db_url) == before  # refused before applying anything (900 included)
    assert "extras" not in tables(db_url)
    with opened(db_url) as database, pytest.raises(OutOfOrder) as info:
        migrate(database)
    assert info.value.names == ["003_create_webhook_logs"]
    assert info.value.newest == NEWEST

    result = ok("migrate", "--allow-out-of-order", *where)

    expected = ["003_create_webhook_logs"] + (["900_create_extras"] if with_later else [])
    assert steps(result.stdout) == [("applied", name) for name in expected]
    assert sorted(applied(db_url)) == sorted(MIGRATIONS + expected[1:])
    assert all(count == 1 for count in history_counts(db_url).values())
    if not with_later:
        # Applied late, 003 still makes exactly the documented schema.
        ok("check", "--database", db_url)
        ok("status", "--database", db_url)


def test_status_lists_an_out_of_order_migration_as_pending(db_url, migrations_copy):
    where = ["--database", db_url]
    late = migrations_copy / "003_create_webhook_logs.py"
    late_text = late.read_bytes()
    late.unlink()
    ok("migrate", "-q", *where)
    late.write_bytes(late_text)

    result = run_cli("status", *where)

    assert result.exit_code == 1, result.output
    assert [line for line in result.stdout.splitlines()
            if line.startswith("pending  ")] == [
        "pending  003_create_webhook_logs  the webhook_logs table."]


# === 8. PostgreSQL: DDL lock_timeout; a failing migration changes nothing ========================


@contextlib.contextmanager
def reader_of(url, table):
    """Another session in a transaction that holds ACCESS SHARE on ``table``, like a
    long-running query of the application."""
    with opened(url) as other, other.atomic():
        other.execute_sql(f'LOCK TABLE "{table}" IN ACCESS SHARE MODE')
        yield other


@postgres_only
def test_ddl_gives_up_after_the_lock_timeout_and_changes_nothing(db_url, database):
    migrate(database, to="003_create_webhook_logs")
    insert_order(db_url)
    before = full_state(db_url)

    with reader_of(db_url, "orders"):
        started = time.monotonic()
        with pytest.raises(MigrationFailed) as info:
            migrate(database, ddl_lock_timeout=0.5)
        elapsed = time.monotonic() - started
        after = full_state(db_url)

    assert 0.5 <= elapsed < 4
    assert info.value.name == "004_orders_status_enum"
    assert info.value.direction == "migrate"
    assert "004_orders_status_enum" in str(info.value)
    assert "lock timeout" in str(info.value.cause)
    assert after == before
    assert applied(db_url) == MIGRATIONS[:3]
    assert "orders_status_enum" not in enum_types(db_url)
    # The session is left usable, without a lingering lock_timeout.
    assert fetch(database, "SHOW lock_timeout") == [("0",)]

    assert migrate(database) == MIGRATIONS[3:]
    ok("check", "--database", db_url)


@postgres_only
def test_cli_ddl_lock_timeout_fails_fast_naming_the_migration(db_url):
    ok("migrate", "-q", "--to", "004_orders_status_enum", "--database", db_url)
    before = full_state(db_url)

    with reader_of(db_url, "orders"):
        started = time.monotonic()
        result = fails(1, "migrate", "--ddl-lock-timeout", 0.5, "--database", db_url)
        elapsed = time.monotonic() - started

    assert elapsed < 4
    message = result.stderr.splitlines()[-1]
    assert "005_add_keys_reservation" in message
    assert "lock timeout" in message
    assert result.stdout == ""
    assert full_state(db_url) == before
    ok("migrate", "-q", "--database", db_url)
    assert applied(db_url) == MIGRATIONS


@postgres_only
@pytest.mark.parametrize("newest", ["005_add_keys_reservation",
                                    "006_unique_reservation_storage_ref"])
def test_a_rollback_gives_up_after_the_lock_timeout_too(db_url, database, newest):
    """005's rollback drops keys, 006's drops keys' unique index: both wait for a reader."""
    migrate(database, to=newest)
    before = full_state(db_url)

    with reader_of(db_url, "keys"), pytest.raises(MigrationFailed) as info:
        rollback(database, ddl_lock_timeout=0.5)

    assert info.value.name == newest
    assert info.value.direction == "rollback"
    assert "lock timeout" in str(info.value.cause)
    assert full_state(db_url) == before


@postgres_only
def test_migrations_run_with_the_configured_lock_timeout(db_url, user_migrations):
    assert 1 <= DDL_LOCK_TIMEOUT <= 30  # "a few seconds"
    (user_migrations / "900_probe_lock_timeout.py").write_text(PROBE_900)
    where = ["--migrations", user_migrations, "--database", db_url]

    def probed():
        with opened(db_url) as database:
            return fetch(database, 'SELECT "setting" FROM "probe"')[0][0]

    ok("migrate", "-q", *where)
    assert probed() == f"{int(DDL_LOCK_TIMEOUT * 1000)}ms".replace("000ms", "s")
    ok("rollback", "-q", *where)
    ok("migrate", "-q", "--ddl-lock-timeout", "0.5", *where)
    assert probed() == "500ms"


def test_a_migration_that_fails_midway_leaves_everything_as_it_was(db_url, user_migrations):
    where = ["--migrations", user_migrations, "--database", db_url]
    ok("migrate", "-q", *where)
    insert_order(db_url)
    (user_migrations / "900_half_done.py").write_text(HALF_DONE_900)
    before = full_state(db_url)

    result = fails(1, "migrate", *where)

    message = result.stderr.splitlines()[-1]
    assert "900_half_done" in message
    assert "failed" in message and "undone" in message
    assert "no_such_table" in message  # the cause
    assert full_state(db_url) == before
    assert "half_done" not in tables(db_url)
    assert applied(db_url) == MIGRATIONS

    with opened(db_url) as database, pytest.raises(MigrationFailed) as info:
        migrate(database, migrations_dir=user_migrations)
    assert info.value.name == "900_half_done"
    assert info.value.direction == "migrate"
    assert full_state(db_url) == before
    ok("check", "--database", db_url)


def test_a_migration_that_fails_after_others_keeps_those_others(db_url, user_migrations):
    """Each migration is its own transaction: 004 and the shipped ones after it stay
    applied when 900_half_done fails."""
    where = ["--migrations", user_migrations, "--database", db_url]
    ok("migrate", "-q", "--to", "003_create_webhook_logs", *where)
    (user_migrations / "900_half_done.py").write_text(HALF_DONE_900)

    result = fails(1, "migrate", *where)

    assert steps(result.stdout) == [("applied", name) for name in MIGRATIONS[3:]]
    assert "900_half_done" in result.stderr.splitlines()[-1]
    assert applied(db_url) == MIGRATIONS
    ok("check", "--database", db_url)


def test_a_rollback_that_fails_midway_leaves_everything_as_it_was(db_url, user_migrations):
    where = ["--migrations", user_migrations, "--database", db_url]
    (user_migrations / "900_bad_rollback.py").write_text(BAD_ROLLBACK_900)
    ok("migrate", "-q", *where)
    before = full_state(db_url)

    result = fails(1, "rollback", *where)

    message = result.stderr.splitlines()[-1]
    assert "900_bad_rollback" in message and "rollback" in message
    assert full_state(db_url) == before
    assert {"extras", "keys"} <= tables(db_url)
    assert applied(db_url) == [*MIGRATIONS, "900_bad_rollback"]


# === 9. output ==================================================================================


def test_migrate_prints_a_line_per_migration_with_its_duration_then_a_summary(
    db_url, backend
):
    result = ok("migrate", "--database", db_url)

    lines = result.stdout.splitlines()
    # On PostgreSQL a migration's indexes built after its commit (005's on orders, 006's
    # unique ones) have a line each, right after it.
    built = {name: concurrent_indexes(name) if backend == "postgres" else []
             for name in MIGRATIONS}
    assert len(lines) == COUNT + sum(map(len, built.values())) + 1, lines
    assert steps("\n".join(lines)) == [("applied", name) for name in MIGRATIONS]
    at = 0
    for name in MIGRATIONS:
        assert STEP_LINE.match(lines[at]).groups() == ("applied", name), lines[at]
        for index in built[name]:
            at += 1
            assert re.fullmatch(rf"built index {name}: {index} \(\d+\.\d{{3}}s\)",
                                lines[at]), lines[at]
        at += 1
    if backend == "postgres":
        assert "built index 005_add_keys_reservation: IDX_orders_kinguinReservationId (" in (
            result.stdout)
    assert re.fullmatch(
        rf"{COUNT} migration\(s\) applied to {re.escape(db_url)} in \d+\.\d{{3}}s", lines[-1]
    ), lines[-1]
    assert result.stderr == ""

    again = ok("migrate", "--database", db_url)
    assert again.stdout.splitlines() == [f"nothing to migrate: {db_url} is up to date"]


def test_rollback_prints_a_line_per_migration_with_its_duration_then_a_summary(db_url):
    ok("migrate", "-q", "--database", db_url)

    result = ok("rollback", "--steps", 2, "--database", db_url)

    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    assert steps("\n".join(lines[:2])) == [
        ("rolled back", MIGRATIONS[-1]), ("rolled back", MIGRATIONS[-2]),
    ]
    assert re.fullmatch(r"\(\d+\.\d{3}s\)", lines[0].split()[-1])
    assert lines[2] == f"2 migration(s) rolled back on {db_url}"


def test_quiet_prints_nothing_on_success(db_url):
    for args in (
        ["migrate", "-q", "--to", "002_create_payments"],
        ["migrate", "-q"],
        ["migrate", "-q"],  # up to date
        ["rollback", "-q"],
        ["rollback", "-q", "--steps", "2"],
        ["rollback", "-q", "--to", "001_init_orders"],
        ["migrate", "-q", "--lock-timeout", "5"],
    ):
        result = ok(*args, "--database", db_url)
        assert result.stdout == "", (args, result.stdout)
        assert result.stderr == "", (args, result.stderr)
    assert applied(db_url) == MIGRATIONS

    # Tables made outside bitloot-lite: baseline records them, quietly.
    with opened(db_url) as database:
        database.execute_sql(f'DROP TABLE "{HISTORY_TABLE}"')
    result = ok("baseline", "-q", "--to", NEWEST, "--database", db_url)
    assert result.stdout == "" and result.stderr == ""
    assert applied(db_url) == MIGRATIONS


def test_quiet_still_reports_errors(db_url):
    ok("migrate", "-q", "--to", "001_init_orders", "--database", db_url)
    result = fails(1, "rollback", "-q", "--steps", "2", "--database", db_url)
    assert result.stdout == ""


def test_baseline_prints_each_migration_recorded_then_a_summary(db_url):
    ok("migrate", "-q", "--database", db_url)
    with opened(db_url) as database:
        database.execute_sql(f'DROP TABLE "{HISTORY_TABLE}"')

    result = ok("baseline", "--to", NEWEST, "--database", db_url)

    lines = result.stdout.splitlines()
    assert len(lines) == COUNT + 1, lines
    assert all(name in line for name, line in zip(MIGRATIONS, lines, strict=False))
    assert lines[COUNT] == f"{COUNT} migration(s) recorded as applied on {db_url}"


def _password_urls(url):
    plain = with_password(url)
    # playhouse.db_url passes query parameters to the driver: password= is a password too.
    query = urlunsplit(urlsplit(url)._replace(query="password=hunter2"))
    return {"userinfo": plain, "query": query}


@postgres_only
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_the_password_is_never_printed_nor_logged(db_url, user_migrations, form):
    url = _password_urls(db_url)[form]
    outputs = []

    def command(*args, code=0):
        result = run_cli(*args, "--database", url)
        assert result.exit_code == code, result.output
        outputs.append(result.output + result.stdout + result.stderr)
        return result

    command("status", code=1)
    command("migrate", "--to", "001_init_orders")
    verbose = ["-v", "-v"]
    command("status", *verbose, code=1)
    command("status", "--json", *verbose, code=1)
    command("sql", *verbose)
    command("migrate", *verbose, "--to", "003_create_webhook_logs")
    command("check", *verbose, code=1)
    command("migrate", *verbose)
    command("check", *verbose)
    command("sql", "--rollback", "2", *verbose)
    command("rollback", *verbose, "--steps", str(COUNT))
    command("rollback", *verbose, code=1)  # nothing to roll back: an error
    command("migrate", *verbose, "--to", "no_such_migration", code=1)
    with opened(db_url) as holder, migration_lock(holder):
        command("migrate", "-v", "-v", "--lock-timeout", "0.2", code=1)
    with open(user_migrations / "900_half_done.py", "w") as handle:
        handle.write(HALF_DONE_900)
    command("migrate", "-v", "-v", "--migrations", user_migrations, code=1)

    leaks = [text for text in outputs if "hunter2" in text]
    assert leaks == [], leaks[0][:2000]

    # And from a real process, whose log handler is the one a deploy sees.
    done = process("migrate", "-v", "-v", "--database", url)
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout + done.stderr
