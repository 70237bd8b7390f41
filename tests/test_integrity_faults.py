"""Integrity under faults (issue 9, point 4): a full disk, SQLite rolling a transaction
back by itself, masked URLs whatever their shape, one migration lock per database
file, JSON numbers that read back as written, a payment racing its order's deletion,
and what a SQLite deadlock-avoiding SQLITE_BUSY says.

Nothing is mocked. A full disk is either SQLite's own limit (``PRAGMA max_page_count``,
which makes SQLite raise SQLITE_FULL exactly as a full disk does) or, where the test
can mount one (root), a real, small tmpfs filled to the last block.
"""

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import conftest
import pytest
from conftest import LAUNCHER, MIGRATIONS, clean_env, fetch, opened, run_cli, sqlite_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitloot_lite
from bitloot_lite import (
    BitlootError,
    DatabaseBusy,
    DatabaseUnavailable,
    InvalidDatabaseURL,
    NotFound,
    Order,
    Payment,
    WebhookLog,
    migrating,
)
from bitloot_lite.db import open_database
from bitloot_lite.errors import DatabaseFull, LockTimeout, TransactionLost
from bitloot_lite.schema import HISTORY_TABLE

# --------------------------------------------------------------------------- a full disk


def fill_to_the_limit(database):
    """Let ``database`` (SQLite) grow by two pages at most: the next writes fail with
    SQLITE_FULL. Returns a function that lifts the limit again (on the sqlite3
    connection itself: inside a lost transaction, bitloot-lite refuses every statement)."""
    pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
    database.execute_sql(f"PRAGMA max_page_count = {pages + 2}")
    return lambda: database.connection().execute("PRAGMA max_page_count = 1073741823")


def orders_until_full(count=10_000):
    """Create one-item orders until SQLite says the disk is full; returns that error.

    One row per statement: for such a statement SQLite rolls back the whole
    transaction on SQLITE_FULL (a multi-row one has a statement journal and
    undoes only itself), which is the case the service layer must survive.
    """
    for number in range(count):
        try:
            bitloot_lite.create_order(f"filler{number}@example.com", [("x" * 100, 1)])
        except DatabaseFull as exc:
            return exc
    raise AssertionError("the database never filled up")


def emails(url):
    with opened(url) as other:
        return sorted(email for (email,) in fetch(other, 'SELECT "email" FROM "orders"'))


@sqlite_only
def test_after_sqlite_rolled_the_callers_transaction_back_nothing_more_is_committed(
        migrated, db_url):
    lift = fill_to_the_limit(migrated)
    # Leaving the block raises a BitlootError too, not peewee's "cannot rollback".
    with pytest.raises(TransactionLost) as leaving, migrated.atomic():
        bitloot_lite.create_order("first@example.com", [("p", 1)])
        full = orders_until_full()
        assert full.transaction_lost
        assert "whole enclosing transaction was rolled back" in str(full)
        lift()  # room again: what follows would succeed, and must not be committed
        with pytest.raises(TransactionLost) as later:
            bitloot_lite.create_order("later@example.com", [("p", 1)])
        with pytest.raises(TransactionLost):
            Order.create(email="model@example.com")  # the caller's own peewee writes too
        with pytest.raises(TransactionLost), migrated.atomic():  # a nested block
            bitloot_lite.create_order("nested@example.com", [("p", 1)])
    assert isinstance(leaving.value, BitlootError)
    assert later.value.operation == "create_order"
    assert "database or disk is full" in str(later.value) and "retry" in str(later.value)
    assert "commit" in str(leaving.value)
    assert emails(db_url) == []  # the first order is gone, and nothing later was committed
    # The connection is usable again once the block is left.
    bitloot_lite.create_order("after@example.com", [("p", 1)])
    assert emails(db_url) == ["after@example.com"]


@sqlite_only
def test_leaving_the_block_with_the_error_raises_that_error(migrated, db_url):
    fill_to_the_limit(migrated)
    with pytest.raises(DatabaseFull) as info, migrated.atomic():
        bitloot_lite.create_order("first@example.com", [("p", 1)])
        for number in range(10_000):  # the DatabaseFull leaves the block
            bitloot_lite.create_order(f"filler{number}@example.com", [("x" * 100, 1)])
    assert info.value.transaction_lost
    assert emails(db_url) == []


