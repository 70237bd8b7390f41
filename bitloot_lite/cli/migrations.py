"""The commands that manage the schema: migrate, rollback, status, sql, check, baseline,
new and lint (each calls one function of the library and prints its result; repair is in
repairs.py)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click

from .. import migrating, offline, repairing
from ..db import is_postgres
from .base import (
    _common,
    _deploy_options,
    _exclusive,
    _json_option,
    _lock_timeout_option,
    _print_step,
    _print_wait,
    _say,
    _step_json,
    cli,
)
from .progress import _StepProgress

if TYPE_CHECKING:
    import peewee as pw


@cli.command()
@click.option("--to", "to", metavar="NAME",
              help="Stop after this migration (its full name or its number: 003).")
@click.option("--allow-out-of-order", is_flag=True,
              help="Apply pending migrations older than the newest applied one.")
@_json_option
@_deploy_options
@_common(migrating_command=True)
def migrate(database: pw.Database, where: str, migrations_dir: str | None, to: str | None,
            allow_out_of_order: bool, allow_edited: bool, lock_timeout: float | None,
            ddl_lock_timeout: float, as_json: bool) -> None:
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
        bitloot-lite migrate --migration-database postgresql://owner@db-primary/bitloot
    """
    started = time.perf_counter()
    steps = []

    def on_step(step: migrating.Step) -> None:
        steps.append(step)
        if not as_json:
            _print_step(step)

    with _StepProgress(database, migrations_dir) as progress:  # a terminal only
        applied = migrating.migrate(
            database, to=to, migrations_dir=migrations_dir, lock_timeout=lock_timeout,
            ddl_lock_timeout=ddl_lock_timeout, allow_edited=allow_edited,
            allow_out_of_order=allow_out_of_order, on_step=progress.wrap(on_step),
            on_wait=progress.wrap(_print_wait, waiting=True),
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
              help="Undo every migration after this one (its full name or its number; "
                   "zero: every one).")
@_exclusive("steps", "to")
@_json_option
@_deploy_options
@_common(migrating_command=True)
def rollback(database: pw.Database, where: str, migrations_dir: str | None, steps: int | None,
             to: str | None, allow_edited: bool, lock_timeout: float | None,
             ddl_lock_timeout: float, as_json: bool) -> None:
    """Undo the newest migrations (one by default).

    --steps and --to cannot be used together.

    \b
    Example:
        bitloot-lite rollback
        bitloot-lite rollback --steps 2
        bitloot-lite rollback --to 001_init_orders
        bitloot-lite rollback --to 1 --json
        bitloot-lite rollback --to zero
    """
    done: list[migrating.Step] = []
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
    elif to == migrating.ZERO or to is None:
        _say(f"nothing to roll back: no migration is applied to {where}")
    else:
        _say(f"nothing to roll back: {to} is the newest migration applied to {where}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@click.option("--allow-edited", is_flag=True,
              help="List applied migrations edited since (flagged) instead of failing.")
@_common(error_exit=2, read_only=True)
def status(database: pw.Database, where: str, migrations_dir: str | None, as_json: bool,
           allow_edited: bool) -> None:
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
             "applied_at": s.applied_at.isoformat() if s.applied else None,  # type: ignore[union-attr]  # applied: it has one
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
                notes.append(f"({repairing.where_gone(migrations_dir)}: see `bitloot-lite repair`)")
            tail = "".join(f"  {note}" for note in notes)
            if state.applied:
                _say(f"applied  {state.name}  {state.applied_at:%Y-%m-%d %H:%M:%S} UTC{tail}")
            else:
                _say(f"pending  {state.name}{tail}")
    if any(not state.done for state in states):
        sys.exit(1)


@cli.command()
@click.option("--to", "to", metavar="NAME", help="Up to and including this migration.")
@click.option("--from", "start", metavar="NAME",
              help="From this migration on, applied or not (rendered as on an empty database "
                   "with the earlier ones applied; the live database is not touched).")
@click.option("--rollback", "rollback_steps", type=click.IntRange(min=1), metavar="N",
              help="The rollback of N migrations instead.")
@click.option("--offline", "offline_only", is_flag=True,
              help="Open no database: render for --backend (or the URL's backend).")
@click.option("--backend", type=click.Choice(offline.BACKENDS), default=None,
              help="With --offline: the backend to render for [default: the URL's].")
@click.option("--json", "as_json", is_flag=True, help="Print the statement list as JSON.")
@_exclusive("start", "rollback_steps")
@_exclusive("to", "rollback_steps")
@_common(read_only=True, migrating_command=True,
         needs_database=lambda kwargs: not kwargs["offline_only"])
def sql(database: pw.Database | None, where: str, migrations_dir: str | None, to: str | None,
        start: str | None, rollback_steps: int | None, offline_only: bool, backend: str | None,
        as_json: bool) -> None:
    """Print the SQL that migrate (or rollback --steps N) would run, as a runnable script.

    Values are inlined and the history rows included, in the transactions
    migrate uses, so the output runs as-is in psql (-v ON_ERROR_STOP=1) or
    sqlite3 and gives the same schema and history. On a live database the
    pending migrations are run in a transaction that is rolled back: the
    database, its history table included, is left as it was. --from (any
    range, applied ones included) and --offline render them without touching
    the database; --offline needs none at all.

    \b
    Example:
        bitloot-lite sql > pending.sql
        bitloot-lite sql --rollback 1
        bitloot-lite sql --offline --backend postgres > all.sql
        bitloot-lite sql --from 004_orders_status_enum --to 005_add_keys_reservation
    """
    if database is None or start is not None:
        if database is not None:
            backend = "postgres" if is_postgres(database) else "sqlite"
        backend = backend or ("postgres" if where.startswith("postgres") else "sqlite")
        where = f"an empty {backend} database"
        blocks = offline.blocks(backend, migrations_dir, start=start, end=to,
                                rollback_steps=rollback_steps)
    else:
        backend = "postgres" if is_postgres(database) else "sqlite"
        blocks = offline.from_preview(migrating.preview(
            database, to=to, migrations_dir=migrations_dir, rollback_steps=rollback_steps))
    if as_json:
        _say(json.dumps(offline.as_json(blocks, backend), indent=2))
    elif not blocks:
        _say(f"-- nothing to {'roll back' if rollback_steps else 'migrate'} on {where}")
    else:
        click.echo(offline.text(blocks, backend), nl=False)


