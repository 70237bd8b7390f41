"""The live schema as data: read it from the catalog, and compare it with the target.

``snapshot(database)`` reads every user table but the migration history (on
PostgreSQL, of the schema the connection creates its tables in,
``current_schema()``: the first existing one of its search_path, set by the
URL's ``options`` or the role's default; never ``public`` by name) into plain,
sorted, JSON-serialisable data, the same shape on SQLite and PostgreSQL::

    {"backend": "postgres" | "sqlite",
     "enums": {name: [label, ...]},                    # PostgreSQL only
     "tables": {name: {
         "columns": [{"name", "type", "nullable", "default"}, ...],  # physical order
         "primary_key": {"name", "columns"} or None,
         "foreign_keys": [{"name", "columns", "ref_table", "ref_columns",
                           "on_delete", "on_update"}, ...],
         "unique": [{"name", "columns"}, ...],        # UNIQUE constraints
         "checks": [{"name", "expression"}, ...],
         "indexes": [{"name", "columns", "unique"}, ...],  # + "valid": False if INVALID
         "comments": {column: text}}}}

A name is None where SQLite keeps none (an unnamed constraint). Indexes that
back a primary key or UNIQUE constraint are not under "indexes": they are the
constraint. ``compare(actual, expected)`` lists the differences, one readable
line each; the target itself is ``bitloot_lite.target.expected(backend)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, cast

import peewee as pw

from .db import is_postgres, is_sqlite
from .errors import ConfigurationError

#: A snapshot (the shape above): plain JSON-serialisable data.
Snapshot = dict[str, Any]
#: compare's reporter of something present that the target lacks: (kind, table, name, line).
Extra = Callable[[str, "str | None", "str | None", str], None]

#: peewee-migrate's history table (one row per applied migration): not part of the schema.
HISTORY_TABLE = "migratehistory"

#: Things a database made by the upstream TypeORM application carries beyond ours:
#: (kind, table, name or None for any) -> why it is harmless. Reported as notes.
KNOWN_EXTRAS: dict[tuple[str, str | None, str | None], str] = {
    ("unique constraint", "payments", "UQ_c9ca05ceb7cc5eae113c2eb57cd"):
        "TypeORM's duplicate of the unique index IDX_payments_externalId",
    ("table", "migrations", None): "TypeORM's migration history table",
    ("comment", "keys", None): "TypeORM comments every keys column",
    # A Phase-1 database's order_items got quantity by ALTER TABLE (see target.py).
    ("column order", "order_items", "quantity last"):
        "quantity added after the other columns, as the adoption of a Phase-1 database "
        "and upstream's AddOrderItemPriceQuantity do",
}

_FK_RULES = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
             "d": "SET DEFAULT"}


def _norm(text: object) -> str | None:
    """``text`` with runs of whitespace made one space (None stays None)."""
    return None if text is None else " ".join(str(text).split())


# -- reading the live schema ------------------------------------------------------------


def snapshot(database: pw.Database) -> Snapshot:
    """The live schema of ``database`` (SQLite or PostgreSQL) as plain data."""
    if is_postgres(database):
        return _snapshot_postgres(database)
    if is_sqlite(database):
        return _snapshot_sqlite(database)
    raise ConfigurationError(f"cannot read the schema of a {type(database).__name__}")


def new_table(columns: list[dict[str, Any]]) -> dict[str, Any]:
    """An empty table entry of a snapshot, with ``columns``."""
    return {"columns": columns, "primary_key": None, "foreign_keys": [], "unique": [],
            "checks": [], "indexes": [], "comments": {}}


def finish(backend: str, tables: dict[str, dict[str, Any]],
           enums: dict[str, list[str]]) -> Snapshot:
    """A snapshot from its parts, every list sorted so that equal schemas compare equal."""
    for table in tables.values():
        for key in ("foreign_keys", "unique"):
            table[key].sort(key=lambda item: (item["columns"], item["name"] or ""))
        table["checks"].sort(key=lambda item: (item["name"] or "", item["expression"]))
        table["indexes"].sort(key=lambda item: item["name"])
    return {"backend": backend, "enums": enums, "tables": dict(sorted(tables.items()))}


_PG_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname <> %s
ORDER BY c.relname, a.attnum"""

_PG_ATTNAMES = """ARRAY(SELECT a.attname::text FROM unnest({keys}) WITH ORDINALITY k(num, i)
    JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.num ORDER BY k.i)"""

