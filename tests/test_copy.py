"""`copy`: across backends, checked by checksums; --anonymize; --orders / --since subsets."""

import datetime as dt
import json

import conftest
import pytest

import bitloot_lite as bl
from bitloot_lite.db import database_proxy
from bitloot_lite.errors import CopyMismatch, DatabaseNotEmpty, SourceAhead
from bitloot_lite.local import copy as copying
from bitloot_lite.local import demo
from bitloot_lite.models import MODELS

OTHER = {"sqlite": "postgres", "postgres": "sqlite"}


@pytest.fixture
def dest_url(backend, request, tmp_path):
    """An empty database on the other backend than ``backend`` (the source's)."""
    folder = tmp_path / "dest"
    folder.mkdir()
    with conftest.throwaway_url(request, OTHER[backend], folder) as url:
        yield url


@pytest.fixture
def source(migrated):
    """The source: a demo shop and rows at the edges of what the columns hold."""
    demo.fill(migrated, 80, seed=11)
    order = bl.create_order("Édith.Ünïcode@example.com", [("kinguin-1", 3)],
                            total="123456.12345678")
    bl.record_payment(order, "edge-1", "waiting", price_amount="0.00000001",
                      raw_payload={"nested": {"list": [1, 2.5, None, True, "\u00e9\u4e2d"]},
                                   "big": 12345678901234567890, "email": "edge@example.com"})
    bl.record_webhook("edge-1", "payment", {"text": "tab\there\nnewline \\ back"},
                      None, source_ip="::1")
    bl.OrderItem.create(order=order, product_id="kinguin-2", quantity=1,
                        created_at=dt.datetime(2026, 1, 1, 12, 0, 0))  # no microseconds
    return migrated


def model_rows(database):
    """Every row of every table read through the models, as Python values."""
    database_proxy.initialize(database)
    return {model.__name__: sorted((tuple(row.__data__.get(f.name) for f in
                                          model._meta.sorted_fields)
                                    for row in model.select()), key=lambda r: str(r[0]))
            for model in MODELS}


def test_a_copy_to_the_other_backend_has_equal_tables(source, dest_url):
    expected = copying.checksums(source)
    before = model_rows(source)
    with conftest.opened(dest_url) as destination:
        result = copying.copy(source, destination, batch=50)
        assert result.level == conftest.MIGRATIONS[-1]
        assert result.migrated == conftest.MIGRATIONS
        assert {t.table: (t.rows, t.checksum) for t in result.tables} == expected
        assert copying.checksums(destination) == expected
        assert model_rows(destination) == before  # both backends read back the same
        counts = {t.table: t.rows for t in result.tables}
        assert counts["webhook_logs"] > 50 and all(counts.values())


def test_the_destination_is_migrated_to_the_sources_level(database, dest_url):
    level = conftest.MIGRATIONS[3]
    bl.migrate(database, to=level)
    database.execute_sql("INSERT INTO orders (id, email, status, total) VALUES "
                         "('1b4e28ba-2fa1-41d2-883f-0016d3cca427', 'old@example.com', 'paid', 5)")
    with conftest.opened(dest_url) as destination:
        result = copying.copy(database, destination)
        assert result.level == level and result.migrated == conftest.MIGRATIONS[:4]
        assert bl.status(destination)[3].applied and not bl.status(destination)[4].applied
        assert conftest.fetch(destination, "SELECT email, status FROM orders") == [
            ("old@example.com", "paid")]
        assert "keys" not in [t.table for t in result.tables]


def test_a_source_ahead_of_this_version_is_refused(source, dest_url):
    source.execute_sql("INSERT INTO migratehistory (name, migrated_at) VALUES (?, ?)"
                       .replace("?", "%s" if bl.db.is_postgres(source) else "?"),
                       ("999_from_the_future", dt.datetime(2026, 1, 1)))
    with conftest.opened(dest_url) as destination:
        with pytest.raises(SourceAhead) as caught:
            copying.copy(source, destination)
        assert caught.value.unknown == ["999_from_the_future"]
        assert not destination.table_exists("orders")


def test_a_destination_with_rows_is_refused_unless_replace(source, dest_url):
    with conftest.opened(dest_url) as destination:
        bl.migrate(destination)
        database_proxy.initialize(destination)
        bl.create_order("mine@example.com", [("kinguin-3", 1)])
        with pytest.raises(DatabaseNotEmpty):
            copying.copy(source, destination)
        assert conftest.fetch(destination, "SELECT email FROM orders") == [("mine@example.com",)]
        copying.copy(source, destination, replace=True)
        assert copying.checksums(destination) == copying.checksums(source)


