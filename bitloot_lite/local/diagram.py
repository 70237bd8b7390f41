"""The live schema as an entity-relationship diagram: Mermaid text or Graphviz dot.

Drawn from ``schema.snapshot`` (the catalog), never from the models, so it shows
what the database really holds: tables, columns with their types, primary,
foreign and unique keys, and what each foreign key does on delete and update.
"""

import re
from typing import Any

import peewee as pw

from ..errors import ConfigurationError
from ..schema import Snapshot, snapshot

FORMATS = ("mermaid", "dot")

#: PostgreSQL's long type names, as people write them.
_SHORT_TYPES = (("character varying", "varchar"), ("timestamp without time zone", "timestamp"),
                ("timestamp with time zone", "timestamptz"), ("double precision", "float8"))


def diagram(database: pw.Database, fmt: str = "mermaid") -> str:
    """The ER diagram of ``database``'s live schema as text (``fmt``: mermaid or dot)."""
    if fmt not in FORMATS:
        raise ConfigurationError(f"unknown diagram format {fmt!r} (known: {', '.join(FORMATS)})")
    live = snapshot(database)
    return (mermaid if fmt == "mermaid" else dot)(live)


def short_type(type_: str) -> str:
    for long, short in _SHORT_TYPES:
        type_ = type_.replace(long, short)
    return type_


def _keys(table: dict[str, Any]) -> dict[str, list[str]]:
    """column -> its key markers (PK, FK, UK), in that order."""
    marks: dict[str, list[str]] = {}
    for column in (table["primary_key"] or {}).get("columns", []):
        marks.setdefault(column, []).append("PK")
    for fk in table["foreign_keys"]:
        for column in fk["columns"]:
            marks.setdefault(column, []).append("FK")
    # A column unique by itself (a constraint or a unique index of one column).
    uniques = table["unique"] + [index for index in table["indexes"] if index["unique"]]
    for item in uniques:
        if len(item["columns"]) == 1 and "UK" not in marks.get(item["columns"][0], []):
            marks.setdefault(item["columns"][0], []).append("UK")
    return marks


def _rules(fk: dict[str, Any]) -> str:
    return f"ON DELETE {fk['on_delete']} ON UPDATE {fk['on_update']}"


def _column_note(column: dict[str, Any], type_token: str, enums: dict[str, list[str]],
                 key: bool) -> str:
    notes = [] if column["nullable"] or key else ["not null"]
    if type_token != short_type(column["type"]):
        notes.append(column["type"])  # the exact type, where Mermaid's word could not hold it
    if column["type"] in enums:
        notes.append("one of " + ", ".join(enums[column["type"]]))
    return "; ".join(notes)


def mermaid(live: Snapshot) -> str:
    """A snapshot as a Mermaid ``erDiagram`` (GitHub renders it in Markdown)."""
    lines = ["erDiagram"]
    tables = live["tables"]
    for name, table in tables.items():
        for fk in table["foreign_keys"]:
            nullable = any(_column(table, c)["nullable"] for c in fk["columns"])
            parent = "|o" if nullable else "||"
            label = f"{', '.join(fk['columns'])} {_rules(fk)}"
            lines.append(f'    {fk["ref_table"]} {parent}--o{{ {name} : "{label}"')
    for name, table in tables.items():
        lines.append(f"    {name} {{")
        marks = _keys(table)
        for column in table["columns"]:
            # Mermaid's attribute type is one word of letters, digits, _ - ( ) [ ].
            token = re.sub(r"[^A-Za-z0-9_\-()\[\]]", "_", short_type(column["type"]))
            keys = ", ".join(marks.get(column["name"], []))
            note = _column_note(column, token, live.get("enums", {}), "PK" in keys)
            line = f"        {token} {column['name']}"
            line += f" {keys}" if keys else ""
            line += f' "{note}"' if note else ""
            lines.append(line)
        lines.append("    }")
    return "\n".join(lines) + "\n"


def _column(table: dict[str, Any], name: str) -> dict[str, Any]:
    return next(column for column in table["columns"] if column["name"] == name)


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def dot(live: Snapshot) -> str:
    """A snapshot as a Graphviz digraph (``dot -Tsvg``): a table per node, an edge per FK."""
    lines = ["digraph schema {", "    rankdir=LR;", '    node [shape=plain fontname="Helvetica"];',
             '    edge [fontname="Helvetica" fontsize=10];']
    for name, table in live["tables"].items():
        marks = _keys(table)
        rows = [f'<tr><td colspan="3" bgcolor="lightgrey"><b>{_html(name)}</b></td></tr>']
        for column in table["columns"]:
            keys = ", ".join(marks.get(column["name"], []))
            null = "" if column["nullable"] else " not null"
            rows.append(f'<tr><td port="{_html(column["name"])}" align="left">'
                        f'{_html(column["name"])}</td><td align="left">'
                        f'{_html(short_type(column["type"]))}{null}</td><td>{keys}</td></tr>')
        body = "".join(rows)
        lines.append(f'    "{name}" [label=<<table border="0" cellborder="1" '
                     f'cellspacing="0">{body}</table>>];')
    for name, table in live["tables"].items():
        for fk in table["foreign_keys"]:
            label = f"{', '.join(fk['columns'])} -> {', '.join(fk['ref_columns'])}\\n{_rules(fk)}"
            lines.append(f'    "{name}":"{fk["columns"][0]}" -> '
                         f'"{fk["ref_table"]}":"{fk["ref_columns"][0]}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
