"""The exception tree: every error bitloot-lite raises is a BitlootError."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # models imports db, which imports this module: for checkers only
    from .models import OrderStatus, PaymentStatus


class BitlootError(Exception):
    """Base class of every error raised by bitloot-lite."""


class ConfigurationError(BitlootError):
    """The package was given settings it cannot use."""


class InvalidDatabaseURL(ConfigurationError):
    """DATABASE_URL (or ``url=``) is not a URL we can open.

    ``url`` is the masked URL: it never holds the password.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"invalid database URL {url}: {reason}")


class DatabaseUnavailable(BitlootError):
    """The database named by ``url`` (masked) could not be reached or opened."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot connect to {url}: {reason}")


class MigrationError(BitlootError):
    """Base class of errors about migrations."""


class MigrationsNotFound(MigrationError):
    """The migrations folder does not exist or holds no migration."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        super().__init__(f"no migrations found in {path}")


class UnknownMigration(MigrationError):
    """A migration name was given that is not in the migrations folder."""

    def __init__(self, name: str, known: Iterable[str] = (), hint: str | None = None) -> None:
        self.name = name
        self.known = list(known)
        if hint is None:
            hint = f"known: {', '.join(self.known)}" if self.known else ""
        super().__init__(f"unknown migration {name!r}" + (f" ({hint})" if hint else ""))


class AmbiguousMigration(UnknownMigration):
    """A migration number stands for more than one migration (``matches``)."""

    def __init__(self, name: str, matches: Iterable[str]) -> None:
        self.name = name
        self.known = self.matches = list(matches)
        MigrationError.__init__(self, f"migration {name!r} is ambiguous: it may be "
                                      f"{' or '.join(self.matches)}; give the full name")


class NothingToRollback(MigrationError):
    """A rollback was asked for more migrations than are applied."""

    def __init__(self, requested: int, applied: int) -> None:
        self.requested = requested
        self.applied = applied
        super().__init__(
            f"cannot roll back {requested} migration(s): {applied} applied"
        )


class LockTimeout(MigrationError):
    """Another process held the migration lock for longer than ``seconds``."""

    def __init__(self, seconds: float, holder: str | None = None) -> None:
        self.seconds = seconds
        self.holder = holder
        by = f" (held by {holder})" if holder else ""
        super().__init__(f"gave up waiting {seconds:g}s for the migration lock{by}")


class EditedMigration(MigrationError):
    """Applied migrations whose files changed since; ``names`` lists them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        super().__init__(
            f"applied migration(s) edited since they were applied: {', '.join(self.names)}; "
            "restore the file(s), or, once the edit is reviewed and harmless, record it with "
            "`bitloot-lite repair` (or pass --allow-edited)"
        )


class OutOfOrder(MigrationError):
    """Pending migrations older than the newest applied one; ``names`` lists them."""

    def __init__(self, names: Iterable[str], newest: str) -> None:
        self.names = list(names)
        self.newest = newest
        super().__init__(
            f"pending migration(s) {', '.join(self.names)} sort before the newest applied "
            f"one ({newest}); apply them with --allow-out-of-order"
        )


class AdoptionError(MigrationError):
    """An existing database cannot be taken over as it is: ``reason`` says why.

    ``differences`` lists how its tables differ from the expected shape (one line each;
    empty when the reason is its history, not its shape).
    """

    def __init__(self, reason: str, differences: Iterable[str] = ()) -> None:
        self.reason = reason
        self.differences = list(differences)
        listed = "".join(f"\n  - {line}" for line in self.differences)
        super().__init__(f"{reason}{':' if listed else ''}{listed}")


class NeedsBaseline(MigrationError):
    """bitloot-lite's ``tables`` exist, but no migration history accounts for them."""

    def __init__(self, tables: Iterable[str], suggestion: str | None = None) -> None:
        self.tables = list(tables)
        self.suggestion = suggestion
        name = suggestion or "004_orders_status_enum"
        matches = (f"; they already have the shape {suggestion} makes" if suggestion
                   else "")
        super().__init__(
            f"the database has the tables {', '.join(self.tables)} but no migration history "
            f"(neither bitloot-lite's nor TypeORM's): they were made outside bitloot-lite"
            f"{matches}. Check that the schema matches a migration, record it and the ones "
            f"before it as applied with `bitloot-lite baseline --to NAME` "
            f"(e.g. `bitloot-lite baseline --to {name}`), then run `bitloot-lite migrate`"
        )


