"""The bitloot-lite command's frame: the group, the options every command shares, and
how a BitlootError becomes one line on stderr and an exit code.

Thin on purpose: every command opens the database, calls one library function and
prints what it returns. A :class:`~bitloot_lite.errors.BitlootError` becomes a
one-line ``Error: ...`` on stderr and exit code 1; a usage error (bad option) exits 2.
``-v`` sends the ``bitloot_lite`` logger to stderr (``-vv`` adds peewee's SQL). The
password of the database URL is never printed: messages name the masked URL, and
every line logged or printed as an error is scrubbed of the password as well.
"""

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from .. import migrating
from ..db import DRIVER_ERRORS, mask_url, open_database, redact, resolve_url, url_secrets
from ..errors import BitlootError, ServerRefused

try:
    import psycopg2
except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
    psycopg2 = None

logger = logging.getLogger("bitloot_lite.cli")

T = TypeVar("T")
#: A click command's function, as a decorator adding options takes and returns it.
F = TypeVar("F", bound=Callable[..., Any])


def _common_options(function: F) -> F:
    """--database, --migrations, -v, -q: on every command, and on the group before it
    (``bitloot-lite --database URL status``). No envvar= here: resolve_url and
    runner.user_migrations_dir read DATABASE_URL and BITLOOT_MIGRATIONS_DIR, so that an
    option given before the command wins over the environment as one given after it does."""
    function = click.option("-q", "--quiet", is_flag=True, default=None,
                            help="Print nothing on success.")(function)
    function = click.option("-v", "--verbose", count=True,
                            help="Log to stderr (-vv adds the SQL).")(function)
    function = click.option(
        "--migrations", "migrations_dir", type=click.Path(file_okay=False), metavar="DIR",
        help="Your own migrations, run after the shipped ones [env: BITLOOT_MIGRATIONS_DIR].",
    )(function)
    return click.option(
        "--database", "url", metavar="URL",
        help="Database URL [env: DATABASE_URL; default: sqlite:///bitloot.db].",
    )(function)


def _common(command: Callable[..., Any] | None = None, *, error_exit: int = 1,
            read_only: bool = False,
            needs_database: Callable[[dict[str, Any]], bool] | None = None,
            migrating_command: bool = False) -> Callable[..., Any]:
    """--database, --migrations, -v and -q, shared by every command, and
    --migration-database for the ``migrating_command``s (migrate, rollback,
    baseline, sql), which then run on that URL when it is set.

    A BitlootError exits with ``error_exit`` (1, or 2 where 1 means something else),
    and so does anything the server refuses (one line, never a traceback).
    ``read_only``: a SQLite file that does not exist is an error, not created.
    ``needs_database(kwargs)``: False where this call opens no database (``sql
    --offline``, ``new``); the command then gets None for it.
    """
    if command is None:
        return functools.partial(_common, error_exit=error_exit, read_only=read_only,
                                 needs_database=needs_database,
                                 migrating_command=migrating_command)

    def migration_option(function: F) -> F:
        if not migrating_command:
            return function
        return click.option(
            "--migration-database", "migration_url", envvar="MIGRATION_DATABASE_URL",
            metavar="URL", help="Direct URL for migrations, bypassing a pooler "
                                "[env: MIGRATION_DATABASE_URL; default: --database].",
        )(function)

    @_common_options
    @migration_option
    @functools.wraps(command)
    def wrapper(url: str | None, migrations_dir: str | None, verbose: int, quiet: bool | None,
                migration_url: str | None = None, **kwargs: Any) -> Any:
        context = click.get_current_context()
        before = context.find_root().obj or {}  # the same options, given before the command
        url = url or before.get("url")
        migrations_dir = migrations_dir or before.get("migrations_dir")
        verbose += before.get("verbose") or 0
        quiet = bool(quiet or before.get("quiet"))
        context.meta["bitloot.quiet"] = quiet
        url = migration_url or resolve_url(url)
        secrets = url_secrets(url)
        with _logging_to_stderr(verbose, secrets):
            try:
                if needs_database is not None and not needs_database(kwargs):
                    return command(None, mask_url(url), migrations_dir, **kwargs)
                database = open_database(url, must_exist=read_only)
                try:
                    return _refusals_as_errors(command, database, mask_url(url),
                                               migrations_dir, **kwargs)
                finally:
                    with contextlib.suppress(*DRIVER_ERRORS):
                        database.close()
            except BitlootError as exc:
                # One line, plus the list of a refusal's reasons ("  - ...": AdoptionError's
                # differences, InvalidMigrationFiles' files), all of them and not only
                # under -v. A driver's extra lines (PostgreSQL's LINE 1 and caret) with -v.
                message = redact(str(exc), secrets)
                lines = [line.rstrip() for line in message.splitlines() if line.strip()]
                shown = lines[:1] + [line for line in lines[1:] if line.startswith("  - ")]
                if len(shown) < len(lines):
                    logger.info("%s", message)  # the full text, with -v
                error = click.ClickException("\n".join(shown) or type(exc).__name__)
                error.exit_code = error_exit  # type: ignore[misc]  # click's ClassVar, per error
                raise error from None

    return wrapper


