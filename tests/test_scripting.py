"""For scripts: --json on migrate, rollback, status and check; short names; descriptions."""

import json

import pytest
from conftest import MIGRATIONS, opened, run_cli


def ok(*args):
    result = run_cli(*args)
    assert result.exit_code == 0, f"{args} exited {result.exit_code}:\n{result.output}"
    return result


def test_migrate_and_rollback_json(db_url):
    first = json.loads(ok("migrate", "--json", "--to", MIGRATIONS[1][:3],
                          "--database", db_url).stdout)
    assert first["applied"] == MIGRATIONS[:2]
    assert [step["name"] for step in first["steps"]] == MIGRATIONS[:2]
    assert all(step["action"] == "migrate" and step["seconds"] >= 0 for step in first["steps"])
    assert "***" in first["database"] or "://" in first["database"]

    rest = json.loads(ok("migrate", "--json", "--database", db_url).stdout)
    assert rest["applied"] == MIGRATIONS[2:]
    actions = {step["action"] for step in rest["steps"]}
    assert actions <= {"migrate", "index"}

    again = json.loads(ok("migrate", "--json", "--database", db_url).stdout)
    assert again["applied"] == [] and again["steps"] == []

    undone = json.loads(ok("rollback", "--json", "--to", "2", "--database", db_url).stdout)
    assert undone["rolled_back"] == MIGRATIONS[2:][::-1]
    assert [step["action"] for step in undone["steps"]] == ["rollback"] * len(undone["rolled_back"])


def test_status_json_has_each_description(db_url):
    ok("migrate", "-q", "--to", "001", "--database", db_url)
    result = run_cli("status", "--json", "--database", db_url)
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    first, second = document["migrations"][:2]
    assert first["name"] == MIGRATIONS[0] and first["applied"] and first["applied_at"]
    assert first["description"] == "the orders and order_items tables."
    assert second["description"] == "the payments table and its status enum."
    assert not second["applied"] and second["applied_at"] is None
    assert not any(entry["file_missing"] for entry in document["migrations"])


def test_check_json(db_url):
    ok("migrate", "-q", "--database", db_url)
    matches = run_cli("check", "--json", "--database", db_url)
    assert matches.exit_code == 0, matches.output
    document = json.loads(matches.stdout)
    assert document["matches"] is True and document["differences"] == []

    ok("rollback", "-q", "--database", db_url)
    drift = run_cli("check", "--json", "--database", db_url)
    assert drift.exit_code == 1
    document = json.loads(drift.stdout)
    assert document["matches"] is False and document["differences"]
    assert any(MIGRATIONS[-1] in line for line in document["differences"])


@pytest.mark.parametrize("command", [["migrate", "--to"], ["rollback", "--to"],
                                     ["baseline", "--to"], ["sql", "--to"]])
def test_an_unknown_short_name_is_a_clean_error(db_url, command):
    with opened(db_url):  # made: sql does not make a SQLite file
        pass
    result = run_cli(*command, "999", "--database", db_url)
    assert result.exit_code == 1, result.output
    assert "unknown migration '999'" in result.stderr


def test_short_names_in_the_cli(db_url):
    assert "applied 003_" in ok("migrate", "--to", "3", "--database", db_url).stdout
    undone = ok("rollback", "--to", "001", "--database", db_url).stdout.splitlines()
    assert [line.split()[2] for line in undone if line.startswith("rolled back ")] == [
        MIGRATIONS[2], MIGRATIONS[1]]
    sql = ok("sql", "--to", "002", "--database", db_url).stdout
    assert f"-- migrate {MIGRATIONS[1]}" in sql and MIGRATIONS[2] not in sql