#: SQLite's messages for "another connection holds the lock" (after the busy timeout).
SQLITE_LOCKED = ("database is locked", "database table is locked")


class MigrationFailed(MigrationError):
    """Applying or rolling back ``name`` failed; its transaction was undone."""

    def __init__(self, name: str, direction: str, cause: BaseException | str) -> None:
        self.name = name
        self.direction = direction
        self.cause = cause
        lines = str(cause).strip().splitlines()
        if lines and lines[0].strip().lower() in SQLITE_LOCKED:
            cause = (f"{lines[0].strip()}: another connection holds a write lock on the "
                     "database (waited the busy timeout); run it again once that is done")
        elif lines and lines[0].strip().lower() == SQLITE_FULL:
            cause = f"{lines[0].strip()}: free space on the database's disk, then run it again"
        elif lines and sqlstate(cause) == INSUFFICIENT_PRIVILEGE:  # type: ignore[arg-type]  # a str cause is SQLITE_FULL's
            cause = f"{lines[0].strip()} (SQLSTATE {INSUFFICIENT_PRIVILEGE}): {RUN_AS_OWNER}"
        if direction == "concurrent index build":  # outside a transaction: nothing to undo
            super().__init__(f"{direction} of {name} failed: {cause}; "
                             "run migrate again to finish it")
        else:
            super().__init__(f"{direction} of {name} failed and was undone: {cause}")


# --------------------------------------------------------------------------- the service layer
# Every service call that raises one of these has written nothing.


