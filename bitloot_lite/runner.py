"""peewee-migrate's Router, made safe for deployments: history with checksums,
SQLite rebuilds that cannot cascade, PostgreSQL DDL that cannot stall the app."""

import contextlib
import datetime as dt
import hashlib
import importlib.resources
import logging
import os
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
    GRANT_READ,
    RUN_AS_OWNER,
    ConfigurationError,
    MigrationFailed,
    MigrationsNotFound,
    UnknownMigration,
    ValidationError,
    privilege_required,
)
from .fields import utcnow
from .schema import HISTORY_TABLE

logger = logging.getLogger("bitloot_lite.migrating")

#: PostgreSQL's lock_timeout for a migration's statements (seconds): a DDL
#: statement that would queue behind a long transaction fails instead of
#: blocking every query on that table behind it.
DDL_LOCK_TIMEOUT = 5.0


def default_migrations_dir():
    """$BITLOOT_MIGRATIONS_DIR, else the migrations shipped inside the package."""
    configured = os.environ.get("BITLOOT_MIGRATIONS_DIR")
    if configured:
        return Path(configured)
    return Path(str(importlib.resources.files("bitloot_lite.migrations")))


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
        if migrate_dir is not None and not isinstance(migrate_dir, (str, os.PathLike)):
            raise ValidationError("migrations_dir", migrate_dir,
                                  f"must be a path, not {type(migrate_dir).__name__}")
        ddl_lock_timeout = check.seconds("ddl_lock_timeout", ddl_lock_timeout)
        migrate_dir = Path(migrate_dir) if migrate_dir else default_migrations_dir()
        super().__init__(database, migrate_dir=migrate_dir, migrate_table=HISTORY_TABLE)
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

    @property
    def todo(self):
        if not self.migrate_dir.is_dir():
            raise MigrationsNotFound(self.migrate_dir)
        names = sorted(
            path.stem for path in self.migrate_dir.iterdir() if self.filemask.match(path.name)
        )
        if not names:
            raise MigrationsNotFound(self.migrate_dir)
        return names

    @property
    def done(self):
        return list(self.history())

    def history(self):
        """{name: Applied} for the applied migrations, oldest first; read-only."""
        if not self.database.table_exists(HISTORY_TABLE):
            return {}
        checksum = ', "checksum"' if self._has_checksums() else ", NULL"
        with privilege_required("reading the migration history", GRANT_READ):
            cursor = self.database.execute_sql(
                f'SELECT "name", "migrated_at"{checksum} FROM "{HISTORY_TABLE}" ORDER BY "id"'
            )
        return {name: Applied(_aware(at), digest) for name, at, digest in cursor.fetchall()}

    def path(self, name):
        path = self.migrate_dir / f"{name}.py"
        if not path.is_file():
            raise UnknownMigration(name, self.todo)
        return path

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
        with privilege_required("recording migrations as applied", RUN_AS_OWNER), \
                self.database.atomic():
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
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = current_schema()", (index,)
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
