"""Adopting a database made by the original NestJS + TypeORM application (adopting.py).

A TypeORM database is a PostgreSQL thing; on PostgreSQL it is built here by hand
the way TypeORM made it (TypeORM's PK_/FK_/UQ_ names, its ``migrations`` table).
TypeORM also supports SQLite: there it is built from our migrations' own SQLite
statements (the same shape) plus a ``migrations`` table, with no trace of ours.
"""


import pytest
from conftest import MIGRATIONS as SHIPPED
from conftest import MIGRATIONS_DIR

import bitloot_lite
from bitloot_lite import adopting
from bitloot_lite.errors import AdoptionError, ConfigurationError, NeedsBaseline
from bitloot_lite.runner import Router, SqliteForeignKeysOff
from bitloot_lite.schema import compare, snapshot
from bitloot_lite.target import STEPS, expected

#: The shipped migrations that have an upstream (TypeORM) counterpart; the later ones
#: (SHIPPED[5:]) are bitloot-lite's own, which migrate applies after adopting.
NAMES = ["001_init_orders", "002_create_payments", "003_create_webhook_logs",
         "004_orders_status_enum", "005_add_keys_reservation"]
UPSTREAM = ["InitOrders1710000000000", "CreatePayments1730000000001",
            "CreateWebhookLogs1730000000002", "UpdateOrdersStatusEnum1730000000003",
            "AddKeysReservation1720000000000"]
MIGRATIONS = list(zip(NAMES, UPSTREAM, strict=True))

ORDER_1 = "11111111-1111-4111-8111-111111111111"
ORDER_2 = "22222222-2222-4222-8222-222222222222"
ITEM_1 = "33333333-3333-4333-8333-333333333333"
ITEM_2 = "44444444-4444-4444-8444-444444444444"
PAYMENT = "55555555-5555-4555-8555-555555555555"
LOG = "66666666-6666-4666-8666-666666666666"
KEY = "77777777-7777-4777-8777-777777777777"

ORDER_STATUSES = "'created', 'waiting', 'confirming', 'paid', 'underpaid', 'failed', 'fulfilled'"
PAYMENT_STATUSES = "'created', 'waiting', 'confirmed', 'finished', 'underpaid', 'failed'"