_PG_CONSTRAINTS = f"""
SELECT t.relname, con.conname, con.contype,
       {_PG_ATTNAMES.format(keys="con.conkey", rel="con.conrelid")},
       r.relname, {_PG_ATTNAMES.format(keys="con.confkey", rel="con.confrelid")},
       con.confdeltype, con.confupdtype, pg_get_expr(con.conbin, con.conrelid)
FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_class r ON r.oid = con.confrelid
WHERE n.nspname = current_schema() AND con.contype IN ('p', 'f', 'u', 'c')"""

_PG_INDEXES = """
SELECT t.relname, i.relname, x.indisunique, x.indisvalid,
       ARRAY(SELECT CASE WHEN k.num = 0 THEN pg_get_indexdef(x.indexrelid, k.i::int, true)
                         ELSE a.attname::text END
             FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(num, i)
             LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.num
             WHERE k.i <= x.indnkeyatts ORDER BY k.i)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND NOT EXISTS (
    SELECT 1 FROM pg_constraint con
    WHERE con.conindid = x.indexrelid AND con.contype IN ('p', 'u', 'x'))"""

_PG_ENUMS = """
SELECT t.typname, e.enumlabel FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
WHERE n.nspname = current_schema() ORDER BY t.typname, e.enumsortorder"""


def current_schema(database: pw.Database) -> str:
    """The schema ``database``'s unqualified names create tables in (PostgreSQL).

    The first schema of the session's search_path that exists: what the URL's
    ``options=-c search_path=...`` or the role's ``ALTER ROLE ... SET search_path``
    chose, ``public`` only by default. Every catalog query here reads that
    schema, so a database kept in ``shop`` is read in ``shop`` even when
    ``public`` also holds tables of the same names. ConfigurationError when no
    schema of the search_path exists (PostgreSQL would refuse to create a table).
    """
    (schema,) = database.execute_sql("SELECT current_schema()").fetchone()
    if schema is None:
        (path,) = database.execute_sql("SELECT current_setting('search_path')").fetchone()
        raise ConfigurationError(f"no schema of the search_path ({path}) exists in this "
                                 "database: create it, or fix the URL's options or the "
                                 "role's search_path")
    return cast(str, schema)


def _snapshot_postgres(database: pw.Database) -> Snapshot:
    current_schema(database)  # a clear error rather than "every table missing"
    tables: dict[str, dict[str, Any]] = {}
    for table, name, type_, notnull, default, comment in database.execute_sql(
        _PG_COLUMNS, (HISTORY_TABLE,)
    ):
        entry = tables.setdefault(table, new_table([]))
        entry["columns"].append({"name": name, "type": type_, "nullable": not notnull,
                                 "default": _norm(default)})
        if comment is not None:
            entry["comments"][name] = comment
    for table, name, kind, columns, ref_table, ref_columns, on_delete, on_update, check in (
        database.execute_sql(_PG_CONSTRAINTS)
    ):
        if table not in tables:
            continue
        entry = tables[table]
        if kind == "p":
            entry["primary_key"] = {"name": name, "columns": columns}
        elif kind == "u":
            entry["unique"].append({"name": name, "columns": columns})
        elif kind == "c":
            entry["checks"].append({"name": name, "expression": _norm(check)})
        else:
            entry["foreign_keys"].append({
                "name": name, "columns": columns, "ref_table": ref_table,
                "ref_columns": ref_columns, "on_delete": _FK_RULES[on_delete],
                "on_update": _FK_RULES[on_update]})
    for table, name, unique, valid, columns in database.execute_sql(_PG_INDEXES):
        if table in tables:
            index = {"name": name, "columns": columns, "unique": unique}
            if not valid:  # an interrupted CREATE INDEX CONCURRENTLY: not used, not complete
                index["valid"] = False
            tables[table]["indexes"].append(index)
    enums: dict[str, list[str]] = {}
    for name, label in database.execute_sql(_PG_ENUMS):
        enums.setdefault(name, []).append(label)
    return finish("postgres", tables, enums)


def _pragma(database: pw.Database, pragma: str, name: str) -> list[Any]:
    quoted = name.replace('"', '""')
    return cast(list[Any], database.execute_sql(f'PRAGMA {pragma}("{quoted}")').fetchall())


