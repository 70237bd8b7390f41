"""The prototyping commands: diagram, demo, shell and copy (bitloot_lite.local)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..db import mask_url, open_database, redact, url_secrets
from ..errors import BitlootError
from .base import (
    _common,
    _logging_to_stderr,
    _say,
    cli,
)
from .progress import _Bars

if TYPE_CHECKING:
    import datetime as dt

    import peewee as pw

# --------------------------------------------------------------------------- prototyping


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True, help="Mermaid (GitHub renders it) or Graphviz dot.")
@_common(read_only=True)  # a missing SQLite file is an error, not an empty diagram
def diagram(database: pw.Database, where: str, migrations_dir: str | None, fmt: str) -> None:
    """Print the live schema as an entity-relationship diagram.

    Tables, columns with their types, primary, foreign and unique keys, and
    each foreign key's ON DELETE / ON UPDATE rule, read from the database's
    catalog (not from the models).

    \b
    Example:
        bitloot-lite diagram > schema.mmd
        bitloot-lite diagram --format dot | dot -Tsvg > schema.svg
    """
    from ..local.diagram import diagram as draw

    click.echo(draw(database, fmt), nl=False)




@cli.command()
@click.option("--orders", "count", type=click.IntRange(min=0), default=1000, show_default=True,
              help="How many orders (with their items, keys, payments and webhook logs).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The same seed gives the same rows, ids and timestamps included.")
@click.option("--append", is_flag=True, help="Add to a database that already holds rows.")
@_common
def demo(database: pw.Database, where: str, migrations_dir: str | None, count: int, seed: int,
         append: bool) -> None:
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
    from ..local import demo as shop

    with _Bars() as bars:
        result = shop.fill(database, count, seed=seed, append=append,
                           progress=lambda done, total: bars("orders", done, total))
    rows = ", ".join(f"{n:,} {table}" for table, n in result.rows.items())
    _say(f"demo shop (seed {seed}) written to {where}: {rows} in {result.seconds:.2f}s "
         f"({result.orders_per_second:,.0f} orders/s)")


@cli.command()
@click.option("--plain", is_flag=True, help="The standard Python REPL even if IPython is "
                                            "installed.")
@_common(read_only=True)  # a missing SQLite file is an error, not a new empty one
def shell(database: pw.Database, where: str, migrations_dir: str | None, plain: bool) -> None:
    """An interactive Python session on the database.

    IPython when it is installed (else the standard REPL), with the database
    connected as `db` and the models, enums, service functions and errors
    imported. Leave it with Ctrl-D or exit().

    \b
    Example:
        bitloot-lite shell --database sqlite:///bitloot.db
        >>> Order.select().where(Order.status == OrderStatus.PAID).count()
    """
    from ..db import database_proxy
    from ..local.shell import interact

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
def copy_command(source_url: str, dest_url: str, replace: bool, anonymize: bool,
                 salt: str | None, orders: int | None, since: dt.datetime | None,
                 migrations_dir: str | None, verbose: int, quiet: bool) -> None:
    """Copy a database into another, across backends, and check the copy.

    The destination is migrated to the source's level first; the rows stream
    in batches, parents first, with a progress bar per table on a terminal;
    every table is then checked (row count and checksum) before the commit.
    A destination that holds rows is refused unless --replace, and so is a
    source with migrations this version does not know, and a destination that
    is the source itself, however its URL is spelled.

    \b
    Example:
        bitloot-lite copy postgresql://app@db/bitloot sqlite:///local.db --anonymize
        bitloot-lite copy postgresql://app@db/bitloot sqlite:///recent.db \\
            --orders 1000 --anonymize --salt team-2026 --replace
    """
    from ..local.copy import copy as copy_database
    from ..local.identity import refuse_same_file

    click.get_current_context().meta["bitloot.quiet"] = quiet
    secrets = url_secrets(source_url) + url_secrets(dest_url)
    where = f"{mask_url(source_url)} -> {mask_url(dest_url)}"
    if salt is not None and not anonymize:
        raise click.UsageError("--salt is only for --anonymize")
    with _logging_to_stderr(verbose, secrets):
        try:
            source = open_database(source_url)
            try:
                refuse_same_file(source, dest_url)  # before SQLite opens a second name of it
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


