"""`demo`: a seeded demo shop, the same rows for the same seed, every row as the services
would have written it; both backends."""

import collections
import decimal

import conftest
import pytest

import bitloot_lite as bl
from bitloot_lite.db import database_proxy
from bitloot_lite.errors import DatabaseNotEmpty, NotMigrated
from bitloot_lite.local import demo
from bitloot_lite.models import MODELS
from bitloot_lite.services import ORDER_MOVES, PAYMENT_MOVES

ORDERS = 600

#: The payment status an order's status implies (None: no payment).
PAYMENT_FOR = {"created": {None}, "waiting": {"waiting"}, "confirming": {"confirmed"},
               "underpaid": {"underpaid"}, "paid": {"finished"}, "fulfilled": {"finished"},
               "failed": {"failed", None}}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shop(request, tmp_path_factory):
    """(backend, database, result) of a migrated database holding a demo shop."""
    folder = tmp_path_factory.mktemp("shop")
    with conftest.migrated_database(request, request.param, folder) as (_url, database):
        result = demo.fill(database, ORDERS, seed=7)
        yield request.param, database, result


@pytest.fixture
def db(shop):
    database_proxy.initialize(shop[1])  # other tests may have bound the models elsewhere
    return shop[1]


def dump(database):
    """Every row of every table, in id order, as text (the same on both sides)."""
    return {model._meta.table_name: conftest.fetch(
        database, f'SELECT * FROM "{model._meta.table_name}" ORDER BY id') for model in MODELS}


def test_the_same_seed_gives_the_same_rows(backend, db_url, request, tmp_path):
    with conftest.throwaway_url(request, backend, tmp_path / "other") as other_url:
        (tmp_path / "other").mkdir(exist_ok=True)
        dumps = []
        for url in (db_url, other_url, None):
            database = bl.connect(url or other_url)
            try:
                if url is not None:
                    bl.migrate(database)
                    demo.fill(database, 150, seed=3)
                    dumps.append(dump(database))
                else:  # a third shop, another seed: other rows
                    for model in reversed(MODELS):
                        database.execute_sql(f'DELETE FROM "{model._meta.table_name}"')
                    demo.fill(database, 150, seed=4)
                    dumps.append(dump(database))
            finally:
                database.close()
    first, second, third = dumps
    assert first == second
    assert all(first[name] for name in first), "every table has rows"
    assert set(first["orders"]).isdisjoint(third["orders"])


def test_counts_and_every_status(db, shop):
    result = shop[2]
    assert result.orders == ORDERS
    counts = {name: conftest.fetch(db, f'SELECT count(*) FROM "{name}"')[0][0]
              for name in result.rows}
    assert counts == result.rows
    statuses = dict(conftest.fetch(db, "SELECT status, count(*) FROM orders GROUP BY status"))
    assert set(statuses) == {s.value for s in bl.OrderStatus}
    # Plausible proportions: most orders fulfilled, none of the others the majority.
    assert statuses["fulfilled"] > ORDERS * 0.4
    assert max(n for s, n in statuses.items() if s != "fulfilled") < ORDERS * 0.2
    reachable, todo = {bl.OrderStatus.CREATED}, [bl.OrderStatus.CREATED]
    while todo:
        for move in ORDER_MOVES[todo.pop()]:
            if move not in reachable:
                reachable.add(move)
                todo.append(move)
    assert set(statuses) <= {s.value for s in reachable}
    items = conftest.fetch(db, 'SELECT count(*) FROM order_items GROUP BY "orderId"')
    assert min(n for (n,) in items) == 1 and max(n for (n,) in items) >= 3


