"""The models against the migrated schema, on SQLite and on PostgreSQL.

Every test takes ``migrated``: a fresh database of the parametrised backend,
migrated to the newest migration, with the models bound to it.
"""

import datetime as dt
import json
import threading
import uuid
from decimal import Decimal

import peewee as pw
import pytest

import bitloot_lite
from bitloot_lite import (
    Key,
    Order,
    OrderItem,
    OrderStatus,
    Payment,
    PaymentStatus,
    WebhookLog,
)
from bitloot_lite.db import is_postgres

UTC = dt.timezone.utc


def count(database, sql, params=()):
    return database.execute_sql(sql, params).fetchone()[0]


def make_order(email="buyer@example.com", items=0, keys_per_item=0, payments=0, **fields):
    order = Order.create(email=email, **fields)
    for i in range(items):
        item = OrderItem.create(order=order, product_id=f"prod-{i}")
        for k in range(keys_per_item):
            Key.create(order_item=item, storage_ref=f"s3://keys/{order.id}/{i}/{k}")
    for p in range(payments):
        Payment.create(order=order, external_id=f"np-{uuid.uuid4().hex}-{p}")
    return order


def webhook_for(order, external_id=None, **fields):
    return WebhookLog.create(
        external_id=external_id or f"wh-{uuid.uuid4().hex}",
        webhook_type="payment",
        payload={"orderId": str(order.id)},
        order_id=order.id,
        **fields,
    )


def close_to_now(value, tolerance=dt.timedelta(minutes=1)):
    return abs(dt.datetime.now(UTC) - value) < tolerance


# --------------------------------------------------------------------------- cascades


def _cascade_fixture():
    doomed = make_order("doomed@example.com", items=2, keys_per_item=3, payments=2)
    kept = make_order("kept@example.com", items=2, keys_per_item=2, payments=1)
    doomed_logs = [webhook_for(doomed), webhook_for(doomed)]
    kept_log = webhook_for(kept)
    return doomed, kept, doomed_logs, kept_log


def _assert_order_gone_but_logs_stay(database, doomed, kept, doomed_logs, kept_log):
    assert not Order.select().where(Order.id == doomed.id).exists()
    assert OrderItem.select().where(OrderItem.order == doomed.id).count() == 0
    assert Payment.select().where(Payment.order == doomed.id).count() == 0
    assert doomed.keys.count() == 0
    # Nothing dangling anywhere: every item/key/payment left belongs to `kept`.
    assert OrderItem.select().count() == 2
    assert Key.select().count() == 4
    assert Payment.select().count() == 1
    assert count(database, 'SELECT count(*) FROM "keys"') == 4
    # The other order is untouched.
    assert Order.get_by_id(kept.id).email == "kept@example.com"
    assert kept.items.count() == 2
    assert kept.keys.count() == 4
    assert kept.payments.count() == 1
    # Webhook logs outlive the order they mention.
    for log in doomed_logs:
        again = WebhookLog.get_by_id(log.id)
        assert again.order_id == doomed.id
        assert again.payload == {"orderId": str(doomed.id)}
    assert WebhookLog.get_by_id(kept_log.id).order_id == kept.id
    assert WebhookLog.select().count() == 3


def test_delete_instance_cascades_to_items_keys_and_payments(migrated):
    doomed, kept, doomed_logs, kept_log = _cascade_fixture()
    assert Key.select().count() == 6 + 4
    assert doomed.delete_instance() == 1
    _assert_order_gone_but_logs_stay(migrated, doomed, kept, doomed_logs, kept_log)


def test_raw_delete_cascades_in_the_database(migrated):
    doomed, kept, doomed_logs, kept_log = _cascade_fixture()
    migrated.execute_sql(f'DELETE FROM "orders" WHERE "id" = {migrated.param}', (str(doomed.id),))
    _assert_order_gone_but_logs_stay(migrated, doomed, kept, doomed_logs, kept_log)


