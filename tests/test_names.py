"""A migration is named by its full name or its number wherever a name is taken: one
resolver (loading.resolve_name) for every command; `rollback --to zero` undoes them all
(issue 16, LOW points).
"""

import shutil
import subprocess

import pytest
from conftest import MIGRATIONS, REPO_ROOT, clean_env, opened, run_cli, sqlite_only
from own_migrations import NOTE_MIGRATION, make_folder, next_name, write

from bitloot_lite import migrating
from bitloot_lite.errors import AmbiguousMigration, UnknownMigration
from bitloot_lite.loading import ZERO, resolve_name
from bitloot_lite.runner import HISTORY_TABLE

pytestmark = pytest.mark.usefixtures("unrelated_cwd")

WEBHOOKS = "003_create_webhook_logs"

#: A user's migration without a rollback.
FOREVER = '''
    """a table, and no way back."""


    def migrate(migrator, database, *, fake=False):
        migrator.sql('CREATE TABLE "forever" ("id" integer PRIMARY KEY)')
'''


# --- the resolver ----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["3", "003", "03", " 3 ", WEBHOOKS])
def test_a_number_or_the_full_name_is_the_migration(spelling):
    assert resolve_name(spelling, MIGRATIONS) == WEBHOOKS


@pytest.mark.parametrize("spelling", ["9", "0", "create_webhook_logs", "003_create", "", "³",
                                      "-3", "3.0", 3])
def test_anything_else_is_unknown_in_one_line(spelling):
    with pytest.raises(UnknownMigration) as info:
        resolve_name(spelling, MIGRATIONS)
    assert f"unknown migration {spelling!r}" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_a_number_of_two_migrations_is_ambiguous():
    """A history row whose file is gone may share its number with a file."""
    names = [*MIGRATIONS, "007_old", "007_new"]
    with pytest.raises(AmbiguousMigration) as info:
        resolve_name("7", names)
    assert str(info.value) == ("migration '7' is ambiguous: it may be 007_old or 007_new; "
                               "give the full name")
    assert info.value.matches == ["007_old", "007_new"]
    assert isinstance(info.value, UnknownMigration)  # caught where an unknown one is
    assert resolve_name("007_new", names) == "007_new"


# --- every command -----------------------------------------------------------------------------


def blocks_of(output):
    return [line.removeprefix("-- migrate ") for line in output.splitlines()
            if line.startswith("-- migrate ")]


@pytest.mark.parametrize("backend_", ["postgres", "sqlite"])
def test_sql_offline_takes_numbers(backend_):
    result = run_cli("sql", "--offline", "--backend", backend_, "--to", "3")
    assert result.exit_code == 0, result.output
    assert blocks_of(result.stdout) == MIGRATIONS[:3]
    result = run_cli("sql", "--offline", "--backend", backend_, "--from", "004", "--to", "5")
    assert result.exit_code == 0, result.output
    assert blocks_of(result.stdout) == MIGRATIONS[3:5]


def test_sql_from_a_number_on_a_live_database(db_url):
    assert run_cli("migrate", "-q", "--database", db_url).exit_code == 0
    result = run_cli("sql", "--from", "004", "--database", db_url)
    assert result.exit_code == 0, result.output
    assert blocks_of(result.stdout) == MIGRATIONS[3:]
    result = run_cli("sql", "--from", "5", "--to", "005", "--json", "--database", db_url)
    assert result.exit_code == 0, result.output
    assert '"name": "005_add_keys_reservation"' in result.stdout


def test_sql_to_a_number_previews_the_live_database(db_url):
    assert run_cli("migrate", "-q", "--to", "1", "--database", db_url).exit_code == 0
    result = run_cli("sql", "--to", "3", "--database", db_url)
    assert result.exit_code == 0, result.output
    assert blocks_of(result.stdout) == MIGRATIONS[1:3]


@pytest.mark.parametrize("args", [["sql", "--offline", "--to", "9"],
                                  ["sql", "--offline", "--from", "004x"],
                                  ["lint", "--offline", "1", "17"]])
