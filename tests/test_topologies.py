"""Production topologies on real, private servers (tests/servers.py): PgBouncer in
transaction and in session pooling (its default configuration), prepared statements
that vanish or go stale, a direct migration URL, a hot standby, a failover.

Nothing here touches the shared server beyond creating and dropping its own databases.
"""

import datetime as dt
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import servers
from conftest import MIGRATIONS, REPO_ROOT, clean_env, fetch, opened, postgres_only, run_cli

import bitloot_lite
from bitloot_lite import InvalidDatabaseURL, Order, StorageError

pytestmark = pytest.mark.usefixtures("unrelated_cwd")


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def primary():
    """A private primary for the module, with a database ``shop`` migrated to the newest
    migration (directly: migrations never go through a pooler)."""
    with servers.primary() as cluster:
        url = cluster.create_database("shop")
        database = bitloot_lite.connect(url)
        try:
            bitloot_lite.migrate(database)
        finally:
            database.close()
            bitloot_lite.db.database_proxy.initialize(None)
        yield cluster


@pytest.fixture(scope="module", params=["transaction", "session"])
def bouncer(request, primary):
    with servers.pgbouncer(primary, request.param) as pgbouncer:
        yield pgbouncer


@pytest.fixture(scope="module")
def transaction_bouncer(primary):
    with servers.pgbouncer(primary, "transaction") as pgbouncer:
        yield pgbouncer


@pytest.fixture
def bound():
    """Unbinds the models after the test, whatever it connected."""
    yield
    bitloot_lite.db.database_proxy.initialize(None)


def lifecycle(tag):
    """One order from checkout to a revealed key, through every service call."""
    bl = bitloot_lite
    order = bl.create_order(f"{tag}@example.com", [("kinguin-1", 2)], total="9.99")
    bl.record_webhook(f"np-{tag}", "payment", {"status": "waiting"}, order=order)
    bl.record_payment(order, f"np-{tag}", "waiting", price_amount="9.99")
    bl.set_status(order, "waiting")
    db = bitloot_lite.db.database_proxy.obj
    with db.atomic():  # some of it inside the caller's transaction
        bl.record_payment(order, f"np-{tag}", "finished")
        bl.set_status(order, "paid")
    bl.attach_reservation(order, f"res-{tag}")
    assert bl.find_order_by_reservation(f"res-{tag}").id == order.id
    assert bl.add_keys(order.items[0], [f"keys/{tag}/a", f"keys/{tag}/b"]) == 2
    assert bl.set_status(order, "fulfilled").status.value == "fulfilled"
    keys = bl.keys_for_order(order)
    assert bl.reveal_key(keys[0]).viewed_at is not None
    return order


# --------------------------------------------------------------------------- PgBouncer


def test_the_default_pgbouncer_config_accepts_us_and_sessions_stay_utc(bouncer, bound):
    """No startup parameter PgBouncer refuses (options=); the session time zone is UTC
    though the server's is not, also on server connections PgBouncer opens later."""
    database = bitloot_lite.connect(bouncer.url("shop"))
    try:
        assert database.pooled
        assert not database.prepares  # auto: no server-side PREPARE through a pooler
        for _ in range(3):
            bouncer.reconnect()  # the next transaction runs on a new server connection
            (zone, skew), = fetch(database, "SELECT current_setting('TimeZone'), "
                                            "abs(extract(epoch FROM now()::timestamp - %s))",
                                  (dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),))
            assert zone == "UTC" and skew < 60
        order = lifecycle(f"one-{bouncer.mode}")
        assert Order.get_by_id(order.id).status.value == "fulfilled"
        # The server's own now() default of a column is UTC too.
        (gap,), = fetch(database, 'SELECT abs(extract(epoch FROM "createdAt" - '
                                  "(now() AT TIME ZONE 'UTC'))) FROM orders WHERE id = %s",
                        (order.id,))
        assert gap < 60
    finally:
        database.close()