@sqlite_only
def test_create_order_on_a_full_database_says_the_disk_is_full(migrated, db_url):
    fill_to_the_limit(migrated)
    before = len(emails(db_url))
    error = orders_until_full()  # no transaction of the caller's: each call is its own
    assert isinstance(error, DatabaseFull) and not error.transaction_lost
    assert "database or disk is full" in str(error) and "no transaction" not in str(error)
    assert len(emails(db_url)) >= before  # every order before the failing one is kept


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB filesystem (tmpfs) to fill up; skipped where it cannot be mounted."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill_disk(folder, leave=64 * 1024):
    """Fill ``folder``'s filesystem to the last block, then free ``leave`` bytes of it.
    Returns the filler file: unlink it to make room again."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(chunk)
        size = handle.tell()
    assert os.statvfs(folder).f_bavail == 0
    os.truncate(filler, max(size - leave, 0))
    return filler


def with_orders(url, count, to=None):
    """Migrate ``url`` (to ``to``) and give it ``count`` orders; returns the order count."""
    with opened(url) as database:
        migrating.migrate(database, to=to)
        with database.atomic():
            for number in range(count):
                database.execute_sql(
                    'INSERT INTO "orders" ("id", "email", "status", "total", "createdAt", '
                    "\"updatedAt\") VALUES (?, ?, 'created', 0, '2026-01-01', '2026-01-01')",
                    (str(uuid.uuid4()), f"customer{number}@example.com" + "x" * 150))
    return count


def applied(url):
    with opened(url) as database:
        return list(migrating.Router(database).history())


def assert_one_clean_line(result, *words):
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and all(word in lines[0] for word in words), lines[0]
    assert "no transaction is active" not in lines[0]
    return lines[0]


@sqlite_only
def test_migrate_on_a_full_disk_names_the_full_disk_and_changes_nothing(small_disk, backend):
    url = f"sqlite:///{small_disk / 'bitloot.db'}"
    rows = with_orders(url, 3000, to=MIGRATIONS[2])
    filler = fill_disk(small_disk)

    result = run_cli("migrate", "--database", url)

    line = assert_one_clean_line(result, "database or disk is full", "free space")
    assert f"migrate of {MIGRATIONS[3]} failed and was undone" in line
    assert applied(url) == MIGRATIONS[:3]
    filler.unlink()
    with opened(url) as database:
        assert fetch(database, 'SELECT count(*) FROM "orders"') == [(rows,)]
        assert migrating.migrate(database) == MIGRATIONS[3:]


@sqlite_only
def test_rollback_on_a_full_disk_names_the_full_disk_and_keeps_a_boundary(small_disk, backend):
    url = f"sqlite:///{small_disk / 'bitloot.db'}"
    rows = with_orders(url, 3000)
    filler = fill_disk(small_disk)

    result = run_cli("rollback", "--database", url, "--to", MIGRATIONS[2])

    line = assert_one_clean_line(result, "database or disk is full", "free space")
    assert "rollback of" in line and "failed and was undone" in line
    left = applied(url)
    assert left == MIGRATIONS[:len(left)] and len(left) > 3  # a migration boundary
    filler.unlink()
    with opened(url) as database:
        assert fetch(database, 'SELECT count(*) FROM "orders"') == [(rows,)]
        assert migrating.rollback(database, to=MIGRATIONS[2])
        assert migrating.migrate(database) == MIGRATIONS[3:]


@sqlite_only
def test_create_order_on_a_really_full_disk_is_database_full(small_disk, backend):
    url = f"sqlite:///{small_disk / 'bitloot.db'}"
    with_orders(url, 0)
    database = bitloot_lite.connect(url)
    try:
        fill_disk(small_disk, leave=0)
        error = orders_until_full()
        assert "database or disk is full" in str(error)
        with pytest.raises(DatabaseFull), database.atomic():
            for number in range(1000):
                bitloot_lite.create_order(f"more{number}@example.com", [("x" * 100, 1)])
    finally:
        database.close()


# --------------------------------------------------------------------------- URL masking

#: The password of every URL below, in pieces: none of them may ever be shown.
PIECES = ("S3cr", "Xq9", "Zk7")

#: Malformed or unusual URLs, each holding a password made of PIECES.
BAD_URLS = [
    "postgresql://app:S3cr/Xq9@db.internal/bitloot",  # / in the password
    "postgresql://app:S3cr#Xq9@db.internal/bitloot",  # #
    "postgresql://app:S3cr?Xq9@db.internal/bitloot",  # ?
    "postgresql://app:S3cr/Xq9#Zk7?@127.0.0.1/bitloot",
    "app:S3crXq9@db.internal/bitloot",  # no scheme
    "S3crXq9@db.internal/bitloot",
    "postgresql:/app:S3crXq9@127.0.0.1/bitloot",  # one slash: libpq took it for a path
    "postgresql:app:S3crXq9@127.0.0.1/bitloot",
    "postgresql://app:S3crXq9@127.0.0.1:1,127.0.0.1:2/bitloot",  # libpq multi-host
    "postgresql://app@127.0.0.1:1/bitloot?password=S3crXq9",
    "postgresql://app@127.0.0.1:1/bitloot?sslmode=disable&password=S3cr#Xq9",
    "postgresql://app@127.0.0.1:1/bitloot?password=S3cr&Xq9",
    "postgresql://app@127.0.0.1:1/bitloot?PassWord=S3cr+Xq9&sslpassword=Zk7",
    "postgresql://app:S3cr@Xq9@127.0.0.1:1/bitloot",  # an unencoded @
    "postgresql://app:S3cr:Xq9@[::1/bitloot",  # a broken IPv6 host
    "postgresql://app:S3crXq9@db.internal:99999/bitloot",
    "postgresql://app:S3cr%2FXq9@127.0.0.1:1/bitloot",  # well formed, unreachable
    "postgresql://app:S3crXq9@127.0.0.1:5432/bitloot_no_such_database",
    "sqlite:///bitloot.db?password=S3crXq9",
    "sqlite:/bitloot.db?passwd=S3cr#Xq9",
    "sqlite://app:S3crXq9@bitloot.db",  # peewee: an in-memory database, "bitloot.db" its host
    "mysql://app:S3cr/Xq9@db.internal/bitloot",
]


def assert_hidden(text):
    for piece in PIECES:
        assert piece not in text, text


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_url_never_shows_its_password(url, unrelated_cwd):
    assert_hidden(bitloot_lite.mask_url(url))
    with pytest.raises(BitlootError) as info:
        open_database(url)
    error = info.value
    assert isinstance(error, (InvalidDatabaseURL, DatabaseUnavailable)), error
    assert_hidden(str(error))
    assert_hidden(error.url)
    assert error.__context__ is None and error.__cause__ is None  # no driver text attached
    assert not list(unrelated_cwd.iterdir())  # nothing was created on the way


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-vv"]])
def test_the_cli_never_shows_the_password_of_a_bad_url(url, verbosity, unrelated_cwd):
    for command in (["status"], ["migrate"]):
        result = run_cli(*command, *verbosity, "--database", url)
        assert result.exit_code in (1, 2), result.output
        assert_hidden(result.stdout + result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, result.stderr
    result = run_cli("status", "-vv", env={"DATABASE_URL": url})
    assert_hidden(result.stdout + result.stderr)


def test_logs_never_show_the_password(caplog):
    caplog.set_level(logging.DEBUG)
    for url in BAD_URLS:
        with contextlib.suppress(BitlootError):
            open_database(url).close()
    assert_hidden(caplog.text)


@pytest.mark.parametrize("url, masked", [
    # A password with / # ? that the parsers would misread: masked to the last @.
    ("postgresql://app:S3cr/Xq9@db.internal/bitloot", "postgresql://app:***@db.internal/bitloot"),
    ("postgresql://app:S3cr#Xq9@db/bitloot", "postgresql://app:***@db/bitloot"),
    ("postgresql://app:S3cr?Xq9@db/bitloot?sslmode=require",
     "postgresql://app:***@db/bitloot?sslmode=require"),
    ("postgresql://app:S3cr@Xq9@db/bitloot", "postgresql://app:***@db/bitloot"),
    # libpq's multi-host form
    ("postgresql://app:S3cr@h1:5432,h2:5433/bitloot",
     "postgresql://app:***@h1:5432,h2:5433/bitloot"),
    # no scheme, one slash: nothing after the scheme is shown
    ("app:S3crXq9@db.internal/bitloot", "app:***"),
    ("S3crXq9@db.internal/bitloot", "***"),
    ("postgresql:/app:S3crXq9@db/bitloot", "postgresql:***"),
    # query secrets, also with an unencoded & or #
    ("postgresql://app@db/bitloot?password=S3cr", "postgresql://app@db/bitloot?password=***"),
    ("postgresql://app@db/bitloot?password=S3cr#Xq9&sslmode=require",
     "postgresql://app@db/bitloot?password=***&sslmode=require"),
    ("postgresql://app@db/bitloot?password=S3cr&Xq9", "postgresql://app@db/bitloot?password=***&***"),
    ("sqlite:///x.db?password=S3cr", "sqlite:///x.db?password=***"),
    # what must stay as it is
    ("sqlite:///bitloot.db", "sqlite:///bitloot.db"),
    ("sqlite:////tmp/a@b.db", "sqlite:////tmp/a@b.db"),
    ("postgresql://app@db/bitloot?application_name=a@b",
     "postgresql://app@db/bitloot?application_name=a@b"),
])
def test_mask_url_whatever_the_shape(url, masked):
    assert bitloot_lite.mask_url(url) == masked


@pytest.mark.parametrize("url", ["sqlite:bitloot.db", "sqlite:/bitloot.db", "sqlite://bitloot.db"])
def test_a_sqlite_url_peewee_would_misread_is_refused(url, unrelated_cwd):
    # peewee reads these as "itloot.db", a relative "bitloot.db", and an in-memory
    # database (whose writes vanish): refused, naming the form to use.
    with pytest.raises(InvalidDatabaseURL) as info:
        open_database(url)
    assert "sqlite:///" in str(info.value)
    assert not list(unrelated_cwd.iterdir())


def test_a_well_formed_url_still_connects(db_url):
    with opened(db_url) as database:
        assert fetch(database, "SELECT 1") == [(1,)]


# --------------------------------------------------------------------------- one lock per file



def start_together(commands, folder):
    """One real CLI process per argument list in ``commands``, released at once;
    returns [(exit code, stdout, stderr)]."""
    barrier = folder / "go"
    processes = [
        subprocess.Popen([sys.executable, "-c", LAUNCHER, str(barrier), *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=clean_env())
        for args in commands
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(folder.glob("go.ready.*"))) < len(processes):
            assert time.monotonic() < deadline, "the processes never became ready"
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            time.sleep(0.01)
        barrier.touch()
        outputs = [p.communicate(timeout=120) for p in processes]
        return [(p.returncode, *output) for p, output in zip(processes, outputs, strict=True)]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()


@sqlite_only
@pytest.mark.parametrize("round_", range(3))
def test_a_symlink_and_a_hard_link_to_one_file_share_one_migration_lock(
        tmp_path, backend, round_):
    real = tmp_path / "data" / "bitloot.db"
    real.parent.mkdir()
    rows = with_orders(f"sqlite:///{real}", 2000, to=MIGRATIONS[2])  # 004 has rows to rebuild
    symlink, hardlink = tmp_path / "symlinked" / "bitloot.db", tmp_path / "linked" / "shop.db"
    symlink.parent.mkdir()
    hardlink.parent.mkdir()
    symlink.symlink_to(real)
    os.link(real, hardlink)
    folder = tmp_path / "barrier"
    folder.mkdir()

    results = start_together([["migrate", "--database", f"sqlite:///{path}"]
                              for path in (real, symlink, hardlink)], folder)

    assert [code for code, _out, _err in results] == [0, 0, 0], results
    applied_lines = [line.split()[1] for _code, out, _err in results
                     for line in out.splitlines() if line.startswith("applied ")]
    assert sorted(applied_lines) == MIGRATIONS[3:], results  # each once, by one of them
    with opened(f"sqlite:///{real}") as database:
        names = [name for (name,) in fetch(database, f'SELECT "name" FROM "{HISTORY_TABLE}"')]
        assert names == MIGRATIONS
        (create,) = fetch(database, "SELECT sql FROM sqlite_master WHERE name = 'orders'")[0]
        assert create.count("CHK_orders_status") == 1, create
        assert fetch(database, 'SELECT count(*) FROM "orders"') == [(rows,)]
        assert fetch(database, "PRAGMA integrity_check") == [("ok",)]


# --------------------------------------------------------------------------- JSON numbers


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_db(request, tmp_path_factory):
    """One migrated database per backend for the JSON tests (hypothesis shares it)."""
    folder = tmp_path_factory.mktemp("json")
    with conftest.migrated_database(request, request.param, folder) as (_url, database):
        yield database


@pytest.fixture
def json_db(shared_db):
    return conftest.bound_and_emptied(shared_db)


#: Floats that Python writes with a positive exponent, which jsonb used to hand back as ints.
BIG_FLOATS = {"a": 1e23, "b": 1.5e300, "c": 6.6e16, "d": [-1e23, 1e16, 1.7976931348623157e308],
              "e": {"f": 2.5e20, "g": 1e-7, "h": 0.1, "i": -0.0, "j": 5e-324}}


def same_json(a, b):
    """Equal, and of the same JSON types (1e23 is not 100000000000000000000000)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            same_json(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same_json, a, b))
    return type(a) is type(b) and a == b


