"""The backend switch: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from $BITLOOT_TEST_PG_URL (default: the local server as the
postgres user). Each test gets a throwaway database, created and dropped here.
Where no server answers, PostgreSQL tests are skipped with the reason, except
under CI=true, where that is a failure.
"""

import contextlib
import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

import bitloot_lite
from bitloot_lite.cli import cli
from bitloot_lite.db import open_database, recording

PG_URL = os.environ.get("BITLOOT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = REPO_ROOT / "migrations"
#: The shipped migrations, in order: written out, as it is what the tests check against.
MIGRATIONS = [
    "001_init_orders",
    "002_create_payments",
    "003_create_webhook_logs",
    "004_orders_status_enum",
    "005_add_keys_reservation",
    "006_unique_reservation_storage_ref",
]
#: A line of `migrate` or `rollback` output for one migration.
STEP_LINE = re.compile(r"^(applied|rolled back) (\S+) \(\d+\.\d{3}s\)$")

postgres_only = pytest.mark.parametrize("backend", ["postgres"])
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])

# The tests never use the caller's database.
os.environ.pop("DATABASE_URL", None)
os.environ.pop("BITLOOT_MIGRATIONS_DIR", None)


def _pg_url_for(name):
    return urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_admin():
    """A connection to the PostgreSQL server's maintenance database (or a skip)."""
    try:
        admin = open_database(PG_URL)
    except bitloot_lite.BitlootError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield admin
    admin.close()


@contextlib.contextmanager
def throwaway_url(request, backend, folder):
    """The URL of a new, empty database on ``backend``, dropped (PostgreSQL) after the block.

    SQLite's is a file in ``folder``; fixtures of any scope share this.
    """
    if backend != "postgres":
        yield f"sqlite:///{folder / 'bitloot.db'}"
        return
    admin = request.getfixturevalue("pg_admin")
    name = f"bitloot_test_{uuid.uuid4().hex[:12]}"
    admin.execute_sql(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url_for(name)
    finally:
        bitloot_lite.db.database_proxy.initialize(None)
        admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def migrated_database(request, backend, folder):
    """(url, database) of a new database on ``backend``, migrated and bound to the
    models; closed and dropped after the block. For module-scoped fixtures."""
    with throwaway_url(request, backend, folder) as url:
        database = bitloot_lite.connect(url)
        try:
            bitloot_lite.migrate(database)
            yield url, database
        finally:
            database.close()


@contextlib.contextmanager
def opened(url):
    """A connection of its own to ``url`` (models not bound), closed after the block."""
    database = open_database(url)
    try:
        yield database
    finally:
        database.close()


def concurrent_indexes(name):
    """The indexes shipped migration ``name`` builds after its commit on PostgreSQL, in
    order (its POSTGRES_CONCURRENT_INDEXES), read from its file."""
    scope = {}
    path = MIGRATIONS_DIR / f"{name}.py"
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), scope)
    return list(scope.get("POSTGRES_CONCURRENT_INDEXES", {}))


def fetch(database, sql, params=None):
    return [tuple(row) for row in database.execute_sql(sql, params).fetchall()]


def sqlite_path(url):
    """The file of a sqlite:/// URL (its ?parameters left out)."""
    return urlsplit(url).path[1:]


def run_cli(*args, env=None):
    """The command in-process (click's CliRunner), with DATABASE_URL and
    BITLOOT_MIGRATIONS_DIR unset unless ``env`` sets them. A crash (any exception
    but click's exit) would be a traceback for the user: it fails the test."""
    runner = CliRunner(env={"DATABASE_URL": None, "BITLOOT_MIGRATIONS_DIR": None, **(env or {})})
    result = runner.invoke(cli, [str(arg) for arg in args], prog_name="bitloot-lite")
    result.cli_args = args
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args} crashed: {result.exception!r}\n{result.output}")
    return result


#: A child process's script: imports everything, says it is ready, waits for the barrier
#: file, then runs the CLI, so processes start at the same instant, not an import apart.
LAUNCHER = """\
import os, sys, time
from bitloot_lite.cli import main
barrier = sys.argv.pop(1)
open(f"{barrier}.ready.{os.getpid()}", "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(barrier) and time.monotonic() < deadline:
    time.sleep(0.002)
main()
"""


def clean_env(**extra):
    """The environment for a child process: ours without DATABASE_URL and
    BITLOOT_MIGRATIONS_DIR, plus ``extra``."""
    unset = ("DATABASE_URL", "BITLOOT_MIGRATIONS_DIR")
    return {**{key: value for key, value in os.environ.items() if key not in unset}, **extra}


@pytest.fixture
def unrelated_cwd(tmp_path, monkeypatch):
    """Run from an empty folder: a relative URL, or a forgotten --database, cannot
    touch ./bitloot.db or the repository."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def pg_url(request, tmp_path):
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    with throwaway_url(request, "postgres", tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'bitloot.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture
def db_url(backend, request):
    """A fresh, empty database URL on each backend."""
    return request.getfixturevalue("pg_url" if backend == "postgres" else "sqlite_url")


@pytest.fixture
def second_db_url(backend, request, tmp_path):
    """A second fresh, empty database URL on the same backend as ``db_url``."""
    folder = tmp_path / "second"
    folder.mkdir()
    with throwaway_url(request, backend, folder) as url:
        yield url


def bound_and_emptied(database, tables=("keys", "payments", "order_items", "orders",
                                        "webhook_logs")):
    """``database`` (a module's shared one) bound to the models, ``tables`` emptied."""
    bitloot_lite.db.database_proxy.initialize(database)
    for table in tables:
        database.execute_sql(f'DELETE FROM "{table}"')
    return database


@pytest.fixture
def database(db_url):
    """A connected, empty database with the models bound to it."""
    db = bitloot_lite.connect(db_url)
    yield db
    db.close()


@pytest.fixture
def migrated(database):
    """A database migrated to the newest migration."""
    bitloot_lite.migrate(database)
    return database


class QueryCounter:
    """Counts the statements a database runs (peewee's assertQueryCount, as a helper)."""

    def __init__(self, recorded):
        self.recorded = recorded

    @property
    def statements(self):
        return [sql for sql, _params in self.recorded]

    @property
    def count(self):
        return len(self.recorded)


@contextlib.contextmanager
def count_queries(database):
    with recording(database) as recorded:
        yield QueryCounter(recorded)


@pytest.fixture
def queries():
    """``with queries(db) as q: ...; assert q.count == 1``"""
    return count_queries

