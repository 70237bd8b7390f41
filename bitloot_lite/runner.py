"""peewee-migrate's Router, made safe for deployments: history with checksums,
SQLite rebuilds that cannot cascade, PostgreSQL DDL that cannot stall the app."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import peewee as pw
from peewee_migrate import Migrator
from peewee_migrate import Router as _Router
from peewee_migrate.models import MigrateHistory

from . import validating as check
from .db import driver_error, is_postgres, is_sqlite, sqlite_full, unwrap
from .errors import (
    GRANT_READ,
    RUN_AS_OWNER,
    SQLITE_FULL,
    ConfigurationError,
    DatabaseFull,
    InvalidMigration,
    IrreversibleMigration,
    MigrationFailed,
    UnknownMigration,
    privilege_required,
)
from .fields import utcnow
from .loading import (  # noqa: F401 (re-exported: runner.migration_files is the contract)
    MIGRATION_FILE,
    Migration,
    default_migrations_dir,
    describe,
    load_migration,
    migration_files,
    resolve_name,
    shipped_migrations_dir,
    user_migrations_dir,
)
from .schema import HISTORY_TABLE

if TYPE_CHECKING:
    from ._typing import StrPath

logger = logging.getLogger("bitloot_lite.migrating")

#: PostgreSQL's lock_timeout for a migration's statements (seconds): a DDL
#: statement that would queue behind a long transaction fails instead of
#: blocking every query on that table behind it.
DDL_LOCK_TIMEOUT = 5.0


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

    if TYPE_CHECKING:  # a Database, or a DatabaseProxy bound to one (__init__ checks)
        database: pw.Database

    def __init__(self, database: pw.Database, migrate_dir: StrPath | None = None,
                 ddl_lock_timeout: float | None = DDL_LOCK_TIMEOUT) -> None:
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
    def model(self) -> type[MigrateHistory]:
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

    def _has_checksums(self) -> bool:
        return any(c.name == "checksum" for c in self.database.get_columns(HISTORY_TABLE))

    @cached_property
    def files(self) -> dict[str, Path]:
        """{name: path} of every migration, in order: the shipped ones, then the user's."""
        return dict(migration_files(self.user_dir))

    def shipped_names(self) -> set[str]:
        """The names of the shipped migrations (the rest are the user's)."""
        shipped = shipped_migrations_dir().resolve()
        return {name for name, path in self.files.items() if path.parent.resolve() == shipped}

    @property
    def todo(self) -> list[str]:
        """Every migration's name, in order, across both folders."""
        return list(self.files)

    @property
    def done(self) -> list[str]:
        return list(self.history())

    def history(self) -> dict[str, Applied]:
        """{name: Applied} for the applied migrations, oldest first; read-only."""
        if not self.database.table_exists(HISTORY_TABLE):
            return {}
        checksum = ', "checksum"' if self._has_checksums() else ", NULL"
        with privilege_required("reading the migration history", GRANT_READ):
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
        return resolve_name(name, self.todo)

    def checksum(self, name: str) -> str:
        """sha256 of the migration file's bytes."""
        return hashlib.sha256(self.path(name).read_bytes()).hexdigest()

    def load(self, name: str) -> Migration:
        """Migration ``name``, loaded once per Router (InvalidMigration if it cannot be)."""
        loaded = self.__dict__.setdefault("_loaded", {})
        if name not in loaded:
            loaded[name] = load_migration(name, self.path(name))
        return cast(Migration, loaded[name])

    def scope(self, name: str) -> dict[str, Any]:
        """The migration module's globals (migrate, rollback, UPSTREAM ...)."""
        return self.load(name).scope

    def read(self, name: str) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        migration = self.load(name)
        return migration.migrate, migration.rollback

    def description(self, name: str) -> str:
        """The first line of the migration's docstring ("" for a file that is gone)."""
        if name not in self.files:
            return ""
        return describe(name, self.files[name])

    def previous_checksums(self, name: str) -> set[str]:
        """The checksums of earlier versions of the file that it declares harmless
        (none for a file that no longer loads: it is reported as edited, not as broken,
        until something runs it)."""
        try:
            return set(self.scope(name).get("PREVIOUS_CHECKSUMS", ()))
        except InvalidMigration:
            return set()

    def require_reversible(self, names: Iterable[str]) -> None:
        """IrreversibleMigration for the first of ``names`` that cannot be rolled back."""
        for name in names:
            migration = self.load(name)
            if migration.irreversible:
                raise IrreversibleMigration(name, migration.path)

    def record(self, names: Iterable[str]) -> None:
        """Mark ``names`` applied without running them (adoption, baseline)."""
        with privilege_required("recording migrations as applied", RUN_AS_OWNER), \
                self.database.atomic():
            for name in names:
                self.model.create(name=name, migrated_at=_utcnow(), checksum=self.checksum(name))
        self.__dict__.pop("migrator", None)  # replay the new history next time

    def run_one(self, name: str, migrator: Migrator, *, fake: bool = True, downgrade: bool = False,
                force: bool = False) -> str:
        if fake:
            return super().run_one(name, migrator, fake=True, downgrade=downgrade, force=force)
        migrate, rollback = self.read(name)
        if downgrade and rollback is None:
            raise IrreversibleMigration(name, self.path(name))
        function = rollback if downgrade else migrate
        direction = "rollback" if downgrade else "migrate"
        logger.info("%s %s", direction, name)
        try:
            with self._foreign_keys_off(), self.database.atomic():
                if is_postgres(self.database) and self.ddl_lock_timeout:
                    milliseconds = int(self.ddl_lock_timeout * 1000)
                    self.database.execute_sql(f"SET LOCAL lock_timeout = {milliseconds}")
                function(migrator, self.database, fake=False)  # type: ignore[misc]  # not None: refused above
                if not downgrade:
                    self._defer_concurrent_indexes(name, migrator)
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
            # A full disk shows as SQLite's error, or as the DatabaseFull of the
            # commit (db.SqliteDatabase): either way, name the full disk itself.
            cause = SQLITE_FULL if isinstance(exc, DatabaseFull) or sqlite_full(exc) else exc
            raise MigrationFailed(name, direction, cause) from exc
        return name

    def concurrent_indexes(self, name: str) -> dict[str, str]:
        """{index: CREATE INDEX CONCURRENTLY ...} that migration ``name`` builds after commit."""
        if not is_postgres(self.database):
            return {}
        return dict(self.scope(name).get("POSTGRES_CONCURRENT_INDEXES", {}))

    def _defer_concurrent_indexes(self, name: str, migrator: Migrator) -> None:
        """Take the plain builds of the declared concurrent indexes out of the transaction.

        The file runs each as a plain CREATE INDEX on PostgreSQL (so that
        peewee-migrate's own runner makes the same schema); this runner builds it
        CONCURRENTLY after the commit instead (build_concurrent_indexes).
        """
        declared = self.concurrent_indexes(name)
        if not declared:
            return
        plain = {_normal(_PLAIN.sub("", statement)): index
                 for index, statement in declared.items()}
        kept, deferred = [], set()
        for op in migrator.__ops__:
            sql = _sql_of(op)
            if sql is not None and _normal(sql) in plain:
                deferred.add(plain[_normal(sql)])
            else:
                kept.append(op)
        missing = sorted(set(declared) - deferred)
        if missing:
            raise ValueError(
                f"it declares {', '.join(missing)} in POSTGRES_CONCURRENT_INDEXES, but its "
                "migrate() does not run the same statement without CONCURRENTLY on "
                "PostgreSQL, which peewee-migrate's own runner (pw_migrate) would need to "
                "build it: add migrator.sql(<the CREATE INDEX without CONCURRENTLY>)"
            )
        migrator.__ops__ = kept

    def build_concurrent_indexes(self, name: str,
                                 on_wait: Callable[[str | None],
                                 object] | None = None) -> list[tuple[str, float]]:
        """Build (or finish) the indexes migration ``name`` makes outside its transaction.

        Idempotent: a valid index is left alone. An INVALID one (a failed or
        killed build) is dropped and built again, but only once no other
        backend is still building it: a build whose client was SIGKILLed keeps
        running on the server, holding its locks, and a second build of the
        same index started beside it would deadlock with it.
        Returns [(index, seconds)] for the indexes built.
        """
        built, refused = [], []
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
            try:
                self.database.execute_sql(statement)
            except Exception as exc:
                if getattr(driver_error(exc), "pgcode", None) != _UNIQUE_VIOLATION:
                    raise
                # A duplicate written after the migration's own check: the build
                # leaves an INVALID index that would go on refusing writes. Drop it,
                # so the database is as it was, and say which rows conflict.
                self.database.execute_sql(f'DROP INDEX CONCURRENTLY IF EXISTS "{index}"')
                refused.append(index)
                continue  # the other indexes are still worth building
            built.append((index, time.perf_counter() - started))
        if refused:
            found = self.scope(name).get("conflicts", lambda database: [])(self.database)
            listed = "".join(f"\n  - {line}" for line in found)
            raise RuntimeError(f"{', '.join(refused)} cannot be built: duplicates must be "
                               f"resolved by hand first{listed}")
        return built

    def unbuilt_indexes(self, name: str) -> list[str]:
        """The indexes migration ``name`` builds after commit that are missing or INVALID
        (a killed or failed build): work ``migrate`` still has to do."""
        return [index for index in self.concurrent_indexes(name) if not self._index_valid(index)]

    def _index_valid(self, index: str) -> bool | None:
        row = self.database.execute_sql(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = current_schema()", (index,)
        ).fetchone()
        return None if row is None else row[0]

    def _wait_for_other_builds(self, index: str,
                               on_wait: Callable[[str | None], object] | None) -> None:
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

    def _foreign_keys_off(self) -> contextlib.AbstractContextManager[object]:
        if self.previewing or not is_sqlite(self.database):
            return contextlib.nullcontext()
        return SqliteForeignKeysOff(self.database)

    def _check_foreign_keys(self) -> None:
        if not is_sqlite(self.database):
            return
        broken = self.database.execute_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            tables = sorted({row[0] for row in broken})
            raise RuntimeError(f"foreign keys broken in {', '.join(tables)}: {len(broken)} row(s)")


