"""The schema a set of migrations builds: replayed on a scratch database of the same backend.

``check`` compares the live database with this, not with a fixed list, so a
user's own migrations are checked as the shipped ones are. The migrations run
through bitloot-lite's runner (each in its transaction, SQLite's foreign keys
off around it, PostgreSQL's concurrent indexes built after the commit), so
the scratch schema is exactly what ``migrate`` makes.

Where the scratch database lives:

- SQLite: a file in a temporary folder, removed afterwards.
- PostgreSQL: a database of its own on the same server (``CREATE DATABASE
  ... TEMPLATE template0``), dropped afterwards. Not a schema inside the live
  database: a ``CREATE INDEX CONCURRENTLY`` there would wait for every
  long transaction of the live database, and a killed check would leave
  objects behind in it. It needs the CREATEDB privilege; without it the
  error says so (:class:`~bitloot_lite.errors.ScratchUnavailable`). It is
  given the schemas of the live session's search_path and that path, so a
  database kept in ``shop`` (the URL's options, the role's default) is
  replayed in ``shop`` too.

The snapshot is cached in-process per (backend, server version, each
migration's name and checksum): ``check`` runs often, the replay once.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee as pw

from . import schema
from .db import SQLITE_PRAGMAS, PostgresqlDatabase, is_postgres, is_sqlite, unwrap
from .errors import ConfigurationError, ScratchUnavailable
from .runner import Router

if TYPE_CHECKING:
    from ._typing import StrPath
    from .schema import Snapshot

__all__ = ["built", "built_schema", "scratch_database", "scratch_sqlite"]

logger = logging.getLogger("bitloot_lite.migrating")

#: (backend, server version, ((name, checksum), ...)) -> snapshot
_CACHE: dict[tuple[Any, ...], Snapshot] = {}

#: Scratch PostgreSQL databases are named with this prefix (and dropped after use).
SCRATCH_PREFIX = "bitloot_scratch_"


@contextlib.contextmanager
def scratch_sqlite() -> Iterator[pw.SqliteDatabase]:
    """A new, empty SQLite database in a temporary folder (our pragmas), connected;
    closed and removed after the block."""
    folder = tempfile.mkdtemp(prefix="bitloot-scratch-")
    scratch = pw.SqliteDatabase(str(Path(folder) / "scratch.db"),
                                pragmas=list(SQLITE_PRAGMAS.items()))
    try:
        scratch.connect()
        yield scratch
    finally:
        scratch.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(database: pw.Database) -> Iterator[pw.Database]:
    """A new, empty database of ``database``'s backend (its server, for PostgreSQL),
    connected; closed and removed after the block."""
    database = unwrap(database)
    if is_sqlite(database):
        with scratch_sqlite() as scratch:
            yield scratch
        return
    if not is_postgres(database):
        raise ConfigurationError(f"cannot replay migrations on a {type(database).__name__}")
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    (schemas,) = database.execute_sql("SELECT current_schemas(false)").fetchone()
    try:
        # template0: template1 may hold tables or types of the site's own.
        database.execute_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
    except pw.DatabaseError as exc:
        lines = str(exc).strip().splitlines()
        raise ScratchUnavailable(name, lines[0] if lines else type(exc).__name__) from None
    # The same connect parameters: the URL's options (a search_path among them) too.
    scratch = PostgresqlDatabase(name, **database.connect_params)
    try:
        _same_search_path(database, name, schemas)
        scratch.connect()
        for schema_name in schemas:
            scratch.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema_name)}")
        yield scratch
    finally:
        scratch.close()
        database.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _same_search_path(database: pw.Database, name: str, schemas: list[str]) -> None:
    """Give the scratch database ``name`` the search_path of ``database``'s session.

    ``schemas`` is that session's ``current_schemas(false)``: the schemas of its
    search_path that exist, wherever the path was set (the URL's options, the
    role's default, its default in that database, the database's own). The
    scratch database gets them (empty, created once connected) and, as the
    role's default ``IN DATABASE`` it, that path: it outranks every default
    but the URL's options, which the scratch connection shares. So the replay
    creates its tables in the schema ``migrate`` did (``current_schema()``).
    """
    if schemas:  # none: the live snapshot has refused already (schema.current_schema)
        path = ", ".join(map(_quoted, schemas))
        database.execute_sql(
            f'ALTER ROLE CURRENT_USER IN DATABASE "{name}" SET search_path = {path}')


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def built(database: pw.Database, router: Router, names: list[str]) -> None:
    """Apply ``names`` (in order) to the empty ``database`` as ``migrate`` would,
    concurrent indexes included; no lock (nobody else knows the database)."""
    for name in names:
        router.run_one(name, router.migrator, fake=False)
        router.build_concurrent_indexes(name)


def built_schema(database: pw.Database, names: list[str],
                 migrations_dir: StrPath | None = None) -> Snapshot:
    """The snapshot (``schema.snapshot``) of what migrations ``names`` build on
    ``database``'s backend; a fresh copy each call."""
    source = Router(database, migrations_dir)
    backend = "postgres" if is_postgres(database) else "sqlite"
    version = unwrap(database).server_version if backend == "postgres" else None
    files = tuple((name, hashlib.sha256(source.path(name).read_bytes()).hexdigest())
                  for name in names)
    key = (backend, version, files)
    if key not in _CACHE:
        try:
            with scratch_database(database) as scratch:
                built(scratch, Router(scratch, migrations_dir), names)
                _CACHE[key] = schema.snapshot(scratch)
        except ScratchUnavailable:
            # The application role may not create databases (issue 10's least
            # privilege), yet its `check` must work: for the shipped migrations
            # alone, their schema is recorded (target.py, the docs/SCHEMA.md oracle).
            recorded = _recorded(source, backend, names)
            if recorded is None:
                raise
            logger.info("no scratch database (no CREATEDB): the shipped migrations' "
                        "recorded schema is the expected one")
            return recorded
        logger.info("replayed %d migration(s) on a scratch %s database", len(names), backend)
    return copy.deepcopy(_CACHE[key])


def _recorded(router: Router, backend: str, names: list[str]) -> Snapshot | None:
    """The schema the shipped migrations ``names`` (the first len(names) of them) make,
    as target.py records it; None if any of ``names`` is the user's."""
    from . import target
    from .loading import shipped_migrations_dir

    shipped = Path(shipped_migrations_dir()).resolve()
    if any(router.path(name).resolve().parent != shipped for name in names):
        return None
    return target.expected(backend, len(names))
