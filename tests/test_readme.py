"""The README's Python example runs as written, on both backends."""

import re
from pathlib import Path

import bitloot_lite
from bitloot_lite import Key, Order

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
