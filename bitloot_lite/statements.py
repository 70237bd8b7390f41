"""The service layer's SQL and how it runs: statements, error translation, rows to models.

Each statement is written once per backend, compiled on first use, then cached.
``run(db, name, params, arg)`` executes statement ``name``; ``arg`` is what
varies (a row count, a target status ...). Statements are written with ``?``
placeholders. On PostgreSQL each becomes a server-side prepared statement,
parsed and planned once per connection (planning an INSERT ... SELECT costs
more than running it): the first use on a connection sends its PREPARE, every
use one EXECUTE (prepared.py keeps track; the URL's ``?prepare=`` turns it
off, as through a transaction pooler). Only constants (column names, enum
values) are ever put into the text; every value is a parameter. ``write``
runs the statement that is a call's whole write, and ``atomic`` several, so
that a failure inside the caller's transaction undoes only the call.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import itertools
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import peewee as pw

from . import prepared, replicas
from .db import DATABASE_ERRORS, driver_error, is_read, sqlite_full, unwrap
from .errors import (
    INSUFFICIENT_PRIVILEGE,
    SQLITE_LOCKED,
    ConfigurationError,
    DatabaseBusy,
    DatabaseFull,
    StorageError,
    TransactionLost,
)
from .fields import utcnow
from .models import BaseModel, Key, Order, OrderItem, OrderStatus, Payment, WebhookLog

if TYPE_CHECKING:
    from ._typing import Cursor

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)
#: A statement's builder: (postgres, arg) -> its text, or its parts (run as one string).
Builder = Callable[[bool, Any], "str | tuple[str, ...]"]

try:
    import psycopg2
except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
    psycopg2 = None


logger = logging.getLogger("bitloot_lite.services")

#: Keys per multi-row INSERT: 2 parameters a row, far under SQLite's variable
#: limit (32766 since SQLite 3.32), and big enough that the per-statement cost vanishes.
KEY_BATCH = 5000

#: Statements with more VALUES rows than this are not prepared: a big batch
#: amortises its planning, and would leave one long-lived plan per size.
PREPARE_ROWS = 64

_BUILDERS: dict[str, Builder] = {}

def run(db: pw.Database, name: str, params: Sequence[Any] = (), arg: Hashable = None,
        savepoint: str | None = None) -> Cursor:
    """Execute statement ``name`` on ``db``; returns the cursor.

    ``savepoint`` (PostgreSQL): "open" sends ``SAVEPOINT`` in the same query
    string, before the statement; "wrap" also sends the ``RELEASE`` after it.

    A prepared statement that vanished or went stale is prepared again and
    the statement run once more, outside a transaction (where the failed
    statement undid itself whole); inside one, the error is raised (the call
    fails with a StorageError) and the next call prepares afresh.
    """
    if not isinstance(db, pw.PostgresqlDatabase):
        return _execute(db, _compile(name, False, arg, None, False)[0], params)
    try:
        return _run_postgres(db, name, params, arg, savepoint)
    except DATABASE_ERRORS as exc:
        if not prepared.lost(db, exc, _compile(name, True, arg, savepoint, True)[1], name):
            raise
    return _run_postgres(db, name, params, arg, savepoint)


def _run_postgres(db: pw.PostgresqlDatabase, name: str, params: Sequence[Any], arg: Hashable,
                  savepoint: str | None) -> Cursor:
    text, prepares, repeatable = _compile(name, True, arg, savepoint,
                                          getattr(db, "prepares", True))
    # A lost connection is retried on a new one (db.PostgresqlDatabase), PREPAREs
    # included: the new connection has none of the old one's statements.
    reconnecting: Callable[..., Cursor] | None = getattr(db, "reconnecting", None)
    if reconnecting is None:
        return _execute_prepared(db, text, params, prepares)
    return reconnecting(_execute_prepared, db, text, params, prepares, repeatable=repeatable)


def _execute_prepared(db: pw.Database, text: str, params: Sequence[Any],
                      prepares: tuple[tuple[str, str], ...]) -> Cursor:
    if prepares:
        prepared.ensure(db, prepares)
    return _execute(db, text, params)


#: peewee's logger: at DEBUG it logs every statement that goes through execute_sql.
_PEEWEE_LOGGER = logging.getLogger("peewee")


def _execute(db: pw.Database, text: str, params: Sequence[Any]) -> Cursor:
    """``text`` on a new cursor of ``db``; returns the cursor.

    Straight to the driver, as peewee's own BEGIN and COMMIT are, unless
    someone watches the statements (a peewee query hook, peewee's debug log,
    or ``db.recording``, which wraps execute_sql): then through execute_sql, so
    that they see every one. The statements are the same either way.
    """
    if (getattr(db, "query_hooks", None) or "execute_sql" in vars(db)
            or _PEEWEE_LOGGER.isEnabledFor(logging.DEBUG)):
        return cast("Cursor", db.execute_sql(text, params))
    cursor: Cursor = db.cursor()
    cursor.execute(text, params)
    return cursor


def sql(db: pw.Database, name: str, arg: Hashable = None) -> str:
    """The plain SQL of statement ``name`` for ``db``'s backend (for EXPLAIN, say)."""
    postgres = isinstance(db, pw.PostgresqlDatabase)
    return "; ".join(_placeholders(part, postgres) for part in _parts(name, postgres, arg))


