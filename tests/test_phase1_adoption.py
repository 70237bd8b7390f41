"""Adopting a real Phase-1 database of the original application (issue 11, point 9).

Upstream's Phase-1 InitOrders1710000000000 (commit 0be20d1) made order_items
without quantity; upstream added it later (AddOrderItemPriceQuantity1736450000000,
integer NOT NULL DEFAULT 1). Such a database is built here by hand, as upstream's
migrations made it, with TypeORM's ``migrations`` table and rows; ``migrate``
must recognise it, record the matching migrations, add the column for the existing
rows, apply the rest and keep every row. And every refusal lists all its reasons.
"""

import pytest
from conftest import MIGRATIONS, fetch, run_cli
from test_adopting import TYPEORM_POSTGRES, UPSTREAM, _build_sqlite, write_typeorm_history

import bitloot_lite
from bitloot_lite import adopting
from bitloot_lite.errors import AdoptionError
from bitloot_lite.schema import compare, snapshot
from bitloot_lite.target import expected, expected_phase1

QUANTITY = '"quantity" integer NOT NULL DEFAULT 1, '

ORDER_1 = "aaaaaaaa-1111-4111-8111-111111111111"
ORDER_2 = "aaaaaaaa-2222-4222-8222-222222222222"
ITEMS = ["bbbbbbbb-1111-4111-8111-111111111111", "bbbbbbbb-2222-4222-8222-222222222222",
         "bbbbbbbb-3333-4333-8333-333333333333"]

#: Rows as the Phase-1 application wrote them: no quantity anywhere.
PHASE1_ROWS = [
    f"""INSERT INTO "orders" ("id", "email", "status", "total")
        VALUES ('{ORDER_1}', 'first@example.com', 'paid', 19.99)""",
    f"""INSERT INTO "orders" ("id", "email") VALUES ('{ORDER_2}', 'second@example.com')""",
    *(f"""INSERT INTO "order_items" ("id", "orderId", "productId", "signedUrl")
          VALUES ('{item}', '{order}', 'kinguin-{n}', {url})"""
      for n, (item, order, url) in enumerate(
          [(ITEMS[0], ORDER_1, "'https://example.com/a'"), (ITEMS[1], ORDER_1, "NULL"),
           (ITEMS[2], ORDER_2, "NULL")])),
    f"""INSERT INTO "payments" ("orderId", "externalId", "status", "priceAmount")
        VALUES ('{ORDER_1}', 'np-42', 'finished', 19.99)""",
    """INSERT INTO "webhook_logs" ("externalId", "webhookType", "payload", "processed")
        VALUES ('np-42', 'payment', '{"payment_status": "finished"}', true)""",
]


def build_phase1(db, backend, step=4):
    """A database as upstream's Phase-1 migrations left it after ``step`` of them: the
    tables without order_items.quantity, rows in each, TypeORM's history of ``step`` names."""
    if backend == "postgres":  # TypeORM's own SQL, InitOrders as it was at Phase 1
        with db.atomic():
            for number in range(1, step + 1):
                for statement in TYPEORM_POSTGRES[number]:
                    phase1 = " ".join(statement.split()).replace(QUANTITY, "")
                    assert (phase1 != " ".join(statement.split())) == (
                        'CREATE TABLE "order_items"' in statement)
                    db.execute_sql(phase1)
    else:  # TypeORM on SQLite: the same shape, built from the SQLite statements
        _build_sqlite(db, step)
        db.execute_sql('ALTER TABLE "order_items" DROP COLUMN "quantity"')
    with db.atomic():
        for statement in PHASE1_ROWS:
            db.execute_sql(statement.replace("true)", "1)") if backend == "sqlite" else statement)
        write_typeorm_history(db, backend, UPSTREAM[:step])
    assert "quantity" not in [c.name for c in db.get_columns("order_items")]
    return db


def rows(db, table, columns):
    quoted = ", ".join(f'"{column}"' for column in columns)
    return fetch(db, f'SELECT {quoted} FROM "{table}" ORDER BY "id"')


ITEM_COLUMNS = ["id", "orderId", "productId", "signedUrl", "createdAt", "updatedAt"]
ORDER_COLUMNS = ["id", "email", "status", "total", "createdAt", "updatedAt"]


def kept(db):
    return {"orders": rows(db, "orders", ORDER_COLUMNS),
            "order_items": rows(db, "order_items", ITEM_COLUMNS),
            "payments": rows(db, "payments", ["id", "orderId", "externalId", "status"]),
            "webhook_logs": rows(db, "webhook_logs", ["id", "externalId", "payload"])}


