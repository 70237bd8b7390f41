"""Read replicas (replicas.py, connect(url, replica=...)) on a real streaming standby.

A private primary and its hot standby (tests/servers.py), for the whole module.
Where a read ran is told by ``database.replica.ran_on_replica()`` and, better, by
what it finds: with the standby's replay paused, a row written on the primary
behind the routing's back (a connection of the test's own) is only on the primary.
"""

import logging
import threading
import time
import uuid

import pytest
import servers
from conftest import opened

import bitloot_lite as bl
from bitloot_lite import Order
from bitloot_lite.errors import ConfigurationError
from bitloot_lite.replicas import DEFAULT_MAX_LAG


@pytest.fixture(scope="module")
def topology():
    """(primary, standby, primary URL, standby URL): a migrated database on both."""
    with servers.primary() as primary, servers.standby(primary) as standby:
        url = primary.create_database("bitloot")
        with opened(url) as database:
            bl.migrate(database)
        wait_replayed(primary, standby)
        yield primary, standby, url, standby.url("bitloot")


@pytest.fixture
def routed(topology):
    """The primary, connected with its replica, the models bound; replay resumed after."""
    primary, standby, url, replica_url = topology
    database = bl.connect(url, replica=replica_url)
    try:
        yield database
    finally:
        database.close()
        bl.db.database_proxy.initialize(None)
        if not standby.running():
            standby.start()
        resume(standby)
        wait_replayed(primary, standby)


def wait_replayed(primary, standby):
    """Until the standby has replayed all the primary had inserted into its WAL.

    servers.wait_replayed compares with pg_current_wal_lsn(), the write position,
    which a commit made under synchronous_commit = off (as the private clusters
    run) may still be beyond."""
    (lsn,), = primary.sql("SELECT pg_current_wal_insert_lsn()::text")
    deadline = time.monotonic() + servers.WAIT
    while not standby.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]:
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.02)


def pause(standby):
    standby.sql("SELECT pg_wal_replay_pause()")
    deadline = time.monotonic() + servers.WAIT
    while standby.sql("SELECT pg_get_wal_replay_pause_state()")[0][0] != "paused":
        assert time.monotonic() < deadline, "the standby did not pause"
        time.sleep(0.02)


def resume(standby):
    standby.sql("SELECT pg_wal_replay_resume()")


def behind_the_back(primary, reservation):
    """An order holding ``reservation``, written on the primary by a connection of its
    own (so the routing does not know of it); returns its id."""
    order_id = str(uuid.uuid4())
    primary.sql('INSERT INTO "orders" ("id", "email", "kinguinReservationId") '
                "VALUES (%s, 'direct@example.com', %s)", (order_id, reservation),
                database="bitloot")
    return order_id


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def paid_order(reservation):
    order = bl.create_order("buyer@example.com", [("game-1", 1)], total="5")
    for status in ("waiting", "confirming", "paid"):
        bl.set_status(order, status)
    bl.attach_reservation(order, reservation)
    return order


def test_reads_go_to_the_replica_and_writes_to_the_primary(routed, topology):
    primary, standby, _url, _replica_url = topology
    reservation = unique("res")
    order = paid_order(reservation)  # writes: the primary (the standby is read-only)
    wait_replayed(primary, standby)
    assert bl.find_order_by_reservation(reservation).id == order.id
    assert routed.replica.ran_on_replica()
    pause(standby)
    hidden = unique("hidden")
    behind_the_back(primary, hidden)
    with pytest.raises(bl.NotFound):  # read on the paused replica, which lacks it
        bl.find_order_by_reservation(hidden)
    assert routed.replica.ran_on_replica()
    assert bl.keys_for_order(order) == []  # replayed before the pause: its item, no keys
    resume(standby)
    wait_replayed(primary, standby)
    assert bl.find_order_by_reservation(hidden).email == "direct@example.com"
    assert routed.replica.ran_on_replica()


