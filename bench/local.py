"""Scenarios 7 and 8: the demo shop (orders/s) and a copy of PostgreSQL into SQLite,
bitloot-lite's against db-to-sqlite's (the `bench` extra).

Both copies run as their command-line tools in a child process, end to end (start-up,
schema, rows, commit), from the same PostgreSQL database into a new SQLite file,
in turn (A, B, A, B ...); rows/s is the source's rows over the wall time. The work
is not the same, and bitloot-lite's is the larger: it migrates the file first (so its
inserts maintain every index of the schema), keeps the foreign keys on, and reads the
whole copy back to check it against the source before it commits; db-to-sqlite
creates the tables and copies the rows.
"""

import contextlib
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bitloot_lite as bl
from bitloot_lite.db import open_database
from bitloot_lite.local import demo as shop

from .common import BACKENDS, Target, rate, sqlite_path, table

DEMO_ORDERS = 100_000  # the size
DEMO_TARGET = 10_000  # orders/s on SQLite
COPY_ORDERS = 20_000  # the source of the copy: about 155,000 rows


def demo(settings, databases):
    orders = settings.scaled(DEMO_ORDERS, 50)
    reps = min(settings.reps, 2)
    print("\n== 7. Demo shop ==")
    print(f"bitloot_lite.local.demo.fill(db, {orders:,}) into a freshly migrated database "
          f"(bitloot-lite demo --orders {orders}), {reps} run(s) per backend, medians")
    rows, targets = [], []
    for backend in BACKENDS:
        rates, cpu, written = [], [], {}
        for rep in range(reps):
            url = databases.new(backend)
            db = open_database(url)
            try:
                bl.migrate(db)
                cpu_started = time.process_time()  # this process's CPU, both its threads
                result = shop.fill(db, orders, seed=rep)
                cpu.append(orders / (time.process_time() - cpu_started))
                rates.append(result.orders_per_second)
                written = result.rows
            finally:
                db.close()
                databases.drop(url)
        median = statistics.median(rates)
        total = sum(written.values())
        rows.append([backend, f"{orders:,}", f"{total:,}", rate(median),
                     f"{rate(min(rates))}-{rate(max(rates))}", rate(median * total / orders),
                     rate(statistics.median(cpu))])
        if backend == "sqlite":
            targets.append(Target("7. demo", backend, f">= {DEMO_TARGET:,} orders/s",
                                  rate(median), median >= DEMO_TARGET))
        else:
            targets.append(Target("7. demo", backend, "orders/s (a figure)", rate(median), None))
    print(table(["backend", "orders", "rows", "orders/s (median)", "range", "rows/s",
                 "orders per CPU-second of this process"], rows))
    print("(the last column leaves out the machine's other load, and PostgreSQL's server)")
    return targets


def _db_to_sqlite():
    """The db-to-sqlite command beside this Python (the bench extra), or None."""
    found = Path(sys.executable).with_name("db-to-sqlite")
    return str(found) if found.exists() else shutil.which("db-to-sqlite")


def copy(settings, databases):
    orders = settings.scaled(COPY_ORDERS, 50)
    reps = min(settings.reps, 3)
    print("\n== 8. Copy PostgreSQL -> SQLite ==")
    source = databases.new("postgres")
    db = open_database(source)
    try:
        bl.migrate(db)
        rows = sum(shop.fill(db, orders, seed=1).rows.values())
    finally:
        db.close()
    tool = _db_to_sqlite()
    print(f"a demo shop of {orders:,} orders ({rows:,} rows) on PostgreSQL into a new SQLite "
          f"file: `bitloot-lite copy` against `db-to-sqlite --all`, as child processes, "
          f"{reps} interleaved run(s) each, medians")
    contenders = {"bitloot-lite": lambda out: [sys.executable, "-m", "bitloot_lite", "copy",
                                               source, out, "-q"]}
    if tool is None:
        print("db-to-sqlite is not installed (pip install -e '.[bench]'): bitloot-lite only")
    else:
        # SQLAlchemy 2.1 reads postgresql:// as psycopg 3; the bench has psycopg2.
        url = source.replace("postgresql://", "postgresql+psycopg2://", 1)
        contenders["db-to-sqlite"] = lambda out: [tool, url, sqlite_path(out), "--all"]
    seconds = {name: [] for name in contenders}
    for _ in range(reps):
        for name, command in contenders.items():
            out = databases.sqlite()
            try:
                started = time.perf_counter()
                subprocess.run(command(out), check=True, capture_output=True, timeout=1800)
                seconds[name].append(time.perf_counter() - started)
                _check_copy(sqlite_path(out), rows)
            finally:
                databases.drop(out)
    databases.drop(source)
    lite = rows / statistics.median(seconds["bitloot-lite"])
    printed = []
    for name, values in seconds.items():
        median = rows / statistics.median(values)
        ratio = "" if name == "bitloot-lite" else f"{lite / median:.2f}x"
        printed.append(["postgres -> sqlite", name, rate(median),
                        f"{rate(rows / max(values))}-{rate(rows / min(values))}",
                        f"{statistics.median(values):.1f}", ratio])
    print(table(["copy", "contender", "rows/s (median)", "range", "seconds", "bitloot-lite is"],
                printed))
    if "db-to-sqlite" not in seconds:
        return [Target("8. copy", "postgres -> sqlite", "rows/s (db-to-sqlite missing)",
                       rate(lite), None)]
    ratio = lite / (rows / statistics.median(seconds["db-to-sqlite"]))
    return [Target("8. copy", "postgres -> sqlite", ">= 1.0x db-to-sqlite", f"{ratio:.2f}x",
                   ratio >= 1.0)]


def _check_copy(path, rows):
    """The copy holds the source's rows (db-to-sqlite also copies migratehistory)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        copied = sum(connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                     for name in ("orders", "order_items", "keys", "payments", "webhook_logs"))
    if copied != rows:
        raise AssertionError(f"the copy in {path} holds {copied} rows, not {rows}")
