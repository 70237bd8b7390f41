"""check: the live database against what its migrations build (any set of them, the
user's own included) and, with --models, against the models.

The expected schema is replayed on a scratch database of the same backend; the
shipped migrations' schema is checked against docs/SCHEMA.md in test_schema.py.
"""

import time

import pytest
from conftest import MIGRATIONS, opened, postgres_only, run_cli
from own_migrations import NOTE_MIGRATION, make_folder, next_name, write

from bitloot_lite import migrating, replay, schema

pytestmark = pytest.mark.usefixtures("unrelated_cwd")


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "migrations")


def test_check_follows_a_users_migration_pending_then_applied(db_url, folder):
    note = write(folder, next_name("orders_note"), NOTE_MIGRATION)
    args = ("--database", db_url, "--migrations", folder)
    assert run_cli("migrate", "-q", "--to", MIGRATIONS[-1], *args).exit_code == 0

    pending = run_cli("check", *args)
    assert pending.exit_code == 1, pending.output
    assert pending.stdout.splitlines() == [f"migration {note} pending"]

    assert run_cli("migrate", "-q", *args).exit_code == 0
    passed = run_cli("check", *args)
    assert passed.exit_code == 0, passed.output
    assert "matches the schema" in passed.stdout

    # ... and it is a real comparison: the user's column gone is a difference.
    with opened(db_url) as database:
        database.execute_sql('ALTER TABLE "orders" DROP COLUMN "note"')
    dropped = run_cli("check", *args)
    assert dropped.exit_code == 1, dropped.output
    assert dropped.stdout.splitlines() == ["column orders.note missing"]


def test_the_replayed_schema_is_what_migrate_builds(db_url, folder):
    write(folder, next_name("orders_note"), NOTE_MIGRATION)
    with opened(db_url) as database:
        migrating.migrate(database, migrations_dir=folder)
        names = list(migrating.status(database, folder))
        built = replay.built_schema(database, [s.name for s in names], folder)
        assert schema.compare(schema.snapshot(database), built) == []
        assert "note" in [c["name"] for c in built["tables"]["orders"]["columns"]]


def test_the_replay_is_cached_and_leaves_no_scratch_database(db_url, pg_admin_or_none):
    with opened(db_url) as database:
        migrating.migrate(database)
        migrating.check(database)  # warms the cache
        started = time.perf_counter()
        assert migrating.check(database) == ([], [])
        assert time.perf_counter() - started < 0.5
    if pg_admin_or_none is not None:
        left = pg_admin_or_none.execute_sql(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"{replay.SCRATCH_PREFIX}%",)).fetchall()
        assert left == []


@pytest.fixture
def pg_admin_or_none(backend, request):
    return request.getfixturevalue("pg_admin") if backend == "postgres" else None


@postgres_only
def test_check_on_postgresql_without_createdb_says_what_it_needs(db_url, folder):
    """The application role may not create databases: for the shipped migrations
    alone check compares with their recorded schema; a user's migration needs the
    replay, and the error says what it needs."""
    role = "bitloot_h11b_nocreatedb"
    with opened(db_url) as database:
        migrating.migrate(database)
        name = database.database
        database.execute_sql(f'DROP ROLE IF EXISTS "{role}"')
        database.execute_sql(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
        database.execute_sql(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
        database.execute_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    try:
        url = db_url.replace("postgres@", f"{role}@", 1)
        replay._CACHE.clear()  # a cached replay would hide the privilege
        shipped = run_cli("check", "--database", url)
        assert shipped.exit_code == 0, shipped.output
        write(folder, next_name("orders_note"), NOTE_MIGRATION)
        with opened(db_url) as database:
            migrating.migrate(database, migrations_dir=folder)
            database.execute_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        replay._CACHE.clear()
        result = run_cli("check", "--database", url, "--migrations", folder)
        assert result.exit_code == 2, result.output
        assert "CREATEDB" in result.stderr
    finally:
        with opened(db_url) as database:
            database.execute_sql(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"')
            database.execute_sql(f'REVOKE ALL ON DATABASE "{name}" FROM "{role}"')
            database.execute_sql(f'DROP ROLE "{role}"')


def test_check_models_reports_a_model_extended_without_a_migration(db_url, folder, tmp_path):
    shop = tmp_path / "shop_models.py"
    shop.write_text(
        "import peewee as pw\n"
        "from bitloot_lite.models import Order\n"
        'Order._meta.add_field("note", pw.TextField(null=True))\n', encoding="utf-8")
    args = ("--database", db_url, "--migrations", folder)
    assert run_cli("migrate", "-q", *args).exit_code == 0

    result = run_cli("check", "--models", shop, *args)

    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        "add column orders.note: no migration makes it (see `bitloot-lite new --auto`)",
        "column orders.note of Order.note missing",
    ]
    # Without the module, bitloot-lite's own models match.
    assert run_cli("check", *args).exit_code == 0

    # With the migration the module needs, it passes.
    write(folder, next_name("orders_note"), NOTE_MIGRATION)
    assert run_cli("migrate", "-q", *args).exit_code == 0
    passed = run_cli("check", "--models", shop, *args)
    assert passed.exit_code == 0, passed.output
