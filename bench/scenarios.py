"""The scenarios: checkout, key restock, lookup at scale, start-up, migrate.

Each prints its figures as it goes and returns the Targets it measured.
"""

import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import peewee as pw

import bitloot_lite as bl
from bitloot_lite import statements
from bitloot_lite.db import database_proxy, open_database

from .common import (
    BACKENDS,
    CHECKOUT_EMAIL,
    CHECKOUT_ITEMS,
    CHECKOUT_TOTAL,
    KEYS_PER_ITEM,
    Contender,
    Target,
    interleave,
    key_refs,
    rate,
    raw_connect,
    table,
)
from .orm import Orm
from .raw import Raw

ROOT = Path(__file__).resolve().parent.parent

LITE, RAW, ORM = "bitloot-lite", "raw driver", "SQLAlchemy ORM"
DRIVER = {"sqlite": "sqlite3", "postgres": "psycopg2"}


def _rate_rows(rates, backend, extra=None):
    """Each contender's median rate, its range, and bitloot-lite's ratio to it."""
    lite = rates.median(LITE)
    rows = []
    for name in rates.rates:
        low, high = rates.spread(name)
        label = f"{name} ({DRIVER[backend]})" if name == RAW else name
        ratio = "" if name == LITE else f"{lite / rates.median(name):.2f}x"
        rows.append([backend, label, rate(rates.median(name)), f"{rate(low)}-{rate(high)}",
                     ratio, *(extra(name) if extra else [])])
    return rows


def _rate_headers(unit, *extra):
    return ["backend", "contender", f"{unit}/s (median)", "range", "bitloot-lite is", *extra]


# --------------------------------------------------------------------------- 1. checkout


CHECKOUT_OPS = 150  # checkouts per contender per repetition
CHECKOUT_WARMUP = 30


def checkout(settings, databases):
    print("\n== 1. Checkout flow ==")
    print(f"create_order with {len(CHECKOUT_ITEMS)} items of quantity 2, then add_keys of "
          f"{KEYS_PER_ITEM} refs for each item; one transaction per checkout for every "
          f"contender (bitloot-lite's calls inside db.atomic()); {settings.reps} interleaved "
          f"repetitions of {settings.scaled(CHECKOUT_OPS, 2)} checkouts each, medians")
    targets, rows = [], []
    for backend in BACKENDS:
        rates = _checkout_on(settings, databases, backend)
        rows += _rate_rows(rates, backend)
        vs_raw = rates.median(LITE) / rates.median(RAW)
        vs_orm = rates.median(LITE) / rates.median(ORM)
        targets += [
            Target("1. checkout", backend, ">= 1.0x raw driver", f"{vs_raw:.2f}x", vs_raw >= 1.0),
            Target("1. checkout", backend, ">= 1.5x SQLAlchemy", f"{vs_orm:.2f}x", vs_orm >= 1.5),
        ]
    print(table(_rate_headers("checkouts"), rows))
    return targets


def lite_checkout(db):
    """bitloot-lite's checkout number ``n`` on ``db``, as a Contender's job."""

    def checkout(number):
        with db.atomic():
            order = bl.create_order(CHECKOUT_EMAIL, CHECKOUT_ITEMS, total=CHECKOUT_TOTAL)
            for index, item in enumerate(order.items):
                bl.add_keys(item, key_refs("lite", number, index, KEYS_PER_ITEM))
        return order

    return checkout


def _checkout_on(settings, databases, backend):
    url = databases.new(backend)
    db = bl.connect(url)
    bl.migrate(db)
    raw, orm = Raw(url), Orm(url)

    try:
        rates = interleave(
            [Contender(LITE, lite_checkout(db)), Contender(RAW, raw.checkout),
             Contender(ORM, orm.checkout)],
            reps=settings.reps, ops=settings.scaled(CHECKOUT_OPS, 2),
            warmup=settings.scaled(CHECKOUT_WARMUP, 1),
        )
        _check_checkouts(db)
    finally:
        raw.close()
        orm.close()
        db.close()
        databases.drop(url)
    return rates


