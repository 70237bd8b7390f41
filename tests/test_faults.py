"""Faults: a migrate killed at any point, the PostgreSQL server restarted under a live
connection, a SQLite database locked by another writer, and bad input at every public
entry point.

Nothing is mocked. Kills are real SIGKILLs of real ``python -m bitloot_lite migrate``
processes; the restarts restart a real server, a private one the test starts for itself
(tests/servers.py), never the shared one.
"""

import contextlib
import datetime as dt
import hashlib
import math
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import conftest
import peewee as pw
import pytest
import servers
from conftest import (
    MIGRATIONS,
    MIGRATIONS_DIR,
    clean_env,
    concurrent_indexes,
    fetch,
    opened,
    postgres_only,
    run_cli,
    sqlite_only,
    sqlite_path,
)

import bitloot_lite
from bitloot_lite import (
    BitlootError,
    ConfigurationError,
    DatabaseBusy,
    DatabaseUnavailable,
    InvalidDatabaseURL,
    InvalidPaymentTransition,
    InvalidTransition,
    KeysMissing,
    MigrationError,
    MigrationFailed,
    MigrationsNotFound,
    NotFound,
    NothingToRollback,
    Order,
    OrderNotPaid,
    PaymentConflict,
    ReservationConflict,
    StorageError,
    TooManyKeys,
    UnknownMigration,
    ValidationError,
    migrating,
    schema,
    target,
)
from bitloot_lite.adopting import recorded_history
from bitloot_lite.db import open_database
from bitloot_lite.locking import migration_lock
from bitloot_lite.schema import HISTORY_TABLE

RESERVATION_INDEX = "IDX_orders_kinguinReservationId"


#: The shipped migrations that build indexes after their commit (005's on orders, 006's
#: unique ones), each with those indexes in build order.
BUILDS_AFTER_COMMIT = {name: concurrent_indexes(name) for name in MIGRATIONS
                       if concurrent_indexes(name)}

#: Rows seeded into orders and order_items before the kills (20k: migrations 004 and 005
#: take a noticeable share of a migrate, so that timed kills land inside them too).
SEEDED = 20_000
#: Bound on every wait for a process or the server, in seconds.
WAIT = 60



pytestmark = pytest.mark.usefixtures("unrelated_cwd")


# --------------------------------------------------------------------------- helpers


