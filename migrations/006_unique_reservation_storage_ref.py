"""006_unique_reservation_storage_ref: one order per reservation, one key per storage reference.

Beyond the original schema (docs/SCHEMA.md, "Beyond the original"): upstream
lets two orders hold one Kinguin reservation (two workers attaching at once do
exactly that: a NOT EXISTS guard cannot see the other's uncommitted write), and
two key rows hold one storage reference (one encrypted key sold twice). Unique
indexes make the database refuse both, whoever writes: the original
application writes these tables too. NULLs stay allowed, as many as there are:
a unique index treats NULLs as distinct on both backends.

On a database that already holds duplicates the migration refuses, lists each
duplicated value with its rows, and changes nothing: which order keeps the
reservation, or which key row is the real one, is for a person to decide.
"""

import peewee as pw
from peewee_migrate import Migrator

INDEXES = {
    "UQ_orders_kinguinReservationId": ("orders", "kinguinReservationId"),
    "UQ_keys_storageRef": ("keys", "storageRef"),
}


def _create(name, concurrently=False):
    table, column = INDEXES[name]
    how = "CONCURRENTLY " if concurrently else ""
    return f'CREATE UNIQUE INDEX {how}"{name}" ON "{table}" ("{column}")'


# On PostgreSQL both indexes are built by bitloot-lite's runner after this
# migration's transaction commits, with CREATE INDEX CONCURRENTLY: a plain CREATE
# INDEX would block every write to orders and keys for the whole build. The runner
# finishes a build a killed deploy left missing or INVALID, and on a build
# that fails on a duplicate written meanwhile, drops what it left and reports
# ``conflicts``. {index name: statement}. migrate() runs the plain statements on
# both backends: bitloot-lite's runner takes them out of the transaction on
# PostgreSQL, peewee-migrate's own (pw_migrate) builds them in place.
POSTGRES_CONCURRENT_INDEXES = {name: _create(name, concurrently=True) for name in INDEXES}

UP = [_create(name) for name in INDEXES]

# The version of this file that ran its plain statements on SQLite only (so that
# pw_migrate skipped the indexes on PostgreSQL): the same schema with bitloot-lite.
PREVIOUS_CHECKSUMS = ("f5f915841385fc97593aadd7ffff409502561753d06fe2fb00e74eedd5d8a77d",)
DOWN = [f'DROP INDEX IF EXISTS "{name}"' for name in INDEXES]

#: The rows listed per duplicated value, and the values listed, at most.
_SHOWN = 20


def conflicts(database):
    """One line per duplicated reservation id or storage reference, naming its rows."""
    lines = []
    for table, column, what, rows in (("orders", "kinguinReservationId", "reservation", "orders"),
                                      ("keys", "storageRef", "storage reference", "keys")):
        duplicated = database.execute_sql(
            f'SELECT "{column}", count(*) FROM "{table}" WHERE "{column}" IS NOT NULL '
            f'GROUP BY "{column}" HAVING count(*) > 1 ORDER BY "{column}"'
        ).fetchall()
        for value, count in duplicated[:_SHOWN]:
            placeholder = "%s" if isinstance(database, pw.PostgresqlDatabase) else "?"
            ids = [str(row[0]) for row in database.execute_sql(
                f'SELECT "id" FROM "{table}" WHERE "{column}" = {placeholder} '
                f'ORDER BY "createdAt", "id" LIMIT {_SHOWN}', (value,)).fetchall()]
            more = f" and {count - len(ids)} more" if count > len(ids) else ""
            lines.append(f"{what} {value!r} is held by {count} {rows}: {', '.join(ids)}{more}")
        if len(duplicated) > _SHOWN:
            lines.append(f"... and {len(duplicated) - _SHOWN} more duplicated {what}s")
    return lines


def refuse_duplicates(database):
    found = conflicts(database)
    if found:
        raise RuntimeError(
            "duplicates must be resolved by hand first (nothing was changed):\n"
            + "\n".join(f"  - {line}" for line in found))


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    orders, keys = migrator.orm["orders"], migrator.orm["keys"]
    with migrator.fake():
        migrator.add_index(orders, "kinguin_reservation_id", unique=True)
        migrator.add_index(keys, "storage_ref", unique=True)
    migrator.run(refuse_duplicates, database)
    for statement in UP:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    orders, keys = migrator.orm["orders"], migrator.orm["keys"]
    for statement in DOWN:
        migrator.sql(statement)
    with migrator.fake():
        migrator.drop_index(orders, "kinguin_reservation_id")
        migrator.drop_index(keys, "storage_ref")
