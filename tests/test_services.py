"""The service layer (bitloot_lite.services), on SQLite and on PostgreSQL.

Most tests take ``db``: one db database per backend for the whole module,
emptied before each test (creating and migrating a database per test would
take most of the run); tests that change the schema take the conftest's fresh
``db``. ``unchanged`` snapshots every table, so a refused call can be
shown to have written nothing.
"""

import datetime as dt
import math
import uuid
from decimal import Decimal

import conftest
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitloot_lite
from bitloot_lite import (
    BitlootError,
    ConflictError,
    InvalidPaymentTransition,
    InvalidTransition,
    Key,
    KeysMissing,
    NotFound,
    Order,
    OrderItem,
    OrderNotPaid,
    OrderStatus,
    Payment,
    PaymentConflict,
    PaymentStatus,
    ReservationConflict,
    StorageError,
    TooManyKeys,
    ValidationError,
    WebhookLog,
    add_keys,
    attach_reservation,
    create_order,
    find_order_by_reservation,
    keys_for_order,
    record_payment,
    record_webhook,
    reveal_key,
    services,
    set_status,
    statements,
    unviewed_keys,
)
from bitloot_lite.db import is_postgres
from bitloot_lite.models import MODELS

UTC = dt.timezone.utc
S = OrderStatus
TABLES = [model._meta.table_name for model in MODELS]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_db(request, tmp_path_factory):
    """One database per backend, shared by the module's tests."""
    folder = tmp_path_factory.mktemp("services")
    with conftest.migrated_database(request, request.param, folder) as (_url, database):
        yield database


@pytest.fixture
def db(module_db):
    """The module's database, bound to the models and emptied."""
    return conftest.bound_and_emptied(module_db)


def snapshot(database):
    """Every row of every table, in a stable order."""
    return {
        table: sorted(map(repr, database.execute_sql(f'SELECT * FROM "{table}"').fetchall()))
        for table in TABLES
    }


class unchanged:
    """``with unchanged(db): ...``: the block writes nothing at all."""

    def __init__(self, database):
        self.database = database

    def __enter__(self):
        self.before = snapshot(self.database)

    def __exit__(self, *exc):
        assert snapshot(self.database) == self.before, "a refused call wrote something"


def paid_order(quantities=(2, 2), email="buyer@example.com"):
    order = create_order(email, [(f"prod-{i}", q) for i, q in enumerate(quantities)])
    for status in ("waiting", "confirming", "paid"):
        set_status(order, status)
    return order


def reload(row):
    return type(row).get_by_id(row.id)


# --------------------------------------------------------------------------- create_order


def test_create_order_writes_the_order_and_its_items(db):
    order = create_order(
        "buyer@example.com",
        [("kinguin-1", 2), {"product_id": "kinguin-2", "quantity": 3}, {"product_id": "k3"}],
        total=Decimal("59.97"),
    )
    assert isinstance(order, Order) and order.id.version == 4
    assert order.status is S.CREATED and order.total == Decimal("59.97")
    assert [(i.product_id, i.quantity) for i in order.items] == [
        ("kinguin-1", 2), ("kinguin-2", 3), ("k3", 1)]
    stored = reload(order)
    for field in ("email", "status", "total", "kinguin_reservation_id", "created_at", "updated_at"):
        assert getattr(stored, field) == getattr(order, field), field
    items = {i.id: i for i in OrderItem.select().where(OrderItem.order == order.id)}
    assert set(items) == {i.id for i in order.items}
    for item in order.items:
        assert item.order.id == order.id and item.order_id == order.id
        again = items[item.id]
        assert (again.product_id, again.quantity, again.created_at) == (
            item.product_id, item.quantity, item.created_at)


@pytest.mark.parametrize("total, expected", [
    (None, Decimal(0)), (0, Decimal(0)), ("19.99", Decimal("19.99")), (7, Decimal(7)),
    (Decimal("0.123456789"), Decimal("0.12345679")),
])
def test_create_order_totals(db, total, expected):
    order = create_order("a@example.com", [("p", 1)], total=total)
    assert order.total == expected
    assert reload(order).total == expected


def test_create_order_is_one_statement_on_postgres_two_on_sqlite(db, queries):
    create_order("a@example.com", [("p", 1)])  # on PostgreSQL, prepares the statement
    with queries(db) as q:
        create_order("b@example.com", [("p", 2), ("q", 2), ("r", 1)])
    assert q.count == (1 if is_postgres(db) else 2)
    assert OrderItem.select().count() == 4



@pytest.mark.parametrize("text", [
    "'; DROP TABLE orders; --", 'Robert"); DELETE FROM "keys";--', "%s %(x)s ? $1 \\",
    "日本語 🎮 naïve", "\u202eevil", "x" * 100,
])
def test_awkward_but_valid_text_is_stored_as_given(db, text):
    order = create_order("a@example.com", [(text, 1)])
    assert OrderItem.get_by_id(order.items[0].id).product_id == text
    add_keys(order.items[0], [text])
    assert keys_for_order(order)[0].storage_ref == text
    assert record_webhook(text, "payment", {text: text}).payload == {text: text}
    assert snapshot(db)["orders"]  # the tables are all still there

@pytest.mark.parametrize("email", [
    "", "no-at-sign", "two@@example.com", "a@b", "a b@example.com", "a@exa mple.com",
    " a@example.com", "a@example.com\n", "a@example..com", "x" * 65 + "@example.com",
    "a@" + "d" * 320 + ".com", None, 42, b"a@example.com", "a\x00@example.com",
    "a\ud800@example.com",
])
def test_create_order_refuses_bad_emails(db, queries, email):
    with unchanged(db), queries(db) as q, pytest.raises(ValidationError) as error:
        create_order(email, [("p", 1)])
    assert q.count == 0  # refused before anything reached the database
    assert error.value.field == "email" and error.value.value == email