def test_a_failed_check_leaves_the_destination_as_it_was(source, dest_url, monkeypatch):
    with conftest.opened(dest_url) as destination:
        bl.migrate(destination)
        database_proxy.initialize(destination)
        bl.create_order("kept@example.com", [("kinguin-3", 1)])
        real = copying._checksum
        monkeypatch.setattr(copying, "_checksum",
                            lambda *a, **k: (real(*a, **k)[0], "0" * 64))
        with pytest.raises(CopyMismatch) as caught:
            copying.copy(source, destination, replace=True)
        assert caught.value.table == "orders"
        assert conftest.fetch(destination, "SELECT email FROM orders") == [("kept@example.com",)]


def _originals(database):
    """The personal and secret values of a database, as text."""
    values = set()
    for sql in ('SELECT email FROM orders', 'SELECT signature FROM webhook_logs',
                'SELECT "sourceIp" FROM webhook_logs', 'SELECT "storageRef" FROM keys'):
        values |= {row[0] for row in conftest.fetch(database, sql) if row[0]}
    for (text,) in conftest.fetch(database, 'SELECT payload::text FROM webhook_logs'
                                  if bl.db.is_postgres(database) else
                                  'SELECT payload FROM webhook_logs'):
        payload = json.loads(text)
        for key in ("customer_email", "pay_address"):
            if key in payload:
                values.add(payload[key])
    return values


def _all_text(database):
    texts = []
    for model in MODELS:
        name = model._meta.table_name
        for row in conftest.fetch(database, f'SELECT * FROM "{name}"'):
            texts += [json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)
                      for v in row if v is not None]
    return "\n".join(texts)


def test_anonymize_leaves_no_original_value_and_keeps_the_joins(source, dest_url):
    originals = _originals(source)
    assert len(originals) > 100 and "edge@example.com" not in originals
    originals.add("edge@example.com")  # inside a payment's rawPayload
    with conftest.opened(dest_url) as destination:
        result = copying.copy(source, destination, anonymize=True, salt="team-2026")
        assert result.salt == "team-2026"
        everything = _all_text(destination)
        leaked = [value for value in originals if value in everything]
        assert leaked == []
        assert "::1" not in conftest.fetch(destination, 'SELECT "sourceIp" FROM webhook_logs')
        # Joins and duplicates survive: the same customers, the same shape.
        sizes = 'SELECT count(*) FROM orders GROUP BY email ORDER BY 1'
        assert conftest.fetch(destination, sizes) == conftest.fetch(source, sizes)
        refs = 'SELECT count(DISTINCT "storageRef"), count(*) FROM keys'
        assert conftest.fetch(destination, refs) == conftest.fetch(source, refs)
        joined = ('SELECT count(*) FROM webhook_logs w JOIN orders o ON o.id = w."orderId" '
                  'JOIN payments p ON p."externalId" = w."paymentId"')
        assert conftest.fetch(destination, joined) == conftest.fetch(source, joined)
        database_proxy.initialize(destination)
        for payment in bl.Payment.select().join(bl.Order).where(
                bl.Payment.raw_payload.is_null(False)):
            email = payment.raw_payload.get("customer_email")
            if email is not None:  # the payload's email is the order's, pseudonymized alike
                assert email == payment.order.email and email.endswith("@anonymized.invalid")
        first = copying.checksums(destination)
        ips = conftest.fetch(destination, 'SELECT DISTINCT "sourceIp" FROM webhook_logs')
        for (ip,) in ips:
            bl.record_webhook("x", "probe", {}, source_ip=ip)  # still valid addresses
        # The same salt, the same copy; another salt, another.
        copying.copy(source, destination, anonymize=True, salt="team-2026", replace=True)
        assert copying.checksums(destination) == first
        copying.copy(source, destination, anonymize=True, salt="other", replace=True)
        assert copying.checksums(destination)["orders"] != first["orders"]


def test_orders_n_is_the_newest_orders_with_all_that_belongs_to_them(source, dest_url):
    newest = [row[0] for row in conftest.fetch(
        source, 'SELECT id FROM orders ORDER BY "createdAt" DESC, id DESC LIMIT 15')]
    with conftest.opened(dest_url) as destination:
        result = copying.copy(source, destination, orders=15)
        got = {str(row[0]) for row in conftest.fetch(destination, "SELECT id FROM orders")}
        assert got == {str(i) for i in newest}
        _assert_complete(source, destination, got, result)


