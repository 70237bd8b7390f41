"""The bitloot-lite command: parse options, call the library, print, set exit codes.

Thin on purpose: every command opens the database, calls one function of
:mod:`bitloot_lite.migrating` and prints what it returns. A
:class:`~bitloot_lite.errors.BitlootError` becomes a one-line ``Error: ...`` on
stderr and exit code 1; a usage error (bad option) exits 2. ``-v`` sends the
``bitloot_lite`` logger to stderr (``-vv`` adds peewee's SQL). The password of
the database URL is never printed: messages name the masked URL, and every
line logged or printed as an error is scrubbed of the password as well.
"""

import contextlib
import functools
import logging
import sys
from urllib.parse import unquote, urlsplit

import click

from . import migrating
from .db import mask_url, open_database, resolve_url
from .errors import BitlootError

logger = logging.getLogger("bitloot_lite.cli")


def _common(command):
    """--database, --migrations and -v, shared by every command."""

    @click.option(
        "--database", "url", envvar="DATABASE_URL", metavar="URL",
        help="Database URL [env: DATABASE_URL; default: sqlite:///bitloot.db].",
    )
    @click.option(
        "--migrations", "migrations_dir", envvar="BITLOOT_MIGRATIONS_DIR",
        type=click.Path(file_okay=False), metavar="DIR",
        help="Migrations folder [env: BITLOOT_MIGRATIONS_DIR; default: the packaged ones].",
    )
    @click.option("-v", "--verbose", count=True, help="Log to stderr (-vv adds the SQL).")
    @functools.wraps(command)
    def wrapper(url, migrations_dir, verbose, **kwargs):
        url = resolve_url(url)
        secrets = _secrets(url)
        with _logging_to_stderr(verbose, secrets):
            try:
                database = open_database(url)
                try:
                    return command(database, mask_url(url), migrations_dir, **kwargs)
                finally:
                    database.close()
            except BitlootError as exc:
                message = _redact(str(exc), secrets)
                lines = [line.strip() for line in message.splitlines() if line.strip()]
                if len(lines) > 1:
                    logger.info("%s", message)  # the full text, with -v
                raise click.ClickException(lines[0] if lines else type(exc).__name__) from None

    return wrapper


def _exclusive(*names):
    """Refuse (as a usage error, before touching the database) more than one of ``names``."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(**kwargs):
            given = [name for name in names if kwargs.get(name) is not None]
            if len(given) > 1:
                raise click.UsageError(
                    " and ".join(f"--{name}" for name in given) + " cannot be used together"
                )
            return command(**kwargs)

        return wrapper

    return decorate


def _secrets(url):
    """The strings that must never be printed: the URL's password, raw and decoded."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    if not password:
        return []
    return sorted({password, unquote(password)}, key=len, reverse=True)


def _redact(text, secrets):
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt, secrets):
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record):
        return _redact(super().format(record), self.secrets)


@contextlib.contextmanager
def _logging_to_stderr(verbose, secrets):
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


def _print_step(step):
    verb = "applied" if step.direction == "migrate" else "rolled back"
    click.echo(f"{verb} {step.name} ({step.seconds:.3f}s)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bitloot-lite", prog_name="bitloot-lite")
def cli():
    """Migrate and inspect a BitLoot order database (SQLite or PostgreSQL).

    \b
    Example:
        DATABASE_URL=postgresql://app@db/bitloot bitloot-lite migrate
    """


@cli.command()
@click.option("--to", "to", metavar="NAME", help="Stop after this migration.")
@_common
def migrate(database, where, migrations_dir, to):
    """Apply the pending migrations, in order.

    Prints each migration applied with the time it took, then a summary.

    \b
    Example:
        bitloot-lite migrate
        bitloot-lite migrate --to 003_create_webhook_logs
    """
    applied = migrating.migrate(database, to=to, migrations_dir=migrations_dir, on_step=_print_step)
    if applied:
        click.echo(f"{len(applied)} migration(s) applied to {where}")
    elif to is not None:
        click.echo(f"nothing to migrate: {to} is already applied to {where} (up to date)")
    else:
        click.echo(f"nothing to migrate: {where} is up to date")


@cli.command()
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="How many to undo [default: 1]."
)
@click.option("--to", "to", metavar="NAME", help="Undo every migration after this one.")
@_exclusive("steps", "to")
@_common
def rollback(database, where, migrations_dir, steps, to):
    """Undo the newest migrations (one by default).

    --steps and --to cannot be used together.

    \b
    Example:
        bitloot-lite rollback
        bitloot-lite rollback --steps 2
        bitloot-lite rollback --to 001_init_orders
    """
    undone = migrating.rollback(
        database, steps=steps or 1, to=to, migrations_dir=migrations_dir, on_step=_print_step
    )
    if undone:
        click.echo(f"{len(undone)} migration(s) rolled back on {where}")
    else:
        click.echo(f"nothing to roll back: {to} is the newest migration applied to {where}")


@cli.command()
@_common
def status(database, where, migrations_dir):
    """List every migration, one per line: applied (with its time, UTC) or pending.

    \b
    Example:
        bitloot-lite status
        bitloot-lite status --database sqlite:///other.db
    """
    for state in migrating.status(database, migrations_dir):
        if state.applied:
            click.echo(f"applied  {state.name}  {state.applied_at:%Y-%m-%d %H:%M:%S} UTC")
        else:
            click.echo(f"pending  {state.name}")


def main():
    cli(prog_name="bitloot-lite")
