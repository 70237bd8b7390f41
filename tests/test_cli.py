"""The bitloot-lite command, through click's CliRunner and as real processes.

Every test that touches a database runs on SQLite and on PostgreSQL (the
``db_url`` fixture). Nothing is mocked: the commands open real databases.
"""

import importlib.util
import json
import logging
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import (
    MIGRATIONS,
    REPO_ROOT,
    STEP_LINE,
    clean_env,
    concurrent_indexes,
    opened,
    run_cli,
)

#: A server nobody listens on, with a password that must never be printed.
UNREACHABLE = "postgresql://u:hunter2@127.0.0.1:1/x"



pytestmark = pytest.mark.usefixtures("unrelated_cwd")


def ok(*args, env=None):
    result = run_cli(*args, env=env)
    assert result.exit_code == 0, f"{args} exited {result.exit_code}:\n{result.output}"
    return result


def status_ok(*args, env=None):
    """``status``: exit 1 while something is pending, 0 when nothing is (a deploy gate)."""
    result = run_cli("status", *args, env=env)
    pending = any(line.startswith("pending") for line in result.stdout.splitlines())
    assert result.exit_code == (1 if pending else 0), (
        f"status {args} exited {result.exit_code}:\n{result.output}"
    )
    return result


def steps(result):
    """[(verb, name)] of the 'applied NAME (0.001s)' / 'rolled back NAME (...)' lines."""
    found = []
    for line in result.stdout.splitlines():
        match = STEP_LINE.match(line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def status_lines(db_url):
    """[(state, name)] from `bitloot-lite status`."""
    result = status_ok("--database", db_url)
    rows = []
    for line in result.stdout.splitlines():
        state, name, *rest = line.split("  ")  # then (its time, and) its description
        if state == "applied":
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", rest[0]), line
            rest = rest[1:]
        else:
            assert state == "pending", line
        assert len(rest) == 1 and rest[0].strip(), line
        rows.append((state, name))
    return rows


def applied_names(db_url):
    return [name for state, name in status_lines(db_url) if state == "applied"]


#: Commands whose exit code 1 means "pending" or "drift": their errors exit 2.
GATES = ("status", "check")


def assert_clean_error(result, code=None):
    """One 'Error: ...' line on stderr, nothing on stdout, no traceback; exit ``code``
    (default: 1, or 2 for the gating commands)."""
    gate = any(arg in GATES for arg in getattr(result, "cli_args", ())[:1])
    expected = code if code is not None else (2 if gate else 1)
    assert result.exit_code == expected, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    if code is None:  # a library error, not a usage error
        assert len(lines) == 1, result.stderr
    assert lines[-1].startswith("Error: "), result.stderr
    return lines[-1]


# --- migrate ---------------------------------------------------------------


def test_migrate_empty_database_lists_each_migration_with_its_time(db_url, backend):
    result = ok("migrate", "--database", db_url)

    # On PostgreSQL the indexes a migration declares (005's on orders, 006's unique
    # ones) are built after its commit, CONCURRENTLY: a line each, right after it.
    built = {name: concurrent_indexes(name) for name in MIGRATIONS}
    assert built["005_add_keys_reservation"] == ["IDX_orders_kinguinReservationId"]
    expected = []
    for name in MIGRATIONS:
        expected.append(f"applied {name}")
        if backend == "postgres":
            expected += [f"built index {name}: {index}" for index in built[name]]
    lines = [line.split(" (")[0] for line in result.stdout.splitlines()]
    assert lines[:-1] == expected
    assert steps(result) == [("applied", name) for name in MIGRATIONS]
    timed_index = re.compile(r"^built index \S+: \S+ \(\d+\.\d{3}s\)$")
    assert all(STEP_LINE.match(line) or timed_index.match(line)
               for line in result.stdout.splitlines()[:-1])
    assert lines[-1].startswith(f"{len(MIGRATIONS)} migration(s) applied to ")
    assert result.stderr == ""
    assert applied_names(db_url) == MIGRATIONS


def test_migrate_twice_is_a_no_op_that_says_up_to_date(db_url):
    ok("migrate", "--database", db_url)

    again = ok("migrate", "--database", db_url)

    assert "up to date" in again.stdout
    assert steps(again) == []
    assert len(again.stdout.splitlines()) == 1
    assert applied_names(db_url) == MIGRATIONS


def test_migrate_to_stops_after_the_named_migration(db_url):
    result = ok("migrate", "--to", "002_create_payments", "--database", db_url)

    assert steps(result) == [("applied", "001_init_orders"), ("applied", "002_create_payments")]
    assert "2 migration(s) applied" in result.stdout
    assert status_lines(db_url) == [
        ("applied", "001_init_orders"),
        ("applied", "002_create_payments"),
        *[("pending", name) for name in MIGRATIONS[2:]],
    ]

    # Already there: nothing to do, still exit 0.
    again = ok("migrate", "--to", "001_init_orders", "--database", db_url)
    assert steps(again) == [] and "up to date" in again.stdout

    # The rest, from where it stopped.
    rest = ok("migrate", "--database", db_url)
    assert steps(rest) == [("applied", name) for name in MIGRATIONS[2:]]


def test_migrate_to_an_unknown_migration_is_a_clean_error(db_url):
    message = assert_clean_error(run_cli("migrate", "--to", "999_nope", "--database", db_url))

    assert "unknown migration '999_nope'" in message
    assert applied_names(db_url) == []


# --- status ----------------------------------------------------------------


def create_empty(url):
    """The database made (a SQLite file by its first connection): status does not make it."""
    with opened(url):
        pass


def test_status_of_an_empty_database_lists_every_migration_pending(db_url):
    create_empty(db_url)
    assert status_lines(db_url) == [("pending", name) for name in MIGRATIONS]


def test_status_lists_applied_then_pending_in_order(db_url):
    ok("migrate", "--to", "003_create_webhook_logs", "--database", db_url)

    result = status_ok("--database", db_url)

    lines = result.stdout.splitlines()
    assert len(lines) == len(MIGRATIONS)
    assert [line.split()[:2] for line in lines] == [
        ["applied", "001_init_orders"],
        ["applied", "002_create_payments"],
        ["applied", "003_create_webhook_logs"],
        *[["pending", name] for name in MIGRATIONS[3:]],
    ]
    assert all(" UTC  " in line for line in lines[:3])
    # Each with its description, its docstring's first line.
    assert lines[0].endswith("  the orders and order_items tables.")
    assert lines[3].endswith("  orders.status becomes an enum.")


# --- rollback --------------------------------------------------------------


def test_rollback_undoes_the_newest_migration(db_url):
    ok("migrate", "--database", db_url)

    result = ok("rollback", "--database", db_url)

    assert steps(result) == [("rolled back", MIGRATIONS[-1])]
    assert result.stdout.splitlines()[-1].startswith("1 migration(s) rolled back")
    assert applied_names(db_url) == MIGRATIONS[:-1]


def test_rollback_steps_undoes_newest_first(db_url):
    ok("migrate", "--database", db_url)

    result = ok("rollback", "--steps", "2", "--database", db_url)

    assert steps(result) == [
        ("rolled back", MIGRATIONS[-1]),
        ("rolled back", MIGRATIONS[-2]),
    ]
    assert "2 migration(s) rolled back" in result.stdout
    assert applied_names(db_url) == MIGRATIONS[:-2]


def test_rollback_to_undoes_everything_after_it(db_url):
    ok("migrate", "--database", db_url)

    result = ok("rollback", "--to", "001_init_orders", "--database", db_url)

    assert steps(result) == [("rolled back", name) for name in reversed(MIGRATIONS[1:])]
    assert applied_names(db_url) == ["001_init_orders"]

    # And the schema can be rebuilt on top of it.
    again = ok("migrate", "--database", db_url)
    assert steps(again) == [("applied", name) for name in MIGRATIONS[1:]]


def test_rollback_refuses_steps_with_to_as_a_usage_error(db_url):
    ok("migrate", "--database", db_url)

    result = run_cli("rollback", "--steps", "2", "--to", "001_init_orders", "--database", db_url)

    message = assert_clean_error(result, code=2)
    assert "--steps" in message and "--to" in message
    assert "Usage: bitloot-lite rollback" in result.stderr
    assert applied_names(db_url) == MIGRATIONS  # nothing undone


def test_rollback_steps_and_to_is_refused_before_connecting():
    # A usage error, not a connection error, even when the server is down.
    result = run_cli("rollback", "--steps", "1", "--to", "001_init_orders",
                     "--database", UNREACHABLE)

    assert_clean_error(result, code=2)
    assert "cannot connect" not in result.output


@pytest.mark.parametrize("steps_value", ["0", "-1", "two"])
def test_rollback_bad_steps_is_a_usage_error(steps_value):
    result = run_cli("rollback", "--steps", steps_value, "--database", UNREACHABLE)

    message = assert_clean_error(result, code=2)
    assert "--steps" in message


def test_rollback_past_the_start_is_a_clean_error(db_url):
    ok("migrate", "--to", "002_create_payments", "--database", db_url)

    message = assert_clean_error(run_cli("rollback", "--steps", "3", "--database", db_url))

    assert message == "Error: cannot roll back 3 migration(s): 2 applied"
    assert applied_names(db_url) == MIGRATIONS[:2]  # nothing undone


def test_rollback_of_an_empty_database_is_a_clean_error(db_url):
    message = assert_clean_error(run_cli("rollback", "--database", db_url))

    assert "0 applied" in message


def test_rollback_to_a_migration_not_applied_is_a_clean_error(db_url):
    ok("migrate", "--to", "002_create_payments", "--database", db_url)
    result = run_cli("rollback", "--to", "004_orders_status_enum", "--database", db_url)

    message = assert_clean_error(result)

    assert "unknown migration '004_orders_status_enum'" in message
    assert applied_names(db_url) == MIGRATIONS[:2]


# --- the migrations folder -------------------------------------------------


@pytest.mark.parametrize("command", ["migrate", "status"])
def test_a_missing_migrations_folder_is_a_clean_error_and_is_not_created(db_url, tmp_path, command):
    create_empty(db_url)
    for missing in (Path("/nonexistent"), tmp_path / "no" / "such" / "folder"):
        result = run_cli(command, "--database", db_url, "--migrations", str(missing))

        message = assert_clean_error(result)
        assert message == (f"Error: no such folder: {missing} (your migrations folder, "
                           "given by --migrations / BITLOOT_MIGRATIONS_DIR)")
        assert not missing.exists()


def test_rollback_with_a_missing_migrations_folder_is_a_clean_error(db_url, tmp_path):
    ok("migrate", "--database", db_url)
    missing = tmp_path / "gone"

    message = assert_clean_error(
        run_cli("rollback", "--database", db_url, "--migrations", str(missing))
    )

    assert f"no such folder: {missing}" in message
    assert not missing.exists()
    assert applied_names(db_url) == MIGRATIONS


def test_the_migrations_folder_comes_from_the_environment(db_url, tmp_path):
    missing = tmp_path / "from-env"
    create_empty(db_url)

    result = run_cli("status", "--database", db_url, env={"BITLOOT_MIGRATIONS_DIR": str(missing)})

    assert assert_clean_error(result).startswith(f"Error: no such folder: {missing} ")


# --- choosing the database -------------------------------------------------


def test_database_url_comes_from_the_environment(db_url, unrelated_cwd):
    result = ok("migrate", env={"DATABASE_URL": db_url})

    assert steps(result) == [("applied", name) for name in MIGRATIONS]
    assert re.fullmatch(rf"{len(MIGRATIONS)} migration\(s\) applied to {re.escape(db_url)} "
                        r"in \d+\.\d{3}s", result.stdout.splitlines()[-1])
    status = status_ok(env={"DATABASE_URL": db_url})
    assert status.stdout.count("applied  ") == len(MIGRATIONS)
    assert applied_names(db_url) == MIGRATIONS  # the same database, named explicitly
    assert list(unrelated_cwd.iterdir()) == []  # the default ./bitloot.db was not used


def test_database_option_wins_over_the_environment(db_url):
    create_empty(db_url)
    result = status_ok("--database", db_url, env={"DATABASE_URL": UNREACHABLE})

    assert result.stdout.count("pending  ") == len(MIGRATIONS)


@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-v", "-v"]])
@pytest.mark.parametrize("command", ["migrate", "rollback", "status"])
def test_password_is_masked_when_the_server_is_unreachable(command, verbosity):
    for args, env in (
        ([command, *verbosity, "--database", UNREACHABLE], None),
        ([command, *verbosity], {"DATABASE_URL": UNREACHABLE}),
    ):
        result = run_cli(*args, env=env)

        message = assert_clean_error(result)
        assert message.startswith("Error: cannot connect to postgresql://u:***@127.0.0.1:1/x: ")
        assert "hunter2" not in result.output + result.stdout + result.stderr


def test_a_percent_encoded_password_is_masked_in_both_forms():
    result = run_cli("status", "-v", "-v", "--database", "postgresql://u:hun%40ter2@127.0.0.1:1/x")

    message = assert_clean_error(result)
    assert "u:***@" in message
    assert "hun%40ter2" not in result.output and "hun@ter2" not in result.output


def test_password_is_masked_in_logs_of_a_working_connection(pg_url):
    # The test server trusts local connections, so any password is accepted.
    parts = urlsplit(pg_url)
    netloc = f"postgres:hunter2@{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit(parts._replace(netloc=netloc))

    result = ok("migrate", "-v", "-v", "--database", url)

    assert steps(result) == [("applied", name) for name in MIGRATIONS]
    assert "postgres:***@" in result.stdout  # the summary names the masked URL
    assert "bitloot_lite" in result.stderr  # -v logged through the bitloot_lite logger
    assert "peewee" in result.stderr  # -vv added the SQL
    assert "hunter2" not in result.output + result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://u:hunter2@host/db", "Error: invalid database URL foo://u:***@host/db: "),
        ("not-a-url", "Error: invalid database URL not-a-url: expected scheme://"),
        (
            "postgresql://u:hunter2@host:notaport/db",
            "Error: invalid database URL postgresql://u:***@host:notaport/db: ",
        ),
    ],
)
def test_an_invalid_url_is_a_clean_error(url, expected):
    result = run_cli("status", "-v", "--database", url)

    assert assert_clean_error(result).startswith(expected)
    assert "hunter2" not in result.output