def test_status_and_check_through_pgbouncer(bouncer):
    result = run_cli("status", "--database", bouncer.url("shop"))
    assert result.exit_code == 0, result.output
    assert result.output.count("applied ") == len(MIGRATIONS)
    result = run_cli("check", "--database", bouncer.url("shop"))
    assert result.exit_code == 0, result.output
    assert "matches the schema" in result.output


def test_the_prepare_option(primary, transaction_bouncer, bound):
    direct = primary.url("shop")
    cases = [(direct, False, True), (direct + "?prepare=false", False, False),
             (transaction_bouncer.url("shop"), True, False),
             (transaction_bouncer.url("shop", query="prepare=true"), True, True),
             (direct + "?application_name=x&prepare=auto", False, True)]
    for url, pooled, prepares in cases:
        database = bitloot_lite.connect(url)
        try:
            assert (database.pooled, database.prepares) == (pooled, prepares), url
            bitloot_lite.create_order("prepare@example.com", [("kinguin-1", 1)])
            if not pooled:  # what the session really holds
                held = fetch(database, "SELECT count(*) FROM pg_prepared_statements "
                                       "WHERE name LIKE 'bitloot%%'")[0][0]
                assert bool(held) == prepares, url
        finally:
            database.close()
    with pytest.raises(InvalidDatabaseURL, match="prepare must be one of"):
        bitloot_lite.connect(direct + "?prepare=sometimes")


WORKER = textwrap.dedent("""
    import sys, time, traceback, uuid
    sys.path.insert(0, sys.argv[3])
    import bitloot_lite
    from test_topologies import lifecycle
    bitloot_lite.connect(sys.argv[1])
    done = errors = 0
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        try:
            lifecycle(f"w{sys.argv[4]}-{uuid.uuid4().hex[:12]}")
            done += 1
        except Exception:
            errors += 1
            traceback.print_exc()
    print(done, errors)
""")


def run_workers(bouncer, url, seconds, between=None):
    """Four worker processes doing lifecycles on ``url`` for ``seconds``, calling
    ``between()`` every 0.3 s meanwhile; asserts each completed some with no error.
    Returns how many times ``between`` ran."""
    workers = [subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(seconds), str(REPO_ROOT / "tests"), str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env=clean_env()) for n in range(4)]
    calls = 0
    try:
        while any(worker.poll() is None for worker in workers):
            time.sleep(0.3)
            if between is not None:
                between()
                calls += 1
        outputs = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:] + bouncer.log_tail(400)
        done, errors = map(int, out.split())
        assert errors == 0 and done > 0, err[-3000:] + bouncer.log_tail(400)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("query", ["", "prepare=false"])
def test_four_processes_through_a_transaction_pooler_with_recycled_servers(
    transaction_bouncer, query
):
    """Four client processes complete order lifecycles through PgBouncer in transaction
    pooling with zero errors while PgBouncer keeps replacing its server connections."""
    url = transaction_bouncer.url("shop", query=query)
    assert run_workers(transaction_bouncer, url, 6, transaction_bouncer.reconnect) >= 5


@pytest.mark.slow
def test_four_processes_through_a_session_pooler(primary):
    with servers.pgbouncer(primary, "session") as bouncer:
        run_workers(bouncer, bouncer.url("shop"), 4, bouncer.reconnect)


@pytest.mark.slow
def test_four_processes_through_a_pooler_with_a_short_server_lifetime(primary):
    """The other way PgBouncer recycles: server connections older than server_lifetime
    are closed when released (here: every second)."""
    with servers.pgbouncer(primary, "transaction", server_lifetime=1) as bouncer:
        pids = set()

        def note_servers():
            pids.update(bouncer.server_pids())

        run_workers(bouncer, bouncer.url("shop"), 5, note_servers)
    assert len(pids) > 8  # its server sessions were replaced while the workers ran


# --------------------------------------------------------------------------- prepared state


