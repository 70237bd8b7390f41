"""Finding and loading migration files: the shipped ones, then the user's.

The shipped migrations (inside the package) always come first; a user's folder
(``--migrations DIR`` / $BITLOOT_MIGRATIONS_DIR) adds migrations numbered after
them. Every file is checked before anything runs: a misnamed file, two files
with one number, a clash with a shipped name, a syntax or import error, a file
without ``migrate`` are errors naming the file, never a file silently skipped.

What a migration file may declare, besides ``migrate(migrator, database, *, fake)``:

- ``rollback(migrator, database, *, fake)``: how to undo it. Without one the
  migration is irreversible and ``rollback`` refuses it before touching anything,
  unless the file says that undoing it needs nothing: ``ROLLBACK = "noop"``
  (or an explicit ``def rollback(...): pass``).
- ``POSTGRES_CONCURRENT_INDEXES = {index name: "CREATE [UNIQUE] INDEX CONCURRENTLY ..."}``:
  indexes that bitloot-lite's runner builds on PostgreSQL after the migration's
  transaction commits, without blocking writes. ``migrate()`` must also run the
  same statement without CONCURRENTLY on PostgreSQL: bitloot-lite's runner takes
  it out of the transaction, while peewee-migrate's own runner (``pw_migrate``)
  builds it in place, so both make the same schema.
- ``PREVIOUS_CHECKSUMS = ("<sha256>", ...)``: earlier versions of the file that did
  the same to a database; a history row recorded with one is not "edited".
- ``UPSTREAM``: the TypeORM migration it stands for (see adopting.py).
"""

from __future__ import annotations

import ast
import importlib.resources
import os
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import peewee as pw
    from peewee_migrate import Migrator

from .errors import (
    AmbiguousMigration,
    InvalidMigration,
    InvalidMigrationFiles,
    MigrationsFolderMissing,
    MigrationsNotFound,
    UnknownMigration,
    ValidationError,
)

#: A migration file's name: a three-digit number, an underscore, a name.
MIGRATION_FILE = re.compile(r"^(?P<number>\d{3})_(?P<name>[A-Za-z0-9_]+)\.py$")

#: The number of a user's first migration: room below it for the migrations later
#: releases of bitloot-lite ship (007, 008 ...), which would refuse a user's 007.
USER_FIRST_NUMBER = 100


def first_user_number(last_shipped: int) -> int:
    """The number a user's series starts at: 100, or after the shipped ones if they reach it."""
    return max(USER_FIRST_NUMBER, last_shipped + 1)


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


def user_migrations_dir(migrations_dir: str | os.PathLike[str] | None = None) -> Path | None:
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
                            "100_orders_note.py: three digits, an underscore, letters, "
                            "digits or underscores)")
    return found


