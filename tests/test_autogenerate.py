"""new NAME [--auto]: the next migration file, written from the models' difference with
what the migrations record; it applies and rolls back on both backends, keeping every
row, or, where it cannot be written safely, refuses to run until edited."""

import textwrap
from pathlib import Path

import pytest
from conftest import opened, run_cli
from own_migrations import make_folder

from bitloot_lite import autogenerate, migrating, schema
from bitloot_lite.models import MODELS, Order

pytestmark = pytest.mark.usefixtures("unrelated_cwd")

#: A user's module: a field and an index on Order, a new table.
SHOP = '''
    import peewee as pw
    from bitloot_lite.models import BaseModel, Order

    Order._meta.add_field("note", pw.CharField(max_length=200, null=True, index=True))
    Order._meta.indexes.append((("email", "status"), False))


    class Coupon(BaseModel):
        order = pw.ForeignKeyField(Order, null=True, on_delete="SET NULL",
                                   column_name="orderId", backref="coupons")
        code = pw.CharField(max_length=40, unique=True)
        percent = pw.IntegerField(default=10)

        class Meta:
            table_name = "coupons"
'''

#: Type and nullability changes on shipped columns (a wider email, an optional provider).
WIDER = '''
    import peewee as pw
    from bitloot_lite.models import Order, Payment

    Order._meta.add_field("email", pw.CharField(max_length=400))
    Payment._meta.add_field("provider", pw.CharField(max_length=50, null=True,
                                                     default="nowpayments"))
'''

#: A NOT NULL column with nothing for the existing rows: cannot be written safely.
UNSAFE = '''
    import peewee as pw
    from bitloot_lite.models import Order

    Order._meta.add_field("channel", pw.CharField(max_length=20))
'''


def module(tmp_path, text, name="shop_models"):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "migrations")


def ok(*args):
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


def seed(database):
    """An order with an item and a payment: the rows every migration must keep."""
    database.execute_sql("INSERT INTO orders (email) VALUES ('a@example.com')")
    (order,) = database.execute_sql("SELECT id FROM orders").fetchone()
    database.execute_sql('INSERT INTO order_items ("orderId", "productId") VALUES (%s, %s)'
                         .replace("%s", "?" if "sqlite" in type(database).__name__.lower()
                                  else "%s"), (order, "game-1"))
    database.execute_sql(
        'INSERT INTO payments ("orderId", "externalId") VALUES ({0}, {0})'.format(
            "?" if "sqlite" in type(database).__name__.lower() else "%s"), (order, "np-1"))


