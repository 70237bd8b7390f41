"""Least privilege on PostgreSQL: what the application role needs, and nothing more.

Two roles: the owner of the tables runs the migrations (DDL); the application
role, which the services run as, gets only DML on the tables, USAGE on the
schema and on the enum types, and SELECT on the migration history so that
``status`` and ``check`` can read it. It never gets INSERT/UPDATE/DELETE on
the history, nor CREATE on the schema: a ``migrate`` run as it fails on the
first DDL statement, with a message that says to run migrations as the owner.

``grant_statements(database, role)`` returns the statements (the CLI prints
them: ``bitloot-lite grants ROLE``); ``apply_grants`` runs them, as the owner,
in one transaction. Both read the live catalog, so they list the tables and
types the applied migrations made, in the schema the connection uses; run
``grants --apply`` again after a migration that adds a table or a type
(GRANT is idempotent).
"""

import logging
from collections.abc import Iterable

import peewee as pw

from .adopting import TABLES, TYPEORM_TABLE
from .db import is_postgres
from .errors import ConfigurationError, GrantFailed
from .schema import HISTORY_TABLE, current_schema

logger = logging.getLogger("bitloot_lite.grants")

#: What the services do to the tables: DML only (no TRUNCATE, REFERENCES, TRIGGER).
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

#: SQLSTATE 42501, insufficient_privilege.
INSUFFICIENT_PRIVILEGE = "42501"


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier, quoted (a role, schema, table or type)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigurationError(f"not a role name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def grant_statements(database: pw.Database, role: str) -> list[str]:
    """The GRANT statements ``role`` needs to run the services, status and check.

    For the tables of bitloot-lite that exist in the connection's schema (and
    TypeORM's history, which status and check read before an adoption), the
    enum types there, and, where ``role`` lacks them, USAGE on the schema and
    CONNECT on the database (which a hardened server revokes from PUBLIC).
    """
    if not is_postgres(database):
        raise ConfigurationError("grants are for PostgreSQL: SQLite has no roles "
                                 "(whoever can open the file can change it)")
    grantee = quote_ident(role)
    schema = current_schema(database)
    present = set(database.get_tables())
    tables = [table for table in TABLES if table in present]
    if not tables:
        raise ConfigurationError(f"no bitloot-lite tables in schema {schema}: run "
                                 "`bitloot-lite migrate` as the owner first")
    (dbname,) = database.execute_sql("SELECT current_database()").fetchone()
    (types,) = database.execute_sql(
        "SELECT COALESCE(array_agg(t.typname::text ORDER BY t.typname), '{}') FROM pg_type t "
        "JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.typtype = 'e' AND n.nspname = current_schema()").fetchone()
    # Sequences the tables' own columns draw from (none today: the ids are uuids).
    (sequences,) = database.execute_sql(
        "SELECT COALESCE(array_agg(DISTINCT s.relname::text), '{}') FROM pg_depend d "
        "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "JOIN pg_class t ON t.oid = d.refobjid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = current_schema() AND t.relname = ANY(%s)", (tables,)).fetchone()
    # The database and the schema may belong to someone else (public is the
    # database owner's): granted only where the role lacks them, so that the
    # owner of the tables can run the rest.
    has_connect, has_usage = database.execute_sql(
        "SELECT has_database_privilege(r.oid, current_database(), 'CONNECT'), "
        "has_schema_privilege(r.oid, current_schema(), 'USAGE') "
        "FROM pg_roles r WHERE r.rolname = %s", (role,)).fetchone() or (False, False)
    statements = [f"GRANT CONNECT ON DATABASE {quote_ident(dbname)} TO {grantee}"] * (
        not has_connect)
    statements += [f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {grantee}"] * (not has_usage)
    statements.append(f"GRANT {TABLE_PRIVILEGES} ON TABLE {_names(schema, tables)} TO {grantee}")
    if sequences:
        statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {_names(schema, sorted(sequences))} "
                          f"TO {grantee}")
    if types:
        statements.append(f"GRANT USAGE ON TYPE {_names(schema, types)} TO {grantee}")
    readable = [table for table in (HISTORY_TABLE, TYPEORM_TABLE) if table in present]
    if readable:
        statements.append(f"GRANT SELECT ON TABLE {_names(schema, readable)} TO {grantee}")
    return statements


def apply_grants(database: pw.Database, role: str) -> list[str]:
    """Run ``grant_statements(database, role)`` in one transaction; returns them.

    GrantFailed (nothing granted) when the role does not exist, or when the
    connection's role may not grant them (it must own the objects, or be a
    superuser).
    """
    statements = grant_statements(database, role)
    exists = database.execute_sql("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                  (role,)).fetchone()
    if not exists:
        raise GrantFailed(role, f'role "{role}" does not exist: create it first '
                                f"(CREATE ROLE {quote_ident(role)} LOGIN PASSWORD '...')")
    error = None
    try:
        with database.atomic():
            for statement in statements:
                # GRANT by a role that holds none of the privilege only warns; make
                # it an error, so that "granted" is never said of nothing granted.
                cursor = database.execute_sql(statement)
                notices = getattr(getattr(cursor, "connection", None), "notices", None) or []
                warned = [n for n in notices if "no privileges were granted" in n]
                del notices[:]
                if warned:
                    text = warned[0].split(":", 1)[-1].strip()  # without "WARNING:"
                    raise GrantFailed(role, f"{text} ({statement}): run grants --apply as "
                                            "the owner of the tables, database and schema "
                                            "(or a superuser)")
    except pw.DatabaseError as exc:
        lines = str(exc).strip().splitlines()
        error = GrantFailed(role, f"{lines[0] if lines else type(exc).__name__}: run "
                                  "grants --apply as the owner of the tables")
    if error is not None:
        raise error
    logger.info("granted %s what the application role needs", role)
    return statements


def _names(schema: str, names: Iterable[str]) -> str:
    return ", ".join(f"{quote_ident(schema)}.{quote_ident(name)}" for name in names)
