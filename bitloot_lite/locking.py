"""One migrating process at a time, however many deploys start at once.

PostgreSQL: a session-level advisory lock, taken by polling
``pg_try_advisory_lock``. A process blocked inside ``pg_advisory_lock()`` holds
a transaction open, and ``CREATE INDEX CONCURRENTLY`` in the process holding the
lock waits for every open transaction: the two would deadlock. Polling between
autocommit statements holds none. The lock dies with its session, so a killed
deploy never leaves it behind.

SQLite: an exclusive ``flock`` on a file beside the database file, which the
kernel releases when the process dies.
"""

import contextlib
import logging
import os
import time

from . import validating as check
from .db import is_postgres
from .errors import LockTimeout, LockUntrusted, ReadOnlyServer

logger = logging.getLogger("bitloot_lite.locking")

#: The advisory lock's key: the first 8 bytes of sha256(b"bitloot-lite migrate"), signed.
LOCK_KEY = -0x7F2C_9C1C_9640_6BAD

#: How often a waiting process tries again (seconds).
POLL_INTERVAL = 0.1


@contextlib.contextmanager
def migration_lock(database, timeout=None, on_wait=None):
    """Hold the migration lock of ``database`` for the ``with`` block.

    Waits up to ``timeout`` seconds (None: for ever), calling ``on_wait(holder)``
    once if it has to wait; raises LockTimeout when the time runs out.
    """
    timeout = check.seconds("lock_timeout", timeout, finite=False)
    lock = _PostgresLock(database) if is_postgres(database) else _FileLock(database)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while not lock.try_acquire():
        if not waited:
            waited = True
            holder = lock.holder()
            logger.info("waiting for the migration lock%s", f" held by {holder}" if holder else "")
            if on_wait is not None:
                on_wait(holder)
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout(timeout, lock.holder())
        time.sleep(POLL_INTERVAL)
    # A PostgreSQL advisory lock belongs to the session: the database must not
    # reconnect behind our back while we hold it (db.PostgresqlDatabase.pinned).
    pinned = getattr(database, "pinned", contextlib.nullcontext)
    try:
        with pinned():
            yield
    finally:
        lock.release()


class _PostgresLock:
    """The advisory lock, on a connection proven to reach the server itself.

    A session-level lock is only a lock if our session is ours alone. Through
    a transaction pooler it is not: the server session holding the lock goes
    back to the pool between statements, another client's ``migrate`` on that
    session is granted the lock too (it is re-entrant), and our unlock may run
    on a session that never held it. So before taking it: the server must be a
    primary, and the backend must be the one the connection was opened to (a
    pooler hands out a backend id of its own making). After taking it, the
    next statement must still run on the session that took it.
    """

    def __init__(self, database):
        self.database = database
        self.pid = None
        self.checked = False

    def _check(self):
        connection = self.database.connection()
        (pid, standby), = self.database.execute_sql(
            "SELECT pg_backend_pid(), pg_is_in_recovery()").fetchall()
        if standby:
            raise ReadOnlyServer()
        claimed = connection.get_backend_pid() if hasattr(connection, "get_backend_pid") else pid
        if claimed != pid:
            raise LockUntrusted(f"a connection pooler (PgBouncer?) answers for the server "
                                f"(the server's backend is pid {pid}, the connection was told "
                                f"{claimed})")
        self.checked = True

    def try_acquire(self):
        if not self.checked:
            self._check()
        got, pid = self.database.execute_sql(
            "SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (LOCK_KEY,)).fetchone()
        if not got:
            return False
        self.pid = pid
        (now,), = self.database.execute_sql("SELECT pg_backend_pid()").fetchall()
        if now != pid:  # a pooler moved us to another session between two statements
            self.release()
            raise LockUntrusted(f"the server session changed between two statements "
                                f"(pid {pid}, then {now})")
        return True

    def release(self):
        lost = getattr(self.database, "connection_lost", None)
        if lost is not None and lost():
            return  # the lock went with the session
        (released,), = self.database.execute_sql(
            "SELECT pg_advisory_unlock(%s)", (LOCK_KEY,)).fetchall()
        if released or self.pid is None:
            return
        # Our unlock ran on a session that did not hold it: the session we took it
        # on must not keep it (a pooled session would hold it for ever).
        logger.error("the migration lock was not held by this session (pid %s was "
                     "expected); ending that session so that the lock goes with it", self.pid)
        self.database.execute_sql(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' "
            "AND l.pid = %s AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
            (self.pid, (LOCK_KEY >> 32) & 0xFFFFFFFF, LOCK_KEY & 0xFFFFFFFF))

    def holder(self):
        # A bigint advisory key shows in pg_locks as classid (high half), objid (low half).
        row = self.database.execute_sql(
            "SELECT a.pid, a.application_name, a.client_addr, a.state FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            # Advisory locks belong to one database; another one's deploy is not our holder.
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = %s AND l.objid = %s LIMIT 1",
            ((LOCK_KEY >> 32) & 0xFFFFFFFF, LOCK_KEY & 0xFFFFFFFF),
        ).fetchone()
        if row is None:
            return None
        pid, application, address, state = row
        return f"pid {pid}" + (f" ({application})" if application else "") + (
            f", {state}" if state else ""
        )


class _FileLock:
    def __init__(self, database):
        name = database.database
        memory = name in ("", ":memory:") or name.startswith("file::memory:")
        self.path = None if memory else f"{os.path.abspath(name)}.migrate-lock"
        self.fd = None

    def try_acquire(self):
        if self.path is None:  # an in-memory database belongs to this process alone
            return True
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def holder(self):
        try:
            with open(self.path, encoding="ascii") as handle:
                pid = handle.read().strip()
        except (OSError, TypeError):
            return None
        return f"pid {pid}" if pid else None
