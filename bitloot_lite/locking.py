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

import peewee as pw

from . import validating as check
from .db import is_postgres
from .errors import LockTimeout, LockUntrusted, ReadOnlyServer

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

    def __init__(self, database: pw.Database) -> None:
        self.database = database
        self.pid: int | None = None
        self.checked = False

    def _check(self) -> None:
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

    def try_acquire(self) -> bool:
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

    def release(self) -> None:
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
      links share the inode but no path, and may live in any directory. It is
      removed on release (and checked to be still there once locked).

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
        self.fds: list[tuple[str, int]] = []
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
        for path in self.paths:  # always in this order: no two processes wait on each other
            fd = self._lock(path)
            if fd is None:
                self.blocked = path
                self.release(checkpoint=False)
                return False
            self.fds.append((path, fd))
        return True

    def _lock(self, path: str) -> int | None:
        """The descriptor of ``path``, flocked; None if another process holds it."""
        import fcntl

        for _ in range(10):
            fd, writable = _open_lock_file(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            if self._current(path, fd):
                if writable:
                    os.ftruncate(fd, 0)
                    os.write(fd, str(os.getpid()).encode())
                return fd
            os.close(fd)  # its holder removed it as we opened it: lock the new one
        raise RuntimeError(f"the lock file {path} keeps being replaced")

    def _current(self, path: str, fd: int) -> bool:
        """Whether ``fd`` is still the file at ``path``: the identity lock file is
        removed on release, so one opened just before that locks nothing."""
        if path == self.paths[0]:
            return True  # beside the database: kept, as it always was
        try:
            now, ours = os.stat(path), os.fstat(fd)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino)

    def release(self, checkpoint: bool = True) -> None:
        if checkpoint and self.fds:
            self._checkpoint()
        while self.fds:
            path, fd = self.fds.pop()
            if path != self.paths[0]:
                # Removed while still locked (see _current), so that the machine's lock
                # directory does not collect a file for every database ever migrated.
                with contextlib.suppress(OSError):  # another user's, in a sticky directory
                    os.unlink(path)
            os.close(fd)  # closing the descriptor drops the flock

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