def test_keys_never_exceed_quantities_and_fulfilled_orders_are_full(db):
    rows = conftest.fetch(db, """
        SELECT o.status, i.quantity, count(k.id) FROM order_items i
        JOIN orders o ON o.id = i."orderId" LEFT JOIN keys k ON k."orderItemId" = i.id
        GROUP BY o.status, i.id, i.quantity""")
    assert all(keys <= quantity for _s, quantity, keys in rows)
    assert all(keys == quantity for status, quantity, keys in rows if status == "fulfilled")
    assert all(keys == 0 for status, _q, keys in rows if status not in ("paid", "fulfilled"))
    paid = [(q, k) for s, q, k in rows if s == "paid"]
    assert any(k < q for q, k in paid), "some paid orders are still filling up"
    viewed = conftest.fetch(db, 'SELECT count(*), count("viewedAt") FROM keys')[0]
    assert 0 < viewed[1] < viewed[0], "some keys revealed, some not"
    assert conftest.fetch(db, 'SELECT count(*) FROM keys WHERE "viewedAt" < "createdAt"'
                          ' OR "storageRef" IS NULL') == [(0,)]


def test_reservations_and_storage_refs_are_unique(db):
    assert conftest.fetch(db, """SELECT "kinguinReservationId" FROM orders
        WHERE "kinguinReservationId" IS NOT NULL
        GROUP BY "kinguinReservationId" HAVING count(*) > 1""") == []
    assert conftest.fetch(db, """SELECT "storageRef" FROM keys
        GROUP BY "storageRef" HAVING count(*) > 1""") == []
    held = dict(conftest.fetch(db, """SELECT status, count("kinguinReservationId") FROM orders
        GROUP BY status"""))
    assert {s for s, n in held.items() if n} == {"paid", "fulfilled"}
    assert conftest.fetch(db, """SELECT count(*) FROM orders
        WHERE status = 'fulfilled' AND "kinguinReservationId" IS NULL""") == [(0,)]


def test_payments_follow_their_orders_and_their_notifications(db):
    by_order = collections.defaultdict(set)
    for status, payment in conftest.fetch(db, """SELECT o.status, p.status FROM orders o
            LEFT JOIN payments p ON p."orderId" = o.id"""):
        by_order[status].add(payment)
    for status, payments in by_order.items():
        assert payments <= PAYMENT_FOR[status], (status, payments)
    assert conftest.fetch(db, 'SELECT "orderId" FROM payments GROUP BY "orderId" '
                              "HAVING count(*) > 1") == []
    payments = {ext: (str(order), status) for ext, order, status in conftest.fetch(
        db, 'SELECT "externalId", "orderId", status FROM payments')}
    notices = collections.defaultdict(list)
    for pid, order, status, valid, error, attempts in conftest.fetch(db, """
            SELECT "paymentId", "orderId", "paymentStatus", "signatureValid", error,
                   "attemptCount" FROM webhook_logs
            WHERE "webhookType" = 'payment' AND processed ORDER BY "createdAt", id"""):
        assert payments[pid][0] == str(order) and valid and error is None and attempts >= 1
        notices[pid].append(bl.PaymentStatus(status))
    assert set(notices) == set(payments)
    for pid, path in notices.items():
        for here, there in zip((bl.PaymentStatus.CREATED, *path), path, strict=False):
            assert there in PAYMENT_MOVES[here], (pid, path)
        assert path[-1].value == payments[pid][1]
    topped_up = [path for path in notices.values() if path[1:2] == [bl.PaymentStatus.UNDERPAID]
                 and path[-1] is bl.PaymentStatus.FINISHED]
    assert topped_up, "some payments were underpaid, then topped up"
    attempts = [n for (n,) in conftest.fetch(db, 'SELECT "attemptCount" FROM webhook_logs')]
    assert max(attempts) > 1 and min(attempts) == 1
    refused = conftest.fetch(db, """SELECT "signatureValid", error FROM webhook_logs
        WHERE NOT processed""")
    assert refused and all(not valid and error for valid, error in refused)
    kinguin = conftest.fetch(db, """SELECT count(*) FROM webhook_logs w
        JOIN orders o ON o."kinguinReservationId" = w."externalId"
        WHERE w."webhookType" = 'kinguin' AND w.processed""")[0][0]
    assert kinguin == conftest.fetch(db, "SELECT count(*) FROM orders "
                                         "WHERE status = 'fulfilled'")[0][0]