class ValidationError(BitlootError, ValueError):
    """An input was refused before anything was written: ``field`` ``reason``.

    ``value`` is the offending value; it is kept out of the message, which may be logged.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}: {reason}")


class NotFound(BitlootError, LookupError):
    """No ``model`` (a model name, e.g. "Order") has the id or key ``key``."""

    def __init__(self, model: str, key: uuid.UUID | str) -> None:
        self.model = model
        self.key = key
        super().__init__(f"no {model} {key}")


class ConflictError(BitlootError):
    """The call contradicts what the database already holds."""


class InvalidTransition(ConflictError):
    """Order ``order_id`` cannot move from ``current`` to ``requested``."""

    def __init__(self, order_id: uuid.UUID, current: OrderStatus | PaymentStatus,
                 requested: OrderStatus | PaymentStatus | str, detail: str | None = None) -> None:
        self.order_id = order_id
        self.current = current
        self.requested = requested
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"order {order_id} cannot move from {_value(current)} to {_value(requested)}{extra}"
        )


class KeysMissing(InvalidTransition):
    """Order ``order_id`` cannot be fulfilled: its items still lack ``missing`` keys."""

    def __init__(self, order_id: uuid.UUID, current: OrderStatus, missing: int) -> None:
        self.missing = missing
        super().__init__(order_id, current, "fulfilled", f"{missing} key(s) still missing")


class InvalidPaymentTransition(InvalidTransition):
    """Payment ``external_id`` (of order ``order_id``) cannot move from ``current`` to
    ``requested``."""

    def __init__(self, external_id: str, order_id: uuid.UUID, current: PaymentStatus,
                 requested: PaymentStatus) -> None:
        self.external_id = external_id
        self.order_id = order_id
        self.current = current
        self.requested = requested
        ConflictError.__init__(
            self, f"payment {external_id!r} (order {order_id}) cannot move from "
            f"{_value(current)} to {_value(requested)}"
        )


class OrderNotPaid(ConflictError):
    """Order ``order_id`` has status ``status``; the operation needs a paid order."""

    def __init__(self, order_id: uuid.UUID, status: OrderStatus) -> None:
        self.order_id = order_id
        self.status = status
        super().__init__(f"order {order_id} is {_value(status)}, not paid")


class ReservationConflict(ConflictError):
    """Reservation ``requested`` cannot go on order ``order_id``.

    Either the order already holds ``current`` (another reservation), or
    ``other_order_id`` already holds ``requested``.
    """

    def __init__(self, order_id: uuid.UUID, requested: str, current: str | None = None,
                 other_order_id: uuid.UUID | None = None) -> None:
        self.order_id = order_id
        self.requested = requested
        self.current = current
        self.other_order_id = other_order_id
        if other_order_id is not None:
            why = f"it is already attached to order {other_order_id}"
        else:
            why = f"the order already has reservation {current!r}"
        super().__init__(f"cannot attach reservation {requested!r} to order {order_id}: {why}")


class TooManyKeys(ConflictError):
    """Item ``order_item_id`` has ``quantity`` units and ``existing`` keys: ``requested``
    more do not fit."""

    def __init__(self, order_item_id: uuid.UUID, quantity: int, existing: int,
                 requested: int) -> None:
        self.order_item_id = order_item_id
        self.quantity = quantity
        self.existing = existing
        self.requested = requested
        super().__init__(
            f"order item {order_item_id} has quantity {quantity} and {existing} key(s): "
            f"{requested} more would exceed it"
        )


class DuplicateKeys(ConflictError):
    """Storage references ``refs`` are already recorded for other keys, so item
    ``order_item_id`` cannot get them: one reference is one encrypted key, and two rows
    would sell it twice. Nothing was written."""

    def __init__(self, order_item_id: uuid.UUID, refs: Iterable[str]) -> None:
        self.order_item_id = order_item_id
        self.refs = list(refs)
        shown = ", ".join(repr(ref) for ref in self.refs[:5])
        more = f" and {len(self.refs) - 5} more" if len(self.refs) > 5 else ""
        super().__init__(
            f"cannot add keys to order item {order_item_id}: storage reference(s) {shown}{more} "
            "already belong to other keys; nothing was written"
        )


class PaymentConflict(ConflictError):
    """Payment ``external_id`` belongs to order ``other_order_id``, not ``order_id``."""

    def __init__(self, external_id: str, order_id: uuid.UUID, other_order_id: uuid.UUID) -> None:
        self.external_id = external_id
        self.order_id = order_id
        self.other_order_id = other_order_id
        super().__init__(
            f"payment {external_id!r} belongs to order {other_order_id}, not {order_id}"
        )


class StorageError(BitlootError):
    """The database failed ``operation`` unexpectedly; nothing was written.

    ``reason`` names the driver error (class, SQLSTATE), never its text, which
    may quote the data. Connection problems are ``DatabaseUnavailable`` at connect.
    """

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"{operation} failed in the database: {reason}")


class DatabaseBusy(StorageError):
    """Another connection held a lock ``operation`` needed; nothing was written.

    Mostly the lock was held for longer than the busy timeout (``seconds``; None
    where unknown): on SQLite another writer's transaction ("database is
    locked") outlasted it (5 s; ``?busy_timeout=MS`` in the URL), on PostgreSQL
    a ``lock_timeout`` ran out. Try again later.

    ``at_once``: SQLite did not wait at all. Inside a transaction that has
    already read, it refuses to wait for another writer (the two could deadlock)
    and can never write on a snapshot that another connection has written since:
    the transaction cannot write any more; roll it back and retry the whole
    transaction.
    """

    def __init__(self, operation: str, seconds: float | None = None, at_once: bool = False) -> None:
        self.seconds = seconds
        self.at_once = at_once
        if at_once:
            reason = ("the database is locked: this transaction has read, and another "
                      "connection is writing or has written since, so SQLite cannot let it "
                      "write and does not wait (waiting could deadlock); nothing was written, "
                      "retry the whole transaction (one that starts with its write, or with "
                      "BEGIN IMMEDIATE, waits its turn instead)")
        else:
            timeout = ("its lock timeout" if seconds is None
                       else f"the busy timeout ({seconds:g}s)")
            reason = (f"the database is locked: another connection held a lock it needed for "
                      f"longer than {timeout}; nothing was written, try again later")
        super().__init__(operation, reason)


def _value(status: object) -> object:
    return getattr(status, "value", status)


# --------------------------------------------------------------------------- storage faults

#: SQLite's message for SQLITE_FULL.
SQLITE_FULL = "database or disk is full"


class DatabaseFull(StorageError):
    """``operation`` could not write: the database's disk (or SQLite's ``max_page_count``)
    is full. Nothing was written.

    ``transaction_lost``: the caller's whole enclosing transaction was rolled
    back as well (SQLite may do that by itself on a full disk, and a commit that
    fails leaves nothing committed); nothing of it is committed.
    """

    def __init__(self, operation: str, transaction_lost: bool = False) -> None:
        self.transaction_lost = transaction_lost
        advice = ("; the whole enclosing transaction was rolled back: nothing in it was "
                  "committed, retry all of it once there is space" if transaction_lost
                  else ", free space on the database's disk and try again")
        super().__init__(operation, f"the database or disk is full: nothing was written{advice}")


class TransactionLost(StorageError):
    """SQLite rolled back the caller's transaction by itself after an earlier error
    (``cause``: a full disk, an I/O error ...), while the ``with db.atomic()`` block
    that began it was still open.

    Every later statement in that block, and the commit on leaving it, raise this
    instead of running in autocommit mode: nothing of the block is committed.
    """

    def __init__(self, operation: str, cause: str | None = None) -> None:
        self.cause = cause
        after = f" after an error ({cause})" if cause else " after an earlier error"
        super().__init__(operation, f"SQLite rolled back the enclosing transaction{after}: "
                                    "nothing in it was committed and nothing more will be; "
                                    "leave the block and retry the whole transaction")


# --------------------------------------------------------------------------- migration files
# (issue 11: the user's migrations beside the shipped ones, and what a migration file must hold)


class InvalidMigrationFiles(MigrationError):
    """The migrations folders hold files that cannot be run as they are.

    ``problems`` lists one line per offending file (misnamed, a duplicate number,
    a name colliding with a shipped migration, numbered before the shipped ones).
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        listed = "".join(f"\n  - {line}" for line in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the migration files, "
                         f"nothing was run:{listed}")