@functools.lru_cache(maxsize=1024)
def _compile(name: str, postgres: bool, arg: Hashable, savepoint: str | None,
             prepare: bool) -> tuple[str, tuple[tuple[str, str], ...], bool]:
    """(text to execute, ((name, PREPARE text), ...), whether it only reads), once
    per backend, name, arg, savepoint ("open", "wrap" or None: see ``run``) and
    ``prepare`` (False: every part sent whole, as through a transaction pooler)."""
    parts = _parts(name, postgres, arg)
    repeatable = all(is_read(part) for part in parts)
    rows = arg if isinstance(arg, int) else 0
    executes, prepares = [SAVEPOINT] if savepoint else [], []
    for part in parts:
        if savepoint == "wrap" and isinstance(part, Outcome) and RELEASE not in executes:
            executes.append(RELEASE)
        if not postgres or not prepare or rows > PREPARE_ROWS:
            executes.append(_placeholders(part, postgres))
            continue
        statement_name = "bitloot_" + hashlib.sha1(part.encode()).hexdigest()[:16]
        numbers = itertools.count(1)
        body = re.sub(r"\?", lambda _, numbers=numbers: f"${next(numbers)}", part)  # type: ignore[misc]
        prepares.append((statement_name, f"PREPARE {statement_name} AS {body}"))
        count = part.count("?")
        arguments = f" ({', '.join(['%s'] * count)})" if count else ""
        executes.append(f"EXECUTE {statement_name}{arguments}")
    if savepoint == "wrap" and RELEASE not in executes:
        executes.append(RELEASE)
    return "; ".join(executes), tuple(prepares), repeatable


class Outcome(str):
    """The last part of a statement: a read that reports what the writes before
    it did. Sent after the savepoint's RELEASE, so that the call still takes a
    single round trip while its result (all psycopg2 keeps) is this read's."""


def _parts(name: str, postgres: bool, arg: Hashable) -> tuple[str, ...]:
    parts = _BUILDERS[name](postgres, arg)
    return (parts,) if isinstance(parts, str) else parts


def _placeholders(text: str, postgres: bool) -> str:
    return text.replace("?", "%s") if postgres else text


# --------------------------------------------------------------------------- running


