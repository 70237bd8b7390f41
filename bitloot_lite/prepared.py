"""Server-side prepared statements on PostgreSQL: which ones a session holds, and
what to do when that is no longer what we believed.

statements.py sends each statement's ``PREPARE`` once per connection, then only
``EXECUTE``. The session may lose them (a transaction pooler hands us another
server session; someone runs ``DEALLOCATE`` or ``DISCARD ALL``), hold one we
did not send (the same, the other way round), or keep one whose plan went
stale (a migration retyped a column). Then the names we knew are forgotten for
that connection, and its next use asks the server which it holds and drops
the failing call's ones before preparing them again.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Iterable

    import peewee as pw

logger = logging.getLogger("bitloot_lite.services")

#: psycopg2 connection -> names of the statements prepared on it.
_PREPARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

#: psycopg2 connection -> names of statements to DEALLOCATE before this
#: connection prepares again: its prepared state is no longer what we believed.
_RESYNC: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

#: A prepared statement that vanished (26000), one that already exists (42P05),
#: or one whose plan went stale (0A000 "cached plan must not change result type").
STATE_ERRORS = ("26000", "42P05", "0A000")


def ensure(db: pw.Database, prepares: Iterable[tuple[str, str]]) -> None:
    """Send the ``PREPARE`` of each of ``prepares`` ((name, text), ...) that the
    session of ``db``'s connection does not hold yet."""
    connection = db.connection()
    held = _PREPARED.get(connection)
    if held is None:
        held = _PREPARED[connection] = _resync(db, connection)
    for name, prepare in prepares:
        if name not in held:
            # Connection set-up, like a pragma: sent by itself, once, and not
            # through execute_sql (it is no query of the call). PREPARE is not
            # transactional, so a later rollback cannot undo it.
            db.cursor().execute(prepare)
            held.add(name)


def _resync(db: pw.Database, connection: Any) -> set[str]:
    """The names of our statements prepared on ``connection``'s session.

    A new connection has none. One whose state we lost track of is asked,
    and its statements that failed are dropped first.
    """
    stale = _RESYNC.pop(connection, None)
    if stale is None:
        return set()
    cursor = db.cursor()
    cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'bitloot\\_%'")
    present = {row[0] for row in cursor.fetchall()}
    for name in sorted(stale & present):
        cursor.execute(f"DEALLOCATE {name}")
        present.discard(name)
    return present


def lost(db: pw.Database, exc: BaseException, prepares: Iterable[tuple[str, str]],
         what: str) -> bool:
    """After ``exc`` from running statement ``what`` (whose ``prepares`` they are):
    if it says our prepared statements are not what we believed, forget what we
    knew of the connection's (its next use asks the server) and say whether
    the statement may be run again: outside a transaction, where it undid
    itself whole."""
    code = sqlstate(exc)
    if code not in STATE_ERRORS:
        return False
    connection = None if db.is_closed() else db.connection()
    if connection is None or getattr(connection, "closed", 0):  # type: ignore[arg-type]  # psycopg2's int
        return False
    _RESYNC.setdefault(connection, set()).update(name for name, _ in prepares)
    _PREPARED.pop(connection, None)
    if getattr(db, "prepare", True) is None and code != "0A000" and not getattr(
            db, "_warned_pool", 0):
        # Sessions that do not keep what they prepared: a pooler the backend id
        # check did not see (db.PostgresqlDatabase.pooled). Sent whole from now on.
        db._warned_pool = 1  # type: ignore[attr-defined]  # db.PostgresqlDatabase's (prepare None)
        db.prepare = False  # type: ignore[attr-defined]  # (the same)
        logger.warning("prepared statements vanished between calls: a transaction pooler? "
                       "Server-side prepared statements are now off for this database "
                       "(add ?prepare=false to the URL to say so)")
    if db.in_transaction():
        return False
    logger.info("prepared statement %s failed (SQLSTATE %s); preparing it again", what, code)
    return True


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, also when peewee wrapped it."""
    for error in (exc, exc.args[0] if exc.args else None, exc.__cause__, exc.__context__):
        code = getattr(error, "pgcode", None)
        if code:
            return cast(str, code)
    return None