class InvalidMigration(MigrationError):
    """Migration ``name`` (file ``path``) cannot be loaded: ``reason`` (with ``line``, if known).

    Raised before anything is applied or recorded.
    """

    def __init__(self, name: str, path: str | os.PathLike[str], reason: str,
                 line: int | None = None) -> None:
        self.name = name
        self.path = path
        self.reason = reason
        self.line = line
        where = f"{path}, line {line}" if line else f"{path}"
        super().__init__(f"migration {name} ({where}) cannot be loaded: {reason}")


class IrreversibleMigration(MigrationError):
    """Migration ``name`` has no ``rollback``: it cannot be undone (Django's IrreversibleError).

    Raised before anything is undone. A migration whose undoing needs no SQL says so
    with ``ROLLBACK = "noop"``.
    """

    def __init__(self, name: str, path: str | os.PathLike[str] | None = None) -> None:
        self.name = name
        self.path = path
        super().__init__(
            f"migration {name} is irreversible: {path or 'its file'} defines no rollback(); "
            "nothing was rolled back. Write a rollback() that undoes it (or, if undoing it "
            'needs nothing, declare ROLLBACK = "noop" in the file)'
        )


# -- local prototyping (bitloot_lite.local: demo, copy) ------------------------------------


class DatabaseNotEmpty(BitlootError):
    """A command that fills a database found rows in ``table`` and would not mix them
    with its own (the demo: ``append=True``; a copy: ``replace=True``)."""

    def __init__(self, table: str, hint: str = "append to it knowingly (--append)") -> None:
        self.table = table
        super().__init__(f"the database is not empty ({table} has rows): {hint}")


class NotMigrated(MigrationError):
    """The database has pending migrations (``pending``, in order): migrate it first."""

    def __init__(self, pending: Sequence[str]) -> None:
        self.pending = list(pending)
        super().__init__(f"the database is not migrated ({len(self.pending)} pending, first "
                         f"{self.pending[0]}): run `bitloot-lite migrate` first")


class SourceAhead(MigrationError):
    """The source database has migrations applied that this version does not know
    (``unknown``): copying it would lose or mangle what they changed."""

    def __init__(self, unknown: Iterable[str]) -> None:
        self.unknown = list(unknown)
        super().__init__(f"the source has migrations this version does not know "
                         f"({', '.join(self.unknown)}): upgrade bitloot-lite first")