# --- logging ---------------------------------------------------------------


def test_verbose_logs_to_stderr_and_quiet_logs_nothing(db_url):
    quiet = ok("migrate", "--to", "001_init_orders", "--database", db_url)
    assert quiet.stderr == ""

    verbose = ok("migrate", "-v", "--to", "002_create_payments", "--database", db_url)
    assert "bitloot_lite.migrating: migrate 002_create_payments" in verbose.stderr
    assert "bitloot_lite" not in verbose.stdout
    assert "peewee" not in verbose.stderr  # SQL only with -vv

    # The handler does not outlive the command: the next quiet run logs nothing,
    # and the next verbose one logs each line once.
    assert status_ok("--database", db_url).stderr == ""
    assert ok("rollback", "--database", db_url).stderr == ""
    again = ok("migrate", "-v", "--database", db_url)
    assert again.stderr.count("bitloot_lite.migrating: migrate 002_create_payments in ") == 1


def test_verbose_leaves_the_loggers_as_it_found_them(db_url):
    loggers = [logging.getLogger(name) for name in ("bitloot_lite", "peewee")]
    before = [(log.level, list(log.handlers)) for log in loggers]

    ok("migrate", "-v", "-v", "--database", db_url)
    assert_clean_error(run_cli("status", "-v", "-v", "--database", UNREACHABLE))

    assert [(log.level, list(log.handlers)) for log in loggers] == before


