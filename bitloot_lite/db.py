"""From a URL to a connected peewee Database, with the pragmas and timeouts we rely on."""

import contextlib
import logging
import os
import re
import select
import shlex
import socket
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import peewee as pw

try:
    import psycopg2
except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
    psycopg2 = None

from .errors import (
    SQLITE_FULL,
    BitlootError,
    DatabaseFull,
    DatabaseNotFound,
    DatabaseUnavailable,
    FolderNotFound,
    InvalidDatabaseURL,
    PostgresDatabaseNotFound,
    StorageError,
    TransactionLost,
)
from .urls import SECRET_PARAMETERS, redact, unclear, unsupported, url_secrets  # noqa: F401
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
#: server's now() default only yields UTC if the session's time zone is UTC. It
#: is set with a SET once per connection (when the server's default is not UTC),
#: not as an ``options=-c timezone=UTC`` startup parameter, which PgBouncer's
#: default configuration refuses. PgBouncer tracks TimeZone per client (it
#: watches the server's ParameterStatus reports) and sets it again on every
#: server connection it hands the client, in both pooling modes.
SET_UTC = "SET TIME ZONE 'UTC'"
_UTC_NAMES = ("UTC", "ETC/UTC", "UCT", "ETC/UCT", "ZULU", "ETC/ZULU", "UNIVERSAL", "ETC/UNIVERSAL")

#: bitloot-lite's own URL query parameters, taken out before the URL reaches the
#: driver. ``prepare``: server-side prepared statements (statements.py) on
#: (``true``), off (``false``), or ``auto`` (the default): on, unless a pooler
#: answers for the server (see PostgresqlDatabase.pooled).
URL_OPTIONS = {"prepare": {"true": True, "false": False, "auto": None}}

#: The models' Meta.database; ``connect`` binds it to the opened database.
database_proxy = pw.DatabaseProxy()

#: What a statement may raise: peewee's wrappers, or the driver's own exceptions where
#: peewee does not wrap them (a connection the server has closed, our direct cursors).
DRIVER_ERRORS: tuple[type[Exception], ...] = (pw.PeeweeException,) + (
    (psycopg2.Error,) if psycopg2 else ())
#: ... and sqlite3's unwrapped ones too: what the service API turns into StorageError.
DATABASE_ERRORS: tuple[type[Exception], ...] = DRIVER_ERRORS + (sqlite3.Error,)

#: The first bytes of statements that only read, and so may be sent twice.
_READS = ("SELECT", "SHOW", "VALUES", "TABLE", "EXPLAIN")


def is_read(sql: str) -> bool:
    """Whether ``sql`` (one statement, or several) only reads, so that running it
    again after a connection died mid-way cannot apply anything twice."""
    return all(part.lstrip().lstrip("(").upper().startswith(_READS)
               for part in sql.split(";") if part.strip())