@pytest.mark.parametrize("items, field", [
    ([], "items"),
    ("p", "items"),
    ({"product_id": "p"}, "items"),
    (None, "items"),
    ([("p",)], "items[0]"),
    ([("p", 1, 2)], "items[0]"),
    (["p"], "items[0]"),
    ([("p", 1), {"product_id": "q", "qty": 2}], "items[1]"),
    ([("", 1)], "items[0].product_id"),
    ([("x" * 101, 1)], "items[0].product_id"),
    ([(None, 1)], "items[0].product_id"),
    ([(5, 1)], "items[0].product_id"),
    ([("p\x00", 1)], "items[0].product_id"),
    ([("p ", 1)], "items[0].product_id"),
    ([("p", 1), ("q", 0)], "items[1].quantity"),
    ([("p", -1)], "items[0].quantity"),
    ([("p", True)], "items[0].quantity"),
    ([("p", 1.0)], "items[0].quantity"),
    ([("p", "2")], "items[0].quantity"),
    ([("p", 2**31)], "items[0].quantity"),
    ([{"quantity": 1}], "items[0].product_id"),
])
def test_create_order_refuses_bad_items(db, items, field):
    with unchanged(db), pytest.raises(ValidationError) as error:
        create_order("a@example.com", items)
    assert error.value.field == field


def test_create_order_refuses_too_many_items(db):
    with unchanged(db), pytest.raises(ValidationError, match="at most 1000"):
        create_order("a@example.com", [(f"p{i}", 1) for i in range(1001)])
    assert len(create_order("a@example.com", [(f"p{i}", 1) for i in range(1000)]).items) == 1000


@pytest.mark.parametrize("total", [
    -1, "-0.01", 1.5, float("nan"), "NaN", "Infinity", "abc", True, [], Decimal("1e13"),
])
def test_create_order_refuses_bad_totals(db, total):
    with unchanged(db), pytest.raises(ValidationError) as error:
        create_order("a@example.com", [("p", 1)], total=total)
    assert error.value.field == "total"


def test_sqlite_refuses_a_total_it_cannot_keep_exactly(db):
    total = Decimal("123456789012.12345678")
    if is_postgres(db):
        assert create_order("a@example.com", [("p", 1)], total=total).total == total
        return
    with unchanged(db), pytest.raises(ValidationError, match="significant digits"):
        create_order("a@example.com", [("p", 1)], total=total)


# --------------------------------------------------------------------------- set_status


LEGAL = {(source, target) for source, moves in services.ORDER_MOVES.items() for target in moves}


def test_the_lifecycle_table_is_the_documented_one():
    assert services.ORDER_MOVES == {
        S.CREATED: (S.WAITING, S.FAILED),
        S.WAITING: (S.CONFIRMING, S.PAID, S.UNDERPAID, S.FAILED),
        S.CONFIRMING: (S.PAID, S.UNDERPAID, S.FAILED),
        S.UNDERPAID: (S.CONFIRMING, S.PAID, S.FAILED),
        S.PAID: (S.FULFILLED,),
        S.FULFILLED: (),
        S.FAILED: (),
    }


def test_every_move_is_allowed_or_refused_as_the_table_says(db):
    for source in S:
        for target in S:
            order = create_order("a@example.com", [("p", 1)])
            add_keys(order.items[0], [f"keys/{order.id}"])  # so that paid -> fulfilled can
            Order.update(status=source).where(Order.id == order.id).execute()
            if (source, target) in LEGAL or source is target:
                assert set_status(order.id, target).status is target
                assert reload(order).status is target
                continue
            with unchanged(db), pytest.raises(InvalidTransition) as error:
                set_status(order, target)
            assert (error.value.order_id, error.value.current, error.value.requested) == (
                order.id, source, target)
            assert source.value in str(error.value) and target.value in str(error.value)


def test_set_status_updates_the_instance_and_the_timestamp(db):
    order = create_order("a@example.com", [("p", 1)])
    before = reload(order).updated_at
    same = set_status(order, "waiting")
    assert same is order and order.status is S.WAITING
    assert order.updated_at > before and reload(order).updated_at == order.updated_at
    by_id = set_status(str(order.id), S.CONFIRMING)
    assert by_id is not order and by_id.status is S.CONFIRMING


def test_moving_to_the_current_status_is_a_no_op(db):
    order = create_order("a@example.com", [("p", 1)])
    set_status(order, "waiting")
    with unchanged(db):
        assert set_status(order, "waiting").status is S.WAITING


def test_fulfilled_only_once_every_item_has_all_its_keys(db):
    order = paid_order(quantities=(2, 1))
    first, second = order.items
    with unchanged(db), pytest.raises(KeysMissing) as error:
        set_status(order, "fulfilled")
    assert error.value.missing == 3 and error.value.current is S.PAID
    assert isinstance(error.value, InvalidTransition)
    add_keys(first, ["keys/a", "keys/b"])
    with pytest.raises(KeysMissing) as error:
        set_status(order, "fulfilled")
    assert error.value.missing == 1
    add_keys(second, ["keys/c"])
    assert set_status(order, "fulfilled").status is S.FULFILLED


@pytest.mark.parametrize("status", ["shipped", "PAID", None, 3, ""])
def test_set_status_refuses_unknown_statuses(db, status):
    order = create_order("a@example.com", [("p", 1)])
    with unchanged(db), pytest.raises(ValidationError) as error:
        set_status(order, status)
    assert error.value.field == "status" and error.value.value == status


def test_set_status_of_a_missing_order(db):
    missing = uuid.uuid4()
    with unchanged(db), pytest.raises(NotFound) as error:
        set_status(missing, "waiting")
    assert error.value.model == "Order" and error.value.key == str(missing)
    assert isinstance(error.value, LookupError)


