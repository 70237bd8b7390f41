"""peewee-migrate's Router, made safe for deployments: history with checksums,
SQLite rebuilds that cannot cascade, PostgreSQL DDL that cannot stall the app."""

import contextlib
import datetime as dt
import hashlib
import importlib.resources
import logging
import os
import re
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import peewee as pw
from peewee_migrate import Router as _Router
from peewee_migrate.models import MigrateHistory

from . import validating as check
from .db import is_postgres, is_sqlite, unwrap
from .errors import (
    ConfigurationError,
    InvalidMigrationFiles,
    MigrationFailed,
    MigrationsNotFound,
    UnknownMigration,
    ValidationError,
)
from .fields import utcnow
from .schema import HISTORY_TABLE

logger = logging.getLogger("bitloot_lite.migrating")

#: PostgreSQL's lock_timeout for a migration's statements (seconds): a DDL
#: statement that would queue behind a long transaction fails instead of
#: blocking every query on that table behind it.
DDL_LOCK_TIMEOUT = 5.0


#: A migration file's name: a three-digit number, an underscore, a name.
MIGRATION_FILE = re.compile(r"^(?P<number>\d{3})_(?P<name>[A-Za-z0-9_]+)\.py$")


def shipped_migrations_dir() -> Path:
    """The migrations shipped inside the package (in a clone: the top-level migrations/).

    $BITLOOT_SHIPPED_MIGRATIONS_DIR replaces them with an edited copy: for the
    tests and benchmarks of the shipped migrations themselves, never a deployment.
    """
    replaced = os.environ.get("BITLOOT_SHIPPED_MIGRATIONS_DIR")
    if replaced:
        return Path(replaced)
    return Path(str(importlib.resources.files("bitloot_lite.migrations")))


def default_migrations_dir() -> Path:
    """The shipped migrations' folder (kept for callers of earlier versions)."""
    return shipped_migrations_dir()


def user_migrations_dir(migrations_dir: str | os.PathLike | None = None) -> Path | None:
    """The user's own migrations folder: ``migrations_dir``, else $BITLOOT_MIGRATIONS_DIR.

    None when neither is set. Its migrations run after the shipped ones.
    """
    if migrations_dir is not None and not isinstance(migrations_dir, (str, os.PathLike)):
        raise ValidationError("migrations_dir", migrations_dir,
                              f"must be a path, not {type(migrations_dir).__name__}")
    configured = migrations_dir or os.environ.get("BITLOOT_MIGRATIONS_DIR")
    return Path(configured) if configured else None


def _scan(folder: Path, problems: list[str]) -> list[tuple[str, Path]]:
    """(name, path) of the migration files in ``folder``; misnamed ones added to ``problems``."""
    found = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix != ".py" or path.name == "__init__.py":
            continue  # __pycache__, notes, the package's own __init__
        if MIGRATION_FILE.match(path.name):
            found.append((path.stem, path))
        else:
            problems.append(f"{path}: not a migration file name (NNN_name.py, e.g. "
                            "006_orders_note.py: three digits, an underscore, letters, "
                            "digits or underscores)")
    return found


