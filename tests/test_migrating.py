"""The migration runner and the shipped migrations, on SQLite and on PostgreSQL.

Everything here talks to a real database (the ``database`` fixture: a fresh
SQLite file or a throwaway PostgreSQL database). Rows are written with raw SQL
so that these tests do not depend on the models' current shape.
"""

import datetime as dt
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import conftest
import peewee as pw
import peewee_migrate
import pytest
from conftest import MIGRATIONS, MIGRATIONS_DIR, fetch, sqlite_only

from bitloot_lite import (
    MigrationFailed,
    MigrationsNotFound,
    NothingToRollback,
    UnknownMigration,
    migrate,
    pending,
    rollback,
    status,
)
from bitloot_lite.adopting import recorded_history
from bitloot_lite.db import is_postgres, is_sqlite
from bitloot_lite.migrating import HISTORY_TABLE, default_migrations_dir

#: The data tables that exist once the first ``n`` migrations are applied.
TABLES_AT = {
    0: set(),
    1: {"orders", "order_items"},
    2: {"orders", "order_items", "payments"},
    3: {"orders", "order_items", "payments", "webhook_logs"},
    4: {"orders", "order_items", "payments", "webhook_logs"},
    5: {"orders", "order_items", "payments", "webhook_logs", "keys"},
    6: {"orders", "order_items", "payments", "webhook_logs", "keys"},
}

ORDER_STATUSES = ["created", "waiting", "confirming", "paid", "underpaid", "failed", "fulfilled"]
PAYMENT_STATUSES = ["created", "waiting", "confirmed", "finished", "underpaid", "failed"]



# --- reading the database --------------------------------------------------------------


def data_tables(database):
    """The tables other than the migration history."""
    if is_postgres(database):
        sql = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    return {name for (name,) in fetch(database, sql)} - {HISTORY_TABLE}


def columns(database, table):
    cursor = database.execute_sql(f'SELECT * FROM "{table}" WHERE 1 = 0')
    return [d[0] for d in cursor.description]