def test_deleting_an_item_deletes_only_its_keys(migrated):
    order = make_order(items=2, keys_per_item=2, payments=1)
    other = make_order("other@example.com", items=1, keys_per_item=2)
    first, second = order.items.order_by(OrderItem.product_id)
    first.delete_instance()
    assert Order.get_by_id(order.id).email == order.email
    assert [i.id for i in order.items] == [second.id]
    assert Key.select().where(Key.order_item == first.id).count() == 0
    assert second.keys.count() == 2
    assert order.keys.count() == 2
    assert order.payments.count() == 1
    assert other.keys.count() == 2
    # And by raw SQL: the database itself cascades.
    migrated.execute_sql(
        f'DELETE FROM "order_items" WHERE "id" = {migrated.param}', (str(second.id),)
    )
    assert order.keys.count() == 0
    assert order.payments.count() == 1
    assert other.keys.count() == 2


# --------------------------------------------------------------------------- back-references


def test_backrefs(migrated):
    order = make_order(items=2, keys_per_item=2, payments=2)
    assert sorted(i.product_id for i in order.items) == ["prod-0", "prod-1"]
    assert all(isinstance(i, OrderItem) for i in order.items)
    for item in order.items:
        assert item.order.id == order.id
        keys = list(item.keys)
        assert len(keys) == 2
        assert all(k.__data__["order_item"] == item.id for k in keys)
    payments = list(order.payments)
    assert len(payments) == 2
    assert all(p.__data__["order"] == order.id for p in payments)


def test_order_keys_is_one_query_over_all_items(migrated, queries):
    order = make_order(items=3, keys_per_item=3)
    other = make_order("other@example.com", items=2, keys_per_item=2)
    expected = {k.id for item in order.items for k in item.keys}
    other_keys = {k.id for k in Key.select().join(OrderItem).where(OrderItem.order == other.id)}
    assert len(expected) == 9 and len(other_keys) == 4

    with queries(migrated) as q:
        keys = list(order.keys)
    assert q.count == 1
    assert {k.id for k in keys} == expected
    assert len(keys) == 9
    assert all(isinstance(k, Key) for k in keys)
    assert not ({k.id for k in keys} & other_keys)


def test_order_keys_is_a_chainable_key_select(migrated, queries):
    order = make_order(items=2, keys_per_item=2)
    make_order("other@example.com", items=1, keys_per_item=3)
    target = next(iter(order.items))
    seen = next(iter(target.keys))
    Key.update(viewed_at=dt.datetime.now(UTC)).where(Key.id == seen.id).execute()

    query = order.keys
    assert isinstance(query, pw.ModelSelect)
    assert query.model is Key
    with queries(migrated) as q:
        assert query.where(Key.viewed_at.is_null(False)).count() == 1
        assert [k.id for k in query.where(Key.viewed_at.is_null())] != []
        assert query.where(Key.order_item == target.id).count() == 2
        assert [k.id for k in query.limit(1)] != []
    assert q.count == 4


# --------------------------------------------------------------------------- UUID ids


def test_ids_are_generated_in_python_as_uuid4(migrated):
    order = Order.create(email="a@example.com")
    item = OrderItem.create(order=order, product_id="p")
    key = Key.create(order_item=item)
    payment = Payment.create(order=order, external_id="np-1")
    log = webhook_for(order)
    for row in (order, item, key, payment, log):
        assert isinstance(row.id, uuid.UUID)
        assert row.id.version == 4
        again = type(row).get_by_id(row.id)
        assert isinstance(again.id, uuid.UUID)
        assert again.id == row.id
    assert len({order.id, item.id, key.id, payment.id, log.id}) == 5


