"""Where migrations live: the shipped ones first, then the user's folder, each file checked.

The contract other modules rely on: ``migration_files(dir)`` lists (name, path) in
order without a database; ``Router(db, dir).todo`` and ``Router.path(name)`` see
both folders; a misnamed file, a duplicate number or a clash with a shipped name is
an error naming the files, never a file silently left out.
"""

import pytest
from conftest import MIGRATIONS, MIGRATIONS_DIR, fetch, opened, run_cli, throwaway_url

import bitloot_lite
from bitloot_lite.errors import (
    EditedMigration,
    InvalidMigration,
    InvalidMigrationFiles,
    IrreversibleMigration,
    MigrationFailed,
    MigrationsNotFound,
    OutOfOrder,
    UnknownMigration,
)
from bitloot_lite.runner import Router, migration_files

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
    assert "number yours from 100, as `bitloot-lite new` does" in problem


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
    with opened(db_url):  # made: status does not make a SQLite file
        pass

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


# --- safety at load and at rollback --------------------------------------------------------------

NO_ROLLBACK = '''\
"""{name}: a table, and no way back."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "{table}" ("id" integer PRIMARY KEY)')
'''

NOOP_ROLLBACK = '''\
"""{name}: nothing to undo (a data fix-up that may stay)."""

ROLLBACK = "noop"


def migrate(migrator, database, *, fake=False):
    migrator.sql(\'\'\'UPDATE "orders" SET "email" = lower("email")\'\'\')
'''

PASS_ROLLBACK = NOOP_ROLLBACK.replace('ROLLBACK = "noop"\n', "") + '''

def rollback(migrator, database, *, fake=False):
    pass
'''

NO_MIGRATE = '''\
"""{name}: forgot its migrate()."""


def rollback(migrator, database, *, fake=False):
    pass
'''

SYNTAX_ERROR = '''\
"""{name}: a typo on line 5."""


def migrate(migrator, database, *, fake=False)
    migrator.sql("SELECT 1")
'''

IMPORT_ERROR = '''\
"""{name}: imports what is not installed, on line 3."""

import no_such_module_anywhere  # noqa


def migrate(migrator, database, *, fake=False):
    pass
'''


def history(database):
    return [state.name for state in bitloot_lite.status(database) if state.applied]


def test_rolling_back_a_migration_without_rollback_refuses_before_touching_anything(
    database, user_dir
):
    gone = user_migration(user_dir, f"{NEXT:03d}_forever", NO_ROLLBACK, table="forever")
    note = user_migration(user_dir, f"{NEXT + 1:03d}_orders_note")
    bitloot_lite.migrate(database, migrations_dir=user_dir)

    for steps in (2, 1 + len(MIGRATIONS)):  # note (reversible) is not undone either
        with pytest.raises(IrreversibleMigration) as info:
            bitloot_lite.rollback(database, steps=steps, migrations_dir=user_dir)
        assert info.value.name == gone.stem
        assert str(gone) in str(info.value)

    assert "note" in columns(database, "orders") and "forever" in database.get_tables()
    assert [s.name for s in bitloot_lite.status(database, migrations_dir=user_dir)
            if s.applied] == [*MIGRATIONS, gone.stem, note.stem]
    assert bitloot_lite.rollback(database, migrations_dir=user_dir) == [note.stem]


def test_the_cli_refusal_names_the_irreversible_migration(db_url, user_dir):
    gone = user_migration(user_dir, f"{NEXT:03d}_forever", NO_ROLLBACK, table="forever")
    where = ["--database", db_url, "--migrations", user_dir]
    assert run_cli("migrate", "-q", *where).exit_code == 0

    result = run_cli("rollback", *where)

    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: migration ") and gone.stem in line
    assert "irreversible" in line and 'ROLLBACK = "noop"' in line


@pytest.mark.parametrize("template", [NOOP_ROLLBACK, PASS_ROLLBACK], ids=["ROLLBACK-noop",
                                                                          "def-rollback-pass"])
