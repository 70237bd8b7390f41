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
import threading
import time

import click

from . import migrating, offline
from .db import is_postgres, mask_url, open_database, redact, resolve_url, url_secrets
from .errors import BitlootError, ConfigurationError
from .grants import apply_grants, grant_statements

logger = logging.getLogger("bitloot_lite.cli")


def _common(command=None, *, error_exit=1, needs_database=None):
    """--database, --migrations, -v and -q, shared by every command.

    A BitlootError exits with ``error_exit`` (1, or 2 where 1 means something else).
    ``needs_database(kwargs)``: False where this call opens no database (``sql
    --offline``, ``new``); the command then gets None for it.
    """
    if command is None:
        return functools.partial(_common, error_exit=error_exit, needs_database=needs_database)

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
    @click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
    @functools.wraps(command)
    def wrapper(url, migrations_dir, verbose, quiet, **kwargs):
        click.get_current_context().meta["bitloot.quiet"] = quiet
        url = resolve_url(url)
        secrets = url_secrets(url)
        with _logging_to_stderr(verbose, secrets):
            try:
                if needs_database is not None and not needs_database(kwargs):
                    return command(None, mask_url(url), migrations_dir, **kwargs)
                database = open_database(url)
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
def cli():
    """Migrate and inspect a BitLoot order database (SQLite or PostgreSQL).

    \b
    Example:
        DATABASE_URL=postgresql://app@db/bitloot bitloot-lite migrate
    """


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

    with _StepProgress(database, migrations_dir) as progress:  # a terminal only
        applied = migrating.migrate(
            database, to=to, migrations_dir=migrations_dir, lock_timeout=lock_timeout,
            ddl_lock_timeout=ddl_lock_timeout, allow_edited=allow_edited,
            allow_out_of_order=allow_out_of_order, on_step=progress.wrap(on_step),
            on_wait=_print_wait,
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
@_common(error_exit=2)
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
            if state.missing:
                notes.append("(its file is gone: see `bitloot-lite repair`)")
            if state.unbuilt:
                notes.append(f"(unfinished: index {', '.join(state.unbuilt)} missing or "
                             "INVALID; run migrate to build it)")
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
@_common(needs_database=lambda kwargs: not kwargs["offline_only"])
def sql(database, where, migrations_dir, to, start, rollback_steps, offline_only, backend,
        as_json):
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
@_common(error_exit=2)
def check(database, where, migrations_dir, models, as_json):
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

# --------------------------------------------------------------------------- prototyping


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True, help="Mermaid (GitHub renders it) or Graphviz dot.")
@_common
def diagram(database, where, migrations_dir, fmt):
    """Print the live schema as an entity-relationship diagram.

    Tables, columns with their types, primary, foreign and unique keys, and
    each foreign key's ON DELETE / ON UPDATE rule, read from the database's
    catalog (not from the models).

    \b
    Example:
        bitloot-lite diagram > schema.mmd
        bitloot-lite diagram --format dot | dot -Tsvg > schema.svg
    """
    from .local.diagram import diagram as draw

    click.echo(draw(database, fmt), nl=False)


class _Bars:
    """Progress bars (click's) on stderr, for a callback ``progress(label, done, total)``.

    Drawn only when stderr is a terminal and without -q; a new label closes the
    bar before it and opens its own.
    """

    def __init__(self):
        quiet = click.get_current_context().meta.get("bitloot.quiet")
        self.on = not quiet and sys.stderr.isatty()
        self.label = self.bar = None

    def __call__(self, label, done, total):
        if not self.on:
            return
        if label != self.label or self.bar is None:
            self.close()
            self.label = label
            self.bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr,
                                         show_pos=True, show_percent=True, show_eta=True)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@cli.command()
@click.option("--orders", "count", type=click.IntRange(min=0), default=1000, show_default=True,
              help="How many orders (with their items, keys, payments and webhook logs).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The same seed gives the same rows, ids and timestamps included.")
@click.option("--append", is_flag=True, help="Add to a database that already holds rows.")
@_common
def demo(database, where, migrations_dir, count, seed, append):
    """Fill the database with a realistic demo shop.

    Orders over every lifecycle status in plausible proportions, one to several
    items each, payments with their notification history (repeats, underpaid
    then topped up, failures), webhook logs, reservations, keys (some revealed),
    over six months; every row as the service API would have written it. The
    database must be migrated, and empty unless --append.

    \b
    Example:
        bitloot-lite migrate && bitloot-lite demo --orders 5000 --seed 42
    """
    from .local import demo as shop

    with _Bars() as bars:
        result = shop.fill(database, count, seed=seed, append=append,
                           progress=lambda done, total: bars("orders", done, total))
    rows = ", ".join(f"{n:,} {table}" for table, n in result.rows.items())
    _say(f"demo shop (seed {seed}) written to {where}: {rows} in {result.seconds:.2f}s "
         f"({result.orders_per_second:,.0f} orders/s)")