def start_migrate(url, migrations=None, **env):
    """``python -m bitloot_lite migrate`` as a real process, output piped."""
    if migrations:  # an edited copy of the shipped migrations, in their place
        env["BITLOOT_SHIPPED_MIGRATIONS_DIR"] = str(migrations)
    return subprocess.Popen(
        [sys.executable, "-m", "bitloot_lite", "migrate", "--database", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(**env),
    )


def migrate_process(url, migrations=None):
    process = start_migrate(url, migrations)
    out, err = process.communicate(timeout=WAIT)
    return process.returncode, out, err


def kill(process):
    """SIGKILL ``process`` (if still running) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=WAIT)


def wait_for(condition, what, timeout=WAIT, process=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the process exited {process.returncode} before {what}:\n{out}{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def all_rows(database):
    """Every row of every table (history included), in a stable order."""
    return {
        table: sorted(map(repr, fetch(database, f'SELECT * FROM "{table}"')))
        for table in sorted(database.get_tables())
    }


def state(database):
    """Everything a refused call must leave as it was: the schema and every row."""
    return {"schema": schema.snapshot(database), "rows": all_rows(database)}


def seeded_digest(database):
    """A digest of the seeded rows, in a form every migration step keeps readable."""
    digest = hashlib.sha256()
    for sql in ('SELECT CAST("id" AS TEXT), "email", CAST("status" AS TEXT), '
                'CAST("total" AS TEXT) FROM "orders" ORDER BY 1',
                'SELECT CAST("id" AS TEXT), CAST("orderId" AS TEXT), "productId", "quantity" '
                'FROM "order_items" ORDER BY 1'):
        rows = fetch(database, sql)
        digest.update(repr((len(rows), rows)).encode())
    return digest.hexdigest()


def invalid_indexes(database):
    """PostgreSQL indexes of schema public that are not (yet) valid."""
    return [name for (name,) in fetch(
        database,
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relnamespace = 'public'::regnamespace AND NOT i.indisvalid ORDER BY 1",
    )]


def _without_indexes(snapshot, names):
    for entry in snapshot["tables"].values():
        entry["indexes"] = [i for i in entry["indexes"] if i["name"] not in names]
    return snapshot


def assert_between_migrations(url, backend, digest):
    """What a killed migrate must leave: the history a prefix of the migrations, the
    schema exactly that prefix's, the seeded rows all there. Returns the prefix length.

    The one allowance (PostgreSQL): right after a kill during the concurrent index
    build of the newest applied migration (005's IDX_orders_kinguinReservationId,
    006's unique indexes), those indexes may be missing or INVALID.
    """
    with opened(url) as database:
        applied = recorded_history(database)
        assert applied == MIGRATIONS[: len(applied)], applied
        assert len(applied) >= 1  # the seeded baseline
        live = schema.snapshot(database)
        expected = target.expected(backend, len(applied))
        unfinished = set(BUILDS_AFTER_COMMIT.get(applied[-1], []))
        if backend == "postgres" and unfinished:
            live, expected = (_without_indexes(snap, unfinished) for snap in (live, expected))
            assert set(invalid_indexes(database)) <= unfinished
        assert schema.compare(live, expected) == []
        assert live == expected
        assert seeded_digest(database) == digest
        if backend == "sqlite":
            assert fetch(database, "PRAGMA integrity_check") == [("ok",)]
            assert fetch(database, "PRAGMA foreign_key_check") == []
    return len(applied)


def assert_fully_migrated(url, backend, digest):
    with opened(url) as database:
        assert recorded_history(database) == MIGRATIONS
        counts = dict(fetch(database, f'SELECT "name", count(*) FROM "{HISTORY_TABLE}" '
                                      'GROUP BY "name"'))
        assert counts == dict.fromkeys(MIGRATIONS, 1)
        live = schema.snapshot(database)
        assert schema.compare(live, target.expected(backend)) == []
        assert live == target.expected(backend)
        if backend == "postgres":
            assert invalid_indexes(database) == []
        assert seeded_digest(database) == digest


# --------------------------------------------------------------------------- kill points

#: Appended to each migration of a copy: the migration can be told (through the
#: environment) to signal, then sleep, at the start or at the end of its transaction.
PAUSE_HOOK = '''

# --- added by tests/test_faults.py: pause inside this migration's transaction on request.
def _fault_pause(where):
    import os
    import pathlib
    import time

    if os.environ.get("BITLOOT_FAULT_PAUSE") == __name__.split("_", 1)[1] + ":" + where:
        pathlib.Path(os.environ["BITLOOT_FAULT_MARKER"]).write_text(where)
        time.sleep(60)


_fault_migrate = migrate


def migrate(migrator, database, *, fake=False):
    migrator.run(_fault_pause, "start")  # in the transaction, before any of its DDL
    _fault_migrate(migrator, database, fake=fake)
    migrator.run(_fault_pause, "end")  # all its DDL done; not recorded, not committed
'''


@pytest.fixture(scope="module")
def hooked_migrations(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hooked") / "migrations"
    folder.mkdir()
    for name in MIGRATIONS:
        text = (MIGRATIONS_DIR / f"{name}.py").read_text(encoding="utf-8")
        (folder / f"{name}.py").write_text(text + PAUSE_HOOK, encoding="utf-8")
    return folder


_STATUSES = ["created", "waiting", "confirming", "paid", "underpaid", "failed", "fulfilled"]


def _seed(database):
    """SEEDED orders (every status) with one item each, in two statements."""
    if isinstance(database, pw.PostgresqlDatabase):
        series = f"generate_series(1, {SEEDED}) AS s(i)"
        order_id = "('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid"
        item_id = "('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid"
        status = f"(ARRAY{_STATUSES!r})[1 + mod(i, 7)]"
        quantity = "1 + mod(i, 5)"
        database.execute_sql(f'INSERT INTO "orders" ("id", "email", "status", "total") '
                             f"SELECT {order_id}, 'buyer' || i || '@example.com', {status}, i "
                             f"FROM {series}")
        database.execute_sql(f'INSERT INTO "order_items" ("id", "orderId", "productId", '
                             f'"quantity") SELECT {item_id}, {order_id}, \'prod-\' || i, '
                             f"{quantity} FROM {series}")
        return
    series = f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {SEEDED})"
    order_id = "printf('00000000-0000-4000-8000-%012d', i)"
    status = "json_extract('" + str(_STATUSES).replace("'", '"') + "', '$[' || (i % 7) || ']')"
    with database.atomic():
        database.execute_sql(f'{series} INSERT INTO "orders" ("id", "email", "status", "total") '
                             f"SELECT {order_id}, 'buyer' || i || '@example.com', {status}, i "
                             "FROM s")
        database.execute_sql(f'{series} INSERT INTO "order_items" ("id", "orderId", '
                             f'"productId", "quantity") SELECT '
                             f"printf('00000000-0000-4000-9000-%012d', i), {order_id}, "
                             "'prod-' || i, 1 + i % 5 FROM s")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded(request, tmp_path_factory, hooked_migrations):
    """A database at 001_init_orders holding SEEDED orders and items, to copy per test;
    and the time a full migrate of such a copy takes (a process, start to exit), and the
    time a process takes to start and connect."""
    backend = request.param
    with conftest.throwaway_url(request, backend, tmp_path_factory.mktemp("seeded")) as url:
        with opened(url) as database:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("BITLOOT_SHIPPED_MIGRATIONS_DIR", str(hooked_migrations))
                migrating.migrate(database, to=MIGRATIONS[0])
            _seed(database)
            digest = seeded_digest(database)
            if backend == "sqlite":
                database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:  # nothing left for autovacuum to do, and no session may use the template
                database.execute_sql("VACUUM ANALYZE")
        template = SimpleNamespace(backend=backend, url=url, digest=digest, admin=None)
        if backend == "postgres":
            template.admin = request.getfixturevalue("pg_admin")
            template.name = urlsplit(url).path[1:]
            template.admin.execute_sql(
                f'ALTER DATABASE "{template.name}" WITH ALLOW_CONNECTIONS false')
        with copy_of(template) as trial:
            started = time.monotonic()
            status = subprocess.run(
                [sys.executable, "-m", "bitloot_lite", "status", "-q", "--database", trial],
                capture_output=True, text=True, timeout=WAIT,
                env=clean_env(BITLOOT_SHIPPED_MIGRATIONS_DIR=str(hooked_migrations)))
            template.startup_seconds = time.monotonic() - started  # to a connected database
            assert status.returncode == 1, status.stderr
            started = time.monotonic()
            code, out, err = migrate_process(trial, hooked_migrations)
            template.migrate_seconds = time.monotonic() - started
            assert code == 0, err
        yield template


@contextlib.contextmanager
def copy_of(template):
    """A throwaway copy of the seeded database; its URL."""
    if template.backend == "postgres":
        name = f"bitloot_test_{uuid.uuid4().hex[:12]}"
        template.admin.execute_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}"')
        try:
            yield conftest._pg_url_for(name)
        finally:
            template.admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    source = Path(template.url[len("sqlite:///"):])
    folder = source.parent / uuid.uuid4().hex[:12]
    folder.mkdir()
    shutil.copy(source, folder / source.name)
    try:
        yield f"sqlite:///{folder / source.name}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def rerun_completes(url, backend, digest, migrations, applied_before):
    """The next migrate: exit 0, applies exactly what the killed one left, and ends at
    the final schema with each migration in the history once."""
    code, out, err = migrate_process(url, migrations)
    assert code == 0, err
    assert "Error" not in err and "Traceback" not in err  # (it may wait for a dying backend)
    applied = re.findall(r"^applied (\S+) \(", out, re.MULTILINE)
    assert applied == MIGRATIONS[applied_before:], out
    assert_fully_migrated(url, backend, digest)


#: Each migration's end (its DDL done, neither recorded nor committed), and the start
#: of 002 and 004 (the table rebuild on SQLite): every history length from 1 on.
PAUSE_POINTS = ["002_create_payments:start", "004_orders_status_enum:start",
                *(f"{name}:end" for name in MIGRATIONS[1:])]


@pytest.mark.slow
@pytest.mark.parametrize("point", PAUSE_POINTS)
def test_a_migrate_killed_inside_a_migration_leaves_it_wholly_undone(
    seeded, hooked_migrations, tmp_path, point
):
    """SIGKILL while a migration's transaction is open, before or after its DDL: the
    database is at the previous migration, and the next migrate completes."""
    name = point.split(":")[0]
    marker = tmp_path / "paused"
    with copy_of(seeded) as url:
        process = start_migrate(url, hooked_migrations, BITLOOT_FAULT_PAUSE=point,
                                BITLOOT_FAULT_MARKER=str(marker))
        try:
            wait_for(marker.exists, f"the pause at {point}", process=process)
        finally:
            kill(process)
        assert process.returncode == -signal.SIGKILL

        applied = assert_between_migrations(url, seeded.backend, seeded.digest)
        assert applied == MIGRATIONS.index(name)  # exactly the ones before it
        rerun_completes(url, seeded.backend, seeded.digest, hooked_migrations, applied)


#: None: at once; a fraction: that far from the moment a process is connected (which
#: takes most of the time) to the time a whole migrate takes.
KILL_DELAYS = [None, 0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.slow
@pytest.mark.parametrize("fraction", KILL_DELAYS)
def test_a_migrate_killed_after_any_delay_leaves_a_migration_boundary(
    seeded, hooked_migrations, fraction
):
    """SIGKILL after a delay from 0 to the time a whole migrate takes: whatever it had
    reached, the database is at a migration boundary and the next migrate completes."""
    start, end = seeded.startup_seconds, max(seeded.migrate_seconds, seeded.startup_seconds)
    with copy_of(seeded) as url:
        process = start_migrate(url, hooked_migrations)
        time.sleep(0 if fraction is None else start + fraction * (end - start))
        kill(process)
        assert process.returncode in (0, -signal.SIGKILL)

        applied = assert_between_migrations(url, seeded.backend, seeded.digest)
        rerun_completes(url, seeded.backend, seeded.digest, hooked_migrations, applied)


# --------------------------------------------------------------------------- the index build


def _snapshot_holder(url):
    """A session in a REPEATABLE READ transaction holding a snapshot: CREATE INDEX
    CONCURRENTLY waits for it before it can mark the index valid."""
    holder = open_database(url)
    holder.execute_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute_sql("SELECT 1")  # the snapshot, and no lock on any table
    return holder


def _building_backend(database, index):
    """The pid of the backend running CREATE [UNIQUE] INDEX CONCURRENTLY ``index`` and
    waiting (for a snapshot), if one is."""
    rows = fetch(
        database,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'active' AND query ILIKE 'CREATE %%INDEX CONCURRENTLY%%' "
        "AND strpos(query, %s) > 0 AND wait_event_type = 'Lock'",
        (f'"{index}"',),
    )
    return rows[0][0] if rows else None


def _backend_alive(database, pid):
    return bool(fetch(database, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))


@pytest.mark.slow
@postgres_only
@pytest.mark.parametrize("migration", list(BUILDS_AFTER_COMMIT))
@pytest.mark.parametrize("orphan", ["finishes", "is-cancelled"])
def test_a_migrate_killed_during_the_concurrent_index_build(db_url, tmp_path, orphan,
                                                            migration):
    """SIGKILL while the migration's first CREATE INDEX CONCURRENTLY runs (005's
    IDX_orders_kinguinReservationId, 006's UQ_orders_kinguinReservationId): the server
    goes on building for the dead client, holding the migration lock. The next migrate
    waits for that orphaned build (without deadlocking with it), then finishes the job:
    every index is valid in the end, whether the orphan completed it or left it INVALID,
    and the migrations after it are applied."""
    assert RESERVATION_INDEX in BUILDS_AFTER_COMMIT["005_add_keys_reservation"]
    position = MIGRATIONS.index(migration)
    first, *others = BUILDS_AFTER_COMMIT[migration]
    with opened(db_url) as database:
        migrating.migrate(database, to=MIGRATIONS[position - 1])
        database.execute_sql('INSERT INTO "orders" ("id", "email") VALUES (%s, %s)',
                             (str(uuid.uuid4()), "buyer@example.com"))
        digest = seeded_digest(database)
    holder = _snapshot_holder(db_url)
    try:
        with opened(db_url) as watcher:
            process = start_migrate(db_url)
            try:
                wait_for(lambda: _building_backend(watcher, first) is not None,
                         "the concurrent index build to start", process=process)
            finally:
                kill(process)
            orphan_pid = _building_backend(watcher, first)
            assert orphan_pid is not None and _backend_alive(watcher, orphan_pid)

            # Right after the kill: the migration is applied, its first index is there
            # but INVALID (and the ones after it are not there yet).
            assert assert_between_migrations(db_url, "postgres", digest) == position + 1
            assert invalid_indexes(watcher) == [first]

            def assert_rerun_finished(out, rebuilt):
                """The rerun built exactly ``rebuilt`` of the migration's indexes, and
                applied the migrations after it."""
                built = re.findall(rf"^built index {migration}: (\S+) \(", out, re.MULTILINE)
                assert built == rebuilt, out
                applied = re.findall(r"^applied (\S+) \(", out, re.MULTILINE)
                assert applied == MIGRATIONS[position + 1:], out
                if not applied:  # the last migration: only its indexes were left to do
                    assert ("finished the unbuilt index(es)" if rebuilt
                            else "nothing to migrate") in out, out

            if orphan == "is-cancelled":
                assert fetch(watcher, "SELECT pg_cancel_backend(%s)", (orphan_pid,))[0][0]
                wait_for(lambda: not _backend_alive(watcher, orphan_pid),
                         "the cancelled build's backend to exit")
                assert invalid_indexes(watcher) == [first]  # left INVALID
                holder.execute_sql("ROLLBACK")
                code, out, err = migrate_process(db_url)
                assert code == 0, err
                assert_rerun_finished(out, [first, *others])
            else:
                # The rerun starts while the orphan still builds: it waits for the lock,
                # which the orphaned backend holds until its statement ends.
                stderr_path = tmp_path / "stderr"
                with open(stderr_path, "w") as stderr:
                    rerun = subprocess.Popen(
                        [sys.executable, "-m", "bitloot_lite", "migrate", "--database",
                         db_url], stdout=subprocess.PIPE, stderr=stderr, text=True,
                        env=clean_env())
                try:
                    wait_for(lambda: f"held by pid {orphan_pid}" in stderr_path.read_text(),
                             "the rerun to wait for the orphan's lock", process=rerun)
                    time.sleep(0.3)
                    assert rerun.poll() is None  # still waiting, not deadlocked
                    assert _backend_alive(watcher, orphan_pid)
                    holder.execute_sql("ROLLBACK")  # the orphan's build can now finish
                    out, _ = rerun.communicate(timeout=WAIT)
                finally:
                    kill(rerun)
                assert rerun.returncode == 0, stderr_path.read_text()
                assert_rerun_finished(out, others)  # the orphan built the first one
                assert not _backend_alive(watcher, orphan_pid)
    finally:
        holder.close()

    assert_fully_migrated(db_url, "postgres", digest)


# --------------------------------------------------------------------------- server restarts


@pytest.fixture
def private_primary():
    """A private PostgreSQL server (tests/servers.py) this test may restart: never the
    shared one. Stopped and removed after the test, whatever happened."""
    with servers.primary() as cluster:
        yield cluster


def _terminate_sessions(admin, url):
    """Kill every server session of ``url``'s database (as a failover or an idle-session
    reaper would): the clients' connections are closed under them."""
    name = urlsplit(url).path[1:]
    # pg_terminate_backend in the select list: in WHERE, the planner may call it
    # before the other conditions have filtered the sessions.
    killed = fetch(admin, "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
    # Until they are gone (their last words sent): the client's next call then finds its
    # connection dead before it sends anything. (A write sent while the server dies is
    # not retried, as it may have been committed: see test_topologies.)
    wait_for(lambda: not fetch(admin, "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)",
                               ([pid for pid, _ in killed],)), "the sessions to end")


def _backend_pid(database):
    return fetch(database, "SELECT pg_backend_pid()")[0][0]


def _orders_by(email):
    return Order.select().where(Order.email == email).count()


@pytest.mark.slow
def test_a_script_survives_a_server_restart_and_loses_no_write(private_primary):
    restart_server = private_primary.restart
    db = bitloot_lite.connect(private_primary.create_database("bitloot"))
    bitloot_lite.migrate(db)
    order = bitloot_lite.create_order("script@example.com", [("kinguin-1", 1)])
    bitloot_lite.set_status(order, "waiting")  # statements prepared on this connection
    before = _backend_pid(db)

    restart_server()

    # The next call reconnects (and prepares its statements again) and succeeds.
    second = bitloot_lite.create_order("script@example.com", [("kinguin-2", 2)])
    assert _backend_pid(db) != before
    bitloot_lite.set_status(order, "confirming")
    assert [o.status.value for o in Order.select().order_by(Order.created_at)] == [
        "confirming", "created"]
    assert bitloot_lite.keys_for_order(second) == []

    # A transaction open across a restart: its commit fails, and nothing of it is left.
    with pytest.raises((BitlootError, pw.PeeweeException)), db.atomic():
        Order.create(email="in-flight@example.com")
        bitloot_lite.create_order("in-flight@example.com", [("kinguin-3", 1)])
        restart_server()
    assert not db.in_transaction()
    assert _orders_by("in-flight@example.com") == 0  # the next query reconnects
    assert bitloot_lite.create_order("after@example.com", [("kinguin-4", 1)]).items
    assert _orders_by("script@example.com") == 2
    db.close()


@postgres_only
def test_a_lost_connection_inside_a_transaction_is_a_clean_error_and_undoes_it(
    db_url, pg_admin
):
    db = bitloot_lite.connect(db_url)
    bitloot_lite.migrate(db)
    order = bitloot_lite.create_order("a@example.com", [("kinguin-1", 1)])

    with pytest.raises(StorageError) as info, db.atomic():
        bitloot_lite.create_order("doomed@example.com", [("kinguin-2", 1)])
        _terminate_sessions(pg_admin, db_url)
        bitloot_lite.set_status(order, "waiting")
    assert info.value.operation == "set_status"
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert not db.in_transaction()

    # Gone whole, and the next call works on a new connection.
    assert _orders_by("doomed@example.com") == 0
    assert bitloot_lite.set_status(order, "waiting").status.value == "waiting"
    db.close()


def _script(tag, db, before_each):
    """What a support script does with an order, calling ``before_each()`` before each call."""

    def call(function, *args, **kwargs):
        before_each()
        return function(*args, **kwargs)

    bl = bitloot_lite
    order = call(bl.create_order, f"{tag}@example.com", [("kinguin-1", 2)])
    call(bl.set_status, order, "waiting")
    call(bl.set_status, order, "paid")
    call(bl.attach_reservation, order, f"res-{tag}")
    assert call(bl.find_order_by_reservation, f"res-{tag}").id == order.id
    assert call(bl.add_keys, order.items[0], [f"keys/{tag}/a", f"keys/{tag}/b"]) == 2
    keys = call(bl.keys_for_order, order)
    assert [key.storage_ref for key in keys] == [f"keys/{tag}/a", f"keys/{tag}/b"]
    assert call(bl.reveal_key, keys[0]).viewed_at is not None
    assert f"keys/{tag}/b" in [key.storage_ref for key in call(bl.unviewed_keys)]
    call(bl.record_payment, order, f"np-{tag}", "waiting", price_amount="1.5")
    assert call(bl.record_payment, order, f"np-{tag}", "finished").status.value == "finished"
    hook = call(bl.record_webhook, f"np-{tag}", "payment", {"a": 1}, order=order)
    assert hook.attempt_count == 1
    assert call(lambda: Order.select().where(Order.email == f"{tag}@example.com").count()) == 1
    assert call(bl.set_status, order, "fulfilled").status.value == "fulfilled"
    assert all(state.applied for state in call(bl.status, db))


@postgres_only
def test_every_call_reconnects_after_its_session_was_killed(db_url, pg_admin):
    """Each service call (and a plain peewee query) as the first call on a connection the
    server has closed, its statements prepared on the old one: it reconnects, prepares
    again, and does its job, once."""
    db = bitloot_lite.connect(db_url)
    bitloot_lite.migrate(db)
    _script("warm", db, lambda: None)  # prepares every statement on this connection
    pids = set()

    def kill_session():
        pids.add(_backend_pid(db))
        _terminate_sessions(pg_admin, db_url)

    _script("cold", db, kill_session)
    pids.add(_backend_pid(db))
    assert len(pids) == 1 + 15  # the first connection, and a new one for each of 15 calls
    rows = all_rows(db)
    assert [len(rows[table]) for table in ("orders", "order_items", "keys", "payments",
                                           "webhook_logs")] == [2, 2, 4, 2, 2]
    db.close()


@postgres_only
def test_no_reconnect_while_the_migration_lock_is_held(db_url, pg_admin):
    """The advisory lock lives in the session: holding it, a lost connection is an error
    (a silent reconnect would go on without the lock). Outside it, the next call reconnects."""
    db = bitloot_lite.connect(db_url)
    with pytest.raises(pw.PeeweeException), migration_lock(db):
        _terminate_sessions(pg_admin, db_url)
        db.execute_sql("SELECT 1")
    assert fetch(db, "SELECT 1") == [(1,)]
    assert migrating.migrate(db, lock_timeout=5) == MIGRATIONS
    db.close()


# --------------------------------------------------------------------------- a locked SQLite


@contextlib.contextmanager
def write_lock(url, statements=()):
    """Another connection holding SQLite's write lock (BEGIN IMMEDIATE) for the block,
    having run ``statements``; it commits at the end."""
    holder = sqlite3.connect(sqlite_path(url), isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        for statement in statements:
            holder.execute(statement)
        yield holder
        if holder.in_transaction:
            holder.execute("COMMIT")
    finally:
        holder.close()


@sqlite_only
def test_a_locked_sqlite_database_waits_the_busy_timeout_then_raises_database_busy(db_url):
    url = f"{db_url}?busy_timeout=300"
    db = bitloot_lite.connect(url)
    assert fetch(db, "PRAGMA busy_timeout") == [(300,)]
    bitloot_lite.migrate(db)
    order = bitloot_lite.create_order("a@example.com", [("kinguin-1", 2)])
    for status in ("waiting", "paid"):
        bitloot_lite.set_status(order, status)
    bitloot_lite.add_keys(order.items[0], ["keys/a"])
    key = bitloot_lite.keys_for_order(order)[0]
    before = all_rows(db)
    other = "INSERT INTO \"orders\" (\"id\", \"email\") VALUES ('{}', 'other@example.com')"

    with write_lock(url, [other.format(uuid.uuid4())]):
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as info:
            bitloot_lite.create_order("b@example.com", [("kinguin-2", 1)])
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 3, elapsed
        error = info.value
        assert isinstance(error, StorageError) and isinstance(error, BitlootError)
        assert error.operation == "create_order" and error.seconds == 0.3
        assert "locked" in str(error) and "busy timeout (0.3s)" in str(error)
        assert error.__cause__ is None and error.__context__ is None

        for operation, call in [
            ("set_status", lambda: bitloot_lite.set_status(order, "fulfilled")),
            ("attach_reservation", lambda: bitloot_lite.attach_reservation(order, "r-1")),
            ("add_keys", lambda: bitloot_lite.add_keys(order.items[0], ["keys/b"])),
            ("reveal_key", lambda: bitloot_lite.reveal_key(key)),
            ("record_payment", lambda: bitloot_lite.record_payment(order, "np", "waiting")),
            ("record_webhook", lambda: bitloot_lite.record_webhook("np", "payment", {})),
        ]:
            with pytest.raises(DatabaseBusy) as info:
                call()
            assert info.value.operation == operation
        # Readers are not blocked (WAL), and see none of the holder's uncommitted write.
        assert bitloot_lite.keys_for_order(order) == [key]
        assert all_rows(db) == before

    # Released (the other writer committed): the calls go through; nothing was lost.
    bitloot_lite.create_order("b@example.com", [("kinguin-2", 1)])
    assert _orders_by("other@example.com") == 1 and _orders_by("b@example.com") == 1
    after = all_rows(db)
    for table, rows in before.items():
        assert set(rows) <= set(after[table]), table
    db.close()


@postgres_only
def test_a_postgres_lock_timeout_is_database_busy_too(db_url):
    """PostgreSQL's "busy": a row lock held past the session's lock_timeout (55P03)."""
    db = bitloot_lite.connect(f"{db_url}?options=-c%20lock_timeout%3D300%20-c%20timezone%3DUTC")
    bitloot_lite.migrate(db)
    order = bitloot_lite.create_order("a@example.com", [("kinguin-1", 1)])
    before = all_rows(db)
    with opened(db_url) as other, other.atomic():
        other.execute_sql('SELECT 1 FROM "orders" WHERE "id" = %s FOR UPDATE', (str(order.id),))
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as info:
            bitloot_lite.set_status(order, "waiting")
        assert 0.25 <= time.monotonic() - started < 3
    assert info.value.operation == "set_status" and "lock timeout" in str(info.value)
    assert all_rows(db) == before
    assert bitloot_lite.set_status(order, "waiting").status.value == "waiting"
    db.close()


@sqlite_only
def test_a_write_waits_for_a_lock_released_within_the_busy_timeout(db_url):
    db = bitloot_lite.connect(f"{db_url}?busy_timeout=3000")
    bitloot_lite.migrate(db)
    with write_lock(db_url) as holder:
        timer = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
        timer.start()
        try:
            started = time.monotonic()
            order = bitloot_lite.create_order("a@example.com", [("kinguin-1", 1)])
            elapsed = time.monotonic() - started
        finally:
            timer.join()
    assert 0.2 <= elapsed < 2.5, elapsed  # it waited, then wrote
    assert Order.get_by_id(order.id).email == "a@example.com"
    db.close()


@sqlite_only
def test_the_busy_timeout_defaults_to_5_seconds_and_is_checked(db_url):
    with opened(db_url) as database:
        assert fetch(database, "PRAGMA busy_timeout") == [(5000,)]
    for bad in ("abc", "-1", "1.5", "true"):
        with pytest.raises(InvalidDatabaseURL) as info:
            open_database(f"{db_url}?busy_timeout={bad}")
        assert "busy_timeout" in str(info.value)


@sqlite_only
def test_migrate_against_a_locked_database_is_a_clear_error_and_changes_nothing(db_url):
    url = f"{db_url}?busy_timeout=300"
    with opened(url) as database:
        migrating.migrate(database, to=MIGRATIONS[2])
        before = state(database)

    with write_lock(url):
        code, out, err = migrate_process(url)
        with opened(url) as database, pytest.raises(MigrationFailed) as info:
            migrating.migrate(database)

    assert code == 1, err
    assert out == "" and "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("Error: migrate of 004_orders_status_enum failed and was undone")
    assert "database is locked" in message and "another connection" in message
    assert info.value.name == "004_orders_status_enum" and "locked" in str(info.value)
    with opened(url) as database:
        assert state(database) == before
        assert migrating.migrate(database) == MIGRATIONS[3:]


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world_db(request, tmp_path_factory):
    """One database per backend for the bad-input tests, holding one of everything."""
    folder = tmp_path_factory.mktemp("bad-input")
    with conftest.migrated_database(request, request.param, folder) as (url, database):
        paid = bitloot_lite.create_order("a@example.com", [("prod-a", 1), ("prod-b", 2)])
        for status in ("waiting", "paid"):
            bitloot_lite.set_status(paid, status)
        bitloot_lite.attach_reservation(paid, "res-1")
        bitloot_lite.add_keys(paid.items[0], ["keys/a"])
        bitloot_lite.record_payment(paid, "pay-1", "finished", price_amount="19.99")
        bitloot_lite.record_webhook("hook-1", "payment", {"ok": True}, order=paid)
        fresh = bitloot_lite.create_order("b@example.com", [("prod-c", 1)])
        world = SimpleNamespace(url=url, db=database, paid=paid, fresh=fresh,
                                full_item=paid.items[0], item=paid.items[1],
                                key=bitloot_lite.keys_for_order(paid)[0])
        yield world


@pytest.fixture
def world(world_db):
    bitloot_lite.db.database_proxy.initialize(world_db.db)
    return world_db


UNKNOWN = uuid.UUID("0b6f2a5e-9a0c-4c1e-8a51-4b1c7d2f3e10")
MANY_ITEMS = [("p", 1)] * 1001
DEEP = []
for _ in range(100):
    DEEP = [DEEP]


def _case(call, error, name, match=None):
    return pytest.param(call, error, match, id=name)


VE, NF = ValidationError, NotFound
BAD_CALLS = [
    # create_order
    _case(lambda w: bitloot_lite.create_order(None, [("p", 1)]), VE, "create-email-none"),
    _case(lambda w: bitloot_lite.create_order(123, [("p", 1)]), VE, "create-email-int"),
    _case(lambda w: bitloot_lite.create_order(b"a@b.io", [("p", 1)]), VE, "create-email-bytes"),
    _case(lambda w: bitloot_lite.create_order("nobody", [("p", 1)]), VE, "create-email-no-at"),
    _case(lambda w: bitloot_lite.create_order("a@b", [("p", 1)]), VE, "create-email-no-tld"),
    _case(lambda w: bitloot_lite.create_order("x" * 400 + "@b.io", [("p", 1)]), VE,
          "create-email-long"),
    _case(lambda w: bitloot_lite.create_order(" a@b.io", [("p", 1)]), VE, "create-email-space"),
    _case(lambda w: bitloot_lite.create_order("a@b.io\x00", [("p", 1)]), VE, "create-email-nul"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", None), VE, "create-items-none"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", []), VE, "create-items-empty"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", "p"), VE, "create-items-str"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", 5), VE, "create-items-int"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", {"product_id": "p"}), VE,
          "create-items-dict"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 0)]), VE, "create-qty-zero"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", -1)]), VE, "create-qty-negative"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 2**31)]), VE, "create-qty-huge"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", "2")]), VE, "create-qty-str"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1.5)]), VE, "create-qty-float"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", True)]), VE, "create-qty-bool"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [(None, 1)]), VE, "create-product-none"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p" * 101, 1)]), VE,
          "create-product-long"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p",)]), VE, "create-item-short"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [1]), VE, "create-item-int"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [{"product_id": "p", "price": 1}]), VE,
          "create-item-unknown-key"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("ok", 1), ("bad", 0)]), VE,
          "create-second-item-bad"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", MANY_ITEMS), VE, "create-items-1001"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1)], total=-1), VE,
          "create-total-negative"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1)], total="abc"), VE,
          "create-total-text"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1)], total=1.5), VE,
          "create-total-float"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1)], total=Decimal("NaN")), VE,
          "create-total-nan"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1)], total=Decimal("Inf")), VE,
          "create-total-inf"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1)], total="1e30"), VE,
          "create-total-too-big"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1)], total=10**400), VE,
          "create-total-huge"),
    _case(lambda w: bitloot_lite.create_order("a@b.io", [("p", 1)], total=True), VE,
          "create-total-bool"),
    # set_status
    _case(lambda w: bitloot_lite.set_status(None, "waiting"), VE, "status-order-none"),
    _case(lambda w: bitloot_lite.set_status(123, "waiting"), VE, "status-order-int"),
    _case(lambda w: bitloot_lite.set_status("not-a-uuid", "waiting"), VE, "status-order-bad"),
    _case(lambda w: bitloot_lite.set_status("", "waiting"), VE, "status-order-empty"),
    _case(lambda w: bitloot_lite.set_status(UNKNOWN, "waiting"), NF, "status-order-unknown"),
    _case(lambda w: bitloot_lite.set_status(str(UNKNOWN), "waiting"), NF,
          "status-order-unknown-str"),
    _case(lambda w: bitloot_lite.set_status(w.key, "waiting"), VE, "status-order-is-a-key"),
    _case(lambda w: bitloot_lite.set_status(w.fresh, "bogus"), VE, "status-bogus"),
    _case(lambda w: bitloot_lite.set_status(w.fresh, None), VE, "status-none"),
    _case(lambda w: bitloot_lite.set_status(w.fresh, 5), VE, "status-int"),
    _case(lambda w: bitloot_lite.set_status(w.fresh, "WAITING"), VE, "status-upper"),
    _case(lambda w: bitloot_lite.set_status(w.paid, "created"), InvalidTransition,
          "status-backwards"),
    _case(lambda w: bitloot_lite.set_status(w.paid, "fulfilled"), KeysMissing,
          "status-keys-missing"),
    _case(lambda w: bitloot_lite.set_status(w.fresh, "paid"), InvalidTransition,
          "status-skipping"),
    # attach_reservation / find_order_by_reservation
    _case(lambda w: bitloot_lite.attach_reservation(w.paid, None), VE, "attach-none"),
    _case(lambda w: bitloot_lite.attach_reservation(w.paid, ""), VE, "attach-empty"),
    _case(lambda w: bitloot_lite.attach_reservation(w.paid, " r"), VE, "attach-space"),
    _case(lambda w: bitloot_lite.attach_reservation(w.paid, "r" * 256), VE, "attach-long"),
    _case(lambda w: bitloot_lite.attach_reservation(w.paid, 5), VE, "attach-int"),
    _case(lambda w: bitloot_lite.attach_reservation(w.paid, "a\x00"), VE, "attach-nul"),
    _case(lambda w: bitloot_lite.attach_reservation(UNKNOWN, "r"), NF, "attach-unknown-order"),
    _case(lambda w: bitloot_lite.attach_reservation(w.fresh, "r"), OrderNotPaid,
          "attach-not-paid"),
    _case(lambda w: bitloot_lite.attach_reservation(w.paid, "res-2"), ReservationConflict,
          "attach-another"),
    _case(lambda w: bitloot_lite.find_order_by_reservation(None), VE, "find-none"),
    _case(lambda w: bitloot_lite.find_order_by_reservation(5), VE, "find-int"),
    _case(lambda w: bitloot_lite.find_order_by_reservation(""), VE, "find-empty"),
    _case(lambda w: bitloot_lite.find_order_by_reservation("r" * 256), VE, "find-long"),
    _case(lambda w: bitloot_lite.find_order_by_reservation("nope"), NF, "find-unknown"),
    # add_keys / reveal_key / keys_for_order / unviewed_keys
    _case(lambda w: bitloot_lite.add_keys(None, ["k"]), VE, "keys-item-none"),
    _case(lambda w: bitloot_lite.add_keys("bad", ["k"]), VE, "keys-item-bad"),
    _case(lambda w: bitloot_lite.add_keys(UNKNOWN, ["k"]), NF, "keys-item-unknown"),
    _case(lambda w: bitloot_lite.add_keys(w.paid, ["k"]), VE, "keys-item-is-an-order"),
    _case(lambda w: bitloot_lite.add_keys(w.item, None), VE, "keys-refs-none"),
    _case(lambda w: bitloot_lite.add_keys(w.item, "k"), VE, "keys-refs-str"),
    _case(lambda w: bitloot_lite.add_keys(w.item, []), VE, "keys-refs-empty"),
    _case(lambda w: bitloot_lite.add_keys(w.item, [None]), VE, "keys-ref-none"),
    _case(lambda w: bitloot_lite.add_keys(w.item, [1]), VE, "keys-ref-int"),
    _case(lambda w: bitloot_lite.add_keys(w.item, ["k", "k"]), VE, "keys-ref-twice"),
    _case(lambda w: bitloot_lite.add_keys(w.item, ["k" * 1025]), VE, "keys-ref-long"),
    _case(lambda w: bitloot_lite.add_keys(w.item, ["k", " k"]), VE, "keys-ref-space"),
    _case(lambda w: bitloot_lite.add_keys(w.full_item, ["k"]), TooManyKeys, "keys-item-full"),
    _case(lambda w: bitloot_lite.add_keys(w.item, ["a", "b", "c"]), TooManyKeys,
          "keys-too-many"),
    _case(lambda w: bitloot_lite.reveal_key(None), VE, "reveal-none"),
    _case(lambda w: bitloot_lite.reveal_key(5), VE, "reveal-int"),
    _case(lambda w: bitloot_lite.reveal_key("zzz"), VE, "reveal-bad"),
    _case(lambda w: bitloot_lite.reveal_key(UNKNOWN), NF, "reveal-unknown"),
    _case(lambda w: bitloot_lite.reveal_key(w.paid), VE, "reveal-an-order"),
    _case(lambda w: bitloot_lite.keys_for_order(None), VE, "order-keys-none"),
    _case(lambda w: bitloot_lite.keys_for_order("bad"), VE, "order-keys-bad"),
    _case(lambda w: bitloot_lite.keys_for_order(UNKNOWN), NF, "order-keys-unknown"),
    _case(lambda w: bitloot_lite.unviewed_keys(older_than="x"), VE, "unviewed-older-str"),
    _case(lambda w: bitloot_lite.unviewed_keys(older_than=5), VE, "unviewed-older-int"),
    _case(lambda w: bitloot_lite.unviewed_keys(older_than=dt.timedelta(days=-1)), VE,
          "unviewed-older-negative"),
    _case(lambda w: bitloot_lite.unviewed_keys(older_than=dt.timedelta(days=999_999_999)), VE,
          "unviewed-older-before-year-1"),
    _case(lambda w: bitloot_lite.unviewed_keys(
        older_than=dt.datetime.min.replace(tzinfo=dt.timezone(dt.timedelta(hours=5)))), VE,
        "unviewed-older-out-of-range"),
    _case(lambda w: bitloot_lite.unviewed_keys(older_than=dt.date(2020, 1, 1)), VE,
          "unviewed-older-date"),
    _case(lambda w: bitloot_lite.unviewed_keys(limit=0), VE, "unviewed-limit-zero"),
    _case(lambda w: bitloot_lite.unviewed_keys(limit=-1), VE, "unviewed-limit-negative"),
    _case(lambda w: bitloot_lite.unviewed_keys(limit="2"), VE, "unviewed-limit-str"),
    _case(lambda w: bitloot_lite.unviewed_keys(limit=2**40), VE, "unviewed-limit-huge"),
    _case(lambda w: bitloot_lite.unviewed_keys(limit=1.5), VE, "unviewed-limit-float"),
    _case(lambda w: bitloot_lite.unviewed_keys(limit=True), VE, "unviewed-limit-bool"),
    # record_payment
    _case(lambda w: bitloot_lite.record_payment(w.fresh, None, "waiting"), VE, "pay-id-none"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "", "waiting"), VE, "pay-id-empty"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "p" * 256, "waiting"), VE,
          "pay-id-long"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, 5, "waiting"), VE, "pay-id-int"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "bogus"), VE, "pay-status-bogus"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", None), VE, "pay-status-none"),
    _case(lambda w: bitloot_lite.record_payment(None, "np", "waiting"), VE, "pay-order-none"),
    _case(lambda w: bitloot_lite.record_payment(UNKNOWN, "np", "waiting"), NF,
          "pay-order-unknown"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", bogus=1), VE,
          "pay-field-unknown"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", price_amount=1.5), VE,
          "pay-amount-float"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", price_amount=-1), VE,
          "pay-amount-negative"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", confirmations=-1),
          VE, "pay-confirmations-negative"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", confirmations="3"),
          VE, "pay-confirmations-str"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", provider="p" * 51),
          VE, "pay-provider-long"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", raw_payload={1, 2}),
          VE, "pay-payload-set"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", raw_payload={1: 2}),
          VE, "pay-payload-int-key"),
    _case(lambda w: bitloot_lite.record_payment(
        w.fresh, "np", "waiting", raw_payload={"a": math.nan}), VE, "pay-payload-nan"),
    _case(lambda w: bitloot_lite.record_payment(
        w.fresh, "np", "waiting", raw_payload={"a": 10**5000}), VE, "pay-payload-huge-int"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "np", "waiting", raw_payload=DEEP), VE,
          "pay-payload-deep"),
    _case(lambda w: bitloot_lite.record_payment(w.fresh, "pay-1", "finished"), PaymentConflict,
          "pay-other-order"),
    _case(lambda w: bitloot_lite.record_payment(w.paid, "pay-1", "waiting"),
          InvalidPaymentTransition, "pay-backwards"),
    # record_webhook
    _case(lambda w: bitloot_lite.record_webhook(None, "payment", {}), VE, "hook-id-none"),
    _case(lambda w: bitloot_lite.record_webhook("h", "", {}), VE, "hook-type-empty"),
    _case(lambda w: bitloot_lite.record_webhook("h", "t" * 51, {}), VE, "hook-type-long"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", None), VE, "hook-payload-none"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {1}), VE, "hook-payload-set"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {}, b"sig"), VE,
          "hook-signature-bytes"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {}, signature_valid="yes"), VE,
          "hook-signature-valid-str"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {}, processed=1), VE,
          "hook-processed-int"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {}, order="bad"), VE,
          "hook-order-bad"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {}, source_ip="999.1.1.1"), VE,
          "hook-ip-bad"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {}, result={"a": math.inf}), VE,
          "hook-result-inf"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {}, payment_id="p" * 256), VE,
          "hook-payment-id-long"),
    _case(lambda w: bitloot_lite.record_webhook("h", "payment", {}, error="\x00"), VE,
          "hook-error-nul"),
    # migrations
    _case(lambda w: bitloot_lite.migrate(w.db, to="999_nope"), UnknownMigration,
          "migrate-to-unknown"),
    _case(lambda w: bitloot_lite.migrate(w.db, to=5), UnknownMigration, "migrate-to-int"),
    _case(lambda w: bitloot_lite.migrate(w.db, lock_timeout=-1), VE, "migrate-lock-negative"),
    _case(lambda w: bitloot_lite.migrate(w.db, lock_timeout="x"), VE, "migrate-lock-str"),
    _case(lambda w: bitloot_lite.migrate(w.db, lock_timeout=math.nan), VE, "migrate-lock-nan"),
    _case(lambda w: bitloot_lite.migrate(w.db, ddl_lock_timeout=-1), VE, "migrate-ddl-negative"),
    _case(lambda w: bitloot_lite.migrate(w.db, ddl_lock_timeout="5"), VE, "migrate-ddl-str"),
    _case(lambda w: bitloot_lite.migrate(w.db, ddl_lock_timeout=math.inf), VE,
          "migrate-ddl-inf"),
    _case(lambda w: bitloot_lite.migrate(w.db, migrations_dir=123), VE, "migrate-dir-int"),
    _case(lambda w: bitloot_lite.migrate(w.db, migrations_dir="/nonexistent"),
          MigrationsNotFound, "migrate-dir-missing"),
    _case(lambda w: bitloot_lite.migrate(None), ConfigurationError, "migrate-db-none"),
    _case(lambda w: bitloot_lite.migrate(w.url), ConfigurationError, "migrate-db-url"),
    _case(lambda w: bitloot_lite.rollback(w.db, steps=0), NothingToRollback,
          "rollback-steps-zero"),
    _case(lambda w: bitloot_lite.rollback(w.db, steps=-1), NothingToRollback,
          "rollback-steps-negative"),
    _case(lambda w: bitloot_lite.rollback(w.db, steps=99), NothingToRollback,
          "rollback-steps-too-many"),
    _case(lambda w: bitloot_lite.rollback(w.db, steps="2"), VE, "rollback-steps-str"),
    _case(lambda w: bitloot_lite.rollback(w.db, steps=None), VE, "rollback-steps-none"),
    _case(lambda w: bitloot_lite.rollback(w.db, steps=1.5), VE, "rollback-steps-float"),
    _case(lambda w: bitloot_lite.rollback(w.db, steps=True), VE, "rollback-steps-bool"),
    _case(lambda w: bitloot_lite.rollback(w.db, to="999_nope"), UnknownMigration,
          "rollback-to-unknown"),
    _case(lambda w: bitloot_lite.rollback(w.db, lock_timeout=-1), VE, "rollback-lock-negative"),
    _case(lambda w: bitloot_lite.rollback(None), ConfigurationError, "rollback-db-none"),
    _case(lambda w: bitloot_lite.status(None), ConfigurationError, "status-db-none"),
    _case(lambda w: bitloot_lite.status(w.db, 1), VE, "status-dir-int"),
    _case(lambda w: bitloot_lite.status(w.db, "/nonexistent"), MigrationsNotFound,
          "status-dir-missing"),
    _case(lambda w: bitloot_lite.pending("sqlite:///x.db"), ConfigurationError,
          "pending-db-url"),
    _case(lambda w: migrating.baseline(w.db, "999_nope"), UnknownMigration,
          "baseline-to-unknown"),
    _case(lambda w: migrating.baseline(w.db, MIGRATIONS[0]), MigrationError,
          "baseline-with-history"),
    _case(lambda w: migrating.preview(w.db, to="999_nope"), UnknownMigration,
          "preview-to-unknown"),
    _case(lambda w: migrating.preview(w.db, rollback_steps=0), NothingToRollback,
          "preview-steps-zero"),
    _case(lambda w: migrating.preview(w.db, rollback_steps="1"), VE, "preview-steps-str"),
    _case(lambda w: migrating.check(w.db, "/nonexistent"), MigrationsNotFound,
          "check-dir-missing"),
    # connect: the URL
    _case(lambda w: bitloot_lite.connect(5), InvalidDatabaseURL, "connect-int"),
    _case(lambda w: bitloot_lite.connect(b"sqlite:///x.db"), InvalidDatabaseURL,
          "connect-bytes"),
    _case(lambda w: bitloot_lite.connect("garbage"), InvalidDatabaseURL, "connect-garbage"),
    _case(lambda w: bitloot_lite.connect(" "), InvalidDatabaseURL, "connect-blank"),
    _case(lambda w: bitloot_lite.connect("foo://u:secret@h/db"), InvalidDatabaseURL,
          "connect-unknown-scheme"),
    _case(lambda w: bitloot_lite.connect("mysql://u@h/db"), InvalidDatabaseURL,
          "connect-no-driver"),
    _case(lambda w: bitloot_lite.connect("sqlite:///x.db?foo=1"), InvalidDatabaseURL,
          "connect-sqlite-unknown-parameter"),
    _case(lambda w: bitloot_lite.connect("sqlite:///x.db?timeout=abc"), InvalidDatabaseURL,
          "connect-sqlite-bad-timeout"),
    _case(lambda w: bitloot_lite.connect("sqlite:///x.db?busy_timeout=-1"), InvalidDatabaseURL,
          "connect-sqlite-bad-busy-timeout"),
    _case(lambda w: bitloot_lite.connect("postgresql://u@[::1/x"), InvalidDatabaseURL,
          "connect-bad-host"),
    _case(lambda w: bitloot_lite.connect("postgresql://u@h:99999/x"), InvalidDatabaseURL,
          "connect-bad-port"),
    _case(lambda w: bitloot_lite.connect("postgresql://u:secret@127.0.0.1:1/x"),
          DatabaseUnavailable, "connect-unreachable"),
    # A server that answers and a database that exists: only the parameter is wrong.
    _case(lambda w: bitloot_lite.connect(
        conftest.PG_URL + ("&" if "?" in conftest.PG_URL else "?") + "foo=1"),
        DatabaseUnavailable, "connect-pg-unknown-parameter", 'option "foo"'),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_CALLS)
