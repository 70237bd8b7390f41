"""From a URL to a connected peewee Database, with the pragmas and timeouts we rely on."""

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import peewee as pw

try:
    import psycopg2
except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
    psycopg2 = None

from .errors import (
    SQLITE_FULL,
    BitlootError,
    DatabaseFull,
    DatabaseUnavailable,
    InvalidDatabaseURL,
    StorageError,
    TransactionLost,
)
from .urls import SECRET_PARAMETERS, redact, unclear, url_secrets  # noqa: F401
from .urls import mask_url as mask_url  # re-exported: bitloot_lite.mask_url
from .urls import scrub as _scrub

T = TypeVar("T")

logger = logging.getLogger("bitloot_lite")
logger.addHandler(logging.NullHandler())

#: With no DATABASE_URL, an embedded SQLite file in the working directory.
DEFAULT_URL = "sqlite:///bitloot.db"

#: Every SQLite connection: foreign keys enforced (SQLite's default is off),
#: WAL so readers never block the writer, and a busy timeout (ms) so a second
#: writer waits instead of failing at once (then: DatabaseBusy). A URL may set
#: another: ``sqlite:///bitloot.db?busy_timeout=2000``.
SQLITE_PRAGMAS = {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 5000}

#: Our timestamp columns are "timestamp without time zone" holding UTC; the
#: server's now() default only yields UTC if the session's time zone is UTC.
POSTGRES_OPTIONS = "-c timezone=UTC"

#: The models' Meta.database; ``connect`` binds it to the opened database.
database_proxy = pw.DatabaseProxy()

#: What a statement on a connection the server has closed may raise (peewee's
#: wrappers, or the driver's own exceptions where peewee does not wrap them).
_CONNECTION_ERRORS = (pw.PeeweeException,) + ((psycopg2.Error,) if psycopg2 else ())