@cli.command()
@click.option("--models", "models", metavar="MODULE",
              help="Your models module (dotted name or .py file): compare its models too.")
@_json_option
@_common(error_exit=2, read_only=True)
def check(database: pw.Database, where: str, migrations_dir: str | None, models: str | None,
          as_json: bool) -> None:
    """Compare the live database with the schema its migrations build, and the models.

    The expected schema is replayed on a scratch database of the same backend
    (on PostgreSQL, a database of its own: the role needs CREATEDB). With
    --models, your models are compared with the live database and with the
    migrations: a model changed without a migration is a difference.
    Exit code 0 when they match, 1 with one line per difference when they
    drift, 2 on error.

    \b
    Example:
        bitloot-lite check --database postgresql://app@db/bitloot
        bitloot-lite check --models myshop.models --migrations myshop/migrations
    """
    differences, notes = migrating.check(database, migrations_dir, models=models)
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
@_common(migrating_command=True)
def baseline(database: pw.Database, where: str, migrations_dir: str | None, to: str,
             lock_timeout: float | None) -> None:
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
@click.argument("name")
@click.option("--auto", is_flag=True,
              help="Write the difference between the models and the migrations.")
@click.option("--models", "models", metavar="MODULE",
              help="With --auto: your models module (dotted name or .py file) too.")
@click.option("--number", "number", type=click.IntRange(1, 999), metavar="N",
              help="Its number [default: after your newest migration; 100 for your first].")
@_common(needs_database=lambda kwargs: False)
def new(database: pw.Database | None, where: str, migrations_dir: str | None, name: str, auto: bool,
        models: str | None, number: int | None) -> None:
    """Write the next migration, NNN_NAME.py, into your migrations folder (--migrations).

    Your first is numbered 100, leaving 007-099 to the migrations later
    releases of bitloot-lite ship; the next ones follow your newest.
    With --auto it holds the DDL for what the models (bitloot-lite's and those
    of --models) declare and the migrations do not make: columns, indexes,
    tables, type and nullability changes, for PostgreSQL and SQLite, with the
    rollback of each. What cannot be written safely is a TODO entry, and the
    migration refuses to run until it is edited. With no model change nothing
    is written. Without --auto, an empty migration in the same format.

    \b
    Example:
        bitloot-lite new orders_note --auto --models myshop.models --migrations myshop/migrations
        bitloot-lite new backfill_totals --migrations myshop/migrations
    """
    from .. import authoring  # only `new` needs the renderer

    written = authoring.new_migration(name, migrations_dir, auto=auto, models=models,
                                      number=number)
    if written.path is None:
        _say("no changes: the models match what the migrations make; nothing written")
        return
    if not auto:
        _say(f"wrote {written.path} (empty: write its migrate() and rollback() by hand)")
        return
    _say(f"wrote {written.path} ({len(written.changes)} change(s))")
    for change in written.changes:
        _say(f"  {change.describe()}")
    for item in written.todo:
        click.echo(f"TODO: {item}", err=True)
    if written.todo:
        click.echo(f"{written.name} refuses to run until its TODO list is empty: edit it",
                   err=True)


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--offline", "offline_only", is_flag=True,
              help="Open no database: lint NAMEs (default: every migration), no row counts.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@_common(error_exit=2, needs_database=lambda kwargs: not kwargs["offline_only"])
def lint(database: pw.Database | None, where: str, migrations_dir: str | None,
         names: tuple[str, ...], offline_only: bool, as_json: bool) -> None:
    """Check the SQL of the pending migrations (or of NAMEs) with squawk, and against the rows.

    squawk (pip install 'bitloot-lite[lint]') lints each migration's PostgreSQL
    SQL; connected to PostgreSQL, lint adds what only the database knows: a
    blocking CREATE INDEX, a NOT NULL column without a default, a rewriting
    type change or a foreign key without NOT VALID on a table with rows.
    Exit code 0 when clean, 1 with one line per finding, 2 on error.

    \b
    Example:
        bitloot-lite lint --database postgresql://app@db/bitloot
        bitloot-lite lint --offline 100_orders_note --migrations myshop/migrations
    """
    from .. import lint as linting  # squawk's wrapper, only for this command

    findings, notes = linting.lint(database, migrations_dir, list(names) or None)
    if as_json:
        _say(json.dumps({"findings": [vars(f) for f in findings], "notes": notes}, indent=2))
    else:
        for note in notes:
            _say(f"note: {note}")
        for finding in findings:
            click.echo(finding.line())
    if findings:
        click.echo(f"{len(findings)} finding(s)", err=True)
        sys.exit(1)
    if not as_json:
        _say("no findings")


