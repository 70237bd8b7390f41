"""The target schema (docs/SCHEMA.md) as data, in the shape of ``schema.snapshot``.

PostgreSQL's is transcribed from SCHEMA.md; SQLite's is derived from it with
the differences the migrations make there (TEXT uuids and JSON,
CHECKs in place of enums).
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ConfigurationError
from .schema import Snapshot, finish, new_table

#: The default of a uuid id on SQLite (gen_random_uuid()'s stand-in), as SQLite reports it:
#: the migrations' DEFAULT (...) without its outer parentheses.
SQLITE_UUID_DEFAULT = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))"
)


_TS = "timestamp without time zone"
_STAMPS = [("createdAt", _TS, False, "now()"), ("updatedAt", _TS, False, "now()")]
_ID = ("id", "uuid", False, "gen_random_uuid()")

#: PostgreSQL columns after every migration, from docs/SCHEMA.md, in physical order
#: (kinguinReservationId, added by ALTER TABLE in step 5, comes last):
#: (name, type, nullable, default).
_COLUMNS = {
    "keys": [_ID, ("orderItemId", "uuid", False, None), ("storageRef", "text", True, None),
             ("viewedAt", _TS, True, None), *_STAMPS],
    "order_items": [_ID, ("orderId", "uuid", True, None),
                    ("productId", "character varying(100)", False, None),
                    ("quantity", "integer", False, "1"), ("signedUrl", "text", True, None),
                    *_STAMPS],
    "orders": [_ID, ("email", "character varying(320)", False, None),
               ("status", "orders_status_enum", False, "'created'::orders_status_enum"),
               ("total", "numeric(20,8)", False, "0"), *_STAMPS,
               ("kinguinReservationId", "character varying(255)", True, None)],
    "payments": [_ID, ("orderId", "uuid", False, None),
                 ("externalId", "character varying", False, None),
                 ("provider", "character varying(50)", False, "'nowpayments'::character varying"),
                 ("status", "payments_status_enum", False, "'created'::payments_status_enum"),
                 ("rawPayload", "jsonb", True, None), ("priceAmount", "numeric(20,8)", True, None),
                 ("priceCurrency", "character varying(10)", True, None),
                 ("payAmount", "numeric(20,8)", True, None),
                 ("payCurrency", "character varying(10)", True, None),
                 ("confirmations", "integer", False, "0"), *_STAMPS],
    "webhook_logs": [
        _ID, ("externalId", "character varying(255)", False, None),
        ("webhookType", "character varying(50)", False, None), ("payload", "jsonb", False, None),
        ("signature", "text", True, None), ("signatureValid", "boolean", False, "false"),
        ("processed", "boolean", False, "false"), ("orderId", "uuid", True, None),
        ("paymentId", "character varying(255)", True, None), ("result", "jsonb", True, None),
        ("paymentStatus", "character varying(50)", True, None), ("error", "text", True, None),
        ("sourceIp", "character varying(45)", True, None),
        ("attemptCount", "integer", False, "1"), *_STAMPS],
}
#: table -> (PostgreSQL name, SQLite name) of its primary key, on "id".
_PRIMARY_KEYS = {"orders": ("orders_pkey", None), "order_items": ("order_items_pkey", None),
                 "payments": ("PK_197ab7af18c93fbb0c9b28b4a59",) * 2,
                 "webhook_logs": ("PK_c41f6cdf59cdfe3704807650896",) * 2,
                 "keys": ("PK_e63d5d51e0192635ab79aa49644",) * 2}
#: (table, PostgreSQL name, SQLite name, column, referenced table (its id), ON DELETE, ON UPDATE)
_FOREIGN_KEYS = [
    ("order_items", "order_items_orderId_fkey", None, "orderId", "orders", "CASCADE", "NO ACTION"),
    ("payments", *("FK_af929a5f2a400fdb6913b4967e1",) * 2, "orderId", "orders", "CASCADE",
     "CASCADE"),
    ("keys", *("FK_keys_orderItemId",) * 2, "orderItemId", "order_items", "CASCADE", "CASCADE"),
]
#: table -> the columns of each index, each named IDX_<table>_<its columns joined by "_">.
_INDEXES = {
    "orders": ["createdAt", "kinguinReservationId"],
    "order_items": ["orderId"],
    "keys": ["orderItemId", "createdAt"],
    "payments": ["externalId", "orderId", "status", "createdAt", "orderId status"],
    "webhook_logs": ["externalId", "externalId webhookType createdAt", "orderId createdAt",
                     "webhookType processed createdAt"],
}
_UNIQUE_INDEXES = {"IDX_payments_externalId"}
#: Beyond the original schema (step 6): one order per reservation, one key per storage
#: reference. table -> (index name, column); unique indexes on both backends.
_ONE_PER_ROW = {"orders": ("UQ_orders_kinguinReservationId", "kinguinReservationId"),
                "keys": ("UQ_keys_storageRef", "storageRef")}
#: A UNIQUE constraint on PostgreSQL, a unique index of the same name on SQLite.
_IDEMPOTENCY = {"name": "UQ_webhook_idempotency",
                "columns": ["externalId", "webhookType", "processed"]}
ENUMS = {
    "orders_status_enum": ["created", "waiting", "confirming", "paid", "underpaid", "failed",
                           "fulfilled"],
    "payments_status_enum": ["created", "waiting", "confirmed", "finished", "underpaid", "failed"],
}
_COMMENTS = {("orders", "kinguinReservationId"):
             "Kinguin reservation ID for tracking fulfillment status"}


def _one_of(enum: str) -> str:
    return '"status" IN (' + ", ".join(f"'{label}'" for label in ENUMS[enum]) + ")"


#: SQLite's CHECKs, standing in for the enums and jsonb: (table, name, expression).
_SQLITE_CHECKS = [
    ("orders", "CHK_orders_status", _one_of("orders_status_enum")),
    ("payments", "CHK_payments_status", _one_of("payments_status_enum")),
    ("payments", None, '"rawPayload" IS NULL OR json_valid("rawPayload")'),
    ("webhook_logs", None, 'json_valid("payload")'),
    ("webhook_logs", None, '"result" IS NULL OR json_valid("result")'),
]
_SQLITE_TYPES = {"uuid": "TEXT", _TS: "DATETIME", "jsonb": "TEXT",
                 "orders_status_enum": "VARCHAR(20)", "payments_status_enum": "VARCHAR(20)"}
_SQLITE_DEFAULTS = {"gen_random_uuid()": SQLITE_UUID_DEFAULT, "now()": "CURRENT_TIMESTAMP",
                    "false": "0"}


def _sqlite_column(name: str, type_: str, nullable: bool, default: str | None) -> dict[str, Any]:
    """The SQLite column the migrations make for a PostgreSQL column of SCHEMA.md."""
    sqlite_type = _SQLITE_TYPES.get(type_, type_.replace("character varying", "varchar").upper())
    if default is not None:
        default = _SQLITE_DEFAULTS.get(default, default.split("::")[0])  # 'x'::type -> 'x'
    return {"name": name, "type": sqlite_type, "nullable": nullable, "default": default}


def _build(backend: str) -> Snapshot:
    postgres = backend == "postgres"
    tables: dict[str, dict[str, Any]] = {}
    for table, columns in _COLUMNS.items():
        tables[table] = entry = new_table([
            {"name": name, "type": type_, "nullable": nullable, "default": default}
            if postgres else _sqlite_column(name, type_, nullable, default)
            for name, type_, nullable, default in columns])
        entry["primary_key"] = {"name": _PRIMARY_KEYS[table][not postgres], "columns": ["id"]}
        for columns in _INDEXES[table]:
            name = f"IDX_{table}_{columns.replace(' ', '_')}"
            entry["indexes"].append({"name": name, "columns": columns.split(),
                                     "unique": name in _UNIQUE_INDEXES})
        if table in _ONE_PER_ROW:
            name, column = _ONE_PER_ROW[table]
            entry["indexes"].append({"name": name, "columns": [column], "unique": True})
    for table, pg_name, sqlite_name, column, ref, on_delete, on_update in _FOREIGN_KEYS:
        tables[table]["foreign_keys"].append({
            "name": pg_name if postgres else sqlite_name, "columns": [column], "ref_table": ref,
            "ref_columns": ["id"], "on_delete": on_delete, "on_update": on_update})
    if postgres:
        tables["webhook_logs"]["unique"].append(dict(_IDEMPOTENCY))
        for (table, column), text in _COMMENTS.items():
            tables[table]["comments"][column] = text
    else:
        tables["webhook_logs"]["indexes"].append(dict(_IDEMPOTENCY, unique=True))
        for table, name, expression in _SQLITE_CHECKS:
            tables[table]["checks"].append({"name": name, "expression": expression})
    return finish(backend, tables, copy.deepcopy(ENUMS) if postgres else {})


EXPECTED_POSTGRES = _build("postgres")
EXPECTED_SQLITE = _build("sqlite")


#: How many migrations there are; ``expected(backend, step)`` takes 0..STEPS.
STEPS = 6
#: step -> the tables that migration creates (and the enum it creates on PostgreSQL).
_TABLES_OF_STEP = {1: ("orders", "order_items"), 2: ("payments",), 3: ("webhook_logs",),
                   5: ("keys",)}
_ENUM_OF_STEP = {2: "payments_status_enum", 4: "orders_status_enum"}


def expected(backend: str, step: int | None = None) -> Snapshot:
    """A fresh copy of the schema on ``backend`` ("postgres"/"sqlite") after migration
    number ``step`` (0..6; None: all of them).

    Derived from the final schema by undoing, newest first, what each later step does:
    6 adds the unique indexes on orders.kinguinReservationId and keys.storageRef;
    5 adds keys and orders.kinguinReservationId (its index, its comment); 4 makes
    orders.status an enum (a CHECK on SQLite); 3, 2, 1 create their tables (2 also the
    payments_status_enum type).
    """
    if backend not in ("postgres", "sqlite"):
        raise ConfigurationError(f"unknown backend {backend!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)
                             or not 0 <= step <= STEPS):
        raise ConfigurationError(f"unknown migration step {step!r}: expected 0..{STEPS}")
    schema = copy.deepcopy(EXPECTED_POSTGRES if backend == "postgres" else EXPECTED_SQLITE)
    step = STEPS if step is None else step
    tables, enums = schema["tables"], schema["enums"]
    if step < 6:
        for table, (name, _column) in _ONE_PER_ROW.items():
            tables[table]["indexes"] = [i for i in tables[table]["indexes"] if i["name"] != name]
    if step < 5:
        orders = tables["orders"]
        orders["columns"] = [c for c in orders["columns"] if c["name"] != "kinguinReservationId"]
        orders["indexes"] = [i for i in orders["indexes"]
                             if i["name"] != "IDX_orders_kinguinReservationId"]
        orders["comments"].pop("kinguinReservationId", None)
    if step < 4:
        orders = tables["orders"]
        status = next(c for c in orders["columns"] if c["name"] == "status")
        if backend == "postgres":
            status.update(type="character varying(20)",
                          default="'created'::character varying")
        orders["checks"] = [c for c in orders["checks"] if c["name"] != "CHK_orders_status"]
    for later in range(step + 1, STEPS + 1):
        for table in _TABLES_OF_STEP.get(later, ()):
            del tables[table]
        enums.pop(_ENUM_OF_STEP.get(later), None)
    return schema


# --------------------------------------------------------------------------- the Phase-1 variant
# Upstream's Phase-1 InitOrders1710000000000 (commit 0be20d1) made order_items
# WITHOUT quantity; upstream added it later (AddOrderItemPriceQuantity1736450000000)
# as integer NOT NULL DEFAULT 1. A real database of that time has this shape; its
# adoption adds the column (adopting.adoption_fixups), last in the table as
# upstream's own later migration put it.

#: (table, column) a Phase-1 database lacks, and the statement that adds it, per backend.
PHASE1_MISSING_COLUMN = ("order_items", "quantity")
PHASE1_ADD_COLUMN = {
    "postgres": 'ALTER TABLE "order_items" ADD COLUMN "quantity" integer NOT NULL DEFAULT 1',
    "sqlite": 'ALTER TABLE "order_items" ADD COLUMN "quantity" INTEGER NOT NULL DEFAULT 1',
}


def expected_phase1(backend: str, step: int) -> Snapshot:
    """The schema after migration number ``step`` (1..STEPS) as upstream's Phase-1
    migrations made it: ``expected(backend, step)`` without order_items.quantity."""
    if step is None or isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ConfigurationError(f"no Phase-1 variant of migration step {step!r}")
    schema = expected(backend, step)
    table, column = PHASE1_MISSING_COLUMN
    entry = schema["tables"][table]
    entry["columns"] = [c for c in entry["columns"] if c["name"] != column]
    return schema
