"""The edges of ``new`` and of a missing migrations folder (issue 16): one-line refusals
that name what is wrong, nothing created."""

from conftest import MIGRATIONS_DIR, run_cli


def one_line_error(result):
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.splitlines()
    return line


def test_a_name_too_long_for_a_file_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()

    line = one_line_error(run_cli("new", "a" * 300, "--migrations", folder))

    assert line == "Error: invalid name: is 300 characters long; at most 60 make a file name"
    assert list(folder.iterdir()) == []
    result = run_cli("new", "b" * 60, "--migrations", folder)
    assert result.exit_code == 0 and (folder / f"100_{'b' * 60}.py").is_file()


def test_new_refuses_a_folder_that_does_not_exist_and_creates_none(tmp_path, unrelated_cwd):
    for missing in ("nosuchdir", tmp_path / "no" / "such"):
        line = one_line_error(run_cli("new", "backfill", "--migrations", missing))
        assert line.startswith(f"Error: no such folder: {missing} (your migrations folder")
        assert not (unrelated_cwd / "nosuchdir").exists() and not (tmp_path / "no").exists()


def test_new_refuses_the_shipped_folder(tmp_path, monkeypatch):
    """(A copy of it: were the refusal to fail, the real one is never written to.)"""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for path in MIGRATIONS_DIR.glob("0*.py"):
        (shipped / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("BITLOOT_SHIPPED_MIGRATIONS_DIR", str(shipped))
    before = sorted(shipped.iterdir())

    line = one_line_error(run_cli("new", "mine", "--migrations", shipped))

    assert line == (f"Error: {shipped} holds the shipped migrations: new writes into your "
                    "own folder (--migrations DIR)")
    assert sorted(shipped.iterdir()) == before


def test_a_hand_written_migration_is_said_to_be_one(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()

    result = run_cli("new", "backfill", "--migrations", folder)

    assert result.exit_code == 0, result.output
    assert result.stdout == (f"wrote {folder / '100_backfill.py'} (empty: write its migrate() "
                             "and rollback() by hand)\n")
    assert "change(s)" not in result.output


def test_migrate_with_a_missing_folder_says_no_such_folder(db_url, tmp_path):
    missing = tmp_path / "missing"

    line = one_line_error(run_cli("migrate", "--database", db_url, "--migrations", missing))

    assert line == (f"Error: no such folder: {missing} (your migrations folder, given by "
                    "--migrations / BITLOOT_MIGRATIONS_DIR)")
    assert "no migrations found" not in line and not missing.exists()
