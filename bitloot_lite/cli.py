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

from . import migrating
from .db import is_sqlite, mask_url, open_database, redact, resolve_url, url_secrets
from .errors import BitlootError

logger = logging.getLogger("bitloot_lite.cli")


def _common_options(function):
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


def _common(command=None, *, error_exit=1, read_only=False):
    """--database, --migrations, -v and -q, shared by every command.

    A BitlootError exits with ``error_exit`` (1, or 2 where 1 means something else).
    ``read_only``: a SQLite file that does not exist is an error, not created.
    """
    if command is None:
        return functools.partial(_common, error_exit=error_exit, read_only=read_only)

    @_common_options
    @functools.wraps(command)
    def wrapper(url, migrations_dir, verbose, quiet, **kwargs):
        context = click.get_current_context()
        before = context.find_root().obj or {}  # the same options, given before the command
        url = url or before.get("url")
        migrations_dir = migrations_dir or before.get("migrations_dir")
        verbose += before.get("verbose") or 0
        quiet = bool(quiet or before.get("quiet"))
        context.meta["bitloot.quiet"] = quiet
        url = resolve_url(url)
        secrets = url_secrets(url)
        with _logging_to_stderr(verbose, secrets):
            try:
                database = open_database(url, must_exist=read_only)
                try:
                    return command(database, mask_url(url), migrations_dir, **kwargs)
                finally:
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
                error.exit_code = error_exit
                raise error from None

    return wrapper