#: TypeORM's migrations, step by step, as its PostgreSQL query runner wrote them.
TYPEORM_POSTGRES = {
    1: [  # InitOrders: plain SQL, so PostgreSQL's default constraint names
        """CREATE TABLE "orders" ("id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            "email" varchar(320) NOT NULL, "status" varchar(20) NOT NULL DEFAULT 'created',
            "total" numeric(20,8) NOT NULL DEFAULT 0,
            "createdAt" timestamp NOT NULL DEFAULT now(),
            "updatedAt" timestamp NOT NULL DEFAULT now())""",
        'CREATE INDEX "IDX_orders_createdAt" ON "orders" ("createdAt")',
        """CREATE TABLE "order_items" ("id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            "orderId" uuid REFERENCES "orders"("id") ON DELETE CASCADE,
            "productId" varchar(100) NOT NULL, "quantity" integer NOT NULL DEFAULT 1,
            "signedUrl" text, "createdAt" timestamp NOT NULL DEFAULT now(),
            "updatedAt" timestamp NOT NULL DEFAULT now())""",
        'CREATE INDEX "IDX_order_items_orderId" ON "order_items" ("orderId")',
    ],
    2: [  # CreatePayments: new Table(...), isUnique on externalId -> the UQ_ duplicate
        f'CREATE TYPE "public"."payments_status_enum" AS ENUM({PAYMENT_STATUSES})',
        """CREATE TABLE "payments" ("id" uuid NOT NULL DEFAULT gen_random_uuid(),
            "orderId" uuid NOT NULL, "externalId" character varying NOT NULL,
            "provider" character varying(50) NOT NULL DEFAULT 'nowpayments',
            "status" "public"."payments_status_enum" NOT NULL DEFAULT 'created',
            "rawPayload" jsonb, "priceAmount" numeric(20,8),
            "priceCurrency" character varying(10), "payAmount" numeric(20,8),
            "payCurrency" character varying(10), "confirmations" integer NOT NULL DEFAULT 0,
            "createdAt" TIMESTAMP NOT NULL DEFAULT now(),
            "updatedAt" TIMESTAMP NOT NULL DEFAULT now(),
            CONSTRAINT "UQ_c9ca05ceb7cc5eae113c2eb57cd" UNIQUE ("externalId"),
            CONSTRAINT "PK_197ab7af18c93fbb0c9b28b4a59" PRIMARY KEY ("id"))""",
        'CREATE UNIQUE INDEX "IDX_payments_externalId" ON "payments" ("externalId")',
        'CREATE INDEX "IDX_payments_orderId" ON "payments" ("orderId")',
        'CREATE INDEX "IDX_payments_status" ON "payments" ("status")',
        'CREATE INDEX "IDX_payments_createdAt" ON "payments" ("createdAt")',
        'CREATE INDEX "IDX_payments_orderId_status" ON "payments" ("orderId", "status")',
        """ALTER TABLE "payments" ADD CONSTRAINT "FK_af929a5f2a400fdb6913b4967e1"
            FOREIGN KEY ("orderId") REFERENCES "orders"("id")
            ON DELETE CASCADE ON UPDATE CASCADE""",
    ],
    3: [  # CreateWebhookLogs
        """CREATE TABLE "webhook_logs" ("id" uuid NOT NULL DEFAULT gen_random_uuid(),
            "externalId" character varying(255) NOT NULL,
            "webhookType" character varying(50) NOT NULL, "payload" jsonb NOT NULL,
            "signature" text, "signatureValid" boolean NOT NULL DEFAULT false,
            "processed" boolean NOT NULL DEFAULT false, "orderId" uuid,
            "paymentId" character varying(255), "result" jsonb,
            "paymentStatus" character varying(50), "error" text,
            "sourceIp" character varying(45), "attemptCount" integer NOT NULL DEFAULT 1,
            "createdAt" TIMESTAMP NOT NULL DEFAULT now(),
            "updatedAt" TIMESTAMP NOT NULL DEFAULT now(),
            CONSTRAINT "UQ_webhook_idempotency" UNIQUE ("externalId", "webhookType", "processed"),
            CONSTRAINT "PK_c41f6cdf59cdfe3704807650896" PRIMARY KEY ("id"))""",
        'CREATE INDEX "IDX_webhook_logs_externalId" ON "webhook_logs" ("externalId")',
        'CREATE INDEX "IDX_webhook_logs_externalId_webhookType_createdAt" '
        'ON "webhook_logs" ("externalId", "webhookType", "createdAt")',
        'CREATE INDEX "IDX_webhook_logs_orderId_createdAt" '
        'ON "webhook_logs" ("orderId", "createdAt")',
        'CREATE INDEX "IDX_webhook_logs_webhookType_processed_createdAt" '
        'ON "webhook_logs" ("webhookType", "processed", "createdAt")',
    ],
    4: [  # UpdateOrdersStatusEnum
        f'CREATE TYPE "public"."orders_status_enum" AS ENUM({ORDER_STATUSES})',
        'ALTER TABLE "orders" ALTER COLUMN "status" DROP DEFAULT',
        'ALTER TABLE "orders" ALTER COLUMN "status" TYPE "public"."orders_status_enum" '
        'USING "status"::"text"::"public"."orders_status_enum"',
        """ALTER TABLE "orders" ALTER COLUMN "status" SET DEFAULT 'created'""",
    ],
    5: [  # AddKeysReservation: TypeORM names the keys primary key and comments its columns
        'ALTER TABLE "orders" ADD "kinguinReservationId" character varying(255)',
        """COMMENT ON COLUMN "orders"."kinguinReservationId" IS
            'Kinguin reservation ID for tracking fulfillment status'""",
        """CREATE TABLE "keys" ("id" uuid NOT NULL DEFAULT gen_random_uuid(),
            "orderItemId" uuid NOT NULL, "storageRef" text, "viewedAt" TIMESTAMP,
            "createdAt" TIMESTAMP NOT NULL DEFAULT now(),
            "updatedAt" TIMESTAMP NOT NULL DEFAULT now(),
            CONSTRAINT "PK_e63d5d51e0192635ab79aa49644" PRIMARY KEY ("id"))""",
        *[f"""COMMENT ON COLUMN "keys"."{column}" IS '{text}'""" for column, text in [
            ("id", "Key id"), ("orderItemId", "The order item this key fulfils"),
            ("storageRef", "Object key of the encrypted key in object storage"),
            ("viewedAt", "When the customer first revealed the key"),
            ("createdAt", "Created"), ("updatedAt", "Last updated")]],
        'CREATE INDEX "IDX_keys_orderItemId" ON "keys" ("orderItemId")',
        'CREATE INDEX "IDX_keys_createdAt" ON "keys" ("createdAt")',
        'CREATE INDEX "IDX_orders_kinguinReservationId" ON "orders" ("kinguinReservationId")',
        """ALTER TABLE "keys" ADD CONSTRAINT "FK_keys_orderItemId" FOREIGN KEY ("orderItemId")
            REFERENCES "order_items"("id") ON DELETE CASCADE ON UPDATE CASCADE""",
    ],
}
TYPEORM_HISTORY_TABLE = {
    "postgres": 'CREATE TABLE "migrations" ("id" SERIAL NOT NULL, "timestamp" bigint NOT NULL, '
                '"name" character varying NOT NULL, '
                'CONSTRAINT "PK_8c82d7f526340ab734260ea46be" PRIMARY KEY ("id"))',
    "sqlite": 'CREATE TABLE "migrations" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, '
              '"timestamp" bigint NOT NULL, "name" varchar NOT NULL)',
}
ROWS = {
    "orders": [
        f"""INSERT INTO "orders" ("id", "email", "status", "total")
            VALUES ('{ORDER_1}', 'a@example.com', 'paid', 12.5)""",
        f"""INSERT INTO "orders" ("id", "email") VALUES ('{ORDER_2}', 'b@example.com')"""],
    "order_items": [
        f"""INSERT INTO "order_items" ("id", "orderId", "productId", "quantity", "signedUrl")
            VALUES ('{ITEM_1}', '{ORDER_1}', 'game-1', 2, 'https://example.com/k')""",
        f"""INSERT INTO "order_items" ("id", "orderId", "productId")
            VALUES ('{ITEM_2}', '{ORDER_2}', 'game-2')"""],
    "payments": [
        f"""INSERT INTO "payments" ("id", "orderId", "externalId", "status", "rawPayload",
            "priceAmount", "priceCurrency", "confirmations")
            VALUES ('{PAYMENT}', '{ORDER_1}', 'np-1', 'finished', '{{"paid": true}}',
            12.5, 'eur', 3)"""],
    "webhook_logs": [
        f"""INSERT INTO "webhook_logs" ("id", "externalId", "webhookType", "payload",
            "signatureValid", "processed", "orderId", "paymentId")
            VALUES ('{LOG}', 'np-1', 'payment', '{{"payment_status": "finished"}}',
            true, true, '{ORDER_1}', 'np-1')"""],
}
KEY_ROW = f"""INSERT INTO "keys" ("id", "orderItemId", "storageRef")
    VALUES ('{KEY}', '{ITEM_1}', 'keys/{KEY}.enc')"""


