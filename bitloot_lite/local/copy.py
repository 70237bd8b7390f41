"""Copy a database into another, across backends, checked row for row at the end.

The destination is migrated to the source's level first (the same tables and
columns); the rows stream in batches, parents before children, from one
consistent snapshot of the source (PostgreSQL: a REPEATABLE READ, READ ONLY
transaction and a server-side cursor per table; SQLite: one read transaction),
in constant memory, into one transaction on the destination (``bulk.Writer``):
a copy that fails leaves the destination as it was. Values cross the backends
by the models' field types (uuid and JSON as text, timestamps, numeric(20,8) as
Decimal, booleans). Before the commit every table of the destination is read
back and compared with what was sent: row count and a content checksum, the
same canonical form on both sides (an order-free sum of per-row sha256).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import peewee as pw

from ..db import is_postgres
from ..errors import (
    ConfigurationError,
    CopyMismatch,
    DatabaseNotEmpty,
    NotMigrated,
    SourceAhead,
    ValidationError,
)
from ..models import MODELS, Order
from ..schema import snapshot
from .anonymize import COLUMNS as PERSONAL_COLUMNS
from .anonymize import Anonymizer
from .bulk import Writer, big_cache, quote, storage_errors
from .checksum import Column, Table, hexdigest, kind_of, row_hasher
from .identity import refuse_same

if TYPE_CHECKING:
    from types import ModuleType

    from .._typing import StrPath
    from ..runner import Router

#: ``progress(label, done, total)``, after each batch.
Progress = Callable[[str, int, int], object]
#: (SQL of the subset's order ids, its params).
Subset = tuple[str, list[Any]]

logger = logging.getLogger("bitloot_lite.local.copy")

#: Rows per batch read and written.
BATCH = 5000



@dataclass(frozen=True)
class TableCopy:
    """One table copied: its rows and checksum (the same on both sides), and the time."""

    table: str
    rows: int
    checksum: str
    seconds: float


@dataclass
class CopyResult:
    level: str
    migrated: list[str]
    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0
    salt: str | None = None

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


def copy(source: pw.Database, destination: pw.Database, *, replace: bool = False,
         anonymize: bool = False,
         salt: str | None = None, orders: int | None = None, since: dt.datetime | None = None,
         progress: Progress | None = None, batch: int = BATCH,
         migrations_dir: StrPath | None = None) -> CopyResult:
    """Copy every row of ``source`` into ``destination`` (open Databases); a CopyResult.

    ``replace``: empty a destination that holds rows (else DatabaseNotEmpty).
    ``anonymize``: personal and secret values replaced (see anonymize.py) with
    pseudonyms keyed by ``salt`` (random if None; the result says which).
    ``orders`` / ``since``: only the newest ``orders`` orders (or those created
    at or after ``since``, naive = UTC), with their items, keys, payments and
    webhook logs. ``progress(label, done, total)`` is called after each batch.
    ``migrations_dir``: the migrations that say what the levels are (default: the
    packaged ones). Two handles on one database (however their URLs are spelled)
    are refused before anything is written: SameDatabase (see identity.py).
    """
    from .. import migrating  # the migration machinery, only when needed
    from ..runner import Router

    if orders is not None and (isinstance(orders, bool) or not isinstance(orders, int)
                               or orders < 0):
        raise ValidationError("orders", orders, "must be a whole number >= 0")
    if since is not None and not isinstance(since, dt.datetime):
        raise ValidationError("since", since, "must be a datetime")
    refuse_same(source, destination)
    started = time.perf_counter()
    level = _source_level(Router(source, migrations_dir))
    migrated = _prepare_destination(destination, Router(destination, migrations_dir), level,
                                    replace, migrating, migrations_dir)
    anonymizer = None
    if anonymize:
        from .anonymize import random_salt

        salt = salt if salt is not None else random_salt()
        anonymizer = Anonymizer(salt)
    result = CopyResult(level, migrated, salt=salt if anonymize else None)
    tables = _plan(source, destination)
    subset = _subset(source, orders, since)
    writer = Writer(destination)
    with storage_errors("copy"), big_cache(destination), destination.atomic(), \
            _snapshot(source):
        if replace:
            for table in reversed(tables):
                destination.execute_sql(f"DELETE FROM {quote(table.name)}")
        for table in tables:
            table_started = time.perf_counter()
            rows, checksum = _copy_table(source, writer, table, subset, anonymizer, batch,
                                         progress)
            result.tables.append(TableCopy(table.name, rows, checksum,
                                           time.perf_counter() - table_started))
        for table, copied in zip(tables, result.tables, strict=True):
            check = _checksum(destination, table, None, batch, progress, copied.rows)
            if check != (copied.rows, copied.checksum):
                raise CopyMismatch(table.name, (copied.rows, copied.checksum), check)
    result.seconds = time.perf_counter() - started
    logger.info("copied %d rows in %.2fs", result.rows, result.seconds)
    return result


# -- levels -----------------------------------------------------------------------------


def _source_level(router: Router) -> str:
    known, history = router.todo, router.history()
    unknown = [name for name in history if name not in known]
    if unknown:
        raise SourceAhead(unknown)
    applied = [name for name in known if name in history]
    if not applied:
        raise NotMigrated(known)
    return applied[-1]


def _prepare_destination(destination: pw.Database, router: Router, level: str, replace: bool,
                         migrating: ModuleType, migrations_dir: StrPath | None) -> list[str]:
    """Bring the destination to ``level``: migrate it up, or (emptied first, only with
    ``replace``) roll it back down. Returns the migrations applied."""
    history = router.history()
    ahead = [name for name in history if name > level]
    if _holds_rows(destination) and not replace:
        raise DatabaseNotEmpty(_holds_rows(destination), "replace its rows knowingly (--replace)")  # type: ignore[arg-type]
    if ahead:
        if _holds_rows(destination):  # replace: emptied before the schema goes back
            with destination.atomic():
                for model in reversed(MODELS):
                    if destination.table_exists(model._meta.table_name):
                        destination.execute_sql(f"DELETE FROM {quote(model._meta.table_name)}")
        migrating.rollback(destination, to=level, migrations_dir=migrations_dir)
    return cast("list[str]", migrating.migrate(destination, to=level,  # the module, passed in
                                               migrations_dir=migrations_dir))


def _holds_rows(database: pw.Database) -> str | None:
    """The first of our tables that holds a row, or None."""
    for model in MODELS:
        name = model._meta.table_name
        if database.table_exists(name) and database.execute_sql(
                f"SELECT 1 FROM {quote(name)} LIMIT 1").fetchone():
            return cast(str, name)
    return None


# -- what to copy, and how ------------------------------------------------------------------


def _plan(source: pw.Database, destination: pw.Database) -> list[Table]:
    """Our tables that the source has, parents first, with the columns it has (which the
    destination, at the same level, must have too)."""
    have, want = snapshot(source)["tables"], snapshot(destination)["tables"]
    tables: list[Table] = []
    for model in MODELS:
        name = model._meta.table_name
        if name not in have:
            continue
        names = [column["name"] for column in have[name]["columns"]]
        if name not in want or [c["name"] for c in want[name]["columns"]] != names:
            raise ConfigurationError(f"the destination's {name} has other columns than the "
                                     "source's, although both are at the same migration")
        fields = model._meta.columns
        tables.append(Table(name, tuple(
            Column(column, kind_of(fields.get(column)), fields.get(column)) for column in names)))
    return tables


def _subset(source: pw.Database, orders: int | None, since: dt.datetime | None) -> Subset | None:
    """(SQL of the subset's order ids, its params), or None for everything."""
    if orders is None and since is None:
        return None
    where, params = "", []
    if since is not None:
        if since.tzinfo is not None:
            since = since.astimezone(dt.timezone.utc).replace(tzinfo=None)
        where = f' WHERE {quote("createdAt")} >= ?'
        params.append(since if is_postgres(source) else since.isoformat(" "))
    sql = (f"SELECT id FROM {quote(Order._meta.table_name)}{where} "
           f'ORDER BY "createdAt" DESC, id DESC')
    if orders is not None:
        sql += f" LIMIT {int(orders)}"
    return sql, params


#: Each table's rows in a subset: a condition on the subset's order ids ({ids}).
_SUBSET_WHERE = {
    "orders": "id IN ({ids})",
    "order_items": '"orderId" IN ({ids})',
    "keys": '"orderItemId" IN (SELECT id FROM order_items WHERE "orderId" IN ({ids}))',
    "payments": '"orderId" IN ({ids})',
    "webhook_logs": '"orderId" IN ({ids})',
}


def _select(database: pw.Database, table: Table, subset: Subset | None) -> tuple[str, list[Any]]:
    postgres = is_postgres(database)
    names: list[str] = []
    for column in table.columns:
        name = quote(column.name)
        # uuid and jsonb as text: exact, and the same shape as SQLite's.
        names.append(f"{name}::text" if postgres and column.kind in ("uuid", "json") else name)
    sql = f"SELECT {', '.join(names)} FROM {quote(table.name)}"
    params: list[Any] = []
    if subset is not None:
        sql += " WHERE " + _SUBSET_WHERE[table.name].format(ids=subset[0])
        params = list(subset[1]) * _SUBSET_WHERE[table.name].count("{ids}")
    if postgres:
        sql = sql.replace("?", "%s")
    return sql, params


class _snapshot:
    """One consistent view of the source for every table (and read only)."""

    def __init__(self, database: pw.Database) -> None:
        self.database = database
        self.transaction = database.atomic()

    def __enter__(self) -> _snapshot:
        self.transaction.__enter__()
        if is_postgres(self.database):
            self.database.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, "
                                      "READ ONLY")
        else:  # a deferred BEGIN takes its snapshot at the first read: take it now
            self.database.execute_sql("SELECT count(*) FROM sqlite_master")
        return self

    def __exit__(self, *exc: Any) -> None:
        return self.transaction.__exit__(*exc)


