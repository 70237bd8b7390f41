"""sql as a reviewable, runnable script: values inlined, history rows included, the
transactions migrate uses; --offline needs no database, --from/--to any range.

Each script is run the way a reviewer would run it, in ``sqlite3`` or ``psql``,
on an empty database, and the result is compared with a migrated one.
"""

import json
import re

import pytest
from conftest import MIGRATIONS, run_cli
from own_migrations import NOTE_MIGRATION, make_folder, next_name, run_script, state, write

from bitloot_lite import schema
from bitloot_lite.runner import HISTORY_TABLE

pytestmark = pytest.mark.usefixtures("unrelated_cwd")


@pytest.fixture
def other_url(second_db_url):
    """A second empty database on the same backend."""
    return second_db_url


def ok(*args):
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


def test_offline_script_run_in_the_shell_builds_what_migrate_builds(db_url, other_url,
                                                                    backend, tmp_path):
    folder = make_folder(tmp_path / "migrations")
    note = write(folder, next_name("orders_note"), NOTE_MIGRATION)
    # No database is opened: the URL's server does not even exist.
    script = ok("sql", "--offline", "--backend", backend, "--migrations", folder,
                "--database", "postgresql://nobody:secret@127.0.0.1:1/none").stdout
    assert "?" not in script.replace("'?'", "") and "-- params" not in script
    assert script.count("BEGIN;") == script.count("COMMIT;") == len(MIGRATIONS) + 1
    assert script.count(f'INSERT INTO "{HISTORY_TABLE}"') == len(MIGRATIONS) + 1

    run_script(db_url, script)
    ok("migrate", "-q", "--database", other_url, "--migrations", folder)

    (built, names), (migrated, migrated_names) = state(db_url), state(other_url)
    assert schema.compare(built, migrated) == []
    assert names == migrated_names == [*MIGRATIONS, note]
    # What the script recorded is what migrate records: nothing pending, nothing edited.
    ok("check", "--database", db_url, "--migrations", folder)
    assert run_cli("status", "--database", db_url, "--migrations", folder).exit_code == 0


def test_live_sql_of_the_pending_ones_runs_in_the_shell(db_url, other_url):
    for url in (db_url, other_url):
        ok("migrate", "-q", "--to", MIGRATIONS[1], "--database", url)
    script = ok("sql", "--database", db_url).stdout
    assert "-- params" not in script and not re.search(r"VALUES \(\?", script)

    run_script(db_url, script)
    ok("migrate", "-q", "--database", other_url)

    assert schema.compare(state(db_url)[0], state(other_url)[0]) == []
    assert state(db_url)[1] == state(other_url)[1] == MIGRATIONS
    ok("check", "--database", db_url)


def test_offline_rollback_script_undoes_the_newest(db_url, other_url, backend):
    run_script(db_url, ok("sql", "--offline", "--backend", backend).stdout)
    back = ok("sql", "--offline", "--backend", backend, "--rollback", 2).stdout
    assert [m for m in re.findall(r"^-- rollback (\S+)$", back, re.M)] == MIGRATIONS[:-3:-1]

    run_script(db_url, back)
    ok("migrate", "-q", "--to", MIGRATIONS[-3], "--database", other_url)

    assert schema.compare(state(db_url)[0], state(other_url)[0]) == []
    assert state(db_url)[1] == MIGRATIONS[:-2]


def test_from_to_shows_applied_migrations_and_leaves_the_database_alone(migrated, db_url):
    before = state(db_url)
    out = ok("sql", "--from", MIGRATIONS[2], "--to", MIGRATIONS[3], "--database", db_url).stdout
    assert re.findall(r"^-- migrate (\S+)$", out, re.M) == MIGRATIONS[2:4]
    assert 'CREATE TABLE "webhook_logs"' in out
    assert state(db_url) == before
    # ... while plain sql says nothing is pending.
    assert ok("sql", "--database", db_url).stdout.startswith("-- nothing to migrate")


def test_sql_json_is_the_statement_list(db_url, backend):
    out = ok("sql", "--offline", "--backend", backend, "--json", "--to", MIGRATIONS[0]).stdout
    data = json.loads(out)
    assert data["backend"] == backend
    (first,) = data["migrations"]
    assert first["name"] == MIGRATIONS[0] and first["transaction"] is True
    assert any(s.startswith('CREATE TABLE "orders"') for s in first["statements"])
    assert any(s.startswith(f'INSERT INTO "{HISTORY_TABLE}"') and MIGRATIONS[0] in s
               for s in first["statements"])


def test_offline_errors_are_one_line(tmp_path):
    for args, message in ((["--to", "999_nope"], "unknown migration"),
                          (["--rollback", "99"], "cannot roll back 99"),
                          (["--from", "001_init_orders", "--rollback", "1"], "cannot be used")):
        result = run_cli("sql", "--offline", "--backend", "sqlite", *args)
        assert result.exit_code in (1, 2), result.output
        assert message in result.stderr, result.stderr


def test_the_library_side_needs_no_database():
    from bitloot_lite import offline

    blocks = offline.blocks("postgres", end=MIGRATIONS[-1])
    names = [b.name for b in blocks if b.direction == "migrate"]
    assert names == MIGRATIONS
