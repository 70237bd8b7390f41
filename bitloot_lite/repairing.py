"""Repairing the migration history after a review (Flyway's ``repair``).

An applied migration whose file was edited (a comment, a reviewed fix) blocks
``status`` and ``migrate`` until its checksum is recorded again; a history row
whose file was deliberately deleted is forgotten. ``repairs`` lists what would
change, ``repair`` does it under the migration lock, refusing a stale list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import MigrationError
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
    gone: forget the row). ``recorded`` and ``current`` are the checksums.
    """

    name: str
    action: str
    recorded: str | None
    current: str | None


def repairs(database: pw.Database, migrations_dir: StrPath | None = None) -> list[Repair]:
    """What ``repair`` would change in the history, oldest row first; changes nothing."""
    router = Router(database, migrations_dir)
    router.todo  # noqa: B018 (the folders are checked first)
    found = []
    for name, applied in router.history().items():
        if name not in router.files:
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
           expected: Iterable[Repair] | None = None, lock_timeout: float | None = None,
           on_wait: Callable[[str | None], object] | None = None) -> list[Repair]:
    """Re-record the checksums of edited applied migrations and forget the history rows
    whose files are gone, in one transaction, under the migration lock; returns them.

    For after a review: an edit known to be harmless, a migration deliberately
    deleted. ``expected`` (what :func:`repairs` listed, e.g. for a confirmation):
    if the history changed since, nothing is done (MigrationError).
    """
    with migration_lock(database, lock_timeout, on_wait):
        found = repairs(database, migrations_dir)
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

