"""The README's Python example runs as written, on both backends."""

import re
from pathlib import Path

import bitloot_lite
from bitloot_lite import Key, Order, OrderStatus, Payment, PaymentStatus, WebhookLog

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_script_example_runs(db_url, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_url)
    (example,) = python_blocks()[:1]
    exec(compile(example, str(README), "exec"), {})
    db = bitloot_lite.connect(db_url)
    try:
        order = Order.get(Order.email == "buyer@example.com")
        assert [k.storage_ref for k in order.keys] == ["keys/2026/11/abc.enc"]
        assert Key.select().count() == 1
        assert "keys/2026/11/abc.enc" in capsys.readouterr().out
    finally:
        db.close()


def test_the_service_api_example_runs(db_url, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_url)
    (example,) = [block for block in python_blocks() if "create_order(" in block]
    exec(compile(example, str(README), "exec"), {})
    out = capsys.readouterr().out
    db = bitloot_lite.connect(db_url)
    try:
        order = bitloot_lite.find_order_by_reservation("kinguin-res-8f3a")
        assert order.status is OrderStatus.FULFILLED
        keys = bitloot_lite.keys_for_order(order)
        assert [k.storage_ref for k in keys] == [
            "keys/2026/11/a1.enc", "keys/2026/11/a2.enc", "keys/2026/11/b1.enc"]
        assert all(k.viewed_at is not None for k in keys)
        (log,) = WebhookLog.select()
        assert log.attempt_count == 2 and log.order_id == order.id
        (payment,) = Payment.select()
        assert payment.status is PaymentStatus.FINISHED and payment.confirmations == 3
        assert str(payment.price_amount) == "59.97000000"
        for line in ("deliveries: 2", "not yet: 1 key(s) missing", "keys/2026/11/b1.enc",
                     "unviewed for a week: 0", "email is not an email address"):
            assert line in out, line
    finally:
        db.close()