def _snapshot_sqlite(database: pw.Database) -> Snapshot:
    tables = {}
    rows = database.execute_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ?", (HISTORY_TABLE,))
    for table, sql in rows.fetchall():
        info = [row for row in _pragma(database, "table_xinfo", table) if row[6] != 1]
        entry = tables[table] = new_table([
            {"name": name, "type": _norm(type_).upper(), "nullable": not notnull,  # type: ignore[union-attr]
             "default": _norm(default)}
            for _cid, name, type_, notnull, default, _pk, _hidden in info])
        parsed = _parse_create_table(sql)
        pk = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]]
        if pk:
            entry["primary_key"] = {"name": parsed["pk"], "columns": pk}
        entry["checks"] = parsed["checks"]
        fks: dict[int, dict[str, Any]] = {}
        for fk_id, _seq, ref, src, dst, on_update, on_delete, _match in sorted(
            _pragma(database, "foreign_key_list", table), key=lambda row: row[:2]
        ):
            fk = fks.setdefault(fk_id, {"name": None, "columns": [], "ref_table": ref,
                                      "ref_columns": [], "on_delete": on_delete,
                                      "on_update": on_update})
            fk["columns"].append(src)
            fk["ref_columns"].append(dst)
        for fk in fks.values():
            fk["name"] = parsed["fks"].get(tuple(fk["columns"]))
            if None in fk["ref_columns"]:  # REFERENCES t without columns: t's primary key
                parent = sorted(_pragma(database, "table_info", fk["ref_table"]),
                                key=lambda row: row[5])
                fk["ref_columns"] = [row[1] for row in parent if row[5]]
            entry["foreign_keys"].append(fk)
        for _seq, name, unique, origin, _partial in _pragma(database, "index_list", table):
            columns = [row[2] if row[2] is not None else "<expression>"
                       for row in _pragma(database, "index_info", name)]
            if origin == "u":
                entry["unique"].append({"name": parsed["uniques"].get(tuple(columns)),
                                        "columns": columns})
            elif origin == "c":
                entry["indexes"].append({"name": name, "columns": columns,
                                         "unique": bool(unique)})
    return finish("sqlite", tables, {})


_TOKEN = re.compile(r"""\s+|--[^\n]*|/\*.*?\*/|"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]"""
                    r"""|'(?:[^']|'')*'|[A-Za-z_][\w$]*|.""", re.S)
_COLUMN_CONSTRAINT = {"PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE",
                      "REFERENCES", "GENERATED", "AS"}


def _tokens(text: str) -> list[str]:
    """The top-level tokens of ``text``; a parenthesised group is one token, as written."""
    tokens, depth, start = [], 0, 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == "(":
            start = match.start() if depth == 0 else start
            depth += 1
        elif token == ")":
            depth -= 1
            if depth == 0:
                tokens.append(text[start:match.end()])
        elif depth == 0 and not token.isspace() and not token.startswith(("--", "/*")):
            tokens.append(token)
    return tokens


def _ident(token: str) -> str:
    if token[:1] in "\"`[" and len(token) > 1:
        return token[1:-1].replace(token[0] * 2, token[0]) if token[0] != "[" else token[1:-1]
    return token


def _split(tokens: list[str]) -> list[list[str]]:
    """``tokens`` cut at their top-level commas."""
    parts: list[list[str]] = [[]]
    for token in tokens:
        parts.append([]) if token == "," else parts[-1].append(token)
    return parts


def _column_list(group: str) -> tuple[str, ...]:
    return tuple(_ident(part[0]) for part in _split(_tokens(group[1:-1])) if part)


def _parse_create_table(sql: str) -> dict[str, Any]:
    """Constraint names and CHECKs from SQLite's stored CREATE TABLE text (PRAGMAs omit them).

    Returns {"pk": name, "fks": {columns: name}, "uniques": {columns: name}, "checks": [...]}.
    """
    body = next((token for token in _tokens(sql) if token.startswith("(")), "()")
    found: dict[str, Any] = {"pk": None, "fks": {}, "uniques": {}, "checks": []}
    for tokens in _split(_tokens(body[1:-1])):
        words = [token.upper() for token in tokens] + ["", "", ""]
        if words[0] in ("CONSTRAINT", "PRIMARY", "FOREIGN", "UNIQUE", "CHECK"):  # table constraint
            at, name = (2, _ident(tokens[1])) if words[0] == "CONSTRAINT" else (0, None)
            group = tokens[at + (2 if words[at] in ("PRIMARY", "FOREIGN") else 1):][:1]
            if group and group[0].startswith("("):
                columns = () if words[at] == "CHECK" else _column_list(group[0])
                _record(found, words[at], name, columns, group[0])
            continue
        name = None
        for i, word in enumerate(words[1:len(tokens)], start=1):  # column constraints
            if word == "CONSTRAINT" and i + 1 < len(tokens):
                name = _ident(tokens[i + 1])
            elif word in _COLUMN_CONSTRAINT and words[i - 1] != "CONSTRAINT":
                group = tokens[i + 1] if i + 1 < len(tokens) else ""
                _record(found, word, name, (_ident(tokens[0]),), group)
                name = None
    return found


