"""README's "Writing a migration", played as written on both backends.

A user's module adds a field and an index to Order and a new table; `new --auto`
writes the migration; `sql --offline`'s script, run in sqlite3/psql on an empty
database, builds what `migrate` builds; `lint` passes it; `check` and `check
--models` pass after `migrate`; `rollback` restores the previous schema with
every row kept.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import opened, run_cli
from own_migrations import run_script, state

from bitloot_lite import schema

README = Path(__file__).resolve().parents[1] / "README.md"


def section():
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Writing a migration"):].split("\n## ", 1)[0]


def blocks(kind):
    return re.findall(rf"```{kind}\n(.*?)```", section(), re.S)


def seed(database):
    database.execute_sql("INSERT INTO orders (email) VALUES ('buyer@example.com')")


def counts(database):
    return {table: database.execute_sql(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            for table in ("orders", "order_items", "payments", "keys")}


@pytest.fixture
def empty_url(second_db_url):
    return second_db_url


def test_the_walkthrough_runs_as_written(db_url, empty_url, backend, tmp_path, monkeypatch):
    cwd = tmp_path / "project"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (models,) = blocks("python")
    (cwd / "myshop").mkdir()
    (cwd / "myshop" / "models.py").write_text(models, encoding="utf-8")
    (commands,) = blocks("sh")

    env, migrations, seen = {}, [], {}
    for line in commands.splitlines():
        command, _, comment = line.partition("#")
        words = shlex.split(command)
        if not words:
            continue
        if words[0] == "export":
            env.update(word.split("=", 1) for word in words[1:])
            env["DATABASE_URL"] = db_url  # the backend under test
            continue
        expected = int(m.group(1)) if (m := re.search(r"\bexit (\d)", comment)) else 0
        output = None
        if ">" in words:
            at = words.index(">")
            words, output = words[:at], words[at + 1]
        if words[0] != "bitloot-lite":
            subprocess.run(words, check=True, env={**os.environ, **env})
            continue
        result = run_cli(*words[1:], env=env)
        assert result.exit_code == expected, (line, result.output)
        if output:
            Path(output).write_text(result.stdout, encoding="utf-8")
        verb = words[1]
        seen[verb] = seen.get(verb, 0) + 1

        if verb == "migrate" and seen[verb] == 1:  # the shipped ones: rows to keep
            with opened(db_url) as database:
                seed(database)
                before, kept = schema.snapshot(database), counts(database)
        elif verb == "new":
            migrations = sorted((cwd / "myshop" / "migrations").glob("*.py"))
            (written,) = migrations
            assert "TODO = []" in written.read_text(encoding="utf-8")
            assert "TODO" not in result.stderr
        elif verb == "check" and seen[verb] == 2:  # after migrate
            assert run_cli("check", env=env).exit_code == 0  # without --models too
            migrated = state(db_url)
            with opened(db_url) as database:
                assert counts(database) == kept
                orders = migrated[0]["tables"]["orders"]
                assert "note" in [c["name"] for c in orders["columns"]]
                assert "IDX_orders_email_status" in [i["name"] for i in orders["indexes"]]
                assert "coupons" in migrated[0]["tables"]
        elif verb == "rollback":
            with opened(db_url) as database:
                assert schema.compare(schema.snapshot(database), before) == []
                assert counts(database) == kept

    assert seen == {"migrate": 2, "check": 2, "new": 1, "sql": 2, "lint": 1, "rollback": 1}
    # The offline script of every migration, run in the backend's own shell on an empty
    # database, builds what migrate built (PostgreSQL: the README's own file).
    if backend == "postgres":
        script = (cwd / "all-postgres.sql").read_text(encoding="utf-8")
    else:
        result = run_cli("sql", "--offline", "--backend", "sqlite", env=env)
        assert result.exit_code == 0, result.output
        script = result.stdout
    run_script(empty_url, script)
    built = state(empty_url)
    assert schema.compare(built[0], migrated[0]) == []
    assert built[1] == migrated[1]
    assert run_cli("check", "--models", "myshop/models.py",
                   env={**env, "DATABASE_URL": empty_url}).exit_code == 0