def _build_sqlite(db, step):
    """Our migrations' own SQLite statements up to ``step``, and no history of ours."""
    router = Router(db, MIGRATIONS_DIR)
    for number, name in enumerate(NAMES[:step], start=1):
        scope = router.scope(name)
        if number == 4:  # a table rebuild: foreign keys off, outside a transaction
            with SqliteForeignKeysOff(db), db.atomic():
                scope["sqlite_rewrite_column"](db, "orders", scope["SQLITE_PLAIN"],
                                               scope["SQLITE_CHECKED"])
        else:
            for statement in scope["SQLITE_UP"]:
                db.execute_sql(statement)


def build_typeorm(db, backend, step, history=None):
    """A database as TypeORM left it after ``step`` migrations, with rows in every table.

    ``history``: the names for TypeORM's migrations table (default: the first
    ``step`` upstream names, in the order they ran); False: no such table.
    """
    with db.atomic():
        if backend == "postgres":
            for number in range(1, step + 1):
                for statement in TYPEORM_POSTGRES[number]:
                    db.execute_sql(statement)
    if backend == "sqlite":
        _build_sqlite(db, step)
    with db.atomic():
        for table, statements in ROWS.items():
            if table in db.get_tables():
                for statement in statements:
                    db.execute_sql(statement)
        if step >= 5:
            db.execute_sql(KEY_ROW)
        history = UPSTREAM[:step] if history is None else history
        if history is not False:
            write_typeorm_history(db, backend, history)
    return db


