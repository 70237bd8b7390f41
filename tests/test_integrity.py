"""One reservation, one order; one storage reference, one key (migration 006), on both backends.

The races themselves, with real processes, are in test_services_concurrency.py; here: the
database refusing what the service's guards cannot see (another connection's uncommitted
write, a writer that is not bitloot-lite), the errors that name the other row, the
migration refusing a database that already holds duplicates, and the unfinished
concurrent builds that status, check and migrate must see.
"""

import threading
import time

import peewee as pw
import pytest
from conftest import MIGRATIONS, fetch, opened, postgres_only, run_cli

import bitloot_lite as bl
from bitloot_lite import Key, Order, OrderStatus
from bitloot_lite.db import is_postgres
from bitloot_lite.schema import snapshot

NEWEST = MIGRATIONS[-1]
BEFORE = MIGRATIONS[-2]
UNIQUE_INDEXES = ("UQ_orders_kinguinReservationId", "UQ_keys_storageRef")


def paid_order(quantity=1):
    order = bl.create_order("a@example.com", [("p", quantity)])
    for status in ("waiting", "paid"):
        bl.set_status(order, status)
    return order


def _set_later(url, sql, params, delay=0.5):
    """Run ``sql`` in a transaction on a connection of its own and commit it after ``delay``
    seconds, in a thread: a writer that is not bitloot-lite, whose write is uncommitted
    while the test's call runs. Returns the thread (join it)."""
    started = threading.Event()

    def writer():
        with opened(url) as other, other.atomic():
            other.execute_sql(sql, params)
            started.set()
            time.sleep(delay)

    thread = threading.Thread(target=writer)
    thread.start()
    assert started.wait(10)
    return thread


def _placeholder(database):
    return "%s" if is_postgres(database) else "?"


def test_an_uncommitted_reservation_elsewhere_is_seen_by_the_index(migrated, db_url):
    first, second = paid_order(), paid_order()
    mark = _placeholder(migrated)
    writer = _set_later(db_url, f'UPDATE "orders" SET "kinguinReservationId" = {mark} '
                                f'WHERE "id" = {mark}', ("res-race", str(first.id)))
    try:
        # PostgreSQL: the NOT EXISTS guard cannot see the other write; the unique index
        # waits for it to commit and then refuses. SQLite: the write waits for the lock.
        with pytest.raises(bl.ReservationConflict) as error:
            bl.attach_reservation(second, "res-race")
    finally:
        writer.join()
    assert error.value.other_order_id == first.id and error.value.order_id == second.id
    assert error.value.__cause__ is None and error.value.__context__ is None
    assert [o.id for o in Order.select().where(Order.kinguin_reservation_id == "res-race")] == [
        first.id]


def test_a_conflict_inside_the_callers_transaction_leaves_it_usable(migrated, db_url):
    first, second = paid_order(), paid_order()
    mark = _placeholder(migrated)
    sql = f'UPDATE "orders" SET "kinguinReservationId" = {mark} WHERE "id" = {mark}'
    if not is_postgres(migrated):  # SQLite: a writer waits for our transaction; commit first
        _set_later(db_url, sql, ("res-tx", str(first.id)), 0).join()
    with migrated.atomic():
        before = bl.create_order("kept@example.com", [("p", 1)])
        if is_postgres(migrated):  # uncommitted while we attach: only the index sees it
            writer = _set_later(db_url, sql, ("res-tx", str(first.id)), 0.3)
        else:
            writer = threading.Thread(target=lambda: None)
            writer.start()
        try:
            with pytest.raises(bl.ReservationConflict) as error:
                bl.attach_reservation(second, "res-tx")
        finally:
            writer.join()
        after = bl.create_order("kept-too@example.com", [("p", 1)])
    assert error.value.other_order_id == first.id
    assert {o.id for o in Order.select().where(Order.email.startswith("kept"))} == {
        before.id, after.id}
    assert Order.get_by_id(second.id).kinguin_reservation_id is None


def test_the_database_refuses_a_second_holder_whoever_writes(migrated):
    first, second = paid_order(), paid_order()
    bl.attach_reservation(first, "res-1")
    with pytest.raises(pw.IntegrityError):  # e.g. the original application, or a script
        Order.update(kinguin_reservation_id="res-1").where(Order.id == second.id).execute()
    # Orders without a reservation: as many as there are.
    Order.update(kinguin_reservation_id=None).where(Order.id != first.id).execute()
    assert Order.select().where(Order.kinguin_reservation_id.is_null()).count() == 1