class CopyMismatch(BitlootError):
    """After a copy, ``table`` differs between source and destination (``source`` and
    ``destination``: (rows, checksum) of each side)."""

    def __init__(self, table: str, source: tuple[int, str], destination: tuple[int, str]) -> None:
        self.table = table
        self.source = source
        self.destination = destination
        super().__init__(f"copy check failed on {table}: source has {source[0]} rows "
                         f"(checksum {source[1][:12]}), destination {destination[0]} rows "
                         f"(checksum {destination[1][:12]})")


# -- issue 11 (h11b): check, sql, new, lint ---------------------------------------------


class ScratchUnavailable(MigrationError):
    """The scratch database ``name`` that ``check`` replays the migrations on could not be
    made (``reason``): on PostgreSQL the role needs the CREATEDB privilege."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"cannot create the scratch database {name} that check replays the "
                         f"migrations on (the role needs CREATEDB): {reason}")


class ModelsNotFound(ConfigurationError):
    """``--models MODULE`` could not be imported (``reason``: the first line of the error)."""

    def __init__(self, module: str, reason: str) -> None:
        self.module = module
        self.reason = reason
        super().__init__(f"cannot import the models module {module!r}: {reason}")


class LinterUnavailable(ConfigurationError):
    """squawk (PyPI squawk-cli, the ``lint`` extra) is not installed."""

    def __init__(self) -> None:
        super().__init__("squawk is not installed: pip install 'bitloot-lite[lint]' "
                         "(PyPI squawk-cli)")


class LinterFailed(MigrationError):
    """squawk ran but failed (``reason``: the first line of its error)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"squawk failed: {reason}")


# --------------------------------------------------------------------------- topologies


class ReadOnlyServer(MigrationError):
    """The server is a read-only hot standby (``pg_is_in_recovery()``): migrations,
    rollbacks, baselines and their SQL preview run on the primary only."""

    def __init__(self) -> None:
        super().__init__("the server is a read-only standby (pg_is_in_recovery() is true): "
                         "run migrations on the primary (set MIGRATION_DATABASE_URL or "
                         "--migration-database to it)")


