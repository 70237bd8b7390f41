"""The service layer for scripts: orders, reservations, keys, payments and webhooks.

Every function checks its input before writing (``validating``), takes a model
instance or its id, and raises only BitlootErrors; a call that raises has
written nothing.

Speed and safety come from the same design: each write is SQL compiled once per
backend (``statements``) that does its own check in the statement that writes
(``UPDATE ... WHERE`` the status allows, ``INSERT ... SELECT ... WHERE`` the
quantity allows, ``ON CONFLICT`` for idempotency), so there is no
read-then-write race and no extra round trip; multi-row INSERTs replace one
statement per row; ids are uuid4 made in Python, so no RETURNING is needed to
learn them. Checks that fail are diagnosed afterwards, off the fast path.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import peewee as pw

from . import validating as check
from ._typing import Amount, ItemDict, OrderStatusName, PaymentFields, PaymentStatusName
from .db import DATABASE_ERRORS
from .errors import (
    DuplicateKeys,
    InvalidPaymentTransition,
    InvalidTransition,
    KeysMissing,
    NotFound,
    OrderNotPaid,
    PaymentConflict,
    ReservationConflict,
    StorageError,
    TooManyKeys,
    ValidationError,
)
from .fields import JSONField
from .models import Key, Order, OrderItem, OrderStatus, Payment, PaymentStatus, WebhookLog
from .replicas import reads
from .statements import (
    KEY_BATCH,
    api,
    atomic,
    bound_database,
    foreign_key_violation,
    load,
    make,
    one,
    run,
    timestamps,
    unique_violation,
    uuid4s,
    write,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._typing import Cursor

M = TypeVar("M", bound=pw.Model)

S = OrderStatus
P = PaymentStatus

#: The order lifecycle: status -> the statuses it may move to (README: "Order lifecycle").
ORDER_MOVES = {
    S.CREATED: (S.WAITING, S.FAILED),
    S.WAITING: (S.CONFIRMING, S.PAID, S.UNDERPAID, S.FAILED),
    S.CONFIRMING: (S.PAID, S.UNDERPAID, S.FAILED),
    S.UNDERPAID: (S.CONFIRMING, S.PAID, S.FAILED),  # the customer tops the payment up
    S.PAID: (S.FULFILLED,),
    S.FULFILLED: (),
    S.FAILED: (),
}

#: The payment lifecycle, as the processor's notifications move it.
PAYMENT_MOVES = {
    P.CREATED: (P.WAITING, P.CONFIRMED, P.FINISHED, P.UNDERPAID, P.FAILED),
    P.WAITING: (P.CONFIRMED, P.FINISHED, P.UNDERPAID, P.FAILED),
    P.CONFIRMED: (P.FINISHED, P.UNDERPAID, P.FAILED),
    P.UNDERPAID: (P.CONFIRMED, P.FINISHED, P.FAILED),
    P.FINISHED: (),
    P.FAILED: (),
}

#: For each target status, the statuses an order may reach it from.
_SOURCES = {
    target: tuple(source for source, moves in ORDER_MOVES.items() if target in moves)
    for target in S
}


def _mine(value: object, model: type[M]) -> M | None:
    """The instance the caller passed, to update in place, if it is one."""
    return value if isinstance(value, model) else None


def _current_order(db: pw.Database, oid: str, order: object) -> Order:
    """The order as it is now (``order``, if an instance, updated): after a guarded
    write matched nothing, to say why."""
    row = one(db, "select_order", (oid,))
    if row is None:
        raise NotFound("Order", oid)
    return load(Order, row, _mine(order, Order))


# --------------------------------------------------------------------------- orders


_ZERO = "0.00000000"


@api
def create_order(email: str, items: Iterable[tuple[str, int] | ItemDict],
                 total: Amount | None = None) -> Order:
    """Create an order and its items in one transaction; returns the Order.

    ``items``: (product_id, quantity) pairs or {"product_id", "quantity"} dicts.
    The created items are on ``order.items`` as a list, as peewee's prefetch leaves them.
    """
    email = check.email(email)
    lines = check.items(items)
    # The text written, and the Decimal it reads back as (already rounded).
    total = _ZERO if total is None else check.money("total", total, Order.total)
    amount = decimal.Decimal(total)
    db = bound_database()
    now, stamp = timestamps(db)
    oid, *item_ids = uuid4s(1 + len(lines))
    order_id = uuid.UUID(oid)
    order = make(Order, id=order_id, created_at=now, updated_at=now, email=email,
                 status=S.CREATED, total=amount, kinguin_reservation_id=None)
    order.items = []
    params: list[Any] = [oid, email, total, stamp, stamp]
    for item_id, (product, quantity) in zip(item_ids, lines, strict=True):
        params += (item_id, oid, product, quantity, stamp, stamp)
        item = make(OrderItem, id=uuid.UUID(item_id), created_at=now, updated_at=now,
                    order=order_id, product_id=product, quantity=quantity, signed_url=None)
        item.__rel__["order"] = order
        order.items.append(item)
    if isinstance(db, pw.PostgresqlDatabase):
        # One statement: the order in a data-modifying CTE, all items in one VALUES.
        write(db, "create_order", params, len(lines), result=False)
    else:
        with atomic(db):
            run(db, "insert_order", params[:5])
            run(db, "insert_items", params[5:], len(lines))
    return order


@api
def set_status(order: Order | uuid.UUID | str, status: OrderStatus | OrderStatusName) -> Order:
    """Move ``order`` to ``status`` along ORDER_MOVES; the same status again is a no-op.

    Returns the Order (the instance passed, updated, if one was).
    """
    status = check.status(status)
    oid = check.model_id("order", Order, order)
    db = bound_database()
    row = write(db, "move_order", (timestamps(db)[1], oid), (status, _SOURCES[status])).fetchone()
    if row is not None:
        return load(Order, row, _mine(order, Order))
    # The guarded UPDATE matched nothing: say why.
    current = _current_order(db, oid, order)
    if current.status is status:
        return current
    if status is S.FULFILLED and current.status is S.PAID:
        fill = run(db, "order_fill", (oid,)).fetchall()
        raise KeysMissing(current.id, current.status, sum(max(0, q - n) for q, n in fill))
    raise InvalidTransition(current.id, current.status, status)


@api
def attach_reservation(order: Order | uuid.UUID | str, reservation_id: str) -> Order:
    """Attach a Kinguin reservation to a paid order; the same id again is a no-op.

    Refused (ReservationConflict) if the order holds another reservation or
    another order holds this one; (OrderNotPaid) if the order is not paid.
    """
    reservation_id = check.text("reservation_id", reservation_id, 255)
    oid = check.model_id("order", Order, order)
    db = bound_database()
    for _ in range(3):  # a holder that vanished between our two statements: try again
        try:
            row = write(db, "attach_reservation",
                        (reservation_id, timestamps(db)[1], oid, reservation_id)).fetchone()
        except DATABASE_ERRORS as exc:
            # The NOT EXISTS guard cannot see a racing transaction's uncommitted
            # write; UQ_orders_kinguinReservationId can (it waits for that
            # transaction's outcome). Diagnosed below, like a guard that matched nothing.
            if unique_violation(exc) not in _RESERVATION_UNIQUE:
                raise
            row = None
        if row is not None:
            return load(Order, row, _mine(order, Order))
        current = _current_order(db, oid, order)
        if current.kinguin_reservation_id == reservation_id:
            return current
        if current.kinguin_reservation_id is not None:
            raise ReservationConflict(current.id, reservation_id,
                                      current=current.kinguin_reservation_id)
        if current.status is not S.PAID:
            raise OrderNotPaid(current.id, current.status)
        holder = one(db, "find_order_by_reservation", (reservation_id,))
        if holder is not None:
            raise ReservationConflict(current.id, reservation_id,
                                      other_order_id=load(Order, holder).id)
    raise StorageError("attach_reservation", "the order kept changing under us")


#: How a violation of UQ_orders_kinguinReservationId names itself (PostgreSQL, SQLite).
_RESERVATION_UNIQUE = ("UQ_orders_kinguinReservationId", "orders.kinguinReservationId")
#: ... and one of UQ_keys_storageRef.
_STORAGE_REF_UNIQUE = ("UQ_keys_storageRef", "keys.storageRef")


@api
@reads
def find_order_by_reservation(reservation_id: str) -> Order:
    """The order holding Kinguin reservation ``reservation_id`` (one indexed query)."""
    reservation_id = check.text("reservation_id", reservation_id, 255)
    db = bound_database()
    row = one(db, "find_order_by_reservation", (reservation_id,))
    if row is None:
        raise NotFound("Order", reservation_id)
    return load(Order, row)


# --------------------------------------------------------------------------- keys


@api
def add_keys(order_item: OrderItem | uuid.UUID | str, storage_refs: Iterable[str]) -> int:
    """Record key references (object-storage keys, never key material) for an item.

    One multi-row INSERT per batch of KEY_BATCH refs, in one transaction; refused
    (TooManyKeys) if the item would hold more keys than its quantity, (DuplicateKeys)
    if a reference already belongs to a key (UQ_keys_storageRef), (ValidationError)
    if the call lists one twice. Returns the number of keys added.
    """
    refs = check.storage_refs(storage_refs)
    item_id = check.model_id("order_item", OrderItem, order_item)
    db = bound_database()
    postgres = isinstance(db, pw.PostgresqlDatabase)
    stamp = timestamps(db)[1]
    # Sorted, so that keys added together read back (by createdAt, id) in the order given.
    ids = sorted(uuid4s(len(refs)))

    def insert(execute: Callable[..., Cursor], start: int, stop: int) -> None:
        """refs[start:stop], if the item has room for the whole rest of this call
        (so the first batch fails fast); _Refused if it has not."""
        params: list[Any]
        params = [item_id, item_id, stamp, stamp] if postgres else [item_id, stamp, stamp]
        for key_id, ref in zip(ids[start:stop], refs[start:stop], strict=True):
            params += (key_id, ref)
        params += (item_id, len(refs) - start, item_id)
        if postgres:  # see insert_keys: the item's row locked, then whether the keys went in
            params.append(ids[start])
            if execute(db, "insert_keys", params, stop - start).fetchone()[0] != 1:
                raise _Refused
        elif execute(db, "insert_keys", params, stop - start).rowcount != stop - start:
            raise _Refused

    taken = None
    try:
        if len(refs) <= KEY_BATCH:  # one statement, one round trip, atomic by itself
            insert(_write_whole, 0, len(refs))
        else:
            with atomic(db):  # a refused batch rolls back the batches before it
                for start in range(0, len(refs), KEY_BATCH):
                    insert(run, start, min(start + KEY_BATCH, len(refs)))
    except _Refused:
        pass
    except DATABASE_ERRORS as exc:
        if unique_violation(exc) not in _STORAGE_REF_UNIQUE:
            raise
        taken = _existing_refs(db, refs)
        if not taken:  # the holder went away meanwhile: nothing to name, a plain failure
            raise
    else:
        return len(refs)
    if taken:
        raise DuplicateKeys(uuid.UUID(item_id), taken)
    fill = one(db, "item_fill", (item_id, item_id))
    if fill is None:
        raise NotFound("OrderItem", item_id)
    raise TooManyKeys(uuid.UUID(item_id), fill[0], fill[1], len(refs))


def _existing_refs(db: pw.Database, refs: list[str]) -> list[str]:
    """Which of ``refs`` some key already holds, in the order given (off the fast path)."""
    found: set[str] = set()
    for start in range(0, len(refs), KEY_BATCH):
        batch = refs[start:start + KEY_BATCH]
        found.update(ref for (ref,) in run(db, "existing_refs", batch, len(batch)).fetchall())
    return [ref for ref in refs if ref in found]


def _write_whole(db: pw.Database, name: str, params: Sequence[Any], arg: Hashable) -> Cursor:
    return write(db, name, params, arg, result=False)  # the Outcome part reports (PostgreSQL)


class _Refused(Exception):
    """A guarded statement matched nothing: leave the transaction, then say why."""


@api
def reveal_key(key: Key | uuid.UUID | str) -> Key:
    """The Key, with viewed_at set to now the first time only.

    Concurrent callers agree: the guarded UPDATE lets exactly one of them set it.
    """
    kid = check.model_id("key", Key, key)
    db = bound_database()
    stamp = timestamps(db)[1]
    row = write(db, "reveal_key", (stamp, stamp, kid)).fetchone()
    if row is None:
        row = one(db, "select_key", (kid,))
        if row is None:
            raise NotFound("Key", kid)
    return load(Key, row, _mine(key, Key))


@api
@reads
def keys_for_order(order: Order | uuid.UUID | str) -> list[Key]:
    """The keys of all the order's items, oldest first (one query)."""
    oid = check.model_id("order", Order, order)
    db = bound_database()
    rows = run(db, "keys_for_order", (oid,)).fetchall()
    if not rows:
        raise NotFound("Order", oid)
    return [load(Key, row) for row in rows if row[0] is not None]