def test_add_keys_refuses_references_other_keys_hold_and_names_them(migrated):
    first, second = paid_order(3).items[0], paid_order(3).items[0]
    bl.add_keys(first, ["keys/a", "keys/b"])
    with pytest.raises(bl.DuplicateKeys) as error:
        bl.add_keys(second, ["keys/new", "keys/b", "keys/a"])
    assert error.value.refs == ["keys/b", "keys/a"] and error.value.order_item_id == second.id
    assert "'keys/b', 'keys/a'" in str(error.value)
    assert isinstance(error.value, bl.ConflictError)
    assert error.value.__cause__ is None and error.value.__context__ is None
    assert Key.select().where(Key.order_item == second.id).count() == 0  # nothing written
    assert bl.add_keys(second, ["keys/new"]) == 1


def test_add_keys_refuses_a_reference_listed_twice_and_names_each(migrated):
    item = paid_order(5).items[0]
    with pytest.raises(bl.ValidationError) as error:
        bl.add_keys(item, ["k/1", "k/2", "k/1", "k/3", "k/2"])
    assert error.value.field == "storage_refs" and error.value.value == ["k/1", "k/2"]
    assert "'k/1', 'k/2'" in str(error.value)
    assert Key.select().count() == 0


def test_a_duplicate_in_a_later_batch_undoes_the_earlier_ones(migrated):
    refs = [f"keys/bulk/{i:05d}" for i in range(bl.statements.KEY_BATCH + 10)]
    taken = paid_order().items[0]
    bl.add_keys(taken, [refs[-1]])
    item = paid_order(len(refs)).items[0]
    with pytest.raises(bl.DuplicateKeys) as error:
        bl.add_keys(item, refs)
    assert error.value.refs == [refs[-1]]
    assert Key.select().where(Key.order_item == item.id).count() == 0


def test_a_duplicate_inside_the_callers_transaction_leaves_it_usable(migrated):
    first, second = paid_order(2).items[0], paid_order(2).items[0]
    bl.add_keys(first, ["keys/x"])
    with migrated.atomic():
        with pytest.raises(bl.DuplicateKeys):
            bl.add_keys(second, ["keys/x"])
        bl.add_keys(second, ["keys/y"])
    assert [k.storage_ref for k in bl.keys_for_order(second.order_id)] == ["keys/y"]


# --------------------------------------------------------------------------- the migration


def _duplicates_at_the_previous_step(url):
    """A database at the step before 006 whose rows 006 must refuse; their ids."""
    database = bl.connect(url)
    bl.migrate(database, to=BEFORE)
    orders = [bl.create_order(f"{n}@example.com", [("p", 2)]) for n in range(4)]
    Order.update(status=OrderStatus.PAID).execute()
    for order in orders[:3]:  # the pre-006 schema lets three orders hold one reservation
        Order.update(kinguin_reservation_id="res-dup").where(Order.id == order.id).execute()
    Key.insert_many([{"order_item": orders[0].items[0].id, "storage_ref": "keys/dup"},
                     {"order_item": orders[1].items[0].id, "storage_ref": "keys/dup"},
                     {"order_item": orders[2].items[0].id, "storage_ref": None},
                     {"order_item": orders[3].items[0].id, "storage_ref": None}]).execute()
    return database, orders


def test_006_refuses_a_database_with_duplicates_and_changes_nothing(db_url):
    database, orders = _duplicates_at_the_previous_step(db_url)
    before = snapshot(database)
    rows = fetch(database, 'SELECT * FROM "orders" ORDER BY "id"')
    result = run_cli("migrate", "--database", db_url)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"Error: migrate of {NEWEST} failed and was undone")
    dup_orders = ", ".join(str(o.id) for o in sorted(orders[:3], key=lambda o: o.created_at))
    assert f"  - reservation 'res-dup' is held by 3 orders: {dup_orders}" in lines
    key_line = next(line for line in lines if "storage reference 'keys/dup'" in line)
    assert "is held by 2 keys: " in key_line
    assert snapshot(database) == before
    assert fetch(database, 'SELECT * FROM "orders" ORDER BY "id"') == rows
    assert [s.name for s in bl.status(database) if s.applied] == MIGRATIONS[:-1]
    # Resolved by hand (a person chose which order keeps it), the migration applies.
    Order.update(kinguin_reservation_id=None).where(Order.id != orders[0].id).execute()
    Key.update(storage_ref="keys/dup-2").where(
        Key.order_item == orders[1].items[0].id).execute()
    assert bl.migrate(database) == [NEWEST]
    assert {i["name"] for t in ("orders", "keys") for i in snapshot(database)["tables"][t][
        "indexes"]} >= set(UNIQUE_INDEXES)
    assert Key.select().count() == 4 and Order.select().count() == 4  # two NULL refs: fine
    database.close()


