"""The service layer under real concurrency: separate processes, on SQLite and PostgreSQL.

Each test starts a handful of processes (multiprocessing, 'spawn': each one
imports bitloot_lite afresh and opens its own connection), lines them up on a
barrier, and has them all make the same call at once.
"""

import multiprocessing
import queue

import pytest

import bitloot_lite
from bitloot_lite import Key, Payment, WebhookLog

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


def run_together(url, action, argument_lists):
    """Start one process per argument list, all calling ``action`` at once; their outcomes."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(argument_lists))
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=(url, action, args, barrier, results))
        for args in argument_lists
    ]
    for process in processes:
        process.start()
    outcomes = []
    try:
        for _ in processes:
            outcomes.append(results.get(timeout=TIMEOUT))
    except queue.Empty:
        pytest.fail(f"a worker did not report within {TIMEOUT}s")
    finally:
        for process in processes:
            process.join(TIMEOUT)
            if process.is_alive():
                process.kill()
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