def _exclusive(*names):
    """Refuse (as a usage error, before touching the database) more than one of ``names``."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(**kwargs):
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


_VERBS = {"migrate": "applied", "rollback": "rolled back", "adopt": "adopted",
          "fixup": "added column", "baseline": "baselined", "index": "built index"}


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
@_common_options
@click.pass_context
def cli(context, url, migrations_dir, verbose, quiet):
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


def _step_json(step):
    return {"name": step.name, "action": step.direction, "seconds": round(step.seconds, 6)}


@cli.command()
@click.option("--to", "to", metavar="NAME",
              help="Stop after this migration (its full name or its number: 003).")
@click.option("--allow-out-of-order", is_flag=True,
              help="Apply pending migrations older than the newest applied one.")
@_json_option
@_deploy_options
@_common
def migrate(database, where, migrations_dir, to, allow_out_of_order, allow_edited,
            lock_timeout, ddl_lock_timeout, as_json):
    """Apply the pending migrations, in order.

    Prints each migration applied with the time it took, then a summary. Safe
    to start from several deploys at once: they take turns (a lock), and each
    migration is applied once. A database made by the original TypeORM
    application is adopted: its applied migrations are recorded, not re-run.

    \b
    Example:
        bitloot-lite migrate
        bitloot-lite migrate --to 003_create_webhook_logs --lock-timeout 60
        bitloot-lite migrate --to 003 --json
    """
    started = time.perf_counter()
    steps = []

    def on_step(step):
        steps.append(step)
        if not as_json:
            _print_step(step)

    applied = migrating.migrate(
        database, to=to, migrations_dir=migrations_dir, lock_timeout=lock_timeout,
        ddl_lock_timeout=ddl_lock_timeout, allow_edited=allow_edited,
        allow_out_of_order=allow_out_of_order, on_step=on_step, on_wait=_print_wait,
    )
    seconds = time.perf_counter() - started
    if as_json:
        _say(json.dumps({"database": where, "applied": applied,
                         "steps": [_step_json(step) for step in steps],
                         "seconds": round(seconds, 6)}, indent=2))
    elif applied:
        _say(f"{len(applied)} migration(s) applied to {where} in {seconds:.3f}s")
    elif any(step.direction == "index" for step in steps):  # what a killed deploy left
        _say(f"finished the unbuilt index(es) of applied migrations on {where} in "
             f"{seconds:.3f}s; no migration was pending")
    elif to is not None:
        _say(f"nothing to migrate: {to} is already applied to {where} (up to date)")
    else:
        _say(f"nothing to migrate: {where} is up to date")


@cli.command()
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="How many to undo [default: 1]."
)
@click.option("--to", "to", metavar="NAME",
              help="Undo every migration after this one (its full name or its number).")
@_exclusive("steps", "to")
@_json_option
@_deploy_options
@_common
def rollback(database, where, migrations_dir, steps, to, allow_edited, lock_timeout,
             ddl_lock_timeout, as_json):
    """Undo the newest migrations (one by default).

    --steps and --to cannot be used together.

    \b
    Example:
        bitloot-lite rollback
        bitloot-lite rollback --steps 2
        bitloot-lite rollback --to 001_init_orders
        bitloot-lite rollback --to 1 --json
    """
    done = []
    undone = migrating.rollback(
        database, steps=steps or 1, to=to, migrations_dir=migrations_dir,
        lock_timeout=lock_timeout, ddl_lock_timeout=ddl_lock_timeout,
        allow_edited=allow_edited, on_step=done.append if as_json else _print_step,
        on_wait=_print_wait,
    )
    if as_json:
        _say(json.dumps({"database": where, "rolled_back": undone,
                         "steps": [_step_json(step) for step in done]}, indent=2))
    elif undone:
        _say(f"{len(undone)} migration(s) rolled back on {where}")
    else:
        _say(f"nothing to roll back: {to} is the newest migration applied to {where}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@click.option("--allow-edited", is_flag=True,
              help="List applied migrations edited since (flagged) instead of failing.")
@_common(error_exit=2, read_only=True)
def status(database, where, migrations_dir, as_json, allow_edited):
    """List every migration, one per line: applied (with its time, UTC) or pending.

    Exit code 0 when nothing is pending, 1 when something is (a migration, or an
    index a killed deploy left unbuilt), 2 on error, so a deploy can gate on it.

    \b
    Example:
        bitloot-lite status
        bitloot-lite status --json -q || echo "migrations pending"
    """
    states = migrating.status(database, migrations_dir, allow_edited=allow_edited)
    if as_json:
        _say(json.dumps({"database": where, "migrations": [
            {"name": s.name, "description": s.description, "applied": s.applied,
             "edited": s.edited, "file_missing": s.missing,
             "applied_at": s.applied_at.isoformat() if s.applied else None,
             "unbuilt_indexes": list(s.unbuilt)} for s in states
        ]}, indent=2))
    else:
        for state in states:
            notes = [state.description] if state.description else []
            if state.edited:
                notes.append("(edited since)")
            if state.unbuilt:
                notes.append(f"(unfinished: index {', '.join(state.unbuilt)} missing or "
                             "INVALID; run migrate to build it)")
            if state.missing:
                notes.append("(its file is gone: see `bitloot-lite repair`)")
            tail = "".join(f"  {note}" for note in notes)
            if state.applied:
                _say(f"applied  {state.name}  {state.applied_at:%Y-%m-%d %H:%M:%S} UTC{tail}")
            else:
                _say(f"pending  {state.name}{tail}")
    if any(not state.done for state in states):
        sys.exit(1)


@cli.command()
@click.option("--to", "to", metavar="NAME", help="Preview migrating up to this migration.")
@click.option("--rollback", "rollback_steps", type=click.IntRange(min=1), metavar="N",
              help="Preview rolling back N migrations instead.")
@_exclusive("to", "rollback_steps")
@_common(read_only=True)
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
@_json_option
@_common(error_exit=2, read_only=True)
def check(database, where, migrations_dir, as_json):
    """Compare the live database with the models and docs/SCHEMA.md.

    Exit code 0 when they match, 1 with one line per difference when they
    drift, 2 on error.

    \b
    Example:
        bitloot-lite check --database postgresql://app@db/bitloot
    """
    differences, notes = migrating.check(database, migrations_dir)
    if as_json:
        _say(json.dumps({"database": where, "matches": not differences,
                         "differences": differences, "notes": notes}, indent=2))
        sys.exit(1 if differences else 0)
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
@_common
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


_REPAIRS = {
    "checksum": "re-record {name}: edited since it was applied (checksum {recorded} -> {current})",
    "record": "record {name}: no checksum was recorded (now {current})",
    "remove": "remove {name}: applied, but its file is gone",
}


@cli.command()
@click.option("--yes", is_flag=True, help="Repair without asking (for scripts).")
@_lock_timeout_option
@_common
def repair(database, where, migrations_dir, yes, lock_timeout):
    """Fix the migration history after a review (Flyway's repair).

    Re-records the checksum of every applied migration whose file was edited
    since (after you have checked the edit is harmless), and removes the
    history rows of migrations whose files are gone. Lists each, then asks
    (--yes: does not ask). Changes no table but the history.

    \b
    Example:
        bitloot-lite repair
        bitloot-lite repair --yes --database postgresql://app@db/bitloot
    """
    planned = migrating.repairs(database, migrations_dir)
    if not planned:
        _say(f"nothing to repair: the history of {where} matches the migration files")
        return
    show = _say if yes else click.echo  # what a prompt asks about is shown even with -q
    for item in planned:
        show(_REPAIRS[item.action].format(
            name=item.name, recorded=(item.recorded or "")[:12], current=(item.current or "")[:12]))
    if not yes and not click.confirm(f"Repair {len(planned)} history row(s) of {where}?"):
        raise click.ClickException("nothing was repaired")
    done = migrating.repair(database, migrations_dir, expected=planned,
                            lock_timeout=lock_timeout, on_wait=_print_wait)
    _say(f"{len(done)} history row(s) repaired on {where}")


def main():
    cli(prog_name="bitloot-lite")