@api
@reads
def unviewed_keys(older_than: dt.timedelta | dt.datetime | None = None,
                  limit: int | None = None) -> list[Key]:
    """Keys never revealed, oldest first (one query on IDX_keys_createdAt).

    ``older_than``: a timedelta (age) or a datetime (naive means UTC); None for all.
    """
    params: list[Any] = []
    if older_than is not None:
        params.append(check.cutoff("older_than", older_than))
    if limit is not None:
        params.append(check.integer("limit", limit))
    db = bound_database()
    cursor = run(db, "unviewed_keys", params, (older_than is not None, limit is not None))
    return [load(Key, row) for row in cursor.fetchall()]


# --------------------------------------------------------------------------- payments


_PAYMENT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "provider": lambda v: check.text("provider", v, 50),
    "price_amount": lambda v: check.money("price_amount", v, Payment.price_amount),
    "price_currency": lambda v: check.text("price_currency", v, 10, required=False),
    "pay_amount": lambda v: check.money("pay_amount", v, Payment.pay_amount),
    "pay_currency": lambda v: check.text("pay_currency", v, 10, required=False),
    "confirmations": lambda v: check.integer("confirmations", v, minimum=0),
    "raw_payload": lambda v: check.json_value("raw_payload", v, required=False),
}


@api
def record_payment(order: Order | uuid.UUID | str, external_id: str,
                   status: PaymentStatus | PaymentStatusName,
                   **fields: Unpack[PaymentFields]) -> Payment:
    """Record the processor's payment ``external_id`` for ``order``; idempotent.

    The first call inserts; a later one moves the status along PAYMENT_MOVES
    and updates the fields given (provider, price_amount, price_currency,
    pay_amount, pay_currency, confirmations, raw_payload). A repeat that changes
    nothing writes nothing. Returns the Payment. NotFound if there is no such
    order, also when it is deleted while the call runs.
    """
    external_id = check.text("external_id", external_id, 255)
    status = check.payment_status(status)
    oid = check.model_id("order", Order, order)
    for name in fields:
        if name not in _PAYMENT_CHECKS:
            raise ValidationError(name, fields[name], "is not a payment field")  # type: ignore[literal-required]
    given = {name: _PAYMENT_CHECKS[name](value) for name, value in fields.items()}
    db = bound_database()
    now = timestamps(db)[1]
    insert = {"provider": Payment.provider.default, "confirmations": 0, **given}
    gone = False
    try:
        row = write(db, "insert_payment", (
            uuid4s(1)[0], external_id, insert["provider"], status.value,
            *(insert.get(name) for name in ("raw_payload", "price_amount", "price_currency",
                                            "pay_amount", "pay_currency")),
            insert["confirmations"], now, now, oid)).fetchone()
    except DATABASE_ERRORS as exc:
        # The order was there for the SELECT, and deleted (by a transaction that
        # committed while ours waited for its row) before the foreign key check.
        if not foreign_key_violation(exc):
            raise
        gone = True
    if gone:  # raised here, not in the except block: no driver error chained to it
        raise NotFound("Order", oid)
    if row is not None:
        return load(Payment, row)
    for _ in range(10):  # compare-and-set on the status; retried if another call moved it
        row = one(db, "select_payment", (external_id,))
        if row is None:  # the INSERT ... SELECT found no such order
            raise NotFound("Order", oid)
        current = load(Payment, row)
        if str(current.order_id) != oid:
            raise PaymentConflict(external_id, uuid.UUID(oid), current.order_id)
        if current.status is not status and status not in PAYMENT_MOVES[current.status]:
            raise InvalidPaymentTransition(external_id, current.order_id, current.status, status)
        changes = {name: value for name, value in given.items()
                   if _stored(getattr(Payment, name), value) != getattr(current, name)}
        if current.status is status and not changes:
            return current
        columns = tuple(getattr(Payment, name).column_name for name in changes)
        row = write(db, "update_payment", (status.value, *changes.values(), now,
                                           str(current.id), current.status.value),
                    columns).fetchone()
        if row is not None:
            return load(Payment, row)
    raise StorageError("record_payment", "the payment kept changing under us")