def test_timestamps_are_spread_and_ordered(db):
    for model in MODELS:
        table = model._meta.table_name
        assert conftest.fetch(db, f'SELECT count(*) FROM "{table}" '
                                  'WHERE "updatedAt" < "createdAt"') == [(0,)], table
    assert conftest.fetch(db, """SELECT count(*) FROM keys k
        JOIN order_items i ON i.id = k."orderItemId" JOIN orders o ON o.id = i."orderId"
        WHERE k."createdAt" < o."createdAt" """) == [(0,)]
    created = sorted(order.created_at for order in bl.Order.select(bl.Order.created_at))
    first, last = created[0], created[-1]
    assert (last - first).days > 150 and last <= demo.UNTIL.replace(tzinfo=last.tzinfo)


def test_the_rows_read_through_the_models_and_the_services_accept_them(db):
    for model in MODELS:
        assert len(list(model.select())) == model.select().count() > 0
    assert all(isinstance(order.total, decimal.Decimal) for order in bl.Order.select())
    fulfilled = bl.Order.get(bl.Order.status == bl.OrderStatus.FULFILLED)
    assert bl.set_status(fulfilled, "fulfilled").status is bl.OrderStatus.FULFILLED
    assert bl.find_order_by_reservation(fulfilled.kinguin_reservation_id).id == fulfilled.id
    item = fulfilled.items.get()
    with pytest.raises(bl.TooManyKeys):
        bl.add_keys(item, ["keys/one-more.enc"])
    with pytest.raises(bl.InvalidTransition):
        bl.set_status(bl.Order.get(bl.Order.status == bl.OrderStatus.FAILED), "paid")
    log = bl.WebhookLog.get(bl.WebhookLog.processed == True)  # noqa: E712
    again = bl.record_webhook(log.external_id, log.webhook_type, log.payload, log.signature,
                              processed=True, order=log.order_id)
    assert again.id == log.id and again.attempt_count == log.attempt_count + 1
    payment = bl.Payment.get(bl.Payment.status == bl.PaymentStatus.FINISHED)
    assert bl.record_payment(payment.order_id, payment.external_id, "finished").id == payment.id


def test_the_schema_is_as_it_was(migrated):
    """The indexes dropped for the load (SQLite) are all back, exactly."""
    from bitloot_lite import migrating
    from bitloot_lite.schema import snapshot

    before = snapshot(migrated)
    demo.fill(migrated, 30)
    assert snapshot(migrated) == before
    assert migrating.check(migrated)[0] == []


def test_a_load_that_breaks_a_unique_index_writes_nothing(migrated, monkeypatch):
    """Rows that a (deferred) unique index refuses fail the whole load."""
    monkeypatch.setattr(demo._Shop, "_payment_id", lambda self: "4000000001")
    with pytest.raises(bl.StorageError, match="(?i)unique|23505") as caught:
        demo.fill(migrated, 30)
    assert "4000000001" not in str(caught.value)  # never the data
    assert bl.Order.select().count() == 0


def test_a_non_empty_database_is_refused_unless_appending(migrated):
    demo.fill(migrated, 20, seed=1)
    before = dump(migrated)
    with pytest.raises(DatabaseNotEmpty) as caught:
        demo.fill(migrated, 20, seed=1)
    assert caught.value.table == "orders" and dump(migrated) == before
    # Appending, even with the same seed, twice: new rows, no id or reference reused.
    demo.fill(migrated, 20, seed=1, append=True)
    demo.fill(migrated, 20, seed=1, append=True)
    assert bl.Order.select().count() == 60
    assert set(before["orders"]) <= set(dump(migrated)["orders"])


def test_a_database_not_migrated_is_refused(database):
    bl.migrate(database, to=conftest.MIGRATIONS[2])
    with pytest.raises(NotMigrated) as caught:
        demo.fill(database, 5)
    assert caught.value.pending == conftest.MIGRATIONS[3:]


def test_progress_is_reported_per_batch(migrated, monkeypatch):
    monkeypatch.setattr(demo, "BATCH", 40)
    seen = []
    demo.fill(migrated, 100, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(40, 100), (80, 100), (100, 100)]


def test_bad_counts_are_refused(migrated):
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(bl.ValidationError):
            demo.fill(migrated, bad)
    assert bl.Order.select().count() == 0


