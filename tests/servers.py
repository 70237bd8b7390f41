"""Private servers for the tests that must restart, promote or pool one.

The machine's shared PostgreSQL server is never restarted or reconfigured: a test
that needs to do so starts its own here, on a free loopback port, under a
temporary directory, with the machine's own binaries (``pg_config --bindir``):

    with servers.primary() as primary:              # initdb + pg_ctl start
        with servers.standby(primary) as standby:   # pg_basebackup -R, streaming
            standby.promote()
        with servers.pgbouncer(primary, "transaction") as bouncer:
            bouncer.url("postgres"); bouncer.reconnect()

Each context manager stops what it started and removes its directory, also when
the block fails. Tests run as root in CI and PostgreSQL refuses to: as root the
servers run as the ``postgres`` OS user, who owns the directory. The private
clusters trade durability for speed (fsync off, small shared_buffers) and run
with a time zone that is not UTC, so that a session left in the server's zone
shows. Without the binaries a test is skipped, and under CI=true it fails.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

#: How long to wait for a server to start, stop, promote or catch up (seconds).
WAIT = 60

#: Not UTC (and with daylight saving): a session left in it writes now() an hour or more off.
SERVER_TIMEZONE = "America/New_York"

_SETTINGS = f"""
# bitloot-lite test cluster: throwaway, so durability is traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 60
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
hot_standby = on
wal_keep_size = 64MB
timezone = '{SERVER_TIMEZONE}'
log_min_messages = warning
"""


def unavailable(reason):
    """Skip the test, or fail it under CI=true (where nothing may be skipped)."""
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def bindir():
    """The PostgreSQL server binaries' folder (or a skip / failure)."""
    try:
        path = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        unavailable(f"no pg_config: {exc}")
    for tool in ("initdb", "pg_ctl", "pg_basebackup", "postgres"):
        if not os.access(os.path.join(path, tool), os.X_OK):
            unavailable(f"no {tool} in {path}")
    return Path(path)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _owner():
    """(uid, gid) to run servers as: the postgres user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root and there is no postgres user to run servers as")
    return entry.pw_uid, entry.pw_gid


def _as_owner(owner):
    """subprocess keyword arguments that run the child as ``owner``."""
    if owner is None:
        return {}
    return {"user": owner[0], "group": owner[1], "extra_groups": []}


def _run(args, owner, cwd, timeout=WAIT):
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True,
                            cwd=cwd, timeout=timeout, **_as_owner(owner))
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                           f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


@contextlib.contextmanager
def _directory(prefix):
    """A new directory owned by the servers' user, removed after the block."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    owner = _owner()
    try:
        if owner is not None:
            os.chown(path, *owner)
        yield path, owner
    finally:
        shutil.rmtree(path, ignore_errors=True)


def connect(url, **kwargs):
    """A plain psycopg2 connection (autocommit) for the test's own inspections."""
    connection = psycopg2.connect(url, **kwargs)
    connection.autocommit = True
    return connection


def query(url, sql, params=None):
    """The rows of ``sql`` on a connection of its own."""
    connection = connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