def api(function: Callable[P, R]) -> Callable[P, R]:
    """Translate database errors into StorageError, with no driver exception chained.

    The error is raised after the ``except`` block: ``raise ... from None``
    would still keep the driver's exception (whose text may quote the data)
    as ``__context__``.
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.monotonic()  # whether SQLite waited before it said busy
        try:
            return function(*args, **kwargs)
        except TransactionLost as exc:  # from db.SqliteDatabase: named after the call
            error = TransactionLost(function.__name__, exc.cause)
        except DATABASE_ERRORS as exc:
            error = _translate(function.__name__, exc, time.monotonic() - started)
        logger.debug("%s", error)
        raise error

    return wrapper


def _translate(operation: str, exc: BaseException, waited: float) -> StorageError:
    """The StorageError for driver error ``exc`` raised by service call ``operation``
    after ``waited`` seconds."""
    lost = _transaction_lost(exc)
    if sqlite_full(exc):
        return DatabaseFull(operation, lost)
    if lost:  # an I/O error, say: the caller's earlier writes are gone too
        return TransactionLost(operation, _describe(exc))
    if _is_busy(exc):
        seconds = _busy_timeout()
        return DatabaseBusy(operation, seconds, _declined_to_wait(exc, waited, seconds))
    return StorageError(operation, _describe(exc))


def _declined_to_wait(exc: BaseException, waited: float, seconds: float | None) -> bool:
    """Whether SQLite said busy without waiting its busy timeout: inside a transaction
    that has read, it never waits to write (SQLITE_BUSY_SNAPSHOT, or plain SQLITE_BUSY
    when another connection holds the write lock; only the time tells that one apart
    from a busy timeout that ran out)."""
    for error in (exc, exc.args[0] if exc.args else None):
        if getattr(error, "sqlite_errorname", None) == "SQLITE_BUSY_SNAPSHOT":
            return True
    # The busy handler gives up only once the whole timeout has passed.
    return bool(seconds) and waited < seconds / 2  # type: ignore[operator]  # bool(): not None


def _transaction_lost(exc: BaseException) -> bool:
    """Whether SQLite rolled back the caller's whole transaction with ``exc``."""
    try:
        db = bound_database()
    except ConfigurationError:
        return False
    lost = getattr(db, "transaction_lost", None)
    if lost is None or not lost():
        return False
    db.note_lost(exc)  # type: ignore[attr-defined]  # db.SqliteDatabase, as transaction_lost
    return True


#: PostgreSQL's foreign_key_violation.
_FOREIGN_KEY_SQLSTATE = "23503"


def foreign_key_violation(exc: BaseException) -> bool:
    """Whether driver error ``exc`` is a foreign key violation: the row referred to is gone."""
    original = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    if getattr(original, "pgcode", None) == _FOREIGN_KEY_SQLSTATE:
        return True
    return str(original).strip().upper().startswith("FOREIGN KEY CONSTRAINT FAILED")


#: PostgreSQL's lock_not_available (a lock_timeout ran out); SQLite's is SQLITE_LOCKED.
_BUSY_SQLSTATES = ("55P03",)


def _is_busy(exc: BaseException) -> bool:
    for error in (exc, exc.args[0] if exc.args else None, exc.__cause__, exc.__context__):
        if isinstance(error, BaseException) and (
            getattr(error, "pgcode", None) in _BUSY_SQLSTATES
            or (getattr(error, "sqlite_errorname", None) or "").startswith(
                ("SQLITE_BUSY", "SQLITE_LOCKED"))
            or str(error).strip().lower() in SQLITE_LOCKED
        ):
            return True
    return False


def _busy_timeout() -> float | None:
    """The bound SQLite database's busy timeout in seconds (None if unknown)."""
    try:
        db = bound_database()
        if isinstance(db, pw.SqliteDatabase):
            return cast(float, db.execute_sql("PRAGMA busy_timeout").fetchone()[0] / 1000)
    except Exception:  # noqa: BLE001 - only for the message
        pass
    return None


def _describe(exc: BaseException) -> str:
    """Driver error class and SQLSTATE; the text only where it cannot hold data."""
    original = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    name = type(original).__name__
    code = getattr(original, "pgcode", None)
    if code == INSUFFICIENT_PRIVILEGE:  # "permission denied for table orders": names, no data
        lines = str(original).strip().splitlines()
        return f"{name} (SQLSTATE {code}): {lines[0]}" if lines else f"{name} (SQLSTATE {code})"
    if code:
        return f"{name} (SQLSTATE {code})"
    if isinstance(exc, (pw.OperationalError, sqlite3.OperationalError)):
        lines = str(original).strip().splitlines()  # "database is locked" and the like
        return f"{name}: {lines[0]}" if lines else name
    return name


