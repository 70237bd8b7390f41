"""The rough edges a newcomer hit (issue 11, point 10), and the README's shell examples.

Read-only commands never create a database; options before the command; option
names in messages; sqlite://relative.db; `make sql > file` is only SQL; the
README's CLI examples run as written, with `bitloot-lite` from the virtualenv.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MIGRATIONS, REPO_ROOT, clean_env, opened, run_cli, sqlite_only

README = REPO_ROOT / "README.md"
BIN = Path(sys.executable).parent  # the virtualenv's bin: bitloot-lite is there


def migrate_to(url, name):
    result = run_cli("migrate", "-q", "--to", name, "--database", url)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command,code", [("status", 2), ("check", 2), ("sql", 1)])
def test_a_read_only_command_never_creates_a_sqlite_file(unrelated_cwd, command, code):
    for url, path in (("sqlite:///typo.db", unrelated_cwd / "typo.db"),
                      (f"sqlite:///{unrelated_cwd}/no/such/dir.db",
                       unrelated_cwd / "no" / "such" / "dir.db")):
        result = run_cli(command, "--database", url)

        assert result.exit_code == code, result.output
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("Error: ") and f"no SQLite database file {path}" in line
        assert list(unrelated_cwd.iterdir()) == []  # nor its -wal, nor a lock file


def test_a_write_command_still_creates_it(unrelated_cwd):
    result = run_cli("migrate", "-q", "--database", "sqlite:///new.db")
    assert result.exit_code == 0, result.output
    assert (unrelated_cwd / "new.db").exists()
    assert run_cli("status", "--database", "sqlite:///new.db").exit_code == 0


@pytest.mark.parametrize("command", ["migrate", "status", "check", "sql", "rollback"])
def test_a_two_slash_sqlite_url_gets_a_clear_message(unrelated_cwd, command):
    result = run_cli(command, "--database", "sqlite://relative.db")
    assert result.exit_code in (1, 2), result.output
    (line,) = result.stderr.splitlines()
    assert "sqlite:///relative.db" in line and "three slashes" in line
    assert list(unrelated_cwd.iterdir()) == []


def test_options_before_the_command_work(db_url, tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    extra = f"{int(MIGRATIONS[-1][:3]) + 1:03d}_nothing"
    (mine / f"{extra}.py").write_text(
        '"""nothing."""\nROLLBACK = "noop"\n\n\ndef migrate(migrator, database, *, fake=False):'
        "\n    pass\n")

    result = run_cli("--database", db_url, "-q", "migrate", "--to", MIGRATIONS[1])
    assert result.exit_code == 0 and result.stdout == "", result.output
    status = run_cli("--database", db_url, "--migrations", mine, "status")
    assert status.exit_code == 1, status.output
    assert [line.split()[:2] for line in status.stdout.splitlines()][-1] == ["pending", extra]
    verbose = run_cli("-v", "--database", db_url, "migrate", "--to", MIGRATIONS[2])
    assert "bitloot_lite" in verbose.stderr  # the logger, on stderr with -v

    # After the command wins over before it; before it wins over the environment.
    other = run_cli("--database", "sqlite:///nowhere.db", "status", "--database", db_url,
                    env={"DATABASE_URL": "sqlite:///also-nowhere.db"})
    assert other.exit_code == 1, other.output
    by_env = run_cli("--database", db_url, "status",
                     env={"DATABASE_URL": "sqlite:///nowhere.db"})
    assert by_env.exit_code == 1, by_env.output


def test_messages_name_the_options_as_typed(db_url):
    result = run_cli("sql", "--to", MIGRATIONS[0], "--rollback", "1", "--database", db_url)
    assert result.exit_code == 2
    assert "Error: --to and --rollback cannot be used together" in result.stderr
    assert "rollback_steps" not in result.output
    both = run_cli("rollback", "--steps", "1", "--to", MIGRATIONS[0], "--database", db_url)
    assert "Error: --steps and --to cannot be used together" in both.stderr


@sqlite_only
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_sql_prints_only_sql(db_url, tmp_path):
    migrate_to(db_url, MIGRATIONS[1])
    out = tmp_path / "next.sql"
    with out.open("w") as handle:
        made = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), "sql"],
                              stdout=handle, stderr=subprocess.PIPE, text=True, timeout=120,
                              env=clean_env(DATABASE_URL=db_url))
    assert made.returncode == 0, made.stderr
    text = out.read_text()
    assert text.startswith("-- bitloot-lite migrations for sqlite: ")  # SQL from line 1
    blocks = [line for line in text.splitlines() if line.startswith("-- migrate ")]
    assert blocks[0] == f"-- migrate {MIGRATIONS[2]}"
    assert ".venv/bin/bitloot-lite" not in text and ".venv" not in text  # no command echoed
    assert all(line.startswith(("--", "PRAGMA", "BEGIN", "COMMIT")) or not line.strip()
               or not line.startswith(("make", "test ", ".venv")) for line in text.splitlines())


# --- the README's shell examples, run as written -----------------------------------------------


def shell_blocks(heading):
    """The ```sh blocks of the README section ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def run_lines(block, cwd, url):
    """Each line of ``block`` in bash, in order, with bitloot-lite on PATH (the virtualenv's,
    as after ``source .venv/bin/activate``); returns [(line, exit code, stdout)]."""
    env = clean_env(DATABASE_URL=url, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    results = []
    for line in block.strip().splitlines():
        done = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)
        expected = re.search(r"# exit (\d)", line)
        assert done.returncode == (int(expected[1]) if expected else 0), (line, done.stderr)
        results.append((line, done.returncode, done.stdout))
    return results


def test_the_cli_examples_run_as_written(db_url, tmp_path):
    examples, baseline = shell_blocks("The CLI")
    run_lines(examples, tmp_path, db_url)
    with opened(db_url) as database:
        history = [row[0] for row in database.execute_sql(
            'SELECT "name" FROM "migratehistory" ORDER BY "id"').fetchall()]
    assert history == MIGRATIONS
    script = (tmp_path / "next-deploy.sql").read_text()
    assert script.startswith("-- bitloot-lite migrations for ") and "\n-- migrate " in script
    assert (tmp_path / "other.db").exists()


def test_the_baseline_example_runs_as_written(db_url, tmp_path):
    """On what it is for: the tables of 001-004 made outside bitloot-lite, no history."""
    migrate_to(db_url, "004_orders_status_enum")
    with opened(db_url) as database:
        database.execute_sql('DROP TABLE "migratehistory"')
    _examples, baseline = shell_blocks("The CLI")
    ((_line, _code, out),) = run_lines(baseline, tmp_path, db_url)
    assert "4 migration(s) recorded as applied" in out
    assert out.strip().splitlines()[-1].startswith(f"{len(MIGRATIONS) - 4} migration(s) applied")


def test_the_virtualenv_has_the_command_the_readme_names():
    assert (BIN / "bitloot-lite").is_file() or shutil.which("bitloot-lite")
    assert ".venv/bin/bitloot-lite" in README.read_text(encoding="utf-8")
