"""From a URL to a connected peewee Database, with the pragmas and timeouts we rely on."""

import logging
import os
from urllib.parse import unquote, urlsplit, urlunsplit

import peewee as pw
from playhouse import db_url

from .errors import DatabaseUnavailable, InvalidDatabaseURL

logger = logging.getLogger("bitloot_lite")
logger.addHandler(logging.NullHandler())

#: With no DATABASE_URL, an embedded SQLite file in the working directory.
DEFAULT_URL = "sqlite:///bitloot.db"

#: Every SQLite connection: foreign keys enforced (SQLite's default is off),
#: WAL so readers never block the writer, and a busy timeout (ms) so a second
#: writer waits instead of failing at once.
SQLITE_PRAGMAS = {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 5000}

#: Our timestamp columns are "timestamp without time zone" holding UTC; the
#: server's now() default only yields UTC if the session's time zone is UTC.
POSTGRES_OPTIONS = "-c timezone=UTC"

#: The models' Meta.database; ``connect`` binds it to the opened database.
database_proxy = pw.DatabaseProxy()


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
    return isinstance(_unwrap(database), pw.PostgresqlDatabase)


def is_sqlite(database):
    return isinstance(_unwrap(database), pw.SqliteDatabase)


def _unwrap(database):
    return database.obj if isinstance(database, pw.DatabaseProxy) else database


def open_database(url=None):
    """Open (and test) the database at ``url`` without binding the models to it."""
    url = resolve_url(url)
    masked = mask_url(url)
    # Each error is raised after its except block: ``raise ... from None`` only hides
    # __context__ from tracebacks, and the driver's exception (whose text may hold the
    # raw URL, password included) would still hang off ours.
    error = None
    try:
        database = db_url.connect(url, unquote_password=True, unquote_user=True)
    except (RuntimeError, ValueError) as exc:  # unknown scheme, no db name, bad port or host
        reason = _scrub(str(exc).replace(url, masked), url)
        if "://" not in url:
            reason = "expected scheme://..., e.g. sqlite:///bitloot.db or postgresql://user@host/db"
        error = InvalidDatabaseURL(masked, reason)
    if error is not None:
        raise error
    if isinstance(database, pw.SqliteDatabase):
        database._pragmas = list(SQLITE_PRAGMAS.items())
    elif isinstance(database, pw.PostgresqlDatabase):
        # An options= in the URL's query wins over ours.
        database.connect_params.setdefault("options", POSTGRES_OPTIONS)
    try:
        database.connect(reuse_if_open=True)
    except pw.ImproperlyConfigured as exc:  # e.g. "MySQL driver not installed!"
        error = InvalidDatabaseURL(masked, _scrub(str(exc), url))
    except pw.DatabaseError as exc:
        lines = str(exc).strip().splitlines()
        error = DatabaseUnavailable(masked, _scrub(lines[0] if lines else type(exc).__name__, url))
    if error is not None:
        raise error
    logger.debug("connected to %s", masked)
    return database


def connect(url=None):
    """Open the database at ``url`` and bind every model to it; returns the Database."""
    database = open_database(url)
    database_proxy.initialize(database)
    return database


def _scrub(text, url):
    """Remove the URL's secrets from a driver message, should the driver echo them."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text