def _record(found: dict[str, Any], kind: str, name: str | None, columns: tuple[str, ...],
            group: str) -> None:
    if kind == "PRIMARY":
        found["pk"] = name
    elif kind in ("FOREIGN", "REFERENCES"):
        found["fks"][columns] = name
    elif kind == "UNIQUE":
        found["uniques"][columns] = name
    elif kind == "CHECK" and group.startswith("("):
        found["checks"].append({"name": name, "expression": _norm(group[1:-1])})


# -- comparing ---------------------------------------------------------------------------

_FIELDS = {"on_delete": "ON DELETE", "on_update": "ON UPDATE", "ref_table": "references",
           "ref_columns": "referenced columns"}
_ITEMS = (("foreign key", "foreign_keys", "columns"), ("unique constraint", "unique", "columns"),
          ("check", "checks", "expression"), ("index", "indexes", "columns"))


def _fmt(value: object) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(map(str, value)) + ")"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "none" if value is None else str(value)


def _null(nullable: object) -> str:
    return "nullable" if nullable else "NOT NULL"


def compare(actual: Snapshot, expected: Snapshot, notes: list[str] | None = None) -> list[str]:
    """The differences between two snapshots, one readable line each; [] when they match.

    Extras listed in KNOWN_EXTRAS are not differences: they are appended to ``notes``
    (when a list is given).
    """
    if actual["backend"] != expected["backend"]:
        return [f"backend {actual['backend']}, expected {expected['backend']}"]
    diffs: list[str]
    diffs, notes = [], [] if notes is None else notes

    def extra(kind: str, table: str | None, name: str | None, message: str) -> None:
        reason = KNOWN_EXTRAS.get((kind, table, name)) or KNOWN_EXTRAS.get((kind, table, None))
        (notes if reason else diffs).append(f"{message} ({reason})" if reason else message)

    for name in sorted(set(actual["enums"]) | set(expected["enums"])):
        have, want = actual["enums"].get(name), expected["enums"].get(name)
        if want is None:
            extra("enum", None, name, f"enum {name} not expected")
        elif have is None:
            diffs.append(f"enum {name} missing")
        elif have != want:
            diffs.append(f"enum {name}: labels {_fmt(have)}, expected {_fmt(want)}")
    for table in sorted(set(actual["tables"]) | set(expected["tables"])):
        have, want = actual["tables"].get(table), expected["tables"].get(table)
        if want is None:
            extra("table", table, None, f"table {table} not expected")
        elif have is None:
            diffs.append(f"table {table} missing")
        else:
            _compare_table(table, have, want, diffs, extra)
    return diffs


