"""004_orders_status_enum: orders.status becomes an enum.

Upstream: UpdateOrdersStatusEnum1730000000003 (one-way there; reversible here).
On PostgreSQL the column becomes the enum type orders_status_enum; on SQLite,
which has no enums, it gains a CHECK constraint, and since SQLite cannot add a
CHECK to an existing table, the orders table is rebuilt. A row whose status is
not one of the values makes the migration fail and changes nothing.
"""

import peewee as pw
from peewee_migrate import Migrator

UPSTREAM = "UpdateOrdersStatusEnum1730000000003"

STATUSES = ("created", "waiting", "confirming", "paid", "underpaid", "failed", "fulfilled")
_STATUS_LIST = ", ".join(f"'{s}'" for s in STATUSES)

POSTGRES_UP = [
    f'CREATE TYPE "orders_status_enum" AS ENUM ({_STATUS_LIST})',
    'ALTER TABLE "orders" ALTER COLUMN "status" DROP DEFAULT',
    'ALTER TABLE "orders" ALTER COLUMN "status" TYPE "orders_status_enum" '
    'USING "status"::"orders_status_enum"',
    """ALTER TABLE "orders" ALTER COLUMN "status" SET DEFAULT 'created'""",
]

POSTGRES_DOWN = [
    'ALTER TABLE "orders" ALTER COLUMN "status" DROP DEFAULT',
    'ALTER TABLE "orders" ALTER COLUMN "status" TYPE varchar(20) USING "status"::text',
    """ALTER TABLE "orders" ALTER COLUMN "status" SET DEFAULT 'created'""",
    'DROP TYPE "orders_status_enum"',
]

SQLITE_PLAIN = """"status" VARCHAR(20) NOT NULL DEFAULT 'created'"""
SQLITE_CHECKED = (
    SQLITE_PLAIN
    + f""" CONSTRAINT "CHK_orders_status" CHECK ("status" IN ({_STATUS_LIST}))"""
)


def sqlite_rewrite_column(database, table, old, new):
    """Rebuild ``table`` with the column definition ``old`` replaced by ``new``.

    SQLite's documented procedure for changes ALTER TABLE cannot make: create
    the new table from the stored CREATE TABLE text, copy every row, drop the
    old table, rename the new one, recreate the indexes. It starts from the
    table as it is now, so columns added by later migrations survive.
    Dropping a parent table while foreign keys are enforced would delete every
    child row (ON DELETE CASCADE), so this refuses to run unless the runner has
    turned them off; the runner checks the keys again before committing.
    """
    (enforced,) = database.execute_sql("PRAGMA foreign_keys").fetchone()
    if enforced:
        raise RuntimeError(
            f"rebuilding {table} with foreign keys enforced would cascade-delete "
            "child rows; run this migration through bitloot-lite"
        )
    (create,) = database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if create.count(old) != 1:
        raise RuntimeError(f"{table} does not have the column definition {old!r}")
    indexes = [
        sql
        for (sql,) in database.execute_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        )
    ]
    head = f'CREATE TABLE "{table}"'
    if not create.startswith(head):
        raise RuntimeError(f"unexpected CREATE TABLE text for {table}")
    temporary = f"_{table}_rebuild"
    database.execute_sql(f'CREATE TABLE "{temporary}"' + create[len(head):].replace(old, new))
    database.execute_sql(f'INSERT INTO "{temporary}" SELECT * FROM "{table}"')
    database.execute_sql(f'DROP TABLE "{table}"')
    database.execute_sql(f'ALTER TABLE "{temporary}" RENAME TO "{table}"')
    for sql in indexes:
        database.execute_sql(sql)


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    order = migrator.orm["orders"]
    with migrator.fake():
        migrator.change_fields(
            order,
            status=pw.CharField(
                max_length=20, default="created", choices=[(s, s) for s in STATUSES]
            ),
        )
    if isinstance(database, pw.PostgresqlDatabase):
        for statement in POSTGRES_UP:
            migrator.sql(statement)
    else:
        migrator.run(sqlite_rewrite_column, database, "orders", SQLITE_PLAIN, SQLITE_CHECKED)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    order = migrator.orm["orders"]
    if isinstance(database, pw.PostgresqlDatabase):
        for statement in POSTGRES_DOWN:
            migrator.sql(statement)
    else:
        migrator.run(sqlite_rewrite_column, database, "orders", SQLITE_CHECKED, SQLITE_PLAIN)
    with migrator.fake():
        migrator.change_fields(order, status=pw.CharField(max_length=20, default="created"))