@pytest.mark.parametrize(
    "table, columns, values",
    [
        ("orders", '"email"', "'raw@example.com'"),
        ("webhook_logs", '"externalId", "webhookType", "payload"', "'raw-1', 'payment', '{}'"),
    ],
)
def test_database_defaults_the_id_to_a_uuid4(migrated, table, columns, values):
    migrated.execute_sql(f'INSERT INTO "{table}" ({columns}) VALUES ({values})')
    (raw,) = migrated.execute_sql(f'SELECT "id" FROM "{table}"').fetchone()
    parsed = uuid.UUID(str(raw))
    assert str(parsed) == str(raw)  # canonical, dashed, lower case
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    model = {"orders": Order, "webhook_logs": WebhookLog}[table]
    row = model.get()
    assert isinstance(row.id, uuid.UUID)
    assert row.id == parsed


def test_database_default_ids_on_every_table(migrated):
    p = migrated.param
    migrated.execute_sql("INSERT INTO \"orders\" (\"email\") VALUES ('x@example.com')")
    (order_id,) = migrated.execute_sql('SELECT "id" FROM "orders"').fetchone()
    migrated.execute_sql(
        f'INSERT INTO "order_items" ("orderId", "productId") VALUES ({p}, {p})',
        (str(order_id), "p"),
    )
    (item_id,) = migrated.execute_sql('SELECT "id" FROM "order_items"').fetchone()
    migrated.execute_sql(f'INSERT INTO "keys" ("orderItemId") VALUES ({p})', (str(item_id),))
    migrated.execute_sql(
        f'INSERT INTO "payments" ("orderId", "externalId") VALUES ({p}, {p})', (str(order_id), "np")
    )
    for _ in range(20):  # the SQLite expression is random: try it more than once
        migrated.execute_sql("INSERT INTO \"orders\" (\"email\") VALUES ('y@example.com')")
    ids = [o.id for o in Order.select()] + [
        OrderItem.get().id, Key.get().id, Payment.get().id
    ]
    assert len(set(ids)) == len(ids) == 24
    for value in ids:
        assert isinstance(value, uuid.UUID) and value.version == 4
        assert value.variant == uuid.RFC_4122
    order = Order.get_by_id(order_id)
    assert [k.id for k in order.keys] == [Key.get().id]
    assert order.payments.get().external_id == "np"


def test_lookups_by_str_and_by_uuid(migrated):
    order = make_order(items=1)
    as_str = str(order.id)
    for value in (order.id, as_str, as_str.upper(), order.id.hex):
        assert Order.get_by_id(value).id == order.id
        assert Order.get(Order.id == value).id == order.id
        assert Order.select().where(Order.id.in_([value])).count() == 1
        assert OrderItem.select().where(OrderItem.order == value).count() == 1
    item = OrderItem.create(order=as_str, product_id="by-str")
    assert OrderItem.get_by_id(str(item.id)).order.id == order.id
    log = WebhookLog.create(external_id="e", webhook_type="t", payload={}, order_id=as_str)
    assert WebhookLog.get(WebhookLog.order_id == order.id).id == log.id
    assert isinstance(WebhookLog.get_by_id(log.id).order_id, uuid.UUID)
    with pytest.raises(Order.DoesNotExist):
        Order.get_by_id(uuid.uuid4())


# --------------------------------------------------------------------------- timestamps


def _reload(row):
    return type(row).get_by_id(row.id)


def test_timestamps_set_on_create_aware_utc(migrated):
    order = make_order(items=1, keys_per_item=1, payments=1)
    rows = [order, next(iter(order.items)), next(iter(order.keys)), next(iter(order.payments))]
    rows.append(webhook_for(order))
    for row in rows:
        for value in (row.created_at, _reload(row).created_at, _reload(row).updated_at):
            assert value.tzinfo is not None
            assert value.utcoffset() == dt.timedelta(0)
            assert close_to_now(value)
        assert _reload(row).created_at == row.created_at
        assert _reload(row).updated_at == row.updated_at