@cli.command()
@click.option("--plain", is_flag=True, help="The standard Python REPL even if IPython is "
                                            "installed.")
@_common
def shell(database, where, migrations_dir, plain):
    """An interactive Python session on the database.

    IPython when it is installed (else the standard REPL), with the database
    connected as `db` and the models, enums, service functions and errors
    imported. Leave it with Ctrl-D or exit().

    \b
    Example:
        bitloot-lite shell --database sqlite:///bitloot.db
        >>> Order.select().where(Order.status == OrderStatus.PAID).count()
    """
    from .db import database_proxy
    from .local.shell import interact

    database_proxy.initialize(database)  # the models, on this database
    interact(database, where, plain=plain)


@cli.command("copy")
@click.argument("source_url", metavar="SOURCE_URL")
@click.argument("dest_url", metavar="DEST_URL")
@click.option("--replace", is_flag=True, help="Empty a destination that holds rows first.")
@click.option("--anonymize", is_flag=True,
              help="Replace emails, signatures, IP addresses, payloads' personal fields and "
                   "storage references with pseudonyms (joins survive).")
@click.option("--salt", metavar="TEXT",
              help="The pseudonyms' key: the same salt gives the same copy [default: random].")
@click.option("--orders", type=click.IntRange(min=0), metavar="N",
              help="Only the newest N orders, with everything that belongs to them.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S",
                                               "%Y-%m-%d %H:%M:%S"]), metavar="DATE",
              help="Only the orders created since DATE (UTC), with what belongs to them.")
