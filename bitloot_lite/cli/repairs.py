"""``bitloot-lite repair``: fix the migration history after a review (Flyway's repair)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .. import repairing
from .base import _common, _lock_timeout_option, _print_wait, _say, cli

if TYPE_CHECKING:
    import peewee as pw


_REPAIRS = {
    "checksum": "re-record {name}: edited since it was applied (checksum {recorded} -> {current})",
    "record": "record {name}: no checksum was recorded (now {current})",
    "remove": "remove {name}: applied, but its file is gone (--forget)",
}


@cli.command()
@click.option("--forget", "forget", multiple=True, metavar="NAME",
              help="Forget the history row of NAME, an applied migration whose file is gone "
                   "from your folder (--migrations); once per name.")
@click.option("--yes", is_flag=True, help="Repair without asking (for scripts).")
@_lock_timeout_option
@_common
def repair(database: pw.Database, where: str, migrations_dir: str | None,
           forget: tuple[str, ...], yes: bool, lock_timeout: float | None) -> None:
    """Fix the migration history after a review (Flyway's repair).

    Re-records the checksum of every applied migration whose file was edited
    since (after you have checked the edit is harmless). The history row of a
    migration whose file is gone is kept unless named with --forget, and only
    forgotten once your folder (--migrations) was looked in: forgetting an
    applied migration makes the next migrate run it again. Lists each change,
    then asks (--yes: does not ask). Changes no table but the history.

    \b
    Example:
        bitloot-lite repair
        bitloot-lite repair --yes --database postgresql://app@db/bitloot
        bitloot-lite repair --forget 100_backfill_totals --migrations myshop/migrations
    """
    planned = repairing.repairs(database, migrations_dir, forget)
    kept = [name for name in repairing.gone(database, migrations_dir) if name not in forget]
    for name in kept:
        _say(f"kept {name}: applied, and {repairing.where_gone(migrations_dir)}; if it is "
             f"really gone, forget it with --forget {name}")
    if not planned:
        _say(f"nothing to repair: the history of {where} matches the migration files"
             if not kept else f"nothing repaired on {where}")
        return
    show = _say if yes else click.echo  # what a prompt asks about is shown even with -q
    for item in planned:
        show(_REPAIRS[item.action].format(
            name=item.name, recorded=(item.recorded or "")[:12], current=(item.current or "")[:12]))
    if not yes and not click.confirm(f"Repair {len(planned)} history row(s) of {where}?"):
        raise click.ClickException("nothing was repaired")
    done = repairing.repair(database, migrations_dir, forget=forget, expected=planned,
                            lock_timeout=lock_timeout, on_wait=_print_wait)
    _say(f"{len(done)} history row(s) repaired on {where}")