def test_save_changes_updated_at_but_not_created_at(migrated):
    order = Order.create(email="a@example.com")
    created, updated = order.created_at, order.updated_at
    previous = updated
    for status in (OrderStatus.WAITING, OrderStatus.PAID):
        order.status = status
        order.save()
        again = _reload(order)
        assert again.created_at == created
        assert again.updated_at > previous
        assert again.updated_at == order.updated_at
        previous = again.updated_at
    # A save() with nothing changed still counts as a write.
    _reload(order).save()
    assert _reload(order).updated_at > previous


def test_save_only_some_fields_still_writes_updated_at(migrated):
    order = Order.create(email="a@example.com")
    before = _reload(order).updated_at
    order.status = OrderStatus.PAID
    order.save(only=[Order.status])
    again = _reload(order)
    assert again.status is OrderStatus.PAID
    # The instance claims a new updated_at; the row must say the same.
    assert again.updated_at == order.updated_at
    assert again.updated_at > before


def test_update_query_sets_updated_at(migrated):
    order = Order.create(email="a@example.com")
    other = Order.create(email="b@example.com")
    before = _reload(order).updated_at
    created = _reload(order).created_at
    assert Order.update(status=OrderStatus.PAID).where(Order.id == order.id).execute() == 1
    again = _reload(order)
    assert again.status is OrderStatus.PAID
    assert again.updated_at > before
    assert again.created_at == created
    assert _reload(other).updated_at == other.updated_at

    # The same with fields (not names) as keys, and on another model.
    before = again.updated_at
    Order.update({Order.email: "c@example.com"}).where(Order.id == order.id).execute()
    assert _reload(order).updated_at > before
    item = OrderItem.create(order=order, product_id="p")
    OrderItem.update(quantity=3).where(OrderItem.id == item.id).execute()
    assert _reload(item).updated_at > item.updated_at


def test_update_query_respects_an_explicit_updated_at(migrated):
    order = Order.create(email="a@example.com")
    when = dt.datetime(2021, 6, 1, 12, 30, tzinfo=UTC)
    Order.update(status="paid", updated_at=when).where(Order.id == order.id).execute()
    assert _reload(order).updated_at == when
    earlier = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    Order.update({Order.updated_at: earlier, Order.status: "failed"}).execute()
    again = _reload(order)
    assert again.updated_at == earlier
    assert again.status is OrderStatus.FAILED


def test_naive_datetimes_are_utc_and_aware_ones_are_converted(migrated):
    naive = dt.datetime(2024, 3, 10, 8, 15, 30, 123456)
    order = Order.create(email="a@example.com", created_at=naive)
    assert _reload(order).created_at == naive.replace(tzinfo=UTC)

    tokyo = dt.timezone(dt.timedelta(hours=9))
    local = dt.datetime(2024, 3, 10, 17, 15, 30, 123456, tzinfo=tokyo)
    item = OrderItem.create(order=order, product_id="p", created_at=local)
    again = _reload(item).created_at
    assert again == local
    assert again.utcoffset() == dt.timedelta(0)
    assert (again.hour, again.minute) == (8, 15)

    key = Key.create(order_item=item, viewed_at=local)
    assert _reload(key).viewed_at == naive.replace(tzinfo=UTC)
    p = migrated.param
    (raw,) = migrated.execute_sql(
        f'SELECT "viewedAt" FROM "keys" WHERE "id" = {p}', (str(key.id),)
    ).fetchone()
    if isinstance(raw, str):
        raw = dt.datetime.fromisoformat(raw)
    assert raw == naive  # stored as UTC wall time, without an offset

    # Filtering with an aware value compares in UTC too.
    assert Key.select().where(Key.viewed_at == local).count() == 1
    assert Key.select().where(Key.viewed_at == naive).count() == 1


