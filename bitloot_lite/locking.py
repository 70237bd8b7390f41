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
from .errors import LockTimeout

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
    def __init__(self, database):
        self.database = database

    def try_acquire(self):
        cursor = self.database.execute_sql("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        return cursor.fetchone()[0]

    def release(self):
        lost = getattr(self.database, "connection_lost", None)
        if lost is not None and lost():
            return  # the lock went with the session
        self.database.execute_sql("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

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