def counts(database):
    return {table: database.execute_sql(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            for table in ("orders", "order_items", "payments")}


def test_no_model_change_writes_nothing_and_says_so(folder):
    before = sorted(p.name for p in folder.iterdir())
    result = ok("new", "nothing", "--auto", "--migrations", folder)
    assert "no changes" in result.stdout and "nothing written" in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == before
    # ... where peewee-migrate's own generator shrinks orders.status, drops indexes and
    # makes a base_model table: none of that is a change here.
    assert autogenerate.changes(list(MODELS)) == []


def play(db_url, folder, models, *, rows=True, plain_check=True):
    """migrate, seed, new --auto, migrate, check --models, rollback: returns the file."""
    args = ("--database", db_url, "--migrations", folder)
    ok("migrate", "-q", *args)
    with opened(db_url) as database:
        if rows:
            seed(database)
        before, kept = schema.snapshot(database), counts(database)
    drift = run_cli("check", "--models", models, *args)
    assert drift.exit_code == 1 and "no migration makes it" in drift.stdout, drift.output

    written = ok("new", "shop", "--auto", "--models", models, "--migrations", folder)
    path = written.stdout.split()[1]
    assert "TODO" not in written.stderr, written.stderr
    ok("migrate", "-q", *args)
    ok("check", "--models", models, *args)
    if plain_check:  # the shipped models have not changed: check without --models passes
        ok("check", *args)
    with opened(db_url) as database:
        assert counts(database) == kept

    again = ok("new", "again", "--auto", "--models", models, "--migrations", folder)
    assert "nothing written" in again.stdout

    ok("rollback", "-q", *args)
    with opened(db_url) as database:
        assert schema.compare(schema.snapshot(database), before) == []
        assert counts(database) == kept
    ok("migrate", "-q", *args)  # and forward again
    return path


def test_a_field_an_index_and_a_table_apply_and_roll_back(db_url, folder, tmp_path):
    path = play(db_url, folder, module(tmp_path, SHOP))
    text = Path(path).read_text(encoding="utf-8")
    assert "POSTGRES_CONCURRENT_INDEXES" in text and "CONCURRENTLY" in text
    assert 'CREATE TABLE "coupons"' in text
    assert "base_model" not in text and "DROP INDEX" not in text.split("POSTGRES_DOWN")[0]
    with opened(db_url) as database:
        columns = [c["name"] for c in schema.snapshot(database)["tables"]["orders"]["columns"]]
        assert "note" in columns
    assert "note" not in Order._meta.fields  # the user's module left no trace here


def test_type_and_nullability_changes_keep_every_row(db_url, folder, tmp_path):
    path = play(db_url, folder, module(tmp_path, WIDER, "wider"), plain_check=False)
    text = Path(path).read_text(encoding="utf-8")
    assert 'TYPE varchar(400)' in text and "DROP NOT NULL" in text
    assert "('orders', " in text  # SQLite: orders rebuilt, as 004 does
    # Without --models, check compares with bitloot-lite's own models, which differ now.
    plain = run_cli("check", "--database", db_url, "--migrations", folder)
    assert plain.exit_code == 1
    assert "payments.provider: nullable, Payment.provider says NOT NULL" in plain.stdout


def test_what_cannot_be_written_safely_is_a_todo_that_refuses_to_run(db_url, folder,
                                                                      tmp_path):
    args = ("--database", db_url, "--migrations", folder)
    ok("migrate", "-q", *args)
    result = ok("new", "channel", "--auto", "--models", module(tmp_path, UNSAFE, "unsafe"),
                "--migrations", folder)
    assert "TODO: orders.channel is NOT NULL with no SQL default" in result.stderr
    name = result.stdout.split()[1].rsplit("/", 1)[-1][:-3]

    refused = run_cli("migrate", *args)
    assert refused.exit_code == 1
    assert "not finished (TODO)" in refused.stderr
    with opened(db_url) as database:
        assert [s.name for s in migrating.status(database, folder) if not s.applied] == [name]
        assert "channel" not in [c["name"] for c in
                                 schema.snapshot(database)["tables"]["orders"]["columns"]]


def test_new_without_auto_is_an_empty_migration_that_applies_and_rolls_back(db_url, folder):
    args = ("--database", db_url, "--migrations", folder)
    result = ok("new", "by_hand", "--migrations", folder)
    path = result.stdout.split()[1]
    assert path.endswith("/100_by_hand.py")  # a user's series starts at 100
    ok("migrate", "-q", *args)
    ok("check", *args)
    ok("rollback", "-q", *args)


def test_new_refusals_are_one_line(folder, tmp_path):
    cases = [(["new", "Bad-Name", "--migrations", folder], "lower-case"),
             (["new", "x"], "--migrations DIR"),
             (["new", "x", "--auto", "--models", "no_such_module_h11b", "--migrations", folder],
              "cannot import the models module"),
             (["new", "x", "--auto", "--models", module(tmp_path, "raise ValueError('boom')",
                                                        "broken"), "--migrations", folder],
              "ValueError: boom")]
    for args, message in cases:
        result = run_cli(*args)
        assert result.exit_code == 1, result.output
        assert message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_drops_are_written_and_refuse_to_run_until_confirmed(db_url, folder, tmp_path):
    """The module no longer declares what an earlier migration made: new --auto writes the
    drops (index, column, table) with their rollbacks, each a TODO to confirm, since the
    data goes with them."""
    args = ("--database", db_url, "--migrations", folder)
    shop = module(tmp_path, SHOP)
    ok("migrate", "-q", *args)
    ok("new", "shop", "--auto", "--models", shop, "--migrations", folder)
    ok("migrate", "-q", *args)
    with opened(db_url) as database:
        seed(database)
        database.execute_sql("INSERT INTO coupons (code) VALUES ('WELCOME')")
        before, kept = schema.snapshot(database), counts(database)

    result = ok("new", "unshop", "--auto", "--migrations", folder)  # no --models now
    for what in ("drops the table coupons", "drops orders.note"):
        assert what in result.stderr, result.stderr
    path = Path(result.stdout.split()[1])
    assert run_cli("migrate", *args).exit_code == 1  # refused: nothing confirmed yet

    text = path.read_text(encoding="utf-8")
    start = text.index("TODO = [")
    path.write_text(text[:start] + "TODO = []" + text[text.index("]\n", start) + 1:],
                    encoding="utf-8")
    ok("migrate", "-q", *args)
    ok("check", *args)  # bitloot-lite's own models and the schema agree again
    with opened(db_url) as database:
        tables = schema.snapshot(database)["tables"]
        assert "coupons" not in tables
        assert "note" not in [c["name"] for c in tables["orders"]["columns"]]
        assert counts(database) == kept

    ok("rollback", "-q", *args)  # the structure comes back (the dropped data cannot)
    with opened(db_url) as database:
        assert schema.compare(schema.snapshot(database), before) == []
        assert counts(database) == kept