def test_bad_input_is_a_bitloot_error_and_changes_nothing(world, unrelated_cwd, call, error,
                                                          match):
    before = state(world.db)

    with pytest.raises(error, match=match) as info:
        call(world)

    assert isinstance(info.value, BitlootError)
    assert type(info.value).__module__ == "bitloot_lite.errors"
    assert "secret" not in str(info.value)
    assert state(world.db) == before
    assert Order._meta.database.obj is world.db  # a failed connect() rebinds nothing
    assert list(unrelated_cwd.iterdir()) == []  # nor creates a database file


# --------------------------------------------------------------------------- bad CLI input


BAD_COMMANDS = [
    # (arguments, exit code, a word the error line must hold)
    (["rollback", "--steps", "0"], 2, "--steps"),
    (["rollback", "--steps", "-1"], 2, "--steps"),
    (["rollback", "--steps", "two"], 2, "--steps"),
    (["rollback", "--steps", "1.5"], 2, "--steps"),
    (["rollback", "--steps", "2", "--to", MIGRATIONS[0]], 2, "cannot be used together"),
    (["rollback", "--steps", "99"], 1, "cannot roll back 99"),
    (["rollback", "--to", "999_nope"], 1, "unknown migration"),
    (["migrate", "--steps", "1"], 2, "--steps"),
    (["migrate", "--to", "999_nope"], 1, "unknown migration"),
    (["migrate", "--to"], 2, "--to"),
    (["migrate", "--lock-timeout", "-1"], 2, "--lock-timeout"),
    (["migrate", "--lock-timeout", "soon"], 2, "--lock-timeout"),
    (["migrate", "--lock-timeout", "nan"], 1, "lock_timeout"),
    (["rollback", "--lock-timeout", "-1"], 2, "--lock-timeout"),
    (["baseline", "--to", MIGRATIONS[0], "--lock-timeout", "-1"], 2, "--lock-timeout"),
    (["migrate", "--ddl-lock-timeout", "-5"], 2, "--ddl-lock-timeout"),
    (["migrate", "--ddl-lock-timeout", "nan"], 1, "ddl_lock_timeout"),
    (["migrate", "--migrations", "/nonexistent"], 1, "no such folder: /nonexistent"),
    (["sql", "--rollback", "0"], 2, "--rollback"),
    (["sql", "--rollback", "99"], 1, "cannot roll back 99"),
    (["sql", "--to", "999_nope"], 1, "unknown migration"),
    (["baseline"], 2, "--to"),
    (["baseline", "--to", MIGRATIONS[0]], 1, "baseline"),
    (["status", "--bogus"], 2, "--bogus"),
    (["frobnicate"], 2, "frobnicate"),
]
BAD_URLS = [
    ("garbage", "invalid database URL"),
    ("foo://u:secret@host/db", "invalid database URL"),
    ("sqlite:///x.db?foo=1", "invalid database URL"),
    ("sqlite:///x.db?busy_timeout=soon", "busy_timeout"),
    ("postgresql://u:secret@127.0.0.1:1/x", "cannot connect"),
    ("postgresql://u@h:99999/x", "invalid database URL"),
]


