"""Writing a new migration file into the user's folder (``bitloot-lite new``).

Its number starts the user's series at 100 (``loading.USER_FIRST_NUMBER``: room
below for the migrations later releases ship), then follows the user's newest
one, unless given (``number``); its text is
``render.migration`` of the changes ``autogenerate.changes`` finds (with
``auto``), or an empty migration in the same format to fill in by hand.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import autogenerate, render
from .errors import ConfigurationError, MigrationsFolderMissing, ValidationError
from .loading import first_user_number
from .runner import migration_files, shipped_migrations_dir, user_migrations_dir

if TYPE_CHECKING:
    from ._typing import StrPath
    from .autogenerate import Change

__all__ = ["Written", "new_migration"]

logger = logging.getLogger("bitloot_lite.migrating")

_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")
#: The longest name ``new`` takes: a file name a reader can take in, far from the 255
#: bytes a file system allows.
SLUG_MAX = 60


@dataclass(frozen=True)
class Written:
    """What ``new_migration`` did: ``path`` None when there was nothing to write."""

    name: str
    path: Path | None
    changes: list[Change]
    todo: list[str]


def new_migration(slug: str, migrations_dir: StrPath | None, *, auto: bool = False,
                  models: str | None = None, number: int | None = None) -> Written:
    """Write migration ``NNN_<slug>.py`` into the user's folder: ``migrations_dir``, else
    $BITLOOT_MIGRATIONS_DIR (it must exist).

    NNN is ``number``, else the number after the user's newest migration, else
    100 for their first. With ``auto``, its content is the difference between
    the models (ours and those of the module ``models``) and what the
    migrations record; with no difference nothing is written (``path`` is None).
    """
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise ValidationError("name", slug, "must be lower-case letters, digits and _, "
                                            "starting with a letter (e.g. orders_note)")
    if len(slug) > SLUG_MAX:
        raise ValidationError("name", slug, f"is {len(slug)} characters long; at most "
                                            f"{SLUG_MAX} make a file name")
    folder = user_migrations_dir(migrations_dir)
    if folder is None:
        raise ConfigurationError("new writes into your own migrations folder: give "
                                 "--migrations DIR (or BITLOOT_MIGRATIONS_DIR)")
    if not folder.is_dir():
        raise MigrationsFolderMissing(folder)
    if folder.resolve() == shipped_migrations_dir().resolve():
        raise ConfigurationError(f"{folder} holds the shipped migrations: new writes into "
                                 "your own folder (--migrations DIR)")
    name = f"{_number(folder, number):03d}_{slug}"
    changes = []
    if auto:
        with autogenerate.extended_models(models) as all_models:
            changes = autogenerate.changes(all_models, folder)
            if not changes:
                return Written(name, None, [], [])
            text = render.migration(name, changes)
    else:
        text = render.migration(name, [])
    path = folder / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    scope: dict[str, Any] = {}
    exec(compile(text, str(path), "exec"), scope)  # what was written loads
    logger.info("wrote %s (%d change(s))", path, len(changes))
    return Written(name, path, changes, list(scope["TODO"]))


def _number(folder: Path, number: int | None) -> int:
    """The number of the user's next migration in ``folder`` (see new_migration)."""
    files = migration_files(folder)  # (and their problems are errors)
    shipped = shipped_migrations_dir().resolve()
    last_shipped = max((int(n[:3]) for n, p in files if p.parent.resolve() == shipped),
                       default=0)
    yours = [name for name, path in files if path.parent.resolve() != shipped]
    if number is None:
        number = int(yours[-1][:3]) + 1 if yours else first_user_number(last_shipped)
    elif isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 999:
        raise ValidationError("number", number, "must be a whole number from 1 to 999 "
                                                "(three digits)")
    elif number <= last_shipped:
        raise ValidationError("number", number, f"{number:03d} is among the shipped "
                              f"migrations (up to {last_shipped:03d}); number yours from "
                              f"{first_user_number(last_shipped):03d}")
    elif yours and number <= int(yours[-1][:3]):
        raise ValidationError("number", number, f"{number:03d} does not come after your "
                              f"newest migration, {yours[-1]}")
    if number > 999:
        raise ValidationError("number", number, f"your newest migration is {yours[-1]}: "
                              "migration numbers have three digits, none is left")
    return number
