"""The peewee models, mapped onto the exact (camelCase) columns of SCHEMA.md.

The tables themselves are made by the migrations, never by ``create_table``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import peewee as pw

from .db import database_proxy
from .fields import EnumField, JSONField, MoneyField, UTCDateTimeField, UUIDField, utcnow


class OrderStatus(str, enum.Enum):
    """orders.status (PostgreSQL enum ``orders_status_enum``)."""

    CREATED = "created"
    WAITING = "waiting"
    CONFIRMING = "confirming"
    PAID = "paid"
    UNDERPAID = "underpaid"
    FAILED = "failed"
    FULFILLED = "fulfilled"


class PaymentStatus(str, enum.Enum):
    """payments.status (PostgreSQL enum ``payments_status_enum``)."""

    CREATED = "created"
    WAITING = "waiting"
    CONFIRMED = "confirmed"
    FINISHED = "finished"
    UNDERPAID = "underpaid"
    FAILED = "failed"


class BaseModel(pw.Model):
    """UUID primary key and created/updated timestamps, kept current on every write."""

    id: UUIDField[uuid.UUID] = UUIDField(primary_key=True, default=uuid.uuid4)
    created_at: UTCDateTimeField[dt.datetime] = UTCDateTimeField(column_name="createdAt",
                                                                 default=utcnow)
    updated_at: UTCDateTimeField[dt.datetime] = UTCDateTimeField(column_name="updatedAt",
                                                                 default=utcnow)

    if TYPE_CHECKING:  # peewee's record of the fields set since the load, not in its stubs
        _dirty: set[str]

    class Meta:
        database = database_proxy
        legacy_table_names = False

    def save(self, force_insert: bool = False, only: Sequence[Any] | None = None) -> int:
        """Save, moving updatedAt to now (an insert keeps the one it was given)."""
        if not force_insert:
            self.updated_at = utcnow()
        if only is not None:
            # save(only=[...]) writes just those columns: updatedAt must be one of them.
            only = [*only, type(self).updated_at]
        return super().save(force_insert=force_insert, only=only)

    @classmethod
    def update(cls, __data: dict[Any, Any] | None = None, **update: Any) -> pw.ModelUpdate:
        """An UPDATE query that also sets updatedAt, unless the caller sets it."""
        data = dict(__data or {}, **update)
        # Not ``k in (cls.updated_at, ...)``: a Field's == builds an SQL expression,
        # which is always true.
        names = ("updated_at", cls.updated_at.column_name)
        if not any(k is cls.updated_at or (isinstance(k, str) and k in names) for k in data):
            data[cls.updated_at] = utcnow()
        return super().update(data)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


class Order(BaseModel):
    email = pw.CharField(max_length=320)
    status: EnumField[OrderStatus] = EnumField(OrderStatus, default=OrderStatus.CREATED)
    total: MoneyField[decimal.Decimal] = MoneyField(default=0)
    #: Unique (migration 006): one order per Kinguin reservation.
    kinguin_reservation_id = pw.CharField(
        max_length=255, null=True, unique=True, column_name="kinguinReservationId"
    )

    if TYPE_CHECKING:  # the backrefs peewee adds (create_order leaves a list of the items)
        items: pw.ModelSelect[OrderItem] | list[OrderItem]
        payments: pw.ModelSelect[Payment]

    class Meta:
        table_name = "orders"

    @property
    def keys(self) -> pw.ModelSelect[Key]:
        """The keys of all this order's items, in one query (a Key select)."""
        return (
            Key.select()
            .join(OrderItem)
            .where(OrderItem.order == self.id)
            .order_by(Key.created_at, Key.id)
        )


class OrderItem(BaseModel):
    order = pw.ForeignKeyField(
        Order, backref="items", null=True, on_delete="CASCADE",
        column_name="orderId", object_id_name="order_id", index=True,
    )
    product_id = pw.CharField(max_length=100, column_name="productId")
    quantity = pw.IntegerField(default=1)
    signed_url = pw.TextField(null=True, column_name="signedUrl")

    if TYPE_CHECKING:  # the foreign key's id, and the backref peewee adds
        order_id: uuid.UUID | None
        keys: pw.ModelSelect[Key]

    class Meta:
        table_name = "order_items"


class Key(BaseModel):
    """A license key's record: where its encrypted copy is stored, never the key."""

    order_item = pw.ForeignKeyField(
        OrderItem, backref="keys", on_delete="CASCADE", on_update="CASCADE",
        column_name="orderItemId", object_id_name="order_item_id", index=True,
    )
    #: Unique (migration 006): one key row per encrypted key in object storage.
    storage_ref = pw.TextField(null=True, unique=True, column_name="storageRef")
    viewed_at: UTCDateTimeField[dt.datetime | None] = UTCDateTimeField(null=True,
                                                                       column_name="viewedAt")

    if TYPE_CHECKING:  # the foreign key's id
        order_item_id: uuid.UUID

    class Meta:
        table_name = "keys"


class Payment(BaseModel):
    order = pw.ForeignKeyField(
        Order, backref="payments", on_delete="CASCADE", on_update="CASCADE",
        column_name="orderId", object_id_name="order_id", index=True,
    )
    external_id = pw.CharField(unique=True, column_name="externalId")
    provider = pw.CharField(max_length=50, default="nowpayments")
    status: EnumField[PaymentStatus] = EnumField(PaymentStatus, default=PaymentStatus.CREATED,
                                                 index=True)
    #: Any JSON value (as httpx's ``Response.json()``, typed Any: narrow it where read).
    raw_payload: JSONField[Any] = JSONField(null=True, column_name="rawPayload")
    price_amount: MoneyField[decimal.Decimal | None] = MoneyField(null=True,
                                                                  column_name="priceAmount")
    price_currency = pw.CharField(max_length=10, null=True, column_name="priceCurrency")
    pay_amount: MoneyField[decimal.Decimal | None] = MoneyField(null=True,
                                                                column_name="payAmount")
    pay_currency = pw.CharField(max_length=10, null=True, column_name="payCurrency")
    confirmations = pw.IntegerField(default=0)

    if TYPE_CHECKING:  # the foreign key's id
        order_id: uuid.UUID

    class Meta:
        table_name = "payments"


class WebhookLog(BaseModel):
    """A received webhook; it keeps orderId as a plain column so logs outlive orders."""

    external_id = pw.CharField(max_length=255, column_name="externalId", index=True)
    webhook_type = pw.CharField(max_length=50, column_name="webhookType")
    payload: JSONField[Any] = JSONField()
    signature = pw.TextField(null=True)
    signature_valid = pw.BooleanField(default=False, column_name="signatureValid")
    processed = pw.BooleanField(default=False)
    order_id: UUIDField[uuid.UUID | None] = UUIDField(null=True, column_name="orderId")
    payment_id = pw.CharField(max_length=255, null=True, column_name="paymentId")
    result: JSONField[Any] = JSONField(null=True)
    payment_status = pw.CharField(max_length=50, null=True, column_name="paymentStatus")
    error = pw.TextField(null=True)
    source_ip = pw.CharField(max_length=45, null=True, column_name="sourceIp")
    attempt_count = pw.IntegerField(default=1, column_name="attemptCount")

    class Meta:
        table_name = "webhook_logs"
        indexes = ((("external_id", "webhook_type", "processed"), True),)


#: Every model, parents before children.
MODELS = (Order, OrderItem, Key, Payment, WebhookLog)
