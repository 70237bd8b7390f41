"""check in a schema other than public (PostgreSQL): its scratch replay builds in the
same schema as migrate did, whatever set the search_path (issue 16, point 7).

The replay's cache is cleared before each check: a snapshot cached by an earlier
test would hide a replay that cannot run.
"""

import pytest
from conftest import fetch, opened, run_cli
from own_migrations import NOTE_MIGRATION, make_folder, next_name, write
from roles import temporary_role, with_search_path, with_user
from test_schemas import BITLOOT_TABLES

from bitloot_lite import replay

pytestmark = pytest.mark.usefixtures("unrelated_cwd")


def check(*args):
    replay._CACHE.clear()
    return run_cli("check", *args)


def no_scratch_left(pg_admin):
    rows = fetch(pg_admin, "SELECT datname FROM pg_database WHERE datname LIKE %s",
                 (f"{replay.SCRATCH_PREFIX}%",))
    settings = fetch(pg_admin, "SELECT count(*) FROM pg_db_role_setting s "
                               "LEFT JOIN pg_database d ON d.oid = s.setdatabase "
                               "WHERE s.setdatabase <> 0 AND d.oid IS NULL")
    return rows == [] and settings == [(0,)]


@pytest.fixture
def shop_url(pg_url):
    with opened(pg_url) as database:
        database.execute_sql("CREATE SCHEMA shop")
    return with_search_path(pg_url, "shop")


def test_check_in_the_urls_schema_passes_and_reports_drift(shop_url, pg_url, pg_admin):
    assert run_cli("migrate", "-q", "--database", shop_url).exit_code == 0
    result = check("--database", shop_url)
    assert result.exit_code == 0, result.output
    assert "matches the schema" in result.stdout
    with opened(shop_url) as database:
        database.execute_sql('ALTER TABLE "orders" ALTER COLUMN "email" DROP NOT NULL')
    drifted = check("--database", shop_url)
    assert drifted.exit_code == 1, drifted.output
    assert "orders.email: nullable, expected NOT NULL" in drifted.stdout.splitlines()
    assert no_scratch_left(pg_admin)


def test_a_users_migration_in_the_urls_schema_is_replayed(shop_url, tmp_path):
    folder = make_folder(tmp_path / "migrations")
    write(folder, next_name("orders_note"), NOTE_MIGRATION)
    args = ("--database", shop_url, "--migrations", folder)
    assert run_cli("migrate", "-q", *args).exit_code == 0
    result = check(*args)
    assert result.exit_code == 0, result.output
    with opened(shop_url) as database:
        database.execute_sql('ALTER TABLE "orders" DROP COLUMN "note"')
    dropped = check(*args)
    assert dropped.exit_code == 1, dropped.output
    assert dropped.stdout.splitlines() == ["column orders.note missing"]


def test_a_path_of_two_schemas_where_only_the_second_exists(pg_url):
    """search_path nowhere,public: public is where migrate builds, and where the replay does."""
    url = with_search_path(pg_url, "nowhere,public")
    assert run_cli("migrate", "-q", "--database", url).exit_code == 0
    result = check("--database", url)
    assert result.exit_code == 0, result.output


def test_the_roles_search_path_with_createdb_is_replayed_in_its_schema(pg_url, pg_admin):
    """The role's own default (and an identifier that needs quoting), with CREATEDB: the
    scratch replay runs (no fallback to the recorded schema), in a schema of that name."""
    with temporary_role(pg_admin, pg_url, prefix="bitloot_h16e") as role:
        pg_admin.execute_sql(f'ALTER ROLE "{role}" CREATEDB')
        with opened(pg_url) as database:
            database.execute_sql(f'CREATE SCHEMA "Shop-1" AUTHORIZATION "{role}"')
        pg_admin.execute_sql(f'ALTER ROLE "{role}" SET search_path = "Shop-1"')
        url = with_user(pg_url, role)
        assert run_cli("migrate", "-q", "--database", url).exit_code == 0
        with opened(pg_url) as database:
            tables = fetch(database, "SELECT tablename FROM pg_tables "
                                     "WHERE schemaname = 'Shop-1'")
            assert {table for (table,) in tables} == BITLOOT_TABLES
        result = check("--database", url)
        assert result.exit_code == 0, result.output
        with opened(url) as database:
            database.execute_sql('DROP INDEX "IDX_payments_status"')
        drifted = check("--database", url)
        assert drifted.exit_code == 1, drifted.output
        assert "index IDX_payments_status missing on payments" in drifted.stdout
    assert no_scratch_left(pg_admin)


def test_the_databases_own_search_path(pg_url, pg_admin):
    """ALTER DATABASE ... SET search_path: the scratch database is another database,
    yet it gets the same path."""
    with opened(pg_url) as database:
        database.execute_sql("CREATE SCHEMA shop")
        pg_admin.execute_sql(f'ALTER DATABASE "{database.database}" SET search_path = shop')
    assert run_cli("migrate", "-q", "--database", pg_url).exit_code == 0
    with opened(pg_url) as database:
        assert fetch(database, "SELECT current_schema()") == [("shop",)]
    result = check("--database", pg_url)
    assert result.exit_code == 0, result.output