class Cluster:
    """A private PostgreSQL server: its data directory, port and pg_ctl."""

    def __init__(self, root, owner, port, name):
        self.root, self.owner, self.port, self.name = root, owner, port, name
        self.data = root / name
        self.log = root / f"{name}.log"
        self.bin = bindir()

    def url(self, database="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def _ctl(self, *args):
        return _run([self.bin / "pg_ctl", "-D", self.data, *args], self.owner, self.root)

    def start(self):
        self._ctl("start", "-w", "-t", WAIT, "-l", self.log,
                  "-o", f"-p {self.port} -c unix_socket_directories='{self.root}'")
        return self

    def stop(self, mode="fast"):
        """Stop the server (``immediate``: as a crash would)."""
        if self.running():
            self._ctl("stop", "-w", "-t", WAIT, "-m", mode)

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def running(self):
        return (self.data / "postmaster.pid").exists() and subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"], capture_output=True,
            cwd=self.root, **_as_owner(self.owner)).returncode == 0

    def promote(self):
        """Promote a standby to a primary; returns once it accepts writes."""
        self._ctl("promote", "-w", "-t", WAIT)
        _wait(lambda: not self.in_recovery(), f"{self.name} to leave recovery")

    def in_recovery(self):
        return query(self.url(), "SELECT pg_is_in_recovery()")[0][0]

    def sql(self, sql, params=None, database="postgres"):
        return query(self.url(database), sql, params)

    def create_database(self, name):
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _wait(condition, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except psycopg2.Error:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _start(cluster):
    """Start ``cluster`` on a free port, trying another if that one was taken meanwhile."""
    for attempt in range(5):
        try:
            return cluster.start()
        except RuntimeError:
            if attempt == 4 or "could not bind" not in cluster.log_tail():
                raise RuntimeError(f"{cluster.name} did not start:\n{cluster.log_tail()}") from None
            cluster.port = free_port()
    return cluster


@contextlib.contextmanager
def primary():
    """A new private primary, started; stopped and removed after the block."""
    with _directory("bitloot-pg-") as (root, owner):
        cluster = Cluster(root, owner, free_port(), "primary")
        _run([cluster.bin / "initdb", "-D", cluster.data, "-U", "postgres", "--auth=trust",
              "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"], owner, root)
        with open(cluster.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(_SETTINGS)
        try:
            _start(cluster)
            yield cluster
        finally:
            with contextlib.suppress(Exception):
                cluster.stop("immediate")


@contextlib.contextmanager
def standby(of):
    """A streaming hot standby of the running primary ``of`` (pg_basebackup -R)."""
    with _directory("bitloot-standby-") as (root, owner):
        cluster = Cluster(root, owner, free_port(), "standby")
        _run([cluster.bin / "pg_basebackup", "-h", "127.0.0.1", "-p", of.port, "-U", "postgres",
              "-D", cluster.data, "-R", "-X", "stream", "-c", "fast", "--no-sync"], owner, root)
        try:
            _start(cluster)
            _wait(lambda: cluster.in_recovery() is True, "the standby to accept connections")
            yield cluster
        finally:
            with contextlib.suppress(Exception):
                cluster.stop("immediate")


def wait_replayed(primary_cluster, standby_cluster):
    """Until the standby has replayed everything the primary had written when called."""
    (lsn,), = primary_cluster.sql("SELECT pg_current_wal_lsn()::text")
    _wait(lambda: standby_cluster.sql(
        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0],
        "the standby to catch up")


class PgBouncer:
    """A PgBouncer process in front of a cluster, in one pooling mode."""

    def __init__(self, root, owner, port, mode, process):
        self.root, self.owner, self.port, self.mode, self.process = root, owner, port, mode, process

    def url(self, database="postgres", user="postgres", query=""):
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}" + (
            f"?{query}" if query else "")

    def admin(self, command):
        """Run ``command`` on the admin console (``SHOW SERVERS``, ``RECONNECT`` ...)."""
        connection = connect(self.url("pgbouncer"))
        try:
            with connection.cursor() as cursor:
                cursor.execute(command)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def reconnect(self):
        """Make PgBouncer close every server connection once it is released, so that
        the clients' next transactions run on new server connections (new sessions)."""
        self.admin("RECONNECT")

    def server_pids(self):
        """The backend pids of PgBouncer's server connections to ``postgres``."""
        return self.admin("SHOW SERVERS")

    def log_tail(self, lines=30):
        try:
            text = (self.root / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def pgbouncer_binary():
    path = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
    if path is None:
        unavailable("no pgbouncer (apt-get install -y pgbouncer)")
    return path


@contextlib.contextmanager
def pgbouncer(cluster, mode="transaction", *, users=("postgres",), server_lifetime=None,
              **settings):
    """PgBouncer in ``mode`` ("transaction" or "session") pooling in front of
    ``cluster`` (every database, trust auth), with PgBouncer's defaults for the
    rest: no ignore_startup_parameters in particular. ``server_lifetime``
    (seconds) makes it recycle its server connections that often; ``settings``
    add more lines to its [pgbouncer] section."""
    binary = pgbouncer_binary()
    with _directory("bitloot-pgbouncer-") as (root, owner):
        port = free_port()
        (root / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in users))
        lines = {
            "listen_addr": "127.0.0.1", "listen_port": port, "unix_socket_dir": root,
            "auth_type": "trust", "auth_file": root / "userlist.txt", "pool_mode": mode,
            "admin_users": "postgres", "logfile": root / "pgbouncer.log",
            "pidfile": root / "pgbouncer.pid",
        }
        if server_lifetime is not None:
            lines["server_lifetime"] = server_lifetime
        lines.update(settings)
        config = root / "pgbouncer.ini"
        config.write_text(
            f"[databases]\n* = host=127.0.0.1 port={cluster.port}\n\n[pgbouncer]\n"
            + "".join(f"{key} = {value}\n" for key, value in lines.items()))
        for path in root.iterdir():
            if owner is not None:
                os.chown(path, *owner)
        process = subprocess.Popen([binary, str(config)], cwd=root, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, **_as_owner(owner))
        bouncer = PgBouncer(root, owner, port, mode, process)
        try:
            _wait(lambda: process.poll() is not None or _answers(bouncer),
                  "PgBouncer to listen", timeout=20)
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({process.returncode}):\n"
                                   f"{bouncer.log_tail()}")
            yield bouncer
        finally:
            _stop_process(process)


def _answers(bouncer):
    try:
        bouncer.admin("SHOW VERSION")
    except psycopg2.Error:
        return False
    return True


def _stop_process(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # PgBouncer: immediate shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
