"""Applying, undoing, previewing and checking the migrations, safely for deployments.

Every write holds the migration lock (see locking.py), so any number of
deploys may run ``migrate`` at once: each migration is applied exactly once.
Before anything is applied, the history is checked: applied migrations whose
files were edited since, and pending ones older than the newest applied one,
stop the run unless the caller knowingly allows them. A database made by the
original TypeORM application is adopted (see adopting.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import peewee as pw

from . import adopting, replay, schema
from .db import is_postgres, is_sqlite, recording
from .errors import (
    RUN_AS_OWNER,
    EditedMigration,
    MigrationError,
    MigrationFailed,
    NothingToRollback,
    OutOfOrder,
    UnknownMigration,
    ValidationError,
    privilege_required,
)
from .loading import ZERO, resolve_name
from .locking import migration_lock
from .models import MODELS
from .repairing import Repair, repair, repairs
from .runner import (
    DDL_LOCK_TIMEOUT,
    HISTORY_TABLE,
    Router,
    SqliteForeignKeysOff,
    default_migrations_dir,
    migration_files,
    shipped_migrations_dir,
)

__all__ = [
    "DDL_LOCK_TIMEOUT", "HISTORY_TABLE", "MigrationState", "Step", "baseline", "check",
    "Repair", "default_migrations_dir", "migrate", "migration_files", "pending", "preview",
    "repair", "repairs", "rollback", "shipped_migrations_dir", "status", "ZERO",
]

if TYPE_CHECKING:
    from ._typing import StrPath
    from .runner import Applied

#: Called with each Step as it completes; with the migration lock's holder while it waits.
OnStep = Callable[["Step"], object]
OnWait = Callable[[str | None], object]
#: What ``preview`` returns for a migration: (name, direction, [(sql, params), ...]).
Preview = tuple[str, str, list[tuple[str, tuple[Any, ...]]]]

logger = logging.getLogger("bitloot_lite.migrating")


@dataclass(frozen=True)
class Step:
    """One migration applied, undone, adopted or baselined, and how long it took."""

    name: str
    direction: str  # "migrate", "rollback", "adopt", "fixup" (adoption), "baseline", "index"
    seconds: float


@dataclass(frozen=True)
class MigrationState:
    """A migration and, when applied, the time it was applied (UTC)."""

    name: str
    applied_at: dt.datetime | None
    edited: bool = False  # applied, and its file has changed since
    #: Applied, but indexes it builds after its commit are missing or INVALID (a killed
    #: or failed concurrent build): work ``migrate`` still has to do.
    unbuilt: tuple[str, ...] = ()
    description: str = ""  # its docstring's first line
    missing: bool = False  # applied, and its file is gone (see repair)

    @property
    def applied(self) -> bool:
        return self.applied_at is not None

    @property
    def done(self) -> bool:
        """Applied, and nothing of it left for ``migrate`` to finish."""
        return self.applied and not self.unbuilt


def status(database: pw.Database, migrations_dir: StrPath | None = None,
           allow_edited: bool = False) -> list[MigrationState]:
    """Every migration, in order, with when it was applied.

    Raises EditedMigration if an applied migration's file changed since, unless
    ``allow_edited`` (then the states say ``edited=True``).
    """
    router = Router(database, migrations_dir)
    todo = router.todo
    history = router.history()
    edited = _edited(router, todo, history, allow_edited)
    # Applied migrations whose files are gone are listed too, in name order.
    names = sorted(set(todo) | set(history))
    return [
        MigrationState(name, history[name].applied_at if name in history else None,
                       edited=name in edited, description=router.description(name),
                       missing=name not in router.files,
                       unbuilt=tuple(router.unbuilt_indexes(name))
                       if name in history and name in todo else ())
        for name in names
    ]


def pending(database: pw.Database, migrations_dir: StrPath | None = None) -> list[str]:
    """The names of the migrations not yet applied, in the order they would run."""
    router = Router(database, migrations_dir)
    todo = router.todo
    history = router.history()
    adoptable = _adoptable(router, todo, history)
    return [name for name in todo if name not in history and name not in adoptable]


def migrate(database: pw.Database, to: str | None = None,
            migrations_dir: StrPath | None = None, *, lock_timeout: float | None = None,
            ddl_lock_timeout: float = DDL_LOCK_TIMEOUT, allow_edited: bool = False,
            allow_out_of_order: bool = False, on_step: OnStep | None = None,
            on_wait: OnWait | None = None) -> list[str]:
    """Apply pending migrations, up to and including ``to``; returns the names applied.

    ``on_step`` is called with a :class:`Step` after each migration (and for
    each one adopted from a TypeORM history); ``on_wait`` with the lock's
    holder if another process is migrating; ``lock_timeout`` bounds that wait.
    """
    router = Router(database, migrations_dir, ddl_lock_timeout)
    todo = router.todo
    to = None if to is None else router.resolve(to)
    with migration_lock(database, lock_timeout, on_wait):
        history = router.history()
        if not history:
            _adopt(router, todo, on_step)
            history = router.history()
        _edited(router, todo, history, allow_edited)
        plan = _plan(todo, history, to)
        _check_order(plan, history, allow_out_of_order, router.shipped_names())
        for name in plan:  # every file loads (syntax, imports, a migrate()) before any runs
            router.load(name)
        for name in history:  # finish what a killed deploy left unbuilt
            if name in todo:
                _build_indexes(router, name, on_step, on_wait)
        return _run(router, plan, on_step, on_wait=on_wait)


def rollback(database: pw.Database, steps: int = 1, to: str | None = None,
             migrations_dir: StrPath | None = None, *, lock_timeout: float | None = None,
             ddl_lock_timeout: float = DDL_LOCK_TIMEOUT, allow_edited: bool = False,
             on_step: OnStep | None = None, on_wait: OnWait | None = None) -> list[str]:
    """Undo the newest migrations: ``steps`` of them, or all after ``to``
    (a name or a number; :data:`ZERO`, ``"zero"``, undoes every applied one).

    Returns the names undone, newest first.
    """
    router = Router(database, migrations_dir, ddl_lock_timeout)
    todo = router.todo
    with migration_lock(database, lock_timeout, on_wait):
        history = router.history()
        _edited(router, todo, history, allow_edited)
        if to is not None and to != ZERO:  # an applied one whose file is gone too
            names = [*todo, *(name for name in history if name not in todo)]
            if isinstance(to, str) and to.strip() and not to.strip().strip("0"):  # 0, 000
                raise UnknownMigration(to, names, f"to undo every migration, roll back to "
                                                  f"{ZERO}")
            to = resolve_name(to, names)
        plan = _rollback_plan(list(history), todo, steps, to)
        router.require_reversible(plan)  # before undoing any of them
        return _run(router, plan, on_step, downgrade=True)


def baseline(database: pw.Database, to: str, migrations_dir: StrPath | None = None, *,
             lock_timeout: float | None = None, on_step: OnStep | None = None,
             on_wait: OnWait | None = None) -> list[str]:
    """Record the migrations up to and including ``to`` as applied, without running them.

    For a database whose tables were made outside bitloot-lite: the live
    schema must be exactly the one those migrations make.
    """
    router = Router(database, migrations_dir)
    todo = router.todo
    to = router.resolve(to)
    names = todo[: todo.index(to) + 1]
    with migration_lock(database, lock_timeout, on_wait):
        if router.history():
            raise MigrationError("baseline is for a database with no migration history; "
                                 "this one has some (see `bitloot-lite status`)")
        adopting.baseline_check(database, len(names))
        router.record(names)
    for name in names:
        _report(on_step, Step(name, "baseline", 0.0))
    return names


def preview(database: pw.Database, to: str | None = None,
            migrations_dir: StrPath | None = None, *, rollback_steps: int | None = None,
            ddl_lock_timeout: float = DDL_LOCK_TIMEOUT, lock_timeout: float | None = None,
            on_wait: OnWait | None = None) -> list[Preview]:
    """The SQL that ``migrate(to=...)`` (or ``rollback(steps=rollback_steps)``) would run.

    Runs it for real inside one transaction that is then rolled back, so the
    database, history table included, is left as it was (on PostgreSQL the
    history's id sequence, which a rollback does not undo, is set back too);
    returns [(name, direction, [(sql, params), ...])], each migration's
    statements as its own transaction would run them, "adopt" for those a
    TypeORM history would record. Reads (SELECT, PRAGMA) and the preview's own
    savepoints are left out. It takes the same locks as migrate while it runs.
    """
    router = Router(database, migrations_dir, ddl_lock_timeout)
    router.previewing = True
    todo = router.todo
    to = None if to is None else router.resolve(to)
    result: list[Preview] = []
    keys_off = SqliteForeignKeysOff(database) if is_sqlite(database) else contextlib.nullcontext()
    with (
        migration_lock(database, lock_timeout, on_wait),
        _sequence_kept(database),
        keys_off,
        database.atomic() as transaction,
        recording(database) as statements,
    ):
        history = router.history()
        adoptable = _adoptable(router, todo, history)
        if adoptable:
            router.record(adoptable)
            result += [(name, "adopt", []) for name in adoptable]
            history = router.history()
        if rollback_steps is not None:
            plan, downgrade = _rollback_plan(list(history), todo, rollback_steps, None), True
        else:
            plan, downgrade = _plan(todo, history, to), False
        for name in plan:
            del statements[:]
            router.run_one(name, router.migrator, fake=False, downgrade=downgrade)
            writes = [s for s in statements if not _is_read_or_savepoint(s[0])]
            result.append((name, "rollback" if downgrade else "migrate", writes))
            after = [] if downgrade else list(router.concurrent_indexes(name).values())
            if after:
                result.append((name, "after commit", [(sql, ()) for sql in after]))
        transaction.rollback()
    return result


@contextlib.contextmanager
def _sequence_kept(database: pw.Database) -> Iterator[None]:
    """Set the history's id sequence back after the block (nextval is never rolled back)."""
    if not is_postgres(database) or not database.table_exists(HISTORY_TABLE):
        yield
        return
    # The history table of the connection's own schema (as table_exists found it),
    # not whichever one the search_path would resolve first.
    (sequence,) = database.execute_sql(
        "SELECT pg_get_serial_sequence(format('%%I.%%I', current_schema(), %s::text), 'id')",
        (HISTORY_TABLE,),
    ).fetchone()
    # The preview writes history rows: only the owner may (the app role has SELECT).
    with privilege_required("previewing the migrations' SQL", RUN_AS_OWNER):
        last_value, is_called = database.execute_sql(
            f"SELECT last_value, is_called FROM {sequence}"
        ).fetchone()
    try:
        yield
    finally:
        database.execute_sql("SELECT setval(%s, %s, %s)", (sequence, last_value, is_called))


def check(database: pw.Database, migrations_dir: StrPath | None = None,
          models: str | None = None) -> tuple[list[str], list[str]]:
    """How the live database drifts from the schema its migrations build, and from the models.

    The expected schema is what the applied migrations build, replayed on a
    scratch database of the same backend (see replay.py), so it holds for any
    set of migrations, the user's own included. ``models``: the models module
    of the user's (a dotted name or a .py path; see :func:`autogenerate.models`)
    whose fields and tables are compared too, with the live database and with
    the state the migrations record (Django's ``makemigrations --check``): a
    model extended without a migration is a difference.

    Returns (differences, notes): one readable line each; no differences means
    it matches. Harmless leftovers of a TypeORM-made database are notes.
    """
    router = Router(database, migrations_dir)
    todo = router.todo
    history = router.history()
    adoptable = _adoptable(router, todo, history)
    differences, notes = [], []
    if adoptable:
        notes.append(f"migrate will adopt {', '.join(adoptable)} from the TypeORM history")
    history = {**history, **dict.fromkeys(adoptable)}
    waiting = [name for name in todo if name not in history]
    differences += [f"migration {name} pending" for name in waiting]
    applied = [name for name in todo if name in history]
    if applied != todo[: len(applied)]:
        differences.append("migrations applied out of order: cannot name the expected schema")
        return differences, notes
    live = schema.snapshot(database)
    differences += schema.compare(live, replay.built_schema(database, applied, migrations_dir),
                                  notes)
    if models is None:
        if not waiting:
            for line in schema.compare_models(database, MODELS, live):
                # A column of the user's migrations that no model declares: without
                # --models that is the user's module's business, not drift.
                (notes if " not declared by " in line else differences).append(
                    f"{line} (declare it in a --models module to use it)"
                    if " not declared by " in line else line)
        return differences, notes
    from . import autogenerate  # the model comparison is only loaded when asked for

    # The user's module extends our models for the comparison only.
    with autogenerate.extended_models(models) as all_models:
        differences += [f"{change.describe()}: no migration makes it (see `bitloot-lite "
                        "new --auto`)" for change in autogenerate.changes(
                            all_models, migrations_dir, names=todo)]
        if not waiting:
            differences += schema.compare_models(database, all_models, live)
    return differences, notes


def _adoptable(router: Router, todo: list[str], history: dict[str, Applied]) -> list[str]:
    """Our migrations a TypeORM history says were applied (shape checked); [] once ours exists."""
    if history or not adopting.typeorm_history(router.database):
        return []  # before reading every migration file for its UPSTREAM name
    migrations = [(name, router.scope(name).get("UPSTREAM")) for name in todo]
    return adopting.adoption_plan(router.database, migrations, applied=[])


def _adopt(router: Router, todo: list[str], on_step: OnStep | None) -> None:
    """Record what a TypeORM history says was applied (after checking the shape)."""
    names = _adoptable(router, todo, {})
    if not names:
        adopting.require_history_or_empty(router.database, [], todo)
        return
    fixups = adopting.adoption_fixups(router.database, len(names))
    started = time.perf_counter()
    with router.database.atomic():  # the columns added and the names recorded, or neither
        if fixups and is_postgres(router.database) and router.ddl_lock_timeout:
            milliseconds = int(router.ddl_lock_timeout * 1000)
            router.database.execute_sql(f"SET LOCAL lock_timeout = {milliseconds}")
        for fixup in fixups:
            logger.info("adoption adds %s: %s", fixup.name, fixup.sql)
            router.database.execute_sql(fixup.sql)
        router.record(names)
    seconds = time.perf_counter() - started
    logger.info("adopted %s from the TypeORM history", ", ".join(names))
    for name in names:
        _report(on_step, Step(name, "adopt", 0.0))
    for fixup in fixups:
        _report(on_step, Step(f"{fixup.name} ({fixup.description})", "fixup", seconds))


def _edited(router: Router, todo: list[str], history: dict[str, Applied],
            allow_edited: bool) -> set[str]:
    edited = [
        name for name, applied in history.items()
        if applied.checksum and name in todo and router.checksum(name) != applied.checksum
        and applied.checksum not in router.previous_checksums(name)
    ]
    if edited and not allow_edited:
        raise EditedMigration(edited)
    return set(edited)


def _plan(todo: list[str], history: dict[str, Applied], to: str | None) -> list[str]:
    plan = [name for name in todo if name not in history]
    if to is not None:
        plan = [name for name in plan if name <= to]
    return plan


def _check_order(plan: list[str], history: dict[str, Applied], allow_out_of_order: bool,
                 shipped: set[str]) -> None:
    """Refuse pending migrations older than the newest applied one of the same folder.

    Each folder is its own sequence: a shipped migration that an upgrade of
    bitloot-lite brings runs after the user's already applied ones (as Django's
    apps do), but a user's migration that sorts before an applied one of theirs
    (a branch merged late) needs ``allow_out_of_order``.
    """
    if not history or allow_out_of_order:
        return
    for ours in (True, False):
        applied = [name for name in history if (name in shipped) == ours]
        if not applied:
            continue
        newest = max(applied)
        late = [name for name in plan if (name in shipped) == ours and name < newest]
        if late:
            raise OutOfOrder(late, newest)


def _rollback_plan(done: list[str], todo: list[str], steps: int, to: str | None) -> list[str]:
    if to == ZERO:
        plan = done[::-1]
    elif to is not None:
        if to not in done:
            raise UnknownMigration(to, done)
        plan = done[done.index(to) + 1:][::-1]
    else:
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise ValidationError("steps", steps, "must be a whole number of migrations, "
                                                  f"not {type(steps).__name__}")
        if steps < 1 or steps > len(done):
            raise NothingToRollback(steps, len(done))
        plan = done[-steps:][::-1]
    for name in plan:
        if name not in todo:
            raise UnknownMigration(name, todo)
    return plan


def _run(router: Router, plan: list[str], on_step: OnStep | None, downgrade: bool = False,
         on_wait: OnWait | None = None) -> list[str]:
    done = []
    for name in plan:
        started = time.perf_counter()
        router.run_one(name, router.migrator, fake=False, downgrade=downgrade)
        done.append(name)
        _report(on_step, Step(name, "rollback" if downgrade else "migrate",
                              time.perf_counter() - started))
        if not downgrade:
            _build_indexes(router, name, on_step, on_wait)
    return done


def _build_indexes(router: Router, name: str, on_step: OnStep | None,
                   on_wait: OnWait | None) -> None:
    try:
        built = router.build_concurrent_indexes(name, on_wait)
    except Exception as exc:
        raise MigrationFailed(name, "concurrent index build", exc) from exc
    for index, seconds in built:
        _report(on_step, Step(f"{name}: {index}", "index", seconds))


def _report(callback: OnStep | None, step: Step) -> None:
    logger.info("%s %s in %.3fs", step.direction, step.name, step.seconds)
    if callback is not None:
        callback(step)


def _is_read_or_savepoint(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    return head in ("SELECT", "SAVEPOINT", "RELEASE") or (head == "PRAGMA" and "=" not in sql)


