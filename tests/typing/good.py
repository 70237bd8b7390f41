"""A typed script using bitloot-lite as the README does ("Using it from a script" and
"The service API"): mypy --strict must find nothing here (tests/test_typing.py), and
``assert_type`` pins what a script author's editor sees. It also runs, against the
database given as its first argument.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bitloot_lite as bl
from bitloot_lite import Key, Order, OrderItem, OrderStatus

if TYPE_CHECKING:
    # Named only in assert_type's type text.
    import decimal  # noqa: F401
    import uuid  # noqa: F401

    import peewee as pw  # noqa: F401
    from typing_extensions import assert_type
else:
    def assert_type(value: Any, _: str) -> Any:  # only the checker compares (types as text,
        return value                             # which peewee's classes cannot be subscripted)


def script(url: str) -> None:
    # -- Using it from a script ---------------------------------------------------------
    db = bl.connect(url)
    assert_type(db, "pw.Database")
    applied = bl.migrate(db)
    assert_type(applied, "list[str]")

    with db.atomic():
        order = Order.create(email="buyer@example.com", total="19.99")
        item = OrderItem.create(order=order, product_id="kinguin-12345", quantity=2)
        Key.create(order_item=item, storage_ref="keys/2026/11/abc.enc")

    paid = Order.select().where(Order.status == OrderStatus.PAID)
    assert_type(paid, "pw.ModelSelect[Order]")
    for key in order.keys:
        assert_type(key, "Key")
        assert_type(key.storage_ref, "str | None")
        assert_type(key.viewed_at, "dt.datetime | None")
    assert_type(order.id, "uuid.UUID")
    assert_type(order.status, "OrderStatus")
    assert_type(order.total, "decimal.Decimal")
    assert_type(item.quantity, "int")
    assert_type(item.order, "Order | None")
    assert_type(item.order_id, "uuid.UUID | None")
    assert_type(Order.get_by_id(order.id), "Order")
    for state in bl.status(db):
        assert_type(state.applied_at, "dt.datetime | None")
    assert_type(bl.pending(db), "list[str]")

    # -- The service API: an order from checkout to fulfilment --------------------------
    order = bl.create_order(
        "gamer@example.com",
        [("kinguin-12345", 2), {"product_id": "kinguin-777", "quantity": 1}],
        total="59.97",
    )
    assert_type(order, "Order")
    game, dlc = order.items

    notification = {"payment_id": 5077125051, "payment_status": "finished"}
    for _ in range(2):
        log = bl.record_webhook("5077125051", "payment", notification, "sig", order=order)
    assert_type(log.attempt_count, "int")
    payment = bl.record_payment(order, "5077125051", "waiting", price_amount="59.97",
                                price_currency="usd")
    assert_type(payment.price_amount, "decimal.Decimal | None")
    bl.record_payment(order, "5077125051", "finished", confirmations=3)
    bl.record_payment(order.id, "5077125051", bl.PaymentStatus.FINISHED, confirmations=3)

    # A loop over status strings needs their type: a plain str may be no status at all.
    steps: tuple[bl.OrderStatusName, ...] = ("waiting", "confirming", "paid")
    for status in steps:
        bl.set_status(order, status)
    bl.attach_reservation(str(order.id), "kinguin-res-8f3a")

    added = bl.add_keys(game, ["keys/2026/11/a1.enc", "keys/2026/11/a2.enc"])
    assert_type(added, "int")
    try:
        bl.set_status(order, "fulfilled")
    except bl.KeysMissing as error:
        assert_type(error.missing, "int")
        print("not yet:", error.missing, "key(s) missing")
    bl.add_keys(dlc.id, ["keys/2026/11/b1.enc"])
    bl.set_status(order, OrderStatus.FULFILLED)

    found = bl.find_order_by_reservation("kinguin-res-8f3a")
    keys = bl.keys_for_order(found)
    assert_type(keys, "list[Key]")
    for key in keys:
        key = bl.reveal_key(key)
        print(key.storage_ref, key.viewed_at)
    week = bl.unviewed_keys(older_than=dt.timedelta(days=7), limit=10)
    print("unviewed for a week:", len(week))

    try:
        bl.create_order("not an email", [("kinguin-12345", 1)])
    except bl.ValidationError as error:
        assert_type(error.field, "str")
        print(error.field, error.reason)
    try:
        bl.set_status(order, "waiting")
    except bl.InvalidTransition as error:
        assert_type(error.order_id, "uuid.UUID")
        print(error)
    undo: Callable[..., list[str]] = bl.rollback  # not run: the script keeps its data
    print(undo.__name__)


if __name__ == "__main__":
    script(sys.argv[1])
