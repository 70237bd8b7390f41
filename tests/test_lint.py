"""lint: squawk on the migrations' PostgreSQL SQL, plus what only the live database knows
(the rows of each table): a blocking index build, a NOT NULL column without a default,
a rewriting type change, a foreign key without NOT VALID on a table with rows."""

import json

import pytest
from conftest import MIGRATIONS, opened, postgres_only, run_cli, sqlite_only
from own_migrations import make_folder, next_name, write

pytestmark = pytest.mark.usefixtures("unrelated_cwd")


def migration(up, down):
    """A user migration running the same SQL on both backends."""
    return f'''
    import peewee as pw
    from peewee_migrate import Migrator


    def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
        for statement in {up!r}:
            migrator.sql(statement)


    def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
        for statement in {down!r}:
            migrator.sql(statement)
    '''


BLOCKING_INDEX = migration(['CREATE INDEX "IDX_orders_email" ON "orders" ("email")'],
                           ['DROP INDEX "IDX_orders_email"'])


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "migrations")


def with_rows(db_url):
    with opened(db_url) as database:
        database.execute_sql("INSERT INTO orders (email) VALUES ('a@example.com')")


def setup(db_url, folder, text, *, rows):
    args = ("--database", db_url, "--migrations", folder)
    result = run_cli("migrate", "-q", *args)
    assert result.exit_code == 0, result.output
    if rows:
        with_rows(db_url)
    return write(folder, next_name("change"), text), args


@postgres_only
def test_lint_finds_a_blocking_index_build_on_a_table_with_rows(db_url, folder):
    name, args = setup(db_url, folder, BLOCKING_INDEX, rows=True)

    result = run_cli("lint", *args)

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{name}: blocking-index-build: ") and "orders has 1 row" in line
               for line in lines), lines
    # ... and squawk's own finding of it: the linting is squawk's.
    assert any(line.startswith(f"{name}: require-concurrent-index-creation: ")
               for line in lines), lines
    assert "finding(s)" in result.stderr


@postgres_only
def test_the_same_index_on_an_empty_table_is_only_a_note(db_url, folder):
    name, args = setup(db_url, folder, BLOCKING_INDEX, rows=False)

    result = run_cli("lint", *args)

    assert result.exit_code == 0, result.output
    assert f"note: {name}: require-concurrent-index-creation on orders, which is empty" \
        in result.stdout


@sqlite_only
def test_on_sqlite_lint_is_squawks_on_the_postgresql_sql(db_url, folder):
    name, args = setup(db_url, folder, BLOCKING_INDEX, rows=True)

    result = run_cli("lint", *args)

    assert result.exit_code == 1, result.output
    assert "row-count checks need a PostgreSQL database" in result.stdout
    assert f"{name}: require-concurrent-index-creation: " in result.stdout
    assert "blocking-index-build" not in result.stdout


@postgres_only
@pytest.mark.parametrize("up, rule", [
    (['ALTER TABLE "orders" ADD COLUMN "channel" varchar(20) NOT NULL'],
     "required-column-on-rows"),
    (['ALTER TABLE "orders" ALTER COLUMN "total" TYPE numeric(12,2)'],
     "rewriting-type-change"),
    (['ALTER TABLE "webhook_logs" ADD CONSTRAINT "FK_webhook_logs_orderId" FOREIGN KEY '
      '("orderId") REFERENCES "orders" ("id")'], "foreign-key-scan"),
])
def test_lint_knows_what_the_rows_make_dangerous(db_url, folder, up, rule):
    name, args = setup(db_url, folder, migration(up, []), rows=True)
    with opened(db_url) as database:
        (order,) = database.execute_sql("SELECT id FROM orders").fetchone()
        database.execute_sql(
            'INSERT INTO webhook_logs ("externalId", "webhookType", "payload", "orderId") '
            "VALUES ('x', 'payment', '{}', %s)", (order,))

    result = run_cli("lint", "--json", *args)

    assert result.exit_code == 1, result.output
    found = json.loads(result.stdout)["findings"]
    assert [f["rule"] for f in found if f["source"] == "database"] == [rule], found
    assert all(f["name"] == name for f in found)


@postgres_only
def test_widening_a_varchar_is_not_a_rewrite(db_url, folder):
    up = ['ALTER TABLE "orders" ALTER COLUMN "email" TYPE varchar(400)']
    name, args = setup(db_url, folder, migration(up, []), rows=True)

    result = run_cli("lint", *args)

    assert result.exit_code == 0, result.output
    assert f"note: {name}: changing-column-type on orders: a widening" in result.stdout


def test_lint_of_nothing_pending_and_of_named_migrations(migrated, db_url):
    assert run_cli("lint", "--database", db_url).stdout.strip() == "no findings"
    named = run_cli("lint", "--offline", MIGRATIONS[3])
    assert named.exit_code == 1  # 004 changes a column's type: squawk says so
    assert "changing-column-type" in named.stdout
    unknown = run_cli("lint", "--offline", "999_nope")
    assert unknown.exit_code == 2 and "unknown migration" in unknown.stderr