def _rows(database: pw.Database, table: Table, subset: Subset | None,
          batch: int) -> Iterator[list[Any]]:
    """The table's rows (of the subset), in batches; server-side on PostgreSQL."""
    sql, params = _select(database, table, subset)
    if is_postgres(database):
        # psycopg2 names cursors only outside autocommit, or WITH HOLD (peewee's way).
        cursor = database.connection().cursor(name=f"bitloot_copy_{table.name}", withhold=True)
        cursor.itersize = batch
        cursor.execute(sql, params)
    else:
        cursor = database.cursor()
        cursor.execute(sql, params)
    try:
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            yield rows
    finally:
        cursor.close()


def _count(database: pw.Database, table: Table, subset: Subset | None) -> int:
    sql, params = _select(database, table, subset)
    sql = "SELECT count(*) FROM (" + sql + ") AS counted"
    return database.execute_sql(sql.replace("%s", "?") if not is_postgres(database) else sql,  # type: ignore[no-any-return]
                                params).fetchone()[0]


# -- values ---------------------------------------------------------------------------------


def _converter(column: Column, to_postgres: bool, anonymizer: Anonymizer | None,
               table: str) -> Callable[[Any], Any] | None:
    """value as read from the source -> value to write (None stays None)."""
    kind = column.kind
    if kind == "ts":
        convert = None if to_postgres else _ts_text
    elif kind == "money":
        quantize = column.field.python_value
        convert = lambda v: str(quantize(v))  # noqa: E731
    elif kind == "bool":
        convert = bool
    else:
        convert = None
    if anonymizer is not None and (table, column.name) in PERSONAL_COLUMNS:
        hide = anonymizer.column(PERSONAL_COLUMNS[(table, column.name)])
        if convert is None:
            return hide
        return lambda v, c=convert: hide(c(v))  # type: ignore[misc]
    if convert is None:
        return None
    return lambda v, c=convert: None if v is None else c(v)  # type: ignore[misc]


