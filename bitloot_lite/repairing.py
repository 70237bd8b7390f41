"""Repairing the migration history after a review (Flyway's ``repair``).

An applied migration whose file was edited (a comment, a reviewed fix) blocks
``status`` and ``migrate`` until its checksum is recorded again; a history row
whose file was deliberately deleted is forgotten, but only when named
(``forget``) and only once the user's folder, where its file would be, was
looked in: without that folder every migration of the user's looks gone, and
forgetting one would make the next ``migrate`` run it a second time.
``repairs`` lists what would change, ``repair`` does it under the migration
lock, refusing a stale list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import USER_FOLDER_SETTING, ForgetRefused, MigrationError, ValidationError
from .loading import MIGRATION_FILE, shipped_migrations_dir, user_migrations_dir
from .locking import migration_lock
from .runner import HISTORY_TABLE, Router

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import peewee as pw

    from ._typing import StrPath

logger = logging.getLogger("bitloot_lite.migrating")


@dataclass(frozen=True)
class Repair:
    """A history row ``repair`` fixes (Flyway's repair), and how.

    ``action``: "checksum" (the applied file was edited since: record its checksum
    now), "record" (no checksum was recorded: record it), "remove" (the file is
    gone and the migration was named to forget: forget the row). ``recorded`` and
    ``current`` are the checksums.
    """

    name: str
    action: str
    recorded: str | None
    current: str | None


def user_folder_problem(migrations_dir: StrPath | None = None) -> str | None:
    """Why the user's migrations folder cannot tell that a user's migration is gone: none
    configured, the shipped folder given instead, or one holding no migration file.
    None when it can (a folder that does not exist is refused when it is read)."""
    folder = user_migrations_dir(migrations_dir)
    if folder is None:
        return f"no user migrations folder is configured (is {USER_FOLDER_SETTING} set?)"
    if folder.is_dir() and folder.resolve() == shipped_migrations_dir().resolve():
        return (f"{folder} is the shipped migrations' folder, not yours "
                f"(is {USER_FOLDER_SETTING} set to yours?)")
    if folder.is_dir() and not any(MIGRATION_FILE.match(path.name) and path.is_file()
                                   for path in folder.iterdir()):
        return f"your migrations folder {folder} holds no migration (is it the right folder?)"
    return None


def where_gone(migrations_dir: StrPath | None = None) -> str:
    """Where the file of an applied migration was looked for, for ``status``."""
    problem = user_folder_problem(migrations_dir)
    if problem is not None:
        return f"its file is not found: {problem}"
    return f"its file is gone from {user_migrations_dir(migrations_dir)}"


def gone(database: pw.Database, migrations_dir: StrPath | None = None) -> list[str]:
    """The applied migrations whose files are in neither folder, oldest first: what
    ``repair`` keeps unless each is named to forget."""
    router = Router(database, migrations_dir)
    return [name for name in router.history() if name not in router.files]


def _names(forget: Iterable[str]) -> list[str]:
    if isinstance(forget, str) or not all(isinstance(name, str) for name in forget):
        raise ValidationError("forget", forget, "must be a list of migration names "
                                                "(e.g. ['100_backfill_totals'])")
    return list(dict.fromkeys(forget))


def repairs(database: pw.Database, migrations_dir: StrPath | None = None,
            forget: Iterable[str] = ()) -> list[Repair]:
    """What ``repair`` would change in the history, oldest row first; changes nothing.

    A row whose file is gone is forgotten only when its name is in ``forget``;
    ForgetRefused for a name in ``forget`` that is not applied, whose file is
    still there, or whose folder could not be looked in (see user_folder_problem).
    """
    forget = _names(forget)
    router = Router(database, migrations_dir)
    router.todo  # noqa: B018 (the folders are checked first)
    history = router.history()
    problem = user_folder_problem(migrations_dir)
    for name in forget:
        if name not in history:
            raise ForgetRefused(name, "it is not in the migration history")
        if name in router.files:
            raise ForgetRefused(name, f"its file is still there ({router.files[name]}); "
                                      "to undo it, roll it back")
        if problem is not None:
            raise ForgetRefused(name, f"{problem}, so its file may not be gone",
                                user_migrations_dir(migrations_dir))
    found = []
    for name, applied in history.items():
        if name not in router.files:
            if name in forget:
                found.append(Repair(name, "remove", applied.checksum, None))
            continue
        current = router.checksum(name)
        if applied.checksum is None:
            found.append(Repair(name, "record", None, current))
        elif applied.checksum != current and (
                applied.checksum not in router.previous_checksums(name)):
            found.append(Repair(name, "checksum", applied.checksum, current))
    return found


def repair(database: pw.Database, migrations_dir: StrPath | None = None, *,
           forget: Iterable[str] = (), expected: Iterable[Repair] | None = None,
           lock_timeout: float | None = None,
           on_wait: Callable[[str | None], object] | None = None) -> list[Repair]:
    """Re-record the checksums of edited applied migrations and forget the history rows
    of the migrations named in ``forget``, whose files are gone, in one transaction,
    under the migration lock; returns them.

    For after a review: an edit known to be harmless, a migration deliberately
    deleted. ``expected`` (what :func:`repairs` listed, e.g. for a confirmation):
    if the history changed since, nothing is done (MigrationError).
    """
    forget = _names(forget)
    with migration_lock(database, lock_timeout, on_wait):
        found = repairs(database, migrations_dir, forget)
        if expected is not None and found != list(expected):
            raise MigrationError("the migration history or files changed since the repair "
                                 "was listed; nothing was repaired: run repair again")
        if found:  # a history made by pw_migrate gets its checksum column first
            Router(database, migrations_dir).model  # noqa: B018
        param = database.param
        with database.atomic():
            for item in found:
                if item.action == "remove":
                    database.execute_sql(
                        f'DELETE FROM "{HISTORY_TABLE}" WHERE "name" = {param}', (item.name,))
                else:
                    database.execute_sql(
                        f'UPDATE "{HISTORY_TABLE}" SET "checksum" = {param} '
                        f'WHERE "name" = {param}', (item.current, item.name))
                logger.info("repair: %s %s", item.action, item.name)
    return found