#: PostgreSQL's unique_violation.
_UNIQUE_VIOLATION = "23505"


class SqliteForeignKeysOff:
    """Foreign keys off on this SQLite connection for the block (outside any transaction)."""

    def __init__(self, database: pw.Database | pw.Proxy) -> None:
        self.database = database

    def __enter__(self) -> None:
        if self.database.in_transaction():
            raise RuntimeError("SQLite migrations cannot run inside a transaction")
        self.database.execute_sql("PRAGMA foreign_keys = OFF")

    def __exit__(self, *exc: object) -> None:
        self.database.execute_sql("PRAGMA foreign_keys = ON")


#: CONCURRENTLY in a CREATE INDEX statement, to get its plain form.
_PLAIN = re.compile(r"\bCONCURRENTLY\s+", re.IGNORECASE)


def _normal(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";").upper()


def _sql_of(op: Any) -> str | None:
    """The statement of a ``migrator.sql(...)`` operation; None for any other operation."""
    fn = getattr(op, "fn", None)
    if getattr(fn, "__name__", None) != "sql" or not getattr(op, "args", None):
        return None
    return op.args[0] if isinstance(op.args[0], str) else None


def _utcnow() -> dt.datetime:
    return utcnow().replace(tzinfo=None)  # the history's migrated_at is naive UTC


def _aware(value: object) -> Any:
    if isinstance(value, str):
        value = pw.format_date_time(value, pw.DateTimeField.formats)  # type: ignore[attr-defined]
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value
