"""Applying and undoing the migrations: a runner around peewee-migrate's Router."""

import datetime as dt
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

from .db import is_sqlite
from .errors import (
    MigrationFailed,
    MigrationsNotFound,
    NothingToRollback,
    UnknownMigration,
)

logger = logging.getLogger("bitloot_lite.migrating")

#: peewee-migrate's own history table: one row per applied migration.
HISTORY_TABLE = "migratehistory"


def default_migrations_dir():
    """$BITLOOT_MIGRATIONS_DIR, else the migrations shipped inside the package."""
    configured = os.environ.get("BITLOOT_MIGRATIONS_DIR")
    if configured:
        return Path(configured)
    return Path(str(importlib.resources.files("bitloot_lite.migrations")))


@dataclass(frozen=True)
class Step:
    """One migration applied or undone, and how long it took."""

    name: str
    direction: str  # "migrate" or "rollback"
    seconds: float


@dataclass(frozen=True)
class MigrationState:
    """A migration and, when applied, the time it was applied (UTC)."""

    name: str
    applied_at: dt.datetime | None

    @property
    def applied(self):
        return self.applied_at is not None


class Router(_Router):
    """peewee-migrate's Router, made safe for SQLite table rebuilds and for tests.

    - Each Router has its own history model (peewee-migrate binds one global
      class to the last database it saw).
    - On SQLite, foreign keys are switched off around each migration (the
      pragma is ignored inside a transaction, so it must happen before BEGIN)
      and checked with ``PRAGMA foreign_key_check`` before the commit: a table
      rebuild then cannot cascade-delete child rows, nor leave orphans.
    - A missing migrations folder is an error, not an empty folder created.
    """

    def __init__(self, database, migrate_dir=None, **kwargs):
        migrate_dir = Path(migrate_dir) if migrate_dir else default_migrations_dir()
        super().__init__(database, migrate_dir=migrate_dir, migrate_table=HISTORY_TABLE, **kwargs)

    @cached_property
    def model(self):
        router = self

        class History(MigrateHistory):
            class Meta:
                database = router.database
                table_name = router.migrate_table
                schema = router.schema

        History.create_table(safe=True)
        return History

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

    def read(self, name):
        path = self.migrate_dir / f"{name}.py"
        if not path.is_file():
            raise UnknownMigration(name, self.todo)
        scope = {"__file__": str(path), "__name__": f"migration_{name}"}
        # Compiled with its real file name, so tracebacks point into the file.
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), scope)
        return scope.get("migrate"), scope.get("rollback")

    def history(self):
        """{name: applied_at} for the applied migrations, oldest first."""
        query = self.model.select().order_by(self.model.id)
        return {row.name: row.migrated_at for row in query}

    def run_one(self, name, migrator, *, fake=True, downgrade=False, force=False):
        if fake:
            return super().run_one(name, migrator, fake=True, downgrade=downgrade, force=force)
        migrate, rollback = self.read(name)
        function = rollback if downgrade else migrate
        direction = "rollback" if downgrade else "migrate"
        logger.info("%s %s", direction, name)
        try:
            with self._foreign_keys_off(), self.database.atomic():
                if function is not None:
                    function(migrator, self.database, fake=False)
                migrator()
                self._check_foreign_keys()
                if downgrade:
                    self.model.delete().where(self.model.name == name).execute()
                else:
                    self.model.create(name=name, migrated_at=_utcnow())
        except Exception as exc:
            migrator.__ops__ = []
            # Forget the replayed state: the failed migration may have half-changed it.
            self.__dict__.pop("migrator", None)
            raise MigrationFailed(name, direction, exc) from exc
        return name

    def _foreign_keys_off(self):
        return _SqliteForeignKeysOff(self.database) if is_sqlite(self.database) else _Nothing()

    def _check_foreign_keys(self):
        if not is_sqlite(self.database):
            return
        broken = self.database.execute_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            tables = sorted({row[0] for row in broken})
            raise RuntimeError(f"foreign keys broken in {', '.join(tables)}: {len(broken)} row(s)")


class _SqliteForeignKeysOff:
    def __init__(self, database):
        self.database = database

    def __enter__(self):
        if self.database.in_transaction():
            raise RuntimeError("SQLite migrations cannot run inside a transaction")
        self.database.execute_sql("PRAGMA foreign_keys = OFF")

    def __exit__(self, *exc):
        self.database.execute_sql("PRAGMA foreign_keys = ON")


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def _utcnow():
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def status(database, migrations_dir=None):
    """Every migration in the folder, in order, with when it was applied."""
    router = Router(database, migrations_dir)
    todo = router.todo  # first: a missing folder raises before the history table is made
    history = router.history()
    # Applied migrations whose files are gone are listed too, in name order.
    names = sorted(set(todo) | set(history))
    return [MigrationState(name, _aware(history.get(name))) for name in names]


def pending(database, migrations_dir=None):
    """The names of the migrations not yet applied, in the order they would run."""
    router = Router(database, migrations_dir)
    _ = router.todo  # a missing folder raises before the history table is made
    return list(router.diff)


def migrate(database, to=None, migrations_dir=None, on_step=None):
    """Apply pending migrations, up to and including ``to``; returns the names applied.

    ``on_step`` (optional) is called with a :class:`Step` after each one.
    """
    router = Router(database, migrations_dir)
    todo = list(router.todo)
    if to is not None and to not in todo:
        raise UnknownMigration(to, todo)
    plan = list(router.diff)
    if to is not None:
        plan = plan[: plan.index(to) + 1] if to in plan else []
    applied = []
    for name in plan:
        started = time.perf_counter()
        router.run_one(name, router.migrator, fake=False)
        applied.append(name)
        _report(on_step, Step(name, "migrate", time.perf_counter() - started))
    return applied


def rollback(database, steps=1, to=None, migrations_dir=None, on_step=None):
    """Undo the newest migrations: ``steps`` of them, or all after ``to``.

    Returns the names undone, newest first.
    """
    router = Router(database, migrations_dir)
    todo = router.todo
    done = list(router.done)
    if to is not None:
        if to not in done:
            raise UnknownMigration(to, done)
        plan = done[done.index(to) + 1:][::-1]
    else:
        if steps < 1 or steps > len(done):
            raise NothingToRollback(steps, len(done))
        plan = done[-steps:][::-1]
    undone = []
    for name in plan:
        if name not in todo:
            raise UnknownMigration(name, todo)
        started = time.perf_counter()
        router.run_one(name, router.migrator, fake=False, downgrade=True)
        undone.append(name)
        _report(on_step, Step(name, "rollback", time.perf_counter() - started))
    return undone


def _report(callback, step):
    logger.info("%s %s in %.3fs", step.direction, step.name, step.seconds)
    if callback is not None:
        callback(step)


def _aware(value):
    if isinstance(value, str):
        value = pw.format_date_time(value, pw.DateTimeField.formats)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value