# --- help ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "example"),
    [
        ([], "bitloot-lite migrate"),
        (["migrate"], "bitloot-lite migrate --to "),
        (["rollback"], "bitloot-lite rollback --steps 2"),
        (["status"], "bitloot-lite status"),
    ],
)
def test_help_shows_an_example(command, example):
    for flag in ("--help", "-h"):
        result = ok(*command, flag)

        assert result.stdout.startswith(f"Usage: bitloot-lite {' '.join(command)}".rstrip())
        assert "Example:" in result.stdout
        assert example in result.stdout


def test_unknown_option_is_a_usage_error():
    result = run_cli("migrate", "--nope")

    assert_clean_error(result, code=2)


# --- as real processes -----------------------------------------------------


def _run_process(args, cwd, **extra_env):
    return subprocess.run(
        args, cwd=cwd, env=clean_env(**extra_env), capture_output=True, text=True, timeout=120
    )


def test_python_dash_m_and_console_script_run(unrelated_cwd):
    console_script = Path(sys.executable).parent / "bitloot-lite"
    assert console_script.exists(), f"no console script next to {sys.executable}"

    for argv in ([sys.executable, "-m", "bitloot_lite"], [str(console_script)]):
        helped = _run_process([*argv, "--help"], unrelated_cwd)
        assert helped.returncode == 0, helped.stderr
        assert helped.stdout.startswith("Usage: bitloot-lite [OPTIONS] COMMAND")
        assert "Example:" in helped.stdout

        failed = _run_process([*argv, "status", "-vv", "--database", UNREACHABLE], unrelated_cwd)
        assert failed.returncode == 2  # status: 1 means "pending"
        assert failed.stdout == ""
        assert failed.stderr.startswith("Error: cannot connect to postgresql://u:***@")
        assert len(failed.stderr.splitlines()) == 1
        assert "hunter2" not in failed.stderr

        misused = _run_process([*argv, "rollback", "--steps", "0"], unrelated_cwd)
        assert misused.returncode == 2
        assert "Usage: bitloot-lite rollback" in misused.stderr

    assert list(unrelated_cwd.iterdir()) == []


