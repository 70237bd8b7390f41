"""Taking over a database made by the original NestJS + TypeORM application.

That application applied the same migrations as ours (each of our migration
files names its upstream one in ``UPSTREAM``) and recorded them in its own
table ``migrations`` (id, "timestamp" bigint, name varchar). ``adoption_plan``
reads that table, checks that the names are the start of our sequence and that
the tables really have the shape those migrations make (TypeORM's harmless
extras, schema.KNOWN_EXTRAS, tolerated), and says which of our migrations to
record as applied. A database whose tables carry no history of either kind is
refused (``require_history_or_empty``): it must be baselined by hand, after
``baseline_check`` has confirmed its shape.

A real database of upstream's Phase 1 lacks order_items.quantity (upstream's
InitOrders made it without; see target.py): it is recognised, and
``adoption_fixups`` says what adopting it adds, for existing rows too.

Nothing here writes to the database: recording is the runner's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import peewee as pw

from .db import is_postgres
from .errors import GRANT_READ, AdoptionError, NeedsBaseline, privilege_required
from .schema import HISTORY_TABLE, compare, snapshot
from .target import (
    PHASE1_ADD_COLUMN,
    PHASE1_MISSING_COLUMN,
    STEPS,
    expected,
    expected_phase1,
)

#: TypeORM's history table.
TYPEORM_TABLE = "migrations"

#: The tables bitloot-lite manages: their presence means the database is not empty.
TABLES = ("orders", "order_items", "payments", "webhook_logs", "keys")


def _backend(database: pw.Database) -> str:
    return "postgres" if is_postgres(database) else "sqlite"


def _table_exists(database: pw.Database, table: str) -> bool:
    # PostgreSQL: peewee reads the connection's current_schema(), as snapshot() does.
    return table in database.get_tables()


def typeorm_history(database: pw.Database) -> list[str] | None:
    """The names in TypeORM's ``migrations`` table, ordered by id; None if there is none."""
    if not _table_exists(database, TYPEORM_TABLE):
        return None
    with privilege_required("reading TypeORM's migration history", GRANT_READ):
        cursor = database.execute_sql(f'SELECT "name" FROM "{TYPEORM_TABLE}" ORDER BY "id"')
    return [name for (name,) in cursor.fetchall()]


def recorded_history(database: pw.Database) -> list[str]:
    """The names in our own history table, oldest first ([] when there is no such table)."""
    if not _table_exists(database, HISTORY_TABLE):
        return []
    with privilege_required("reading the migration history", GRANT_READ):
        cursor = database.execute_sql(f'SELECT "name" FROM "{HISTORY_TABLE}" ORDER BY "id"')
    return [name for (name,) in cursor.fetchall()]


def existing_tables(database: pw.Database) -> set[str]:
    """Which of bitloot-lite's tables exist in ``database``."""
    return set(database.get_tables()) & set(TABLES)


def shape_differences(database: pw.Database, step: int,
                      notes: list[str] | None = None) -> list[str]:
    """How the live schema differs from the one our first ``step`` migrations make.

    TypeORM's known extras (schema.KNOWN_EXTRAS: the UQ_ duplicate on payments,
    its ``migrations`` table, comments on keys columns) are not differences: they
    are appended to ``notes`` when a list is given.
    """
    return compare(snapshot(database), expected(_backend(database), step), notes)


def matching_step(database: pw.Database, notes: list[str] | None = None) -> int | None:
    """The number of our migrations whose schema the live one is (newest first), or None."""
    for step in range(STEPS, 0, -1):
        found: list[str] = []
        if not shape_differences(database, step, found):
            if notes is not None:
                notes.extend(found)
            return step
    return None


def _prefix_length(names: list[str], migrations: list[tuple[str, str | None]]) -> int:
    """How many of ``migrations`` (name, upstream) the TypeORM ``names`` are; else raise."""
    upstream = [up for _name, up in migrations]
    listed = set(names)
    unknown = [name for name in names if name not in upstream]
    count = 0
    while count < len(upstream) and upstream[count] in listed:
        count += 1
    beyond = [up for up in upstream[count:] if up in listed]
    if not unknown and not beyond:
        return count
    problems = []
    if unknown:
        problems.append("unknown to bitloot-lite: " + ", ".join(unknown))
    if beyond:
        missing = [f"{up} ({name})" for name, up in migrations[:upstream.index(beyond[-1])]
                   if up not in listed]
        problems.append("listed without the earlier " + ", ".join(missing))
    known = ", ".join(f"{up} = {name}" for name, up in migrations)
    raise AdoptionError(
        f"TypeORM's migrations table lists {', '.join(names)}, which is not the start "
        f"of bitloot-lite's migrations ({known}): " + "; ".join(problems)
        + ". Bring the database to one of those states by hand, or baseline it "
        "(`bitloot-lite baseline --to NAME`) once its schema matches a migration"
    )