def write_typeorm_history(db, backend, names):
    if "migrations" not in db.get_tables():
        db.execute_sql(TYPEORM_HISTORY_TABLE[backend])
    db.execute_sql('DELETE FROM "migrations"')
    for number, name in enumerate(names, start=1):
        db.execute_sql(f"""INSERT INTO "migrations" ("id", "timestamp", "name")
                           VALUES ({number}, {int(name[-13:]) if name[-13:].isdigit() else 0},
                                   '{name}')""")


@pytest.fixture
def typeorm_db(database, backend):
    """A TypeORM-created database at step 4 (upstream names 1-4 in its history), with rows."""
    return build_typeorm(database, backend, 4)


def all_rows(db):
    """{table: [row as a dict, ...] ordered by id} of every bitloot table present."""
    result = {}
    for table in adopting.TABLES:
        if table in db.get_tables():
            cursor = db.execute_sql(f'SELECT * FROM "{table}" ORDER BY "id"')
            columns = [column[0] for column in cursor.description]
            result[table] = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return result


def state(db):
    """Everything a refusal must leave untouched: the schema, the rows, both histories."""
    return snapshot(db), all_rows(db), adopting.typeorm_history(db), adopting.recorded_history(db)


# -- the target at each step ---------------------------------------------------------------


@pytest.mark.parametrize("step", range(len(SHIPPED) + 1))
def test_expected_at_each_step_is_what_the_migrations_make(database, backend, step):
    if step:
        bitloot_lite.migrate(database, to=SHIPPED[step - 1])
    assert compare(snapshot(database), expected(backend, step)) == []
    if step:  # and not the shape of the step before
        assert compare(snapshot(database), expected(backend, step - 1)) != []


def test_expected_steps_on_plain_data():
    assert len(SHIPPED) == STEPS
    assert expected("postgres", None) == expected("postgres", STEPS) == expected("postgres")
    assert expected("sqlite", 0) == {"backend": "sqlite", "enums": {}, "tables": {}}
    before = expected("postgres", 3)
    status = next(c for c in before["tables"]["orders"]["columns"] if c["name"] == "status")
    assert status == {"name": "status", "type": "character varying(20)", "nullable": False,
                      "default": "'created'::character varying"}
    assert before["enums"] == {"payments_status_enum": expected("postgres")["enums"][
        "payments_status_enum"]}
    assert expected("sqlite", 3)["tables"]["orders"]["checks"] == []
    assert expected("postgres", 4)["tables"]["orders"]["comments"] == {}
    for step in (-1, STEPS + 1, "4", True, 4.0):
        with pytest.raises(ConfigurationError):
            expected("postgres", step)


