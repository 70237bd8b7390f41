"""The service layer under real concurrency: separate processes, on SQLite and PostgreSQL.

Each test starts a handful of processes (multiprocessing, 'spawn': each one
imports bitloot_lite afresh and opens its own connection), lines them up on a
barrier, and has them all make the same call at once.
"""

import multiprocessing
import queue

import pytest

import bitloot_lite
from bitloot_lite import Key, Order, OrderStatus, Payment, WebhookLog

PROCESSES = 4
TIMEOUT = 60

pytestmark = pytest.mark.slow


def _worker(url, action, args, barrier, results):
    """Runs in a child process: connect, wait for the others, call, report."""
    try:
        database = bitloot_lite.connect(url)
        barrier.wait(TIMEOUT)
        if action == "reveal":
            outcome = bitloot_lite.reveal_key(*args).viewed_at.isoformat()
        elif action == "webhook":
            outcome = bitloot_lite.record_webhook(*args).attempt_count
        elif action == "payment":
            outcome = str(bitloot_lite.record_payment(*args).id)
        else:  # "add_keys"
            try:
                outcome = bitloot_lite.add_keys(*args)
            except bitloot_lite.TooManyKeys:
                outcome = "too many"
        database.close()
        results.put(("ok", outcome))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def collect(processes, results, count):
    """Start ``processes``, take ``count`` reports from ``results`` (failing the test if
    one is late), then join them (killing any still alive); returns the reports."""
    for process in processes:
        process.start()
    reports = []
    try:
        for _ in range(count):
            reports.append(results.get(timeout=TIMEOUT))
    except queue.Empty:
        pytest.fail(f"a worker did not report within {TIMEOUT}s")
    finally:
        for process in processes:
            process.join(TIMEOUT)
            if process.is_alive():
                process.kill()
    return reports


def run_together(url, action, argument_lists):
    """Start one process per argument list, all calling ``action`` at once; their outcomes."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(argument_lists))
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=(url, action, args, barrier, results))
        for args in argument_lists
    ]
    outcomes = collect(processes, results, len(processes))
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors
    return [detail for _, detail in outcomes]


def test_parallel_reveals_agree_on_one_viewed_at(migrated, db_url):
    item = bitloot_lite.create_order("a@example.com", [("p", 1)]).items[0]
    bitloot_lite.add_keys(item, ["keys/a"])
    key = Key.get()
    seen = run_together(db_url, "reveal", [(str(key.id),)] * PROCESSES)
    assert len(set(seen)) == 1, seen
    assert Key.get_by_id(key.id).viewed_at.isoformat() == seen[0]


def test_parallel_duplicate_webhooks_leave_one_row(migrated, db_url):
    args = ("np-5077125051", "payment", {"payment_status": "finished"}, "sig")
    counts = run_together(db_url, "webhook", [args] * PROCESSES)
    # One row; each delivery saw its own attempt number.
    assert sorted(counts) == list(range(1, PROCESSES + 1))
    (log,) = WebhookLog.select()
    assert log.attempt_count == PROCESSES
    assert log.payload == {"payment_status": "finished"}


def test_parallel_duplicate_payments_leave_one_row(migrated, db_url):
    order = bitloot_lite.create_order("a@example.com", [("p", 1)])
    ids = run_together(db_url, "payment", [(str(order.id), "np-1", "waiting")] * PROCESSES)
    assert len(set(ids)) == 1
    assert [str(p.id) for p in Payment.select()] == ids[:1]


def test_parallel_add_keys_never_exceed_the_quantity(migrated, db_url):
    item = bitloot_lite.create_order("a@example.com", [("p", 2)]).items[0]
    outcomes = run_together(
        db_url, "add_keys", [(str(item.id), [f"keys/{n}"]) for n in range(PROCESSES)])
    assert sorted(outcomes, key=str) == [1, 1] + ["too many"] * (PROCESSES - 2)
    assert Key.select().count() == 2


# --------------------------------------------------------------------------- races, in rounds
# One reservation, one order; one storage reference, one key (migration 006). Each test
# runs ROUNDS races with the same worker processes: in each round every worker makes its
# call at once (a barrier), and exactly one may win.

ROUNDS = 20


def _racer(url, action, calls, barrier, results):
    """Runs in a child process: for each round, wait for the others, call, report."""
    try:
        database = bitloot_lite.connect(url)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((None, "error", f"{type(exc).__name__}: {exc}"))
        return
    for number, args in enumerate(calls):
        try:
            barrier.wait(TIMEOUT)
            if action == "attach":
                bitloot_lite.attach_reservation(*args)
                outcome = ("won", args[0])
            else:  # "add_keys"
                bitloot_lite.add_keys(*args)
                outcome = ("won", args[0])
        except bitloot_lite.ReservationConflict as exc:
            outcome = ("lost", str(exc.other_order_id))
        except bitloot_lite.DuplicateKeys as exc:
            outcome = ("lost", exc.refs)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        results.put((number, *outcome))
    database.close()


def race_rounds(url, action, calls_per_worker):
    """One process per worker; worker i makes calls_per_worker[i][r] in round r, all
    workers at once. Returns {round: [(outcome, detail), ...]}."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(calls_per_worker))
    results = context.Queue()
    processes = [context.Process(target=_racer, args=(url, action, calls, barrier, results))
                 for calls in calls_per_worker]
    rounds = {}
    for number, outcome, detail in collect(processes, results,
                                           len(processes) * len(calls_per_worker[0])):
        rounds.setdefault(number, []).append((outcome, detail))
    errors = [detail for outcomes in rounds.values() for status, detail in outcomes
              if status == "error"]
    assert not errors, errors
    return rounds


