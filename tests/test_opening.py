"""A database that cannot be opened says why, in the user's terms: a scheme bitloot-lite
does not run on, a SQLite file's missing folder, a PostgreSQL database not created yet;
and the commands with no business creating a SQLite file (shell, diagram) create none."""

import shutil
import subprocess
import uuid

import conftest
import pytest

from bitloot_lite.db import open_database
from bitloot_lite.errors import FolderNotFound, InvalidDatabaseURL, PostgresDatabaseNotFound

PASSWORD = "hunter2-pw"


@pytest.mark.parametrize("url, family", [
    (f"mysql://app:{PASSWORD}@db.internal/bitloot", "MySQL"),
    (f"mysql+pool://app:{PASSWORD}@db.internal/bitloot", "MySQL"),
    ("mysqlconnector://app@db.internal/bitloot", "MySQL"),
    ("mariadbconnector://app@db.internal/bitloot", "MariaDB"),
    ("cockroachdb://root@127.0.0.1:26257/bitloot", "CockroachDB"),
    (f"oracle://app:{PASSWORD}@db.internal/bitloot", "oracle://"),
])
def test_an_unsupported_scheme_is_named_as_such(url, family, unrelated_cwd):
    with pytest.raises(InvalidDatabaseURL) as info:
        open_database(url)
    assert info.value.reason.startswith(f"{family} is not supported: bitloot-lite runs on "
                                        "SQLite (sqlite:///bitloot.db) and PostgreSQL")
    for command in ("status", "migrate"):
        result = conftest.run_cli(command, "--database", url)
        assert result.exit_code in (1, 2), result.output
        (line,) = result.output.strip().splitlines()
        assert f"{family} is not supported" in line and "driver" not in line, line
        assert PASSWORD not in line
    assert list(unrelated_cwd.iterdir()) == []


@pytest.mark.parametrize("url", ["sqlite:///bitloot.db", "sqlite+pool:///bitloot.db",
                                 "postgresql://postgres@127.0.0.1:5432/postgres",
                                 "postgres://postgres@127.0.0.1:5432/postgres",
                                 "postgresext://postgres@127.0.0.1:5432/postgres"])
def test_the_supported_schemes_still_open(url, unrelated_cwd, pg_admin):
    open_database(url).close()


@pytest.mark.parametrize("relative", ["nodir/x.db", "nodir/deeper/x.db"])
def test_a_sqlite_file_in_a_missing_folder_names_the_folder(relative, unrelated_cwd):
    folder = unrelated_cwd / relative.rsplit("/", 1)[0]
    for url in (f"sqlite:///{relative}", f"sqlite:///{unrelated_cwd}/{relative}?timeout=2"):
        with pytest.raises(FolderNotFound) as info:
            open_database(url)
        assert info.value.folder == str(folder) and info.value.url == url
        result = conftest.run_cli("migrate", "--database", url)
        assert result.exit_code == 1, result.output
        (line,) = result.output.strip().splitlines()
        assert f"no folder {folder} for the SQLite file" in line, line
        assert "unable to open database file" not in line
    assert list(unrelated_cwd.iterdir()) == []  # nothing created on the way
    folder.mkdir(parents=True)  # as the message says: then it works
    assert conftest.run_cli("migrate", "-q", "--database", f"sqlite:///{relative}").exit_code == 0


@conftest.postgres_only
def test_a_missing_postgresql_database_says_how_to_create_it(backend, pg_admin):
    name = f"bitloot_missing_{uuid.uuid4().hex[:8]}"
    url = conftest._pg_url_for(name).replace("postgres@", f"postgres:{PASSWORD}@")
    with pytest.raises(PostgresDatabaseNotFound) as info:
        open_database(url)
    error = info.value
    assert error.database == name
    assert error.command == f"createdb -h 127.0.0.1 -p 5432 -U postgres {name}"
    assert PASSWORD not in str(error) and PASSWORD not in error.url
    for command in ("status", "migrate"):
        result = conftest.run_cli(command, "--database", url)
        assert result.exit_code in (1, 2), result.output
        (line,) = result.output.strip().splitlines()
        assert f'database "{name}" does not exist' in line  # libpq's own words, kept
        assert f"(create it first: `{error.command}`, then `bitloot-lite migrate`)" in line
        assert "postgres:***@" in line and PASSWORD not in line
    if shutil.which("createdb") is None:
        return
    try:  # the command it gives works, and then so does migrate
        subprocess.run(error.command.split(), check=True, timeout=60)
        assert conftest.run_cli("migrate", "-q", "--database", url).exit_code == 0
    finally:
        pg_admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("command", [["shell", "--plain"], ["diagram"],
                                     ["diagram", "--format", "dot"]])
def test_shell_and_diagram_never_create_a_sqlite_file(command, unrelated_cwd):
    for url, path in (("sqlite:///typo.db", unrelated_cwd / "typo.db"),
                      (None, unrelated_cwd / "bitloot.db")):  # the default URL
        result = conftest.run_cli(*command, *(["--database", url] if url else []))
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("Error: ") and f"no SQLite database file {path}" in line, line
        assert "this command creates none" in line
        assert list(unrelated_cwd.iterdir()) == []  # nor its -wal