def test_json_floats_read_back_as_written(json_db):
    hook = bitloot_lite.record_webhook("hook-floats", "payment", BIG_FLOATS)
    assert same_json(WebhookLog.get_by_id(hook.id).payload, BIG_FLOATS)
    again = bitloot_lite.record_webhook("hook-floats", "payment", BIG_FLOATS)
    assert same_json(again.payload, BIG_FLOATS) and again.attempt_count == 2
    order = bitloot_lite.create_order("a@example.com", [("p", 1)])
    payment = bitloot_lite.record_payment(order, "pay-floats", "waiting", raw_payload=BIG_FLOATS)
    assert same_json(payment.raw_payload, BIG_FLOATS)
    assert same_json(Payment.get_by_id(payment.id).raw_payload, BIG_FLOATS)
    via_model = Payment.create(order=order, external_id="pay-model", raw_payload=BIG_FLOATS)
    assert same_json(Payment.get_by_id(via_model.id).raw_payload, BIG_FLOATS)


def test_a_repeated_payment_with_big_floats_writes_nothing(json_db, queries):
    order = bitloot_lite.create_order("a@example.com", [("p", 1)])
    first = bitloot_lite.record_payment(order, "pay-1", "waiting", raw_payload={"amount": 1e23},
                                        price_amount="1.5")
    with queries(json_db) as counted:
        again = bitloot_lite.record_payment(order, "pay-1", "waiting",
                                            raw_payload={"amount": 1e23}, price_amount="1.5")
    # The INSERT that finds the payment there, the read that compares: no UPDATE.
    assert counted.count == 2, counted.statements
    assert again.updated_at == first.updated_at
    assert Payment.get_by_id(first.id).updated_at == first.updated_at


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e23, 1.5e300, 6.6e16, -1e16, 9007199254740993.0, 5e-324, -0.0]),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
)
JSON_KEYS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)