@postgres_only
def test_a_stale_prepared_statement_is_prepared_again(migrated, db_url, bound):
    """A migration that retypes a column makes the plan of a prepared statement stale
    (0A000): outside a transaction the call prepares it again and succeeds; inside one
    it is a clean StorageError, and the next call works."""
    order = bitloot_lite.create_order("stale@example.com", [("kinguin-1", 1)])
    bitloot_lite.set_status(order, "waiting")
    bitloot_lite.set_status(order, "paid")
    bitloot_lite.attach_reservation(order, "res-stale")
    assert bitloot_lite.find_order_by_reservation("res-stale").id == order.id  # prepared
    with opened(db_url) as other:
        other.execute_sql('ALTER TABLE "orders" ALTER COLUMN "email" TYPE text')
    assert bitloot_lite.find_order_by_reservation("res-stale").email == "stale@example.com"

    with opened(db_url) as other:
        other.execute_sql('ALTER TABLE "orders" ALTER COLUMN "email" TYPE varchar')
    with pytest.raises(StorageError) as info, migrated.atomic():
        bitloot_lite.find_order_by_reservation("res-stale")
    assert "0A000" in str(info.value) and info.value.__context__ is None
    assert bitloot_lite.find_order_by_reservation("res-stale").id == order.id
    with migrated.atomic():  # and inside a transaction too, from now on
        assert bitloot_lite.find_order_by_reservation("res-stale").id == order.id


@postgres_only
@pytest.mark.parametrize("query", ["", "?prepare=true"])
def test_prepared_statements_that_vanished_are_prepared_again(db_url, query, bound):
    database = bitloot_lite.connect(db_url + query)
    try:
        bitloot_lite.migrate(database)
        order = bitloot_lite.create_order("gone@example.com", [("kinguin-1", 1)])
        hook = bitloot_lite.record_webhook

        def attempts():
            return hook("np-gone", "payment", {"a": 1}, order=order).attempt_count

        assert attempts() == 1
        database.execute_sql("DEALLOCATE ALL")  # as a DISCARD ALL would
        assert attempts() == 2  # once more, not twice more
        if query:  # still prepared: inside a transaction, a clean error, then it works
            database.execute_sql("DEALLOCATE ALL")
            with pytest.raises(StorageError) as info, database.atomic():
                attempts()
            assert "26000" in str(info.value)
        assert attempts() == 3
        held = fetch(database, "SELECT count(*) FROM pg_prepared_statements")[0][0]
        # Auto turns PREPARE off once sessions forget them; an explicit true keeps it.
        assert bool(held) == (query == "?prepare=true")
    finally:
        database.close()


# --------------------------------------------------------------------------- lost answers


def test_a_write_whose_answer_was_lost_is_not_applied_twice(primary, bound):
    """The server commits a statement and the connection dies before its answer arrives:
    the write is not sent again (it would count a webhook attempt twice), the call fails
    cleanly, and the next call reconnects. A read in the same plight is simply retried."""
    url = primary.create_database(f"cut_{uuid.uuid4().hex[:8]}")
    with servers.cutting_proxy(primary) as proxy:
        database = bitloot_lite.connect(proxy.url(url.rsplit("/", 1)[1]))
        try:
            bitloot_lite.migrate(database)
            order = bitloot_lite.create_order("cut@example.com", [("kinguin-1", 1)])

            def attempt():
                return bitloot_lite.record_webhook("np-cut", "payment", {"a": 1}, order=order)

            assert attempt().attempt_count == 1
            proxy.cut_next_answer()
            with pytest.raises(StorageError):
                attempt()
            (count,), = fetch(database, 'SELECT "attemptCount" FROM webhook_logs')  # reconnects
            assert count == 2  # committed once, by the call that failed
            assert attempt().attempt_count == 3

            proxy.cut_next_answer()
            assert bitloot_lite.keys_for_order(order) == []  # a read: sent again, answered
            assert bitloot_lite.set_status(order, "waiting").status.value == "waiting"
        finally:
            database.close()


# --------------------------------------------------------------------------- migrations


@pytest.fixture(scope="module")
def standby(primary):
    with servers.standby(primary) as cluster:
        servers.wait_replayed(primary, cluster)
        yield cluster