def test_database_timestamp_defaults_are_utc(migrated, db_url):
    database = migrated
    if is_postgres(migrated):
        # Make the server's own default a zone far from UTC: the session must override it.
        name = migrated.database
        migrated.execute_sql(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/Los_Angeles'")
        migrated.close()
        database = bitloot_lite.connect(db_url)
    try:
        database.execute_sql("INSERT INTO \"orders\" (\"email\") VALUES ('raw@example.com')")
        order = Order.get(Order.email == "raw@example.com")
        for value in (order.created_at, order.updated_at):
            assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)
            assert close_to_now(value), value
        database.execute_sql(
            f'INSERT INTO "order_items" ("orderId", "productId") VALUES ({database.param}, \'p\')',
            (str(order.id),),
        )
        item = OrderItem.get()
        assert close_to_now(item.created_at) and close_to_now(item.updated_at)
    finally:
        database.close()


# --------------------------------------------------------------------------- enums


def test_status_enums_round_trip(migrated):
    for status in OrderStatus:
        order = Order.create(email=f"{status.value}@example.com", status=status)
        again = _reload(order)
        assert again.status is status
        assert Order.select().where(Order.status == status).count() == 1
    order = Order.get(Order.email == "created@example.com")
    for status in PaymentStatus:
        payment = Payment.create(order=order, external_id=f"np-{status.value}", status=status)
        assert _reload(payment).status is status
    assert Order.create(email="default@example.com").status is OrderStatus.CREATED
    assert _reload(Order.get(Order.email == "default@example.com")).status is OrderStatus.CREATED
    payment = Payment.create(order=order, external_id="np-default")
    assert _reload(payment).status is PaymentStatus.CREATED


def test_status_accepts_strings(migrated):
    order = Order.create(email="a@example.com", status="paid")
    assert _reload(order).status is OrderStatus.PAID
    order.status = "fulfilled"
    order.save()
    assert _reload(order).status is OrderStatus.FULFILLED
    assert Order.select().where(Order.status == "fulfilled").count() == 1
    payment = Payment.create(order=order, external_id="np", status="finished")
    assert _reload(payment).status is PaymentStatus.FINISHED


def test_invalid_status_is_refused_by_the_field(migrated):
    with pytest.raises(ValueError):
        Order.create(email="a@example.com", status="shipped")
    order = Order.create(email="a@example.com")
    order.status = "bogus"
    with pytest.raises(ValueError):
        order.save()
    with pytest.raises(ValueError):
        Order.update(status="bogus").execute()
    with pytest.raises(ValueError):
        Payment.create(order=order, external_id="np", status="paid")  # an order status only
    assert _reload(order).status is OrderStatus.CREATED


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO \"orders\" (\"email\", \"status\") VALUES ('a@example.com', 'shipped')",
        "UPDATE \"orders\" SET \"status\" = 'shipped'",
        "INSERT INTO \"payments\" (\"orderId\", \"externalId\", \"status\") "
        "SELECT \"id\", 'np-raw', 'paid' FROM \"orders\"",
    ],
)
def test_invalid_status_is_refused_by_the_database(migrated, sql):
    Order.create(email="seed@example.com")
    with pytest.raises((pw.IntegrityError, pw.DataError)), migrated.atomic():
        migrated.execute_sql(sql)
    assert [o.status for o in Order.select()] == [OrderStatus.CREATED]
    assert Payment.select().count() == 0


# --------------------------------------------------------------------------- money


BIG = Decimal("123456789012.12345678")  # all 20 digits numeric(20,8) holds
SQLITE_BIG = Decimal("1234567.12345678")  # 15 significant digits: SQLite's exact limit


def test_money_round_trips_exactly(migrated, backend):
    """Every digit PostgreSQL's numeric(20,8) keeps; on SQLite, the 15 a NUMERIC keeps."""
    big = BIG if backend == "postgres" else SQLITE_BIG
    order = Order.create(email="a@example.com", total=big)
    payment = Payment.create(
        order=order, external_id="np", price_amount=big, pay_amount=Decimal("0.00000001")
    )
    again = _reload(order)
    assert isinstance(again.total, Decimal)
    assert again.total == big and str(again.total) == str(big)
    pay = _reload(payment)
    assert pay.price_amount == big and str(pay.price_amount) == str(big)
    assert pay.pay_amount == Decimal("0.00000001")
    negative = Order.create(email="b@example.com", total=-big)
    assert _reload(negative).total == -big