#: A unique violation: PostgreSQL's SQLSTATE, and how SQLite's message starts.
_UNIQUE_VIOLATION = "23505"
_SQLITE_UNIQUE = "UNIQUE constraint failed: "


def unique_violation(exc: BaseException) -> str | None:
    """What a unique violation ``exc`` names: the index on PostgreSQL, "table.column"
    on SQLite (SQLite names no index); None if ``exc`` is no unique violation."""
    original = driver_error(exc)
    if getattr(original, "pgcode", None) == _UNIQUE_VIOLATION:
        diag = getattr(original, "diag", None)
        return getattr(diag, "constraint_name", None) or ""
    text = str(original)
    if isinstance(original, (sqlite3.IntegrityError, pw.IntegrityError)) and text.startswith(
            _SQLITE_UNIQUE):
        return text[len(_SQLITE_UNIQUE):].strip()
    return None


def bound_database() -> pw.Database:
    """The database the models are bound to; inside a ``replicas.reads`` call, where
    its read should run (its replica, or itself: see replicas.py)."""
    database = unwrap(Order._meta.database)
    if database is None:
        raise ConfigurationError("no database: call bitloot_lite.connect() first")
    return replicas.routed(database)


#: The savepoint a call takes inside its caller's transaction. Calls never nest,
#: so one name serves, and SQLite reuses the statements it prepared for it.
SAVEPOINT = 'SAVEPOINT "bitloot_lite"'
RELEASE = 'RELEASE SAVEPOINT "bitloot_lite"'
_UNDO = ('ROLLBACK TO SAVEPOINT "bitloot_lite"', RELEASE)


def write(db: pw.Database, name: str, params: Sequence[Any] = (), arg: Hashable = None,
          result: bool = True) -> Cursor:
    """Run statement ``name``, the whole write of a call; returns its cursor.

    Outside a transaction the statement is atomic by itself. Inside the
    caller's, a failure must undo it and leave the caller's transaction
    usable. SQLite undoes a failed statement by itself, and the transaction
    goes on. PostgreSQL aborts the whole transaction, so there the statement
    runs in a savepoint, sent in the same round trip: ``SAVEPOINT; statement;
    RELEASE``, or, when its ``result`` (rows, rowcount) is needed, the
    ``RELEASE`` afterwards (psycopg2 keeps only the last statement's result).
    """
    if not (isinstance(db, pw.PostgresqlDatabase) and db.in_transaction()):
        cursor = run(db, name, params, arg)
        replicas.wrote(db)  # (in a transaction, its COMMIT tells the routing)
        return cursor
    try:
        cursor = run(db, name, params, arg, "open" if result else "wrap")
    except DATABASE_ERRORS:
        _undo(db)
        raise
    if result:  # the rows are in the cursor already: a client-side cursor fetched them all
        _execute(db, RELEASE, ())
    return cursor


class atomic:
    """Several statements as one: in a transaction of their own, or, inside the
    caller's, in a savepoint (so that our failure never aborts theirs)."""

    __slots__ = ("db", "own")

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.own: pw._atomic | None = None

    def __enter__(self) -> None:
        if self.db.in_transaction():
            _execute(self.db, SAVEPOINT, ())
        else:
            self.own = self.db.atomic()
            self.own.__enter__()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        if self.own is not None:
            return self.own.__exit__(kind, value, traceback)  # type: ignore[func-returns-value]
        if kind is None:
            _execute(self.db, RELEASE, ())
        else:
            _undo(self.db)
        return None