@pytest.mark.parametrize("order", ["not-a-uuid", 42, None, object(), OrderItem(id=uuid.uuid4())])
def test_ids_that_are_no_order_are_refused(db, order):
    with unchanged(db), pytest.raises(ValidationError) as error:
        set_status(order, "waiting")
    assert error.value.field == "order"


# --------------------------------------------------------------------------- reservations


def test_attach_reservation_to_a_paid_order(db):
    order = paid_order()
    assert attach_reservation(order, "kinguin-res-1") is order
    assert order.kinguin_reservation_id == "kinguin-res-1"
    assert reload(order).kinguin_reservation_id == "kinguin-res-1"


def test_attaching_the_same_reservation_again_is_a_no_op(db):
    order = paid_order(quantities=(1,))
    attach_reservation(order, "res-1")
    with unchanged(db):
        assert attach_reservation(order.id, "res-1").kinguin_reservation_id == "res-1"
    add_keys(order.items[0], ["keys/a"])
    set_status(order, "fulfilled")
    with unchanged(db):  # a fulfilled order keeps its reservation: still a no-op
        assert attach_reservation(order, "res-1").status is S.FULFILLED


def test_a_different_reservation_is_refused(db):
    order = paid_order()
    attach_reservation(order, "res-1")
    with unchanged(db), pytest.raises(ReservationConflict) as error:
        attach_reservation(order, "res-2")
    assert (error.value.order_id, error.value.current, error.value.requested) == (
        order.id, "res-1", "res-2")
    assert isinstance(error.value, ConflictError)


def test_a_reservation_held_by_another_order_is_refused(db):
    first, second = paid_order(), paid_order()
    attach_reservation(first, "res-1")
    with unchanged(db), pytest.raises(ReservationConflict) as error:
        attach_reservation(second, "res-1")
    assert error.value.other_order_id == first.id and error.value.order_id == second.id


@pytest.mark.parametrize("status", [s for s in S if s is not S.PAID])
def test_only_a_paid_order_takes_a_reservation(db, status):
    order = create_order("a@example.com", [("p", 1)])
    Order.update(status=status).where(Order.id == order.id).execute()
    with unchanged(db), pytest.raises(OrderNotPaid) as error:
        attach_reservation(order, "res-1")
    assert error.value.status is status and error.value.order_id == order.id


def test_attach_reservation_errors(db):
    with unchanged(db), pytest.raises(NotFound):
        attach_reservation(uuid.uuid4(), "res-1")
    order = paid_order()
    for bad in ("", "r" * 256, None, 7, "res\n1", "res\x00"):
        with unchanged(db), pytest.raises(ValidationError) as error:
            attach_reservation(order, bad)
        assert error.value.field == "reservation_id"


def test_find_order_by_reservation_is_one_query(db, queries):
    order = paid_order()
    paid_order()  # another paid order, without a reservation
    attach_reservation(order, "res-1")
    find_order_by_reservation("res-1")
    with queries(db) as q:
        found = find_order_by_reservation("res-1")
    assert q.count == 1
    assert found.id == order.id and found.kinguin_reservation_id == "res-1"
    assert found.status is S.PAID and found.email == order.email
    with unchanged(db), pytest.raises(NotFound) as error:
        find_order_by_reservation("res-2")
    assert error.value.key == "res-2"
    with pytest.raises(ValidationError):
        find_order_by_reservation("")


def _plan(database, name, params):
    return _plan_text(database, statements.sql(database, name), params)


def test_find_order_by_reservation_uses_its_index(db):
    attach_reservation(paid_order(), "res-1")
    plan = _plan(db, "find_order_by_reservation", ("res-1",))
    # Either index on the column serves it: the planner prefers the unique one (006).
    assert "UQ_orders_kinguinReservationId" in plan or "IDX_orders_kinguinReservationId" in plan


def test_keys_for_order_and_unviewed_keys_use_their_indexes(db):
    order = paid_order()
    add_keys(order.items[0], ["keys/a"])
    assert "IDX_keys_orderItemId" in _plan(db, "keys_for_order", (str(order.id),))
    text = statements.sql(db, "unviewed_keys", (True, False))
    assert "IDX_keys_createdAt" in _plan_text(db, text, (dt.datetime(2030, 1, 1),))


def _plan_text(database, text, params):
    explain = "EXPLAIN" if is_postgres(database) else "EXPLAIN QUERY PLAN"
    if is_postgres(database):
        # Tiny tables make a sequential scan cheapest; show the index can serve it.
        database.execute_sql("SET enable_seqscan = off")
    try:
        return str(database.execute_sql(f"{explain} {text}", params).fetchall())
    finally:
        if is_postgres(database):
            database.execute_sql("RESET enable_seqscan")


# --------------------------------------------------------------------------- keys


def test_add_keys_records_references_in_one_statement(db, queries):
    order = create_order("a@example.com", [("p", 3), ("q", 1)])
    first, second = order.items
    add_keys(second, ["keys/q/0"])  # on PostgreSQL, prepares the statement
    with queries(db) as q:
        assert add_keys(first, ["keys/p/0", "keys/p/1"]) == 2
    assert q.count == 1
    assert [k.storage_ref for k in Key.select().where(Key.order_item == first.id)
            .order_by(Key.created_at, Key.id)] == ["keys/p/0", "keys/p/1"]
    assert add_keys(first.id, ["keys/p/2"]) == 1
    assert first.keys.count() == 3