def _assert_one_line_error(result, code, word):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: "), result.stderr
    assert word in last, last
    assert "secret" not in result.output


@pytest.mark.parametrize(("args", "code", "word"), BAD_COMMANDS,
                         ids=[" ".join(case[0]) for case in BAD_COMMANDS])
def test_bad_cli_options_are_one_line_errors_and_change_nothing(
    world, unrelated_cwd, args, code, word
):
    before = state(world.db)
    result = run_cli(args[0], "--database", world.url, *args[1:])
    _assert_one_line_error(result, code, word)
    assert result.stdout == ""
    assert state(world.db) == before
    assert list(unrelated_cwd.iterdir()) == []


@pytest.mark.parametrize("command", ["migrate", "rollback", "status", "sql", "check"])
@pytest.mark.parametrize(("url", "word"), BAD_URLS, ids=[case[0] for case in BAD_URLS])
def test_a_bad_database_url_is_a_one_line_error(unrelated_cwd, command, url, word):
    code = 2 if command in ("status", "check") else 1
    for result in (run_cli(command, "--database", url),
                   run_cli(command, env={"DATABASE_URL": url})):
        _assert_one_line_error(result, code, word)
        assert result.stdout == ""
    assert list(unrelated_cwd.iterdir()) == []  # no database file made on the way
