"""The migrations as a runnable SQL script, with or without a database.

Alembic's ``--sql`` and Django's ``sqlmigrate``: the statements each migration
runs, values inlined, with the history rows and the transactions ``migrate``
uses (BEGIN/COMMIT per migration; on SQLite foreign keys off around it; on
PostgreSQL ``SET LOCAL lock_timeout`` inside and the concurrent index builds
after the COMMIT), so that the text runs as-is in ``psql`` or ``sqlite3`` and
leaves the same schema and history as ``migrate``.

How the statements are obtained, without touching the user's database:

- SQLite: the migrations run for real on a scratch database (a temporary
  file) and every write is recorded; that is what they would run on a
  database at the same point (004's table rebuild reads the stored CREATE
  TABLE text, so it cannot be rendered without a database at all).
- PostgreSQL: the migrations run against a recorder, a PostgreSQL "database"
  that executes nothing; their PostgreSQL path only emits SQL. (A migration
  of the user's that reads the database to decide what to run cannot be
  rendered offline: its reads come back empty.)

``blocks(...)`` returns the script as data (the ``--json`` of ``sql``),
``text(blocks, backend)`` as the script; ``from_preview`` turns the live
preview (``migrating.preview``) into the same blocks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import peewee as pw

from .db import recording
from .errors import ConfigurationError, NothingToRollback
from .loading import resolve_name
from .replay import scratch_sqlite
from .runner import HISTORY_TABLE, Router

if TYPE_CHECKING:
    from ._typing import StrPath
    from .migrating import Preview

__all__ = ["Block", "BACKENDS", "as_json", "blocks", "from_preview", "text"]

BACKENDS = ("postgres", "sqlite")


@dataclass(frozen=True)
class Block:
    """One migration's part of the script: its statements, values inlined.

    ``direction``: "migrate" or "rollback" (one transaction each), "after commit"
    (PostgreSQL's concurrent index builds, outside any transaction) or "adopt"
    (recorded from a TypeORM history, nothing run).
    """

    name: str
    direction: str
    statements: list[str] = field(default_factory=list)


# -- the script as data -------------------------------------------------------------------


def blocks(backend: str, migrations_dir: StrPath | None = None, *, start: str | None = None,
           end: str | None = None, rollback_steps: int | None = None) -> list[Block]:
    """The script of migrations ``start``..``end`` (default: all of them) on ``backend``,
    as if the ones before ``start`` were applied; with ``rollback_steps``, the rollback
    of the newest ``rollback_steps`` of them (as if all up to ``end`` were applied)."""
    if backend not in BACKENDS:
        raise ConfigurationError(f"unknown backend {backend!r}: expected postgres or sqlite")
    with _target(backend) as database:
        router = Router(database, migrations_dir)
        todo = router.todo
        start = None if start is None else resolve_name(start, todo)
        end = None if end is None else resolve_name(end, todo)
        last = todo.index(end) + 1 if end is not None else len(todo)
        first = todo.index(start) if start is not None else 0
        if rollback_steps is not None:
            if not 1 <= rollback_steps <= last:
                raise NothingToRollback(rollback_steps, last)
            before, plan, downgrade = todo[:last], todo[last - rollback_steps:last][::-1], True
        else:
            before, plan, downgrade = todo[:first], todo[first:last], False
        _apply_unrecorded(router, before, backend)
        return [block for name in plan for block in _run(router, name, backend, downgrade)]


def from_preview(steps: Iterable[Preview]) -> list[Block]:
    """The live preview's [(name, direction, [(sql, params)])] as blocks, values inlined."""
    return [Block(name, direction, [_inline(sql, params) for sql, params in statements])
            for name, direction, statements in steps]


def as_json(blocks_: Iterable[Block], backend: str) -> dict[str, Any]:
    """The blocks as JSON-ready data: ``sql --json``."""
    return {"backend": backend, "migrations": [
        {"name": b.name, "direction": b.direction,
         "transaction": b.direction in ("migrate", "rollback"),
         "statements": [_statement(s) for s in b.statements]} for b in blocks_]}


# -- the script as text -------------------------------------------------------------------


def text(blocks_: Iterable[Block], backend: str) -> str:
    """The blocks as a script for ``psql`` (run it with ``-v ON_ERROR_STOP=1``) or
    ``sqlite3`` (``-bail``), ending in a newline."""
    sqlite = backend == "sqlite"
    run = "sqlite3 -bail DB < FILE" if sqlite else "psql -v ON_ERROR_STOP=1 -f FILE"
    lines = [f"-- bitloot-lite migrations for {backend}: values inlined, history rows included.",
             f"-- Run as-is: {run}", ""]
    for block in blocks_:
        lines.append(f"-- {block.direction} {block.name}")
        if block.direction == "adopt":
            lines += ["-- recorded as applied from the TypeORM history; not run", ""]
            continue
        if block.direction == "after commit":
            lines.append("-- outside any transaction (CONCURRENTLY)")
            lines += [f"{_statement(s)};" for s in block.statements]
            lines.append("")
            continue
        if sqlite:  # migrate turns foreign keys off before BEGIN (ignored inside one)
            lines.append("PRAGMA foreign_keys = OFF;")
        lines.append("BEGIN;")
        lines += [f"{_statement(s)};" for s in block.statements]
        if sqlite:
            lines.append("PRAGMA foreign_key_check;")
        lines.append("COMMIT;")
        if sqlite:
            lines.append("PRAGMA foreign_keys = ON;")
        lines.append("")
    return "\n".join(lines) + "\n"


def _statement(sql: str) -> str:
    return sql.strip().rstrip(";").rstrip()


# -- running the migrations somewhere harmless --------------------------------------------


class _Cursor:
    """What the recorder's statements return: nothing (an INSERT ... RETURNING gets id 1)."""

    rowcount = 0
    description = None
    lastrowid = 1

    def __init__(self, sql: str) -> None:
        self._returning = "RETURNING" in sql.upper()

    def fetchone(self) -> tuple[int] | None:
        return (1,) if self._returning else None

    def fetchall(self) -> list[tuple[int]]:
        return [(1,)] if self._returning else []

    def __iter__(self) -> Iterator[tuple[int]]:
        return iter(self.fetchall())

    def close(self) -> None:
        pass


class _PostgresRecorder(pw.PostgresqlDatabase):
    """A PostgreSQL Database that runs nothing: statements are recorded by ``recording``."""

    def __init__(self) -> None:
        super().__init__("offline")
        self.server_version = 150000

    def connect(self, reuse_if_open: bool = False) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def close(self) -> bool:
        return True

    def execute_sql(self, sql: str, params: Any = None, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(sql)

    def atomic(self, *args: Any, **kwargs: Any) -> Any:
        return contextlib.nullcontext()

    transaction = savepoint = atomic

    def in_transaction(self) -> bool:
        return False

    def get_tables(self, schema: str | None = None) -> list[str]:
        return []


@contextlib.contextmanager
def _target(backend: str) -> Iterator[pw.Database]:
    if backend == "postgres":
        yield _PostgresRecorder()
        return
    with scratch_sqlite() as database:
        yield database


def _apply_unrecorded(router: Router, names: Iterable[str], backend: str) -> None:
    """Bring the scratch target to the state after ``names``: for real on SQLite (later
    SQL depends on it), as their recorded model state on PostgreSQL."""
    for name in names:
        if backend == "sqlite":
            router.run_one(name, router.migrator, fake=False)
        else:  # peewee-migrate's fake run: the model state, none of the operations
            router.run_one(name, router.migrator, fake=True)


def _run(router: Router, name: str, backend: str, downgrade: bool) -> list[Block]:
    database = router.database
    with recording(database) as statements:
        router.run_one(name, router.migrator, fake=False, downgrade=downgrade)
    writes = [_inline(sql, params, history=True, backend=backend)
              for sql, params in statements if not _is_read(sql)]
    if downgrade:
        writes = [s for s in writes if not s.upper().startswith("CREATE TABLE IF NOT EXISTS")]
    found = [Block(name, "rollback" if downgrade else "migrate", writes)]
    after = [] if downgrade else list(router.concurrent_indexes(name).values())
    if after:
        found.append(Block(name, "after commit", after))
    return found


def _is_read(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    # PRAGMAs, even the foreign-key switch, are the script's own (around BEGIN/COMMIT).
    return head in ("SELECT", "SAVEPOINT", "RELEASE", "PRAGMA", "BEGIN", "COMMIT")


# -- inlining values ----------------------------------------------------------------------

#: The history's migrated_at (naive UTC) as the database's own clock, when the script runs.
_UTC_NOW = {"postgres": "(now() AT TIME ZONE 'UTC')", "sqlite": "CURRENT_TIMESTAMP"}


def _inline(sql: str, params: Sequence[Any], *, history: bool = False,
            backend: str | None = None) -> str:
    """``sql`` with its placeholders (``?`` or ``%s``) replaced by ``params`` as literals."""
    if not params:
        return sql.strip()
    is_history = history and f'"{HISTORY_TABLE}"' in sql
    values = [_UTC_NOW[backend] if is_history and isinstance(p, dt.datetime) else _literal(p)  # type: ignore[index]
              for p in params]
    out, i, quote = [], 0, None
    pieces = iter(values)
    while i < len(sql):
        ch = sql[i]
        if quote:  # psycopg reads %% as % inside a literal too (pyformat: the whole text)
            pyformat = "%s" in sql and sql.startswith("%%", i)
            out.append(ch)
            quote = None if ch == quote else quote
            i += pyformat
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append(next(pieces))
        elif sql.startswith("%s", i):
            out.append(next(pieces))
            i += 1
        elif sql.startswith("%%", i):
            out.append("%")
            i += 1
        else:
            out.append(ch)
        i += 1
    return "".join(out).strip()


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, uuid.UUID)):
        value = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else str(value)
    return "'" + str(value).replace("'", "''") + "'"