def _stored(field: pw.Field[Any], value: Any) -> object:
    """A checked value as it will read back, to compare with what is stored."""
    if value is None:
        return None
    if isinstance(field, JSONField):
        return json.loads(value)
    return field.python_value(value)


# --------------------------------------------------------------------------- webhooks


@api
def record_webhook(external_id: str, webhook_type: str, payload: Any,
                   signature: str | None = None, *, signature_valid: bool = False,
                   processed: bool = False, order: Order | uuid.UUID | str | None = None,
                   payment_id: str | None = None, payment_status: str | None = None,
                   result: Any = None, error: str | None = None,
                   source_ip: str | None = None) -> WebhookLog:
    """Log a received webhook; a repeat delivery increments attempt_count instead.

    One INSERT ... ON CONFLICT on UQ_webhook_idempotency (externalId,
    webhookType, processed): racing deliveries leave one row. A repeat keeps the
    first delivery's data. Returns the WebhookLog (``attempt_count`` > 1 for a repeat).
    """
    values = (
        check.text("external_id", external_id, 255),
        check.text("webhook_type", webhook_type, 50),
        check.json_value("payload", payload),
        check.text("signature", signature, required=False, identifier=False),
        check.boolean("signature_valid", signature_valid),
        check.boolean("processed", processed),
        None if order is None else check.model_id("order", Order, order),
        check.text("payment_id", payment_id, 255, required=False),
        check.text("payment_status", payment_status, 50, required=False),
        check.json_value("result", result, required=False),
        check.text("error", error, required=False, identifier=False),
        check.ip_address("source_ip", source_ip),
    )
    db = bound_database()
    now = timestamps(db)[1]
    row = write(db, "record_webhook", (uuid4s(1)[0], *values, now, now)).fetchone()
    return load(WebhookLog, row)