def test_add_keys_refuses_more_keys_than_the_quantity(db):
    order = create_order("a@example.com", [("p", 2)])
    item = order.items[0]
    with unchanged(db), pytest.raises(TooManyKeys) as error:
        add_keys(item, ["a", "b", "c"])
    assert (error.value.order_item_id, error.value.quantity, error.value.existing,
            error.value.requested) == (item.id, 2, 0, 3)
    add_keys(item, ["a"])
    with unchanged(db), pytest.raises(TooManyKeys) as error:
        add_keys(item, ["b", "c"])
    assert (error.value.existing, error.value.requested) == (1, 2)
    assert add_keys(item, ["b"]) == 1
    with unchanged(db), pytest.raises(TooManyKeys):
        add_keys(item, ["c"])


def test_add_keys_in_batches_is_one_statement_per_batch(db, queries):
    refs = [f"keys/bulk/{i:05d}" for i in range(statements.KEY_BATCH * 2 + 1)]
    item = create_order("a@example.com", [("bulk", len(refs))]).items[0]
    with queries(db) as q:
        assert add_keys(item, refs) == len(refs)
    assert q.count == 3
    assert [k.storage_ref for k in keys_for_order(item.order_id)] == refs  # in the order given


def test_a_refused_batch_undoes_the_batches_before_it(db):
    refs = [f"keys/bulk/{i:05d}" for i in range(statements.KEY_BATCH + 10)]
    item = create_order("a@example.com", [("bulk", len(refs) - 1)]).items[0]
    with unchanged(db), pytest.raises(TooManyKeys) as error:
        add_keys(item, refs)
    assert error.value.requested == len(refs) and error.value.existing == 0


@pytest.mark.parametrize("refs, field", [
    ("keys/a", "storage_refs"),
    (b"keys/a", "storage_refs"),
    ([], "storage_refs"),
    (None, "storage_refs"),
    (["keys/a", "keys/a"], "storage_refs"),
    (["keys/a", ""], "storage_refs[1]"),
    ([None], "storage_refs[0]"),
    ([b"keys/a"], "storage_refs[0]"),
    (["k" * 1025], "storage_refs[0]"),
    (["keys/\x00"], "storage_refs[0]"),
    (["keys/\ud83d"], "storage_refs[0]"),
    (["keys/a\n"], "storage_refs[0]"),
])
def test_add_keys_refuses_bad_references(db, refs, field):
    item = create_order("a@example.com", [("p", 5)]).items[0]
    with unchanged(db), pytest.raises(ValidationError) as error:
        add_keys(item, refs)
    assert error.value.field == field


def test_add_keys_to_a_missing_item(db):
    with unchanged(db), pytest.raises(NotFound) as error:
        add_keys(uuid.uuid4(), ["keys/a"])
    assert error.value.model == "OrderItem"
    order = create_order("a@example.com", [("p", 1)])
    with unchanged(db), pytest.raises(ValidationError):
        add_keys(order, ["keys/a"])  # an Order is not an OrderItem


def test_reveal_key_sets_viewed_at_the_first_time_only(db):
    item = create_order("a@example.com", [("p", 1)]).items[0]
    add_keys(item, ["keys/a"])
    (key,) = keys_for_order(item.order_id)
    assert key.viewed_at is None
    before = dt.datetime.now(UTC)
    assert reveal_key(key) is key
    first = key.viewed_at
    assert first.tzinfo is not None and before <= first <= dt.datetime.now(UTC)
    assert reload(key).viewed_at == first
    with unchanged(db):
        again = reveal_key(str(key.id))
    assert again.viewed_at == first and again.storage_ref == "keys/a"


def test_reveal_a_missing_key(db):
    with unchanged(db), pytest.raises(NotFound) as error:
        reveal_key(uuid.uuid4())
    assert error.value.model == "Key"


def test_keys_for_order_is_one_query(db, queries):
    order = create_order("a@example.com", [("p", 2), ("q", 1), ("r", 1)])
    other = create_order("b@example.com", [("p", 1)])
    add_keys(order.items[0], ["p/0", "p/1"])
    add_keys(order.items[1], ["q/0"])
    add_keys(other.items[0], ["other"])
    keys_for_order(order)
    with queries(db) as q:
        keys = keys_for_order(order)
    assert q.count == 1
    assert [k.storage_ref for k in keys] == ["p/0", "p/1", "q/0"]
    assert all(isinstance(k, Key) and isinstance(k.id, uuid.UUID) for k in keys)
    assert {k.order_item_id for k in keys} == {order.items[0].id, order.items[1].id}
    assert keys_for_order(create_order("c@example.com", [("p", 1)]).id) == []
    with pytest.raises(NotFound):
        keys_for_order(uuid.uuid4())


def test_unviewed_keys_is_one_query(db, queries):
    item = create_order("a@example.com", [("p", 4)]).items[0]
    add_keys(item, ["old/0", "old/1", "old/2"])
    long_ago = dt.datetime(2020, 1, 1, tzinfo=UTC)
    Key.update(created_at=long_ago).execute()
    add_keys(item, ["new/0"])
    reveal_key(keys_for_order(item.order_id)[0])
    unviewed_keys()
    with queries(db) as q:
        assert [k.storage_ref for k in unviewed_keys()] == ["old/1", "old/2", "new/0"]
    assert q.count == 1
    for older_than in (dt.timedelta(days=1), dt.datetime(2021, 1, 1),
                       dt.datetime(2021, 1, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=9)))):
        with queries(db) as q:
            assert [k.storage_ref for k in unviewed_keys(older_than=older_than)] == [
                "old/1", "old/2"]
        assert q.count == 1
    assert [k.storage_ref for k in unviewed_keys(limit=1)] == ["old/1"]
    assert unviewed_keys(older_than=dt.datetime(2019, 1, 1)) == []


