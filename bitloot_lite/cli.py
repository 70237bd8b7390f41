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

from . import migrating
from .db import is_postgres, is_sqlite, mask_url, open_database, redact, resolve_url, url_secrets
from .errors import BitlootError, ConfigurationError

logger = logging.getLogger("bitloot_lite.cli")


def _common(command=None, *, error_exit=1):
    """--database, --migrations, -v and -q, shared by every command.

    A BitlootError exits with ``error_exit`` (1, or 2 where 1 means something else).
    """
    if command is None:
        return functools.partial(_common, error_exit=error_exit)

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
                database = open_database(url)
                try:
                    return command(database, mask_url(url), migrations_dir, **kwargs)
                finally:
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
@_common
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
    """
    started = time.perf_counter()
    with _StepProgress(database, migrations_dir) as progress:  # a terminal only
        applied = migrating.migrate(
            database, to=to, migrations_dir=migrations_dir, lock_timeout=lock_timeout,
            ddl_lock_timeout=ddl_lock_timeout, allow_edited=allow_edited,
            allow_out_of_order=allow_out_of_order, on_step=progress.wrap(_print_step),
            on_wait=progress.wrap(_print_wait, waiting=True),
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
@_common
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
@_common
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
@click.option(
    "--migrations", "migrations_dir", envvar="BITLOOT_MIGRATIONS_DIR",
    type=click.Path(file_okay=False), metavar="DIR",
    help="Migrations folder [env: BITLOOT_MIGRATIONS_DIR; default: the packaged ones].",
)
@click.option("-v", "--verbose", count=True, help="Log to stderr (-vv adds the SQL).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def copy_command(source_url, dest_url, replace, anonymize, salt, orders, since, migrations_dir,
                 verbose, quiet):
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
                                               since=since, progress=bars,
                                               migrations_dir=migrations_dir)
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
        self.waiting = False  # for another deploy's lock: that is said, not a step

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

    def wrap(self, callback, waiting=False):
        """``callback`` for on_step (or on_wait, ``waiting``), with the status line
        cleared before it prints."""
        def call(*args):
            with self.lock:
                self._clear()
                self.since = time.monotonic()
                self.waiting = waiting
            callback(*args)
        return call

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
                if not self.waiting and time.monotonic() - self.since >= self.AFTER:
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


def main():
    cli(prog_name="bitloot-lite")