def _ts_text(value: object) -> object:
    """A timestamp as peewee writes it to SQLite (sqlite3's adapter: isoformat(" "))."""
    return value.isoformat(" ") if isinstance(value, dt.datetime) else value


def _copy_table(source: pw.Database, writer: Writer, table: Table, subset: Subset | None,
                anonymizer: Anonymizer | None, batch: int, progress: Progress | None,
                ) -> tuple[int, str]:
    to_postgres = writer.postgres
    converters = [(i, c) for i, c in enumerate(
        _converter(column, to_postgres, anonymizer, table.name) for column in table.columns)
        if c is not None]
    columns = tuple(column.name for column in table.columns)
    row_hash = row_hasher(table)
    total = _count(source, table, subset) if progress is not None else 0
    done, checksum = 0, 0
    if progress is not None:
        progress(table.name, 0, total)
    for rows in _rows(source, table, subset, batch):
        if converters:
            rows = [list(row) for row in rows]
            for row in rows:
                for i, convert in converters:
                    row[i] = convert(row[i])
        writer.write(table.name, columns, rows)
        for row in rows:
            checksum += row_hash(row)
        done += len(rows)
        if progress is not None:
            progress(table.name, done, total)
    return done, hexdigest(checksum)


def _checksum(database: pw.Database, table: Table, subset: Subset | None, batch: int,
              progress: Progress | None = None, total: int = 0) -> tuple[int, str]:
    """(rows, checksum) of the table's rows in ``database``."""
    row_hash = row_hasher(table)
    done, checksum = 0, 0
    label = f"checking {table.name}"
    if progress is not None:
        progress(label, 0, total)
    for rows in _rows(database, table, subset, batch):
        for row in rows:
            checksum += row_hash(row)
        done += len(rows)
        if progress is not None:
            progress(label, done, total)
    return done, hexdigest(checksum)


def checksums(database: pw.Database, subset: Subset | None = None, batch: int = BATCH) -> dict[str,
              tuple[int, str]]:
    """{table: (rows, checksum)} of our tables in ``database``, as ``copy`` checks them:
    equal for two databases holding the same rows, whatever their backends."""
    tables = _plan(database, database)
    return {table.name: _checksum(database, table, subset, batch) for table in tables}