def test_a_read_after_a_write_sees_it_at_once_without_waiting(routed, topology):
    primary, standby, _url, _replica_url = topology
    pause(standby)  # the replica will not catch up during this test
    reservation = unique("ryw")
    started = time.monotonic()
    order = paid_order(reservation)
    assert bl.find_order_by_reservation(reservation).id == order.id
    assert not routed.replica.ran_on_replica()
    (item,) = order.items
    bl.add_keys(item, ["keys/ryw.enc"])
    assert [key.storage_ref for key in bl.keys_for_order(order)] == ["keys/ryw.enc"]
    assert [key.storage_ref for key in bl.unviewed_keys() if key.order_item_id == item.id] == [
        "keys/ryw.enc"]
    # A model write, and a model read through the replica helper.
    Order.update(email="changed@example.com").where(Order.id == order.id).execute()
    assert bl.from_replica(Order.select().where(Order.id == order.id)).get().email == (
        "changed@example.com")
    assert time.monotonic() - started < DEFAULT_MAX_LAG  # no read waited for the replica
    # Another thread's write, then a read here: seen too (one process).
    other = unique("thread")
    writer = threading.Thread(target=paid_order, args=(other,))
    writer.start()
    writer.join()
    assert bl.find_order_by_reservation(other).status is bl.OrderStatus.PAID
    resume(standby)
    wait_replayed(primary, standby)
    assert bl.find_order_by_reservation(reservation).email == "changed@example.com"
    assert routed.replica.ran_on_replica()  # caught up: the replica again


@pytest.mark.parametrize("how", ["services", "models"])
def test_writes_in_a_transaction_are_seen_once_committed(routed, topology, how):
    primary, standby, _url, _replica_url = topology
    with pytest.raises(bl.NotFound):  # on the replica, which has every write so far
        bl.find_order_by_reservation(unique("none"))
    assert routed.replica.ran_on_replica()
    pause(standby)
    committed = unique("committed")
    with routed.atomic():
        if how == "services":
            paid_order(committed)
        else:
            Order.create(email="model@example.com", kinguin_reservation_id=committed)
    assert bl.find_order_by_reservation(committed).kinguin_reservation_id == committed
    assert not routed.replica.ran_on_replica()


def test_inside_a_transaction_everything_stays_on_the_primary(routed):
    reservation = unique("tx")
    with routed.atomic() as transaction:
        order = paid_order(reservation)  # not committed: only this transaction sees it
        assert bl.find_order_by_reservation(reservation).id == order.id
        assert not routed.replica.ran_on_replica()
        assert bl.read_database() is routed
        transaction.rollback()
    with pytest.raises(bl.NotFound):
        bl.find_order_by_reservation(reservation)


def test_a_lagging_replica_sends_reads_to_the_primary_logged_once(routed, topology, caplog):
    primary, standby, url, replica_url = topology
    routed.replica.max_lag = 0.2
    routed.replica.check_every = 0
    with pytest.raises(bl.NotFound):
        bl.find_order_by_reservation(unique("none"))
    assert routed.replica.ran_on_replica()
    pause(standby)
    hidden = unique("lag")
    behind_the_back(primary, hidden)
    deadline = time.monotonic() + servers.WAIT
    while not standby.sql("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")[0][0]:
        assert time.monotonic() < deadline, "the standby received nothing"
        time.sleep(0.02)
    time.sleep(0.3)  # past max_lag (the lag here is measured by the standby's clock)
    caplog.set_level(logging.INFO, logger="bitloot_lite")
    for _ in range(5):
        assert bl.find_order_by_reservation(hidden).email == "direct@example.com"
        assert not routed.replica.ran_on_replica()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "lags" in warnings[0].getMessage() and "reads go to the primary" in (
        warnings[0].getMessage())
    assert "lags" in routed.replica.fallback
    resume(standby)
    wait_replayed(primary, standby)
    for _ in range(3):
        assert bl.find_order_by_reservation(hidden).email == "direct@example.com"
        assert routed.replica.ran_on_replica()
    back = [r for r in caplog.records if "is back" in r.getMessage()]
    assert len(back) == 1
    assert routed.replica.fallback is None


