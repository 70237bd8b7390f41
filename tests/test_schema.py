"""The live schema, read from the catalog, against docs/SCHEMA.md (bitloot_lite.schema).

Every database test runs on SQLite and on PostgreSQL. Besides comparing whole
snapshots, the tests assert the key facts directly and by behaviour (cascades,
the status constraint), so a mistake in EXPECTED cannot hide one in the migrations.
"""

import copy
import json
import re
from pathlib import Path

import peewee as pw
import pytest
from conftest import MIGRATIONS

import bitloot_lite
from bitloot_lite import target
from bitloot_lite.models import MODELS
from bitloot_lite.schema import compare, compare_models, snapshot
from bitloot_lite.target import EXPECTED_POSTGRES, expected

SCHEMA_MD = Path(__file__).resolve().parent.parent / "docs" / "SCHEMA.md"
STEPS = MIGRATIONS
TABLES_AFTER = {
    "001_init_orders": {"orders", "order_items"},
    "002_create_payments": {"orders", "order_items", "payments"},
    "003_create_webhook_logs": {"orders", "order_items", "payments", "webhook_logs"},
    "004_orders_status_enum": {"orders", "order_items", "payments", "webhook_logs"},
    "005_add_keys_reservation": {"orders", "order_items", "payments", "webhook_logs", "keys"},
    "006_unique_reservation_storage_ref": {"orders", "order_items", "payments", "webhook_logs",
                                           "keys"},
}
#: The migrations that create no table (so define no SQLite uuid default).
NO_NEW_TABLE = {"004_orders_status_enum", "006_unique_reservation_storage_ref"}
ORDER_STATUSES = ["created", "waiting", "confirming", "paid", "underpaid", "failed", "fulfilled"]
PAYMENT_STATUSES = ["created", "waiting", "confirmed", "finished", "underpaid", "failed"]


def _column(snap, table, name):
    return next(c for c in snap["tables"][table]["columns"] if c["name"] == name)


def _fks(snap):
    return {(table, tuple(fk["columns"])): fk
            for table, entry in snap["tables"].items() for fk in entry["foreign_keys"]}


def _sqlite_rebuild(db, table, old, new):
    """Change a SQLite table the documented way: new table, copy, drop, rename, reindex."""
    (sql,) = db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    assert sql.count(old) == 1, sql
    indexes = [row[0] for row in db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,))]
    db.execute_sql("PRAGMA foreign_keys = OFF")
    with db.atomic():
        db.execute_sql(sql.replace(f'"{table}"', '"_rebuild"', 1).replace(old, new))
        db.execute_sql(f'INSERT INTO "_rebuild" SELECT * FROM "{table}"')
        db.execute_sql(f'DROP TABLE "{table}"')
        db.execute_sql(f'ALTER TABLE "_rebuild" RENAME TO "{table}"')
        for statement in indexes:
            db.execute_sql(statement)
    db.execute_sql("PRAGMA foreign_keys = ON")


# -- after every migration ---------------------------------------------------------------


def test_migrated_schema_is_the_expected_one(migrated, backend):
    snap = snapshot(migrated)
    notes = []
    assert compare(snap, expected(backend), notes) == []
    assert notes == []
    assert json.loads(json.dumps(snap)) == snap  # plain data
    assert snapshot(migrated) == snap  # deterministic
    assert set(snap["tables"]) == TABLES_AFTER[STEPS[-1]]  # no migratehistory


