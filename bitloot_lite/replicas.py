"""Read replicas: which database a read goes to, with read-your-writes.

``connect(url, replica=REPLICA_URL)`` attaches a :class:`Replica` to the primary
Database (``database.replica``). A read that asks for it (the read-only service
calls; model queries through ``from_replica``) then goes to the replica unless:

- the calling thread is inside a transaction on the primary (everything in a
  transaction stays on the primary);
- this process wrote since the replica last showed it had replayed that far:
  after a write, the next read compares the primary's ``pg_current_wal_insert_lsn()``
  with the replica's ``pg_last_wal_replay_lsn()`` (one query each), and reads on
  the primary until the replica has caught up: a read after a write in the same
  process sees it, and no read ever waits for the replica;
- the replica is down, or lags further behind than ``max_lag`` seconds
  (``now() - pg_last_xact_replay_timestamp()`` while it has WAL left to replay,
  checked at most every ``check_every`` seconds): reads then go to the primary,
  which is logged once, and so is the replica's return.

Writes always go to the primary. Whether "this process wrote" is known without
a query: the primary notes every write when it completes (a service write, a
model statement other than a SELECT outside a transaction, any COMMIT), so that
a read that starts after a write returned, in any thread, sees it.
"""

import contextlib
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import peewee as pw

from . import validating as check
from .db import DRIVER_ERRORS, database_proxy, is_read, mask_url, open_database, unwrap
from .errors import BitlootError, ConfigurationError

P = ParamSpec("P")
R = TypeVar("R")
Q = TypeVar("Q", bound=pw.BaseQuery)

logger = logging.getLogger("bitloot_lite.replicas")

#: How far behind (seconds) a replica may be and still serve reads.
DEFAULT_MAX_LAG = 5.0

#: How often (seconds) the replica's lag is measured; a read between two
#: measurements trusts the last one (read-your-writes is checked regardless).
CHECK_EVERY = 1.0

#: After the replica failed, how long (seconds) reads stay on the primary
#: before the replica is tried again.
RETRY_AFTER = 5.0

_STATE = """
SELECT pg_is_in_recovery(),
       %s::pg_lsn IS NULL OR NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= %s::pg_lsn,
       CASE WHEN NOT pg_is_in_recovery()
                 OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
            THEN 0
            ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp()
                                             - pg_last_xact_replay_timestamp()), 0)::float8
       END"""


