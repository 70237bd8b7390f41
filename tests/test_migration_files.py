"""Where migrations live: the shipped ones first, then the user's folder, each file checked.

The contract other modules rely on: ``migration_files(dir)`` lists (name, path) in
order without a database; ``Router(db, dir).todo`` and ``Router.path(name)`` see
both folders; a misnamed file, a duplicate number or a clash with a shipped name is
an error naming the files, never a file silently left out.
"""

import pytest

import bitloot_lite
from bitloot_lite.errors import InvalidMigrationFiles, MigrationsNotFound, UnknownMigration
from bitloot_lite.runner import Router, migration_files
from conftest import MIGRATIONS, MIGRATIONS_DIR, fetch, run_cli

#: The first number free for a user's migration, whatever the shipped ones are.
NEXT = int(MIGRATIONS[-1][:3]) + 1

NOTE = '''\
"""{name}: a nullable orders.note (a user's migration)."""

import peewee as pw


def migrate(migrator, database, *, fake=False):
    migrator.sql('ALTER TABLE "orders" ADD COLUMN "note" varchar(200)')


def rollback(migrator, database, *, fake=False):
    migrator.sql('ALTER TABLE "orders" DROP COLUMN "note"')
'''

TABLE = '''\
"""{name}: a user's own table."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "{table}" ("id" integer PRIMARY KEY, "label" text)')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "{table}"')
'''


