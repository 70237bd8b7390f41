"""001_init_orders: the orders and order_items tables.

Upstream: InitOrders1710000000000. Made by plain SQL there, so on PostgreSQL
the keys keep PostgreSQL's default names (orders_pkey, order_items_pkey,
order_items_orderId_fkey). orders.status is varchar(20) until 004.
"""

import peewee as pw
from peewee_migrate import Migrator

UPSTREAM = "InitOrders1710000000000"

# A version-4 UUID in SQL, so that rows inserted without an id get one on
# SQLite as they do on PostgreSQL (gen_random_uuid()).
SQLITE_UUID = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))"
)

POSTGRES_UP = [
    """CREATE TABLE "orders" (
    "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    "email" varchar(320) NOT NULL,
    "status" varchar(20) NOT NULL DEFAULT 'created',
    "total" numeric(20,8) NOT NULL DEFAULT 0,
    "createdAt" timestamp NOT NULL DEFAULT now(),
    "updatedAt" timestamp NOT NULL DEFAULT now()
)""",
    'CREATE INDEX "IDX_orders_createdAt" ON "orders" ("createdAt")',
    """CREATE TABLE "order_items" (
    "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    "orderId" uuid REFERENCES "orders" ("id") ON DELETE CASCADE,
    "productId" varchar(100) NOT NULL,
    "quantity" integer NOT NULL DEFAULT 1,
    "signedUrl" text,
    "createdAt" timestamp NOT NULL DEFAULT now(),
    "updatedAt" timestamp NOT NULL DEFAULT now()
)""",
    'CREATE INDEX "IDX_order_items_orderId" ON "order_items" ("orderId")',
]

SQLITE_UP = [
    f"""CREATE TABLE "orders" (
    "id" TEXT NOT NULL PRIMARY KEY DEFAULT {SQLITE_UUID},
    "email" VARCHAR(320) NOT NULL,
    "status" VARCHAR(20) NOT NULL DEFAULT 'created',
    "total" NUMERIC(20,8) NOT NULL DEFAULT 0,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
)""",
    'CREATE INDEX "IDX_orders_createdAt" ON "orders" ("createdAt")',
    f"""CREATE TABLE "order_items" (
    "id" TEXT NOT NULL PRIMARY KEY DEFAULT {SQLITE_UUID},
    "orderId" TEXT REFERENCES "orders" ("id") ON DELETE CASCADE,
    "productId" VARCHAR(100) NOT NULL,
    "quantity" INTEGER NOT NULL DEFAULT 1,
    "signedUrl" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
)""",
    'CREATE INDEX "IDX_order_items_orderId" ON "order_items" ("orderId")',
]

DOWN = ['DROP TABLE "order_items"', 'DROP TABLE "orders"']


class Order(pw.Model):
    id = pw.UUIDField(primary_key=True)
    email = pw.CharField(max_length=320)
    status = pw.CharField(max_length=20, default="created")
    total = pw.DecimalField(max_digits=20, decimal_places=8, default=0)
    created_at = pw.DateTimeField(column_name="createdAt")
    updated_at = pw.DateTimeField(column_name="updatedAt")

    class Meta:
        table_name = "orders"


class OrderItem(pw.Model):
    id = pw.UUIDField(primary_key=True)
    order = pw.ForeignKeyField(
        Order, null=True, on_delete="CASCADE", column_name="orderId", backref="items"
    )
    product_id = pw.CharField(max_length=100, column_name="productId")
    quantity = pw.IntegerField(default=1)
    signed_url = pw.TextField(null=True, column_name="signedUrl")
    created_at = pw.DateTimeField(column_name="createdAt")
    updated_at = pw.DateTimeField(column_name="updatedAt")

    class Meta:
        table_name = "order_items"


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    with migrator.fake():  # record the models; the DDL below makes the tables
        migrator.create_model(Order)
        migrator.create_model(OrderItem)
    postgres = isinstance(database, pw.PostgresqlDatabase)
    for statement in POSTGRES_UP if postgres else SQLITE_UP:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for statement in DOWN:
        migrator.sql(statement)
    with migrator.fake():
        migrator.remove_model("order_items")
        migrator.remove_model("orders")