def json_containers(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(JSON_KEYS, inner, max_size=4)


JSON_VALUES = st.recursive(JSON_SCALARS, json_containers, max_leaves=12)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=JSON_VALUES.filter(lambda value: value is not None))
def test_any_json_payload_reads_back_as_written(json_db, payload):
    WebhookLog.delete().execute()
    Payment.delete().execute()
    hook = bitloot_lite.record_webhook("hook", "payment", payload)
    assert same_json(WebhookLog.get_by_id(hook.id).payload, payload)
    order = bitloot_lite.create_order("a@example.com", [("p", 1)])
    first = bitloot_lite.record_payment(order, "pay", "waiting", raw_payload=payload)
    assert same_json(Payment.get_by_id(first.id).raw_payload, payload)
    again = bitloot_lite.record_payment(order, "pay", "waiting", raw_payload=payload)
    assert again.updated_at == first.updated_at  # a repeat that changes nothing writes nothing


# ------------------------------------------------------------------ a payment racing a delete


def wait_until_blocked(watcher, backend, thread, seconds=10):
    """Until the record_payment in ``thread`` waits for the deleter's lock."""
    if backend != "postgres":  # SQLite: it waits in the busy handler; no catalog shows it
        time.sleep(0.2)
        return
    deadline = time.monotonic() + seconds
    while not fetch(watcher, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                             "AND datname = current_database()"):
        assert thread.is_alive() and time.monotonic() < deadline, "it never waited"
        time.sleep(0.01)