class PostgresqlDatabase(pw.PostgresqlDatabase):
    """peewee's PostgresqlDatabase, reconnecting after the server closed the connection.

    A restarted or failed-over server, or a proxy that dropped an idle
    connection, leaves the connection dead; peewee would fail every later call
    on it. Here, a statement (or a BEGIN) that fails because the connection is
    gone is tried once more on a new connection, but only outside a transaction:
    inside one, the server has already rolled back what the transaction did, so
    the error is raised (a service call turns it into a StorageError), the
    rollback of the dead transaction is a no-op, and the next call reconnects.
    Nothing is ever half applied or applied twice by the retry itself, as the
    statement retried is one that ran in autocommit mode and did not complete.
    (If the server dies after committing such a statement but before answering,
    the retry runs it again: our inserts then fail on their primary key, and
    the guarded updates match nothing.)

    Nor does it reconnect inside a ``pinned()`` block: session state (the
    migration's advisory lock) would not survive a new connection.
    """

    if TYPE_CHECKING:  # peewee's per-thread state, which its stubs leave out
        _state: Any

    def execute_sql(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self.reconnecting(super().execute_sql, sql, params)

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        return self.reconnecting(super().begin, *args, **kwargs)

    def rollback(self) -> None:
        if self.connection_lost():
            return  # the server rolled the transaction back when the connection died
        super().rollback()

    def connection_lost(self) -> bool:
        """Whether this thread's connection was open and the server has closed it."""
        connection = None if self._state.closed else self._state.conn
        return bool(connection is not None and getattr(connection, "closed", 0))

    def reconnecting(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)``, run once more on a new connection if it
        failed because the connection was lost, outside any transaction."""
        state = self._state
        if getattr(state, "bitloot_no_retry", 0):  # an outer call retries, or pinned
            return function(*args, **kwargs)
        state.bitloot_no_retry = 1
        try:
            try:
                return function(*args, **kwargs)
            except _CONNECTION_ERRORS:
                if self.in_transaction() or not self.connection_lost():
                    raise
            logger.warning("the database server closed the connection; reconnecting")
            with contextlib.suppress(*_CONNECTION_ERRORS):
                self.close()  # resets peewee's per-thread connection state even if it fails
            self.connect()
            return function(*args, **kwargs)
        finally:
            state.bitloot_no_retry = 0

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """For the block, a lost connection is an error, never a silent reconnect."""
        state = self._state
        saved = getattr(state, "bitloot_no_retry", 0)
        state.bitloot_no_retry = 1
        try:
            yield
        finally:
            state.bitloot_no_retry = saved


class SqliteDatabase(pw.SqliteDatabase):
    """peewee's SqliteDatabase, which notices when SQLite rolled a transaction back itself.

    On a full disk, an I/O error or out of memory SQLite may roll back the whole
    transaction, not just the failed statement (sqlite.org/lang_transaction.html).
    peewee's transaction stack still says a transaction is open, so every later
    statement of the ``with db.atomic()`` block would run in autocommit mode and
    commit at once (a savepoint outside a transaction is a transaction of its
    own), and leaving the block would raise peewee's "cannot rollback - no
    transaction is active". sqlite3's ``in_transaction`` tells the truth: while
    peewee holds a transaction SQLite no longer has, every statement (and the
    commit) raises TransactionLost, so nothing more of the block is committed;
    rolling back what is already gone is a no-op.
    """

    if TYPE_CHECKING:  # peewee's per-thread state, which its stubs leave out
        _state: Any

    def transaction_lost(self) -> bool:
        """Whether peewee holds a transaction open that SQLite has rolled back."""
        state = self._state
        if (state.closed or not state.transactions or state.conn.in_transaction
                or getattr(state, "bitloot_beginning", False)):
            return False
        # manual_commit() blocks hold no transaction by design.
        return not any(isinstance(block, pw._manual) for block in state.transactions)

    def note_lost(self, exc: BaseException) -> None:
        """Remember the error that made SQLite roll back, for the later TransactionLost."""
        state = self._state
        if self.transaction_lost() and getattr(state, "bitloot_lost_cause", None) is None:
            lines = str(exc).strip().splitlines()
            state.bitloot_lost_cause = lines[0] if lines else type(exc).__name__

    def _lost(self, operation: str) -> TransactionLost:
        return TransactionLost(operation, getattr(self._state, "bitloot_lost_cause", None))

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        # A BEGIN starts afresh; peewee's transaction.commit() and rollback() inside
        # a block send it with the block still on the stack (its cursor is let through).
        state = self._state
        state.bitloot_lost_cause, state.bitloot_beginning = None, True
        try:
            return super().begin(*args, **kwargs)
        finally:
            state.bitloot_beginning = False

    def cursor(self, named_cursor: Any = None) -> Any:
        # Every statement, ours (statements._execute) and peewee's, takes a cursor here.
        if self.transaction_lost():
            raise self._lost("a statement")
        return super().cursor(named_cursor)  # type: ignore[no-untyped-call]

    def execute_sql(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        if self.transaction_lost() and sql.lstrip().upper().startswith("ROLLBACK TO"):
            return pw.SqliteDatabase.cursor(self)  # the savepoint went with the transaction
        try:
            return super().execute_sql(sql, params)  # type: ignore[no-untyped-call]
        except _CONNECTION_ERRORS as exc:
            self.note_lost(exc)
            raise

    def commit(self) -> Any:
        # peewee pops its transaction off the stack before it commits, so this
        # asks SQLite alone: no transaction to commit means it was rolled back.
        if not self._state.closed and not self._state.conn.in_transaction:
            raise self._lost("commit")
        # A full disk often shows only here, when the WAL is written. peewee
        # rolls back after a failed commit and re-raises: a BitlootError, then.
        error: BitlootError | None = None
        try:
            return super().commit()
        except pw.DatabaseError as exc:
            original = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc
            lines = str(original).strip().splitlines()
            error = (DatabaseFull("commit", transaction_lost=True) if sqlite_full(exc) else
                     StorageError("commit", f"{type(original).__name__}: {lines[0]}" if lines
                                  else type(original).__name__))
        raise error

    def rollback(self) -> None:
        if not self._state.closed and not self._state.conn.in_transaction:
            return  # SQLite has rolled it back already
        return super().rollback()


def sqlite_full(exc: BaseException) -> bool:
    """Whether ``exc`` (a driver error, or peewee's wrapping one) is SQLITE_FULL: the
    disk, or SQLite's max_page_count, is full."""
    for error in (exc, exc.args[0] if exc.args else None):
        if isinstance(error, BaseException) and (
            (getattr(error, "sqlite_errorname", None) or "").startswith("SQLITE_FULL")
            or str(error).strip().lower() == SQLITE_FULL
        ):
            return True
    return False


def resolve_url(url: str | None = None) -> str:
    """The URL to use: ``url``, else $DATABASE_URL, else the default SQLite file."""
    return url or os.environ.get("DATABASE_URL") or DEFAULT_URL


def is_postgres(database: object) -> bool:
    return isinstance(unwrap(database), pw.PostgresqlDatabase)


def is_sqlite(database: object) -> bool:
    return isinstance(unwrap(database), pw.SqliteDatabase)


def unwrap(database: object) -> Any:
    """The Database a DatabaseProxy is bound to (None if unbound); any other value as is."""
    return database.obj if isinstance(database, pw.DatabaseProxy) else database


def driver_error(exc: BaseException) -> BaseException:
    """The driver's exception behind ``exc``: peewee keeps it as ``orig``."""
    original = getattr(exc, "orig", None)
    if isinstance(original, BaseException):
        return original
    return exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc


def open_database(url: str | None = None) -> pw.Database:
    """Open (and test) the database at ``url`` without binding the models to it."""
    url = resolve_url(url)
    if not isinstance(url, str):  # its repr could hold a password: named by its type only
        raise InvalidDatabaseURL(f"<{type(url).__name__}>",
                                 "a database URL is a str, e.g. sqlite:///bitloot.db")
    masked = mask_url(url)
    reason = unclear(url)  # a URL the driver might misread is never handed to it
    if reason is not None:
        raise InvalidDatabaseURL(masked, reason)
    # Each error is raised after its except block: ``raise ... from None`` only hides
    # __context__ from tracebacks, and the driver's exception (whose text may hold the
    # raw URL, password included) would still hang off ours.
    error: BitlootError | None = None
    try:
        from playhouse import db_url  # here, not at import: it loads every pool class

        database: pw.Database = db_url.connect(url, unquote_password=True, unquote_user=True)
        if type(database) is pw.PostgresqlDatabase:  # the same settings, reconnecting
            database = PostgresqlDatabase(**db_url.parse(url, unquote_password=True,
                                                          unquote_user=True))
        elif type(database) is pw.SqliteDatabase:  # the same, noticing lost transactions
            database = SqliteDatabase(**db_url.parse(url))
    except (RuntimeError, ValueError) as exc:  # unknown scheme, no db name, bad port or host
        error = InvalidDatabaseURL(masked, _scrub(str(exc).replace(url, masked), url))
    if error is not None:
        raise error
    if isinstance(database, pw.SqliteDatabase):
        busy_timeout = database.connect_params.pop("busy_timeout", SQLITE_PRAGMAS["busy_timeout"])
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int):
            raise InvalidDatabaseURL(masked, "busy_timeout must be a whole number of "
                                             f"milliseconds, not {busy_timeout!r}")
        database._pragmas = list({**SQLITE_PRAGMAS, "busy_timeout": busy_timeout}.items())  # type: ignore[attr-defined]
    elif isinstance(database, pw.PostgresqlDatabase):
        # An options= in the URL's query wins over ours.
        database.connect_params.setdefault("options", POSTGRES_OPTIONS)
    try:
        database.connect(reuse_if_open=True)
    except pw.ImproperlyConfigured as exc:  # e.g. "MySQL driver not installed!"
        error = InvalidDatabaseURL(masked, _scrub(str(exc), url))
    except (TypeError, ValueError) as exc:  # an unknown or malformed ?parameter (SQLite)
        error = InvalidDatabaseURL(masked, _scrub(str(exc), url))
    except pw.DatabaseError as exc:
        lines = str(exc).strip().splitlines()
        error = DatabaseUnavailable(masked, _scrub(lines[0] if lines else type(exc).__name__, url))
    if error is not None:
        raise error
    logger.debug("connected to %s", masked)
    return database


def connect(url: str | None = None, replica: str | None = None, *,
            max_replica_lag: float | None = None) -> pw.Database:
    """Open the database at ``url`` and bind every model to it; returns the Database.

    ``replica``: the URL of a read replica of that database (PostgreSQL): the
    read-only service calls, and model queries through ``from_replica``, read
    there, with read-your-writes (see replicas.py); the replica is opened on the
    first read, so one that is down never stops ``connect``. By default
    $DATABASE_REPLICA_URL, but only when ``url`` is None as well (it pairs with
    $DATABASE_URL: a replica of another database would serve wrong rows); ""
    for none. ``max_replica_lag``: seconds behind the primary past which reads
    go to the primary (default replicas.DEFAULT_MAX_LAG).
    """
    if replica is None and url is None:
        replica = os.environ.get("DATABASE_REPLICA_URL")
    database = open_database(url)
    if replica:
        from .replicas import attach  # here: db.py knows nothing of routing until asked

        options = {} if max_replica_lag is None else {"max_lag": max_replica_lag}
        attach(database, replica, **options)
    database_proxy.initialize(database)
    return database


@contextlib.contextmanager
def recording(database: pw.Database) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Record (sql, params) of every statement ``database`` runs in the block.

    The SQL preview uses it, and the tests count queries with it.
    """
    statements = []
    original: Callable[..., Any] = database.execute_sql

    def execute_sql(sql: str, params: Sequence[Any] | None = None, *args: Any,
                    **kwargs: Any) -> Any:
        statements.append((sql, tuple(params or ())))
        return original(sql, params, *args, **kwargs)

    database.execute_sql = execute_sql  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        del database.execute_sql