# --- packaging -------------------------------------------------------------


def _can_build_without_isolation():
    """setuptools >= 70.1 builds wheels by itself; older ones need the wheel package."""
    try:
        import setuptools
        from packaging.version import Version
    except ImportError:
        return False
    if Version(setuptools.__version__) >= Version("70.1"):
        return True
    return importlib.util.find_spec("wheel") is not None


def _build_wheel(source, out):
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q"]
    attempts = [[*base, "-w", str(out), str(source)]]
    if _can_build_without_isolation():
        attempts.insert(0, [*base, "--no-build-isolation", "-w", str(out), str(source)])
    for args in attempts:
        built = subprocess.run(args, capture_output=True, text=True, timeout=600)
        wheels = list(out.glob("bitloot_lite-*.whl"))
        if built.returncode == 0 and len(wheels) == 1:
            return wheels[0]
    pytest.fail(f"pip wheel failed:\n{built.stdout}\n{built.stderr}")


@pytest.mark.slow
def test_the_wheel_ships_the_migrations_and_runs_from_anywhere(tmp_path):
    # Built from a copy, so the build leaves nothing in the working tree.
    source = tmp_path / "src"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
            ".ruff_cache", "bitloot.db*",
        ),
    )
    out = tmp_path / "dist"
    out.mkdir()
    wheel = _build_wheel(source, out)

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for migration in MIGRATIONS:
            assert f"bitloot_lite/migrations/{migration}.py" in names
        assert "bitloot_lite/migrations/__init__.py" in names
        assert "bitloot_lite/py.typed" in names
        assert not any(name.startswith(("tests/", "migrations/")) for name in names), names
        site = tmp_path / "site"
        archive.extractall(site)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = _run_process(
        [
            sys.executable,
            "-c",
            "import json, bitloot_lite, bitloot_lite.migrating as m;"
            "print(json.dumps([bitloot_lite.__file__, str(m.default_migrations_dir())]))",
        ],
        elsewhere,
        PYTHONPATH=str(site),
    )
    assert probe.returncode == 0, probe.stderr
    package_file, migrations_dir = (Path(p).resolve() for p in json.loads(probe.stdout))
    # The unpacked wheel is imported, not the repository's editable install.
    assert package_file == (site / "bitloot_lite" / "__init__.py").resolve()
    assert REPO_ROOT not in package_file.parents
    assert migrations_dir == (site / "bitloot_lite" / "migrations").resolve()

    db_file = tmp_path / "x.db"
    migrated = _run_process(
        [sys.executable, "-m", "bitloot_lite", "migrate", "--database", f"sqlite:///{db_file}"],
        elsewhere,
        PYTHONPATH=str(site),
    )
    assert migrated.returncode == 0, migrated.stderr
    lines = migrated.stdout.splitlines()
    count = len(MIGRATIONS)
    assert [STEP_LINE.match(line).group(2) for line in lines[:count]] == MIGRATIONS
    assert lines[count].startswith(f"{count} migration(s) applied to sqlite:///{db_file} in ")
    assert db_file.exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == []


def test_every_error_is_exported_from_the_package():
    """A script catches what it can import: every BitlootError is bitloot_lite.<Name>."""
    import inspect

    import bitloot_lite
    from bitloot_lite import errors

    defined = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, errors.BitlootError)
               and value.__module__ == errors.__name__}
    assert defined <= set(bitloot_lite.__all__)
    assert all(getattr(bitloot_lite, name) is getattr(errors, name) for name in defined)