# -- reading a database ----------------------------------------------------------------------


def test_an_empty_database_has_nothing_to_adopt(database):
    assert adopting.typeorm_history(database) is None
    assert adopting.existing_tables(database) == set()
    assert adopting.adoption_plan(database, MIGRATIONS) == []
    adopting.require_history_or_empty(database, [], MIGRATIONS)
    assert bitloot_lite.migrate(database) == SHIPPED


def test_typeorm_history_is_read_in_id_order(typeorm_db, backend):
    assert adopting.typeorm_history(typeorm_db) == UPSTREAM[:4]
    assert adopting.existing_tables(typeorm_db) == {"orders", "order_items", "payments",
                                                    "webhook_logs"}
    assert adopting.recorded_history(typeorm_db) == []
    notes = []
    assert adopting.shape_differences(typeorm_db, 4, notes) == []
    assert "table migrations not expected (TypeORM's migration history table)" in notes
    if backend == "postgres":
        assert ("unique constraint UQ_c9ca05ceb7cc5eae113c2eb57cd on payments not expected "
                "(TypeORM's duplicate of the unique index IDX_payments_externalId)") in notes
    assert adopting.shape_differences(typeorm_db, 3)  # step 4's enum/CHECK is there
    assert adopting.matching_step(typeorm_db) == 4


# -- adopting --------------------------------------------------------------------------------


def test_a_typeorm_database_at_step_4_is_adopted_as_001_to_004(typeorm_db):
    before = state(typeorm_db)
    assert adopting.adoption_plan(typeorm_db, MIGRATIONS) == NAMES[:4]
    assert state(typeorm_db) == before  # planning writes nothing
    adopting.require_history_or_empty(typeorm_db, [])  # TypeORM's history counts


def test_the_typeorm_table_may_list_the_names_in_any_order(database, backend):
    build_typeorm(database, backend, 5, history=[UPSTREAM[i] for i in (4, 1, 0, 3, 2)])
    assert adopting.adoption_plan(database, MIGRATIONS) == NAMES
    write_typeorm_history(database, backend, [UPSTREAM[i] for i in (1, 0, 3, 2, 4, 0)])
    assert adopting.adoption_plan(database, MIGRATIONS) == NAMES  # a repeated row is harmless


def test_a_full_five_step_typeorm_database_adopts_all_five(database, backend):
    build_typeorm(database, backend, 5)
    notes = []
    assert adopting.shape_differences(database, 5, notes) == []
    if backend == "postgres":
        assert snapshot(database)["tables"]["keys"]["primary_key"]["name"] == (
            "PK_e63d5d51e0192635ab79aa49644")
        assert sum("(TypeORM comments every keys column)" in note for note in notes) == 6
    assert adopting.adoption_plan(database, MIGRATIONS) == NAMES
    # and migrate then applies only bitloot-lite's own later migrations (006 on)
    assert bitloot_lite.migrate(database) == SHIPPED[5:]
    assert compare(snapshot(database), expected(backend)) == []


def test_nothing_is_adopted_once_our_history_lists_anything(typeorm_db):
    assert adopting.adoption_plan(typeorm_db, MIGRATIONS, applied=NAMES[:4]) == []
    adopting.require_history_or_empty(typeorm_db, NAMES[:4])


def test_recording_the_plan_then_migrating_applies_only_005_and_keeps_every_row(typeorm_db,
                                                                                 backend):
    """What migrate does with the plan, done by hand: record the names, then migrate
    (005 and the shipped migrations after it, none of 001-004)."""
    rows = all_rows(typeorm_db)
    names = adopting.adoption_plan(typeorm_db, MIGRATIONS)
    Router(typeorm_db).record(names)  # record() is what migrate uses
    assert bitloot_lite.migrate(typeorm_db) == SHIPPED[4:]
    _assert_adopted_and_migrated(typeorm_db, backend, rows)