def migration_files(migrations_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """Every migration, in the order they run, as (name, path): the shipped ones, then the
    user's (``migrations_dir``, else $BITLOOT_MIGRATIONS_DIR), numbered after them.

    Reads no database. Raises MigrationsNotFound if the shipped folder is
    missing or empty, MigrationsFolderMissing (one) if the user's folder is missing (an
    empty one adds nothing),
    and InvalidMigrationFiles, naming every offending file, for a file not named
    NNN_name.py, two files with one number, or a user's file that collides with
    or does not come after the shipped ones.
    """
    shipped_dir = shipped_migrations_dir()
    if not shipped_dir.is_dir():
        raise MigrationsFolderMissing(shipped_dir, user=False)
    problems: list[str] = []
    shipped = _scan(shipped_dir, problems)
    if not shipped and not problems:
        raise MigrationsNotFound(shipped_dir)
    user_dir = user_migrations_dir(migrations_dir)
    users: list[tuple[str, Path]] = []
    if user_dir is not None:
        if not user_dir.is_dir():
            raise MigrationsFolderMissing(user_dir)
        if user_dir.resolve() != shipped_dir.resolve():  # `--migrations migrations` in a clone
            users = _scan(user_dir, problems)
    shipped_paths = {name: path for name, path in shipped}
    shipped_numbers = {int(name[:3]): path for name, path in shipped}
    last = max(shipped_numbers, default=0)
    start = f"number yours from {first_user_number(last):03d}, as `bitloot-lite new` does"
    for name, path in users:
        number = int(name[:3])
        if name in shipped_paths:
            problems.append(f"{path}: has the name of the shipped migration "
                            f"{shipped_paths[name]}; {start}")
        elif number <= last:
            clash = f" (like {shipped_numbers[number]})" if number in shipped_numbers else ""
            problems.append(f"{path}: numbered {number:03d}{clash}, among the shipped "
                            f"migrations (up to {last:03d}); {start}")
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


def resolve_name(name: str, names: Sequence[str]) -> str:
    """The migration of ``names`` that ``name`` stands for: every command's one reading.

    ``name`` is a full name (``003_create_webhook_logs``) or a number (``3``,
    ``003``: read as an integer, so leading zeros do not matter).
    UnknownMigration when none is, AmbiguousMigration when several are (a
    history row whose file is gone may share a number with a file).
    """
    if not isinstance(name, str):  # 5 is not a name; "5" or "005" is its number
        raise UnknownMigration(name, names)
    if name in names:
        return name
    text = name.strip()
    if text.isascii() and text.isdigit():
        matches = [full for full in names if (number := _NUMBER.match(full))
                   and int(number.group(1)) == int(text)]
        if len(matches) > 1:
            raise AmbiguousMigration(name, matches)
        if matches:
            return matches[0]
    raise UnknownMigration(name, names)


_NUMBER = re.compile(r"(\d+)_")

#: ``rollback --to zero``: before the first migration, every applied one undone
#: (Django's spelling; no migration can be named so: names start with a number).
ZERO = "zero"


#: The values ``ROLLBACK`` may take: the migration's rollback does nothing, knowingly.
NOOP = "noop"


def _noop_rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """The rollback of a migration that declares ROLLBACK = "noop"."""


@dataclass(frozen=True)
class Migration:
    """A loaded migration file: its functions and module-level declarations."""

    name: str
    path: Path
    migrate: Callable[..., Any]
    #: None when the file defines no rollback and does not declare ROLLBACK = "noop".
    rollback: Callable[..., Any] | None
    scope: dict[str, Any] = field(repr=False)

    @property
    def irreversible(self) -> bool:
        return self.rollback is None

    @property
    def description(self) -> str:
        """The first line of its docstring, without the leading "NNN_name: "."""
        return _first_line(self.scope.get("__doc__"), self.name)


def _first_line(doc: str | None, name: str) -> str:
    doc = (doc or "").strip()
    first = doc.splitlines()[0].strip() if doc else ""
    prefix = f"{name}:"
    return first[len(prefix):].strip() if first.startswith(prefix) else first


def describe(name: str, path: Path) -> str:
    """The migration's description (its docstring's first line), read without running it;
    "" when it has none or cannot be parsed (loading it says why)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return ""
    return _first_line(ast.get_docstring(tree), name)


def load_migration(name: str, path: Path) -> Migration:
    """Compile and run the file's module code; check it defines what a migration must.

    Raises InvalidMigration (naming the file and line) for a syntax error, an
    error while its module code runs (an import ...), or no ``migrate``.
    """
    try:
        source = path.read_text(encoding="utf-8")
        code = compile(source, str(path), "exec")  # its real file name, for tracebacks
    except SyntaxError as exc:
        raise InvalidMigration(name, path, f"SyntaxError: {exc.msg}", exc.lineno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidMigration(name, path, f"{type(exc).__name__}: {exc}") from None
    scope = {"__file__": str(path), "__name__": f"migration_{name}"}
    try:
        exec(code, scope)
    except Exception as exc:
        lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
                 if frame.filename == str(path)]
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        raise InvalidMigration(name, path, reason.rstrip(": "), lines[-1] if lines else None
                               ) from None
    migrate = scope.get("migrate")
    if not callable(migrate):
        raise InvalidMigration(name, path, "it defines no migrate(migrator, database, *, "
                               "fake=False) function, so it would be recorded without running")
    rollback = scope.get("rollback")
    declared = scope.get("ROLLBACK")
    if declared is not None and declared != NOOP:
        raise InvalidMigration(name, path, f'ROLLBACK = {declared!r}: the only value it takes '
                               f'is "{NOOP}" (undoing this migration needs nothing)')
    if rollback is not None and not callable(rollback):
        raise InvalidMigration(name, path, "its rollback is not a function")
    if rollback is not None and declared == NOOP:
        raise InvalidMigration(name, path, 'it defines rollback() and declares ROLLBACK = '
                               '"noop": keep one')
    if rollback is None and declared == NOOP:
        rollback = _noop_rollback
    return Migration(name, path, migrate, rollback, scope)
