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
import json
import logging
import sys
import time

import click
import peewee as pw

from . import migrating
from .db import is_sqlite, mask_url, open_database, redact, resolve_url, url_secrets
from .errors import BitlootError, ServerRefused
from .grants import apply_grants, grant_statements

try:
    import psycopg2
except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
    psycopg2 = None

logger = logging.getLogger("bitloot_lite.cli")


def _common(command=None, *, error_exit=1, migrating_command=False):
    """--database, --migrations, -v and -q, shared by every command, and
    --migration-database for the ``migrating_command``s (migrate, rollback,
    baseline, sql), which then run on that URL when it is set.

    A BitlootError exits with ``error_exit`` (1, or 2 where 1 means something else),
    and so does anything the server refuses (one line, never a traceback).
    """
    if command is None:
        return functools.partial(_common, error_exit=error_exit,
                                 migrating_command=migrating_command)

    def migration_option(function):
        if not migrating_command:
            return function
        return click.option(
            "--migration-database", "migration_url", envvar="MIGRATION_DATABASE_URL",
            metavar="URL", help="Direct URL for migrations, bypassing a pooler "
                                "[env: MIGRATION_DATABASE_URL; default: --database].",
        )(function)

    @click.option(
        "--database", "url", envvar="DATABASE_URL", metavar="URL",
        help="Database URL [env: DATABASE_URL; default: sqlite:///bitloot.db].",
    )
    @migration_option
    @click.option(
        "--migrations", "migrations_dir", envvar="BITLOOT_MIGRATIONS_DIR",
        type=click.Path(file_okay=False), metavar="DIR",
        help="Migrations folder [env: BITLOOT_MIGRATIONS_DIR; default: the packaged ones].",
    )
    @click.option("-v", "--verbose", count=True, help="Log to stderr (-vv adds the SQL).")
    @click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
    @functools.wraps(command)
    def wrapper(url, migrations_dir, verbose, quiet, migration_url=None, **kwargs):
        click.get_current_context().meta["bitloot.quiet"] = quiet
        url = migration_url or resolve_url(url)
        secrets = url_secrets(url)
        with _logging_to_stderr(verbose, secrets):
            try:
                database = open_database(url)
                try:
                    return _refusals_as_errors(command, database, mask_url(url),
                                               migrations_dir, **kwargs)
                finally:
                    with contextlib.suppress(*_DRIVER_ERRORS):
                        database.close()
            except BitlootError as exc:
                message = redact(str(exc), secrets)
                lines = [line.strip() for line in message.splitlines() if line.strip()]
                if len(lines) > 1:
                    logger.info("%s", message)  # the full text, with -v
                error = click.ClickException(lines[0] if lines else type(exc).__name__)
                error.exit_code = error_exit
                raise error from None

    return wrapper


#: What the server's refusals reach us as, when no library call turned them into a
#: BitlootError: peewee's wrappers, or the driver's own exceptions.
_DRIVER_ERRORS = (pw.PeeweeException,) + ((psycopg2.Error,) if psycopg2 else ())


def _refusals_as_errors(command, *args, **kwargs):
    """``command(*args, **kwargs)``, with a statement the server refused (read-only,
    a missing privilege ...) raised as a one-line ServerRefused, not a traceback."""
    try:
        return command(*args, **kwargs)
    except _DRIVER_ERRORS as exc:
        original = next((error for error in (exc.__cause__, exc.__context__,
                                             exc.args[0] if exc.args else None)
                         if getattr(error, "pgcode", None)), exc)
        lines = [line.strip() for line in str(original).splitlines() if line.strip()]
        error = ServerRefused(getattr(original, "pgcode", None),
                              lines[0] if lines else type(original).__name__)
    raise error


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


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt, secrets):
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record):
        return redact(super().format(record), self.secrets)


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


def _say(message=""):
    """Print a line of normal output, unless -q."""
    if not click.get_current_context().meta.get("bitloot.quiet"):
        click.echo(message)


_VERBS = {"migrate": "applied", "rollback": "rolled back",
          "adopt": "adopted", "baseline": "baselined", "index": "built index"}


def _print_step(step):
    if step.direction in ("adopt", "baseline"):
        _say(f"{_VERBS[step.direction]} {step.name} (recorded as applied, not run)")
    else:
        _say(f"{_VERBS[step.direction]} {step.name} ({step.seconds:.3f}s)")