MIGRATING = [("migrate",), ("rollback",), ("baseline", "--to", MIGRATIONS[0]), ("sql",)]


@pytest.mark.parametrize("args", MIGRATING, ids=[args[0] for args in MIGRATING])
def test_migrating_commands_refuse_a_standby_at_once(standby, args):
    result = run_cli(*args, "--database", standby.url("shop"))
    assert result.exit_code == 1, result.output  # also with nothing pending
    assert "read-only standby" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_status_and_check_work_on_a_standby(standby):
    assert run_cli("status", "--database", standby.url("shop")).exit_code == 0
    result = run_cli("check", "--database", standby.url("shop"))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args", MIGRATING, ids=[args[0] for args in MIGRATING])
def test_migrating_commands_refuse_a_pooler_and_name_the_fix(bouncer, args):
    before = servers.query(bouncer.url("shop"), 'SELECT count(*) FROM "migratehistory"')
    result = run_cli(*args, "--database", bouncer.url("shop"))
    assert result.exit_code == 1, result.output
    assert "cannot be trusted" in result.output and "MIGRATION_DATABASE_URL" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert servers.query(bouncer.url("shop"), 'SELECT count(*) FROM "migratehistory"') == before
    # No lock left behind on any server session.
    assert not servers.query(bouncer.url("shop"),
                             "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")


