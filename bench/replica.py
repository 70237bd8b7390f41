"""10. find_order_by_reservation on a read replica, against the same lookup on the primary.

A private primary and its streaming hot standby (tests/servers.py: initdb and
pg_basebackup -R with the machine's own binaries, on free loopback ports,
stopped afterwards): the shared server is neither used nor reconfigured. The
same orders are on both; bitloot-lite connected with ``replica=`` reads the
standby, the other reads the primary. A third row: the first read after a write,
which pays for the read-your-writes check (the primary's WAL position, then the
replica's), before it reads the replica.
"""

import random
import statistics
import sys
import time

import pytest

import bitloot_lite as bl
from bitloot_lite.db import database_proxy, open_database
from bitloot_lite.replicas import attach

from .common import Target, rate, table, test_servers
from .scenarios import fill_orders, reservation

REPLICA_ORDERS = 100_000
LOOKUPS = 400  # per contender and repetition
PRIMARY, REPLICA, AFTER_WRITE = ("on the primary", "on the replica",
                                 "on the replica, first read after a write")


def _servers():
    """tests/servers.py (the clone's own), or None with the reason printed."""
    try:
        servers = test_servers()
        servers.bindir()
        servers._owner()
    except (ImportError, pytest.skip.Exception, pytest.fail.Exception) as exc:
        print(f"-- not measured: no private PostgreSQL servers here ({exc})")
        return None
    return servers


def replica(settings, databases):
    orders = settings.scaled(REPLICA_ORDERS, 1000)
    lookups = settings.scaled(LOOKUPS, 10)
    print("\n== 10. Lookup on a read replica (PostgreSQL) ==")
    print(f"find_order_by_reservation of random reservations among {orders:,} orders, "
          f"on a private primary and on its streaming standby ({settings.reps} "
          f"repetitions of {lookups} lookups per contender, in turn, each lookup timed)")
    sys.stdout.flush()
    servers = _servers()
    if servers is None:
        return [Target("10. replica lookup", "postgres", "measured", "no servers", None)]
    with servers.primary() as primary, servers.standby(primary) as standby:
        url = primary.create_database("bitloot_bench")
        plain, routed = open_database(url), open_database(url)
        try:
            bl.migrate(plain)
            fill_orders(url, orders)
            _caught_up(primary, standby)
            attach(routed, standby.url("bitloot_bench"))
            latencies = _lookups(plain, routed, orders, settings.reps, lookups)
        finally:
            database_proxy.initialize(None)
            plain.close()
            routed.close()
    medians = {name: statistics.median(values) for name, values in latencies.items()}
    rows = [[name, f"{medians[name] * 1e6:.0f}", rate(1 / medians[name]),
             f"{medians[PRIMARY] / medians[name]:.2f}x"] for name in (PRIMARY, REPLICA,
                                                                      AFTER_WRITE)]
    print(table(["bitloot-lite", "median us", "lookups/s", "rate vs the primary"], rows))
    ratio = medians[PRIMARY] / medians[REPLICA]
    return [Target("10. replica lookup", "postgres", ">= 0.9x the primary's rate",
                   f"{ratio:.2f}x", ratio >= 0.9)]


def _caught_up(primary, standby, timeout=120):
    (lsn,), = primary.sql("SELECT pg_current_wal_insert_lsn()::text")
    deadline = time.monotonic() + timeout
    while not standby.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]:
        if time.monotonic() > deadline:
            raise TimeoutError("the standby did not catch up")
        time.sleep(0.05)


def _lookups(plain, routed, orders, reps, lookups):
    chooser = random.Random(20261201)
    clock = time.perf_counter
    latencies = {PRIMARY: [], REPLICA: [], AFTER_WRITE: []}
    for rep in range(reps + 1):  # the first round is the warm-up
        for name, database in ((PRIMARY, plain), (REPLICA, routed), (AFTER_WRITE, routed)):
            database_proxy.initialize(database)
            times = latencies[name]
            for rid in [reservation(chooser.randint(1, orders)) for _ in range(lookups)]:
                if name == AFTER_WRITE:
                    routed.replica.wrote()  # as a write of this process would
                started = clock()
                bl.find_order_by_reservation(rid)
                elapsed = clock() - started
                if rep:
                    times.append(elapsed)
            if name != PRIMARY and not routed.replica.ran_on_replica():
                raise AssertionError(f"the replica did not serve the reads "
                                     f"({routed.replica.fallback})")
    return latencies