def _paid(count):
    orders = [bitloot_lite.create_order(f"{n}@example.com", [("p", 1)]) for n in range(count)]
    Order.update(status=OrderStatus.PAID).where(Order.id.in_([o.id for o in orders])).execute()
    return orders


@pytest.mark.parametrize("workers", [2, 6])
def test_racing_attaches_of_one_reservation_leave_exactly_one_holder(migrated, db_url,
                                                                     workers):
    orders = [_paid(workers) for _ in range(ROUNDS)]  # orders[round][worker]
    calls = [[(str(orders[r][w].id), f"res-{r}") for r in range(ROUNDS)]
             for w in range(workers)]
    rounds = race_rounds(db_url, "attach", calls)
    for r in range(ROUNDS):
        winners = [detail for outcome, detail in rounds[r] if outcome == "won"]
        assert len(winners) == 1, (r, rounds[r])
        # Every loser was told which order holds it: the winner's.
        assert sorted(detail for outcome, detail in rounds[r] if outcome == "lost") == (
            [winners[0]] * (workers - 1)), (r, rounds[r])
        holders = [str(o.id) for o in Order.select().where(
            Order.kinguin_reservation_id == f"res-{r}")]
        assert holders == winners, (r, holders)


@pytest.mark.parametrize("workers", [2, 6])
def test_racing_add_keys_of_one_storage_ref_leave_exactly_one_key(migrated, db_url, workers):
    items = [[o.items[0] for o in _paid(workers)] for _ in range(ROUNDS)]
    calls = [[(str(items[r][w].id), [f"keys/race/{r}"]) for r in range(ROUNDS)]
             for w in range(workers)]
    rounds = race_rounds(db_url, "add_keys", calls)
    for r in range(ROUNDS):
        winners = [detail for outcome, detail in rounds[r] if outcome == "won"]
        assert len(winners) == 1, (r, rounds[r])
        assert [detail for outcome, detail in rounds[r] if outcome == "lost"] == (
            [[f"keys/race/{r}"]] * (workers - 1)), (r, rounds[r])
        holders = [str(k.order_item_id) for k in Key.select().where(
            Key.storage_ref == f"keys/race/{r}")]
        assert holders == winners, (r, holders)