@click.option("-v", "--verbose", count=True, help="Log to stderr (-vv adds the SQL).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def copy_command(source_url, dest_url, replace, anonymize, salt, orders, since, verbose, quiet):
    """Copy a database into another, across backends, and check the copy.

    The destination is migrated to the source's level first; the rows stream
    in batches, parents first, with a progress bar per table on a terminal;
    every table is then checked (row count and checksum) before the commit.
    A destination that holds rows is refused unless --replace, and so is a
    source with migrations this version does not know.

    \b
    Example:
        bitloot-lite copy postgresql://app@db/bitloot sqlite:///local.db --anonymize
        bitloot-lite copy postgresql://app@db/bitloot sqlite:///recent.db \\
            --orders 1000 --anonymize --salt team-2026 --replace
    """
    from .local.copy import copy as copy_database

    click.get_current_context().meta["bitloot.quiet"] = quiet
    secrets = url_secrets(source_url) + url_secrets(dest_url)
    where = f"{mask_url(source_url)} -> {mask_url(dest_url)}"
    if salt is not None and not anonymize:
        raise click.UsageError("--salt is only for --anonymize")
    with _logging_to_stderr(verbose, secrets):
        try:
            if mask_url(source_url) == mask_url(dest_url):
                raise ConfigurationError("the source and the destination are the same database")
            source = open_database(source_url)
            try:
                destination = open_database(dest_url)
                try:
                    with _Bars() as bars:
                        result = copy_database(source, destination, replace=replace,
                                               anonymize=anonymize, salt=salt, orders=orders,
                                               since=since, progress=bars)
                finally:
                    destination.close()
            finally:
                source.close()
        except BitlootError as exc:
            lines = [line for line in redact(str(exc), secrets).splitlines() if line.strip()]
            raise click.ClickException(lines[0] if lines else type(exc).__name__) from None
    migrated = f", {len(result.migrated)} migration(s) applied to the destination first" \
        if result.migrated else ""
    _say(f"copied {where} (at {result.level}{migrated})")
    for table in result.tables:
        _say(f"  {table.table:<13} {table.rows:>10,} rows  checksum {table.checksum[:12]}  "
             f"{table.seconds:.2f}s")
    _say(f"{result.rows:,} rows in {result.seconds:.2f}s ({result.rows_per_second:,.0f} rows/s);"
         " every table checked: row counts and checksums match")
    if anonymize:
        _say(f"anonymized with salt {result.salt!r}"
             + ("" if salt is not None else " (random: pass --salt to repeat this copy)"))


_INDEX_PROGRESS = """
SELECT i.relname, t.relname, p.phase, p.blocks_done, p.blocks_total
FROM pg_stat_progress_create_index p
LEFT JOIN pg_class i ON i.oid = p.index_relid LEFT JOIN pg_class t ON t.oid = p.relid
WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1"""


class _StepProgress:
    """Progress of `migrate` on a terminal (stderr, not with -q) once a step has run for
    AFTER seconds: the step's name and time; on PostgreSQL, an index build's blocks as
    a bar (pg_stat_progress_create_index). A thread of its own polls, on connections
    of its own (peewee's are per thread), and never touches the migration's."""

    AFTER = 2.0
    POLL = 0.5

    def __init__(self, database, migrations_dir):
        self.database = database
        self.migrations_dir = migrations_dir
        quiet = click.get_current_context().meta.get("bitloot.quiet")
        self.on = not quiet and sys.stderr.isatty()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.since = time.monotonic()
        self.shown = False
        self.bar = None
        self.thread = None

    def __enter__(self):
        if self.on:
            self.thread = threading.Thread(target=self._watch, name="bitloot-progress",
                                           daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        if self.thread is not None:
            self.thread.join()
        self._clear()

    def wrap(self, callback):
        """``callback`` for on_step, with the status line cleared before it prints."""
        def on_step(step):
            with self.lock:
                self._clear()
                self.since = time.monotonic()
            callback(step)
        return on_step

    def _clear(self):
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None
        if self.shown:
            click.echo("\r\x1b[K", nl=False, err=True)
            self.shown = False

    def _watch(self):
        try:
            while not self.done.wait(self.POLL):
                if time.monotonic() - self.since >= self.AFTER:
                    self._show()
        except BitlootError:  # only a display: never fail the migration for it
            pass
        except Exception as exc:  # noqa: BLE001 - the same; logged for -v
            logger.info("migration progress stopped: %r", exc)
        finally:
            self.database.close()  # this thread's connection

    def _show(self):
        build = None
        if is_postgres(self.database):
            build = self.database.execute_sql(_INDEX_PROGRESS).fetchone()
        todo = migrating.pending(self.database, self.migrations_dir)
        with self.lock:
            if self.done.is_set():
                return
            seconds = time.monotonic() - self.since
            name = todo[0] if todo else "the index builds"
            if build is not None and build[4]:
                # An index made inside the migration's transaction has no name yet for
                # other sessions: then the step's name.
                index, table, phase, blocks_done, blocks_total = build
                label = f"{f'{index} on {table}' if index else name}: {phase}"
                if self.bar is None or self.bar.length != blocks_total:
                    self._clear()
                    self.bar = click.progressbar(length=blocks_total, label=label,
                                                 file=sys.stderr, show_percent=True)
                self.bar.label = label
                self.bar.update(blocks_done - self.bar.pos)
                return
            if self.bar is not None:
                self._clear()
            click.echo(f"\r\x1b[K{name}: running for {seconds:.0f}s ...", nl=False, err=True)
            self.shown = True


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
    for item in planned:
        click.echo(_REPAIRS[item.action].format(
            name=item.name, recorded=(item.recorded or "")[:12], current=(item.current or "")[:12]))
    if not yes and not click.confirm(f"Repair {len(planned)} history row(s) of {where}?"):
        raise click.ClickException("nothing was repaired")
    done = migrating.repair(database, migrations_dir, expected=planned,
                            lock_timeout=lock_timeout, on_wait=_print_wait)
    _say(f"{len(done)} history row(s) repaired on {where}")


@cli.command()
@click.argument("name")
@click.option("--auto", is_flag=True,
              help="Write the difference between the models and the migrations.")
@click.option("--models", "models", metavar="MODULE",
              help="With --auto: your models module (dotted name or .py file) too.")
@_common(needs_database=lambda kwargs: False)
def new(database, where, migrations_dir, name, auto, models):
    """Write the next migration, NNN_NAME.py, into your migrations folder (--migrations).

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
    from . import authoring  # only `new` needs the renderer

    written = authoring.new_migration(name, migrations_dir, auto=auto, models=models)
    if written.path is None:
        _say("no changes: the models match what the migrations make; nothing written")
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
def lint(database, where, migrations_dir, names, offline_only, as_json):
    """Check the SQL of the pending migrations (or of NAMEs) with squawk, and against the rows.

    squawk (pip install 'bitloot-lite[lint]') lints each migration's PostgreSQL
    SQL; connected to PostgreSQL, lint adds what only the database knows: a
    blocking CREATE INDEX, a NOT NULL column without a default, a rewriting
    type change or a foreign key without NOT VALID on a table with rows.
    Exit code 0 when clean, 1 with one line per finding, 2 on error.

    \b
    Example:
        bitloot-lite lint --database postgresql://app@db/bitloot
        bitloot-lite lint --offline 006_orders_note --migrations myshop/migrations
    """
    from . import lint as linting  # squawk's wrapper, only for this command

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


@cli.command()
@click.argument("role")
@click.option("--apply", "apply_them", is_flag=True,
              help="Run the statements (connected as the owner of the tables).")
@_common
def grants(database, where, migrations_dir, role, apply_them):
    """Print the GRANT statements the application role ROLE needs; --apply runs them.

    DML on the tables, USAGE on the schema and the enum types, SELECT on the
    migration history (for status and check): no DDL, no writes to the
    history. Run it as the owner after each migrate that adds a table.

    \b
    Example:
        bitloot-lite grants bitloot_app > grants.sql
        bitloot-lite grants bitloot_app --apply --database postgresql://owner@db/bitloot
    """
    statements = (apply_grants if apply_them else grant_statements)(database, role)
    for statement in statements:
        _say(f"{statement};")
    if apply_them:
        _say(f"-- {len(statements)} statement(s) run on {where}")


def main() -> None:
    cli(prog_name="bitloot-lite")