def _assert_adopted_and_migrated(db, backend, rows):
    after = all_rows(db)
    assert [row.pop("kinguinReservationId") for row in after["orders"]] == [None, None]
    assert after.pop("keys") == []
    assert after == rows
    assert sum(len(table) for table in rows.values()) == 6
    assert compare(snapshot(db), expected(backend)) == []
    assert adopting.recorded_history(db) == SHIPPED
    assert adopting.typeorm_history(db) == UPSTREAM[:4]  # TypeORM's table is left as it was
    assert bitloot_lite.migrate(db) == []


def test_migrate_adopts_a_typeorm_database_and_applies_only_005(typeorm_db, backend):
    """Adopted as 001-004: migrate applies 005 (and the shipped ones after it) only."""
    rows = all_rows(typeorm_db)
    assert bitloot_lite.migrate(typeorm_db) == ["005_add_keys_reservation", *SHIPPED[5:]]
    _assert_adopted_and_migrated(typeorm_db, backend, rows)


# -- refusing --------------------------------------------------------------------------------


@pytest.mark.parametrize("history, words", [
    (UPSTREAM[:4] + ["AddLoyaltyPoints1740000000000"],
     ["unknown to bitloot-lite: AddLoyaltyPoints1740000000000"]),
    ([UPSTREAM[0], UPSTREAM[1], UPSTREAM[3]],
     ["listed without the earlier CreateWebhookLogs1730000000002 (003_create_webhook_logs)"]),
    ([UPSTREAM[4]],
     ["listed without the earlier InitOrders1710000000000 (001_init_orders), "
      "CreatePayments1730000000001", "UpdateOrdersStatusEnum1730000000003 "
      "(004_orders_status_enum)"]),
], ids=["unknown name", "gap", "only the last"])
def test_a_history_that_is_not_a_prefix_is_refused(database, backend, history, words):
    build_typeorm(database, backend, 4, history=history)
    before = state(database)
    with pytest.raises(AdoptionError) as caught:
        adopting.adoption_plan(database, MIGRATIONS)
    for text in words:
        assert text in str(caught.value)
    assert "bitloot-lite baseline --to NAME" in str(caught.value)
    assert caught.value.differences == []
    assert isinstance(caught.value, bitloot_lite.MigrationError)
    assert state(database) == before