def test_006_rolls_back_and_forward_keeping_every_row(migrated):
    order = paid_order(2)
    bl.attach_reservation(order, "res-kept")
    bl.add_keys(order.items[0], ["keys/kept", "keys/kept-2"])
    rows = {t: fetch(migrated, f'SELECT * FROM "{t}" ORDER BY "id"') for t in ("orders", "keys")}
    assert bl.rollback(migrated) == [NEWEST]
    names = {i["name"] for t in ("orders", "keys")
             for i in snapshot(migrated)["tables"][t]["indexes"]}
    assert not names & set(UNIQUE_INDEXES)
    assert bl.migrate(migrated) == [NEWEST]
    assert {t: fetch(migrated, f'SELECT * FROM "{t}" ORDER BY "id"') for t in rows} == rows


@postgres_only
def test_a_duplicate_written_during_the_concurrent_build_is_reported_and_left_out(
        backend, db_url):
    """Between 006's commit and its CREATE INDEX CONCURRENTLY, a writer adds a duplicate:
    the build fails, drops the INVALID index it left (which would go on refusing writes),
    and names the rows; status shows the work unfinished; once resolved, migrate builds."""
    database = bl.connect(db_url)
    bl.migrate(database, to=BEFORE)
    first, second = paid_order(), paid_order()

    def on_step(step):
        if step.name == NEWEST and step.direction == "migrate":
            with opened(db_url) as other:
                other.execute_sql('UPDATE "orders" SET "kinguinReservationId" = %s '
                                  'WHERE "id" IN (%s, %s)', ("res-late", str(first.id),
                                                             str(second.id)))

    with pytest.raises(bl.MigrationFailed) as error:
        bl.migrate(database, on_step=on_step)
    assert "UQ_orders_kinguinReservationId cannot be built" in str(error.value)
    assert "reservation 'res-late' is held by 2 orders" in str(error.value)
    assert fetch(database, "SELECT count(*) FROM pg_class WHERE relname = %s",
                 ("UQ_orders_kinguinReservationId",)) == [(0,)]
    state = {s.name: s for s in bl.status(database)}[NEWEST]
    assert state.applied and state.unbuilt == ("UQ_orders_kinguinReservationId",)
    status = run_cli("status", "--database", db_url)
    assert status.exit_code == 1 and "UQ_orders_kinguinReservationId missing or INVALID" in (
        status.output)
    Order.update(kinguin_reservation_id=None).where(Order.id == second.id).execute()
    assert bl.migrate(database) == []  # nothing left to apply; the build is finished
    assert run_cli("status", "--database", db_url).exit_code == 0
    assert run_cli("check", "--database", db_url).exit_code == 0
    database.close()


@postgres_only
def test_an_invalid_index_is_unfinished_work_for_status_check_and_migrate(backend, migrated,
                                                                         db_url):
    """An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index: status must not
    exit 0, check must not say the schema matches, and migrate builds it again."""
    first, second = paid_order(), paid_order()
    migrated.execute_sql('DROP INDEX "UQ_orders_kinguinReservationId"')
    Order.update(kinguin_reservation_id="res-x").where(Order.id.in_([first.id, second.id])
                                                       ).execute()
    with pytest.raises(pw.IntegrityError):  # leaves the index behind, INVALID
        migrated.execute_sql('CREATE UNIQUE INDEX CONCURRENTLY "UQ_orders_kinguinReservationId" '
                             'ON "orders" ("kinguinReservationId")')
    Order.update(kinguin_reservation_id=None).where(Order.id == second.id).execute()
    assert fetch(migrated, "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON "
                           "c.oid = i.indexrelid WHERE c.relname = %s",
                 ("UQ_orders_kinguinReservationId",)) == [(False,)]

    status = run_cli("status", "--database", db_url)
    assert status.exit_code == 1
    assert f"applied  {NEWEST}" in status.output and "INVALID" in status.output
    as_json = run_cli("status", "--json", "--database", db_url)
    assert '"unbuilt_indexes": [\n        "UQ_orders_kinguinReservationId"' in as_json.output
    check = run_cli("check", "--database", db_url)
    assert check.exit_code == 1
    assert ("index UQ_orders_kinguinReservationId on orders: INVALID (an interrupted "
            "concurrent build; `bitloot-lite migrate` builds it again)") in check.output

    migrate = run_cli("migrate", "--database", db_url)
    assert migrate.exit_code == 0, migrate.output
    assert f"built index {NEWEST}: UQ_orders_kinguinReservationId" in migrate.output
    assert run_cli("status", "--database", db_url).exit_code == 0
    assert run_cli("check", "--database", db_url).exit_code == 0