def _print_wait(holder):
    # On stderr, even with -q: a deploy that seems to hang should say why.
    click.echo(f"waiting for the migration lock{f' held by {holder}' if holder else ''} ...",
               err=True)


_lock_timeout_option = click.option(
    "--lock-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
    help="Give up waiting for another process's migration lock after this long.",
)


def _deploy_options(command):
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
def cli():
    """Migrate and inspect a BitLoot order database (SQLite or PostgreSQL).

    \b
    Example:
        DATABASE_URL=postgresql://app@db/bitloot bitloot-lite migrate
    """


@cli.command()
@click.option("--to", "to", metavar="NAME", help="Stop after this migration.")
@click.option("--allow-out-of-order", is_flag=True,
              help="Apply pending migrations older than the newest applied one.")
@_deploy_options
@_common(migrating_command=True)
def migrate(database, where, migrations_dir, to, allow_out_of_order, allow_edited,
            lock_timeout, ddl_lock_timeout):
    """Apply the pending migrations, in order.

    Prints each migration applied with the time it took, then a summary. Safe
    to start from several deploys at once: they take turns (a lock), and each
    migration is applied once. A database made by the original TypeORM
    application is adopted: its applied migrations are recorded, not re-run.

    \b
    Example:
        bitloot-lite migrate
        bitloot-lite migrate --to 003_create_webhook_logs --lock-timeout 60
        bitloot-lite migrate --migration-database postgresql://owner@db-primary/bitloot
    """
    started = time.perf_counter()
    applied = migrating.migrate(
        database, to=to, migrations_dir=migrations_dir, lock_timeout=lock_timeout,
        ddl_lock_timeout=ddl_lock_timeout, allow_edited=allow_edited,
        allow_out_of_order=allow_out_of_order, on_step=_print_step, on_wait=_print_wait,
    )
    if applied:
        seconds = time.perf_counter() - started
        _say(f"{len(applied)} migration(s) applied to {where} in {seconds:.3f}s")
    elif to is not None:
        _say(f"nothing to migrate: {to} is already applied to {where} (up to date)")
    else:
        _say(f"nothing to migrate: {where} is up to date")


@cli.command()
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="How many to undo [default: 1]."
)
@click.option("--to", "to", metavar="NAME", help="Undo every migration after this one.")
@_exclusive("steps", "to")
@_deploy_options
@_common(migrating_command=True)
def rollback(database, where, migrations_dir, steps, to, allow_edited, lock_timeout,
             ddl_lock_timeout):
    """Undo the newest migrations (one by default).

    --steps and --to cannot be used together.

    \b
    Example:
        bitloot-lite rollback
        bitloot-lite rollback --steps 2
        bitloot-lite rollback --to 001_init_orders
    """
    undone = migrating.rollback(
        database, steps=steps or 1, to=to, migrations_dir=migrations_dir,
        lock_timeout=lock_timeout, ddl_lock_timeout=ddl_lock_timeout,
        allow_edited=allow_edited, on_step=_print_step, on_wait=_print_wait,
    )
    if undone:
        _say(f"{len(undone)} migration(s) rolled back on {where}")
    else:
        _say(f"nothing to roll back: {to} is the newest migration applied to {where}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@click.option("--allow-edited", is_flag=True,
              help="List applied migrations edited since (flagged) instead of failing.")
@_common(error_exit=2)
def status(database, where, migrations_dir, as_json, allow_edited):
    """List every migration, one per line: applied (with its time, UTC) or pending.

    Exit code 0 when nothing is pending, 1 when something is, 2 on error, so a
    deploy can gate on it.

    \b
    Example:
        bitloot-lite status
        bitloot-lite status --json -q || echo "migrations pending"
    """
    states = migrating.status(database, migrations_dir, allow_edited=allow_edited)
    if as_json:
        _say(json.dumps({"database": where, "migrations": [
            {"name": s.name, "applied": s.applied, "edited": s.edited,
             "applied_at": s.applied_at.isoformat() if s.applied else None} for s in states
        ]}, indent=2))
    else:
        for state in states:
            edited = "  (edited since)" if state.edited else ""
            if state.applied:
                _say(f"applied  {state.name}  {state.applied_at:%Y-%m-%d %H:%M:%S} UTC{edited}")
            else:
                _say(f"pending  {state.name}")
    if any(not state.applied for state in states):
        sys.exit(1)


