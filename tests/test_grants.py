"""Two roles on PostgreSQL (grants.py, `bitloot-lite grants`): the owner migrates, the
application role has only DML, and every command run as it works or says what is missing.

Each test makes its own two roles (roles are cluster-wide) and drops them after. The
throwaway database is hardened the way a managed server often is: nobody but its
owner may connect or use schema public until granted.
"""

import pytest
from conftest import MIGRATIONS, fetch, opened, run_cli
from roles import temporary_role, with_search_path, with_user

import bitloot_lite as bl
from bitloot_lite.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    GrantFailed,
    MigrationFailed,
    PrivilegeMissing,
    StorageError,
)
from bitloot_lite.grants import apply_grants, grant_statements

#: What any command run as the application role must say when it needs the owner.
RUN_AS_OWNER = "run migrations as the owner of the tables (MIGRATION_DATABASE_URL"


@pytest.fixture
def two_roles(pg_url, pg_admin):
    """(owner URL, application URL, application role name) on a hardened database."""
    with temporary_role(pg_admin, pg_url, "bitloot_owner") as owner, \
            temporary_role(pg_admin, pg_url, "bitloot_app") as app:
        name = pg_url.rsplit("/", 1)[1]
        pg_admin.execute_sql(f'ALTER DATABASE "{name}" OWNER TO "{owner}"')
        try:
            with opened(pg_url) as database:
                database.execute_sql("REVOKE ALL ON SCHEMA public FROM PUBLIC")
                database.execute_sql(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
            yield with_user(pg_url, owner), with_user(pg_url, app), app
        finally:  # a role that owns a database cannot be dropped
            pg_admin.execute_sql(f'ALTER DATABASE "{name}" OWNER TO CURRENT_USER')


def lifecycle(tag):
    """An order from checkout to a revealed key, through the service API; returns it."""
    order = bl.create_order(f"{tag}@example.com", [(f"game-{tag}", 1)], total="9.99")
    (item,) = order.items
    bl.record_webhook(f"np-{tag}", "payment", {"payment_status": "finished"}, "sig",
                      order=order)
    bl.record_payment(order, f"np-{tag}", "finished", price_amount="9.99",
                      price_currency="usd")
    for status in ("waiting", "confirming", "paid"):
        bl.set_status(order, status)
    bl.attach_reservation(order, f"res-{tag}")
    bl.add_keys(item, [f"keys/{tag}.enc"])
    bl.set_status(order, "fulfilled")
    found = bl.find_order_by_reservation(f"res-{tag}")
    (key,) = bl.keys_for_order(found)
    assert key.id in [unviewed.id for unviewed in bl.unviewed_keys()]
    bl.reveal_key(key)
    assert key.id not in [unviewed.id for unviewed in bl.unviewed_keys()]
    return found


def test_the_statements_name_the_tables_types_schema_and_history_only(two_roles):
    owner_url, _app_url, app = two_roles
    assert run_cli("migrate", "--database", owner_url).exit_code == 0
    with opened(owner_url) as database:
        statements = grant_statements(database, app)
    grantee = f'"{app}"'
    assert all(statement.endswith(f" TO {grantee}") for statement in statements)
    name = owner_url.rsplit("/", 1)[1]
    assert statements[0] == f'GRANT CONNECT ON DATABASE "{name}" TO {grantee}'
    text = "\n".join(statements)
    assert f'GRANT USAGE ON SCHEMA "public" TO {grantee}' in statements
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."orders", ' in text
    for table in ("order_items", "payments", "webhook_logs", "keys"):
        assert f'"public"."{table}"' in text.split("DELETE ON TABLE")[1].splitlines()[0]
    assert ('GRANT USAGE ON TYPE "public"."orders_status_enum", '
            f'"public"."payments_status_enum" TO {grantee}') in statements
    assert f'GRANT SELECT ON TABLE "public"."migratehistory" TO {grantee}' in statements
    # never more than reading the history, never DDL
    assert not [s for s in statements if "migratehistory" in s and "INSERT" in s]
    assert not [s for s in statements if any(w in s for w in ("CREATE", "ALL", "TRUNCATE"))]
    result = run_cli("grants", app, "--database", owner_url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"{statement};" for statement in statements]


def test_the_application_role_runs_everything_it_should_once_granted(two_roles):
    owner_url, app_url, app = two_roles
    assert run_cli("migrate", "--database", owner_url).exit_code == 0
    with pytest.raises(DatabaseUnavailable):  # no CONNECT yet
        bl.connect(app_url)
    # As the owner, on the migration URL, with the application's URL beside it.
    result = run_cli("grants", app, "--apply",
                     env={"DATABASE_URL": app_url, "MIGRATION_DATABASE_URL": owner_url})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("-- ")
    for args in (["status"], ["check"]):
        result = run_cli(*args, "--database", app_url)
        assert result.exit_code == 0, (args, result.output)
    database = bl.connect(app_url)
    try:
        order = lifecycle("app")
        assert order.status is bl.OrderStatus.FULFILLED
        assert fetch(database, "SELECT current_user")[0][0] == app
    finally:
        database.close()


def test_the_application_role_is_refused_ddl_with_one_line_naming_the_fix(two_roles):
    owner_url, app_url, app = two_roles
    assert run_cli("migrate", "--to", MIGRATIONS[-2], "--database", owner_url).exit_code == 0
    assert run_cli("grants", app, "--apply", "--database", owner_url).exit_code == 0
    before = run_cli("status", "--database", app_url)
    assert before.exit_code == 1 and f"pending  {MIGRATIONS[-1]}" in before.output
    for args in (["migrate"], ["rollback"], ["sql"], ["sql", "--rollback", "1"]):
        result = run_cli(*args, "--database", app_url)
        assert result.exit_code == 1, (args, result.output)
        (line,) = result.output.strip().splitlines()
        assert line.startswith("Error: ") and RUN_AS_OWNER in line, (args, line)
        assert "permission denied" in line or "must be owner" in line, (args, line)
    assert run_cli("status", "--database", app_url).output == before.output  # nothing changed
    with opened(app_url) as database, pytest.raises(MigrationFailed,
                                                    match="permission denied|must be owner"):
        bl.migrate(database)
    with opened(owner_url) as database:  # tables with no history: baseline is owner's work
        bl.migrate(database)
        database.execute_sql('DELETE FROM "migratehistory"')
    result = run_cli("baseline", "--to", MIGRATIONS[-1], "--database", app_url)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert "recording migrations as applied: permission denied" in line
    assert RUN_AS_OWNER in line


def test_without_the_history_grant_status_names_it(two_roles):
    owner_url, app_url, app = two_roles
    assert run_cli("migrate", "--database", owner_url).exit_code == 0
    assert run_cli("grants", app, "--apply", "--database", owner_url).exit_code == 0
    with opened(owner_url) as database:
        database.execute_sql(f'REVOKE SELECT ON "migratehistory" FROM "{app}"')
    for command, code in (("status", 2), ("check", 2)):
        result = run_cli(command, "--database", app_url)
        assert result.exit_code == code, result.output
        (line,) = result.output.strip().splitlines()
        assert "permission denied for table migratehistory" in line
        assert "bitloot-lite grants ROLE --apply" in line
    with opened(app_url) as database, pytest.raises(PrivilegeMissing) as caught:
        bl.status(database)
    assert caught.value.action == "reading the migration history"


def test_without_the_table_grants_the_services_fail_cleanly(two_roles):
    owner_url, app_url, app = two_roles
    assert run_cli("migrate", "--database", owner_url).exit_code == 0
    assert run_cli("grants", app, "--apply", "--database", owner_url).exit_code == 0
    with opened(owner_url) as database:
        database.execute_sql(f'REVOKE INSERT ON "orders" FROM "{app}"')
    database = bl.connect(app_url)
    try:
        with pytest.raises(StorageError) as caught:
            bl.create_order("a@example.com", [("game", 1)], total="1")
        assert str(caught.value) == ("create_order failed in the database: InsufficientPrivilege"
                                     " (SQLSTATE 42501): permission denied for table orders")
        with pytest.raises(bl.NotFound):  # reads still work
            bl.find_order_by_reservation("nothing")
    finally:
        database.close()


def test_grants_in_a_schema_and_idempotent(two_roles, pg_url):
    owner_url, app_url, app = two_roles
    with opened(pg_url) as database:
        owner = owner_url.split("//")[1].split("@")[0]
        database.execute_sql(f'CREATE SCHEMA shop AUTHORIZATION "{owner}"')
    owner_shop, app_shop = (with_search_path(url, "shop") for url in (owner_url, app_url))
    assert run_cli("migrate", "--database", owner_shop).exit_code == 0
    with opened(owner_shop) as database:
        first = apply_grants(database, app)
        again = apply_grants(database, app)  # no error; what it has now is left out
    assert again == [s for s in first if "ON DATABASE" not in s and "ON SCHEMA" not in s]
    assert f'GRANT USAGE ON SCHEMA "shop" TO "{app}"' in first
    assert len(again) == 3  # tables, types, history
    assert all('"public".' not in statement for statement in first)
    assert run_cli("check", "--database", app_shop).exit_code == 0
    database = bl.connect(app_shop)
    try:
        lifecycle("shop")
    finally:
        database.close()


def test_refusals_of_grants_itself(two_roles, sqlite_url):
    owner_url, app_url, app = two_roles
    with opened(owner_url) as database, pytest.raises(ConfigurationError, match="migrate"):
        grant_statements(database, app)  # nothing migrated yet
    assert run_cli("migrate", "--database", owner_url).exit_code == 0
    with opened(owner_url) as database, pytest.raises(GrantFailed, match="does not exist"):
        apply_grants(database, "bitloot_no_such_role_here")
    assert run_cli("grants", app, "--apply", "--database", owner_url).exit_code == 0
    # The application role cannot grant itself (or anyone) anything.
    result = run_cli("grants", app, "--apply", "--database", app_url)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "run grants --apply as the owner of the tables" in line
    result = run_cli("grants", app, "--database", sqlite_url)
    assert result.exit_code == 1 and "SQLite has no roles" in result.output