def test_foreign_keys_cascade_as_documented(migrated, backend):
    fks = _fks(snapshot(migrated))
    postgres = backend == "postgres"
    rules = {(fk["ref_table"], tuple(fk["ref_columns"]), fk["on_delete"], fk["on_update"])
             for fk in fks.values()}
    assert rules == {("orders", ("id",), "CASCADE", "NO ACTION"),
                     ("orders", ("id",), "CASCADE", "CASCADE"),
                     ("order_items", ("id",), "CASCADE", "CASCADE")}
    item_fk = fks[("order_items", ("orderId",))]
    assert (item_fk["ref_table"], item_fk["on_delete"], item_fk["on_update"]) == (
        "orders", "CASCADE", "NO ACTION")
    assert item_fk["name"] == ("order_items_orderId_fkey" if postgres else None)
    payment_fk = fks[("payments", ("orderId",))]
    assert (payment_fk["name"], payment_fk["ref_table"], payment_fk["on_delete"],
            payment_fk["on_update"]) == ("FK_af929a5f2a400fdb6913b4967e1", "orders",
                                         "CASCADE", "CASCADE")
    key_fk = fks[("keys", ("orderItemId",))]
    assert (key_fk["name"], key_fk["ref_table"], key_fk["on_delete"], key_fk["on_update"]) == (
        "FK_keys_orderItemId", "order_items", "CASCADE", "CASCADE")
    assert ("webhook_logs", ("orderId",)) not in fks  # logs outlive orders


def test_status_is_an_enum_on_postgres_and_checked_on_sqlite(migrated, backend):
    snap = snapshot(migrated)
    orders = snap["tables"]["orders"]
    if backend == "postgres":
        assert snap["enums"] == {"orders_status_enum": ORDER_STATUSES,
                                 "payments_status_enum": PAYMENT_STATUSES}
        assert _column(snap, "orders", "status")["type"] == "orders_status_enum"
        assert _column(snap, "payments", "status")["type"] == "payments_status_enum"
        assert orders["comments"] == {
            "kinguinReservationId": "Kinguin reservation ID for tracking fulfillment status"}
        assert orders["primary_key"] == {"name": "orders_pkey", "columns": ["id"]}
        assert snap["tables"]["webhook_logs"]["unique"] == [{
            "name": "UQ_webhook_idempotency",
            "columns": ["externalId", "webhookType", "processed"]}]
    else:
        assert snap["enums"] == {}
        labels = ", ".join(f"'{s}'" for s in ORDER_STATUSES)
        assert orders["checks"] == [
            {"name": "CHK_orders_status", "expression": f'"status" IN ({labels})'}]
        labels = ", ".join(f"'{s}'" for s in PAYMENT_STATUSES)
        assert {"name": "CHK_payments_status", "expression": f'"status" IN ({labels})'} in (
            snap["tables"]["payments"]["checks"])
        idempotency = [index for index in snap["tables"]["webhook_logs"]["indexes"]
                       if index["name"] == "UQ_webhook_idempotency"]
        assert idempotency == [{"name": "UQ_webhook_idempotency", "unique": True,
                                "columns": ["externalId", "webhookType", "processed"]}]
    with pytest.raises((pw.IntegrityError, pw.DataError)), migrated.atomic():
        migrated.execute_sql("INSERT INTO orders (email, status) VALUES ('a@b.c', 'bogus')")


def test_cascades_behave_as_documented(migrated):
    db, p = migrated, migrated.param

    def insert(sql, *params):
        db.execute_sql(sql, params)

    def count(table):
        return db.execute_sql(f'SELECT count(*) FROM "{table}"').fetchone()[0]

    insert("INSERT INTO orders (email) VALUES ('a@b.c')")
    (order_id,) = db.execute_sql("SELECT id FROM orders").fetchone()
    insert(f'INSERT INTO order_items ("orderId", "productId") VALUES ({p}, {p})', order_id, "x")
    (item_id,) = db.execute_sql("SELECT id FROM order_items").fetchone()
    insert(f'INSERT INTO keys ("orderItemId") VALUES ({p})', item_id)
    insert(f'INSERT INTO payments ("orderId", "externalId") VALUES ({p}, {p})', order_id, "np1")
    insert(f'INSERT INTO webhook_logs ("externalId", "webhookType", payload, "orderId") '
           f"VALUES ({p}, {p}, {p}, {p})", "np1", "payment", "{}", order_id)
    db.execute_sql("DELETE FROM orders")
    assert [count(t) for t in ("order_items", "keys", "payments", "webhook_logs")] == [0, 0, 0, 1]


# -- compare() notices drift ---------------------------------------------------------------

