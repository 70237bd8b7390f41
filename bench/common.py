"""What every benchmark shares: settings, throwaway databases, raw connections, timing.

Fairness: every contender connects SQLite with the pragmas bitloot-lite uses
(``bitloot_lite.db.SQLITE_PRAGMAS``: foreign keys, WAL, busy timeout; the
default ``synchronous``) and PostgreSQL with its session options; contenders
run in turn (A, B, C, A, B, C ...) after a warm-up, and medians are reported,
so that the machine's noise hits every contender alike.
"""

import contextlib
import datetime as dt
import gc
import itertools
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from bitloot_lite.db import SET_UTC, SQLITE_PRAGMAS, mask_url

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgres")

# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """How big and how long: ``scale`` shrinks every row count and repetition count."""

    scale: float = 1.0
    reps: int = 7
    pg_url: str = DEFAULT_PG_URL

    @classmethod
    def from_env(cls, **overrides):
        """$BITLOOT_BENCH_SCALE, $BITLOOT_BENCH_REPS, $BITLOOT_BENCH_PG_URL, then ``overrides``."""
        values = {
            "scale": float(os.environ.get("BITLOOT_BENCH_SCALE", "1")),
            "reps": int(os.environ.get("BITLOOT_BENCH_REPS", "7")),
            "pg_url": os.environ.get("BITLOOT_BENCH_PG_URL") or DEFAULT_PG_URL,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["scale"] <= 0 or values["reps"] < 1:
            raise SystemExit("BITLOOT_BENCH_SCALE must be > 0 and BITLOOT_BENCH_REPS >= 1")
        return cls(**values)

    def scaled(self, count, minimum=1):
        """``count`` at this scale, at least ``minimum``."""
        return max(minimum, round(count * self.scale))


# --------------------------------------------------------------------------- databases


#: The name prefix of the throwaway PostgreSQL databases (a test sets its own, to find
#: exactly its run's): always bitloot_bench_..., which .ci/run clears after a crash.
_PREFIX = os.environ.get("BITLOOT_BENCH_DB_PREFIX", "bitloot_bench_")
if not _PREFIX.startswith("bitloot_bench_"):
    raise SystemExit("BITLOOT_BENCH_DB_PREFIX must start with bitloot_bench_")


class Databases:
    """Throwaway databases: SQLite files in a temporary folder, PostgreSQL databases
    named ``bitloot_bench_<random>`` on the server of ``pg_url``; ``close`` removes all."""

    def __init__(self, pg_url):
        self.pg_url = pg_url
        self.folder = tempfile.mkdtemp(prefix="bitloot_bench_")
        self._admin = None
        self._created = []

    def new(self, backend, template=None):
        return self.postgres(template) if backend == "postgres" else self.sqlite()

    def sqlite(self):
        return f"sqlite:///{os.path.join(self.folder, uuid.uuid4().hex[:12] + '.db')}"

    def postgres(self, template=None):
        name = f"{_PREFIX}{uuid.uuid4().hex[:12]}"
        sql = f'CREATE DATABASE "{name}"'
        if template:
            sql += f' TEMPLATE "{database_name(template)}"'
        self.admin().cursor().execute(sql)
        self._created.append(name)
        return urlunsplit(urlsplit(self.pg_url)._replace(path=f"/{name}"))

    def drop(self, url):
        if url.startswith("sqlite"):
            for suffix in ("", "-wal", "-shm", ".migrate-lock"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(sqlite_path(url) + suffix)
            return
        name = database_name(url)
        try:
            self.admin().cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except (psycopg2.Error, SystemExit):
            return  # the server went away: close() drops it
        self._created.remove(name)

    def server_alive(self):
        """Whether the admin connection still works (False after a server restart)."""
        try:
            self.admin().cursor().execute("SELECT 1")
        except (psycopg2.Error, SystemExit):
            if self._admin is not None:
                with contextlib.suppress(psycopg2.Error):
                    self._admin.close()
            self._admin = None
            return False
        return True

    def wait_for_server(self, seconds=180, stable=0):
        """Until the server answers and has been up for ``stable`` seconds (a server
        being restarted again and again settles first)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                cursor = self.admin().cursor()
                cursor.execute("SELECT extract(epoch FROM now() - pg_postmaster_start_time())")
                if cursor.fetchone()[0] >= stable:
                    return
            except (psycopg2.Error, SystemExit):
                self._admin = None
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                return
            time.sleep(1)

    def admin(self):
        if self._admin is not None and self._admin.closed:
            self._admin = None
        if self._admin is None:
            try:
                self._admin = psycopg2.connect(self.pg_url, application_name="bitloot_bench")
            except psycopg2.Error as exc:
                raise SystemExit(f"bench: cannot reach PostgreSQL at {mask_url(self.pg_url)}: "
                                 f"{str(exc).strip().splitlines()[0]}") from None
            self._admin.autocommit = True
        return self._admin

    def close(self):
        if self._created and not self.server_alive():
            with contextlib.suppress(psycopg2.Error, SystemExit):
                self.wait_for_server(60)
        for name in list(self._created):
            with contextlib.suppress(psycopg2.Error, SystemExit):
                self.admin().cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._created.remove(name)
        if self._admin is not None:
            with contextlib.suppress(psycopg2.Error):
                self._admin.close()
            self._admin = None
        shutil.rmtree(self.folder, ignore_errors=True)


def database_name(url):
    return urlsplit(url).path.lstrip("/")


def sqlite_path(url):
    return url.split("sqlite:///", 1)[1]


def backend_of(url):
    return "sqlite" if url.startswith("sqlite") else "postgres"


def raw_connect(url):
    """A raw driver connection set up exactly as bitloot-lite sets up its own.

    sqlite3 in autocommit mode (``isolation_level=None``, the transactions are
    explicit BEGIN/COMMIT, as peewee's), with bitloot-lite's pragmas; psycopg2
    with its session options (the driver's default: a transaction is opened
    by the first statement and ended by commit()).
    """
    if backend_of(url) == "sqlite":
        connection = sqlite3.connect(sqlite_path(url), isolation_level=None)
        apply_pragmas(connection)
        return connection
    connection = psycopg2.connect(url)
    set_utc(connection)
    return connection


def set_utc(connection):
    """A psycopg2 connection's session in UTC, as bitloot-lite's (a SET: PgBouncer
    refuses an options= startup parameter, and keeps the time zone per client)."""
    with connection.cursor() as cursor:
        cursor.execute(SET_UTC)
    connection.commit()


def apply_pragmas(connection):
    """bitloot-lite's SQLite pragmas, on a DB-API connection of another contender."""
    for name, value in SQLITE_PRAGMAS.items():
        connection.execute(f"PRAGMA {name} = {value}")


def utc_now():
    """Now, as the naive UTC datetime a ``timestamp`` column holds."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------- the work


#: A checkout: two items of quantity 2, then two key references for each.
CHECKOUT_EMAIL = "gamer@example.com"
CHECKOUT_ITEMS = (("kinguin-12345", 2), ("kinguin-777", 2))
CHECKOUT_TOTAL = "39.98"
KEYS_PER_ITEM = 2


def key_refs(tag, number, item, count):
    """``count`` distinct object-storage references for item ``item`` of checkout ``number``."""
    return [f"keys/{tag}/{number}/{item}-{k}.enc" for k in range(count)]


class TooManyKeys(Exception):
    """The hand-written contenders' refusal: the item has no room for the keys."""


# --------------------------------------------------------------------------- timing


@dataclass
class Contender:
    """One way of doing the work: ``op(job)`` is timed; ``prepare(n)`` makes its job untimed."""

    name: str
    op: object
    prepare: object = None

    def job(self, number):
        return number if self.prepare is None else self.prepare(number)


@dataclass
class Rates:
    """Operations per second of each contender, one figure per repetition."""

    rates: dict = field(default_factory=dict)

    def median(self, name):
        return statistics.median(self.rates[name])

    def spread(self, name):
        return min(self.rates[name]), max(self.rates[name])


def interleave(contenders, reps, ops, warmup):
    """Run ``warmup`` operations of each contender, then ``reps`` rounds in which each
    contender in turn times ``ops`` operations (A, B, C, A, B, C ...). Returns Rates."""
    numbers = itertools.count()
    for contender in contenders:
        for _ in range(warmup):
            contender.op(contender.job(next(numbers)))
    result = Rates({contender.name: [] for contender in contenders})
    for _ in range(reps):
        for contender in contenders:
            jobs = [contender.job(next(numbers)) for _ in range(ops)]
            gc.collect()  # nobody pays for the garbage of the one before
            started = time.perf_counter()
            for job in jobs:
                contender.op(job)
            result.rates[contender.name].append(ops / (time.perf_counter() - started))
    return result


# --------------------------------------------------------------------------- output


@dataclass
class Target:
    """A target of the issue and whether this run met it (None: a figure only)."""

    scenario: str
    backend: str
    wanted: str
    measured: str
    met: bool | None


def table(headers, rows):
    """``rows`` under ``headers``, columns aligned (numbers to the right)."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(
            cell.rjust(width) if _numeric(cell) else cell.ljust(width)
            for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line([str(h) for h in headers]), line(["-" * w for w in widths]),
                      *(line(r) for r in rows)])


def _numeric(cell):
    return bool(cell) and (cell[0].isdigit() or cell[0] in "+-.") and cell[-1] not in ":"


def rate(value):
    """Operations per second, to 3 significant digits."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


# --------------------------------------------------------------------------- the machine


def machine(pg_url):
    """The facts the figures depend on, as (label, value) pairs."""
    try:
        with contextlib.closing(psycopg2.connect(pg_url)) as connection:
            cursor = connection.cursor()
            cursor.execute("SHOW server_version")
            pg_version = cursor.fetchone()[0]
    except psycopg2.Error:
        pg_version = "unreachable"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info
                    if line.startswith("model name")), cpu)
    return [
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("cpu", cpu),
        ("python", sys.version.split()[0]),
        ("PostgreSQL", pg_version),
        ("SQLite", sqlite3.sqlite_version),
        ("platform", platform.platform()),
    ]


def test_servers():
    """The clone's tests/servers.py (private primaries, standbys, PgBouncers), loaded from
    its path: ``import tests`` may find another project's package of that name in
    site-packages (db-to-sqlite, in the bench extra, installs one)."""
    import importlib.util
    import sys

    name = "bitloot_test_servers"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "tests" / "servers.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