def _compare_table(table: str, have: dict[str, Any], want: dict[str, Any], diffs: list[str],
                   extra: Extra) -> None:
    columns = {column["name"]: column for column in have["columns"]}
    wanted = {column["name"]: column for column in want["columns"]}
    for name, column in wanted.items():
        if name not in columns:
            diffs.append(f"column {table}.{name} missing")
            continue
        for key in ("type", "default"):
            if columns[name][key] != column[key]:
                diffs.append(f"{table}.{name}: {key} {_fmt(columns[name][key])}, "
                             f"expected {_fmt(column[key])}")
        if columns[name]["nullable"] != column["nullable"]:
            diffs.append(f"{table}.{name}: {_null(columns[name]['nullable'])}, "
                         f"expected {_null(column['nullable'])}")
    for name in [name for name in columns if name not in wanted]:
        extra("column", table, name, f"column {table}.{name} not expected")
    order = [name for name in columns if name in wanted]
    in_order = [name for name in wanted if name in columns]
    if order != in_order:
        # Named "<column> last" when only that column moved to the end (see KNOWN_EXTRAS).
        last = order[-1]
        moved = f"{last} last" if order == [n for n in in_order if n != last] + [last] else None
        extra("column order", table, moved,
              f"{table}: column order {_fmt(order)}, expected {_fmt(list(wanted))}")
    for name in sorted(have["comments"].keys() | want["comments"].keys()):
        text, wanted_text = have["comments"].get(name), want["comments"].get(name)
        if wanted_text is None:
            extra("comment", table, name, f"comment on {table}.{name} not expected: {text!r}")
        elif text != wanted_text:
            text = "none" if text is None else repr(text)
            diffs.append(f"{table}.{name}: comment {text}, expected {wanted_text!r}")
    if have["primary_key"] != want["primary_key"]:
        pk, wanted_pk = (key and f"{key['name']} {_fmt(key['columns'])}"
                         for key in (have["primary_key"], want["primary_key"]))
        diffs.append(f"{table}: primary key {_fmt(pk)}, expected {_fmt(wanted_pk)}")
    for kind, key, ident in _ITEMS:
        _compare_items(kind, table, have[key], want[key], ident, diffs, extra)


def _compare_items(kind: str, table: str, have: list[dict[str, Any]], want: list[dict[str, Any]],
                   ident: str, diffs: list[str], extra: Extra) -> None:
    """Pair constraints or indexes by name, else by ``ident`` (columns, expression); compare."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]]
    unmatched, pairs = list(have), []
    for by in ("name", ident):
        for wanted in [w for w in want if all(w is not p[1] for p in pairs)]:
            found = [item for item in unmatched if wanted[by] and item[by] == wanted[by]]
            if found:
                pairs.append((found[0], wanted))
                unmatched.remove(found[0])
    for wanted in want:
        if all(wanted is not pair[1] for pair in pairs):
            diffs.append(f"{kind} {_label(wanted, ident)} missing on {table}")
    for item in unmatched:
        extra(kind, table, item["name"], f"{kind} {_label(item, ident)} on {table} not expected")
    for item, wanted in pairs:
        if item.get("valid") is False:
            diffs.append(f"{kind} {_label(wanted, ident)} on {table}: INVALID (an interrupted "
                         "concurrent build; `bitloot-lite migrate` builds it again)")
        diffs.extend(f"{kind} {_label(wanted, ident)} on {table}: {_FIELDS.get(field, field)} "
                     f"{_fmt(item[field])}, expected {_fmt(wanted[field])}"
                     for field in wanted if item[field] != wanted[field])


def _label(item: dict[str, Any], ident: str) -> str:
    return item["name"] or _fmt(item[ident] if ident == "columns" else [item[ident]])


def compare_models(database: pw.Database, models: Iterable[type[pw.Model]],
                   live: Snapshot | None = None) -> list[str]:
    """How the live tables differ from what ``models`` (peewee Model classes) declare.

    Checks tables, column names, nullability and each foreign key's target and ON DELETE.
    ``live``: a snapshot of ``database`` already taken (else one is read).
    """
    tables, diffs = (live or snapshot(database))["tables"], []
    for model in models:
        table, owner = model._meta.table_name, model.__name__
        if table not in tables:
            diffs.append(f"table {table} of {owner} missing")
            continue
        live = {column["name"]: column for column in tables[table]["columns"]}
        fields = {field.column_name: field for field in model._meta.sorted_fields}
        for name, field in fields.items():
            if name not in live:
                diffs.append(f"column {table}.{name} of {owner}.{field.name} missing")
                continue
            if live[name]["nullable"] != bool(field.null):
                diffs.append(f"{table}.{name}: {_null(live[name]['nullable'])}, "
                             f"{owner}.{field.name} says {_null(field.null)}")
            if isinstance(field, pw.ForeignKeyField):
                target = (field.rel_model._meta.table_name, [field.rel_field.column_name],
                          (field.on_delete or "NO ACTION").upper())
                if target not in [(fk["ref_table"], fk["ref_columns"], fk["on_delete"])
                                  for fk in tables[table]["foreign_keys"]
                                  if fk["columns"] == [name]]:
                    diffs.append(f"{table}.{name}: no foreign key to {target[0]}"
                                 f"{_fmt(target[1])} ON DELETE {target[2]} as {owner} declares")
        diffs += [f"column {table}.{name} not declared by {owner}"
                  for name in live if name not in fields]
    return diffs