@pytest.mark.parametrize("kwargs, field", [
    ({"older_than": "yesterday"}, "older_than"),
    ({"older_than": 3600}, "older_than"),
    ({"older_than": dt.timedelta(seconds=-1)}, "older_than"),
    ({"limit": 0}, "limit"),
    ({"limit": "10"}, "limit"),
])
def test_unviewed_keys_refuses_bad_arguments(db, kwargs, field):
    with pytest.raises(ValidationError) as error:
        unviewed_keys(**kwargs)
    assert error.value.field == field


# --------------------------------------------------------------------------- payments


def test_record_payment_inserts_then_is_idempotent(db, queries):
    order = create_order("a@example.com", [("p", 1)])
    payment = record_payment(order, "np-1", "waiting", price_amount="9.99",
                             price_currency="usd", raw_payload={"payment_id": 1})
    assert isinstance(payment, Payment) and payment.order_id == order.id
    assert (payment.status, payment.price_amount, payment.price_currency, payment.provider,
            payment.confirmations, payment.raw_payload) == (
        PaymentStatus.WAITING, Decimal("9.99"), "usd", "nowpayments", 0, {"payment_id": 1})
    with unchanged(db), queries(db) as q:
        again = record_payment(order.id, "np-1", "waiting", price_amount=Decimal("9.990"),
                               price_currency="usd", raw_payload={"payment_id": 1})
    assert q.count == 2  # the insert that conflicts, the read: no write
    assert again.id == payment.id and again.updated_at == payment.updated_at
    assert Payment.select().count() == 1


def test_record_payment_moves_the_status_forward(db):
    order = create_order("a@example.com", [("p", 1)])
    record_payment(order, "np-1", "waiting")
    confirmed = record_payment(order, "np-1", "confirmed", confirmations=2)
    assert confirmed.status is PaymentStatus.CONFIRMED and confirmed.confirmations == 2
    same = record_payment(order, "np-1", "confirmed", confirmations=5, pay_amount="0.0002",
                          pay_currency="btc")
    assert (same.confirmations, same.pay_amount, same.pay_currency) == (5, Decimal("0.0002"), "btc")
    done = record_payment(order, "np-1", PaymentStatus.FINISHED)
    stored = reload(done)
    assert stored.status is PaymentStatus.FINISHED and stored.confirmations == 5
    for status in ("waiting", "confirmed", "failed", "created"):
        with unchanged(db), pytest.raises(InvalidPaymentTransition) as error:
            record_payment(order, "np-1", status)
        assert (error.value.external_id, error.value.order_id, error.value.current,
                error.value.requested) == ("np-1", order.id, PaymentStatus.FINISHED,
                                           PaymentStatus(status))
        assert isinstance(error.value, InvalidTransition)


def test_the_payment_lifecycle_table_is_the_documented_one():
    P = PaymentStatus
    assert services.PAYMENT_MOVES == {
        P.CREATED: (P.WAITING, P.CONFIRMED, P.FINISHED, P.UNDERPAID, P.FAILED),
        P.WAITING: (P.CONFIRMED, P.FINISHED, P.UNDERPAID, P.FAILED),
        P.CONFIRMED: (P.FINISHED, P.UNDERPAID, P.FAILED),
        P.UNDERPAID: (P.CONFIRMED, P.FINISHED, P.FAILED),
        P.FINISHED: (),
        P.FAILED: (),
    }


def test_the_payment_lifecycle(db):
    order = create_order("a@example.com", [("p", 1)])
    moves = services.PAYMENT_MOVES
    for n, (source, target) in enumerate((s, t) for s in PaymentStatus for t in PaymentStatus):
        record_payment(order, f"np-{n}", source)
        if target is source or target in moves[source]:
            assert record_payment(order, f"np-{n}", target).status is target
        else:
            with unchanged(db), pytest.raises(InvalidPaymentTransition):
                record_payment(order, f"np-{n}", target)


def test_a_payment_of_another_order_is_refused(db):
    first, second = (create_order(f"{n}@example.com", [("p", 1)]) for n in "ab")
    record_payment(first, "np-1", "waiting")
    with unchanged(db), pytest.raises(PaymentConflict) as error:
        record_payment(second, "np-1", "waiting")
    assert (error.value.external_id, error.value.order_id, error.value.other_order_id) == (
        "np-1", second.id, first.id)


@pytest.mark.parametrize("kwargs, field", [
    ({"external_id": ""}, "external_id"),
    ({"external_id": "x" * 256}, "external_id"),
    ({"status": "paid"}, "status"),
    ({"price_amount": 1.5}, "price_amount"),
    ({"price_amount": "-1"}, "price_amount"),
    ({"pay_currency": "bitcoin-cash"}, "pay_currency"),
    ({"confirmations": -1}, "confirmations"),
    ({"provider": ""}, "provider"),
    ({"raw_payload": {"nan": math.nan}}, "raw_payload"),
    ({"raw_payload": {1: "int key"}}, "raw_payload"),
    ({"raw_payload": {"s": {1, 2}}}, "raw_payload"),
    ({"raw_payload": "\x00"}, "raw_payload"),
    ({"amount": "1"}, "amount"),
])
def test_record_payment_refuses_bad_input(db, kwargs, field):
    order = create_order("a@example.com", [("p", 1)])
    arguments = {"external_id": "np-1", "status": "waiting", **kwargs}
    with unchanged(db), pytest.raises(ValidationError) as error:
        record_payment(order, arguments.pop("external_id"), arguments.pop("status"), **arguments)
    assert error.value.field == field


def test_record_payment_for_a_missing_order(db):
    with unchanged(db), pytest.raises(NotFound) as error:
        record_payment(uuid.uuid4(), "np-1", "waiting")
    assert error.value.model == "Order"


# --------------------------------------------------------------------------- webhooks