def adoption_plan(database: pw.Database, migrations: Iterable[tuple[str, str | None]],
                  applied: list[str] | None = None) -> list[str]:
    """Our migrations to record as applied because TypeORM's history says they were.

    ``migrations`` lists ours in order as (name, upstream TypeORM name).
    ``applied`` is our own history (None: read it); when it lists anything, or
    when there is no TypeORM history (no table, or an empty one), there is
    nothing to adopt: []. Otherwise the TypeORM names, in any order (the
    upstream timestamps are not the order they ran in), must be exactly the
    upstream names of our first N migrations, and the live schema must be the
    one those N make; else AdoptionError (``differences`` lists how it differs).
    """
    if applied is None:
        applied = recorded_history(database)
    names = typeorm_history(database)
    if applied or not names:
        return []
    count = _prefix_length(names, list(migrations))
    adopted = [name for name, _up in list(migrations)[:count]]
    differences = shape_differences(database, count)
    if differences and is_phase1(database, count):
        return adopted  # adoption_fixups adds what upstream's Phase 1 did not make
    if differences:
        raise AdoptionError(
            f"TypeORM's history says {adopted[-1]} (upstream "
            f"{list(migrations)[count - 1][1]}) was applied, but the tables are not in "
            "the shape it makes; nothing was recorded or changed",
            differences,
        )
    return adopted


def require_history_or_empty(database: pw.Database, applied_names: Iterable[str],
                             migrations: Sequence[str | tuple[str, str | None]] | None = None,
                             ) -> None:
    """Refuse a database whose tables no history accounts for (NeedsBaseline).

    Passes when there are none of our tables, or when ``applied_names`` (our
    history) or TypeORM's history lists anything. ``migrations`` (our names, or
    (name, upstream) pairs, in order), if given, lets the message name the
    migration whose schema the tables already have.
    """
    tables = existing_tables(database)
    if not tables or applied_names or typeorm_history(database):
        return
    suggestion = None
    if migrations:
        names = [m if isinstance(m, str) else m[0] for m in migrations]
        step = matching_step(database)
        if step is not None and step <= len(names):
            suggestion = names[step - 1]
    raise NeedsBaseline(sorted(tables), suggestion)


def baseline_check(database: pw.Database, step: int) -> list[str]:
    """Raise AdoptionError unless the live schema is the one our first ``step`` migrations make.

    Run before recording migrations as applied without running them.
    """
    notes: list[str] = []
    differences = shape_differences(database, step, notes)
    if differences:
        raise AdoptionError(
            f"the tables are not in the shape bitloot-lite's first {step} migration(s) "
            "make, so they cannot be recorded as applied; nothing was recorded",
            differences,
        )
    return notes


@dataclass(frozen=True)
class Fixup:
    """A change adopting a database makes so that it has the shape its history says."""

    name: str  # "order_items.quantity"
    description: str
    sql: str


def is_phase1(database: pw.Database, step: int) -> bool:
    """Whether the live schema is the one upstream's Phase-1 migrations made at ``step``
    (order_items without quantity; TypeORM's known extras tolerated)."""
    if step < 1:
        return False
    return not compare(snapshot(database), expected_phase1(_backend(database), step), [])


def adoption_fixups(database: pw.Database, step: int) -> list[Fixup]:
    """What adopting a database at ``step`` must add before its migrations are recorded:
    order_items.quantity (integer NOT NULL DEFAULT 1, so every existing row gets 1) on a
    Phase-1 database; [] on any other."""
    if not is_phase1(database, step):
        return []
    table, column = PHASE1_MISSING_COLUMN
    return [Fixup(f"{table}.{column}",
                  "integer NOT NULL DEFAULT 1, which upstream's Phase-1 InitOrders lacked",
                  PHASE1_ADD_COLUMN[_backend(database)])]