def test_money_beyond_15_digits_is_kept_or_refused_never_rounded(migrated, backend):
    if backend == "postgres":
        assert _reload(Order.create(email="a@example.com", total=BIG)).total == BIG
        return
    with pytest.raises(ValueError, match="significant digits"), migrated.atomic():
        Order.create(email="a@example.com", total=BIG)
    assert Order.select().count() == 0


def test_money_compares_sorts_and_sums_as_numbers(migrated):
    for total in ("2", "10", "100", "-3", "0.5"):
        Order.create(email=f"{total}@example.com", total=Decimal(total))
    assert sorted(o.total for o in Order.select().where(Order.total > 5)) == [10, 100]
    assert [o.total for o in Order.select().order_by(Order.total)] == [-3, 0.5, 2, 10, 100]
    total = Order.select(pw.fn.SUM(Order.total)).scalar()
    assert Decimal(str(total)) == Decimal("109.5")


def test_money_default_total_is_zero(migrated):
    order = Order.create(email="a@example.com")
    assert _reload(order).total == Decimal(0)
    assert isinstance(_reload(order).total, Decimal)
    migrated.execute_sql("INSERT INTO \"orders\" (\"email\") VALUES ('raw@example.com')")
    assert Order.get(Order.email == "raw@example.com").total == Decimal(0)
    payment = Payment.create(order=order, external_id="np")
    assert _reload(payment).price_amount is None


def test_money_keeps_eight_decimal_places_on_both_backends(migrated):
    """numeric(20,8): a value with more decimals reads back rounded to 8, everywhere."""
    order = Order.create(email="a@example.com", total=Decimal("1.123456785"))
    payment = Payment.create(order=order, external_id="np", price_amount=Decimal("-2.0000000049"))
    assert _reload(order).total == Decimal("1.12345679")
    assert _reload(payment).price_amount == Decimal("-2.00000000")


def test_money_too_large_for_numeric_20_8_is_refused_on_both_backends(migrated):
    # 13 digits before the point: numeric(20,8) keeps only 12.
    with pytest.raises((ValueError, pw.DataError)), migrated.atomic():
        Order.create(email="a@example.com", total=Decimal("1234567890123"))
    assert Order.select().count() == 0


# --------------------------------------------------------------------------- JSON


JSON_VALUES = [
    {"payment_id": 5077125051, "payment_status": "finished", "price_amount": 12.5},
    [1, 2.5, "three", None, True, {"four": [4]}],
    {"naïve": "héllo wörld ✓ 日本語 🎮", "nested": {"list": [{"ß": "€"}], "empty": {}}},
    "just a string",
    '{"looks": "like json"}',
    "",
    42,
    -3.25,
    True,
    [],
    {},
]


def _json_id(value):
    return f"{type(value).__name__}:{json.dumps(value)[:20]}"


@pytest.mark.parametrize("value", JSON_VALUES, ids=_json_id)
def test_json_round_trips(migrated, value):
    order = Order.create(email="a@example.com")
    log = WebhookLog.create(external_id="e", webhook_type="payment", payload=value, result=value)
    payment = Payment.create(order=order, external_id="np", raw_payload=value)
    again = _reload(log)
    assert again.payload == value and type(again.payload) is type(value)
    assert again.result == value
    pay = _reload(payment)
    assert pay.raw_payload == value and type(pay.raw_payload) is type(value)
    assert _reload(Payment.create(order=order, external_id="np2")).raw_payload is None


