"""`make bench`: every scenario on SQLite (file, WAL) and PostgreSQL, in one run.

    python -m bench.run [--scale 0.1] [--reps 3] [--pg-url URL] [--only checkout,lookup]

Settings also come from $BITLOOT_BENCH_SCALE (1 = the issue's sizes: 1,000,000
orders, 10,000 keys), $BITLOOT_BENCH_REPS (7) and $BITLOOT_BENCH_PG_URL (the
server to make throwaway ``bitloot_bench_*`` databases on; default
postgresql://postgres@127.0.0.1:5432/postgres). Prints each figure, then
every target, MET or NOT MET. Exits 0 whatever the figures (it is a
measurement, not a test); 2 if it cannot run.
"""

import argparse
import os
import sys
import time
import traceback

import peewee
import psycopg2

from bitloot_lite import DatabaseUnavailable, StorageError
from bitloot_lite.db import mask_url

from . import online, pooled, replica, scenarios
from .common import Databases, Settings, machine, table

SCENARIOS = ("checkout", "restock", "lookup", "startup", "migrate", "online", "pooled",
             "replica")


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, help="shrink every size (env BITLOOT_BENCH_SCALE)")
    parser.add_argument("--reps", type=int, help="repetitions (env BITLOOT_BENCH_REPS)")
    parser.add_argument("--pg-url", help="PostgreSQL server (env BITLOOT_BENCH_PG_URL)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    only = SCENARIOS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    return Settings.from_env(scale=args.scale, reps=args.reps, pg_url=args.pg_url), only


def main(argv=None):
    settings, only = parse(argv)
    # The bench makes its own databases and measures the shipped migrations.
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("BITLOOT_MIGRATIONS_DIR", None)
    started = time.perf_counter()
    print("bitloot-lite benchmarks: python -m bench.run (make bench)")
    for label, value in machine(settings.pg_url):
        print(f"  {label + ':':<12}{value}")
    print(f"  {'settings:':<12}scale {settings.scale:g} (BITLOOT_BENCH_SCALE), "
          f"{settings.reps} repetitions (BITLOOT_BENCH_REPS), PostgreSQL at "
          f"{mask_url(settings.pg_url)} (BITLOOT_BENCH_PG_URL)")
    print("  SQLite is a file in WAL mode, with bitloot-lite's pragmas for every contender; "
          "ratios are bitloot-lite's rate over the other's (> 1: bitloot-lite is faster)")
    sys.stdout.flush()
    databases = Databases(settings.pg_url)
    targets, failed = [], []
    try:
        databases.admin()  # fail now, not after the SQLite half
        for name in only:
            section = time.perf_counter()
            try:
                targets += _run_scenario(name, settings, databases)
            except SERVER_GONE as exc:
                failed.append(name)
                print(f"bench: {name} failed {ATTEMPTS} times on PostgreSQL: "
                      f"{_first_line(exc)}", file=sys.stderr)
            print(f"({name}: {time.perf_counter() - section:.0f}s)")
            sys.stdout.flush()
    finally:
        databases.close()
    print("\n== Targets ==")
    print(table(["scenario", "backend", "target", "measured", "result"], [
        [t.scenario, t.backend, t.wanted, t.measured,
         "-" if t.met is None else "MET" if t.met else "NOT MET"]
        for t in targets]))
    missed = sum(1 for t in targets if t.met is False)
    met = sum(1 for t in targets if t.met)
    print(f"\n{met} met, {missed} not met; the whole run took "
          f"{time.perf_counter() - started:.0f}s")
    if failed:
        print(f"NOT MEASURED (PostgreSQL failed {ATTEMPTS} times): {', '.join(failed)}")
        return 2
    return 0


#: What a scenario raises when the PostgreSQL server restarts or stops under it.
SERVER_GONE = (psycopg2.OperationalError, psycopg2.InterfaceError, peewee.OperationalError,
               peewee.InterfaceError, StorageError, DatabaseUnavailable)


#: Runs of a scenario that loses its PostgreSQL connections, before it is given up.
ATTEMPTS = 3


def _run_scenario(name, settings, databases):
    """The scenario's Targets. Run again if it lost its PostgreSQL connections (the
    machine is shared: the server may be restarted under it), once the server has
    been up for a while; given up after ATTEMPTS runs."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            if name == "startup":
                return scenarios.startup(settings)
            if name == "online":
                return online.online(settings, databases)
            if name == "pooled":
                return pooled.pooled(settings, databases)
            if name == "replica":
                return replica.replica(settings, databases)
            return getattr(scenarios, name)(settings, databases)
        except SERVER_GONE as exc:
            if attempt == ATTEMPTS:
                traceback.print_exc()
                raise
            print(f"bench: {name} lost PostgreSQL ({_first_line(exc)}); running it again "
                  "once the server has been up for a while", flush=True)
            databases.server_alive()  # drops a dead admin connection
            databases.wait_for_server(stable=20)
    raise AssertionError("unreachable")


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