def test_record_webhook_writes_a_log(db):
    order = create_order("a@example.com", [("p", 1)])
    log = record_webhook("np-1", "payment", {"payment_status": "finished", "n": [1, 2.5]},
                         "sig", signature_valid=True, order=order, payment_id="5077125051",
                         payment_status="finished", result={"ok": True}, source_ip="203.0.113.9")
    stored = reload(log)
    assert isinstance(log, WebhookLog) and stored.attempt_count == log.attempt_count == 1
    assert (stored.external_id, stored.webhook_type, stored.payload, stored.signature,
            stored.signature_valid, stored.processed, stored.order_id, stored.payment_id,
            stored.payment_status, stored.result, stored.source_ip) == (
        "np-1", "payment", {"payment_status": "finished", "n": [1, 2.5]}, "sig", True, False,
        order.id, "5077125051", "finished", {"ok": True}, "203.0.113.9")


def test_a_duplicate_delivery_increments_attempt_count(db, queries):
    first = record_webhook("np-1", "payment", {"v": 1}, "sig-1")
    with queries(db) as q:
        second = record_webhook("np-1", "payment", {"v": 2}, "sig-2")
    assert q.count == 1
    assert second.id == first.id and second.attempt_count == 2
    assert second.payload == {"v": 1} and second.signature == "sig-1"  # the first delivery's
    assert second.updated_at >= first.updated_at
    assert record_webhook("np-1", "payment", {"v": 3}).attempt_count == 3
    assert WebhookLog.select().count() == 1
    # Another type, or the processed copy, is another row (UQ_webhook_idempotency).
    record_webhook("np-1", "refund", {})
    record_webhook("np-1", "payment", {}, processed=True)
    assert WebhookLog.select().count() == 3


@pytest.mark.parametrize("kwargs, field", [
    ({"external_id": ""}, "external_id"),
    ({"webhook_type": "t" * 51}, "webhook_type"),
    ({"payload": None}, "payload"),
    ({"payload": {"x": float("inf")}}, "payload"),
    ({"payload": {"k": b"bytes"}}, "payload"),
    ({"signature": 5}, "signature"),
    ({"signature": "a\x00b"}, "signature"),
    ({"signature_valid": "yes"}, "signature_valid"),
    ({"processed": 1}, "processed"),
    ({"order": "nope"}, "order"),
    ({"payment_id": "p" * 256}, "payment_id"),
    ({"source_ip": "999.1.1.1"}, "source_ip"),
    ({"source_ip": "localhost"}, "source_ip"),
    ({"error": "\ud800"}, "error"),
    ({"result": {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
        ]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}, "result"),
])
def test_record_webhook_refuses_bad_input(db, kwargs, field):
    arguments = {"external_id": "np-1", "webhook_type": "payment", "payload": {}, **kwargs}
    with unchanged(db), pytest.raises(ValidationError) as error:
        record_webhook(arguments.pop("external_id"), arguments.pop("webhook_type"),
                       arguments.pop("payload"), **arguments)
    assert error.value.field == field


# --------------------------------------------------------------------------- errors


def test_every_error_is_a_bitloot_error():
    for name in ("ValidationError", "NotFound", "ConflictError", "InvalidTransition",
                 "KeysMissing", "InvalidPaymentTransition", "OrderNotPaid",
                 "ReservationConflict", "TooManyKeys", "PaymentConflict", "StorageError"):
        assert issubclass(getattr(bitloot_lite, name), BitlootError), name
    assert issubclass(ValidationError, ValueError) and issubclass(NotFound, LookupError)


