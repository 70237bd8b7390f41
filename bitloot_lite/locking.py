"""One migrating process at a time, however many deploys start at once.

PostgreSQL: a session-level advisory lock, taken by polling
``pg_try_advisory_lock``. A process blocked inside ``pg_advisory_lock()`` holds
a transaction open, and ``CREATE INDEX CONCURRENTLY`` in the process holding the
lock waits for every open transaction: the two would deadlock. Polling between
autocommit statements holds none. The lock dies with its session, so a killed
deploy never leaves it behind.

SQLite: exclusive ``flock``s on files named after the database file's real path
and its identity (see _FileLock), which the kernel releases when the process dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import cast

import peewee as pw

from . import validating as check
from .db import is_postgres
from .errors import LockTimeout

logger = logging.getLogger("bitloot_lite.locking")

#: The advisory lock's key: the first 8 bytes of sha256(b"bitloot-lite migrate"), signed.
LOCK_KEY = -0x7F2C_9C1C_9640_6BAD

#: How often a waiting process tries again (seconds).
POLL_INTERVAL = 0.1


@contextlib.contextmanager
def migration_lock(database: pw.Database, timeout: float | None = None,
                   on_wait: Callable[[str | None], object] | None = None) -> Iterator[None]:
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
            raise LockTimeout(timeout, lock.holder())  # type: ignore[arg-type]  # a deadline: a timeout
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
    def __init__(self, database: pw.Database) -> None:
        self.database = database

    def try_acquire(self) -> bool:
        cursor = self.database.execute_sql("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        return cast(bool, cursor.fetchone()[0])

    def release(self) -> None:
        lost = getattr(self.database, "connection_lost", None)
        if lost is not None and lost():
            return  # the lock went with the session
        self.database.execute_sql("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def holder(self) -> str | None:
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
    """Exclusive ``flock``s that every path to one SQLite database file agrees on.

    A lock keyed on the path given would let two names of one file (a symlink,
    a hard link, ``./x.db`` and ``/srv/x.db``) migrate it at once. So:

    - ``<real path>.migrate-lock`` beside the file the symlinks resolve to (also
      seen by other containers that share that volume);
    - ``bitloot-lite-migrate-<st_dev>-<st_ino>.lock`` in the machine's lock
      directory (/run/lock, else /tmp), named after the file's identity: hard
      links share the inode but no path, and may live in any directory.

    Not a flock on the database file itself: SQLite holds POSIX (fcntl) locks
    on it, and closing any other descriptor of that file drops all of this
    process's POSIX locks on it (and on NFS, flock is emulated with fcntl
    locks), which would silently unlock SQLite's connection.

    Hard-linked names also get a -wal and -shm of their own from SQLite (it
    resolves symlinks, not hard links), so a change committed through one name
    may sit in that name's WAL, unseen through the other: for a file with more
    than one link, the lock is released only after a checkpoint has copied the
    WAL into the database file, where the next holder reads it (without that,
    004 ran twice through a hard link even under one lock). A FULL checkpoint
    waits (up to the busy timeout) for readers of older snapshots, so a file
    with one name, where it is not needed, gets none.
    """

    #: Where the identity lock files go: one directory for every process of the machine.
    IDENTITY_DIRS = ("/run/lock", "/tmp")

    def __init__(self, database: pw.Database) -> None:
        self.database = database
        name = database.database
        memory = name in ("", ":memory:") or name.startswith("file::memory:")
        self.real = None if memory else os.path.realpath(name)
        self.paths = [] if memory else self._lock_paths(self.real)  # type: ignore[arg-type]  # real: not memory
        self.fds: list[int] = []
        self.blocked: str | None = None

    @classmethod
    def _lock_paths(cls, real: str) -> list[str]:
        paths = [f"{real}.migrate-lock"]
        try:
            identity = os.stat(real)
        except OSError:  # not created yet: the SQLite connection has not written it
            return paths
        folder = next((d for d in cls.IDENTITY_DIRS if os.path.isdir(d)), None)
        if folder is not None:
            paths.append(os.path.join(
                folder, f"bitloot-lite-migrate-{identity.st_dev}-{identity.st_ino}.lock"))
        return paths

    def try_acquire(self) -> bool:
        import fcntl

        for path in self.paths:  # always in this order: no two processes wait on each other
            fd, writable = _open_lock_file(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.blocked = path
                self.release(checkpoint=False)
                return False
            if writable:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
            self.fds.append(fd)
        return True

    def release(self, checkpoint: bool = True) -> None:
        if checkpoint and self.fds:
            self._checkpoint()
        while self.fds:
            os.close(self.fds.pop())  # closing the descriptor drops the flock

    def _checkpoint(self) -> None:
        try:
            if os.stat(self.real).st_nlink > 1:  # type: ignore[arg-type]  # locked: a file
                self.database.execute_sql("PRAGMA wal_checkpoint(FULL)")
        except Exception as exc:  # noqa: BLE001 - the lock must be released regardless
            logger.warning("could not checkpoint the WAL before releasing the lock: %s", exc)

    def holder(self) -> str | None:
        for path in [self.blocked] if self.blocked else self.paths:
            try:
                with open(path, encoding="ascii") as handle:
                    pid = handle.read().strip()
            except (OSError, TypeError, UnicodeDecodeError):
                continue
            if pid:
                return f"pid {pid}"
        return None


def _open_lock_file(path: str) -> tuple[int, bool]:
    """(descriptor, writable) of lock file ``path``, created if missing.

    In a sticky world-writable directory (/tmp, /run/lock) another user's file
    cannot be opened with O_CREAT (fs.protected_regular) nor, mode 0644, for
    writing: opened without O_CREAT first, read-only if need be (flock needs
    no write access).
    """
    for _ in range(3):
        for flags, writable in ((os.O_RDWR, True), (os.O_RDONLY, False)):
            try:
                return os.open(path, flags), writable
            except FileNotFoundError:
                break
            except PermissionError:
                continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # another process made it just now
            continue
        os.fchmod(fd, 0o666)  # whoever runs the next deploy may lock it too (umask)
        return fd, True
    return os.open(path, os.O_RDONLY), False