def read_rows(database):
    """{table: {id: {column: value}}} for every data table."""
    result = {}
    for table in sorted(data_tables(database)):
        cursor = database.execute_sql(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        result[table] = {row["id"]: row for row in rows}
    return result


def history(database):
    """(name, migrated_at) of every applied migration, oldest first."""
    return fetch(database, f'SELECT "name", "migrated_at" FROM "{HISTORY_TABLE}" ORDER BY "id"')


def enum_types(database):
    return fetch(
        database,
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' AND t.typtype = 'e' ORDER BY 1",
    )


def schema_snapshot(database, url):
    """The schema as text lines: sqlite_master on SQLite; catalog + pg_dump on PostgreSQL."""
    if is_sqlite(database):
        return fetch(database, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
    return pg_catalog_snapshot(database) + pg_dump_schema(url)


def pg_catalog_snapshot(database):
    queries = [
        # Columns in their order, with type, nullability, default and comment.
        """SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
           WHERE n.nspname = 'public' ORDER BY c.relname, a.attnum""",
        """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
        "SELECT tablename, indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = 'public' ORDER BY 1, 2",
        """SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
           FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
           JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = 'public' GROUP BY t.typname ORDER BY 1""",
    ]
    return [row for sql in queries for row in fetch(database, sql)]


def pg_dump_schema(url):
    """``pg_dump --schema-only`` of the database, minus lines that differ on every run."""
    if shutil.which("pg_dump") is None:  # the catalog snapshot still covers the schema
        if conftest.IN_CI:
            pytest.fail("pg_dump is required under CI=true")
        return []
    done = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", f"--dbname={url}"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # \restrict / \unrestrict carry a random key (pg_dump >= 15.14).
    return [
        line for line in done.stdout.splitlines()
        if line.strip() and not line.startswith(("\\restrict", "\\unrestrict"))
    ]


def full_state(database, url):
    """Schema, rows and history: everything a no-op must leave as it was."""
    return {
        "schema": schema_snapshot(database, url),
        "rows": read_rows(database),
        "history": history(database) if HISTORY_TABLE in database.get_tables() else None,
    }


# --- writing rows -----------------------------------------------------------------------


def insert(database, table, **values):
    names = ", ".join(f'"{name}"' for name in values)
    marks = ", ".join([database.param] * len(values))
    database.execute_sql(
        f'INSERT INTO "{table}" ({names}) VALUES ({marks})', list(values.values())
    )


def new_id():
    return str(uuid.uuid4())


class Seeder:
    """Inserts rows into every table that exists right now, each round with new values."""

    def __init__(self, database):
        self.database = database
        self.round = 0

    def seed(self):
        db, n = self.database, self.round
        self.round += 1
        tables = data_tables(db)
        stamp = f"2024-0{1 + n % 9}-1{n % 10} 10:2{n % 10}:00"
        with db.atomic():
            if "orders" in tables:
                self._orders_and_items(n, stamp)
            if "payments" in tables:
                self._payments(n, stamp)
            if "webhook_logs" in tables:
                self._webhook_logs(n, stamp)
            if "keys" in tables:
                self._keys(n, stamp)
        counts = {t: fetch(db, f'SELECT count(*) FROM "{t}"')[0][0] for t in tables}
        assert all(counts.values()), counts

    def _orders_and_items(self, n, stamp):
        db = self.database
        reservation = "kinguinReservationId" in columns(db, "orders")
        for i, order_status in enumerate(ORDER_STATUSES[n % 3 :: 2]):
            order_id = new_id()
            extra = {"kinguinReservationId": f"res-{n}-{i}"} if reservation and i % 2 else {}
            insert(
                db, "orders", id=order_id, email=f"buyer{n}.{i}@example.com", status=order_status,
                total=f"{n}{i}.12345678", createdAt=stamp, updatedAt=stamp, **extra,
            )
            for quantity in (1, 3):
                insert(
                    db, "order_items", id=new_id(), orderId=order_id,
                    productId=f"product-{n}-{i}-{quantity}", quantity=quantity,
                    signedUrl=f"https://cdn.example.com/{n}/{i}" if quantity > 1 else None,
                    createdAt=stamp, updatedAt=stamp,
                )
        # Everything by default but the email, and an item that belongs to no order.
        insert(db, "orders", email=f"defaults{n}@example.com")
        insert(db, "order_items", productId=f"orphan-product-{n}", orderId=None)

    def _payments(self, n, stamp):
        db = self.database
        order_ids = [row[0] for row in fetch(db, 'SELECT "id" FROM "orders" ORDER BY "email"')]
        for i, order_id in enumerate(order_ids[:3]):
            insert(
                db, "payments", id=new_id(), orderId=order_id, externalId=f"np-{n}-{i}",
                status=PAYMENT_STATUSES[(n + i) % len(PAYMENT_STATUSES)],
                rawPayload=json.dumps({"payment_id": f"np-{n}-{i}", "round": n}),
                priceAmount="19.99000000", priceCurrency="eur", payAmount="0.00031234",
                payCurrency="btc", confirmations=i, createdAt=stamp, updatedAt=stamp,
            )
        insert(db, "payments", orderId=order_ids[-1], externalId=f"np-{n}-defaults")

    def _webhook_logs(self, n, stamp):
        db = self.database
        for processed in (False, True):
            insert(
                db, "webhook_logs", id=new_id(), externalId=f"np-{n}", webhookType="ipn",
                payload=json.dumps({"payment_status": "finished", "round": n}),
                signature="deadbeef", signatureValid=True, processed=processed,
                orderId=new_id(), paymentId=f"np-{n}", result=json.dumps({"ok": processed}),
                paymentStatus="finished", error=None if processed else "timeout",
                sourceIp="203.0.113.7", attemptCount=2, createdAt=stamp, updatedAt=stamp,
            )
        insert(db, "webhook_logs", externalId=f"np-{n}-d", webhookType="ipn", payload="{}")

    def _keys(self, n, stamp):
        db = self.database
        query = 'SELECT "id" FROM "order_items" ORDER BY "productId"'
        item_ids = [row[0] for row in fetch(db, query)]
        for i, item_id in enumerate(item_ids[:3]):
            insert(
                db, "keys", id=new_id(), orderItemId=item_id,
                storageRef=f"keys/{n}/{i}.enc", viewedAt=stamp if i else None,
                createdAt=stamp, updatedAt=stamp,
            )
        insert(db, "keys", orderItemId=item_ids[-1])


# --- assertions ---------------------------------------------------------------------------


def assert_rows_kept(before, after):
    """Every row of every table in ``after`` that was in ``before`` is still there, unchanged
    in the columns both have."""
    for table, rows in after.items():
        if table not in before:
            continue
        old_rows = before[table]
        assert set(rows) == set(old_rows), f"{table}: rows lost or added"
        old_columns, new_columns = (next(iter(r.values()), {}) for r in (old_rows, rows))
        common = [c for c in old_columns if c in new_columns]
        old = {key: tuple(row[c] for c in common) for key, row in old_rows.items()}
        new = {key: tuple(row[c] for c in common) for key, row in rows.items()}
        assert new == old, f"{table}: values changed"


def assert_foreign_keys_enforced(database):
    """The connection enforces foreign keys, and ON DELETE CASCADE still acts."""
    if is_sqlite(database):
        assert fetch(database, "PRAGMA foreign_keys") == [(1,)]
        assert fetch(database, "PRAGMA foreign_key_check") == []
    with pytest.raises(pw.IntegrityError), database.atomic():
        insert(database, "order_items", productId="orphan", orderId=new_id())
    # Deleting an order deletes its items (and payments); undone afterwards.
    order_id, param = new_id(), database.param
    children = ["order_items"] + (["payments"] if "payments" in data_tables(database) else [])
    with database.atomic() as transaction:
        insert(database, "orders", id=order_id, email="cascade@example.com")
        insert(database, "order_items", productId="cascade", orderId=order_id)
        if "payments" in children:
            insert(database, "payments", orderId=order_id, externalId=f"cascade-{order_id}")
        database.execute_sql(f'DELETE FROM "orders" WHERE "id" = {param}', [order_id])
        for table in children:
            sql = f'SELECT count(*) FROM "{table}" WHERE "orderId" = {param}'
            assert fetch(database, sql, [order_id]) == [(0,)], f"{table} not cascaded"
        transaction.rollback()


def assert_no_rebuild_leftovers(database):
    if is_sqlite(database):
        assert "_orders_rebuild" not in set(database.get_tables())


# --- 1. data survives every step -----------------------------------------------------------


def test_rows_survive_every_migration_up_and_down(database):
    seeder = Seeder(database)
    for count, name in enumerate(MIGRATIONS, start=1):
        seeder.seed()
        before = read_rows(database)
        assert migrate(database, to=name) == [name]
        assert data_tables(database) == TABLES_AT[count]
        assert_rows_kept(before, read_rows(database))
        assert_foreign_keys_enforced(database)
        assert_no_rebuild_leftovers(database)

    seeder.seed()
    for count in range(len(MIGRATIONS), 0, -1):
        before = read_rows(database)
        assert rollback(database) == [MIGRATIONS[count - 1]]
        assert data_tables(database) == TABLES_AT[count - 1]
        assert_rows_kept(before, read_rows(database))
        if count > 1:
            assert_foreign_keys_enforced(database)
        assert_no_rebuild_leftovers(database)
    assert recorded_history(database) == []


def test_status_column_keeps_every_value_across_004(database):
    """Each enum value survives the 004 conversion and its rollback, in its own row."""
    migrate(database, to="003_create_webhook_logs")
    for order_status in ORDER_STATUSES:
        insert(database, "orders", email=f"{order_status}@example.com", status=order_status)
    query = 'SELECT "email", "status" FROM "orders" ORDER BY "email"'
    before = fetch(database, query)
    migrate(database, to="004_orders_status_enum")
    assert fetch(database, query) == before
    rollback(database)
    assert fetch(database, query) == before


# --- 2. rollback + re-apply gives the same schema ----------------------------------------------


def test_rollback_then_reapply_gives_identical_schema(database, db_url):
    migrate(database)
    original = schema_snapshot(database, db_url)
    for steps in range(len(MIGRATIONS), 0, -1):
        assert rollback(database, steps=steps) == MIGRATIONS[::-1][:steps]
        assert migrate(database) == MIGRATIONS[-steps:]
        assert schema_snapshot(database, db_url) == original, f"after undoing {steps} step(s)"


def test_rolling_back_everything_leaves_only_the_history_table(migrated):
    assert rollback(migrated, steps=len(MIGRATIONS)) == MIGRATIONS[::-1]
    assert set(migrated.get_tables()) == {HISTORY_TABLE}
    assert recorded_history(migrated) == []
    if is_postgres(migrated):
        assert enum_types(migrated) == []
        assert fetch(
            migrated,
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        ) == [(f"{HISTORY_TABLE}_pkey",)]
    else:
        assert fetch(migrated, "SELECT type, name FROM sqlite_master ORDER BY name") == [
            ("table", HISTORY_TABLE)
        ]


def test_each_rollback_restores_the_schema_of_the_step_before(database, db_url):
    """Going down one step gives back exactly the schema we had on the way up."""
    on_the_way_up = {}
    for count, name in enumerate(MIGRATIONS, start=1):
        migrate(database, to=name)
        on_the_way_up[count] = schema_snapshot(database, db_url)
    for count in range(len(MIGRATIONS), 1, -1):
        rollback(database)
        assert schema_snapshot(database, db_url) == on_the_way_up[count - 1], (
            f"rolling back {MIGRATIONS[count - 1]}"
        )


#: Index and constraint names from docs/SCHEMA.md, which every backend must carry at head.
INDEXES_AT_HEAD = {
    "orders": {"IDX_orders_createdAt", "IDX_orders_kinguinReservationId",
               "UQ_orders_kinguinReservationId"},
    "order_items": {"IDX_order_items_orderId"},
    "payments": {
        "IDX_payments_externalId", "IDX_payments_orderId", "IDX_payments_status",
        "IDX_payments_createdAt", "IDX_payments_orderId_status",
    },
    "webhook_logs": {
        "UQ_webhook_idempotency", "IDX_webhook_logs_externalId",
        "IDX_webhook_logs_externalId_webhookType_createdAt",
        "IDX_webhook_logs_orderId_createdAt", "IDX_webhook_logs_webhookType_processed_createdAt",
    },
    "keys": {"IDX_keys_orderItemId", "IDX_keys_createdAt", "UQ_keys_storageRef"},
}
#: The indexes step 006 adds (before it, they are not there).
INDEXES_OF_006 = {"orders": "UQ_orders_kinguinReservationId", "keys": "UQ_keys_storageRef"}


def named_indexes(database):
    if is_postgres(database):
        sql = "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public'"
        rows = fetch(database, sql)
    else:
        rows = fetch(database, "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index'")
    found = {}
    for table, name in rows:
        if not name.endswith("_pkey") and not name.startswith(("sqlite_", "PK_")):
            found.setdefault(table, set()).add(name)
    found.pop(HISTORY_TABLE, None)
    return found


def test_every_step_leaves_the_documented_indexes_and_keys(database):
    """Absolute checks a rollback/re-apply comparison cannot make (a step that loses an
    index both ways round-trips fine)."""
    for name in MIGRATIONS:
        migrate(database, to=name)
        present = data_tables(database)
        expected = {t: set(i) for t, i in INDEXES_AT_HEAD.items() if t in present}
        if name < "005":
            expected["orders"] = {"IDX_orders_createdAt"}
        if name < "006":
            for table, index in INDEXES_OF_006.items():
                expected.get(table, set()).discard(index)
        assert named_indexes(database) == expected, f"after {name}"
    if is_postgres(database):
        assert enum_types(database) == [("orders_status_enum",), ("payments_status_enum",)]
        assert fetch(
            database,
            """SELECT col_description('orders'::regclass, attnum) FROM pg_attribute
               WHERE attrelid = 'orders'::regclass AND attname = 'kinguinReservationId'""",
        ) == [("Kinguin reservation ID for tracking fulfillment status",)]
        assert fetch(
            database,
            """SELECT conrelid::regclass::text, conname, confdeltype FROM pg_constraint
               WHERE contype = 'f' AND connamespace = 'public'::regnamespace ORDER BY 1""",
        ) == [
            ("keys", "FK_keys_orderItemId", "c"),
            ("order_items", "order_items_orderId_fkey", "c"),
            ("payments", "FK_af929a5f2a400fdb6913b4967e1", "c"),
        ]
    else:
        actions = {  # (parent table, on_delete) of each foreign key
            table: [row[2:7:4] for row in fetch(database, f'PRAGMA foreign_key_list("{table}")')]
            for table in ("order_items", "payments", "keys")
        }
        assert actions == {
            "order_items": [("orders", "CASCADE")],
            "payments": [("orders", "CASCADE")],
            "keys": [("order_items", "CASCADE")],
        }


# --- 3. API semantics ---------------------------------------------------------------------------


def test_migrate_returns_the_names_applied_in_order(database):
    assert pending(database) == MIGRATIONS
    assert migrate(database) == MIGRATIONS
    assert migrate(database) == []
    assert pending(database) == []
    assert recorded_history(database) == MIGRATIONS


def test_migrate_to_stops_after_the_named_migration(database):
    assert migrate(database, to="003_create_webhook_logs") == MIGRATIONS[:3]
    assert recorded_history(database) == MIGRATIONS[:3]
    assert data_tables(database) == TABLES_AT[3]
    assert pending(database) == MIGRATIONS[3:]
    assert migrate(database, to="002_create_payments") == []  # already applied
    assert migrate(database) == MIGRATIONS[3:]


def test_migrate_to_an_unknown_name_raises_and_changes_nothing(database, db_url):
    migrate(database, to="002_create_payments")
    before = full_state(database, db_url)
    with pytest.raises(UnknownMigration) as info:
        migrate(database, to="999_does_not_exist")
    assert info.value.name == "999_does_not_exist"
    assert full_state(database, db_url) == before


def test_rollback_steps_undoes_the_newest_first(migrated):
    assert rollback(migrated, steps=2) == [MIGRATIONS[-1], MIGRATIONS[-2]]
    assert recorded_history(migrated) == MIGRATIONS[:-2]
    assert pending(migrated) == MIGRATIONS[-2:]


def test_rollback_to_undoes_everything_after_it(migrated):
    assert rollback(migrated, to="001_init_orders") == MIGRATIONS[:0:-1]
    assert recorded_history(migrated) == ["001_init_orders"]
    assert data_tables(migrated) == TABLES_AT[1]
    if is_postgres(migrated):
        assert enum_types(migrated) == []
    assert rollback(migrated, to="001_init_orders") == []


def test_rollback_more_than_applied_raises_and_changes_nothing(database, db_url):
    with pytest.raises(NothingToRollback):
        rollback(database)  # nothing applied at all
    migrate(database, to="002_create_payments")
    before = full_state(database, db_url)
    with pytest.raises(NothingToRollback) as info:
        rollback(database, steps=3)
    assert (info.value.requested, info.value.applied) == (3, 2)
    with pytest.raises(UnknownMigration):
        rollback(database, to="004_orders_status_enum")  # known, but not applied
    assert full_state(database, db_url) == before


@pytest.fixture
def far_from_utc(monkeypatch):
    """A local time zone far from UTC, so local time cannot pass for UTC."""
    monkeypatch.setenv("TZ", "Asia/Kathmandu")  # UTC+05:45
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_status_lists_every_migration_with_its_utc_time(database, far_from_utc):
    started = dt.datetime.now(dt.timezone.utc)
    migrate(database, to="002_create_payments")
    finished = dt.datetime.now(dt.timezone.utc)

    states = status(database)
    assert [state.name for state in states] == MIGRATIONS
    assert [state.applied for state in states] == [True, True] + [False] * (len(MIGRATIONS) - 2)
    for state in states[:2]:
        assert state.applied_at.tzinfo is not None
        assert state.applied_at.utcoffset() == dt.timedelta(0)
        assert started - dt.timedelta(seconds=1) <= state.applied_at <= finished
    assert states[0].applied_at <= states[1].applied_at
    assert all(state.applied_at is None for state in states[2:])


# --- 4. a failing migration changes nothing ------------------------------------------------------


def test_a_failing_migration_is_undone_completely(database, db_url):
    migrate(database, to="003_create_webhook_logs")
    Seeder(database).seed()
    insert(database, "orders", id=new_id(), email="legacy@example.com", status="pending")
    before = full_state(database, db_url)

    with pytest.raises(MigrationFailed) as info:
        migrate(database)
    assert info.value.name == "004_orders_status_enum"
    assert info.value.direction == "migrate"
    assert "004_orders_status_enum" in str(info.value)

    assert full_state(database, db_url) == before
    legacy = """SELECT "status" FROM "orders" WHERE "email" = 'legacy@example.com'"""
    assert fetch(database, legacy) == [("pending",)]
    assert recorded_history(database) == MIGRATIONS[:3]
    if is_postgres(database):
        assert enum_types(database) == [("payments_status_enum",)]
    assert_no_rebuild_leftovers(database)
    assert_foreign_keys_enforced(database)

    database.execute_sql("""UPDATE "orders" SET "status" = 'waiting' WHERE "status" = 'pending'""")
    rows = read_rows(database)
    assert migrate(database) == MIGRATIONS[3:]
    assert_rows_kept(rows, read_rows(database))
    assert_foreign_keys_enforced(database)


# --- 5. SQLite: why foreign keys are switched off around a migration ----------------------------


def plain_router(database):
    """peewee-migrate's own Router: runs each migration in a transaction, pragmas untouched."""
    return peewee_migrate.Router(database, migrate_dir=MIGRATIONS_DIR, migrate_table=HISTORY_TABLE)


@sqlite_only
def test_004_refuses_to_upgrade_with_foreign_keys_on(database):
    migrate(database, to="003_create_webhook_logs")
    Seeder(database).seed()
    before = read_rows(database)
    assert fetch(database, "PRAGMA foreign_keys") == [(1,)]

    with pytest.raises(RuntimeError, match="cascade-delete"):
        plain_router(database).run()

    assert read_rows(database) == before
    assert recorded_history(database) == MIGRATIONS[:3]
    assert_no_rebuild_leftovers(database)


@sqlite_only
def test_004_refuses_to_roll_back_with_foreign_keys_on(database):
    migrate(database, to="004_orders_status_enum")
    Seeder(database).seed()
    before = read_rows(database)

    with pytest.raises(RuntimeError, match="cascade-delete"):
        plain_router(database).rollback()

    assert read_rows(database) == before
    assert recorded_history(database) == MIGRATIONS[:4]
    assert_no_rebuild_leftovers(database)


@sqlite_only
def test_without_the_guard_dropping_a_parent_table_deletes_its_children(database):
    """What a naive rebuild would do: DROP TABLE performs an implicit DELETE, which cascades."""
    migrate(database, to="003_create_webhook_logs")
    Seeder(database).seed()
    before = read_rows(database)
    count = 'SELECT count(*) FROM "{}" WHERE "orderId" IS NOT NULL'
    with database.atomic() as transaction:
        database.execute_sql('DROP TABLE "orders"')
        assert fetch(database, count.format("order_items")) == [(0,)]
        assert fetch(database, count.format("payments")) == [(0,)]
        transaction.rollback()
    assert read_rows(database) == before


@sqlite_only
def test_the_runner_refuses_to_run_inside_a_transaction(database):
    with database.atomic(), pytest.raises(MigrationFailed, match="inside a transaction"):
        migrate(database)
    assert recorded_history(database) == []
    assert data_tables(database) == set()
    assert fetch(database, "PRAGMA foreign_keys") == [(1,)]


@sqlite_only
def test_a_migration_that_leaves_orphans_is_undone(database, tmp_path):
    """With foreign keys off, a migration could orphan child rows: the runner's
    foreign_key_check refuses to commit it."""
    (tmp_path / "900_delete_orders.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        "    migrator.sql('DELETE FROM \"orders\"')\n"
    )
    migrate(database, to=MIGRATIONS[-1], migrations_dir=tmp_path)
    Seeder(database).seed()
    before = read_rows(database)

    with pytest.raises(MigrationFailed, match="foreign keys broken in order_items") as info:
        migrate(database, migrations_dir=tmp_path)
    assert info.value.name == "900_delete_orders"
    assert read_rows(database) == before
    assert recorded_history(database) == MIGRATIONS
    assert_foreign_keys_enforced(database)


# --- 6. the migrations folder ---------------------------------------------------------------------

#: A user's migration that changes nothing, both ways.
NOTHING_900 = (
    "def migrate(migrator, database, *, fake=False):\n    pass\n\n\n"
    "def rollback(migrator, database, *, fake=False):\n    pass\n"
)


def test_default_migrations_dir_is_the_shipped_folder():
    assert default_migrations_dir().resolve() == MIGRATIONS_DIR


def test_a_missing_migrations_folder_is_an_error_and_is_not_created(database, tmp_path):
    missing = tmp_path / "no" / "migrations"
    for call in (migrate, pending, status):
        with pytest.raises(MigrationsNotFound) as info:
            call(database, migrations_dir=missing)
        assert Path(info.value.path) == missing
    with pytest.raises(MigrationsNotFound):
        migrate(database, migrations_dir=str(missing))
    assert not missing.exists() and not missing.parent.exists()
    assert data_tables(database) == set()

    migrate(database, to="001_init_orders")
    with pytest.raises(MigrationsNotFound):
        rollback(database, migrations_dir=missing)
    assert recorded_history(database) == ["001_init_orders"]
    assert not missing.exists()


def test_an_empty_user_migrations_folder_adds_nothing(database, tmp_path):
    assert migrate(database, migrations_dir=tmp_path) == MIGRATIONS


def test_an_empty_shipped_migrations_folder_is_an_error(database, tmp_path, monkeypatch):
    monkeypatch.setenv("BITLOOT_SHIPPED_MIGRATIONS_DIR", str(tmp_path))
    with pytest.raises(MigrationsNotFound) as info:
        migrate(database)
    assert info.value.path == tmp_path
    assert data_tables(database) == set()


@sqlite_only
def test_rollback_with_an_applied_migration_file_missing_is_a_bitloot_error(database, tmp_path):
    (tmp_path / "900_nothing.py").write_text(NOTHING_900)
    migrate(database, migrations_dir=tmp_path)
    (tmp_path / "900_nothing.py").unlink()
    with pytest.raises(UnknownMigration):
        rollback(database, migrations_dir=tmp_path)
    assert recorded_history(database) == [*MIGRATIONS, "900_nothing"]


@sqlite_only
def test_status_keeps_a_migration_whose_file_is_gone_in_its_place(database, tmp_path):
    (tmp_path / "900_nothing.py").write_text(NOTHING_900)
    (tmp_path / "901_nothing.py").write_text(NOTHING_900)
    migrate(database, migrations_dir=tmp_path)
    (tmp_path / "900_nothing.py").unlink()
    assert [state.name for state in status(database, migrations_dir=tmp_path)] == [
        *MIGRATIONS, "900_nothing", "901_nothing"]