@pytest.mark.parametrize("column", ["payload", "result"])
def test_invalid_json_is_refused_by_the_database(migrated, column):
    values = "'{not json'" if column == "payload" else "'{}', '[1,'"
    columns = '"payload"' if column == "payload" else '"payload", "result"'
    with pytest.raises((pw.IntegrityError, pw.DataError)), migrated.atomic():
        migrated.execute_sql(
            f'INSERT INTO "webhook_logs" ("externalId", "webhookType", {columns}) '
            f"VALUES ('e', 'payment', {values})"
        )
    assert WebhookLog.select().count() == 0


def test_invalid_json_in_raw_payload_is_refused_by_the_database(migrated):
    order = Order.create(email="a@example.com")
    with pytest.raises((pw.IntegrityError, pw.DataError)), migrated.atomic():
        migrated.execute_sql(
            'INSERT INTO "payments" ("orderId", "externalId", "rawPayload") '
            f"VALUES ({migrated.param}, 'np', 'nope: not json')",
            (str(order.id),),
        )
    assert Payment.select().count() == 0


# --------------------------------------------------------------------------- uniqueness


def test_webhook_idempotency_constraint(migrated):
    WebhookLog.create(external_id="np-1", webhook_type="payment", payload={}, processed=False)
    # Differing in any one of the three columns is fine.
    WebhookLog.create(external_id="np-1", webhook_type="payment", payload={}, processed=True)
    WebhookLog.create(external_id="np-1", webhook_type="refund", payload={}, processed=False)
    WebhookLog.create(external_id="np-2", webhook_type="payment", payload={}, processed=False)
    with pytest.raises(pw.IntegrityError), migrated.atomic():
        WebhookLog.create(
            external_id="np-1", webhook_type="payment", payload={"again": 1}, processed=False
        )
    with pytest.raises(pw.IntegrityError), migrated.atomic():
        WebhookLog.create(
            external_id="np-1", webhook_type="payment", payload={}, processed=True
        )
    assert WebhookLog.select().count() == 4


def test_payment_external_id_is_unique(migrated):
    order = Order.create(email="a@example.com")
    Payment.create(order=order, external_id="np-1")
    with pytest.raises(pw.IntegrityError), migrated.atomic():
        Payment.create(order=order, external_id="np-1")
    assert Payment.select().count() == 1


# --------------------------------------------------------------------------- FKs on new connections


def _check_new_connection(database):
    """Runs on whichever thread calls it, on that thread's own connection."""
    if not is_postgres(database):
        assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] > 0
    with pytest.raises(pw.IntegrityError), database.atomic():
        OrderItem.create(order=uuid.uuid4(), product_id="orphan")
    with pytest.raises(pw.IntegrityError), database.atomic():
        database.execute_sql(
            f'INSERT INTO "keys" ("orderItemId") VALUES ({database.param})',
            (str(uuid.uuid4()),),
        )
    with pytest.raises(pw.IntegrityError), database.atomic():
        Payment.create(order=uuid.uuid4(), external_id=f"orphan-{uuid.uuid4()}")
    assert OrderItem.select().where(OrderItem.product_id == "orphan").count() == 0


def test_a_new_connection_enforces_foreign_keys(migrated, db_url):
    migrated.close()
    fresh = bitloot_lite.connect(db_url)
    try:
        _check_new_connection(fresh)
        # And the cascades still work on it.
        order = make_order(items=1, keys_per_item=1)
        fresh.execute_sql(f'DELETE FROM "orders" WHERE "id" = {fresh.param}', (str(order.id),))
        assert Key.select().count() == 0
    finally:
        fresh.close()


def test_a_connection_opened_by_another_thread_enforces_foreign_keys(migrated, db_url):
    fresh = bitloot_lite.connect(db_url)
    errors = []

    def worker():
        try:
            _check_new_connection(fresh)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            fresh.close()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    fresh.close()
    if errors:
        raise errors[0]
