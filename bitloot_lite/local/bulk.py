"""Many rows into one table fast: executemany on SQLite, COPY on PostgreSQL.

Rows are tuples of database values (uuid and timestamp as text, JSON as text,
booleans as bool, NULL as None), which both backends accept as they are:
SQLite stores them, PostgreSQL casts the text to the column's type. The caller
holds the transaction.
"""

import contextlib
import io
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import peewee as pw

from ..db import DATABASE_ERRORS, is_postgres, is_sqlite
from ..errors import StorageError

try:
    import psycopg2
except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
    psycopg2 = None



@contextlib.contextmanager
def storage_errors(operation: str) -> Iterator[None]:
    """A driver's error in the block as a StorageError naming its class and SQLSTATE (and
    the constraint), never the text of a PostgreSQL error, which may quote the data."""
    error: StorageError | None = None
    try:
        yield
    except DATABASE_ERRORS as exc:
        error = StorageError(operation, _describe(exc))
    if error is not None:
        raise error


def _describe(exc: BaseException) -> str:
    original = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    name = type(original).__name__
    code = getattr(original, "pgcode", None)
    if code:
        diag = getattr(original, "diag", None)
        constraint = getattr(diag, "constraint_name", None)
        return f"{name} (SQLSTATE {code}{f', {constraint}' if constraint else ''})"
    if isinstance(original, sqlite3.Error) or isinstance(exc, pw.PeeweeException):
        lines = str(original).strip().splitlines()  # SQLite names columns, never values
        return f"{name}: {lines[0]}" if lines else name
    return name

#: SQLite's page cache while a bulk write runs (KiB; SQLite's default is 2 MiB): the
#: indexes take rows in random order (uuid ids), which thrashes a small cache.
CACHE_KIB = 256 * 1024


@contextlib.contextmanager
def big_cache(database: pw.Database) -> Iterator[None]:
    """A big SQLite page cache for the block (PostgreSQL: nothing), then the one before."""
    if not is_sqlite(database):
        yield
        return
    saved = database.execute_sql("PRAGMA cache_size").fetchone()[0]
    database.execute_sql(f"PRAGMA cache_size = -{CACHE_KIB}")
    try:
        yield
    finally:
        database.execute_sql(f"PRAGMA cache_size = {int(saved)}")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Writer:
    """Writes row batches into tables of one database, in the caller's transaction."""

    def __init__(self, database: pw.Database) -> None:
        self.database = database
        self.postgres = is_postgres(database)
        self._sql: dict[tuple[str, tuple[str, ...]], str] = {}

    def write(self, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> int:
        """Insert ``rows`` (tuples in ``columns`` order) into ``table``; returns how many."""
        if not rows:
            return 0
        cursor = self.database.cursor()
        if self.postgres:
            cursor.copy_expert(self._statement(table, columns), _copy_text(rows))
        else:
            cursor.executemany(self._statement(table, columns), rows)
        return len(rows)

    def _statement(self, table: str, columns: tuple[str, ...]) -> str:
        key = (table, columns)
        if key not in self._sql:
            names = ", ".join(map(quote, columns))
            if self.postgres:
                self._sql[key] = f"COPY {quote(table)} ({names}) FROM STDIN"
            else:
                marks = ", ".join("?" * len(columns))
                self._sql[key] = f"INSERT INTO {quote(table)} ({names}) VALUES ({marks})"
        return self._sql[key]


#: COPY's text format: backslash escapes, tab between columns, \N for NULL.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: Sequence[Sequence[Any]]) -> io.StringIO:
    """``rows`` in COPY's text format. Most values need no escape: a backslash, or a
    character that is not printable (tab, newline ...), sends one through translate."""
    lines = []
    for row in rows:
        fields = []
        for value in row:
            if value is None:
                fields.append("\\N")
            elif value is True:
                fields.append("t")
            elif value is False:
                fields.append("f")
            else:
                text = value if type(value) is str else str(value)
                if "\\" in text or not text.isprintable():
                    text = text.translate(_ESCAPES)
                fields.append(text)
        lines.append("\t".join(fields))
    lines.append("")
    return io.StringIO("\n".join(lines))


@contextlib.contextmanager
def deferred_indexes(database: pw.Database, tables: Collection[str]) -> Iterator[None]:
    """SQLite, inside the caller's transaction: the secondary indexes of ``tables`` are
    dropped for the block and made again after it, from their own CREATE statements.

    Building an index once over the loaded rows is several times faster than
    updating it at each of them (the rows come in random key order). SQLite's DDL
    is transactional: nobody sees the tables without their indexes, a unique index
    that the rows would break fails its CREATE and takes the transaction with it.
    The indexes behind PRIMARY KEY and UNIQUE constraints (``sql`` NULL) stay.
    On PostgreSQL, nothing.
    """
    if not is_sqlite(database):
        yield
        return
    marks = ", ".join("?" * len(tables))
    indexes = database.execute_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({marks}) ORDER BY name", list(tables)).fetchall()
    for name, _sql in indexes:
        database.execute_sql(f"DROP INDEX {quote(name)}")
    yield
    for _name, sql in indexes:
        database.execute_sql(sql)