def test_the_migration_url_is_used_by_the_migrating_commands(primary, transaction_bouncer):
    """DATABASE_URL through the pooler for the app, MIGRATION_DATABASE_URL direct."""
    url = primary.create_database(f"two_{uuid.uuid4().hex[:8]}")
    pooled = transaction_bouncer.url(url.rsplit("/", 1)[1])
    env = {"DATABASE_URL": pooled}
    assert run_cli("status", env=env).exit_code == 1  # all pending
    assert run_cli("migrate", env=env).exit_code == 1  # through the pooler: refused
    result = run_cli("sql", env={**env, "MIGRATION_DATABASE_URL": url})
    assert result.exit_code == 0 and "CREATE TABLE" in result.output
    result = run_cli("migrate", env={**env, "MIGRATION_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert f"{len(MIGRATIONS)} migration(s) applied" in result.output
    assert run_cli("status", env=env).exit_code == 0
    result = run_cli("rollback", "--migration-database", url, env=env)
    assert result.exit_code == 0, result.output
    assert run_cli("status", env=env).exit_code == 1
    assert run_cli("migrate", "--migration-database", url, env=env).exit_code == 0


def test_a_server_refusal_is_one_line_not_a_traceback(primary):
    """A migrating command the server refuses half-way (here: a role that may read the
    history but not use its sequence, as sql's setval needs) prints one line."""
    url = primary.create_database(f"refuse_{uuid.uuid4().hex[:8]}")
    assert run_cli("migrate", "--to", MIGRATIONS[1], "--database", url).exit_code == 0
    role = f"reader_{uuid.uuid4().hex[:8]}"
    primary.sql(f'CREATE ROLE "{role}" LOGIN')
    primary.sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',
                database=url.rsplit("/", 1)[1])
    result = run_cli("sql", "--database", url.replace("postgres@", f"{role}@"))
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "permission denied" in lines[0] and "SQLSTATE 42501" in lines[0]


# --------------------------------------------------------------------------- failover


def test_multi_host_urls_are_accepted_and_masked():
    url = "postgresql://app:s3cret@10.0.0.1:5432,10.0.0.2:5433/shop?target_session_attrs=read-write"
    assert bitloot_lite.db.is_multi_host(url)
    assert bitloot_lite.db.mask_url(url) == url.replace("s3cret", "***")
    assert not bitloot_lite.db.is_multi_host("postgresql://app@db:5432/shop?a=1,2")
    with pytest.raises(InvalidDatabaseURL) as info:
        bitloot_lite.connect("postgresql://app:s3cret@127.0.0.1:1,127.0.0.1:2/")
    assert "s3cret" not in str(info.value)


@pytest.mark.slow
def test_a_long_running_script_survives_a_failover(bound):
    """A multi-host URL with target_session_attrs=read-write: the primary stops, its
    standby is promoted, and the script's next call succeeds on the new primary, with
    no write lost or applied twice."""
    with servers.primary() as old, servers.standby(old) as new:
        old.create_database("shop")
        servers.wait_replayed(old, new)
        url = (f"postgresql://postgres@{old.host},{new.host}/shop"
               "?target_session_attrs=read-write&connect_timeout=5")
        database = bitloot_lite.connect(url)
        try:
            bitloot_lite.migrate(database)
            order = bitloot_lite.create_order("failover@example.com", [("kinguin-1", 1)])
            bitloot_lite.set_status(order, "waiting")
            hook = bitloot_lite.record_webhook("np-f", "payment", {"a": 1}, order=order)
            assert hook.attempt_count == 1
            assert run_cli("status", "--database", url).exit_code == 0
            servers.wait_replayed(old, new)

            # A transaction open across the failover fails whole.
            with pytest.raises(StorageError), database.atomic():
                bitloot_lite.create_order("in-flight@example.com", [("kinguin-2", 1)])
                old.stop("fast")
                new.promote()
                bitloot_lite.create_order("in-flight@example.com", [("kinguin-3", 1)])
            assert not database.in_transaction()

            # The next calls, outside a transaction, run on the promoted standby.
            assert bitloot_lite.set_status(order, "paid").status.value == "paid"
            again = bitloot_lite.record_webhook("np-f", "payment", {"a": 1}, order=order)
            assert again.attempt_count == 2
            assert lifecycle("after-failover").status.value == "fulfilled"
            assert fetch(database, "SELECT inet_server_port(), pg_is_in_recovery()") == [
                (new.port, False)]
        finally:
            database.close()
        rows = servers.query(new.url("shop"), 'SELECT o.email, o.status::text, '
                             'w."attemptCount" FROM orders o LEFT JOIN webhook_logs w '
                             'ON w."orderId" = o.id ORDER BY o.email')
        assert rows == [("after-failover@example.com", "fulfilled", 1),
                        ("failover@example.com", "paid", 2)]
        result = run_cli("status", "--database", url)
        assert result.exit_code == 0, result.output


@postgres_only
def test_an_unlock_on_the_wrong_session_ends_the_session_holding_the_lock(db_url):
    """What a pooler that hid itself would do at the end of a migrate: our unlock runs on
    another server session. The lock must not stay behind on the one that took it."""
    from bitloot_lite.locking import _PostgresLock

    with opened(db_url) as holder, opened(db_url) as other:
        lock = _PostgresLock(holder)
        assert lock.try_acquire()
        lock.database = other  # the unlock lands on another session
        lock.release()
        with opened(db_url) as probe:
            deadline = time.monotonic() + 10
            while fetch(probe, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                        (lock.pid,)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not fetch(probe, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                                    "AND pid = %s", (lock.pid,))
            assert _PostgresLock(probe).try_acquire()  # free for the next migrate


@postgres_only
def test_a_prepared_statement_that_already_exists_is_replaced(db_url, bound):
    """42P05: the session already holds a statement of that name (a pooler handed us a
    session another client prepared it on). Ours replaces it, and the call works."""
    from bitloot_lite import statements

    database = bitloot_lite.connect(db_url + "?prepare=true")
    try:
        bitloot_lite.migrate(database)
        order = bitloot_lite.create_order("exists@example.com", [("kinguin-1", 1)])
        ((name, _),) = statements._compile("keys_for_order", True, None, None, True)[1]
        database.execute_sql(f"PREPARE {name} AS SELECT 1")  # same name, not ours
        assert bitloot_lite.keys_for_order(order) == []
        (text,), = fetch(database, "SELECT statement FROM pg_prepared_statements "
                                   "WHERE name = %s", (name,))
        assert '"keys"' in text
    finally:
        database.close()
