"""`shell`: starts on the database, runs what its standard input says, and exits."""

import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import conftest
import pytest

import bitloot_lite as bl
from bitloot_lite.local import shell

SCRIPT = ('print("orders:", Order.select().count())\n'
          'o = create_order("shell@example.com", [("kinguin-1", 2)], total="9.99")\n'
          'print("status:", set_status(o, "waiting").status.value, type(db).__name__)\n')


def _run_shell(url, *extra):
    return subprocess.run(
        [sys.executable, "-m", "bitloot_lite", "shell", "--database", url, *extra],
        input=SCRIPT, capture_output=True, text=True, timeout=120, env=conftest.clean_env(),
        cwd=conftest.REPO_ROOT)


def test_the_shell_runs_a_query_from_its_standard_input(migrated, db_url, backend):
    bl.create_order("first@example.com", [("kinguin-9", 1)])
    result = _run_shell(db_url, "--plain")
    assert result.returncode == 0, result.stderr
    assert "orders: 1" in result.stdout
    kind = "PostgresqlDatabase" if backend == "postgres" else "SqliteDatabase"
    assert f"status: waiting {kind}" in result.stdout
    assert f"bitloot-lite shell on {db_url}" in result.stderr  # the banner
    assert "Traceback" not in result.stderr
    assert bl.Order.select().where(bl.Order.email == "shell@example.com").count() == 1


@conftest.postgres_only
def test_the_banner_masks_the_password(migrated, db_url):
    # The local server trusts the connection whatever the password: it is only shown.
    parts = urlsplit(db_url)
    url = urlunsplit(parts._replace(netloc=f"{parts.username}:s3cr3t-pw@{parts.hostname}"
                                           f":{parts.port or 5432}"))
    result = _run_shell(url, "--plain")
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-pw" not in result.stdout + result.stderr
    assert f"{parts.username}:***@" in result.stderr


@conftest.sqlite_only  # the branch is the same on both; skipped where IPython is missing
@pytest.mark.skipif(not shell.has_ipython(), reason="IPython is not installed")
def test_ipython_when_installed(migrated, db_url):
    result = _run_shell(db_url)
    assert result.returncode == 0, result.stderr
    assert "orders: 0" in result.stdout and "status: waiting" in result.stdout


def test_the_namespace_has_the_models_services_and_database(migrated):
    names = shell.namespace(migrated)
    assert names["db"] is migrated and names["bl"] is bl
    for name in ("Order", "OrderItem", "Key", "Payment", "WebhookLog", "OrderStatus",
                 "PaymentStatus", "create_order", "set_status", "add_keys", "record_webhook",
                 "BitlootError"):
        assert names[name] is getattr(bl, name)