def user_migration(folder, name, template=NOTE, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(template.format(name=name, **fields), encoding="utf-8")
    return path


@pytest.fixture
def user_dir(tmp_path):
    folder = tmp_path / "my_migrations"
    folder.mkdir()
    return folder


def columns(database, table):
    return [column.name for column in database.get_columns(table)]


# --- the order, without a database ---------------------------------------------------------------


def test_the_shipped_migrations_alone_without_a_user_folder(monkeypatch):
    files = migration_files()
    assert [name for name, _ in files] == MIGRATIONS
    assert all(path == MIGRATIONS_DIR / f"{name}.py" for name, path in files)
    monkeypatch.setenv("BITLOOT_MIGRATIONS_DIR", "")
    assert [name for name, _ in migration_files()] == MIGRATIONS


def test_a_user_folder_adds_its_migrations_after_the_shipped_ones(user_dir, monkeypatch):
    first = user_migration(user_dir, f"{NEXT:03d}_orders_note")
    second = user_migration(user_dir, f"{NEXT + 1:03d}_labels", TABLE, table="labels")
    (user_dir / "README.txt").write_text("notes, not a migration")
    (user_dir / "__init__.py").write_text("")
    (user_dir / "__pycache__").mkdir()

    expected = [*((name, MIGRATIONS_DIR / f"{name}.py") for name in MIGRATIONS),
                (first.stem, first), (second.stem, second)]
    assert migration_files(user_dir) == expected
    assert migration_files(str(user_dir)) == expected
    monkeypatch.setenv("BITLOOT_MIGRATIONS_DIR", str(user_dir))
    assert migration_files() == expected


def test_an_empty_user_folder_adds_nothing(user_dir):
    assert [name for name, _ in migration_files(user_dir)] == MIGRATIONS


def test_the_shipped_folder_given_as_the_user_folder_adds_nothing():
    """``--migrations migrations`` in a clone, as earlier versions wanted it."""
    assert [name for name, _ in migration_files(MIGRATIONS_DIR)] == MIGRATIONS


def test_a_missing_user_folder_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(MigrationsNotFound) as info:
        migration_files(missing)
    assert info.value.path == missing
    assert not missing.exists()


@pytest.mark.parametrize("file_name", [
    "6_orders_note.py", "0006_orders_note.py", "006-orders-note.py", "006_orders note.py",
    "orders_note.py", "006_orders.note.py", "006_.py",
])
def test_a_misnamed_file_is_an_error_naming_it(user_dir, file_name):
    user_migration(user_dir, f"{NEXT:03d}_fine")
    (user_dir / file_name).write_text(NOTE.format(name=file_name))

    with pytest.raises(InvalidMigrationFiles) as info:
        migration_files(user_dir)

    assert len(info.value.problems) == 1
    assert str(user_dir / file_name) in info.value.problems[0]
    assert "NNN_name.py" in info.value.problems[0]


def test_two_files_with_one_number_are_an_error_naming_both(user_dir):
    one = user_migration(user_dir, f"{NEXT:03d}_orders_note")
    two = user_migration(user_dir, f"{NEXT:03d}_labels", TABLE, table="labels")

    with pytest.raises(InvalidMigrationFiles) as info:
        migration_files(user_dir)

    (problem,) = info.value.problems
    assert f"number {NEXT:03d}" in problem and str(one) in problem and str(two) in problem


def test_a_name_colliding_with_a_shipped_one_is_an_error_naming_both(user_dir):
    clash = user_migration(user_dir, MIGRATIONS[1])

    with pytest.raises(InvalidMigrationFiles) as info:
        migration_files(user_dir)

    (problem,) = info.value.problems
    assert str(clash) in problem and str(MIGRATIONS_DIR / f"{MIGRATIONS[1]}.py") in problem


def test_a_user_migration_numbered_among_the_shipped_ones_is_an_error(user_dir):
    """Its number would make it run before shipped ones, or clash with them."""
    early = user_migration(user_dir, f"{NEXT - 1:03d}_orders_note")

    with pytest.raises(InvalidMigrationFiles) as info:
        migration_files(user_dir)

    (problem,) = info.value.problems
    assert str(early) in problem
    assert f"from {NEXT:03d}" in problem


def test_every_problem_is_reported_at_once(user_dir):
    user_migration(user_dir, MIGRATIONS[0])
    (user_dir / "notes.py").write_text("")
    user_migration(user_dir, f"{NEXT:03d}_a")
    user_migration(user_dir, f"{NEXT:03d}_b")

    with pytest.raises(InvalidMigrationFiles) as info:
        migration_files(user_dir)

    assert len(info.value.problems) == 3
    assert f"{len(info.value.problems)} problem(s)" in str(info.value)


# --- the Router and the commands see both folders ------------------------------------------------


def test_the_router_lists_and_finds_migrations_in_both_folders(database, user_dir):
    note = user_migration(user_dir, f"{NEXT:03d}_orders_note")
    router = Router(database, user_dir)

    assert router.todo == [*MIGRATIONS, note.stem]
    assert router.path(note.stem) == note
    assert router.path(MIGRATIONS[0]) == MIGRATIONS_DIR / f"{MIGRATIONS[0]}.py"
    with pytest.raises(UnknownMigration):
        router.path("999_nowhere")


def test_short_names_are_the_number(database, user_dir):
    note = user_migration(user_dir, f"{NEXT:03d}_orders_note")
    router = Router(database, user_dir)

    assert router.resolve(f"{NEXT:03d}") == note.stem
    assert router.resolve(str(NEXT)) == note.stem
    assert router.resolve(MIGRATIONS[2][:3]) == MIGRATIONS[2]
    assert router.resolve(MIGRATIONS[2]) == MIGRATIONS[2]
    for unknown in ("999", "init", MIGRATIONS[2][:5]):
        with pytest.raises(UnknownMigration):
            router.resolve(unknown)


def test_migrate_applies_the_users_migrations_after_the_shipped_ones_and_rolls_them_back(
    database, user_dir
):
    note = user_migration(user_dir, f"{NEXT:03d}_orders_note")
    labels = user_migration(user_dir, f"{NEXT + 1:03d}_labels", TABLE, table="labels")

    assert bitloot_lite.migrate(database, migrations_dir=user_dir) == [
        *MIGRATIONS, note.stem, labels.stem]
    assert "note" in columns(database, "orders")
    database.execute_sql("""INSERT INTO "labels" VALUES (1, 'kept?')""")

    assert bitloot_lite.rollback(database, steps=1, migrations_dir=user_dir) == [labels.stem]
    assert "labels" not in database.get_tables()
    assert bitloot_lite.rollback(database, to=MIGRATIONS[-1][:3],
                                 migrations_dir=user_dir) == [note.stem]
    assert "note" not in columns(database, "orders")
    assert [s.name for s in bitloot_lite.status(database, migrations_dir=user_dir)] == [
        *MIGRATIONS, note.stem, labels.stem]


def test_migrate_to_a_short_name(database, user_dir):
    assert bitloot_lite.migrate(database, to=MIGRATIONS[1][:3]) == MIGRATIONS[:2]
    assert bitloot_lite.migrate(database, to="3") == [MIGRATIONS[2]]


def test_the_cli_takes_the_folder_from_the_option_or_the_environment(db_url, user_dir):
    note = user_migration(user_dir, f"{NEXT:03d}_orders_note")

    by_option = run_cli("status", "--database", db_url, "--migrations", user_dir)
    by_env = run_cli("status", "--database", db_url, env={"BITLOOT_MIGRATIONS_DIR": str(user_dir)})

    for result in (by_option, by_env):
        assert result.exit_code == 1, result.output
        assert [line.split()[1] for line in result.stdout.splitlines()] == [*MIGRATIONS, note.stem]
    result = run_cli("migrate", "--to", f"{NEXT:03d}", "--database", db_url,
                     "--migrations", user_dir)
    assert result.exit_code == 0, result.output
    assert f"applied {note.stem} (" in result.stdout


def test_the_cli_names_every_bad_file_and_runs_nothing(db_url, user_dir):
    user_migration(user_dir, MIGRATIONS[0])
    (user_dir / "6_note.py").write_text("")

    for command in ("migrate", "status"):
        result = run_cli(command, "--database", db_url, "--migrations", user_dir)
        assert result.exit_code in (1, 2), result.output
        assert str(user_dir / f"{MIGRATIONS[0]}.py") in result.stderr
        assert str(user_dir / "6_note.py") in result.stderr
    with bitloot_lite.connect(db_url) as database:
        assert fetch(database, "SELECT 1") == [(1,)]
        assert not {"orders", "migratehistory"} & set(database.get_tables())
