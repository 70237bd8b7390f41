"""Online migration on PostgreSQL: the longest stall a writer sees while 005 runs.

A database at 004 with 1,000,000 orders (scaled) is made once and copied
(CREATE DATABASE ... TEMPLATE) for each run. A writer process inserts orders
in a tight loop on its own connection (autocommit: one commit per order) and
records when each commit returned; meanwhile ``bitloot_lite.migrate`` applies
005, either as shipped (its index on ``orders`` built after the commit with
CREATE INDEX CONCURRENTLY) or from a temporary copy of the migrations folder
whose 005 builds the same index with a plain CREATE INDEX inside its
transaction. The stall is the longest gap between two successive commits
that overlaps the migration. Both variants stop at 005 (``MEASURED``): the
migrations after it are not part of the comparison (the plain copy patches
005 only).
"""

import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import psycopg2.errors

import bitloot_lite as bl
from bitloot_lite.db import open_database
from bitloot_lite.migrating import default_migrations_dir

from .common import Target, database_name, raw_connect, table, utc_now
from .scenarios import fill_orders

ORDERS = 1_000_000
ROUNDS = 2  # runs of each variant, in turn
BEFORE = 1.0  # seconds of writing before the migration starts (the writer's normal gaps)
AFTER = 0.3
STALL_TARGET = 0.5
#: The migration measured: from the one before it, up to it and no further.
MEASURED = "005_add_keys_reservation"

CONCURRENT, PLAIN = "CREATE INDEX CONCURRENTLY (shipped)", "plain CREATE INDEX (comparison)"

WRITE = ('INSERT INTO "orders" ("id", "email", "status", "total", "createdAt", "updatedAt") '
         "VALUES (%s, 'writer@example.com', 'created', 9.99, %s, %s)")

#: Appended to a copy of 005: nothing declared for after the commit, so the plain
#: CREATE INDEX its POSTGRES_UP holds stays inside the migration's transaction.
PLAIN_005 = '''

# --- bench/online.py: the plain variant, for comparison only ---
POSTGRES_CONCURRENT_INDEXES = {}
'''


