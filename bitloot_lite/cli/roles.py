"""The least-privilege command: grants."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..grants import apply_grants, grant_statements
from .base import (
    _common,
    _say,
    cli,
)

if TYPE_CHECKING:
    import peewee as pw


@cli.command()
@click.argument("role")
@click.option("--apply", "apply_them", is_flag=True,
              help="Run the statements (connected as the owner of the tables).")
@_common(migrating_command=True)
def grants(database: pw.Database, where: str, migrations_dir: str | None, role: str,
           apply_them: bool) -> None:
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