def _undo(db: pw.Database) -> None:
    """Back to our savepoint, and drop it. Nothing to do if the connection is
    gone (the server rolled the transaction back) or SQLite rolled the whole
    transaction back by itself (db.SqliteDatabase then refuses every later
    statement of it), and nothing can be done if the savepoint is gone (it was
    aborted before we came): the caller's transaction then fails as it would."""
    for gone in ("connection_lost", "transaction_lost"):
        lost = getattr(db, gone, None)
        if lost is not None and lost():
            return
    with contextlib.suppress(*DATABASE_ERRORS):
        for statement in _UNDO:
            _execute(db, statement, ())


_VARIANT = "89ab" * 4  # a random hex digit -> the RFC 4122 variant digit


def uuid4s(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, from one urandom call.

    The same 122 random bits as uuid.uuid4(), at a fifth of the cost: that
    matters when a call writes thousands of keys.
    """
    h = os.urandom(16 * count).hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-"
            f"{_VARIANT[int(h[i + 16], 16)]}{h[i + 17:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 32 * count, 32)]


def timestamps(db: pw.Database) -> tuple[dt.datetime, dt.datetime | str]:
    """Now, as an aware UTC datetime and as the parameter a timestamp column takes.

    SQLite gets the text that peewee (through sqlite3's adapter) would write,
    made once rather than once per parameter.
    """
    now = utcnow()
    naive = now.replace(tzinfo=None)
    return now, naive if isinstance(db, pw.PostgresqlDatabase) else naive.isoformat(" ")


_FIELDS: dict[type[BaseModel], tuple[tuple[str, Callable[[Any], Any]], ...]] = {
    model: tuple((field.name, field.python_value) for field in model._meta.sorted_fields)
    for model in (Order, OrderItem, Key, Payment, WebhookLog)
}


def load(model: type[M], row: Sequence[Any], into: M | None = None) -> M:
    """A model instance from a row of ``model``'s columns (in ``sorted_fields`` order).

    ``into``, the instance the caller passed, is updated in place and returned.
    """
    data = {name: None if value is None else convert(value)
            for (name, convert), value in zip(_FIELDS[model], row, strict=True)}
    if into is None:
        return make(model, **data)
    into.__data__.update(data)
    into._dirty.clear()
    return into


def make(model: type[M], **data: Any) -> M:
    """An instance holding ``data`` as loaded from the database (nothing dirty)."""
    instance = model.__new__(model)  # what Model.__init__ sets, without its defaults
    instance.__data__ = data
    instance._dirty = set()
    instance.__rel__ = {}
    return instance


def one(db: pw.Database, name: str, params: Sequence[Any], arg: Hashable = None) -> Any:
    return run(db, name, params, arg).fetchone()


# --------------------------------------------------------------------------- the statements


def _statement(builder: Builder) -> Builder:
    _BUILDERS[builder.__name__] = builder
    return builder


def _columns(model: type[BaseModel], alias: str | None = None) -> str:
    """Every column of ``model``, in ``sorted_fields`` order (the order rows are loaded in)."""
    prefix = f'"{alias}".' if alias else ""
    return ", ".join(f'{prefix}"{field.column_name}"' for field in model._meta.sorted_fields)


ORDER = _columns(Order)
KEY = _columns(Key)
PAYMENT = _columns(Payment)


@_statement
def insert_order(postgres: bool, _: object) -> str:
    return ('INSERT INTO "orders" ("id", "email", "status", "total", "createdAt", "updatedAt") '
            "VALUES (?, ?, 'created', ?, ?, ?)")


@_statement
def insert_items(postgres: bool, rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * rows)
    return ('INSERT INTO "order_items" '
            '("id", "orderId", "productId", "quantity", "createdAt", "updatedAt") '
            f"VALUES {values}")


@_statement
def create_order(postgres: bool, rows: int) -> str:
    # PostgreSQL only: the order in a data-modifying CTE, so one round trip writes
    # the order and its items atomically (the FK is checked at the end of the statement).
    return f'WITH "new_order" AS ({insert_order(postgres, None)}) {insert_items(postgres, rows)}'


@_statement
def select_order(postgres: bool, _: object) -> str:
    return f'SELECT {ORDER} FROM "orders" WHERE "id" = ?'


@_statement
def move_order(postgres: bool, arg: tuple[OrderStatus, tuple[OrderStatus, ...]]) -> str:
    """The status change, guarded by the statuses it may come from (and, to
    fulfilled, by every item having all its keys), so a racing caller cannot
    slip an illegal move between a check and the write."""
    target, sources = arg
    allowed = ", ".join(f"'{status.value}'" for status in sources) or "NULL"
    text = (f"UPDATE \"orders\" SET \"status\" = '{target.value}', \"updatedAt\" = ? "
            f'WHERE "id" = ? AND "status" IN ({allowed})')
    if target.value == "fulfilled":
        text += (' AND NOT EXISTS (SELECT 1 FROM "order_items" AS "i" '
                 'WHERE "i"."orderId" = "orders"."id" AND "i"."quantity" > '
                 '(SELECT count(*) FROM "keys" AS "k" WHERE "k"."orderItemId" = "i"."id"))')
    return f"{text} RETURNING {ORDER}"


@_statement
def order_fill(postgres: bool, _: object) -> str:
    return ('SELECT "i"."quantity", (SELECT count(*) FROM "keys" AS "k" '
            'WHERE "k"."orderItemId" = "i"."id") FROM "order_items" AS "i" WHERE "i"."orderId" = ?')


@_statement
def attach_reservation(postgres: bool, _: object) -> str:
    return ('UPDATE "orders" SET "kinguinReservationId" = ?, "updatedAt" = ? '
            "WHERE \"id\" = ? AND \"status\" = 'paid' AND \"kinguinReservationId\" IS NULL "
            'AND NOT EXISTS (SELECT 1 FROM "orders" AS "other" '
            'WHERE "other"."kinguinReservationId" = ?) '
            f"RETURNING {ORDER}")


@_statement
def find_order_by_reservation(postgres: bool, _: object) -> str:
    # A plain equality on the column: an index on it serves it (the planners prefer 006's
    # UQ_orders_kinguinReservationId, which also makes the LIMIT a formality).
    return (f'SELECT {ORDER} FROM "orders" WHERE "kinguinReservationId" = ? '
            'ORDER BY "createdAt", "id" LIMIT 1')


@_statement
def insert_keys(postgres: bool, rows: int) -> str | tuple[str, ...]:
    """A batch of keys, written only if the item's quantity leaves room for ``?`` more.

    The check is in the statement that writes. On PostgreSQL a concurrent call
    could still count before our keys commit, so the item's row is locked
    first, in the same query string: psycopg2 sends both statements in one
    round trip, run as one implicit transaction, and the INSERT, a statement
    of its own, counts with a snapshot taken after the lock was granted.
    SQLite needs no lock: its writers are serialised.
    """
    values = ", ".join(["(?, ?)"] * rows)
    key_id = '"column1"::uuid' if postgres else '"column1"'  # VALUES columns are text to PostgreSQL
    # Scalar subqueries, not a join with order_items: SQLite runs this form
    # about as fast as plain INSERTs. A missing item makes the quantity NULL:
    # no row is written. The condition does not depend on the row: the INSERT
    # writes all its rows or none.
    insert = ('INSERT INTO "keys" ("id", "orderItemId", "storageRef", "createdAt", '
              f'"updatedAt") SELECT {key_id}, ?, "column2", ?, ? FROM (VALUES {values}) AS "v" '
              'WHERE (SELECT "quantity" FROM "order_items" WHERE "id" = ?) >= ? + '
              '(SELECT count(*) FROM "keys" WHERE "orderItemId" = ?)')
    if not postgres:
        return insert
    # Whether the INSERT wrote (its first key is there), read in the same round
    # trip: inside the caller's transaction the RELEASE of our savepoint comes
    # last but one, and psycopg2 would give back only the RELEASE's row count.
    written = Outcome('SELECT count(*) FROM "keys" WHERE "id" = ?')
    return 'SELECT 1 FROM "order_items" WHERE "id" = ? FOR UPDATE', insert, written


@_statement
def item_fill(postgres: bool, _: object) -> str:
    return ('SELECT "quantity", (SELECT count(*) FROM "keys" WHERE "orderItemId" = ?) '
            'FROM "order_items" WHERE "id" = ?')


@_statement
def existing_refs(postgres: bool, rows: int) -> str:
    """Which of ``rows`` storage references some key already holds (UQ_keys_storageRef)."""
    values = ", ".join(["(?)"] * rows)
    return (f'SELECT "storageRef" FROM "keys" WHERE "storageRef" IN (SELECT "column1" '
            f'FROM (VALUES {values}) AS "v")')


@_statement
def reveal_key(postgres: bool, _: object) -> str:
    # Guarded by "viewedAt" IS NULL: of racing callers, exactly one sets it.
    return ('UPDATE "keys" SET "viewedAt" = ?, "updatedAt" = ? '
            f'WHERE "id" = ? AND "viewedAt" IS NULL RETURNING {KEY}')


@_statement
def select_key(postgres: bool, _: object) -> str:
    return f'SELECT {KEY} FROM "keys" WHERE "id" = ?'


@_statement
def keys_for_order(postgres: bool, _: object) -> str:
    # LEFT JOINs from the order: no row at all means no such order; a row of
    # NULLs, an order without keys.
    return (f'SELECT {_columns(Key, "k")} FROM "orders" AS "o" '
            'LEFT JOIN "order_items" AS "i" ON "i"."orderId" = "o"."id" '
            'LEFT JOIN "keys" AS "k" ON "k"."orderItemId" = "i"."id" '
            'WHERE "o"."id" = ? ORDER BY "k"."createdAt", "k"."id"')


@_statement
def unviewed_keys(postgres: bool, arg: tuple[bool, bool]) -> str:
    older, limited = arg
    return (f'SELECT {KEY} FROM "keys" WHERE "viewedAt" IS NULL'
            + (' AND "createdAt" < ?' if older else "")
            + ' ORDER BY "createdAt", "id"'
            + (" LIMIT ?" if limited else ""))


@_statement
def insert_payment(postgres: bool, _: object) -> str:
    # INSERT ... SELECT from orders: no row (rather than a foreign key error) if
    # the order does not exist; ON CONFLICT: no row if the payment already does.
    return ('INSERT INTO "payments" ("id", "externalId", "provider", "status", "rawPayload", '
            '"priceAmount", "priceCurrency", "payAmount", "payCurrency", "confirmations", '
            '"createdAt", "updatedAt", "orderId") '
            'SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "id" FROM "orders" WHERE "id" = ? '
            f'ON CONFLICT ("externalId") DO NOTHING RETURNING {PAYMENT}')


@_statement
def select_payment(postgres: bool, _: object) -> str:
    return f'SELECT {PAYMENT} FROM "payments" WHERE "externalId" = ?'


@_statement
def update_payment(postgres: bool, columns: tuple[str, ...]) -> str:
    """Compare-and-set: applies only if the status is still the one we read."""
    assignments = "".join(f', "{column}" = ?' for column in columns)
    return (f'UPDATE "payments" SET "status" = ?{assignments}, "updatedAt" = ? '
            f'WHERE "id" = ? AND "status" = ? RETURNING {PAYMENT}')


@_statement
def record_webhook(postgres: bool, _: object) -> str:
    # The upsert is atomic on both backends: racing duplicates leave one row.
    return ('INSERT INTO "webhook_logs" ("id", "externalId", "webhookType", "payload", '
            '"signature", "signatureValid", "processed", "orderId", "paymentId", "paymentStatus", '
            '"result", "error", "sourceIp", "createdAt", "updatedAt") '
            'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) '
            'ON CONFLICT ("externalId", "webhookType", "processed") DO UPDATE SET '
            '"attemptCount" = "webhook_logs"."attemptCount" + 1, '
            '"updatedAt" = excluded."updatedAt" '
            f"RETURNING {_columns(WebhookLog)}")