class Replica:
    """The read replica of ``primary`` at ``url``, and the routing of reads to it."""

    database: pw.Database | None

    def __init__(self, primary: pw.Database, url: str, *, max_lag: float = DEFAULT_MAX_LAG,
                 check_every: float = CHECK_EVERY, retry_after: float = RETRY_AFTER) -> None:
        if not isinstance(primary, pw.PostgresqlDatabase):
            raise ConfigurationError("read replicas are for PostgreSQL: the primary is a "
                                     f"{type(primary).__name__}")
        if not isinstance(url, str) or not url:
            raise ConfigurationError("the replica's URL must be a str, e.g. "
                                     "postgresql://app@replica.internal/bitloot")
        self.primary = primary
        self.url = url
        self.where = mask_url(url)
        self.max_lag = check.seconds("max_lag", max_lag)
        self.check_every = check.seconds("check_every", check_every)
        self.retry_after = check.seconds("retry_after", retry_after)
        self.database = None  # opened on the first read, so that connect() never waits on it
        self._lock = threading.Lock()
        self._writes = itertools.count(1)
        #: Bumped (next(self._writes)) after every write on the primary.
        self.generation = 0
        #: (generation, LSN the replica must have replayed, or None once it has).
        self._target: tuple[int, str | None] = (0, None)
        self._checked_at = float("-inf")
        self._down_until = float("-inf")
        self._usable = True  # lag within the bound, as last measured
        self._fallback: str | None = None  # why reads are on the primary now (logged once), or None
        self._local = threading.local()

    # -- what the primary tells us ---------------------------------------------------

    def wrote(self) -> None:
        """A write on the primary completed: the next read checks the replica has it."""
        self.generation = next(self._writes)

    # -- choosing -----------------------------------------------------------------------

    def reader(self) -> pw.Database:
        """The database a read should run on now: the replica, or the primary (see above)."""
        self._local.chosen = None  # a failure while choosing is not the replica's read
        chosen = self._choose()
        self._local.chosen = chosen
        return chosen

    def _choose(self) -> pw.Database:
        primary = self.primary
        if primary.in_transaction():
            return primary
        now = time.monotonic()
        if now < self._down_until:
            return primary
        replica = self._open()
        if replica is None:
            return primary
        generation, (seen, target) = self.generation, self._target
        if generation != seen:  # a write since the last look: how far must the replica be
            target = self._primary_lsn()
            self._target = (generation, target)
        if target is None and now - self._checked_at < self.check_every:
            return replica if self._usable else primary
        try:
            _recovering, replayed, lag = replica.execute_sql(_STATE, (target, target)).fetchone()
        except (BitlootError,) + DRIVER_ERRORS as exc:
            self.failed(exc)
            return primary
        self._checked_at = now
        self._usable = lag <= self.max_lag
        if not self._usable:
            self._fall_back(f"it lags {lag:.1f}s behind the primary (max_lag {self.max_lag:g}s)")
        elif self._fallback is not None:
            logger.info("replica %s is back: reads go to it again", self.where)
            self._fallback = None
        if not replayed:  # read-your-writes: the primary has what we wrote, the replica not yet
            return primary
        if target is not None and self._target == (generation, target):
            self._target = (generation, None)
        return replica if self._usable else primary

    def _open(self) -> pw.Database | None:
        if self.database is not None:
            return self.database
        with self._lock:
            if self.database is None:
                try:
                    self.database = open_database(self.url)
                except BitlootError as exc:
                    self.failed(exc)
                    return None
        return self.database

    def _primary_lsn(self) -> str:
        # The insert position, not pg_current_wal_lsn() (the write position): with
        # synchronous_commit = off our COMMIT may not be written out yet. Through
        # execute_sql, so that a connection the server closed is reopened (a read:
        # it notes no write).
        return cast(str, self.primary.execute_sql(
            "SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])

    # -- when the replica fails ------------------------------------------------------------

    def ran_on_replica(self) -> bool:
        """Whether this thread's last ``reader()`` chose the replica."""
        chosen = getattr(self._local, "chosen", None)
        return chosen is not None and chosen is self.database

    def failed(self, exc: BaseException) -> None:
        """The replica failed a read (or would not connect): the primary for a while."""
        self._down_until = time.monotonic() + self.retry_after
        self._checked_at = float("-inf")  # measure again when it is back
        lines = str(exc).strip().splitlines()
        self._fall_back(f"it failed: {lines[0] if lines else type(exc).__name__}")
        database = self.database
        if database is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                database.close()  # a new connection next time

    def _fall_back(self, why: str) -> None:
        if self._fallback is None:
            logger.warning("replica %s: %s; reads go to the primary until it recovers",
                           self.where, why)
        self._fallback = why

    @property
    def fallback(self) -> str | None:
        """Why reads are on the primary now (None while the replica serves them)."""
        return self._fallback

    def close(self) -> None:
        """Close this thread's connection to the replica (if open)."""
        if self.database is not None:
            self.database.close()


def _tracked(cls: type[pw.Database]) -> type[pw.Database]:
    """``cls`` (the primary's class) noting each write to its replica as it completes."""

    class Tracked(cls):  # type: ignore[valid-type,misc]  # a class made at run time
        __slots__ = ()  # the same layout as cls, so that an instance's class may change

        def execute_sql(self, sql: str, params: Any = None) -> Any:
            cursor = super().execute_sql(sql, params)
            # A model statement outside a transaction is committed once it returns;
            # in one, the COMMIT says so. A read (db.is_read) writes nothing.
            if not self.in_transaction() and not is_read(sql):
                self.replica.wrote()
            return cursor

        def commit(self) -> Any:
            result = super().commit()
            self.replica.wrote()
            return result

        def close(self) -> Any:
            self.replica.close()
            return super().close()

    Tracked.__name__, Tracked.__qualname__ = cls.__name__, cls.__qualname__
    Tracked.__module__ = cls.__module__
    Tracked.tracked = True
    return Tracked


_TRACKED: dict[type[pw.Database], type[pw.Database]] = {}


def attach(primary: pw.Database, url: str, **options: float) -> Replica:
    """Give ``primary`` the read replica at ``url`` (``primary.replica``); returns it.

    The primary becomes an instance of a subclass of its class that notes its
    writes (the same object, so every reference to it, the models' included,
    stays valid; a subclass made here rather than in db.py, so that a database
    without a replica pays nothing).
    """
    replica = Replica(primary, url, **options)
    cls = type(primary)
    if not getattr(cls, "tracked", False):
        if cls not in _TRACKED:
            _TRACKED[cls] = _tracked(cls)
        primary.__class__ = _TRACKED[cls]
    primary.replica = replica  # type: ignore[attr-defined]  # what routed() reads
    return replica


# -- the hooks the service layer calls (statements.py, services.py) ------------------------

#: Per thread: ``reads = True`` while a ``reads`` call runs with a replica attached.
_routing = threading.local()


def reads(function: Callable[P, R]) -> Callable[P, R]:
    """A read-only service call (under ``statements.api``): ``bound_database()`` gives
    it the replica when the routing allows. A read the replica fails (it went down,
    or canceled the query for its recovery) runs once more, on the primary."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        replica = getattr(unwrap(database_proxy), "replica", None)
        if replica is None:
            return function(*args, **kwargs)
        _routing.reads = True
        try:
            return function(*args, **kwargs)
        except DRIVER_ERRORS as exc:
            if not replica.ran_on_replica():
                raise
            replica.failed(exc)
        finally:
            _routing.reads = False
        return function(*args, **kwargs)  # the replica is marked failed: the primary

    return wrapper


def routed(database: pw.Database) -> pw.Database:
    """``database``, or, inside a ``reads`` call, where its read should run."""
    if getattr(_routing, "reads", False):
        return database.replica.reader()  # type: ignore[attr-defined, no-any-return]
    return database


def wrote(database: pw.Database) -> None:
    """A write on ``database`` committed (outside a transaction): tell its replica."""
    replica = getattr(database, "replica", None)
    if replica is not None:
        replica.wrote()


def reader(database: pw.Database) -> pw.Database:
    """Where a read on ``database`` should run: its replica's choice, or itself."""
    replica = getattr(database, "replica", None)
    return database if replica is None else replica.reader()


def read_database() -> pw.Database:
    """The database a model query may read from now: the bound primary's replica when
    it may serve the read (see the module's doc), else the primary itself."""
    database = unwrap(database_proxy)
    if database is None:
        raise ConfigurationError("no database: call bitloot_lite.connect() first")
    return reader(database)


def from_replica(query: pw.SelectBase) -> pw.SelectBase:
    """``query`` (a peewee SELECT) bound to ``read_database()``, for reading::

        for order in bitloot_lite.from_replica(Order.select().where(...)):

    Without a replica, or when it may not serve the read now, it reads the
    primary. Only reads belong here: a write bound to a replica is refused by it.
    A query that fails on the replica is not retried on the primary (the service
    reads are).
    """
    return query.bind(read_database())