def test_the_paths_obey_the_lifecycles():
    demo.check_paths()
    with pytest.raises(ValueError, match="paid -> created"):
        demo.check_paths([((bl.OrderStatus.CREATED, bl.OrderStatus.WAITING,
                            bl.OrderStatus.PAID, bl.OrderStatus.CREATED), (), 1)])


def test_the_cli_fills_refuses_and_appends(migrated, db_url):
    result = conftest.run_cli("demo", "--orders", 30, "--seed", 5, "--database", db_url)
    assert result.exit_code == 0, result.output
    assert "30 orders" in result.output and "orders/s" in result.output
    result = conftest.run_cli("demo", "--orders", 30, "--database", db_url)
    assert result.exit_code == 1 and "not empty" in result.output
    result = conftest.run_cli("demo", "--orders", 30, "--append", "-q", "--database", db_url)
    assert result.exit_code == 0 and result.output == ""
    assert bl.Order.select().count() == 60


def on_a_terminal(*args):
    """(stdout, what a terminal on stderr showed, exit code) of the CLI in a child process."""
    return on_a_terminal_python(None, *args)


def on_a_terminal_python(script, *args):
    """The same, running ``script`` (python -c) instead of the CLI (None: the CLI)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    start = ["-m", "bitloot_lite"] if script is None else ["-c", script]
    process = subprocess.Popen([sys.executable, *start, *map(str, args)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                               env=conftest.clean_env(COLUMNS="100"), cwd=conftest.REPO_ROOT)
    os.close(slave)
    shown = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(master)
    out = process.stdout.read().decode()
    process.stdout.close()
    return out, shown.decode(errors="replace"), process.wait(timeout=120)


def test_a_progress_bar_on_a_terminal_only_and_not_with_q(migrated, db_url, monkeypatch):
    out, shown, code = on_a_terminal("demo", "--orders", 4500, "--database", db_url)
    assert code == 0 and "4,500 orders" in out
    assert "orders" in shown and "4500/4500" in shown and "100%" in shown
    assert "2000/4500" in shown  # drawn per batch
    out, shown, code = on_a_terminal("demo", "--orders", 10, "--append", "-q",
                                     "--database", db_url)
    assert code == 0 and out == "" and shown == ""
    result = conftest.run_cli("demo", "--orders", 10, "--append", "--database", db_url)
    assert result.exit_code == 0 and "[" not in result.output  # not a terminal: no bar


SLOW_MIGRATION = """
import peewee as pw


def migrate(migrator, database, *, fake=False):
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql("CREATE TABLE big AS SELECT g AS n FROM generate_series(1, 1500000) g")
        migrator.sql("CREATE INDEX big_n ON big (n)")
    else:
        migrator.sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                     "WHERE x < 2000000) SELECT count(*) FROM c")


def rollback(migrator, database, *, fake=False):
    pass
"""


@pytest.mark.slow
def test_a_long_migration_step_shows_progress_on_a_terminal(db_url, backend, tmp_path):
    """(In cli.py's migrate, next to the other progress.) A step running longer than
    AFTER seconds: its name and time; an index build on PostgreSQL: a bar of its blocks."""
    folder = tmp_path / "migrations"  # the user's folder: run after the shipped ones
    folder.mkdir()
    (folder / "999_slow.py").write_text(SLOW_MIGRATION, encoding="utf-8")
    script = ("import sys; from bitloot_lite import cli; cli._StepProgress.AFTER = 0.2; "
              "cli._StepProgress.POLL = 0.05; sys.argv[0] = 'bitloot-lite'; cli.main()")
    out, shown, code = on_a_terminal_python(script, "migrate", "--database", db_url,
                                            "--migrations", folder)
    assert code == 0, out + shown
    assert "applied 999_slow" in out
    if backend == "postgres":
        assert "999_slow: building index" in shown and "%" in shown, shown
    else:
        assert "999_slow: running for" in shown, shown
    out, shown, code = on_a_terminal_python(script, "rollback", "-q", "--database", db_url,
                                            "--migrations", folder)
    assert code == 0 and shown == ""