def test_since_is_the_orders_since_a_date(source, dest_url):
    (median,) = conftest.fetch(source, 'SELECT "createdAt" FROM orders ORDER BY "createdAt" '
                                       "LIMIT 1 OFFSET 40")[0]
    since = median if isinstance(median, dt.datetime) else dt.datetime.fromisoformat(median)
    with conftest.opened(dest_url) as destination:
        result = copying.copy(source, destination, since=since)
        got = {str(row[0]) for row in conftest.fetch(destination, "SELECT id FROM orders")}
        (expected,) = conftest.fetch(source, 'SELECT count(*) FROM orders WHERE "createdAt" >= '
                                     + ("%s" if bl.db.is_postgres(source) else "?"),
                                     (since if bl.db.is_postgres(source)
                                      else since.isoformat(" "),))[0]
        assert len(got) == expected and 0 < expected < 82
        _assert_complete(source, destination, got, result)


def _assert_complete(source, destination, order_ids, result):
    """Everything of those orders is there, and nothing else; no row points outside."""
    def per_order(database, sql):
        return sorted(str(row[0]) for row in conftest.fetch(database, sql)
                      if str(row[1]) in order_ids)

    for sql in ('SELECT i.id, i."orderId" FROM order_items i',
                'SELECT k.id, i."orderId" FROM keys k JOIN order_items i '
                'ON i.id = k."orderItemId"',
                'SELECT p.id, p."orderId" FROM payments p',
                'SELECT w.id, w."orderId" FROM webhook_logs w'):
        wanted = per_order(source, sql)
        assert per_order(destination, sql) == wanted and wanted, sql
    total = sum(t.rows for t in result.tables)
    assert total == sum(conftest.fetch(destination, f'SELECT count(*) FROM "{m._meta.table_name}"'
                                       )[0][0] for m in MODELS)
    dangling = ['SELECT count(*) FROM order_items WHERE "orderId" NOT IN (SELECT id FROM orders)',
                'SELECT count(*) FROM keys WHERE "orderItemId" NOT IN '
                '(SELECT id FROM order_items)',
                'SELECT count(*) FROM payments WHERE "orderId" NOT IN (SELECT id FROM orders)',
                'SELECT count(*) FROM webhook_logs WHERE "orderId" NOT IN '
                '(SELECT id FROM orders)']
    for sql in dangling:
        assert conftest.fetch(destination, sql) == [(0,)], sql


def test_progress_is_reported_per_table_and_batch(source, dest_url):
    seen = []
    with conftest.opened(dest_url) as destination:
        copying.copy(source, destination, batch=40,
                     progress=lambda label, done, total: seen.append((label, done, total)))
    labels = list(dict.fromkeys(label for label, _d, _t in seen))
    assert labels == ["orders", "order_items", "keys", "payments", "webhook_logs",
                      "checking orders", "checking order_items", "checking keys",
                      "checking payments", "checking webhook_logs"]
    for label in labels:
        steps = [(done, total) for name, done, total in seen if name == label]
        assert steps[0][0] == 0 and steps[-1][0] == steps[-1][1] > 0
    assert len([1 for label, _d, _t in seen if label == "webhook_logs"]) > 3


def test_the_cli_copies_refuses_and_masks(source, db_url, dest_url):
    result = conftest.run_cli("copy", db_url, dest_url, "--anonymize", "--salt", "s",
                              "--orders", 5)
    assert result.exit_code == 0, result.output
    assert "every table checked" in result.output and "anonymized with salt 's'" in result.output
    assert " orders " in result.output
    result = conftest.run_cli("copy", db_url, dest_url)
    assert result.exit_code == 1 and "--replace" in result.output
    result = conftest.run_cli("copy", db_url, dest_url, "--replace", "-q")
    assert result.exit_code == 0 and result.output == ""
    assert conftest.run_cli("copy", db_url, dest_url, "--salt", "s").exit_code == 2
    with conftest.opened(dest_url) as destination:
        assert copying.checksums(destination) == copying.checksums(source)


@conftest.postgres_only
def test_the_cli_never_prints_a_password(source, db_url, tmp_path):
    secret_url = db_url.replace("postgres@", "postgres:hunter2-pw@")
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    result = conftest.run_cli("copy", secret_url, target)
    assert result.exit_code == 0 and "hunter2-pw" not in result.output
    assert "postgres:***@" in result.output  # the summary names the source, masked
    bad = db_url.rsplit("/", 1)[0].replace("postgres@", "postgres:hunter2-pw@") + "/nope_none"
    result = conftest.run_cli("copy", bad, target)
    assert result.exit_code == 1 and "hunter2-pw" not in result.output and "***" in result.output



def test_a_progress_bar_per_table_on_a_terminal(source, db_url, dest_url):
    from test_demo import on_a_terminal

    out, shown, code = on_a_terminal("copy", db_url, dest_url)
    assert code == 0 and "every table checked" in out
    for label in ("orders", "order_items", "keys", "payments", "webhook_logs",
                  "checking webhook_logs"):
        assert label in shown, label
    assert "100%" in shown