def test_an_unknown_name_is_one_line(args):
    result = run_cli(*args)
    assert result.exit_code != 0
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: unknown migration '{args[-1]}' (known: 001_init_orders, ")


@pytest.mark.skipif(shutil.which("squawk") is None and not (
    REPO_ROOT / ".venv" / "bin" / "squawk").exists(), reason="no squawk")
def test_lint_takes_numbers():
    result = run_cli("lint", "--offline", "001", "1", "3", "--json")
    assert result.exit_code in (0, 1), result.output
    named = run_cli("lint", "--offline", "001_init_orders", WEBHOOKS, "--json")
    assert result.stdout == named.stdout


def test_migrate_rollback_and_baseline_take_numbers(db_url):
    where = ("--database", db_url)
    result = run_cli("migrate", "--to", "3", *where)
    assert result.exit_code == 0, result.output
    assert "3 migration(s) applied to" in result.stdout
    result = run_cli("rollback", "--to", "01", *where)
    assert result.exit_code == 0, result.output
    assert "2 migration(s) rolled back" in result.stdout
    for args in (["migrate", "--to", "³"], ["rollback", "--to", "8"],
                 ["baseline", "--to", "9"]):
        result = run_cli(*args, *where)
        assert result.exit_code == 1, (args, result.output)
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"Error: unknown migration '{args[-1]}'"), line


def test_rollback_to_the_number_of_an_applied_migration_whose_file_is_gone(db_url, tmp_path):
    folder = make_folder(tmp_path / "migrations")
    note = write(folder, next_name("orders_note"), NOTE_MIGRATION)
    with opened(db_url) as database:
        migrating.migrate(database, migrations_dir=folder)
        # without the folder, 007 is a history row only: its number still names it
        assert migrating.rollback(database, to="7") == []
        with pytest.raises(UnknownMigration, match=note):  # undoing it needs its file
            migrating.rollback(database, to="6")
        assert migrating.rollback(database, to="6", migrations_dir=folder) == [note]


# --- rollback --to zero ---------------------------------------------------------------------


def applied(url):
    with opened(url) as database:
        if HISTORY_TABLE not in database.get_tables():
            return []
        return [name for (name,) in database.execute_sql(
            f'SELECT "name" FROM "{HISTORY_TABLE}" ORDER BY "id"').fetchall()]


def test_rollback_to_zero_undoes_every_migration(db_url):
    where = ("--database", db_url)
    assert run_cli("migrate", "-q", *where).exit_code == 0
    result = run_cli("rollback", "--to", "zero", *where)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        f"{len(MIGRATIONS)} migration(s) rolled back on {db_url}")
    assert applied(db_url) == []
    with opened(db_url) as database:
        assert set(database.get_tables()) <= {HISTORY_TABLE}
    again = run_cli("rollback", "--to", ZERO, *where)
    assert again.exit_code == 0, again.output
    assert again.stdout == f"nothing to roll back: no migration is applied to {db_url}\n"
    assert run_cli("migrate", "-q", *where).exit_code == 0  # and back up
    with opened(db_url) as database:
        assert migrating.rollback(database, to=ZERO) == MIGRATIONS[::-1]


def test_rollback_to_zero_refuses_an_irreversible_migration_before_undoing_any(db_url,
                                                                              tmp_path):
    folder = make_folder(tmp_path / "migrations")
    forever = write(folder, next_name("forever"), FOREVER)
    note = write(folder, next_name("orders_note", after=forever), NOTE_MIGRATION)
    where = ("--database", db_url, "--migrations", folder)
    assert run_cli("migrate", "-q", *where).exit_code == 0
    result = run_cli("rollback", "--to", "zero", *where)
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: migration ") and forever in line and "irreversible" in line
    assert applied(db_url) == [*MIGRATIONS, forever, note]  # not even note was undone


def test_rollback_to_0_points_at_zero(db_url):
    assert run_cli("migrate", "-q", "--database", db_url).exit_code == 0
    for spelling in ("0", "000"):
        result = run_cli("rollback", "--to", spelling, "--database", db_url)
        assert result.exit_code == 1
        assert result.stderr == (f"Error: unknown migration '{spelling}' (to undo every "
                                 "migration, roll back to zero)\n")
    assert applied(db_url) == MIGRATIONS


@sqlite_only
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_rollback_to_zero(db_url):
    assert run_cli("migrate", "-q", "--database", db_url).exit_code == 0
    made = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), "rollback",
                           "TO=zero"], capture_output=True, text=True, timeout=120,
                          env=clean_env(DATABASE_URL=db_url))
    assert made.returncode == 0, made.stderr
    assert f"{len(MIGRATIONS)} migration(s) rolled back" in made.stdout
    assert applied(db_url) == []