DRIFTS = {
    "dropped index": ('DROP INDEX "IDX_payments_status"',
                      "index IDX_payments_status missing on payments"),
    "missing column": ('ALTER TABLE "webhook_logs" DROP COLUMN "sourceIp"',
                       "column webhook_logs.sourceIp missing"),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_tables_of_another_shape_are_refused(typeorm_db, drift):
    change, difference = DRIFTS[drift]
    typeorm_db.execute_sql(change)
    before = state(typeorm_db)
    with pytest.raises(AdoptionError) as caught:
        adopting.adoption_plan(typeorm_db, MIGRATIONS)
    assert caught.value.differences == [difference]
    assert "004_orders_status_enum" in caught.value.reason
    assert difference in str(caught.value)
    assert state(typeorm_db) == before


def test_tables_with_a_history_one_step_behind_their_shape_are_refused(database, backend):
    build_typeorm(database, backend, 4, history=UPSTREAM[:3])  # says 3, looks like 4
    with pytest.raises(AdoptionError) as caught:
        adopting.adoption_plan(database, MIGRATIONS)
    if backend == "postgres":
        assert "orders.status: type orders_status_enum, expected character varying(20)" in (
            caught.value.differences)
    else:
        assert any("CHK_orders_status" in line for line in caught.value.differences)


def test_migrate_refuses_tables_of_another_shape_and_changes_nothing(typeorm_db):
    typeorm_db.execute_sql('DROP INDEX "IDX_payments_status"')
    before = state(typeorm_db)
    with pytest.raises(AdoptionError) as caught:
        bitloot_lite.migrate(typeorm_db)
    assert caught.value.differences == ["index IDX_payments_status missing on payments"]
    assert state(typeorm_db) == before


@pytest.mark.parametrize("typeorm_table", [False, True], ids=["no table", "empty table"])
def test_tables_with_no_history_need_a_baseline(database, backend, typeorm_table):
    build_typeorm(database, backend, 4, history=[] if typeorm_table else False)
    before = state(database)
    assert adopting.adoption_plan(database, MIGRATIONS) == []
    with pytest.raises(NeedsBaseline) as caught:
        adopting.require_history_or_empty(database, [], MIGRATIONS)
    error = caught.value
    assert error.tables == ["order_items", "orders", "payments", "webhook_logs"]
    assert error.suggestion == "004_orders_status_enum"
    message = str(error)
    for text in ("made outside bitloot-lite", "bitloot-lite baseline --to NAME",
                 "bitloot-lite baseline --to 004_orders_status_enum", "bitloot-lite migrate"):
        assert text in message
    with pytest.raises(NeedsBaseline) as caught:  # without our names: still the hint
        adopting.require_history_or_empty(database, [])
    assert caught.value.suggestion is None
    assert "bitloot-lite baseline --to" in str(caught.value)
    assert state(database) == before


def test_tables_matching_no_step_need_a_baseline_without_a_suggestion(database, backend):
    build_typeorm(database, backend, 4, history=False)
    database.execute_sql('DROP INDEX "IDX_payments_status"')
    with pytest.raises(NeedsBaseline) as caught:
        adopting.require_history_or_empty(database, [], NAMES)
    assert caught.value.suggestion is None
    assert "bitloot-lite baseline --to 004_orders_status_enum" in str(caught.value)  # example


def test_migrate_refuses_tables_with_no_history(database, backend):
    build_typeorm(database, backend, 4, history=False)
    before = state(database)
    with pytest.raises(NeedsBaseline, match="bitloot-lite baseline --to"):
        bitloot_lite.migrate(database)
    assert state(database) == before


def test_other_tables_alone_need_no_baseline(database):
    database.execute_sql('CREATE TABLE "unrelated" ("id" integer PRIMARY KEY)')
    adopting.require_history_or_empty(database, [])
    assert adopting.adoption_plan(database, MIGRATIONS) == []


# -- baselining ------------------------------------------------------------------------------


def test_baseline_check_accepts_the_matching_step_only(database, backend):
    build_typeorm(database, backend, 4, history=False)
    notes = adopting.baseline_check(database, 4)  # passes, and says what it tolerated
    assert all("not expected (TypeORM's" in note for note in notes)
    assert len(notes) == (1 if backend == "postgres" else 0)  # the UQ_ duplicate
    with pytest.raises(AdoptionError) as caught:
        adopting.baseline_check(database, 5)
    assert "table keys missing" in caught.value.differences
    assert "column orders.kinguinReservationId missing" in caught.value.differences
    with pytest.raises(AdoptionError) as caught:
        adopting.baseline_check(database, 3)
    assert caught.value.differences
    with pytest.raises(AdoptionError):
        adopting.baseline_check(database, 0)


def test_baseline_then_migrate_keeps_every_row(database, backend):
    build_typeorm(database, backend, 4, history=False)
    rows = all_rows(database)
    assert bitloot_lite.migrating.baseline(database, "004_orders_status_enum") == NAMES[:4]
    assert bitloot_lite.migrate(database) == SHIPPED[4:]
    after = all_rows(database)
    assert [row.pop("kinguinReservationId") for row in after["orders"]] == [None, None]
    assert after.pop("keys") == []
    assert after == rows
    assert compare(snapshot(database), expected(backend)) == []