@pytest.mark.parametrize("inside_a_transaction", [False, True])
def test_record_payment_racing_the_deletion_of_its_order_is_not_found(
        migrated, db_url, backend, inside_a_transaction):
    outcomes = []

    def pay(order_id, external_id):
        try:
            if not inside_a_transaction:
                bitloot_lite.record_payment(order_id, external_id, "waiting")
                outcomes.append("paid")
                return
            with migrated.atomic():
                try:
                    bitloot_lite.record_payment(order_id, external_id, "waiting")
                    outcomes.append("paid")
                except NotFound as exc:
                    outcomes.append(exc)
                # The caller's transaction goes on after the NotFound, and commits.
                bitloot_lite.create_order(f"after-{external_id}@example.com", [("p", 1)])
        except BaseException as exc:  # noqa: BLE001 - every outcome is reported
            outcomes.append(exc)
        finally:
            migrated.close()  # this thread's connection

    with opened(db_url) as deleter, opened(db_url) as watcher:
        for round_ in range(20):
            order = bitloot_lite.create_order(f"round{round_}@example.com", [("p", 1)])
            with deleter.atomic():
                deleter.execute_sql(f'DELETE FROM "orders" WHERE "id" = {deleter.param}',
                                    (str(order.id),))
                thread = threading.Thread(target=pay, args=(order.id, f"pay-{round_}"))
                thread.start()
                wait_until_blocked(watcher, backend, thread)
            thread.join(30)
            assert not thread.is_alive()

    assert all(isinstance(outcome, NotFound) for outcome in outcomes), outcomes
    assert len(outcomes) == 20
    assert fetch(migrated, 'SELECT count(*) FROM "payments"') == [(0,)]
    if inside_a_transaction:
        assert len([email for email in emails(db_url) if email.startswith("after-")]) == 20


