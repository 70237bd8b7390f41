"""`copy` refuses to write into its own source, however the two URLs are spelled."""

import os
import types
from urllib.parse import urlsplit

import conftest
import pytest

from bitloot_lite.errors import SameDatabase
from bitloot_lite.local import copy as copying
from bitloot_lite.local import demo

ORDERS = 12


@pytest.fixture
def shop(migrated):
    """The source: a migrated database with a demo shop of ORDERS orders."""
    demo.fill(migrated, ORDERS, seed=5)
    return migrated


def state(url):
    """(orders, checksums of every table) of the database at ``url``."""
    with conftest.opened(url) as database:
        (orders,), = conftest.fetch(database, "SELECT count(*) FROM orders")
        return orders, copying.checksums(database)


def assert_refused(source_url, dest_url, before):
    """The CLI refuses the copy, harmful options and all, in one line naming both URLs
    (masked), and the source is as it was."""
    result = conftest.run_cli("copy", source_url, dest_url, "--replace", "--orders", 2,
                              "--anonymize", "--salt", "s" * 16)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: the source ") and "are one database" in line, line
    assert source_url.replace(":hunter2-pw@", ":***@") in line
    assert dest_url.replace(":hunter2-pw@", ":***@") in line
    assert "hunter2-pw" not in line
    assert state(source_url) == before


# -- SQLite ---------------------------------------------------------------------------------


def sqlite_spellings(folder):
    """Other URLs of the file ``folder``/bitloot.db, run from ``folder``."""
    (folder / "sub").mkdir()
    os.symlink(folder / "bitloot.db", folder / "link.db")
    os.link(folder / "bitloot.db", folder / "hard.db")
    return [
        "sqlite:///bitloot.db",
        "sqlite:///./bitloot.db",
        "sqlite:///sub/../bitloot.db",
        f"sqlite:///{folder}/sub/../bitloot.db",
        f"sqlite:///{folder}//bitloot.db",
        "sqlite:///link.db",  # a symlink
        "sqlite:///hard.db",  # a hard link: another name, the same inode
        "sqlite:///bitloot.db?busy_timeout=2000",
        "sqlite:///./bitloot.db?timeout=3&busy_timeout=100",
        "sqlite:///file:bitloot.db?uri=true",  # SQLite's own URI form
    ]


@conftest.sqlite_only
def test_sqlite_spellings_of_the_source_are_refused(shop, db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shop.close()  # SQLite fails on a second name of a file open in WAL mode (a hard link)
    before = state(db_url)
    assert before[0] == ORDERS
    for spelling in sqlite_spellings(tmp_path):
        assert_refused(db_url, spelling, before)
        assert_refused(spelling, db_url, before)
    assert_refused(db_url, db_url, before)  # the very same text, too


@conftest.sqlite_only
def test_the_library_refuses_before_anything_is_written(shop, db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = state(db_url)
    written = []
    monkeypatch.setattr(copying, "_prepare_destination", lambda *a: written.append(a))
    os.symlink(tmp_path / "bitloot.db", tmp_path / "link.db")
    with conftest.opened("sqlite:///./link.db") as destination, \
            pytest.raises(SameDatabase) as info:
        copying.copy(shop, destination, replace=True, orders=1, anonymize=True)
    assert written == []
    error = info.value
    assert error.source == db_url and error.destination == "sqlite:///./link.db"
    assert str(tmp_path / "bitloot.db") in error.reason
    with pytest.raises(SameDatabase):
        copying.copy(shop, shop, replace=True)  # one handle, twice
    assert state(db_url) == before


@conftest.sqlite_only
def test_another_sqlite_file_still_copies(shop, db_url, tmp_path, monkeypatch):
    """A destination that does not exist yet, in the same folder and by a relative
    name, is another database; and so is an in-memory one."""
    monkeypatch.chdir(tmp_path)
    before = state(db_url)
    result = conftest.run_cli("copy", db_url, "sqlite:///./other.db")
    assert result.exit_code == 0, result.output
    assert state("sqlite:///other.db") == before == state(db_url)
    with conftest.opened("sqlite:///:memory:") as memory:
        assert copying.copy(shop, memory).rows == sum(n for n, _ in before[1].values())


# -- PostgreSQL -----------------------------------------------------------------------------


def pg_spellings(url):
    """Other URLs of the PostgreSQL database ``url`` (postgresql://postgres@127.0.0.1:5432/x)."""
    parts = urlsplit(url)
    name, port = parts.path.lstrip("/"), parts.port or 5432
    return [
        f"postgresql://postgres@localhost:{port}/{name}",
        f"postgres://postgres@127.0.0.1/{name}" if port == 5432 else
        f"postgres://postgres@127.0.0.1:{port}/{name}",
        f"postgresql://postgres@127.0.0.1:{port}/{name}?application_name=elsewhere",
        f"postgresql://postgres@localhost:{port}/{name}?options=-c%20statement_timeout%3D9000"
        "&connect_timeout=5",
        f"postgresql://postgres:hunter2-pw@127.0.0.1:{port}/{name}",  # trust: any password
        f"postgresql://postgres@127.0.0.1:{port},localhost:{port}/{name}",  # multi-host
        f"postgresql://postgres@localhost:1,127.0.0.1:{port}/{name}",  # the 1st host is down
    ]


@conftest.postgres_only
def test_postgresql_spellings_of_the_source_are_refused(shop, db_url):
    before = state(db_url)
    assert before[0] == ORDERS
    for spelling in pg_spellings(db_url):
        assert_refused(db_url, spelling, before)
        assert_refused(spelling, db_url, before)
    assert_refused(db_url, db_url, before)


@conftest.postgres_only
def test_postgresql_through_pgbouncer_is_the_same_database(shop, db_url):
    """PgBouncer in front of the shared server: another port, another process, the same
    database behind it."""
    import servers

    parts = urlsplit(db_url)
    server = types.SimpleNamespace(hostname=parts.hostname, port=parts.port or 5432)
    before = state(db_url)
    with servers.pgbouncer(server, "transaction") as bouncer:
        pooled = bouncer.url(parts.path.lstrip("/"))
        assert_refused(pooled, db_url, before)
        assert_refused(db_url, pooled, before)
        assert_refused(pooled, pooled.replace("127.0.0.1", "localhost"), before)


@conftest.postgres_only
def test_another_database_of_the_same_cluster_still_copies(shop, db_url, second_db_url):
    before = state(db_url)
    other = second_db_url.replace("127.0.0.1", "localhost")  # a spelling of the same server
    result = conftest.run_cli("copy", db_url, other)
    assert result.exit_code == 0, result.output
    assert state(second_db_url) == before == state(db_url)
