"""Writing a new migration file into the user's folder (``bitloot-lite new``).

Its number comes after every migration the runner sees; its text is
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
from .errors import ConfigurationError, ValidationError
from .runner import migration_files, user_migrations_dir

if TYPE_CHECKING:
    from ._typing import StrPath
    from .autogenerate import Change

__all__ = ["Written", "new_migration"]

logger = logging.getLogger("bitloot_lite.migrating")

_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Written:
    """What ``new_migration`` did: ``path`` None when there was nothing to write."""

    name: str
    path: Path | None
    changes: list[Change]
    todo: list[str]


def new_migration(slug: str, migrations_dir: StrPath | None, *, auto: bool = False,
                  models: str | None = None) -> Written:
    """Write migration ``NNN_<slug>.py`` into the user's folder: ``migrations_dir``, else
    $BITLOOT_MIGRATIONS_DIR.

    With ``auto``, its content is the difference between the models (ours and
    those of the module ``models``) and what the migrations record; with no
    difference nothing is written (``path`` is None).
    """
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise ValidationError("name", slug, "must be lower-case letters, digits and _, "
                                            "starting with a letter (e.g. orders_note)")
    folder = user_migrations_dir(migrations_dir)
    if folder is None:
        raise ConfigurationError("new writes into your own migrations folder: give "
                                 "--migrations DIR (or BITLOOT_MIGRATIONS_DIR)")
    folder.mkdir(parents=True, exist_ok=True)
    # After every migration, shipped or the user's (and their problems are errors).
    number = int(migration_files(folder)[-1][0][:3]) + 1
    name = f"{number:03d}_{slug}"
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