def _make_inserts_fail(database, table, column, value):
    """A trigger that makes the database refuse rows whose ``column`` is ``value``."""
    if is_postgres(database):
        database.execute_sql(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.\"{column}\" = '{value}' THEN RAISE EXCEPTION USING MESSAGE = "
            f"'refused ' || NEW.\"{column}\"; "
            "END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
        database.execute_sql(
            f'CREATE TRIGGER refuse BEFORE INSERT ON "{table}" '
            "FOR EACH ROW EXECUTE FUNCTION refuse()")
    else:
        database.execute_sql(
            f'CREATE TRIGGER refuse BEFORE INSERT ON "{table}" '
            f"WHEN NEW.\"{column}\" = '{value}' BEGIN SELECT RAISE(ABORT, 'refused {value}'); END")


def _assert_clean(error, secret):
    assert isinstance(error, StorageError) and isinstance(error, BitlootError)
    assert error.__cause__ is None and error.__context__ is None  # no driver text chained
    assert secret not in str(error) and secret not in repr(error.args)


def test_a_database_failure_is_a_storage_error_and_writes_nothing(migrated):
    _make_inserts_fail(migrated, "keys", "storageRef", "secret-key-ref")
    item = create_order("a@example.com", [("p", statements.KEY_BATCH + 1)]).items[0]
    refs = [f"keys/{i}" for i in range(statements.KEY_BATCH)] + ["secret-key-ref"]
    with unchanged(migrated), pytest.raises(StorageError) as error:
        add_keys(item, refs)  # the second batch fails: the first is undone too
    _assert_clean(error.value, "secret-key-ref")
    assert error.value.operation == "add_keys"
    assert add_keys(item, ["keys/fine"]) == 1  # the connection is still usable


def test_a_failed_create_order_leaves_no_order_behind(migrated):
    _make_inserts_fail(migrated, "order_items", "productId", "secret-product")
    with unchanged(migrated), pytest.raises(StorageError) as error:
        create_order("a@example.com", [("fine", 1), ("secret-product", 1)])
    _assert_clean(error.value, "secret-product")
    assert create_order("a@example.com", [("fine", 1)]).items[0].product_id == "fine"


def test_a_failed_call_inside_the_callers_transaction_leaves_it_usable(migrated):
    _make_inserts_fail(migrated, "keys", "storageRef", "boom")
    item = create_order("a@example.com", [("p", 2)]).items[0]
    with migrated.atomic():
        Order.create(email="caller@example.com")
        with pytest.raises(StorageError):
            add_keys(item, ["boom"])
        add_keys(item, ["fine"])  # PostgreSQL would refuse this in an aborted transaction
    assert Order.select().where(Order.email == "caller@example.com").count() == 1
    assert [k.storage_ref for k in keys_for_order(item.order_id)] == ["fine"]


def test_a_failed_create_order_inside_the_callers_transaction_undoes_only_itself(migrated):
    # SQLite: two statements in our savepoint; PostgreSQL: one, in a savepoint
    # sent in the same query string. Either way the order row goes too.
    _make_inserts_fail(migrated, "order_items", "productId", "boom")
    with migrated.atomic():
        Order.create(email="caller@example.com")
        with pytest.raises(StorageError):
            create_order("a@example.com", [("fine", 1), ("boom", 1)])
        assert create_order("b@example.com", [("fine", 1)]).items
    assert sorted(o.email for o in Order.select()) == ["b@example.com", "caller@example.com"]
    assert OrderItem.select().count() == 1


def test_a_failed_write_with_a_result_inside_the_callers_transaction_undoes_only_itself(
    migrated,
):
    _make_inserts_fail(migrated, "webhook_logs", "externalId", "boom")
    with migrated.atomic():
        Order.create(email="caller@example.com")
        with pytest.raises(StorageError):
            record_webhook("boom", "payment", {})
        assert record_webhook("fine", "payment", {}).external_id == "fine"
    assert [w.external_id for w in WebhookLog.select()] == ["fine"]
    assert Order.select().count() == 1


def _savepoints(recorded):
    """(opened, left open) of our savepoint over the recorded query strings."""
    opened = depth = 0
    for sql in recorded:
        for part in sql.split("; "):
            if part == 'SAVEPOINT "bitloot_lite"':
                opened, depth = opened + 1, depth + 1
            elif part == 'RELEASE SAVEPOINT "bitloot_lite"':
                depth -= 1
            assert depth >= 0, recorded
    return opened, depth


def test_a_refusal_inside_the_callers_transaction_leaves_it_usable(db, queries):
    item = create_order("a@example.com", [("p", 1)]).items[0]
    with db.atomic(), queries(db) as q:
        with unchanged(db), pytest.raises(TooManyKeys):
            add_keys(item, ["a", "b"])
        assert add_keys(item, ["a"]) == 1
        with pytest.raises(InvalidTransition):
            set_status(item.order_id, "fulfilled")
        assert set_status(item.order_id, "waiting").status is S.WAITING
    assert [k.storage_ref for k in keys_for_order(item.order_id)] == ["a"]
    # PostgreSQL: each of the four writes ran in its savepoint, each released.
    assert _savepoints(q.statements) == ((4, 0) if is_postgres(db) else (0, 0))


def test_a_checkout_inside_a_transaction_takes_one_round_trip_per_call_on_postgres(db, queries):
    """The savepoint that keeps a failure from aborting the caller's transaction
    travels with the statement: no round trips of its own on PostgreSQL."""
    with db.atomic():  # the first checkout prepares the statements
        order = create_order("a@example.com", [("p", 2), ("q", 2)])
        for item in order.items:
            add_keys(item, [f"keys/{item.product_id}/0", f"keys/{item.product_id}/1"])
        set_status(order, "waiting")
    with db.atomic(), queries(db) as q:
        order = create_order("b@example.com", [("p", 2), ("q", 2)])
        for item in order.items:
            assert add_keys(item, [f"keys/{item.id}/0", f"keys/{item.id}/1"]) == 2
        assert set_status(order, "waiting").status is S.WAITING  # returns a row
    if is_postgres(db):
        # A call that returns a row sends the RELEASE after reading it.
        assert q.count == 5
        assert [sql.startswith('SAVEPOINT "bitloot_lite"; ') for sql in q.statements] == [
            True, True, True, True, False]
        assert _savepoints(q.statements) == (4, 0)
    else:  # a failed statement undoes itself: only the two INSERTs of create_order need one
        assert [sql.split(" ")[0] for sql in q.statements] == [
            "SAVEPOINT", "INSERT", "INSERT", "RELEASE", "INSERT", "INSERT", "UPDATE"]
        assert _savepoints(q.statements) == (1, 0)


def test_statements_are_logged_when_peewee_logs_queries(db, caplog):
    with caplog.at_level("DEBUG", logger="peewee"):
        create_order("a@example.com", [("p", 1)])
    logged = [r.getMessage() for r in caplog.records if r.name == "peewee"]
    assert len(logged) == (1 if is_postgres(db) else 2)
    assert all("EXECUTE" in m or "INSERT" in m for m in logged)


def test_statements_reach_peewee_query_hooks(db):
    if not hasattr(db, "query_hooks"):
        pytest.skip("this peewee has no query hooks")
    seen = []
    db.query_hooks.append(lambda event: seen.append(event.sql))
    try:
        item = create_order("a@example.com", [("p", 1)]).items[0]
        add_keys(item, ["keys/a"])
    finally:
        db.query_hooks.clear()
    # PostgreSQL: the create_order and insert_keys statements; SQLite: the
    # order, its items and the keys.
    assert len(seen) == (2 if is_postgres(db) else 3)
    assert 'INSERT INTO "keys"' in seen[-1] or "EXECUTE" in seen[-1]


def test_calls_inside_a_transaction_roll_back_with_it(db):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), unchanged(db), db.atomic():
        order = create_order("a@example.com", [("p", 1)])
        add_keys(order.items[0], ["keys/a"])
        set_status(order, "waiting")
        record_webhook("np-1", "payment", {})
        raise Abort


