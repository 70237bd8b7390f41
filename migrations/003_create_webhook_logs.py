"""003_create_webhook_logs: the webhook_logs table.

Upstream: CreateWebhookLogs1730000000002. orderId is a plain column with no
foreign key: a log outlives the order it mentions. UQ_webhook_idempotency
makes a redelivered notification collide instead of writing a second row; on
SQLite it is a unique index of that name.
"""

import peewee as pw
from peewee_migrate import Migrator

UPSTREAM = "CreateWebhookLogs1730000000002"

SQLITE_UUID = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))"
)

INDEXES = [
    'CREATE INDEX "IDX_webhook_logs_externalId" ON "webhook_logs" ("externalId")',
    'CREATE INDEX "IDX_webhook_logs_externalId_webhookType_createdAt" '
    'ON "webhook_logs" ("externalId", "webhookType", "createdAt")',
    'CREATE INDEX "IDX_webhook_logs_orderId_createdAt" '
    'ON "webhook_logs" ("orderId", "createdAt")',
    'CREATE INDEX "IDX_webhook_logs_webhookType_processed_createdAt" '
    'ON "webhook_logs" ("webhookType", "processed", "createdAt")',
]

POSTGRES_UP = [
    """CREATE TABLE "webhook_logs" (
    "id" uuid NOT NULL DEFAULT gen_random_uuid(),
    "externalId" character varying(255) NOT NULL,
    "webhookType" character varying(50) NOT NULL,
    "payload" jsonb NOT NULL,
    "signature" text,
    "signatureValid" boolean NOT NULL DEFAULT false,
    "processed" boolean NOT NULL DEFAULT false,
    "orderId" uuid,
    "paymentId" character varying(255),
    "result" jsonb,
    "paymentStatus" character varying(50),
    "error" text,
    "sourceIp" character varying(45),
    "attemptCount" integer NOT NULL DEFAULT 1,
    "createdAt" timestamp NOT NULL DEFAULT now(),
    "updatedAt" timestamp NOT NULL DEFAULT now(),
    CONSTRAINT "UQ_webhook_idempotency" UNIQUE ("externalId", "webhookType", "processed"),
    CONSTRAINT "PK_c41f6cdf59cdfe3704807650896" PRIMARY KEY ("id")
)""",
    *INDEXES,
]

SQLITE_UP = [
    f"""CREATE TABLE "webhook_logs" (
    "id" TEXT NOT NULL DEFAULT {SQLITE_UUID},
    "externalId" VARCHAR(255) NOT NULL,
    "webhookType" VARCHAR(50) NOT NULL,
    "payload" TEXT NOT NULL CHECK (json_valid("payload")),
    "signature" TEXT,
    "signatureValid" BOOLEAN NOT NULL DEFAULT 0,
    "processed" BOOLEAN NOT NULL DEFAULT 0,
    "orderId" TEXT,
    "paymentId" VARCHAR(255),
    "result" TEXT CHECK ("result" IS NULL OR json_valid("result")),
    "paymentStatus" VARCHAR(50),
    "error" TEXT,
    "sourceIp" VARCHAR(45),
    "attemptCount" INTEGER NOT NULL DEFAULT 1,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "PK_c41f6cdf59cdfe3704807650896" PRIMARY KEY ("id")
)""",
    'CREATE UNIQUE INDEX "UQ_webhook_idempotency" '
    'ON "webhook_logs" ("externalId", "webhookType", "processed")',
    *INDEXES,
]

DOWN = ['DROP TABLE "webhook_logs"']


class WebhookLog(pw.Model):
    id = pw.UUIDField(primary_key=True)
    external_id = pw.CharField(max_length=255, column_name="externalId")
    webhook_type = pw.CharField(max_length=50, column_name="webhookType")
    payload = pw.TextField()
    signature = pw.TextField(null=True)
    signature_valid = pw.BooleanField(default=False, column_name="signatureValid")
    processed = pw.BooleanField(default=False)
    order_id = pw.UUIDField(null=True, column_name="orderId")
    payment_id = pw.CharField(max_length=255, null=True, column_name="paymentId")
    result = pw.TextField(null=True)
    payment_status = pw.CharField(max_length=50, null=True, column_name="paymentStatus")
    error = pw.TextField(null=True)
    source_ip = pw.CharField(max_length=45, null=True, column_name="sourceIp")
    attempt_count = pw.IntegerField(default=1, column_name="attemptCount")
    created_at = pw.DateTimeField(column_name="createdAt")
    updated_at = pw.DateTimeField(column_name="updatedAt")

    class Meta:
        table_name = "webhook_logs"


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    with migrator.fake():
        migrator.create_model(WebhookLog)
    postgres = isinstance(database, pw.PostgresqlDatabase)
    for statement in POSTGRES_UP if postgres else SQLITE_UP:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for statement in DOWN:
        migrator.sql(statement)
    with migrator.fake():
        migrator.remove_model("webhook_logs")