def test_a_migration_declared_a_no_op_rolls_back(database, user_dir, template):
    fixup = user_migration(user_dir, f"{NEXT:03d}_lower_emails", template)
    assert bitloot_lite.migrate(database, migrations_dir=user_dir)[-1] == fixup.stem

    assert bitloot_lite.rollback(database, migrations_dir=user_dir) == [fixup.stem]
    assert history(database) == MIGRATIONS


def test_rollback_noop_takes_only_that_value(database, user_dir):
    user_migration(user_dir, f"{NEXT:03d}_odd", NOOP_ROLLBACK.replace('"noop"', '"none"'))
    with pytest.raises(InvalidMigration, match='ROLLBACK = .none.: the only value'):
        bitloot_lite.migrate(database, migrations_dir=user_dir)
    assert history(database) == []


@pytest.mark.parametrize("template,line,reason", [
    (NO_MIGRATE, None, "defines no migrate("),
    (SYNTAX_ERROR, 4, "SyntaxError"),
    (IMPORT_ERROR, 3, "ModuleNotFoundError: No module named 'no_such_module_anywhere'"),
], ids=["no-migrate", "syntax-error", "import-error"])
def test_a_file_that_cannot_load_is_refused_before_anything_runs(
    database, user_dir, template, line, reason
):
    broken = user_migration(user_dir, f"{NEXT + 1:03d}_broken", template)
    user_migration(user_dir, f"{NEXT:03d}_orders_note")

    with pytest.raises(InvalidMigration) as info:
        bitloot_lite.migrate(database, migrations_dir=user_dir)

    assert info.value.name == broken.stem and info.value.path == broken
    assert info.value.line == line
    assert reason in str(info.value)
    assert history(database) == [] and "orders" not in database.get_tables()


def test_the_cli_says_which_file_and_line_in_one_line(db_url, user_dir):
    broken = user_migration(user_dir, f"{NEXT:03d}_broken", SYNTAX_ERROR)

    for command in ("migrate", "sql"):
        result = run_cli(command, "--database", db_url, "--migrations", user_dir)
        assert result.exit_code == 1, result.output
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"Error: migration {broken.stem} ({broken}, line 4)"), line
        assert "Traceback" not in result.output


# --- a migration's indexes built after the commit, on PostgreSQL ----------------------------------

CONCURRENT = '''\
"""{name}: an index on orders, built without blocking writes."""

PLAIN = 'CREATE INDEX "IDX_orders_email" ON "orders" ("email")'
POSTGRES_CONCURRENT_INDEXES = {{
    "IDX_orders_email": PLAIN.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY"),
}}


def migrate(migrator, database, *, fake=False):
    {body}


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP INDEX IF EXISTS "IDX_orders_email"')
'''


def index_names(database, table):
    return {index.name for index in database.get_indexes(table)}


def test_a_declared_concurrent_index_is_built_after_the_commit(database, user_dir):
    index = user_migration(user_dir, f"{NEXT:03d}_orders_email", CONCURRENT,
                           body="migrator.sql(PLAIN)")
    steps = []

    bitloot_lite.migrate(database, migrations_dir=user_dir, on_step=steps.append)

    assert "IDX_orders_email" in index_names(database, "orders")
    built = [step.name for step in steps if step.direction == "index"]
    if database.__class__.__name__.startswith("Postgres"):
        assert f"{index.stem}: IDX_orders_email" in built
        (valid,) = fetch(database, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                         """'"IDX_orders_email"'::regclass""")[0]
        assert valid is True
    else:
        assert not any("IDX_orders_email" in name for name in built)  # in the transaction
    bitloot_lite.rollback(database, migrations_dir=user_dir)
    assert "IDX_orders_email" not in index_names(database, "orders")


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_declared_concurrent_index_that_migrate_does_not_run_is_refused(database, user_dir):
    """pw_migrate would skip it: bitloot-lite refuses the file instead of hiding that."""
    bad = user_migration(user_dir, f"{NEXT:03d}_orders_email", CONCURRENT, body="pass")
    bitloot_lite.migrate(database)

    with pytest.raises(MigrationFailed) as info:
        bitloot_lite.migrate(database, migrations_dir=user_dir)

    assert info.value.name == bad.stem
    assert "IDX_orders_email" in str(info.value) and "pw_migrate" in str(info.value)
    assert history(database) == MIGRATIONS