#: What the server's refusals reach us as, when no library call turned them into a
#: BitlootError: peewee's wrappers, or the driver's own exceptions.


def _refusals_as_errors(command: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``command(*args, **kwargs)``, with a statement the server refused (read-only,
    a missing privilege ...) raised as a one-line ServerRefused, not a traceback."""
    try:
        return command(*args, **kwargs)
    except DRIVER_ERRORS as exc:
        original = next((error for error in (exc.__cause__, exc.__context__,
                                             exc.args[0] if exc.args else None)
                         if getattr(error, "pgcode", None)), exc)
        lines = [line.strip() for line in str(original).splitlines() if line.strip()]
        error = ServerRefused(getattr(original, "pgcode", None),
                              lines[0] if lines else type(original).__name__)
    raise error


def _exclusive(*names: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Refuse (as a usage error, before touching the database) more than one of ``names``."""

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> T:
            given = [name for name in names if kwargs.get(name) is not None]
            if len(given) > 1:  # named as the user typed them: --rollback, not rollback_steps
                flags = {param.name: max(param.opts, key=len)
                         for param in click.get_current_context().command.params}
                raise click.UsageError(
                    " and ".join(flags.get(name, f"--{name}") for name in given)
                    + " cannot be used together"
                )
            return command(**kwargs)

        return wrapper

    return decorate


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


@contextlib.contextmanager
def _logging_to_stderr(verbose: int, secrets: list[str]) -> Iterator[None]:
    """With -v, the bitloot_lite logger (and with -vv, peewee's) on stderr, for one command."""
    if not verbose:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(name)s: %(message)s", secrets))
    levels = {"bitloot_lite": logging.INFO if verbose < 2 else logging.DEBUG}
    if verbose >= 2:
        levels["peewee"] = logging.DEBUG
    saved = {}
    for name, level in levels.items():
        log = logging.getLogger(name)
        saved[name] = log.level
        log.addHandler(handler)
        log.setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            log = logging.getLogger(name)
            log.removeHandler(handler)
            log.setLevel(level)
        handler.close()


def _say(message: str = "") -> None:
    """Print a line of normal output, unless -q."""
    if not click.get_current_context().meta.get("bitloot.quiet"):
        click.echo(message)


_VERBS = {"migrate": "applied", "rollback": "rolled back", "adopt": "adopted",
          "fixup": "added column", "baseline": "baselined", "index": "built index"}


def _print_step(step: migrating.Step) -> None:
    if step.direction in ("adopt", "baseline"):
        _say(f"{_VERBS[step.direction]} {step.name} (recorded as applied, not run)")
    else:
        _say(f"{_VERBS[step.direction]} {step.name} ({step.seconds:.3f}s)")


def _print_wait(holder: str | None) -> None:
    # On stderr, even with -q: a deploy that seems to hang should say why.
    click.echo(f"waiting for the migration lock{f' held by {holder}' if holder else ''} ...",
               err=True)


_lock_timeout_option = click.option(
    "--lock-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
    help="Give up waiting for another process's migration lock after this long.",
)


def _deploy_options(command: F) -> F:
    """The options of the commands that change the database."""
    command = click.option(
        "--allow-edited", is_flag=True,
        help="Go on although applied migrations were edited since (knowingly).",
    )(command)
    command = click.option(
        "--ddl-lock-timeout", type=click.FloatRange(min=0), default=migrating.DDL_LOCK_TIMEOUT,
        show_default=True, metavar="SECONDS",
        help="PostgreSQL lock_timeout for the migrations' statements (0: none).",
    )(command)
    return _lock_timeout_option(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bitloot-lite", prog_name="bitloot-lite")
@_common_options
@click.pass_context
def cli(context: click.Context, url: str | None, migrations_dir: str | None, verbose: int,
        quiet: bool | None) -> None:
    """Migrate and inspect a BitLoot order database (SQLite or PostgreSQL).

    --database, --migrations, -v and -q may come before the command or after it.

    \b
    Example:
        DATABASE_URL=postgresql://app@db/bitloot bitloot-lite migrate
        bitloot-lite --database sqlite:///shop.db status
    """
    context.obj = {"url": url, "migrations_dir": migrations_dir, "verbose": verbose,
                   "quiet": quiet}


_json_option = click.option("--json", "as_json", is_flag=True,
                            help="Print one JSON document, for scripts.")


def _step_json(step: migrating.Step) -> dict[str, Any]:
    return {"name": step.name, "action": step.direction, "seconds": round(step.seconds, 6)}



def main() -> None:
    cli(prog_name="bitloot-lite")
