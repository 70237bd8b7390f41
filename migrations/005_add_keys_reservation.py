"""005_add_keys_reservation: orders.kinguinReservationId and the keys table.

Upstream: AddKeysReservation1720000000000 (applied last although its
timestamp is the oldest). A key row holds the object-storage reference of an
encrypted key, never the key itself. Keys belong to order items, not orders.
"""

import peewee as pw
from peewee_migrate import Migrator

UPSTREAM = "AddKeysReservation1720000000000"

# Earlier versions of this file, which made the same schema with bitloot-lite's
# runner (they left the plain index out of POSTGRES_UP): not "edited" migrations.
PREVIOUS_CHECKSUMS = (
    "bca4803e8093064419ddd285834ce4a5af14b67d78f1d782a8433571de4c9989",
    "ada682efeb27e9a7b15e1d2dfbc465cc8c5a803250ec0b7e6dd06dd8f15823af",
)

SQLITE_UUID = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))"
)

KEYS_INDEXES = [
    'CREATE INDEX "IDX_keys_orderItemId" ON "keys" ("orderItemId")',
    'CREATE INDEX "IDX_keys_createdAt" ON "keys" ("createdAt")',
]
RESERVATION_INDEX = (
    'CREATE INDEX "IDX_orders_kinguinReservationId" ON "orders" ("kinguinReservationId")'
)

# On PostgreSQL the index on the existing (possibly large) orders table is
# built by bitloot-lite's runner after this migration's transaction commits,
# with CREATE INDEX CONCURRENTLY: a plain CREATE INDEX would block every write
# to orders for the whole build. The runner also finishes a build a killed
# deploy left missing or INVALID. {index name: statement}. POSTGRES_UP runs the
# plain statement too: bitloot-lite's runner takes it out of the transaction,
# peewee-migrate's own (pw_migrate) builds it in place, so both make the index.
POSTGRES_CONCURRENT_INDEXES = {
    "IDX_orders_kinguinReservationId": RESERVATION_INDEX.replace(
        "CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1
    ),
}

POSTGRES_UP = [
    'ALTER TABLE "orders" ADD "kinguinReservationId" varchar(255)',
    """COMMENT ON COLUMN "orders"."kinguinReservationId" IS """
    """'Kinguin reservation ID for tracking fulfillment status'""",
    """CREATE TABLE "keys" (
    "id" uuid NOT NULL DEFAULT gen_random_uuid(),
    "orderItemId" uuid NOT NULL,
    "storageRef" text,
    "viewedAt" timestamp,
    "createdAt" timestamp NOT NULL DEFAULT now(),
    "updatedAt" timestamp NOT NULL DEFAULT now(),
    CONSTRAINT "FK_keys_orderItemId" FOREIGN KEY ("orderItemId")
        REFERENCES "order_items" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "PK_e63d5d51e0192635ab79aa49644" PRIMARY KEY ("id")
)""",
    *KEYS_INDEXES,
    RESERVATION_INDEX,
]

SQLITE_UP = [
    'ALTER TABLE "orders" ADD COLUMN "kinguinReservationId" VARCHAR(255)',
    f"""CREATE TABLE "keys" (
    "id" TEXT NOT NULL DEFAULT {SQLITE_UUID},
    "orderItemId" TEXT NOT NULL,
    "storageRef" TEXT,
    "viewedAt" DATETIME,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "FK_keys_orderItemId" FOREIGN KEY ("orderItemId")
        REFERENCES "order_items" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "PK_e63d5d51e0192635ab79aa49644" PRIMARY KEY ("id")
)""",
    *KEYS_INDEXES,
    RESERVATION_INDEX,
]

DOWN = [
    'DROP INDEX IF EXISTS "IDX_orders_kinguinReservationId"',
    'DROP TABLE "keys"',
    'ALTER TABLE "orders" DROP COLUMN "kinguinReservationId"',
]


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    order_items_model = migrator.orm["order_items"]

    class Key(pw.Model):
        id = pw.UUIDField(primary_key=True)
        order_item = pw.ForeignKeyField(
            order_items_model, on_delete="CASCADE", on_update="CASCADE",
            column_name="orderItemId", backref="keys",
        )
        storage_ref = pw.TextField(null=True, column_name="storageRef")
        viewed_at = pw.DateTimeField(null=True, column_name="viewedAt")
        created_at = pw.DateTimeField(column_name="createdAt")
        updated_at = pw.DateTimeField(column_name="updatedAt")

        class Meta:
            table_name = "keys"

    with migrator.fake():
        migrator.add_fields(
            "orders",
            kinguin_reservation_id=pw.CharField(
                max_length=255, null=True, column_name="kinguinReservationId"
            ),
        )
        migrator.create_model(Key)
    postgres = isinstance(database, pw.PostgresqlDatabase)
    for statement in POSTGRES_UP if postgres else SQLITE_UP:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for statement in DOWN:
        migrator.sql(statement)
    with migrator.fake():
        migrator.remove_model("keys")
        migrator.remove_fields("orders", "kinguin_reservation_id")
