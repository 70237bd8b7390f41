"""From a URL to a connected peewee Database, with the pragmas and timeouts we rely on."""

import contextlib
import logging
import os
import select
import socket
from urllib.parse import unquote, urlsplit, urlunsplit

import peewee as pw

try:
    import psycopg2
except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
    psycopg2 = None

from .errors import DatabaseUnavailable, InvalidDatabaseURL

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

#: What a statement on a connection the server has closed may raise (peewee's
#: wrappers, or the driver's own exceptions where peewee does not wrap them).
_CONNECTION_ERRORS = (pw.PeeweeException,) + ((psycopg2.Error,) if psycopg2 else ())

#: The first bytes of statements that only read, and so may be sent twice.
_READS = ("SELECT", "SHOW", "VALUES", "TABLE", "EXPLAIN")


def is_read(sql):
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
    prepare = None

    def _initialize_connection(self, conn):
        super()._initialize_connection(conn)
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
    def pooled(self):
        """Whether a pooler (PgBouncer, ...) answers for the server on this connection.

        A pooler hands its client a backend id of its own making (the id a
        cancel request quotes), not the server's: on a direct connection the
        two are the same backend's. Asked once per connection.
        """
        conn = self.connection()
        if getattr(self, "_pooled", None) is None:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self._pooled = cursor.fetchone()[0] != conn.get_backend_pid()
        return self._pooled

    @property
    def prepares(self):
        """Whether statements.py prepares its statements on this database's connections."""
        return self.prepare if self.prepare is not None else not self.pooled

    def execute_sql(self, sql, params=None):
        return self.reconnecting(super().execute_sql, sql, params, repeatable=is_read(sql))

    def begin(self, *args, **kwargs):
        return self.reconnecting(super().begin, *args, repeatable=True, **kwargs)

    def rollback(self):
        if self.connection_lost():
            return  # the server rolled the transaction back when the connection died
        super().rollback()

    def connection_lost(self):
        """Whether this thread's connection was open and the server has closed it."""
        connection = None if self._state.closed else self._state.conn
        return bool(connection is not None and getattr(connection, "closed", 0))

    def closed_by_server(self):
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

    def reconnecting(self, function, *args, repeatable=False, **kwargs):
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
            except _CONNECTION_ERRORS:
                if not repeatable or self.in_transaction() or not self.connection_lost():
                    raise
            self._reopen()
            return function(*args, **kwargs)
        finally:
            state.bitloot_no_retry = 0

    def _reopen(self):
        logger.warning("the database server closed the connection; reconnecting")
        with contextlib.suppress(*_CONNECTION_ERRORS):
            self.close()  # resets peewee's per-thread connection state even if it fails
        self.connect()

    @contextlib.contextmanager
    def pinned(self):
        """For the block, a lost connection is an error, never a silent reconnect."""
        state = self._state
        saved = getattr(state, "bitloot_no_retry", 0)
        state.bitloot_no_retry = 1
        try:
            yield
        finally:
            state.bitloot_no_retry = saved


def _url_options(url):
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


def is_multi_host(url):
    """Whether ``url`` is a libpq multi-host URL (``postgresql://h1:5432,h2:5433/db``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        return False
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return "," in authority.rpartition("@")[2]


def _multi_host_database(url):
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


def resolve_url(url=None):
    """The URL to use: ``url``, else $DATABASE_URL, else the default SQLite file."""
    return url or os.environ.get("DATABASE_URL") or DEFAULT_URL


#: Query parameters that carry a secret (libpq's and peewee's names), lower case.
SECRET_PARAMETERS = ("password", "sslpassword", "passwd")


def mask_url(url):
    """``url`` with its password (also one given as ``?password=``) as ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    changed = False
    if password:
        netloc = parts.netloc.rpartition("@")
        userinfo = netloc[0].split(":", 1)[0] + ":***"
        parts, changed = parts._replace(netloc=f"{userinfo}@{netloc[2]}"), True
    pairs = [pair.partition("=") for pair in parts.query.split("&")] if parts.query else []
    if any(_is_secret(key) for key, _, _ in pairs):
        query = "&".join(f"{key}=***" if _is_secret(key) else f"{key}{eq}{value}"
                         for key, eq, value in pairs)
        parts, changed = parts._replace(query=query), True
    # urlunsplit would turn sqlite:///x.db into sqlite:/x.db: rebuild only what changed.
    return urlunsplit(parts) if changed else url


def _is_secret(key):
    return unquote(key).lower() in SECRET_PARAMETERS


def url_secrets(url):
    """The strings of ``url`` that must never be printed, longest first (raw and decoded)."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    raw_query = [pair.partition("=") for pair in parts.query.split("&") if pair]
    found += [value for key, _, value in raw_query if _is_secret(key)]
    found = [secret for secret in found if secret]
    return sorted({*found, *map(unquote, found)}, key=len, reverse=True)


def is_postgres(database):
    return isinstance(unwrap(database), pw.PostgresqlDatabase)


def is_sqlite(database):
    return isinstance(unwrap(database), pw.SqliteDatabase)


def unwrap(database):
    """The Database a DatabaseProxy is bound to (None if unbound); any other value as is."""
    return database.obj if isinstance(database, pw.DatabaseProxy) else database


def open_database(url=None):
    """Open (and test) the database at ``url`` without binding the models to it."""
    url = resolve_url(url)
    if not isinstance(url, str):  # its repr could hold a password: named by its type only
        raise InvalidDatabaseURL(f"<{type(url).__name__}>",
                                 "a database URL is a str, e.g. sqlite:///bitloot.db")
    masked = mask_url(url)
    # Each error is raised after its except block: ``raise ... from None`` only hides
    # __context__ from tracebacks, and the driver's exception (whose text may hold the
    # raw URL, password included) would still hang off ours.
    error = None
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
        if isinstance(database, PostgresqlDatabase):
            database.prepare = options.get("prepare")
    except (RuntimeError, ValueError) as exc:  # unknown scheme, no db name, bad port or host
        reason = _scrub(str(exc).replace(url, masked), url)
        if "://" not in url:
            reason = "expected scheme://..., e.g. sqlite:///bitloot.db or postgresql://user@host/db"
        error = InvalidDatabaseURL(masked, reason)
    if error is not None:
        raise error
    if isinstance(database, pw.SqliteDatabase):
        busy_timeout = database.connect_params.pop("busy_timeout", SQLITE_PRAGMAS["busy_timeout"])
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int):
            raise InvalidDatabaseURL(masked, "busy_timeout must be a whole number of "
                                             f"milliseconds, not {busy_timeout!r}")
        database._pragmas = list({**SQLITE_PRAGMAS, "busy_timeout": busy_timeout}.items())
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


def connect(url=None, replica=None, *, max_replica_lag=None):
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


def _scrub(text, url):
    """Remove the URL's secrets from a driver message, should the driver echo them."""
    return redact(text, url_secrets(url))


def redact(text, secrets):
    """``text`` with each of ``secrets`` (see url_secrets) replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def recording(database):
    """Record (sql, params) of every statement ``database`` runs in the block.

    The SQL preview uses it, and the tests count queries with it.
    """
    statements = []
    original = database.execute_sql

    def execute_sql(sql, params=None, *args, **kwargs):
        statements.append((sql, tuple(params or ())))
        return original(sql, params, *args, **kwargs)

    database.execute_sql = execute_sql
    try:
        yield statements
    finally:
        del database.execute_sql
