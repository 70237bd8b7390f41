"""Deliberate misuses of bitloot-lite's API, each of which mypy must report at its line.

Every line that must fail ends with ``# E: <mypy error code>``; tests/test_typing.py
checks that mypy reports exactly those (and nothing on the other lines). Never run.
"""

# ruff: noqa: F841 - the misuses assign to names only to show what mypy refuses

from __future__ import annotations

import datetime as dt
import decimal

import bitloot_lite as bl


def misuses(order: bl.Order, item: bl.OrderItem, key: bl.Key) -> None:
    # A wrong argument type: storage references are a list of str, not a count.
    bl.add_keys(item, 5)  # E: arg-type
    # The email is a str and the items pairs or dicts (two errors on one line).
    bl.create_order(["a@b.c"], "x")  # E: arg-type arg-type
    # A status string that is no status.
    bl.set_status(order, "shipped")  # E: arg-type
    bl.record_payment(order, "np-1", "paid")  # E: arg-type
    # A missing argument.
    bl.record_payment(order, "np-1")  # E: call-arg
    bl.attach_reservation(order)  # E: call-arg
    # Money is exact: a float is refused.
    bl.create_order("a@b.c", [("kinguin-1", 1)], total=59.97)  # E: arg-type
    bl.record_payment(order, "np-1", "waiting", price_amount=59.97)  # E: arg-type
    # A payment field that does not exist.
    bl.record_payment(order, "np-1", "waiting", colour="red")  # E: call-arg
    # A quantity is an int.
    bl.create_order("a@b.c", [("kinguin-1", "2")])  # E: list-item
    bl.create_order("a@b.c", [{"product_id": "kinguin-1", "qty": 2}])  # E: list-item
    # An id is a UUID or its text, or the instance: not an int, and not another model.
    bl.reveal_key(42)  # E: arg-type
    bl.keys_for_order(item)  # E: arg-type
    # Keyword-only arguments stay keyword-only.
    bl.record_webhook("np-1", "payment", {}, "sig", True)  # E: call-arg
    bl.unviewed_keys(older_than="7 days")  # E: arg-type
    # The models' attributes have their column's type.
    total: float = order.total  # E: assignment
    item.quantity = "2"  # E: assignment
    key.viewed_at.isoformat()  # E: union-attr
    order.status = "shipped"  # E: assignment
    when: dt.datetime = key.viewed_at  # E: assignment
    amount: decimal.Decimal = bl.Payment().price_amount  # E: assignment
    # Results have their types too.
    count: str = bl.add_keys(item, ["keys/a.enc"])  # E: assignment
    names: list[int] = bl.migrate(bl.connect())  # E: assignment
    bl.migrate(bl.connect(), to=3)  # E: arg-type
    bl.connect(5432)  # E: arg-type
    # The error classes' attributes.
    missing: str = bl.KeysMissing(order.id, order.status, 2).missing  # E: assignment
    # An unknown name is an error, not Any.
    bl.set_stauts(order, "paid")  # E: attr-defined