def test_peewee_migrates_own_runner_makes_the_same_schema(db_url, request, tmp_path, backend):
    """``pw_migrate migrate`` on the shipped folder: no index silently left out."""
    import peewee_migrate

    from bitloot_lite.schema import HISTORY_TABLE, snapshot

    with opened(db_url) as ours:
        bitloot_lite.migrate(ours)
        expected = snapshot(ours)
    (tmp_path / "pw").mkdir()
    with throwaway_url(request, backend, tmp_path / "pw") as other_url, opened(other_url) as theirs:
        if backend == "sqlite":  # 004 refuses to run with SQLite's foreign keys on
            theirs.execute_sql("PRAGMA foreign_keys = OFF")
        peewee_migrate.Router(theirs, migrate_dir=MIGRATIONS_DIR,
                              migrate_table=HISTORY_TABLE).run()
        assert "IDX_orders_kinguinReservationId" in index_names(theirs, "orders")
        assert snapshot(theirs) == expected


def test_a_history_row_of_an_earlier_version_of_005_is_not_an_edit(migrated):
    """005 now runs its plain index in POSTGRES_UP too; databases that applied the earlier
    file (its checksum in PREVIOUS_CHECKSUMS) are not told it was edited."""
    from bitloot_lite.runner import Router

    name = next(n for n in MIGRATIONS if n.startswith("005_"))
    (old, *_) = Router(migrated).previous_checksums(name)
    param = migrated.param
    update = f'UPDATE "migratehistory" SET "checksum" = {param} WHERE "name" = {param}'
    migrated.execute_sql(update, (old, name))
    assert all(s.applied and not s.edited for s in bitloot_lite.status(migrated))

    migrated.execute_sql(update, ("0" * 64, name))
    with pytest.raises(EditedMigration):
        bitloot_lite.status(migrated)


# --- each folder is its own sequence ------------------------------------------------------------


def test_a_shipped_migration_an_upgrade_brings_runs_after_the_users_applied_ones(
    database, tmp_path, monkeypatch
):
    """bitloot-lite's next release adds a migration after the user's are applied: it is
    not "out of order" (the user's folder is its own sequence), and it runs."""
    user_dir = tmp_path / "mine"
    mine = user_migration(user_dir, "100_orders_note")
    bitloot_lite.migrate(database, migrations_dir=user_dir)
    upgraded = tmp_path / "upgraded"
    upgraded.mkdir()
    for name in MIGRATIONS:
        (upgraded / f"{name}.py").write_bytes((MIGRATIONS_DIR / f"{name}.py").read_bytes())
    newer = user_migration(upgraded, f"{NEXT:03d}_labels", TABLE, table="labels")
    monkeypatch.setenv("BITLOOT_SHIPPED_MIGRATIONS_DIR", str(upgraded))

    assert bitloot_lite.migrate(database, migrations_dir=user_dir) == [newer.stem]
    assert [s.name for s in bitloot_lite.status(database, migrations_dir=user_dir)] == [
        *MIGRATIONS, newer.stem, mine.stem]


def test_a_users_migration_older_than_an_applied_one_of_theirs_is_out_of_order(
    database, user_dir
):
    user_migration(user_dir, f"{NEXT:03d}_orders_note")
    user_migration(user_dir, f"{NEXT + 2:03d}_labels", TABLE, table="labels")
    bitloot_lite.migrate(database, migrations_dir=user_dir)
    late = user_migration(user_dir, f"{NEXT + 1:03d}_tags", TABLE, table="tags")

    with pytest.raises(OutOfOrder) as info:
        bitloot_lite.migrate(database, migrations_dir=user_dir)
    assert info.value.names == [late.stem]
    assert bitloot_lite.migrate(database, migrations_dir=user_dir,
                                allow_out_of_order=True) == [late.stem]
