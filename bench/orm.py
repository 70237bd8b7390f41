"""The same work with SQLAlchemy 2.x's ORM: declarative models on the same tables,
a Session per checkout (one transaction), the natural code: add the objects,
flush, check, commit.

SQLite connections get bitloot-lite's pragmas on connect; PostgreSQL ones its
session options. Ids are uuid4s made in Python, as bitloot-lite's are.
"""

import uuid
import warnings
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from .common import (
    CHECKOUT_EMAIL,
    CHECKOUT_ITEMS,
    CHECKOUT_TOTAL,
    KEYS_PER_ITEM,
    TooManyKeys,
    apply_pragmas,
    backend_of,
    key_refs,
    set_utc,
    utc_now,
)

# numeric(20,8) is NUMERIC on SQLite: SQLAlchemy says, once, that it stores Decimals as floats.
warnings.filterwarnings("ignore", message=".*does \\*not\\* support Decimal objects natively")

#: uuid on PostgreSQL, dashed text on SQLite (as the migrations make them).
ID = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")


def new_id():
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Stamped:
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    created_at: Mapped[object] = mapped_column("createdAt", sa.DateTime, default=utc_now)
    updated_at: Mapped[object] = mapped_column("updatedAt", sa.DateTime, default=utc_now,
                                               onupdate=utc_now)


class Order(Stamped, Base):
    __tablename__ = "orders"

    email: Mapped[str] = mapped_column(sa.String(320))
    status: Mapped[str] = mapped_column(sa.String(20), default="created")
    total: Mapped[Decimal] = mapped_column(sa.Numeric(20, 8), default=Decimal(0))
    kinguin_reservation_id: Mapped[str | None] = mapped_column("kinguinReservationId",
                                                               sa.String(255))
    items: Mapped[list["OrderItem"]] = relationship(back_populates="order")


class OrderItem(Stamped, Base):
    __tablename__ = "order_items"

    order_id: Mapped[str] = mapped_column("orderId", ID, sa.ForeignKey("orders.id"))
    product_id: Mapped[str] = mapped_column("productId", sa.String(100))
    quantity: Mapped[int] = mapped_column(default=1)
    signed_url: Mapped[str | None] = mapped_column("signedUrl", sa.Text)
    order: Mapped[Order] = relationship(back_populates="items")


class Key(Stamped, Base):
    __tablename__ = "keys"

    order_item_id: Mapped[str] = mapped_column("orderItemId", ID, sa.ForeignKey("order_items.id"))
    storage_ref: Mapped[str | None] = mapped_column("storageRef", sa.Text)
    viewed_at: Mapped[object | None] = mapped_column("viewedAt", sa.DateTime)


def engine_for(url):
    """An Engine on the database at ``url`` (a bitloot-lite URL), set up as bitloot-lite's."""
    if backend_of(url) == "sqlite":
        engine = sa.create_engine(url)

        @event.listens_for(engine, "connect")
        def pragmas(connection, _record):
            apply_pragmas(connection)

        return engine
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    event.listen(engine, "connect", lambda connection, _record: set_utc(connection))
    return engine


class Orm:
    """SQLAlchemy on one Engine (its pool keeps one connection open)."""

    def __init__(self, url):
        self.postgres = backend_of(url) == "postgres"
        self.engine = engine_for(url)

    def close(self):
        self.engine.dispose()

    def _item_fill(self, item_id):
        """The item's quantity and its keys, the item's row locked on PostgreSQL."""
        keys = (sa.select(sa.func.count()).select_from(Key)
                .where(Key.order_item_id == item_id).scalar_subquery())
        query = sa.select(OrderItem.quantity, keys).where(OrderItem.id == item_id)
        return query.with_for_update() if self.postgres else query

    def _check_room(self, session, item_id, count):
        row = session.execute(self._item_fill(item_id)).one_or_none()
        if row is None or row[1] + count > row[0]:
            raise TooManyKeys(item_id)

    def checkout(self, number):
        with Session(self.engine) as session, session.begin():
            order = Order(email=CHECKOUT_EMAIL, total=Decimal(CHECKOUT_TOTAL),
                          items=[OrderItem(product_id=product, quantity=quantity)
                                 for product, quantity in CHECKOUT_ITEMS])
            session.add(order)
            session.flush()
            for index, item in enumerate(order.items):
                refs = key_refs("orm", number, index, KEYS_PER_ITEM)
                self._check_room(session, item.id, len(refs))
                session.add_all([Key(order_item_id=item.id, storage_ref=ref) for ref in refs])
            return order.id

    def add_keys(self, item_id, refs):
        with Session(self.engine) as session, session.begin():
            self._check_room(session, item_id, len(refs))
            session.add_all([Key(order_item_id=item_id, storage_ref=ref) for ref in refs])
        return len(refs)