LABELS = ", ".join(ORDER_STATUSES)
IN_LIST = '"status" IN (' + ", ".join(f"'{s}'" for s in ORDER_STATUSES)
#: drift -> backend -> (the change: SQL, or a SQLite table rebuild (table, old, new);
#: what compare() must then report, and nothing else).
DRIFTS = {
    "dropped index": {
        "postgres": ('DROP INDEX "IDX_payments_status"',
                     "index IDX_payments_status missing on payments"),
        "sqlite": ('DROP INDEX "IDX_payments_status"',
                   "index IDX_payments_status missing on payments")},
    "added column": {
        "postgres": ('ALTER TABLE "webhook_logs" ADD COLUMN "extra" text',
                     "column webhook_logs.extra not expected"),
        "sqlite": ('ALTER TABLE "webhook_logs" ADD COLUMN "extra" TEXT',
                   "column webhook_logs.extra not expected")},
    "nullability": {
        "postgres": ('ALTER TABLE "keys" ALTER COLUMN "orderItemId" DROP NOT NULL',
                     "keys.orderItemId: nullable, expected NOT NULL"),
        "sqlite": (("keys", '"orderItemId" TEXT NOT NULL', '"orderItemId" TEXT'),
                   "keys.orderItemId: nullable, expected NOT NULL")},
    "foreign key rule": {
        "postgres": ('ALTER TABLE "keys" DROP CONSTRAINT "FK_keys_orderItemId", '
                     'ADD CONSTRAINT "FK_keys_orderItemId" FOREIGN KEY ("orderItemId") '
                     'REFERENCES "order_items" ("id") ON DELETE SET NULL ON UPDATE CASCADE',
                     "foreign key FK_keys_orderItemId on keys: ON DELETE SET NULL, "
                     "expected CASCADE"),
        "sqlite": (("keys", "ON DELETE CASCADE ON UPDATE CASCADE",
                    "ON DELETE SET NULL ON UPDATE CASCADE"),
                   "foreign key FK_keys_orderItemId on keys: ON DELETE SET NULL, "
                   "expected CASCADE")},
    "unnamed foreign key rule": {
        "postgres": ('ALTER TABLE "order_items" DROP CONSTRAINT "order_items_orderId_fkey", '
                     'ADD CONSTRAINT "order_items_orderId_fkey" FOREIGN KEY ("orderId") '
                     'REFERENCES "orders" ("id") ON DELETE RESTRICT',
                     "foreign key order_items_orderId_fkey on order_items: "
                     "ON DELETE RESTRICT, expected CASCADE"),
        "sqlite": (("order_items", "ON DELETE CASCADE", "ON DELETE RESTRICT"),
                   "foreign key (orderId) on order_items: ON DELETE RESTRICT, expected CASCADE")},
    "column type": {
        "postgres": ('ALTER TABLE "orders" ALTER COLUMN "email" TYPE varchar(255)',
                     "orders.email: type character varying(255), "
                     "expected character varying(320)"),
        "sqlite": (("orders", '"email" VARCHAR(320)', '"email" VARCHAR(255)'),
                   "orders.email: type VARCHAR(255), expected VARCHAR(320)")},
    "status values": {
        "postgres": ("ALTER TYPE \"orders_status_enum\" ADD VALUE 'refunded'",
                     f"enum orders_status_enum: labels ({LABELS}, refunded), "
                     f"expected ({LABELS})"),
        "sqlite": (("orders", "'fulfilled'", "'fulfilled', 'refunded'"),
                   f"check CHK_orders_status on orders: expression {IN_LIST}, 'refunded'), "
                   f"expected {IN_LIST})")},
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_compare_reports_drift(migrated, backend, drift):
    change, message = DRIFTS[drift][backend]
    if isinstance(change, tuple):
        _sqlite_rebuild(migrated, *change)
    else:
        migrated.execute_sql(change)
    assert compare(snapshot(migrated), expected(backend)) == [message]


def test_dropped_check_and_comment_are_reported(migrated, backend):
    if backend == "postgres":
        migrated.execute_sql('COMMENT ON COLUMN "orders"."kinguinReservationId" IS NULL')
        migrated.execute_sql('COMMENT ON COLUMN "keys"."storageRef" IS \'where\'')
        notes = []
        assert compare(snapshot(migrated), expected(backend), notes) == [
            "orders.kinguinReservationId: comment none, expected "
            "'Kinguin reservation ID for tracking fulfillment status'"]
        assert notes == ["comment on keys.storageRef not expected: 'where' "
                         "(TypeORM comments every keys column)"]
    else:
        _sqlite_rebuild(migrated, "webhook_logs", ' CHECK (json_valid("payload"))', "")
        assert compare(snapshot(migrated), expected(backend)) == [
            'check (json_valid("payload")) missing on webhook_logs']


@pytest.mark.parametrize("backend", ["postgres"])
def test_typeorm_extras_are_notes_not_differences(migrated):
    migrated.execute_sql('ALTER TABLE "payments" ADD CONSTRAINT '
                         '"UQ_c9ca05ceb7cc5eae113c2eb57cd" UNIQUE ("externalId")')
    migrated.execute_sql('CREATE TABLE "migrations" ("id" SERIAL PRIMARY KEY, '
                         '"timestamp" bigint NOT NULL, "name" varchar NOT NULL)')
    notes = []
    assert compare(snapshot(migrated), expected("postgres"), notes) == []
    assert notes == [
        "table migrations not expected (TypeORM's migration history table)",
        "unique constraint UQ_c9ca05ceb7cc5eae113c2eb57cd on payments not expected "
        "(TypeORM's duplicate of the unique index IDX_payments_externalId)",
    ]
    migrated.execute_sql('ALTER TABLE "orders" ADD CONSTRAINT "UQ_other" UNIQUE ("email")')
    assert compare(snapshot(migrated), expected("postgres")) == [
        "unique constraint UQ_other on orders not expected"]


def test_compare_on_plain_data():
    want = expected("postgres")
    have = copy.deepcopy(want)
    index = next(i for i in have["tables"]["payments"]["indexes"]
                 if i["name"] == "IDX_payments_status")
    index["name"] = "IDX_renamed"
    have["tables"]["orders"]["primary_key"] = None
    del have["tables"]["keys"]
    have["enums"]["extra_enum"] = ["a"]
    have["tables"]["orders"]["columns"].reverse()
    assert compare(have, want) == [
        "enum extra_enum not expected",
        "table keys missing",
        "orders: column order (kinguinReservationId, updatedAt, createdAt, total, status, email, "
        "id), expected (id, email, status, total, createdAt, updatedAt, kinguinReservationId)",
        "orders: primary key none, expected orders_pkey (id)",
        "index IDX_payments_status on payments: name IDX_renamed, expected IDX_payments_status",
    ]
    assert compare(expected("sqlite"), want) == ["backend sqlite, expected postgres"]
    assert compare(want, expected("postgres")) == []
    want["tables"]["orders"]["columns"].clear()
    assert expected("postgres") == EXPECTED_POSTGRES  # a copy: EXPECTED is untouched
    with pytest.raises(bitloot_lite.ConfigurationError):
        expected("mysql")


def test_sqlite_constraint_names_are_parsed_from_the_create_text():
    db = pw.SqliteDatabase(":memory:")
    db.execute_sql("""CREATE TABLE "p" ("a b" TEXT, "c" INT, PRIMARY KEY ("a b", "c"))""")
    db.execute_sql("""CREATE TABLE [t, x] (
        -- a comment, with (parentheses
        "id" INTEGER CONSTRAINT "pk t" PRIMARY KEY /* and, another */,
        `v` TEXT DEFAULT 'a,b' CONSTRAINT chk_v CHECK (v IN ('a,b', 'c')) NOT NULL,
        w TEXT CONSTRAINT "fk w" REFERENCES "t, x" ("v") ON DELETE SET NULL,
        z TEXT, y INT,
        FOREIGN KEY (z, y) REFERENCES "p" ON UPDATE RESTRICT,
        CONSTRAINT uq_vw UNIQUE (v, w), UNIQUE (z),
        CHECK (y > 0))""")
    db.execute_sql("CREATE TABLE q AS SELECT 1 AS one")
    snap = snapshot(db)
    table = snap["tables"]["t, x"]
    assert table["primary_key"] == {"name": "pk t", "columns": ["id"]}
    assert snap["tables"]["p"]["primary_key"] == {"name": None, "columns": ["a b", "c"]}
    assert table["checks"] == [{"name": None, "expression": "y > 0"},
                               {"name": "chk_v", "expression": "v IN ('a,b', 'c')"}]
    assert table["unique"] == [{"name": "uq_vw", "columns": ["v", "w"]},
                               {"name": None, "columns": ["z"]}]
    assert [(fk["name"], fk["columns"], fk["ref_table"], fk["ref_columns"], fk["on_delete"],
             fk["on_update"]) for fk in table["foreign_keys"]] == [
        ("fk w", ["w"], "t, x", ["v"], "SET NULL", "NO ACTION"),
        (None, ["z", "y"], "p", ["a b", "c"], "NO ACTION", "RESTRICT")]
    assert _column(snap, "t, x", "v") == {"name": "v", "type": "TEXT", "nullable": False,
                                          "default": "'a,b'"}
    assert snap["tables"]["q"]["columns"] == [
        {"name": "one", "type": "", "nullable": True, "default": None}]
    db.close()


# -- the intermediate steps ----------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_each_step_has_its_tables_and_rolls_back_to_them(database, backend, step):
    bitloot_lite.migrate(database, to=step)
    snap = snapshot(database)
    assert set(snap["tables"]) == TABLES_AFTER[step]
    status = _column(snap, "orders", "status")
    reservation = [c for c in snap["tables"]["orders"]["columns"]
                   if c["name"] == "kinguinReservationId"]
    assert bool(reservation) == (STEPS.index(step) >= STEPS.index("005_add_keys_reservation"))
    enum_applied = STEPS.index(step) >= STEPS.index("004_orders_status_enum")
    if backend == "postgres":
        assert status["type"] == ("orders_status_enum" if enum_applied
                                  else "character varying(20)")
        assert ("orders_status_enum" in snap["enums"]) == enum_applied
    else:
        assert status["type"] == "VARCHAR(20)"
        checks = [c["name"] for c in snap["tables"]["orders"]["checks"]]
        assert checks == (["CHK_orders_status"] if enum_applied else [])
    # Going all the way up and back down to this step gives the very same schema.
    bitloot_lite.migrate(database)
    bitloot_lite.rollback(database, to=step)
    assert compare(snapshot(database), snap) == []
    assert snapshot(database) == snap


def test_rolling_everything_back_leaves_no_table(migrated):
    bitloot_lite.rollback(migrated, steps=len(STEPS))
    assert {k: v for k, v in snapshot(migrated).items() if k != "backend"} == {
        "enums": {}, "tables": {}}


# -- the models --------------------------------------------------------------------------


def test_models_match_the_migrated_tables(migrated):
    assert compare_models(migrated, MODELS) == []
    migrated.execute_sql('ALTER TABLE "payments" ADD COLUMN "note" TEXT')
    assert compare_models(migrated, MODELS) == ["column payments.note not declared by Payment"]


def test_models_ahead_of_the_database_are_reported(database):
    bitloot_lite.migrate(database, to="004_orders_status_enum")
    assert compare_models(database, MODELS) == [
        "column orders.kinguinReservationId of Order.kinguin_reservation_id missing",
        "table keys of Key missing",
    ]


# -- EXPECTED against the document ---------------------------------------------------------


def _doc_sections():
    """{section heading's first word: (markdown table rows as dicts, the section's text)}."""
    sections, name = {}, None
    for line in SCHEMA_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            name = line[3:].split()[0]
            sections[name] = ([], [])
            header = None
        elif name is None:
            continue
        elif line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: ") and header[0] == "column":
                sections[name][0].append(dict(zip(header, cells, strict=True)))
        else:
            header = None
        sections[name][1].append(line)
    return {key: (rows, "\n".join(text)) for key, (rows, text) in sections.items() if rows}


def _doc_type(cell):
    enum = re.search(r"enum `(\w+)`", cell)
    if enum:
        return enum.group(1)
    word = re.match(r"\w+(\(\d+(,\d+)?\))?", cell).group()
    if word == "timestamp":
        return "timestamp without time zone"
    return word.replace("varchar", "character varying")


def test_expected_postgres_agrees_with_schema_md():
    sections = _doc_sections()
    tables = EXPECTED_POSTGRES["tables"]
    assert set(sections) == set(tables)
    for table, (rows, text) in sections.items():
        columns = tables[table]["columns"]
        # A column the document marks "(step N)" was added by ALTER TABLE: it comes last.
        later = [row for row in rows if re.search(r"\(step \d\)", row["type"])]
        doc_order = [row["column"] for row in rows if row not in later]
        assert [c["name"] for c in columns] == doc_order + [row["column"] for row in later]
        expected_columns = {c["name"]: c for c in columns}
        for row in rows:
            column = expected_columns[row["column"]]
            where = f"{table}.{row['column']}"
            assert row["null"] in ("yes", "no"), where
            assert column["nullable"] == (row["null"] == "yes"), where
            assert column["type"] == _doc_type(row["type"]), where
            default = column["default"] and column["default"].split("::")[0]
            assert default == (row["default"] or None), where
            labels = re.findall(r"'(\w+)'", row["type"])
            if labels:
                assert EXPECTED_POSTGRES["enums"][column["type"]] == labels, where
        documented_fks = [(None, row["column"], row["type"]) for row in rows
                          if "FK ->" in row["type"]]
        documented_fks += re.findall(r"Constraint `(\w+)`: (\w+) (-> .*)", text)
        assert len(documented_fks) == len(tables[table]["foreign_keys"]), table
        for name, column, spec in documented_fks:
            ref_table, ref_column, rules = re.search(r"-> (\w+)\.(\w+)(.*)", spec).groups()
            delete = re.search(r"ON DELETE (CASCADE|SET NULL|RESTRICT)", rules)
            update = re.search(r"ON UPDATE (CASCADE|SET NULL|RESTRICT)", rules)
            assert {"columns": [column], "ref_table": ref_table, "ref_columns": [ref_column],
                    "on_delete": delete.group(1) if delete else "NO ACTION",
                    "on_update": update.group(1) if update else "NO ACTION"} in [
                {key: value for key, value in fk.items() if key != "name"}
                for fk in tables[table]["foreign_keys"] if name in (None, fk["name"])], column
        names = {index["name"]: index["columns"] for index in tables[table]["indexes"]}
        names.update({u["name"]: u["columns"] for u in tables[table]["unique"]})
        documented_indexes = re.findall(r"`((?:IDX|UQ)_\w+)`(?:\s*\(([^)]*)\))?", text)
        assert {name for name, _ in documented_indexes} == set(names), table
        for name, columns_text in documented_indexes:
            documented = [c for c in columns_text.split(", ") if c and c != "unique"
                          and not c.startswith("step")]
            if not documented and name.startswith(f"IDX_{table}_"):  # named after its columns
                documented = name[len(f"IDX_{table}_"):].split("_")
            assert names.get(name) == documented, name
        comment = re.search(r"Column comment on (\w+): `([^`]*)`", text)
        assert tables[table]["comments"] == ({comment.group(1): comment.group(2)}
                                             if comment else {})


@pytest.mark.parametrize("migration", [s for s in STEPS if s not in NO_NEW_TABLE])
def test_sqlite_uuid_default_is_the_migrations_one(migration):
    source = Path(__file__).resolve().parent.parent / "migrations" / f"{migration}.py"
    scope = {}
    exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), scope)
    assert f"({target.SQLITE_UUID_DEFAULT})" == scope["SQLITE_UUID"]
