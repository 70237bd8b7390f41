"""Tables in a schema other than public (PostgreSQL): migrated, checked, adopted, baselined.

The schema comes from the session's search_path: the URL's ``options`` or the
role's own default (ALTER ROLE ... SET search_path). Every catalog query must
read the schema the connection uses (current_schema()), never public by name,
also when public holds tables of the same names.
"""

import pytest
import test_adopting
from conftest import MIGRATIONS, fetch, opened, run_cli
from roles import temporary_role, with_search_path, with_user

import bitloot_lite
from bitloot_lite import adopting
from bitloot_lite.errors import ConfigurationError
from bitloot_lite.schema import compare, current_schema, snapshot
from bitloot_lite.target import expected


def tables_by_schema(url):
    with opened(url) as database:
        rows = fetch(database, "SELECT schemaname, tablename FROM pg_tables "
                               "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
    found = {}
    for schema, table in rows:
        found.setdefault(schema, set()).add(table)
    return found


BITLOOT_TABLES = set(adopting.TABLES) | {"migratehistory"}


@pytest.fixture
def shop_url(pg_url):
    """The throwaway database with an empty schema ``shop``, as a URL whose search_path is it."""
    with opened(pg_url) as database:
        database.execute_sql("CREATE SCHEMA shop")
    return with_search_path(pg_url, "shop")


def test_the_url_search_path_gets_every_command_right(shop_url, pg_url):
    result = run_cli("migrate", "--database", shop_url)
    assert result.exit_code == 0, result.output
    assert tables_by_schema(pg_url) == {"shop": BITLOOT_TABLES}
    with opened(shop_url) as database:
        assert current_schema(database) == "shop"
        # the URL's options= does not cost the session its UTC time zone
        ((zone,),) = fetch(database, "SELECT current_setting('TimeZone')")
        assert zone.upper() in bitloot_lite.db._UTC_NAMES
        assert compare(snapshot(database), expected("postgres")) == []
        # the concurrently built index of 005 is in shop, and valid
        assert fetch(database, "SELECT n.nspname, x.indisvalid FROM pg_index x "
                               "JOIN pg_class c ON c.oid = x.indexrelid "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE c.relname = 'IDX_orders_kinguinReservationId'") == [
            ("shop", True)]
    for args, output in ((["check"], "matches the schema"), (["status"], MIGRATIONS[-1]),
                         (["sql"], "nothing to migrate")):
        result = run_cli(*args, "--database", shop_url)
        assert result.exit_code == 0, (args, result.output)
        assert output in result.output
    result = run_cli("rollback", "--steps", "1", "--database", shop_url)
    assert result.exit_code == 0, result.output
    assert run_cli("status", "--database", shop_url).exit_code == 1
    assert run_cli("migrate", "--database", shop_url).exit_code == 0
    assert run_cli("check", "--database", shop_url).exit_code == 0
    assert set(tables_by_schema(pg_url)) == {"shop"}


def test_the_schema_the_connection_uses_is_checked_when_public_has_the_tables_too(
        shop_url, pg_url):
    assert run_cli("migrate", "--database", pg_url).exit_code == 0
    assert run_cli("migrate", "--database", shop_url).exit_code == 0
    assert tables_by_schema(pg_url) == {"public": BITLOOT_TABLES, "shop": BITLOOT_TABLES}
    with opened(pg_url) as database:  # drift in public only
        database.execute_sql('DROP INDEX "IDX_payments_status"')
    assert run_cli("check", "--database", shop_url).exit_code == 0
    result = run_cli("check", "--database", pg_url)
    assert result.exit_code == 1
    assert "index IDX_payments_status missing on payments" in result.output
    with opened(shop_url) as database:  # and now in shop, the other way round
        database.execute_sql('ALTER TABLE "orders" ALTER COLUMN "email" DROP NOT NULL')
    result = run_cli("check", "--database", shop_url)
    assert result.exit_code == 1
    assert "orders.email: nullable, expected NOT NULL" in result.output
    assert "IDX_payments_status" not in result.output


def test_a_search_path_of_two_schemas_builds_and_reads_the_first(shop_url, pg_url):
    """search_path shop, public with the tables in public only: migrate builds them all
    in shop (where CREATE TABLE puts them), the 005 index included, which public's
    own index must not pass for; check then reads shop."""
    assert run_cli("migrate", "--database", pg_url).exit_code == 0
    both = with_search_path(pg_url, "shop,public")
    with opened(both) as database:
        assert adopting.recorded_history(database) == []  # public's history is not shop's
    result = run_cli("migrate", "--database", both)
    assert result.exit_code == 0, result.output
    assert tables_by_schema(pg_url) == {"public": BITLOOT_TABLES, "shop": BITLOOT_TABLES}
    with opened(both) as database:
        assert ("shop", True) in fetch(
            database, "SELECT n.nspname, x.indisvalid FROM pg_index x "
                      "JOIN pg_class c ON c.oid = x.indexrelid "
                      "JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE c.relname = 'IDX_orders_kinguinReservationId'")
    assert run_cli("check", "--database", both).exit_code == 0
    result = run_cli("sql", "--rollback", "1", "--database", both)
    assert result.exit_code == 0, result.output
    with opened(both) as database:  # the preview put the history's sequence back
        (last,) = fetch(database, "SELECT last_value FROM shop.migratehistory_id_seq")[0]
        assert last == len(MIGRATIONS)


def test_the_role_default_search_path_is_used(pg_url, pg_admin):
    with temporary_role(pg_admin, pg_url, prefix="bitloot_shop") as role:
        with opened(pg_url) as database:
            database.execute_sql(f'CREATE SCHEMA shop AUTHORIZATION "{role}"')
        pg_admin.execute_sql(f'ALTER ROLE "{role}" SET search_path = shop')
        url = with_user(pg_url, role)
        result = run_cli("migrate", "--database", url)
        assert result.exit_code == 0, result.output
        assert tables_by_schema(pg_url) == {"shop": BITLOOT_TABLES}
        result = run_cli("check", "--database", url)
        assert result.exit_code == 0, result.output
        with opened(pg_url) as database:  # public's view: nothing there
            assert compare(snapshot(database), expected("postgres", 0)) == []


def typeorm_in_shop(monkeypatch):
    """TypeORM's statements as it writes them for a connection whose schema is shop."""
    for step, statements in test_adopting.TYPEORM_POSTGRES.items():
        monkeypatch.setitem(test_adopting.TYPEORM_POSTGRES, step,
                            [s.replace('"public".', '"shop".') for s in statements])


def test_a_typeorm_database_in_a_schema_is_adopted(shop_url, pg_url, monkeypatch):
    typeorm_in_shop(monkeypatch)
    database = bitloot_lite.connect(shop_url)
    try:
        test_adopting.build_typeorm(database, "postgres", 4)
        rows = test_adopting.all_rows(database)
        assert adopting.adoption_plan(database, test_adopting.MIGRATIONS) == MIGRATIONS[:4]
        bitloot_lite.migrate(database)
        assert adopting.recorded_history(database) == MIGRATIONS
        after = test_adopting.all_rows(database)
        assert [row.pop("kinguinReservationId") for row in after["orders"]] == [None, None]
        assert {table: after[table] for table in rows} == rows
    finally:
        database.close()
    assert set(tables_by_schema(pg_url)) == {"shop"}
    result = run_cli("check", "--database", shop_url)
    assert result.exit_code == 0, result.output


def test_a_database_in_a_schema_is_baselined(shop_url, monkeypatch):
    typeorm_in_shop(monkeypatch)
    with opened(shop_url) as database:
        test_adopting.build_typeorm(database, "postgres", 4, history=False)
    result = run_cli("migrate", "--database", shop_url)
    assert result.exit_code == 1
    assert "baseline --to 004_orders_status_enum" in result.output
    result = run_cli("baseline", "--to", "004_orders_status_enum", "--database", shop_url)
    assert result.exit_code == 0, result.output
    assert run_cli("migrate", "--database", shop_url).exit_code == 0
    assert run_cli("check", "--database", shop_url).exit_code == 0


def test_a_search_path_naming_no_existing_schema_is_a_clear_error(pg_url):
    url = with_search_path(pg_url, "nowhere")
    with opened(url) as database, pytest.raises(ConfigurationError, match="nowhere"):
        snapshot(database)
    result = run_cli("check", "--database", url)
    assert result.exit_code == 2
    assert "no schema of the search_path (nowhere) exists" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_schema_from_the_role_default_through_pgbouncer():
    """Through PgBouncer (whose default configuration refuses options=) the schema comes
    from the role's default: migrate on the direct URL, check and the services pooled."""
    import servers
    from test_grants import lifecycle

    with servers.primary() as cluster:
        direct = cluster.create_database("bitloot")
        cluster.sql("CREATE SCHEMA shop", database="bitloot")
        cluster.sql("ALTER ROLE postgres IN DATABASE bitloot SET search_path = shop")
        with servers.pgbouncer(cluster, "transaction") as bouncer:
            pooled = bouncer.url("bitloot")
            result = run_cli("migrate", "--database", pooled,
                             env={"MIGRATION_DATABASE_URL": direct})
            assert result.exit_code == 0, result.output
            assert tables_by_schema(direct) == {"shop": BITLOOT_TABLES}
            result = run_cli("check", "--database", pooled)
            assert result.exit_code == 0, result.output
            database = bitloot_lite.connect(pooled)
            try:
                assert database.pooled
                lifecycle("pooled")
                assert fetch(database, 'SELECT count(*) FROM shop."keys"') == [(1,)]
            finally:
                database.close()
                bitloot_lite.db.database_proxy.initialize(None)