def plain_migrations(folder):
    """A copy of the migrations in ``folder``, its 005 patched with PLAIN_005."""
    target = Path(folder) / "migrations"
    shutil.copytree(default_migrations_dir(), target,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (path,) = target.glob("005_*.py")
    text = path.read_text(encoding="utf-8")
    for name in ("POSTGRES_UP", "POSTGRES_CONCURRENT_INDEXES"):
        if name not in text:
            raise RuntimeError(f"{path.name} has no {name}: update bench/online.py")
    path.write_text(text + PLAIN_005, encoding="utf-8")
    return target


def _writer(url, ready, stop, results):
    """The child process: insert orders until told to stop; send back each commit's time."""
    connection = raw_connect(url)
    connection.autocommit = True
    cursor = connection.cursor()
    commits, errors = [], 0
    while not stop.is_set():
        now = utc_now()
        try:
            cursor.execute(WRITE, (str(uuid.uuid4()), now, now))
        except psycopg2.Error:
            errors += 1
            continue
        commits.append(time.monotonic())  # CLOCK_MONOTONIC: the same clock in every process
        if len(commits) == 100:
            ready.set()
    connection.close()
    results.send((commits, errors))
    results.close()


def measure(url, migrations_dir=None):
    """Migrate ``url`` (at 004) to MEASURED while a writer runs; returns the figures."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    receiver, sender = context.Pipe(duplex=False)
    writer = context.Process(target=_writer, args=(url, ready, stop, sender), daemon=True)
    writer.start()
    db = None
    try:
        if not ready.wait(60):
            raise RuntimeError("the writer did not start writing")
        ready_at = time.monotonic()
        db = open_database(url)
        time.sleep(BEFORE)
        steps = []
        started = time.monotonic()
        # The plain variant's folder replaces the shipped one (a user's folder only adds).
        saved = os.environ.get("BITLOOT_SHIPPED_MIGRATIONS_DIR")
        if migrations_dir is not None:
            os.environ["BITLOOT_SHIPPED_MIGRATIONS_DIR"] = str(migrations_dir)
        try:
            bl.migrate(db, to=MEASURED, on_step=steps.append)
        finally:
            if saved is None:
                os.environ.pop("BITLOOT_SHIPPED_MIGRATIONS_DIR", None)
            else:
                os.environ["BITLOOT_SHIPPED_MIGRATIONS_DIR"] = saved
        ended = time.monotonic()
        time.sleep(AFTER)
    finally:
        stop.set()
        commits, errors = receiver.recv() if receiver.poll(60) else ([], -1)
        writer.join(30)
        if db is not None:
            db.close()
    gaps = list(zip(commits, commits[1:], strict=False))
    during = [b - a for a, b in gaps if b >= started and a <= ended]
    before = [b - a for a, b in gaps if a >= ready_at and b < started]
    index_seconds = sum(step.seconds for step in steps if step.direction == "index")
    return {
        "migrate": ended - started,
        "index": index_seconds,
        "stall": max(during) if during else ended - started,
        "normal": max(before) if before else 0.0,
        "commits": sum(1 for t in commits if started <= t <= ended),
        "errors": errors,
    }


def online(settings, databases):
    orders = settings.scaled(ORDERS, 1000)
    rounds = ROUNDS if settings.scale >= 0.1 else 1
    print("\n== 6. Online migration (PostgreSQL) ==")
    print(f"migrate 004 -> 005 on {orders:,} orders while a writer process inserts orders in a "
          f"tight loop (one commit each); the writer's longest gap between two commits during "
          f"the migration; {rounds} run(s) of each variant, in turn, on copies of one database")
    started = time.perf_counter()
    template = databases.postgres()
    db = open_database(template)
    bl.migrate(db, to="004_orders_status_enum")
    db.close()
    fill_orders(template, orders, reservations=False)
    # Nobody (autovacuum included) may connect to a template while it is copied.
    name = database_name(template)
    databases.admin().cursor().execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    print(f"-- {orders:,} orders at 004 written in {time.perf_counter() - started:.1f}s")
    folder = tempfile.mkdtemp(prefix="bitloot_bench_plain_")
    results = {CONCURRENT: [], PLAIN: []}
    try:
        plain_dir = plain_migrations(folder)
        for _ in range(rounds):
            for variant, migrations_dir in ((CONCURRENT, None), (PLAIN, plain_dir)):
                url = _copy(databases, template)
                try:
                    # The copy's writes do not land on the run.
                    databases.admin().cursor().execute("CHECKPOINT")
                    results[variant].append(measure(url, migrations_dir))
                finally:
                    databases.drop(url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        databases.drop(template)
    rows = []
    for variant, runs in results.items():
        for run in runs:
            rows.append([variant, f"{run['migrate']:.2f}", f"{run['index']:.2f}",
                         f"{run['stall'] * 1000:.0f}", f"{run['normal'] * 1000:.0f}",
                         f"{run['commits']:,}", str(run["errors"])])
    print(table(["variant", "migrate s", "after-commit index s", "longest stall ms",
                 "longest gap before ms", "writer commits during", "writer errors"], rows))
    worst = {variant: max(run["stall"] for run in runs) for variant, runs in results.items()}
    median = {variant: statistics.median(run["stall"] for run in runs)
              for variant, runs in results.items()}
    return [
        Target("6. online migrate", "postgres", f"{CONCURRENT.split(' (')[0]}: longest "
               f"stall < {STALL_TARGET} s", f"{worst[CONCURRENT]:.3f} s (worst run)",
               worst[CONCURRENT] < STALL_TARGET),
        Target("6. online migrate", "postgres", f"{PLAIN.split(' (')[0]}: longest stall "
               "(a figure)", f"{median[PLAIN]:.3f} s", None),
    ]


def _copy(databases, template):
    """A copy of ``template``; retried while the server still has a session on it."""
    for attempt in range(20):
        try:
            return databases.postgres(template=template)
        except psycopg2.errors.ObjectInUse:
            if attempt == 19:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")