# ------------------------------------------------------------------ SQLite declines to wait


@sqlite_only
@pytest.mark.parametrize("other", ["has written", "is writing"])
def test_sqlite_declining_to_wait_inside_a_transaction_says_so(migrated, db_url, other):
    with opened(db_url) as writer, pytest.raises(DatabaseBusy) as info, migrated.atomic():
        list(Order.select())  # this transaction has read: it holds a snapshot
        if other == "has written":
            writer.execute_sql('INSERT INTO "orders" ("id", "email") VALUES (?, ?)',
                               (str(uuid.uuid4()), "other@example.com"))
        else:
            writer.begin()
            writer.execute_sql('DELETE FROM "webhook_logs"')  # holds the write lock
        started = time.monotonic()
        try:
            bitloot_lite.create_order("mine@example.com", [("p", 1)])
        finally:
            elapsed = time.monotonic() - started
            if other == "is writing":
                writer.rollback()
    assert elapsed < 2  # at once: SQLite did not wait its 5 s
    error = info.value
    assert error.at_once and error.operation == "create_order"
    assert "retry the whole transaction" in str(error)
    assert "longer than" not in str(error)
    assert "mine@example.com" not in emails(db_url)


@sqlite_only
def test_a_busy_timeout_that_ran_out_still_says_so(tmp_path, backend):
    url = f"sqlite:///{tmp_path / 'bitloot.db'}?busy_timeout=300"
    database = bitloot_lite.connect(url)
    try:
        bitloot_lite.migrate(database)
        with opened(url) as writer:
            writer.begin()
            writer.execute_sql('DELETE FROM "webhook_logs"')
            with pytest.raises(DatabaseBusy) as info:
                bitloot_lite.create_order("mine@example.com", [("p", 1)])
            writer.rollback()
    finally:
        database.close()
    assert not info.value.at_once
    assert "longer than the busy timeout (0.3s)" in str(info.value)


@sqlite_only
def test_the_identity_lock_file_is_held_by_its_pid_and_removed_after(tmp_path, backend):
    from bitloot_lite.locking import _FileLock, migration_lock

    real = tmp_path / "bitloot.db"
    hardlink = tmp_path / "other-name.db"
    with opened(f"sqlite:///{real}") as database:
        os.link(real, hardlink)
        identity = Path(_FileLock(database).paths[-1])
        assert f"-{real.stat().st_ino}.lock" in identity.name
        with migration_lock(database):
            assert identity.read_text() == str(os.getpid())
            with opened(f"sqlite:///{hardlink}") as other:  # another name, the same lock
                with pytest.raises(LockTimeout) as info:
                    migrating.migrate(other, lock_timeout=0.2)
                assert f"pid {os.getpid()}" in info.value.holder
        assert not identity.exists()  # no file left behind for every database migrated
        assert migrating.migrate(database) == MIGRATIONS
        assert not identity.exists()
