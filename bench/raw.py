"""The same work with the raw driver (sqlite3 or psycopg2), as a careful person writes it.

One INSERT per row, uuid4 ids made in Python, the same columns and
timestamps bitloot-lite writes, one transaction per checkout (and per
restock), and the check that ``add_keys`` does: the item's quantity against
the keys it already has, its row locked first on PostgreSQL (``FOR UPDATE``)
so that two restocks cannot both pass the check.
"""

import uuid
from decimal import Decimal

from .common import (
    CHECKOUT_EMAIL,
    CHECKOUT_ITEMS,
    CHECKOUT_TOTAL,
    KEYS_PER_ITEM,
    TooManyKeys,
    backend_of,
    key_refs,
    raw_connect,
    utc_now,
)

INSERT_ORDER = ('INSERT INTO "orders" ("id", "email", "status", "total", "createdAt", '
                '"updatedAt") VALUES (?, ?, ?, ?, ?, ?)')
INSERT_ITEM = ('INSERT INTO "order_items" ("id", "orderId", "productId", "quantity", '
               '"createdAt", "updatedAt") VALUES (?, ?, ?, ?, ?, ?)')
INSERT_KEY = ('INSERT INTO "keys" ("id", "orderItemId", "storageRef", "createdAt", "updatedAt") '
              "VALUES (?, ?, ?, ?, ?)")
ITEM_FILL = ('SELECT "quantity", (SELECT count(*) FROM "keys" WHERE "orderItemId" = ?) '
             'FROM "order_items" WHERE "id" = ?')
FIND_ORDER = ('SELECT "id", "createdAt", "updatedAt", "email", "status", "total", '
              '"kinguinReservationId" FROM "orders" WHERE "kinguinReservationId" = ? '
              'ORDER BY "createdAt", "id" LIMIT 1')


class Raw:
    """sqlite3 or psycopg2 on one connection (``autocommit``: for reads on PostgreSQL)."""

    def __init__(self, url, autocommit=False):
        self.postgres = backend_of(url) == "postgres"
        self.connection = raw_connect(url)
        self.autocommit = autocommit and self.postgres
        if self.autocommit:
            self.connection.autocommit = True
        self.cursor = self.connection.cursor()
        mark = "%s" if self.postgres else "?"
        self.sql_insert_order = INSERT_ORDER.replace("?", mark)
        self.sql_insert_item = INSERT_ITEM.replace("?", mark)
        self.sql_insert_key = INSERT_KEY.replace("?", mark)
        lock = " FOR UPDATE" if self.postgres else ""
        self.sql_item_fill = ITEM_FILL.replace("?", mark) + lock
        self.sql_find_order = FIND_ORDER.replace("?", mark)
        self.total = Decimal(CHECKOUT_TOTAL) if self.postgres else CHECKOUT_TOTAL

    def close(self):
        self.connection.close()

    def _now(self):
        now = utc_now()
        # sqlite3 would adapt a datetime to this same text (a deprecated adapter).
        return now if self.postgres else now.isoformat(" ")

    def _begin(self):
        if not self.postgres:  # psycopg2 opens the transaction with the first statement
            self.cursor.execute("BEGIN")

    def _commit(self):
        if self.postgres:
            self.connection.commit()
        else:
            self.cursor.execute("COMMIT")

    def _rollback(self):
        if self.postgres:
            self.connection.rollback()
        else:
            self.cursor.execute("ROLLBACK")

    def _check_room(self, item_id, count):
        self.cursor.execute(self.sql_item_fill, (item_id, item_id))
        row = self.cursor.fetchone()
        if row is None or row[1] + count > row[0]:
            raise TooManyKeys(item_id)

    def checkout(self, number):
        """The order and its items, then two keys for each item: one transaction."""
        cursor, now = self.cursor, self._now()
        order_id = str(uuid.uuid4())
        self._begin()
        try:
            cursor.execute(self.sql_insert_order,
                           (order_id, CHECKOUT_EMAIL, "created", self.total, now, now))
            item_ids = []
            for product, quantity in CHECKOUT_ITEMS:
                item_id = str(uuid.uuid4())
                cursor.execute(self.sql_insert_item,
                               (item_id, order_id, product, quantity, now, now))
                item_ids.append(item_id)
            for index, item_id in enumerate(item_ids):
                refs = key_refs("raw", number, index, KEYS_PER_ITEM)
                self._check_room(item_id, len(refs))
                for ref in refs:
                    cursor.execute(self.sql_insert_key,
                                   (str(uuid.uuid4()), item_id, ref, now, now))
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return order_id

    def add_keys(self, item_id, refs):
        """Check the item's room, then executemany: one INSERT per key, one transaction."""
        now = self._now()
        self._begin()
        try:
            self._check_room(item_id, len(refs))
            self.cursor.executemany(
                self.sql_insert_key, [(str(uuid.uuid4()), item_id, ref, now, now) for ref in refs]
            )
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return len(refs)

    def new_item(self, quantity):
        """An order with one item of ``quantity`` (set-up for a restock; not timed)."""
        now, order_id, item_id = self._now(), str(uuid.uuid4()), str(uuid.uuid4())
        self._begin()
        self.cursor.execute(self.sql_insert_order,
                            (order_id, CHECKOUT_EMAIL, "paid", self.total, now, now))
        self.cursor.execute(self.sql_insert_item,
                            (item_id, order_id, "kinguin-restock", quantity, now, now))
        self._commit()
        return item_id

    def find_order(self, reservation_id):
        self.cursor.execute(self.sql_find_order, (reservation_id,))
        row = self.cursor.fetchone()
        if self.postgres and not self.autocommit:
            self.connection.rollback()  # end the read's transaction
        return row
