"""From a URL to a connected database: masking, defaults, errors, session settings, binding."""

import traceback

import peewee as pw
import pytest

import bitloot_lite
from bitloot_lite import (
    BitlootError,
    ConfigurationError,
    DatabaseUnavailable,
    InvalidDatabaseURL,
    Order,
    mask_url,
)
from bitloot_lite.db import database_proxy

PASSWORD = "s3cret"


@pytest.fixture(autouse=True)
def unbind_models():
    """Each test starts and ends with the models bound to nothing."""
    database_proxy.initialize(None)
    yield
    database_proxy.initialize(None)


def chain(exc):
    """``exc`` and every exception reachable from it (__cause__ and __context__)."""
    seen = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return seen


def assert_safe_message(exc, masked, secret):
    message = str(exc)
    assert "\n" not in message and "\r" not in message
    assert masked in message
    assert secret not in message
    assert secret not in repr(exc)
    assert exc.url == masked
    # No cause, and no context shown: the driver's exception is not on the chain.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__ is True
    shown = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert secret not in shown


# --------------------------------------------------------------------------- mask_url


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://user:secret@db.example.com:6543/app?sslmode=require",
         "postgres://user:***@db.example.com:6543/app?sslmode=require"),
        ("postgresql://u:p%40ss%3Aw%2Frd@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u%40corp:p%40ss@h/db", "postgresql://u%40corp:***@h/db"),
        ("postgresql://u:sec:ret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("postgresql:///db", "postgresql:///db"),
        ("sqlite:///bitloot.db", "sqlite:///bitloot.db"),
        ("sqlite:////var/lib/bitloot/bitloot.db", "sqlite:////var/lib/bitloot/bitloot.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_mask_url_never_shows_the_password():
    for password in ("secret", "p%40ss", "hunter2hunter2"):
        url = f"postgresql://alice:{password}@db.internal:5432/bitloot"
        masked = mask_url(url)
        assert password not in masked
        assert "alice" in masked and "db.internal:5432/bitloot" in masked


# --------------------------------------------------------------------------- which URL


def test_default_is_bitloot_db_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    database = bitloot_lite.connect()
    try:
        assert isinstance(database, pw.SqliteDatabase)
        database.execute_sql("CREATE TABLE probe (x INTEGER)")
        assert (tmp_path / "bitloot.db").is_file()
        assert database_proxy.obj is database
    finally:
        database.close()


def test_database_url_is_honoured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "from-env.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{target}")
    database = bitloot_lite.connect()
    try:
        database.execute_sql("CREATE TABLE probe (x INTEGER)")
        assert target.is_file()
        assert not (tmp_path / "bitloot.db").exists()
    finally:
        database.close()


def test_database_url_is_honoured_on_each_backend(db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    database = bitloot_lite.connect()
    try:
        bitloot_lite.migrate(database)
        Order.create(email="env@example.com")
        assert database.execute_sql('SELECT "email" FROM "orders"').fetchall() == [
            ("env@example.com",)
        ]
    finally:
        database.close()


def test_an_explicit_url_wins_over_database_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    explicit = tmp_path / "explicit.db"
    database = bitloot_lite.connect(f"sqlite:///{explicit}")
    try:
        database.execute_sql("CREATE TABLE probe (x INTEGER)")
        assert explicit.is_file()
        assert not (tmp_path / "from-env.db").exists()
        assert not (tmp_path / "bitloot.db").exists()
    finally:
        database.close()


# --------------------------------------------------------------------------- bad URLs


@pytest.mark.parametrize(
    "url, masked",
    [
        ("mysqlx://u:pw@h/db", "mysqlx://u:***@h/db"),
        ("just-a-path", "just-a-path"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:5432/", "postgresql://u:***@127.0.0.1:5432/"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:5432", "postgresql://u:***@127.0.0.1:5432"),
        ("postgresql://u@127.0.0.1:5432/", "postgresql://u@127.0.0.1:5432/"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/db", "postgresql://u:***@127.0.0.1:notaport/db"),
    ],
)
def test_bad_urls_raise_invalid_database_url(url, masked, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(InvalidDatabaseURL) as info:
        bitloot_lite.connect(url)
    exc = info.value
    assert isinstance(exc, ConfigurationError) and isinstance(exc, BitlootError)
    secret = "pw" if url.startswith("mysqlx") else PASSWORD
    assert_safe_message(exc, masked, secret)
    assert exc.reason and "\n" not in exc.reason
    assert database_proxy.obj is None  # nothing was bound


def test_invalid_database_url_from_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"mysqlx://u:{PASSWORD}@h/db")
    with pytest.raises(InvalidDatabaseURL) as info:
        bitloot_lite.connect()
    assert_safe_message(info.value, "mysqlx://u:***@h/db", PASSWORD)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{PASSWORD}@127.0.0.1:5432/",
        f"mysqlx://u:{PASSWORD}@h/db",
        f"postgresql://u:{PASSWORD}@127.0.0.1:1/db",
    ],
)
def test_the_password_is_not_reachable_from_the_exception(url):
    """``from None`` only hides __context__ from tracebacks: the object still holds it.

    Error reporters, debuggers and ``logging`` handlers that walk the chain by
    hand see __context__, so it must not hold the raw URL either.
    """
    with pytest.raises(BitlootError) as info:
        bitloot_lite.connect(url)
    for exc in chain(info.value):
        assert PASSWORD not in str(exc), repr(exc)
        assert PASSWORD not in repr(exc), repr(exc)
        assert all(PASSWORD not in str(arg) for arg in exc.args)


# --------------------------------------------------------------------------- unreachable databases


def test_unreachable_postgres_is_database_unavailable():
    url = f"postgresql://u:{PASSWORD}@127.0.0.1:1/db"
    with pytest.raises(DatabaseUnavailable) as info:
        bitloot_lite.connect(url)
    exc = info.value
    assert isinstance(exc, BitlootError)
    assert not isinstance(exc, ConfigurationError)
    assert_safe_message(exc, "postgresql://u:***@127.0.0.1:1/db", PASSWORD)
    assert "cannot connect to postgresql://u:***@127.0.0.1:1/db" in str(exc)
    for link in chain(exc):
        assert PASSWORD not in str(link) and PASSWORD not in repr(link)
    assert database_proxy.obj is None


def test_unreachable_postgres_with_url_encoded_password():
    url = "postgresql://u:s3%40cr%3Aet@127.0.0.1:1/db"
    with pytest.raises(DatabaseUnavailable) as info:
        bitloot_lite.connect(url)
    message = str(info.value)
    assert "postgresql://u:***@127.0.0.1:1/db" in message
    assert "s3%40cr%3Aet" not in message and "s3@cr:et" not in message
    assert "\n" not in message


def test_sqlite_in_a_missing_directory_is_database_unavailable(tmp_path):
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'bitloot.db'}"
    with pytest.raises(DatabaseUnavailable) as info:
        bitloot_lite.connect(url)
    exc = info.value
    assert exc.url == url
    assert url in str(exc)
    assert "\n" not in str(exc)
    assert exc.__cause__ is None
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------------- PostgreSQL sessions


def _show_timezone(database):
    return database.execute_sql("SHOW timezone").fetchone()[0]


def test_postgres_sessions_run_in_utc(pg_url, pg_admin):
    name = pg_url.rsplit("/", 1)[1]
    # A server or database default far from UTC must not leak into our sessions.
    pg_admin.execute_sql(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/Los_Angeles'")
    database = bitloot_lite.connect(pg_url)
    try:
        assert _show_timezone(database) == "UTC"
        # Every connection, not only the first one.
        database.close()
        database.connect()
        assert _show_timezone(database) == "UTC"
        (offset,) = database.execute_sql(
            "SELECT EXTRACT(EPOCH FROM (now()::timestamp - (now() AT TIME ZONE 'UTC')))"
        ).fetchone()
        assert float(offset) == 0
    finally:
        database.close()


def test_postgres_url_options_win(pg_url):
    url = pg_url + "?options=-c%20timezone%3DAsia/Tokyo"
    database = bitloot_lite.connect(url)
    try:
        assert _show_timezone(database) == "Asia/Tokyo"
    finally:
        database.close()


def test_postgres_utc_also_with_other_url_parameters(pg_url):
    database = bitloot_lite.connect(pg_url + "?connect_timeout=5&application_name=bitloot-test")
    try:
        assert _show_timezone(database) in ("UTC", "Etc/UTC")  # the server's default may be UTC
        (name,) = database.execute_sql("SHOW application_name").fetchone()
        assert name == "bitloot-test"
    finally:
        database.close()


# --------------------------------------------------------------------------- binding


def _emails(database):
    return sorted(e for (e,) in database.execute_sql('SELECT "email" FROM "orders"'))


def test_connect_binds_the_models_to_the_latest_database(tmp_path, db_url):
    first = bitloot_lite.connect(f"sqlite:///{tmp_path / 'a.db'}")
    bitloot_lite.migrate(first)
    Order.create(email="to-a@example.com")
    assert Order._meta.database.obj is first

    second = bitloot_lite.connect(db_url)
    try:
        assert database_proxy.obj is second
        bitloot_lite.migrate(second)
        order = Order.create(email="to-b@example.com")
        assert Order.get_by_id(order.id).email == "to-b@example.com"
        assert [o.email for o in Order.select()] == ["to-b@example.com"]
        assert _emails(second) == ["to-b@example.com"]
        assert _emails(first) == ["to-a@example.com"]
    finally:
        first.close()
        second.close()


def test_connect_returns_an_open_database(db_url):
    database = bitloot_lite.connect(db_url)
    try:
        assert not database.is_closed()
        assert database_proxy.obj is database
        assert database.execute_sql("SELECT 1").fetchone()[0] == 1
        # Connecting again to the same URL gives a new, independent database.
        again = bitloot_lite.connect(db_url)
        assert again is not database and database_proxy.obj is again
        again.close()
    finally:
        database.close()