@pytest.mark.parametrize("step", [4, 5])
def test_a_phase1_database_is_recognised_as_such(database, backend, step):
    build_phase1(database, backend, step)
    assert compare(snapshot(database), expected_phase1(backend, step), []) == []
    assert "column order_items.quantity missing" in adopting.shape_differences(database, step)
    assert adopting.is_phase1(database, step)
    ours = list(zip(MIGRATIONS, UPSTREAM, strict=False))
    assert adopting.adoption_plan(database, ours) == MIGRATIONS[:step]
    (fixup,) = adopting.adoption_fixups(database, step)
    assert fixup.name == "order_items.quantity" and "NOT NULL DEFAULT 1" in fixup.sql


def test_migrate_adopts_it_adds_quantity_and_applies_the_rest_keeping_every_row(
    database, backend, db_url
):
    build_phase1(database, backend, 4)
    before = kept(database)

    result = run_cli("migrate", "--database", db_url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [f"adopted {name} (recorded as applied, not run)"
                         for name in MIGRATIONS[:4]]
    assert lines[4].startswith("added column order_items.quantity (integer NOT NULL DEFAULT 1")
    assert [line.split()[1] for line in lines[5:] if line.startswith("applied ")] == MIGRATIONS[4:]
    database.close()
    database.connect()
    assert kept(database) == before  # every row, every value
    assert [(str(item), quantity) for item, quantity in
            rows(database, "order_items", ["id", "quantity"])] == [(item, 1) for item in ITEMS]
    assert adopting.recorded_history(database) == MIGRATIONS
    assert adopting.typeorm_history(database) == UPSTREAM[:4]
    notes = []
    assert compare(snapshot(database), expected(backend), notes) == []
    assert any("quantity added after the other columns" in note for note in notes)
    checked = run_cli("check", "--database", db_url)
    assert checked.exit_code == 0, checked.output
    status = run_cli("status", "--database", db_url)
    assert status.exit_code == 0, status.output
    assert run_cli("migrate", "--database", db_url).stdout.startswith("nothing to migrate")


def test_the_new_column_works_for_new_rows_and_the_models(database, backend):
    build_phase1(database, backend, 4)
    bitloot_lite.migrate(database)
    order = bitloot_lite.create_order("new@example.com", [("kinguin-9", 3)], total="5")
    assert [item.quantity for item in order.items] == [3]
    assert bitloot_lite.OrderItem.get_by_id(ITEMS[0]).quantity == 1


def test_a_five_step_phase1_database_is_adopted_and_only_the_later_ones_applied(
    database, backend
):
    build_phase1(database, backend, 5)
    steps = []
    assert bitloot_lite.migrate(database, on_step=steps.append) == MIGRATIONS[5:]
    assert [(s.name, s.direction) for s in steps if s.direction == "adopt"] == [
        (name, "adopt") for name in MIGRATIONS[:5]]
    assert [s.direction for s in steps if s.direction not in ("adopt", "migrate", "index")
            ] == ["fixup"]
    assert compare(snapshot(database), expected(backend), []) == []
    assert rows(database, "order_items", ["quantity"]) == [(1,)] * 3


def test_a_phase1_database_that_also_drifts_is_refused_listing_every_difference(
    database, backend, db_url
):
    build_phase1(database, backend, 4)
    database.execute_sql('DROP INDEX "IDX_payments_status"')
    database.execute_sql('ALTER TABLE "webhook_logs" DROP COLUMN "sourceIp"')
    before = snapshot(database), kept(database)

    with pytest.raises(AdoptionError) as caught:
        bitloot_lite.migrate(database)
    differences = caught.value.differences
    assert {"column order_items.quantity missing", "index IDX_payments_status missing on payments",
            "column webhook_logs.sourceIp missing"} <= set(differences)

    result = run_cli("migrate", "--database", db_url)

    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: TypeORM's history says 004_orders_status_enum")
    assert not lines[0].rstrip().endswith(":") or len(lines) > 1
    assert lines[1:] == [f"  - {line}" for line in differences]  # all of them, without -v
    assert (snapshot(database), kept(database)) == before
    assert "quantity" not in [c.name for c in database.get_columns("order_items")]
    assert adopting.recorded_history(database) == []


def test_a_baseline_refusal_lists_every_difference(database, backend, db_url):
    build_phase1(database, backend, 4)
    database.execute_sql('DROP TABLE "migrations"')

    result = run_cli("baseline", "--to", "004", "--database", db_url)

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: the tables are not in the shape")
    assert "  - column order_items.quantity missing" in lines[1:]
    assert adopting.recorded_history(database) == []
