"""Whether two open databases are one: by what they resolve to, never by their URLs' text.

``sqlite:///shop.db``, ``sqlite:///./shop.db``, a symlink or a hard link to it
and ``sqlite:///file:shop.db?uri=true`` are one file; ``127.0.0.1`` and
``localhost``, another port spelling, other ``?parameters``, PgBouncer in front
or a multi-host URL may all reach one PostgreSQL database. A copy from one of
them into another would write into its own source. So each side is asked:

- SQLite: the file SQLite itself opened (``PRAGMA database_list``), as the
  operating system knows it (device and inode: every path to it, links
  included, gives the same pair). An in-memory database is only ever itself.
- PostgreSQL: the cluster (``system_identifier`` of ``pg_control_system()``,
  which a physical standby shares with its primary: writing into the primary
  writes into the standby too) and ``current_database()``. Two schemas of one
  database count as the same database: the tables a URL's search_path reaches
  are not worth guessing when a wrong guess loses data.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ..db import is_postgres, is_sqlite, mask_url, unwrap
from ..errors import SameDatabase
from ..urls import unclear

if TYPE_CHECKING:
    import peewee as pw

#: What a database resolves to: equal for two handles on the same data.
Identity = tuple[object, ...]


def identity(database: pw.Database) -> tuple[Identity, str]:
    """(what ``database`` resolves to, that in words for a message)."""
    database = unwrap(database)
    if is_postgres(database):
        row = database.execute_sql("SELECT system_identifier::text, current_database() "
                                   "FROM pg_control_system()").fetchone()
        return ("postgresql", row[0], row[1]), (
            f"the same PostgreSQL cluster (system identifier {row[0]}) and database {row[1]}")
    if is_sqlite(database):
        files = {row[1]: row[2] for row in database.execute_sql("PRAGMA database_list")}
        path = files.get("main") or ""
        if not path:  # in memory, or a temporary file: private to this handle
            return ("sqlite-private", id(database)), "the same in-memory SQLite database"
        try:
            status = os.stat(path)
        except OSError:  # removed since it was opened: its name is all there is
            return ("sqlite-path", os.path.realpath(path)), f"the same SQLite file {path}"
        return ("sqlite", status.st_dev, status.st_ino), f"the same SQLite file {path}"
    return ("other", id(database)), "the same database object"


def describe(database: pw.Database) -> str:
    """The masked URL ``database`` was opened with (open_database records it), or a
    URL made from its settings (never with a password)."""
    database = unwrap(database)
    url = getattr(database, "bitloot_url", None)
    if isinstance(url, str):
        return url
    if is_sqlite(database):
        return f"sqlite:///{database.database}"
    params = database.connect_params
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return mask_url(f"postgresql://{user}{params.get('host', '')}{port}/{database.database}")


def refuse_same(source: pw.Database, destination: pw.Database) -> None:
    """Raise SameDatabase if ``source`` and ``destination`` are one database."""
    if is_postgres(source) != is_postgres(destination):
        return
    (mine, why), (theirs, _) = identity(source), identity(destination)
    if mine == theirs:
        raise SameDatabase(describe(source), describe(destination), why)


def refuse_same_file(source: pw.Database, url: str) -> None:
    """Raise SameDatabase if the SQLite file of ``url`` is the open ``source``'s: asked
    before ``url`` is opened, as SQLite fails on a second name of a file open in WAL
    mode ("disk I/O error", a hard link) where a copy would only be refused."""
    path = sqlite_file(url)
    if path is None or not is_sqlite(source):
        return
    try:
        status = os.stat(path)
    except OSError:  # not there yet: a new file is another database
        return
    mine, why = identity(source)
    if mine == ("sqlite", status.st_dev, status.st_ino):
        raise SameDatabase(describe(source), mask_url(url), why)


def sqlite_file(url: str) -> str | None:
    """The file a ``sqlite://`` URL names (its ?parameters left out; SQLite's own
    ``file:`` URI form read as SQLite reads it), or None (not SQLite, in memory)."""
    if not url.lower().startswith(("sqlite:", "sqlite+pool:")) or unclear(url):
        return None
    from playhouse import db_url  # as open_database reads it

    params = db_url.parse(url)
    name = str(params.get("database") or "")
    if params.get("uri") and name.startswith("file:"):
        name = name[5:].split("?", 1)[0].split("#", 1)[0]
        if name.startswith("//"):  # file://localhost/abs or file:///abs
            name = "/" + name[2:].partition("/")[2]
        name = unquote(name)
    return None if name in ("", ":memory:") else name