def test_the_library_never_prints(db, capsys):
    order = paid_order()
    add_keys(order.items[0], ["a", "b"])
    with pytest.raises(BitlootError):
        set_status(order, "fulfilled")
    assert capsys.readouterr() == ("", "")


def test_generated_ids_are_version_4_uuids():
    ids = statements.uuid4s(2000)
    assert len(set(ids)) == 2000
    for text in ids:
        value = uuid.UUID(text)
        assert str(value) == text and value.version == 4 and value.variant == uuid.RFC_4122


# --------------------------------------------------------------------------- properties
#
# Arbitrary text at every validated input: each value is either stored and read
# back unchanged, or refused with a ValidationError having written nothing.

ALPHABET = st.one_of(
    st.characters(exclude_categories=()),  # any code point, controls included
    st.characters(categories=["Cs"]),  # lone surrogates: not encodable as UTF-8
    st.sampled_from(["\x00", "'", '"', ";", "-", "%", "?", "$", "\\", "\n", " ", "\u202e"]),
)
NASTY = st.sampled_from([
    "'; DROP TABLE orders; --", "Robert'); DROP TABLE \"keys\";--", '" OR "1"="1', "%(x)s",
    "%s%s%s", "?", "$1", "\\'", "\\x00", "\x00", "a\x00b", "\ud800", "a\udfffb", "\ufeff",
    "\uffff", "\U0010ffff", "日本語🎮", "é" * 100, "x" * 255, "x" * 256, "y" * 5000,
])
TEXT = st.one_of(
    NASTY,
    st.text(ALPHABET, max_size=40),
    st.text(ALPHABET, min_size=90, max_size=1100),
    st.builds(lambda a, b, c: a + b + c, st.text(ALPHABET, max_size=8), NASTY,
              st.text(ALPHABET, max_size=8)),
)
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def stored_or_refused(database, call):
    """Run ``call``; True if it stored, False if it was refused having written nothing."""
    before = snapshot(database)
    try:
        call()
    except ValidationError:
        assert snapshot(database) == before
        return False
    return True


@PROPERTY
@given(product=TEXT)
def test_any_product_id_is_stored_unchanged_or_refused(db, product):
    result = []
    if stored_or_refused(db, lambda: result.append(create_order("a@example.com", [(product, 1)]))):
        (item,) = result[0].items
        assert OrderItem.get_by_id(item.id).product_id == product


@PROPERTY
@given(local=TEXT, domain=TEXT, whole=TEXT)
def test_any_email_is_stored_unchanged_or_refused(db, local, domain, whole):
    for email in (f"{local}@{domain}.com", whole):
        result = []
        if stored_or_refused(db, lambda e=email, r=result: r.append(create_order(e, [("p", 1)]))):
            assert Order.get_by_id(result[0].id).email == email


@settings(max_examples=400, deadline=None)
@given(local=TEXT, domain=TEXT, whole=TEXT)
def test_the_email_fast_path_accepts_exactly_what_the_full_check_does(local, domain, whole):
    from bitloot_lite import validating

    for email in (f"{local}@{domain}.com", f"{local}@{domain}", whole):
        try:  # the full check, as email() runs it off its fast path
            validating.text("email", email, 320)
            full = bool(validating._EMAIL.fullmatch(email))
        except ValidationError:
            full = False
        try:
            accepted = validating.email(email) == email
        except ValidationError:
            accepted = False
        assert accepted == full, email


@PROPERTY
@given(reservation=TEXT)
def test_any_reservation_id_is_stored_unchanged_or_refused(db, reservation):
    Order.update(kinguin_reservation_id=None).execute()  # examples share the database
    order = create_order("a@example.com", [("p", 1)])
    Order.update(status=S.PAID).where(Order.id == order.id).execute()
    if stored_or_refused(db, lambda: attach_reservation(order, reservation)):
        assert Order.get_by_id(order.id).kinguin_reservation_id == reservation
        assert find_order_by_reservation(reservation).id == order.id


@PROPERTY
@given(refs=st.lists(TEXT, min_size=1, max_size=4))
def test_any_storage_ref_is_stored_unchanged_or_refused(db, refs):
    Key.delete().execute()  # examples share the database; a reference is one key
    item = create_order("a@example.com", [("p", 10)]).items[0]
    if stored_or_refused(db, lambda: add_keys(item, refs)):
        assert [k.storage_ref for k in keys_for_order(item.order_id)] == refs


@PROPERTY
@given(external_id=TEXT, webhook_type=TEXT, signature=TEXT, key=TEXT, value=TEXT)
def test_any_webhook_text_is_stored_unchanged_or_refused(db, external_id, webhook_type,
                                                          signature, key, value):
    WebhookLog.delete().execute()  # examples share the database: no duplicate deliveries
    payload = {key: [value, {"nested": value}]}
    result = []
    if stored_or_refused(db, lambda: result.append(
            record_webhook(external_id, webhook_type, payload, signature, error=value))):
        stored = WebhookLog.get_by_id(result[0].id)
        assert (stored.external_id, stored.webhook_type, stored.payload, stored.signature,
                stored.error) == (external_id, webhook_type, payload, signature, value)


@PROPERTY
@given(external_id=TEXT, currency=TEXT, value=TEXT)
def test_any_payment_text_is_stored_unchanged_or_refused(db, external_id, currency, value):
    Payment.delete().execute()  # examples share the database
    order = create_order("a@example.com", [("p", 1)])
    result = []
    if stored_or_refused(db, lambda: result.append(record_payment(
            order, external_id, "waiting", price_currency=currency, raw_payload=[value]))):
        stored = Payment.get_by_id(result[0].id)
        assert (stored.external_id, stored.price_currency, stored.raw_payload) == (
            external_id, currency, [value])
