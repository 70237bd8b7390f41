"""002_create_payments: the payments table and its status enum.

Upstream: CreatePayments1730000000001. TypeORM named the primary key and the
foreign key itself (PK_/FK_ + 27 hex digits of sha1("<table>_<columns>")); we
use the same names so both kinds of database compare equal. TypeORM also left
a redundant unique constraint UQ_c9ca05ceb7cc5eae113c2eb57cd beside the
unique index IDX_payments_externalId; we do not create that duplicate.
"""

import peewee as pw
from peewee_migrate import Migrator

UPSTREAM = "CreatePayments1730000000001"

STATUSES = ("created", "waiting", "confirmed", "finished", "underpaid", "failed")
_STATUS_LIST = ", ".join(f"'{s}'" for s in STATUSES)

SQLITE_UUID = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))"
)

INDEXES = [
    'CREATE UNIQUE INDEX "IDX_payments_externalId" ON "payments" ("externalId")',
    'CREATE INDEX "IDX_payments_orderId" ON "payments" ("orderId")',
    'CREATE INDEX "IDX_payments_status" ON "payments" ("status")',
    'CREATE INDEX "IDX_payments_createdAt" ON "payments" ("createdAt")',
    'CREATE INDEX "IDX_payments_orderId_status" ON "payments" ("orderId", "status")',
]

POSTGRES_UP = [
    f'CREATE TYPE "payments_status_enum" AS ENUM ({_STATUS_LIST})',
    """CREATE TABLE "payments" (
    "id" uuid NOT NULL DEFAULT gen_random_uuid(),
    "orderId" uuid NOT NULL,
    "externalId" character varying NOT NULL,
    "provider" character varying(50) NOT NULL DEFAULT 'nowpayments',
    "status" "payments_status_enum" NOT NULL DEFAULT 'created',
    "rawPayload" jsonb,
    "priceAmount" numeric(20,8),
    "priceCurrency" character varying(10),
    "payAmount" numeric(20,8),
    "payCurrency" character varying(10),
    "confirmations" integer NOT NULL DEFAULT 0,
    "createdAt" timestamp NOT NULL DEFAULT now(),
    "updatedAt" timestamp NOT NULL DEFAULT now(),
    CONSTRAINT "PK_197ab7af18c93fbb0c9b28b4a59" PRIMARY KEY ("id"),
    CONSTRAINT "FK_af929a5f2a400fdb6913b4967e1" FOREIGN KEY ("orderId")
        REFERENCES "orders" ("id") ON DELETE CASCADE ON UPDATE CASCADE
)""",
    *INDEXES,
]

SQLITE_UP = [
    f"""CREATE TABLE "payments" (
    "id" TEXT NOT NULL DEFAULT {SQLITE_UUID},
    "orderId" TEXT NOT NULL,
    "externalId" VARCHAR NOT NULL,
    "provider" VARCHAR(50) NOT NULL DEFAULT 'nowpayments',
    "status" VARCHAR(20) NOT NULL DEFAULT 'created'
        CONSTRAINT "CHK_payments_status" CHECK ("status" IN ({_STATUS_LIST})),
    "rawPayload" TEXT CHECK ("rawPayload" IS NULL OR json_valid("rawPayload")),
    "priceAmount" NUMERIC(20,8),
    "priceCurrency" VARCHAR(10),
    "payAmount" NUMERIC(20,8),
    "payCurrency" VARCHAR(10),
    "confirmations" INTEGER NOT NULL DEFAULT 0,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "PK_197ab7af18c93fbb0c9b28b4a59" PRIMARY KEY ("id"),
    CONSTRAINT "FK_af929a5f2a400fdb6913b4967e1" FOREIGN KEY ("orderId")
        REFERENCES "orders" ("id") ON DELETE CASCADE ON UPDATE CASCADE
)""",
    *INDEXES,
]

POSTGRES_DOWN = ['DROP TABLE "payments"', 'DROP TYPE "payments_status_enum"']
SQLITE_DOWN = ['DROP TABLE "payments"']


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    orders_model = migrator.orm["orders"]

    class Payment(pw.Model):
        id = pw.UUIDField(primary_key=True)
        order = pw.ForeignKeyField(
            orders_model, on_delete="CASCADE", on_update="CASCADE",
            column_name="orderId", backref="payments",
        )
        external_id = pw.CharField(unique=True, column_name="externalId")
        provider = pw.CharField(max_length=50, default="nowpayments")
        status = pw.CharField(max_length=20, default="created")
        raw_payload = pw.TextField(null=True, column_name="rawPayload")
        price_amount = pw.DecimalField(20, 8, null=True, column_name="priceAmount")
        price_currency = pw.CharField(max_length=10, null=True, column_name="priceCurrency")
        pay_amount = pw.DecimalField(20, 8, null=True, column_name="payAmount")
        pay_currency = pw.CharField(max_length=10, null=True, column_name="payCurrency")
        confirmations = pw.IntegerField(default=0)
        created_at = pw.DateTimeField(column_name="createdAt")
        updated_at = pw.DateTimeField(column_name="updatedAt")

        class Meta:
            table_name = "payments"

    with migrator.fake():
        migrator.create_model(Payment)
    postgres = isinstance(database, pw.PostgresqlDatabase)
    for statement in POSTGRES_UP if postgres else SQLITE_UP:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    postgres = isinstance(database, pw.PostgresqlDatabase)
    for statement in POSTGRES_DOWN if postgres else SQLITE_DOWN:
        migrator.sql(statement)
    with migrator.fake():
        migrator.remove_model("payments")