class LockUntrusted(MigrationError):
    """The migration lock (a session-level advisory lock) cannot be trusted on this
    connection: a connection pooler is in between (``reason`` says how it showed),
    which may hand the session holding the lock to another client, or our
    statements to another session. Nothing was applied."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the migration lock cannot be trusted: {reason}; nothing was "
                         "applied. Run migrations on a direct connection to the server: set "
                         "MIGRATION_DATABASE_URL (or --migration-database) to a URL that "
                         "bypasses the pooler")


class ServerRefused(MigrationError):
    """The server refused a statement of a migration command (``sqlstate``; the
    server's first line in ``reason``): a missing privilege, a read-only transaction ..."""

    def __init__(self, sqlstate: str | None, reason: str) -> None:
        self.sqlstate = sqlstate
        self.reason = reason
        code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        super().__init__(f"the server refused: {reason}{code}")


# --------------------------------------------------------------------------- least privilege

#: PostgreSQL's insufficient_privilege ("permission denied for ...", "must be owner of ...").
INSUFFICIENT_PRIVILEGE = "42501"

#: What to do when a migration step is refused for lack of a privilege.
RUN_AS_OWNER = ("run migrations as the owner of the tables (MIGRATION_DATABASE_URL or "
                "--migration-database), not as the application role")

#: What to do when the application role may not read what status and check read.
GRANT_READ = "as the owner, run `bitloot-lite grants ROLE --apply` for the application role"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, or of the one a peewee error wraps (else None)."""
    # Also given a plain str (a cause that is text): nothing to read then.
    for error in (exc, exc.args[0] if getattr(exc, "args", None) else None,
                  getattr(exc, "__cause__", None), getattr(exc, "__context__", None)):
        code = getattr(error, "pgcode", None)
        if code:
            return cast(str, code)
    return None


class PrivilegeMissing(BitlootError):
    """The server refused ``action`` because the connection's role lacks a privilege.

    ``denied`` is the server's one line (``permission denied for table orders``,
    ``must be owner of table orders``): it names objects, never data. ``hint``
    says what to do.
    """

    def __init__(self, action: str, denied: str, hint: str):
        self.action = action
        self.denied = denied
        self.hint = hint
        super().__init__(f"{action}: {denied} (SQLSTATE {INSUFFICIENT_PRIVILEGE}); {hint}")


@contextlib.contextmanager
def privilege_required(action: str, hint: str) -> Iterator[None]:
    """Turn a refusal for lack of a privilege (SQLSTATE 42501) in the block into
    PrivilegeMissing(action, the server's first line, hint); other errors pass."""
    error = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only 42501 is translated, the rest re-raised
        if sqlstate(exc) != INSUFFICIENT_PRIVILEGE:
            raise
        lines = str(exc).strip().splitlines()
        error = PrivilegeMissing(action, lines[0] if lines else "permission denied", hint)
    if error is not None:
        raise error


class GrantFailed(ConfigurationError):
    """Granting ``role`` what the application role needs failed; nothing was granted."""

    def __init__(self, role: str, reason: str):
        self.role = role
        self.reason = reason
        super().__init__(f"granting {role} failed: {reason}")


# --------------------------------------------------------------------------- read-only commands


class DatabaseNotFound(DatabaseUnavailable):
    """The SQLite file ``path`` of ``url`` (masked) does not exist, and a command that
    has no business creating one (status, check, sql, shell, diagram) does not."""

    def __init__(self, url: str, path: str) -> None:
        self.path = path
        super().__init__(url, f"no SQLite database file {path} (this command creates "
                              "none: check the path, or create it with `bitloot-lite migrate`)")


# -- issue 16 (h16a): copy's identity check, and databases that cannot be opened ---------


class SameDatabase(ConfigurationError):
    """``copy`` was given one database twice: ``source`` and ``destination`` (masked URLs)
    resolve to the same data (``reason``: the file, or the cluster and database)."""

    def __init__(self, source: str, destination: str, reason: str) -> None:
        self.source = source
        self.destination = destination
        self.reason = reason
        super().__init__(f"the source {source} and the destination {destination} are one "
                         f"database ({reason}): nothing was copied, nothing was written")


class FolderNotFound(DatabaseUnavailable):
    """The folder ``folder`` that should hold the SQLite file of ``url`` (masked) does
    not exist: SQLite creates a file, never its folder."""

    def __init__(self, url: str, folder: str) -> None:
        self.folder = folder
        super().__init__(url, f"no folder {folder} for the SQLite file (SQLite creates the "
                              "file, not its folder: check the path, or create the folder)")


class PostgresDatabaseNotFound(DatabaseUnavailable):
    """The PostgreSQL server of ``url`` (masked) has no database ``database``; ``reason``
    is the server's message, ``command`` the one that would create it."""

    def __init__(self, url: str, database: str, reason: str, command: str) -> None:
        self.database = database
        self.command = command
        super().__init__(url, f"{reason} (create it first: `{command}`, then "
                              "`bitloot-lite migrate`)")


# ------------------------------------------ the user's migrations folder: repair, new (issue 16)

#: Where a user's migrations folder is given: what a message about it points at.
USER_FOLDER_SETTING = "--migrations / BITLOOT_MIGRATIONS_DIR"


class MigrationsFolderMissing(MigrationsNotFound):
    """The migrations folder ``path`` does not exist (``user``: the user's own folder)."""

    def __init__(self, path: str | os.PathLike[str], user: bool = True) -> None:
        super().__init__(path)
        self.user = user
        hint = f" (your migrations folder, given by {USER_FOLDER_SETTING})" if user else ""
        self.args = (f"no such folder: {path}{hint}",)


class ForgetRefused(MigrationError):
    """``repair`` refused to forget the history row of ``name``: ``reason``; nothing was
    repaired. ``folder`` is the user's migrations folder it looked in (None: none given)."""

    def __init__(self, name: str, reason: str, folder: str | os.PathLike[str] | None = None
                 ) -> None:
        self.name = name
        self.reason = reason
        self.folder = folder
        super().__init__(f"cannot forget {name}: {reason}; nothing was repaired")
