"""``bitloot-lite repair`` (Flyway's): re-record edited checksums, forget rows of gone files."""

import hashlib

import pytest
from click.testing import CliRunner
from conftest import MIGRATIONS, fetch, opened
from conftest import run_cli as _run_cli

import bitloot_lite
from bitloot_lite import migrating
from bitloot_lite.cli import cli
from bitloot_lite.errors import EditedMigration, MigrationError
from bitloot_lite.schema import HISTORY_TABLE

NEXT = int(MIGRATIONS[-1][:3]) + 1

TABLE = '''\
"""{name}: a user's table."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "{table}" ("id" integer PRIMARY KEY)')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "{table}"')
'''


def run_cli(*args, input=None):
    """conftest.run_cli, with text on stdin (the confirmation) when ``input`` is given."""
    if input is None:
        return _run_cli(*args)
    runner = CliRunner(env={"DATABASE_URL": None, "BITLOOT_MIGRATIONS_DIR": None})
    result = runner.invoke(cli, [str(arg) for arg in args], input=input, prog_name="bitloot-lite")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.fixture
def applied_user_migrations(tmp_path, db_url):
    """A user folder with two migrations, both applied to ``db_url``; returns their paths."""
    folder = tmp_path / "mine"
    folder.mkdir()
    paths = []
    for offset, table in enumerate(("labels", "notes")):
        path = folder / f"{NEXT + offset:03d}_{table}.py"
        path.write_text(TABLE.format(name=path.stem, table=table))
        paths.append(path)
    result = run_cli("migrate", "-q", "--database", db_url, "--migrations", folder)
    assert result.exit_code == 0, result.output
    return paths


def checksums(url):
    with opened(url) as database:
        return dict(fetch(database, f'SELECT "name", "checksum" FROM "{HISTORY_TABLE}"'))


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_repair_re_records_an_edited_migration_and_forgets_a_gone_one(db_url,
                                                                      applied_user_migrations):
    labels, notes = applied_user_migrations
    where = ["--database", db_url, "--migrations", labels.parent]
    with labels.open("a") as handle:
        handle.write("# reviewed: a comment only\n")
    notes.unlink()
    assert run_cli("status", *where).exit_code == 2  # edited: refused

    listed = run_cli("repair", *where, "--forget", notes.stem, input="n\n")

    assert listed.exit_code == 1
    assert f"re-record {labels.stem}: edited since it was applied" in listed.stdout
    assert f"remove {notes.stem}: applied, but its file is gone" in listed.stdout
    assert "nothing was repaired" in listed.stderr
    assert notes.stem in checksums(db_url) and checksums(db_url)[labels.stem] != sha256(labels)

    result = run_cli("repair", *where, "--forget", notes.stem, input="y\n")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("2 history row(s) repaired on ")
    history = checksums(db_url)
    assert history[labels.stem] == sha256(labels) and notes.stem not in history
    assert set(history) == {*MIGRATIONS, labels.stem}
    status = run_cli("status", *where)
    assert status.exit_code == 0, status.output
    assert notes.stem not in status.stdout
    again = run_cli("repair", *where)
    assert again.exit_code == 0 and again.stdout.startswith("nothing to repair")


def test_repair_yes_does_not_ask(db_url, applied_user_migrations):
    labels, _notes = applied_user_migrations
    labels.write_text(labels.read_text() + "\n")

    result = run_cli("repair", "--yes", "--database", db_url, "--migrations", labels.parent)

    assert result.exit_code == 0, result.output
    assert "?" not in result.stdout
    assert checksums(db_url)[labels.stem] == sha256(labels)


def test_the_library_lists_then_repairs_and_refuses_a_stale_list(database, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    path = folder / f"{NEXT:03d}_labels.py"
    path.write_text(TABLE.format(name=path.stem, table="labels"))
    bitloot_lite.migrate(database, migrations_dir=folder)
    recorded = checksums_of(database)[path.stem]
    path.write_text(path.read_text() + "# edited\n")

    planned = migrating.repairs(database, folder)
    assert planned == [migrating.Repair(path.stem, "checksum", recorded, sha256(path))]
    with pytest.raises(EditedMigration):
        bitloot_lite.status(database, migrations_dir=folder)

    path.write_text(path.read_text() + "# edited again\n")
    with pytest.raises(MigrationError, match="changed since"):
        migrating.repair(database, folder, expected=planned)
    assert checksums_of(database)[path.stem] == recorded  # nothing done

    done = migrating.repair(database, folder)
    assert [item.name for item in done] == [path.stem]
    assert checksums_of(database)[path.stem] == sha256(path)
    assert migrating.repairs(database, folder) == []
    assert all(state.applied for state in bitloot_lite.status(database, migrations_dir=folder))


def test_repair_records_the_checksums_a_pw_migrate_history_lacks(database):
    bitloot_lite.migrate(database)
    database.execute_sql(f'UPDATE "{HISTORY_TABLE}" SET "checksum" = NULL')

    done = migrating.repair(database)

    assert [(item.name, item.action) for item in done] == [(n, "record") for n in MIGRATIONS]
    assert None not in checksums_of(database).values()


def test_an_edited_migration_message_points_at_repair(db_url, applied_user_migrations):
    labels, _ = applied_user_migrations
    labels.write_text(labels.read_text() + "# edit\n")
    result = run_cli("migrate", "--database", db_url, "--migrations", labels.parent)
    assert result.exit_code == 1
    assert "bitloot-lite repair" in result.stderr and labels.stem in result.stderr


def checksums_of(database):
    return dict(fetch(database, f'SELECT "name", "checksum" FROM "{HISTORY_TABLE}"'))


def test_an_applied_file_edited_into_a_syntax_error_is_reported_edited_and_repairable(
    database, tmp_path
):
    folder = tmp_path / "mine"
    folder.mkdir()
    path = folder / f"{NEXT:03d}_labels.py"
    path.write_text(TABLE.format(name=path.stem, table="labels"))
    bitloot_lite.migrate(database, migrations_dir=folder)
    path.write_text(path.read_text() + "def broken(:\n")

    with pytest.raises(EditedMigration):
        bitloot_lite.status(database, migrations_dir=folder)
    assert [item.action for item in migrating.repair(database, folder)] == ["checksum"]


def test_repair_yes_quiet_prints_nothing(db_url, applied_user_migrations):
    labels, _ = applied_user_migrations
    labels.write_text(labels.read_text() + "# edit\n")
    result = run_cli("repair", "--yes", "-q", "--database", db_url, "--migrations", labels.parent)
    assert result.exit_code == 0 and result.output == ""
    assert checksums(db_url)[labels.stem] == sha256(labels)
