"""The bitloot-lite command: parse options, call the library, print, set exit codes."""

import functools
import logging
import sys

import click

from . import migrating
from .db import mask_url, open_database, resolve_url
from .errors import BitlootError


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
    @click.option("-v", "--verbose", count=True, help="Log more (-vv for SQL).")
    @functools.wraps(command)
    def wrapper(url, migrations_dir, verbose, **kwargs):
        _configure_logging(verbose)
        try:
            database = open_database(url)
            try:
                return command(database, mask_url(resolve_url(url)), migrations_dir, **kwargs)
            finally:
                database.close()
        except BitlootError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _configure_logging(verbose):
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    for name, level in (("bitloot_lite", logging.INFO), ("peewee", logging.DEBUG)):
        if name == "peewee" and verbose < 2:
            continue
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(level)


def _print_step(step):
    verb = "applied" if step.direction == "migrate" else "rolled back"
    click.echo(f"{verb} {step.name} ({step.seconds:.3f}s)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bitloot-lite")
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

    \b
    Example:
        bitloot-lite migrate
        bitloot-lite migrate --to 003_create_webhook_logs
    """
    applied = migrating.migrate(database, to=to, migrations_dir=migrations_dir, on_step=_print_step)
    if applied:
        click.echo(f"{len(applied)} migration(s) applied to {where}")
    else:
        click.echo(f"nothing to migrate: {where} is up to date")


@cli.command()
@click.option("--steps", type=click.IntRange(min=1), default=None, help="How many to undo [default: 1].")
@click.option("--to", "to", metavar="NAME", help="Undo every migration after this one.")
@_common
def rollback(database, where, migrations_dir, steps, to):
    """Undo the newest migrations.

    \b
    Example:
        bitloot-lite rollback
        bitloot-lite rollback --steps 2
        bitloot-lite rollback --to 001_init_orders
    """
    if steps is not None and to is not None:
        raise click.UsageError("give --steps or --to, not both")
    undone = migrating.rollback(
        database, steps=steps or 1, to=to, migrations_dir=migrations_dir, on_step=_print_step
    )
    click.echo(f"{len(undone)} migration(s) rolled back" if undone else "nothing to roll back")


@cli.command()
@_common
def status(database, where, migrations_dir):
    """List every migration as applied (with its time) or pending.

    \b
    Example:
        bitloot-lite status
    """
    for state in migrating.status(database, migrations_dir):
        if state.applied:
            click.echo(f"applied  {state.name}  {state.applied_at:%Y-%m-%d %H:%M:%S} UTC")
        else:
            click.echo(f"pending  {state.name}")


def main():
    cli(prog_name="bitloot-lite")