def migration_files(migrations_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """Every migration, in the order they run, as (name, path): the shipped ones, then the
    user's (``migrations_dir``, else $BITLOOT_MIGRATIONS_DIR), numbered after them.

    Reads no database. Raises MigrationsNotFound if the shipped folder is
    missing or empty or the user's folder is missing (an empty one adds nothing),
    and InvalidMigrationFiles, naming every offending file, for a file not named
    NNN_name.py, two files with one number, or a user's file that collides with
    or does not come after the shipped ones.
    """
    shipped_dir = shipped_migrations_dir()
    if not shipped_dir.is_dir():
        raise MigrationsNotFound(shipped_dir)
    problems: list[str] = []
    shipped = _scan(shipped_dir, problems)
    if not shipped and not problems:
        raise MigrationsNotFound(shipped_dir)
    user_dir = user_migrations_dir(migrations_dir)
    users: list[tuple[str, Path]] = []
    if user_dir is not None:
        if not user_dir.is_dir():
            raise MigrationsNotFound(user_dir)
        if user_dir.resolve() != shipped_dir.resolve():  # `--migrations migrations` in a clone
            users = _scan(user_dir, problems)
    shipped_paths = {name: path for name, path in shipped}
    shipped_numbers = {int(name[:3]): path for name, path in shipped}
    last = max(shipped_numbers, default=0)
    for name, path in users:
        number = int(name[:3])
        if name in shipped_paths:
            problems.append(f"{path}: has the name of the shipped migration "
                            f"{shipped_paths[name]}; number it after {last:03d}")
        elif number <= last:
            clash = f" (like {shipped_numbers[number]})" if number in shipped_numbers else ""
            problems.append(f"{path}: numbered {number:03d}{clash}, but the shipped migrations "
                            f"go up to {last:03d}; a user's migration comes after them "
                            f"(from {last + 1:03d})")
    # Two files of one folder with one number (across folders, reported above).
    for found in (shipped, [(n, p) for n, p in users if int(n[:3]) > last]):
        by_number: dict[int, list[Path]] = {}
        for name, path in found:
            by_number.setdefault(int(name[:3]), []).append(path)
        for number, paths in sorted(by_number.items()):
            if len(paths) > 1:
                problems.append(f"number {number:03d} is used by more than one migration: "
                                + ", ".join(str(path) for path in paths))
    if problems:
        raise InvalidMigrationFiles(problems)
    return shipped + users


@dataclass(frozen=True)
class Applied:
    """A row of the history: when a migration was applied, and its file's checksum then."""

    applied_at: dt.datetime
    checksum: str | None


class Router(_Router):
    """The Router bitloot-lite runs migrations with.

    - Each Router has its own history model (peewee-migrate binds one global
      class to the last database it saw), with a ``checksum`` column: the
      sha256 of the migration file when it was applied.
    - Reading the history never creates the history table.
    - On SQLite, foreign keys are switched off around each migration (the
      pragma is ignored inside a transaction, so it must happen before BEGIN)
      and checked with ``PRAGMA foreign_key_check`` before the commit: a table
      rebuild then cannot cascade-delete child rows, nor leave orphans.
    - On PostgreSQL each migration runs with ``SET LOCAL lock_timeout``.
    - A missing or empty migrations folder is an error, not a folder created.
    """

    def __init__(self, database, migrate_dir=None, ddl_lock_timeout=DDL_LOCK_TIMEOUT):
        if not isinstance(unwrap(database), pw.Database):
            raise ConfigurationError(f"expected a connected peewee Database (see "
                                     f"bitloot_lite.connect), not {type(database).__name__}")
        ddl_lock_timeout = check.seconds("ddl_lock_timeout", ddl_lock_timeout)
        #: The user's folder (None: only the shipped migrations); see migration_files.
        self.user_dir = user_migrations_dir(migrate_dir)
        super().__init__(database, migrate_dir=shipped_migrations_dir(),
                         migrate_table=HISTORY_TABLE)
        self.ddl_lock_timeout = ddl_lock_timeout
        #: Set by the SQL preview, which runs every step inside one transaction it
        #: rolls back, with foreign keys already off.
        self.previewing = False

    @cached_property
    def model(self):
        router = self

        class History(MigrateHistory):
            checksum = pw.CharField(max_length=64, null=True)

            class Meta:
                database = router.database
                table_name = router.migrate_table

        if not self.database.table_exists(HISTORY_TABLE):
            History.create_table()
        elif not self._has_checksums():  # a history table made by peewee-migrate's own CLI
            self.database.execute_sql(
                f'ALTER TABLE "{HISTORY_TABLE}" ADD COLUMN "checksum" VARCHAR(64)'
            )
        return History

    def _has_checksums(self):
        return any(c.name == "checksum" for c in self.database.get_columns(HISTORY_TABLE))

    @cached_property
    def files(self) -> dict[str, Path]:
        """{name: path} of every migration, in order: the shipped ones, then the user's."""
        return dict(migration_files(self.user_dir))

    @property
    def todo(self) -> list[str]:
        """Every migration's name, in order, across both folders."""
        return list(self.files)

    @property
    def done(self):
        return list(self.history())

    def history(self):
        """{name: Applied} for the applied migrations, oldest first; read-only."""
        if not self.database.table_exists(HISTORY_TABLE):
            return {}
        checksum = ', "checksum"' if self._has_checksums() else ", NULL"
        cursor = self.database.execute_sql(
            f'SELECT "name", "migrated_at"{checksum} FROM "{HISTORY_TABLE}" ORDER BY "id"'
        )
        return {name: Applied(_aware(at), digest) for name, at, digest in cursor.fetchall()}

    def path(self, name: str) -> Path:
        """The file of migration ``name``, in either folder (UnknownMigration if none)."""
        path = self.files.get(name)
        if path is None or not path.is_file():
            raise UnknownMigration(name, self.todo)
        return path

    def resolve(self, name: str) -> str:
        """A migration's full name from its full name or its number ("006", "6")."""
        if name in self.files:
            return name
        text = str(name).strip()
        if text.isdigit():
            matches = [full for full in self.files if int(full[:3]) == int(text)]
            if len(matches) == 1:
                return matches[0]
        raise UnknownMigration(name, self.todo)

    def checksum(self, name):
        """sha256 of the migration file's bytes."""
        return hashlib.sha256(self.path(name).read_bytes()).hexdigest()

    def scope(self, name):
        """The migration module's globals (migrate, rollback, UPSTREAM ...)."""
        path = self.path(name)
        scope = {"__file__": str(path), "__name__": f"migration_{name}"}
        # Compiled with its real file name, so tracebacks point into the file.
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), scope)
        return scope

    def read(self, name):
        scope = self.scope(name)
        return scope.get("migrate"), scope.get("rollback")

    def record(self, names):
        """Mark ``names`` applied without running them (adoption, baseline)."""
        with self.database.atomic():
            for name in names:
                self.model.create(name=name, migrated_at=_utcnow(), checksum=self.checksum(name))
        self.__dict__.pop("migrator", None)  # replay the new history next time

    def run_one(self, name, migrator, *, fake=True, downgrade=False, force=False):
        if fake:
            return super().run_one(name, migrator, fake=True, downgrade=downgrade, force=force)
        migrate, rollback = self.read(name)
        function = rollback if downgrade else migrate
        direction = "rollback" if downgrade else "migrate"
        logger.info("%s %s", direction, name)
        try:
            with self._foreign_keys_off(), self.database.atomic():
                if is_postgres(self.database) and self.ddl_lock_timeout:
                    milliseconds = int(self.ddl_lock_timeout * 1000)
                    self.database.execute_sql(f"SET LOCAL lock_timeout = {milliseconds}")
                if function is not None:
                    function(migrator, self.database, fake=False)
                migrator()
                self._check_foreign_keys()
                if downgrade:
                    self.model.delete().where(self.model.name == name).execute()
                else:
                    self.model.create(
                        name=name, migrated_at=_utcnow(), checksum=self.checksum(name)
                    )
        except Exception as exc:
            migrator.__ops__ = []
            # Forget the replayed state: the failed migration may have half-changed it.
            self.__dict__.pop("migrator", None)
            raise MigrationFailed(name, direction, exc) from exc
        return name

    def concurrent_indexes(self, name):
        """{index: CREATE INDEX CONCURRENTLY ...} that migration ``name`` builds after commit."""
        if not is_postgres(self.database):
            return {}
        return dict(self.scope(name).get("POSTGRES_CONCURRENT_INDEXES", {}))

    def build_concurrent_indexes(self, name, on_wait=None):
        """Build (or finish) the indexes migration ``name`` makes outside its transaction.

        Idempotent: a valid index is left alone. An INVALID one (a failed or
        killed build) is dropped and built again, but only once no other
        backend is still building it: a build whose client was SIGKILLed keeps
        running on the server, holding its locks, and a second build of the
        same index started beside it would deadlock with it.
        Returns [(index, seconds)] for the indexes built.
        """
        built = []
        for index, statement in self.concurrent_indexes(name).items():
            self._wait_for_other_builds(index, on_wait)
            valid = self._index_valid(index)
            if valid:
                continue
            started = time.perf_counter()
            if valid is False:
                logger.info("dropping the INVALID index %s left by an earlier build", index)
                self.database.execute_sql(f'DROP INDEX CONCURRENTLY IF EXISTS "{index}"')
            logger.info("building %s concurrently", index)
            self.database.execute_sql(statement)
            built.append((index, time.perf_counter() - started))
        return built

    def _index_valid(self, index):
        row = self.database.execute_sql(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_table_is_visible(c.oid)", (index,)
        ).fetchone()
        return None if row is None else row[0]

    def _wait_for_other_builds(self, index, on_wait):
        waited = False
        while True:
            row = self.database.execute_sql(
                "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND datname = current_database() AND state = 'active' "
                "AND query ILIKE '%%index%%concurrently%%' AND strpos(query, %s) > 0 LIMIT 1",
                (f'"{index}"',),
            ).fetchone()
            if row is None:
                return
            if not waited and on_wait is not None:
                on_wait(f"pid {row[0]} (still building {index})")
            waited = True
            time.sleep(0.2)

    def _foreign_keys_off(self):
        if self.previewing or not is_sqlite(self.database):
            return contextlib.nullcontext()
        return SqliteForeignKeysOff(self.database)

    def _check_foreign_keys(self):
        if not is_sqlite(self.database):
            return
        broken = self.database.execute_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            tables = sorted({row[0] for row in broken})
            raise RuntimeError(f"foreign keys broken in {', '.join(tables)}: {len(broken)} row(s)")


class SqliteForeignKeysOff:
    """Foreign keys off on this SQLite connection for the block (outside any transaction)."""

    def __init__(self, database):
        self.database = database

    def __enter__(self):
        if self.database.in_transaction():
            raise RuntimeError("SQLite migrations cannot run inside a transaction")
        self.database.execute_sql("PRAGMA foreign_keys = OFF")

    def __exit__(self, *exc):
        self.database.execute_sql("PRAGMA foreign_keys = ON")


def _utcnow():
    return utcnow().replace(tzinfo=None)  # the history's migrated_at is naive UTC


def _aware(value):
    if isinstance(value, str):
        value = pw.format_date_time(value, pw.DateTimeField.formats)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value