def test_a_replica_that_goes_down_sends_reads_to_the_primary_logged_once(
        routed, topology, caplog):
    primary, standby, url, replica_url = topology
    routed.replica.retry_after = 0.05  # try it again (and fail again) during the test
    reservation = unique("down")
    order = paid_order(reservation)
    wait_replayed(primary, standby)
    assert bl.find_order_by_reservation(reservation).id == order.id
    assert routed.replica.ran_on_replica()
    standby.stop("immediate")
    caplog.set_level(logging.INFO, logger="bitloot_lite")
    for _ in range(5):  # the first fails on the replica and runs again on the primary
        assert bl.find_order_by_reservation(reservation).id == order.id
        assert [key for key in bl.keys_for_order(order)] == []
        time.sleep(0.06)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name == "bitloot_lite.replicas"]
    assert len(warnings) == 1, warnings
    assert "reads go to the primary" in warnings[0]
    standby.start()
    wait_replayed(primary, standby)
    time.sleep(0.06)
    routed.replica.check_every = 0
    assert bl.find_order_by_reservation(reservation).id == order.id
    assert routed.replica.ran_on_replica()
    assert len([r for r in caplog.records if "is back" in r.getMessage()]) == 1


def test_a_replica_down_from_the_start_does_not_stop_connect(topology, caplog):
    primary, _standby, url, _replica_url = topology
    nowhere = f"postgresql://postgres:secret@127.0.0.1:{servers.free_port()}/bitloot"
    caplog.set_level(logging.WARNING, logger="bitloot_lite")
    database = bl.connect(url, replica=nowhere)
    try:
        reservation = unique("start")
        order = paid_order(reservation)
        for _ in range(3):
            assert bl.find_order_by_reservation(reservation).id == order.id
        messages = [r.getMessage() for r in caplog.records if r.name == "bitloot_lite.replicas"]
        assert len(messages) == 1 and "reads go to the primary" in messages[0]
        assert "secret" not in caplog.text and "***" in messages[0]
    finally:
        database.close()
        bl.db.database_proxy.initialize(None)


def test_the_replica_url_comes_from_the_environment_with_database_url(topology, monkeypatch):
    _primary, _standby, url, replica_url = topology
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DATABASE_REPLICA_URL", replica_url)
    try:
        database = bl.connect()
        assert database.replica.url == replica_url
        database.close()
        database = bl.connect(url)  # an explicit URL: not the environment's replica
        assert getattr(database, "replica", None) is None
        database.close()
        database = bl.connect(replica="")
        assert getattr(database, "replica", None) is None
        database.close()
    finally:
        bl.db.database_proxy.initialize(None)


def test_a_replica_needs_a_postgresql_primary(sqlite_url):
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        bl.connect(sqlite_url, replica="postgresql://postgres@127.0.0.1/x")
    bl.db.database_proxy.initialize(None)


def test_the_readme_example_runs(topology):
    primary, standby, url, replica_url = topology
    import re

    import test_readme

    # a ```py block: test_readme runs the README's first ```python block as its script
    (block,) = [b for b in re.findall(r"```py\n(.*?)```", test_readme.README.read_text(), re.S)
                if "replica=" in b]
    block = block.replace('"postgresql://app@primary/bitloot"', repr(url)).replace(
        '"postgresql://app@replica/bitloot"', repr(replica_url))
    database = bl.connect(url)
    try:
        if not Order.select().where(Order.kinguin_reservation_id == "kinguin-res-8f3a").exists():
            paid_order("kinguin-res-8f3a")
        wait_replayed(primary, standby)
    finally:
        database.close()
    scope = {}
    try:
        exec(compile(block, "README.md", "exec"), scope)
        assert scope["order"].kinguin_reservation_id == "kinguin-res-8f3a"
        assert scope["db"].replica.ran_on_replica()
        assert "kinguin-res-8f3a" in [o.kinguin_reservation_id for o in scope["recent"]]
    finally:
        scope["db"].close()
        bl.db.database_proxy.initialize(None)


def test_a_read_after_the_primary_restarted_reconnects(routed, topology):
    """The read-your-writes check's query on the primary reopens a connection the
    server closed, like any statement outside a transaction."""
    primary, standby, _url, _replica_url = topology
    reservation = unique("restart")
    order = paid_order(reservation)  # a write: the next read asks the primary
    primary.restart()
    assert bl.find_order_by_reservation(reservation).id == order.id
    wait_replayed(primary, standby)
    assert bl.find_order_by_reservation(reservation).id == order.id
    assert routed.replica.ran_on_replica()