def _check_checkouts(db):
    """Every contender wrote the same thing: each order has 2 items with 2 keys each."""
    wrong = db.execute_sql(
        'SELECT count(*) FROM "order_items" AS "i" WHERE "i"."quantity" <> '
        '(SELECT count(*) FROM "keys" AS "k" WHERE "k"."orderItemId" = "i"."id")'
    ).fetchone()[0]
    per_order = db.execute_sql(
        'SELECT DISTINCT count(*) FROM "order_items" GROUP BY "orderId"'
    ).fetchall()
    if wrong or per_order != [(len(CHECKOUT_ITEMS),)]:
        raise AssertionError(f"the contenders did not write the same rows: {wrong} items "
                             f"short of keys, items per order {per_order}")


# --------------------------------------------------------------------------- 2. restock


RESTOCK_REFS = 10_000


def restock(settings, databases):
    refs_count = settings.scaled(RESTOCK_REFS, 10)
    print("\n== 2. Key restock ==")
    print(f"add_keys of {refs_count:,} references to a fresh item (quantity {refs_count:,}) "
          f"in one transaction; the raw driver checks the room, then executemany (one INSERT "
          f"per key); {settings.reps} interleaved repetitions, medians")
    targets, rows = [], []
    for backend in BACKENDS:
        rates = _restock_on(settings, databases, backend, refs_count)
        rows += _rate_rows(rates, backend,
                           extra=lambda name, rates=rates: [rate(rates.median(name) * refs_count)])
        vs_raw = rates.median(LITE) / rates.median(RAW)
        targets.append(Target("2. restock", backend, ">= 1.0x raw executemany",
                              f"{vs_raw:.2f}x", vs_raw >= 1.0))
    print(table(_rate_headers("restocks", "keys/s (median)"), rows))
    return targets


def _restock_on(settings, databases, backend, refs_count):
    url = databases.new(backend)
    db = bl.connect(url)
    bl.migrate(db)
    setup, raw, orm = Raw(url), Raw(url), Orm(url)

    def job(tag):
        # A fresh item and the references, made before the clock starts.
        return lambda number: (setup.new_item(refs_count), key_refs(tag, number, 0, refs_count))

    try:
        rates = interleave(
            [Contender(LITE, lambda j: bl.add_keys(*j), job("lite")),
             Contender(RAW, lambda j: raw.add_keys(*j), job("raw")),
             Contender(ORM, lambda j: orm.add_keys(*j), job("orm"))],
            reps=settings.reps, ops=1, warmup=1,
        )
        written = db.execute_sql('SELECT count(*) FROM "keys"').fetchone()[0]
        expected = 3 * (settings.reps + 1) * refs_count
        if written != expected:
            raise AssertionError(f"restock wrote {written} keys, not {expected}")
    finally:
        for contender in (setup, raw, orm):
            contender.close()
        db.close()
        databases.drop(url)
    return rates


# --------------------------------------------------------------------------- 3. lookup


LOOKUP_SMALL = 1_000
LOOKUP_LARGE = 1_000_000
LOOKUPS = 400  # per database, contender and repetition
INDEX = "IDX_orders_kinguinReservationId"

def reservation(number):
    return f"kinguin-res-{number:08d}"


def fill_orders(url, count, *, reservations=True):
    """``count`` orders (reservations ``reservation(1..count)`` if ``reservations``),
    written in the database itself: generate_series on PostgreSQL, a recursive CTE on SQLite.
    Ids come from the column's default (migration 001's uuid4 expression)."""
    columns = '"email", "status", "total", "createdAt", "updatedAt"'
    connection = raw_connect(url)
    try:
        cursor = connection.cursor()
        if url.startswith("sqlite"):
            stamp = "datetime('now', '-' || n || ' seconds')"
            values = ("'buyer' || n || '@example.com', 'fulfilled', 19.99, "
                      f"{stamp}, {stamp}")
            if reservations:
                columns += ', "kinguinReservationId"'
                values += ", 'kinguin-res-' || printf('%08d', n)"
            cursor.execute("BEGIN")
            cursor.execute(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
                f'INSERT INTO "orders" ({columns}) SELECT {values} FROM g', (count,))
            cursor.execute("COMMIT")
        else:
            stamp = "now() - g * interval '1 second'"
            values = ("'buyer' || g || '@example.com', 'fulfilled', 19.99, "
                      f"{stamp}, {stamp}")
            if reservations:
                columns += ', "kinguinReservationId"'
                values += ", 'kinguin-res-' || lpad(g::text, 8, '0')"
            cursor.execute(f'INSERT INTO "orders" ({columns}) SELECT {values} '
                           "FROM generate_series(1, %s) AS g", (count,))
            connection.commit()
            connection.autocommit = True
            cursor.execute('VACUUM ANALYZE "orders"')
    finally:
        connection.close()