class PostgresqlDatabase(pw.PostgresqlDatabase):
    """peewee's PostgresqlDatabase, reconnecting after the server closed the connection.

    A restarted or failed-over server, or a proxy that dropped an idle
    connection, leaves the connection dead; peewee would fail every later call
    on it. Here, outside a transaction, a statement never applies twice:

    - before a statement that writes, an idle connection is checked (a poll of
      its socket, no round trip): if the server has closed it (it says so, then
      closes), a new connection is opened first, and the statement sent once;
    - a statement that fails because the connection died while it ran is sent
      again on a new connection only if it only reads. A write is not: the
      server may have committed it before dying, and a second run could count
      a webhook attempt twice. The call fails (a StorageError), and the next
      call reconnects.

    Inside a transaction the server has already rolled back what the
    transaction did, so the error is raised, the rollback of the dead
    transaction is a no-op, and the next call reconnects. Nor does it reconnect
    inside a ``pinned()`` block: session state (the migration's advisory lock)
    would not survive a new connection.
    """

    #: Server-side prepared statements: True, False, or None (auto: on unless ``pooled``).
    prepare: bool | None = None

    if TYPE_CHECKING:  # peewee's per-thread state, which its stubs leave out
        _state: Any
        _pooled: bool | None

    def _initialize_connection(self, conn: Any) -> None:
        super()._initialize_connection(conn)  # type: ignore[misc]  # peewee's hook, not in stubs
        self._pooled = None
        statements = []
        zone = conn.get_parameter_status("TimeZone") or ""
        if zone.upper() not in _UTC_NAMES and "timezone" not in str(
                self.connect_params.get("options", "")).lower():  # the URL's own wins
            statements.append(SET_UTC)
        if self.prepare is None:
            statements.append("SELECT pg_backend_pid()")
        if not statements:
            return
        with conn.cursor() as cursor:
            cursor.execute("; ".join(statements))  # one round trip
            if self.prepare is None:
                self._pooled = cursor.fetchone()[0] != conn.get_backend_pid()
        if statements[0] == SET_UTC and (conn.get_parameter_status("TimeZone") or "").upper() \
                not in _UTC_NAMES and not getattr(self, "_warned_zone", False):
            self._warned_zone = True
            logger.warning("the session time zone could not be set to UTC: now() defaults "
                           "will not be UTC (the values bitloot-lite writes still are)")

    @property
    def pooled(self) -> bool | None:
        """Whether a pooler (PgBouncer, ...) answers for the server on this connection.

        A pooler hands its client a backend id of its own making (the id a
        cancel request quotes), not the server's: on a direct connection the
        two are the same backend's. Asked once per connection.
        """
        conn = self.connection()  # type: ignore[no-untyped-call]  # peewee's stub leaves it untyped
        if getattr(self, "_pooled", None) is None:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self._pooled = cursor.fetchone()[0] != conn.get_backend_pid()
        return self._pooled

    @property
    def prepares(self) -> bool:
        """Whether statements.py prepares its statements on this database's connections."""
        return self.prepare if self.prepare is not None else not self.pooled

    def execute_sql(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self.reconnecting(super().execute_sql, sql, params, repeatable=is_read(sql))

    def begin(self, *args: Any, **kwargs: Any) -> None:
        return self.reconnecting(super().begin, *args, repeatable=True, **kwargs)

    def rollback(self) -> None:
        if self.connection_lost():
            return  # the server rolled the transaction back when the connection died
        super().rollback()

    def connection_lost(self) -> bool:
        """Whether this thread's connection was open and the server has closed it."""
        connection = None if self._state.closed else self._state.conn
        return bool(connection is not None and getattr(connection, "closed", 0))

    def closed_by_server(self) -> bool:
        """Whether this thread's idle connection is known dead, or the server has
        closed it without our having noticed: it then sent its last words (an
        error, while we sent nothing) or end-of-file. A look at the socket only."""
        connection = None if self._state.closed else self._state.conn
        if connection is None:
            return False
        if getattr(connection, "closed", 0):
            return True
        try:
            readable = select.select([connection], [], [], 0)[0]
            if not readable:
                return False
            with socket.socket(fileno=os.dup(connection.fileno())) as sock:
                first = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True
        # Idle, the server sends only notices ("N"), notifications ("A") and
        # parameter reports ("S"); an error ("E") says it is closing the connection.
        return first in (b"", b"E")

    def reconnecting(self, function: Callable[..., T], *args: Any, repeatable: bool = False,
                     **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on a live connection, outside any transaction:

        on a new one if the server has closed the idle one; and, if the
        connection dies while it runs, once more on a new one when
        ``repeatable`` (it only reads: running it twice applies nothing twice).
        """
        state = self._state
        if getattr(state, "bitloot_no_retry", 0):  # an outer call retries, or pinned
            return function(*args, **kwargs)
        state.bitloot_no_retry = 1
        try:
            if not repeatable and not self.in_transaction() and self.closed_by_server():
                self._reopen()
                return function(*args, **kwargs)
            try:
                return function(*args, **kwargs)
            except DRIVER_ERRORS:
                if not repeatable or self.in_transaction() or not self.connection_lost():
                    raise
            self._reopen()
            return function(*args, **kwargs)
        finally:
            state.bitloot_no_retry = 0

    def _reopen(self) -> None:
        logger.warning("the database server closed the connection; reconnecting")
        with contextlib.suppress(*DRIVER_ERRORS):
            self.close()  # resets peewee's per-thread connection state even if it fails
        self.connect()

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
        except DRIVER_ERRORS as exc:
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


def _url_options(url: str) -> tuple[str, dict[str, bool | None]]:
    """(``url`` without bitloot-lite's own query parameters, {name: value}).

    Raises ValueError (with the reason) for a value that is not one of a name's.
    """
    base, mark, query = url.partition("?")
    if not mark:
        return url, {}
    kept, options = [], {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        name = unquote(key).lower()
        if name in URL_OPTIONS:
            choices = URL_OPTIONS[name]
            value = unquote(value).lower()
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
            options[name] = choices[value]
        elif pair:
            kept.append(pair)
    return (f"{base}?{'&'.join(kept)}" if kept else base), options


def is_multi_host(url: str) -> bool:
    """Whether ``url`` is a libpq multi-host URL (``postgresql://h1:5432,h2:5433/db``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        return False
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return "," in authority.rpartition("@")[2]


def _multi_host_database(url: str) -> PostgresqlDatabase:
    """The Database for a multi-host URL: libpq parses it (peewee's parser cannot)
    and picks the host (``target_session_attrs=read-write``: the primary)."""
    if psycopg2 is None:  # pragma: no cover - psycopg2-binary is a dependency
        raise pw.ImproperlyConfigured("psycopg2 is needed for a postgresql:// URL")
    dsn = "postgresql://" + url.partition("://")[2]  # libpq knows no postgres:// in a list
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        raise ValueError(str(exc).strip().splitlines()[0]) from None
    name = params.get("dbname")
    if not name:
        raise ValueError("a database URL names its database: postgresql://h1,h2/dbname")
    return PostgresqlDatabase(name, dsn=dsn)


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


def open_database(url: str | None = None, *, must_exist: bool = False) -> pw.Database:
    """Open (and test) the database at ``url`` without binding the models to it.

    ``must_exist``: a SQLite file that is not there is an error (DatabaseNotFound)
    instead of a new empty database: for read-only commands, where a typo in the
    path must not look like an empty database.
    """
    url = resolve_url(url)
    if not isinstance(url, str):  # its repr could hold a password: named by its type only
        raise InvalidDatabaseURL(f"<{type(url).__name__}>",
                                 "a database URL is a str, e.g. sqlite:///bitloot.db")
    masked = mask_url(url)
    reason = unclear(url) or unsupported(url)  # a URL the driver might misread never reaches it
    if reason is not None:
        raise InvalidDatabaseURL(masked, reason)
    # Each error is raised after its except block: ``raise ... from None`` only hides
    # __context__ from tracebacks, and the driver's exception (whose text may hold the
    # raw URL, password included) would still hang off ours.
    error: BitlootError | None = None
    try:
        from playhouse import db_url  # here, not at import: it loads every pool class

        driver_url, options = _url_options(url)
        if is_multi_host(driver_url):
            database = _multi_host_database(driver_url)
        else:
            database = db_url.connect(driver_url, unquote_password=True, unquote_user=True)
        if type(database) is pw.PostgresqlDatabase:  # the same settings, reconnecting
            database = PostgresqlDatabase(**db_url.parse(driver_url, unquote_password=True,
                                                          unquote_user=True))
        elif type(database) is pw.SqliteDatabase:  # the same, noticing lost transactions
            database = SqliteDatabase(**db_url.parse(url))
        if isinstance(database, PostgresqlDatabase):
            database.prepare = options.get("prepare")
    except (RuntimeError, ValueError) as exc:  # unknown scheme, no db name, bad port or host
        error = InvalidDatabaseURL(masked, _scrub(str(exc).replace(url, masked), url))
    if error is not None:
        raise error
    if isinstance(database, pw.SqliteDatabase):
        busy_timeout = database.connect_params.pop("busy_timeout", SQLITE_PRAGMAS["busy_timeout"])
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int):
            raise InvalidDatabaseURL(masked, "busy_timeout must be a whole number of "
                                             f"milliseconds, not {busy_timeout!r}")
        database._pragmas = list({**SQLITE_PRAGMAS, "busy_timeout": busy_timeout}.items())  # type: ignore[attr-defined]  # peewee's, private
        _check_sqlite_file(url, masked, database, must_exist)
    try:
        database.connect(reuse_if_open=True)
    except pw.ImproperlyConfigured as exc:  # e.g. "MySQL driver not installed!"
        error = InvalidDatabaseURL(masked, _scrub(str(exc), url))
    except (TypeError, ValueError) as exc:  # an unknown or malformed ?parameter (SQLite)
        error = InvalidDatabaseURL(masked, _scrub(str(exc), url))
    except pw.DatabaseError as exc:
        lines = str(exc).strip().splitlines()
        reason = _scrub(lines[0] if lines else type(exc).__name__, url)
        missing = _MISSING_DATABASE.search(reason) if is_postgres(database) else None
        error = (PostgresDatabaseNotFound(masked, missing.group(1), reason,
                                          _createdb(database, missing.group(1)))
                 if missing else DatabaseUnavailable(masked, reason))
    if error is not None:
        raise error
    database.bitloot_url = masked  # type: ignore[union-attr]  # for messages (local.identity)
    logger.debug("connected to %s", masked)
    return database


#: libpq's words (the server's FATAL) for a database the server does not have.
_MISSING_DATABASE = re.compile(r'database "(.+?)" does not exist')


def _createdb(database: pw.Database, name: str) -> str:
    """The ``createdb`` command line that creates ``name`` where ``database`` connects
    (host, port and user as its URL gives them; never a password)."""
    params = database.connect_params
    if "dsn" in params and psycopg2 is not None:  # a multi-host URL: libpq reads it
        params = psycopg2.extensions.parse_dsn(params["dsn"])
    flags = [f"{flag} {shlex.quote(str(params[key]))}" for flag, key in
             (("-h", "host"), ("-p", "port"), ("-U", "user")) if params.get(key)]
    return " ".join(["createdb", *flags, shlex.quote(name)])


def _check_sqlite_file(url: str, masked: str, database: pw.SqliteDatabase,
                       must_exist: bool) -> None:
    """sqlite://name.db (two slashes) names a host, not a file: peewee would open a
    temporary database and lose everything. And a missing file, when it must exist."""
    path = database.database
    netloc = urlsplit(url).netloc
    if netloc or not path:
        name = f"{netloc}{urlsplit(url).path}" or "bitloot.db"
        raise InvalidDatabaseURL(masked, f"a SQLite URL takes three slashes before a relative "
                                 f"path (sqlite:///{name}) and four before an absolute one "
                                 f"(sqlite:////abs/path/{name.rsplit('/', 1)[-1]})")
    if must_exist and path != ":memory:" and not path.startswith("file:") and (
            not os.path.exists(path)):
        try:  # a bad ?parameter is the better message: tried on a throwaway connection
            sqlite3.connect(":memory:", **database.connect_params).close()
        except (TypeError, ValueError) as exc:
            raise InvalidDatabaseURL(masked, _scrub(str(exc), url)) from None
        raise DatabaseNotFound(masked, os.path.abspath(path))
    folder = os.path.dirname(os.path.abspath(path))
    if path != ":memory:" and not path.startswith("file:") and not os.path.isdir(folder):
        raise FolderNotFound(masked, folder)  # else only "unable to open database file"


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