@cli.command()
@click.option("--to", "to", metavar="NAME", help="Preview migrating up to this migration.")
@click.option("--rollback", "rollback_steps", type=click.IntRange(min=1), metavar="N",
              help="Preview rolling back N migrations instead.")
@_exclusive("to", "rollback_steps")
@_common(migrating_command=True)
def sql(database, where, migrations_dir, to, rollback_steps):
    """Print the SQL that migrate (or rollback --steps N) would run; change nothing.

    The statements are run in a transaction that is rolled back, so they are
    exactly the ones this backend would run; the database, its history
    table included, is left as it was. Reads are left out.

    \b
    Example:
        bitloot-lite sql > pending.sql
        bitloot-lite sql --rollback 1
    """
    steps = migrating.preview(database, to=to, migrations_dir=migrations_dir,
                              rollback_steps=rollback_steps)
    if not steps:
        _say(f"-- nothing to {'roll back' if rollback_steps else 'migrate'} on {where}")
    # migrate turns SQLite's foreign keys off around each migration's transaction.
    pragmas = is_sqlite(database)
    for name, direction, statements in steps:
        _say(f"-- {direction} {name}")
        if direction == "adopt":
            _say("-- recorded as applied from the TypeORM history; not run")
            _say()
            continue
        if direction == "after commit":
            _say("-- outside any transaction (CONCURRENTLY)")
            for statement, _params in statements:
                _say(f"{statement.strip()};")
            _say()
            continue
        if pragmas:
            _say("PRAGMA foreign_keys = OFF;")
        _say("BEGIN;")
        for statement, params in statements:
            text = statement.strip().rstrip(";")
            _say(f"{text};" + (f"  -- params: {[str(p) for p in params]}" if params else ""))
        if pragmas:
            _say("PRAGMA foreign_key_check;")
        _say("COMMIT;")
        if pragmas:
            _say("PRAGMA foreign_keys = ON;")
        _say()


@cli.command()
@_common(error_exit=2)
def check(database, where, migrations_dir):
    """Compare the live database with the models and docs/SCHEMA.md.

    Exit code 0 when they match, 1 with one line per difference when they
    drift, 2 on error.

    \b
    Example:
        bitloot-lite check --database postgresql://app@db/bitloot
    """
    differences, notes = migrating.check(database, migrations_dir)
    for note in notes:
        _say(f"note: {note}")
    if differences:
        for line in differences:
            click.echo(line)
        click.echo(f"{len(differences)} difference(s) on {where}", err=True)
        sys.exit(1)
    _say(f"{where} matches the schema")


@cli.command()
@click.option("--to", "to", metavar="NAME", required=True,
              help="The last migration whose schema the database already has.")
@_lock_timeout_option
@_common(migrating_command=True)
def baseline(database, where, migrations_dir, to, lock_timeout):
    """Record migrations up to NAME as applied, for tables made outside bitloot-lite.

    Checks first that the tables have exactly the shape those migrations
    make; runs nothing. Then `migrate` applies the rest.

    \b
    Example:
        bitloot-lite baseline --to 004_orders_status_enum && bitloot-lite migrate
    """
    names = migrating.baseline(database, to, migrations_dir=migrations_dir,
                               lock_timeout=lock_timeout, on_step=_print_step,
                               on_wait=_print_wait)
    _say(f"{len(names)} migration(s) recorded as applied on {where}")


@cli.command()
@click.argument("role")
@click.option("--apply", "apply_them", is_flag=True,
              help="Run the statements (connected as the owner of the tables).")
@_common(migrating_command=True)
def grants(database, where, migrations_dir, role, apply_them):
    """Print the GRANT statements the application role ROLE needs; --apply runs them.

    DML on the tables, USAGE on the schema and the enum types, SELECT on the
    migration history (for status and check): no DDL, no writes to the
    history. Run it as the owner (like migrate, on MIGRATION_DATABASE_URL when
    set) after each migrate that adds a table.

    \b
    Example:
        bitloot-lite grants bitloot_app > grants.sql
        bitloot-lite grants bitloot_app --apply --migration-database postgresql://owner@db/bitloot
    """
    statements = (apply_grants if apply_them else grant_statements)(database, role)
    for statement in statements:
        _say(f"{statement};")
    if apply_them:
        _say(f"-- {len(statements)} statement(s) run on {where}")


def main():
    cli(prog_name="bitloot-lite")