def explain(db, reservation_id):
    """The plan of the statement find_order_by_reservation runs, as text."""
    text = statements.sql(db, "find_order_by_reservation")
    if isinstance(db, pw.PostgresqlDatabase):
        rows = db.execute_sql(f"EXPLAIN ANALYZE {text}", (reservation_id,)).fetchall()
        return "\n".join(row[0] for row in rows)
    rows = db.execute_sql(f"EXPLAIN QUERY PLAN {text}", (reservation_id,)).fetchall()
    return "\n".join(row[-1] for row in rows)


def lookup(settings, databases):
    small = LOOKUP_SMALL
    large = max(small, settings.scaled(LOOKUP_LARGE))
    lookups = settings.scaled(LOOKUPS, 10)
    print("\n== 3. Lookup at scale ==")
    print(f"find_order_by_reservation of random reservations, against {small:,} and against "
          f"{large:,} orders (two databases, looked up in turn, {settings.reps} repetitions of "
          f"{lookups} lookups each, each lookup timed); the raw driver's same SELECT for "
          "comparison")
    sizes = {"small": small, "large": large}
    targets, rows = [], []
    for backend in BACKENDS:
        urls, dbs, raws = {}, {}, {}
        try:
            for label, size in sizes.items():
                urls[label] = url = databases.new(backend)
                dbs[label] = db = open_database(url)
                bl.migrate(db)
                started = time.perf_counter()
                fill_orders(url, size)
                if label == "large":
                    print(f"-- {backend}: {large:,} orders written in "
                          f"{time.perf_counter() - started:.1f}s")
                raws[label] = Raw(url, autocommit=True)
            latencies = _lookups(dbs, raws, sizes, settings.reps, lookups)
            plan = explain(dbs["large"], reservation(large // 2))
        finally:
            database_proxy.initialize(None)
            for label in urls:
                if label in raws:
                    raws[label].close()
                dbs[label].close()
                databases.drop(urls[label])
        print(f"-- {backend} plan at {large:,} orders:")
        print("\n".join(f"   {line}" for line in plan.splitlines()))
        medians = {key: statistics.median(values) for key, values in latencies.items()}
        for name in (LITE, RAW):
            ratio = medians[name, "large"] / medians[name, "small"]
            label = f"{name} ({DRIVER[backend]})" if name == RAW else name
            rows.append([backend, label, f"{medians[name, 'small'] * 1e6:.0f}",
                         f"{medians[name, 'large'] * 1e6:.0f}", f"{ratio:.2f}x",
                         rate(1 / medians[name, "large"])])
        used = INDEX in plan
        ratio = medians[LITE, "large"] / medians[LITE, "small"]
        targets += [
            Target("3. lookup", backend, f"plan uses {INDEX}", "yes" if used else "no", used),
            Target("3. lookup", backend, f"median at {large:,} <= 1.5x at {small:,}",
                   f"{ratio:.2f}x", ratio <= 1.5),
        ]
    print(table(["backend", "contender", f"median us at {small:,}", f"median us at {large:,}",
                 "ratio", f"lookups/s at {large:,}"], rows))
    return targets


def _lookups(dbs, raws, sizes, reps, lookups):
    """{(contender, "small" or "large"): [seconds of each lookup]}: databases and
    contenders in turn; each lookup of a random reservation the database holds."""
    chooser = random.Random(20261125)
    latencies = {}
    clock = time.perf_counter
    for rep in range(reps + 1):  # the first round is the warm-up
        for label, db in dbs.items():
            size = sizes[label]
            database_proxy.initialize(db)
            times = latencies.setdefault((LITE, label), [])
            for rid in [reservation(chooser.randint(1, size)) for _ in range(lookups)]:
                started = clock()
                bl.find_order_by_reservation(rid)
                elapsed = clock() - started
                if rep:
                    times.append(elapsed)
            raw = raws[label]
            times = latencies.setdefault((RAW, label), [])
            for rid in [reservation(chooser.randint(1, size)) for _ in range(lookups)]:
                started = clock()
                row = raw.find_order(rid)
                elapsed = clock() - started
                if row is None:
                    raise AssertionError(f"no order holds {rid}")
                if rep:
                    times.append(elapsed)
    return latencies


# --------------------------------------------------------------------------- 4. start-up


STARTUP_RUNS = 20


def _import_seconds(module):
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
    return time.perf_counter() - started


def startup(settings):
    runs = settings.scaled(STARTUP_RUNS, 2)
    modules = ("bitloot_lite", "peewee")
    print("\n== 4. Start-up ==")
    print(f'python -c "import bitloot_lite" and python -c "import peewee", {runs} runs of '
          "each, interleaved, after one warm-up run each; medians")
    for module in modules:
        _import_seconds(module)
    seconds = {module: [] for module in modules}
    for _ in range(runs):
        for module in modules:
            seconds[module].append(_import_seconds(module))
    medians = {module: statistics.median(values) for module, values in seconds.items()}
    ratio = medians["bitloot_lite"] / medians["peewee"]
    print(table(["command", "median ms", "range ms", "runs/s", "vs import peewee"], [
        [f'python -c "import {module}"', f"{medians[module] * 1000:.0f}",
         f"{min(seconds[module]) * 1000:.0f}-{max(seconds[module]) * 1000:.0f}",
         f"{1 / medians[module]:.2f}", f"{medians[module] / medians['peewee']:.2f}x"]
        for module in modules]))
    extra = _import_breakdown()
    if extra:
        print("-- where import bitloot_lite spends its time beyond import peewee (python -X "
              "importtime, one run, with its own overhead): each module with the modules it "
              "pulls in that peewee does not")
        print(table(["module", "us beyond peewee", "own us"],
                    [[name, f"{beyond:,}", f"{own:,}"] for name, beyond, own in extra]))
    return [Target("4. start-up", "-", "<= 1.5x import peewee", f"{ratio:.2f}x", ratio <= 1.5)]


def _importtime(module):
    """[(name, self us, depth)] of ``python -X importtime -c 'import module'``, in its order
    (each module after the modules it imported, one level deeper)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                            check=True, cwd=ROOT, capture_output=True, text=True)
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((name.strip(), int(own), depth))
    return rows


def _import_breakdown(limit=12):
    """[(module, us of its imports peewee does not make, own us)], largest first: the
    time ``import bitloot_lite`` spends beyond ``import peewee``, by what pulls it in."""
    base = {name for name, _, _ in _importtime("peewee")}
    totals, pending = [], []  # pending: (depth, extra us of the subtree) not yet claimed
    for name, own, depth in _importtime("bitloot_lite"):
        extra = own if name not in base else 0
        while pending and pending[-1][0] > depth:
            extra += pending.pop()[1]
        pending.append((depth, extra))
        if name not in base:
            totals.append((name, extra, own))
    return sorted(totals, key=lambda row: -row[1])[:limit]


# --------------------------------------------------------------------------- 5. migrate


MIGRATE_RUNS = 3


def migrate(settings, databases):
    runs = settings.scaled(MIGRATE_RUNS, 1)
    print("\n== 5. Migrate ==")
    print(f"bitloot_lite.migrate(db): an empty database to head, {runs} runs per backend "
          "(a fresh database each; backends in turn), medians")
    seconds = {backend: [] for backend in BACKENDS}
    steps = {backend: [] for backend in BACKENDS}
    for _ in range(runs):
        for backend in BACKENDS:
            url = databases.new(backend)
            db = open_database(url)
            try:
                recorded = []
                started = time.perf_counter()
                bl.migrate(db, on_step=recorded.append)
                seconds[backend].append(time.perf_counter() - started)
                steps[backend].append(recorded)
            finally:
                db.close()
                databases.drop(url)
    rows, targets = [], []
    for backend in BACKENDS:
        values = seconds[backend]
        median = statistics.median(values)
        middle = steps[backend][values.index(sorted(values)[len(values) // 2])]
        detail = ", ".join(f"{step.name.split('_', 1)[0]} {step.seconds * 1000:.0f}"
                           + (" (index)" if step.direction == "index" else "")
                           for step in middle)
        rows.append([backend, f"{median * 1000:.0f}",
                     f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}", detail])
        targets.append(Target("5. migrate", backend, "empty to head: time (a figure)",
                              f"{median * 1000:.0f} ms", None))
    print(table(["backend", "median ms", "range ms", "each migration, ms (median run)"], rows))
    return targets
