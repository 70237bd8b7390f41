"""`diagram`: the live schema as Mermaid or dot, every table, column and foreign key."""

import re

import conftest
import pytest

from bitloot_lite import ConfigurationError
from bitloot_lite.local.diagram import diagram, short_type
from bitloot_lite.schema import snapshot


def _mermaid_entities(text):
    """{table: {column: (type, keys)}} and the relationship lines of a Mermaid ER diagram."""
    entities, relations, current = {}, [], None
    for line in text.splitlines()[1:]:
        line = line.strip()
        if line.endswith("{") and "--" not in line:
            current = entities.setdefault(line[:-1].strip(), {})
        elif line == "}":
            current = None
        elif current is not None:
            match = re.fullmatch(r'(\S+) (\S+)((?: (?:PK|FK|UK),?)*)(?: "([^"]*)")?', line)
            assert match, line
            type_, name, keys, _note = match.groups()
            current[name] = (type_, [k.strip(" ,") for k in keys.split(",") if k.strip(" ,")])
        elif line:
            relations.append(line)
    return entities, relations


def test_mermaid_lists_every_table_column_and_foreign_key(migrated):
    live = snapshot(migrated)
    text = diagram(migrated)
    assert text.startswith("erDiagram\n")
    entities, relations = _mermaid_entities(text)
    assert set(entities) == set(live["tables"]) >= {"orders", "order_items", "keys",
                                                    "payments", "webhook_logs"}
    fks = 0
    for name, table in live["tables"].items():
        assert list(entities[name]) == [c["name"] for c in table["columns"]]
        for column in table["primary_key"]["columns"]:
            assert "PK" in entities[name][column][1]
        for fk in table["foreign_keys"]:
            fks += 1
            (column,) = fk["columns"]
            assert "FK" in entities[name][column][1]
            rules = f'ON DELETE {fk["on_delete"]} ON UPDATE {fk["on_update"]}'
            assert any(line.startswith(f'{fk["ref_table"]} ') and f" {name} : " in line
                       and f'"{column} {rules}"' in line for line in relations), (name, fk)
        for column in table["columns"]:
            type_ = entities[name][column["name"]][0]
            # The type itself, or (where Mermaid's one word cannot hold it) a close
            # spelling, with the exact type in the column's note.
            assert type_ == short_type(column["type"]) or (
                type_ == short_type(column["type"]).replace(",", "_").replace(" ", "_")
                and column["type"] in text), (column, type_)
    assert fks == len(relations) == 3
    assert "CASCADE" in text
    assert "UK" in entities["payments"]["externalId"][1]


def test_types_are_the_backends_own(migrated, backend):
    entities, _ = _mermaid_entities(diagram(migrated))
    if backend == "postgres":
        assert entities["orders"]["id"][0] == "uuid"
        assert entities["orders"]["status"][0] == "orders_status_enum"
        assert entities["payments"]["rawPayload"][0] == "jsonb"
        assert entities["orders"]["email"][0] == "varchar(320)"
    else:
        assert entities["orders"]["id"][0] == "TEXT"


def test_dot_has_a_node_per_table_and_an_edge_per_foreign_key(migrated):
    live = snapshot(migrated)
    text = diagram(migrated, "dot")
    assert text.startswith("digraph schema {") and text.rstrip().endswith("}")
    for name, table in live["tables"].items():
        assert f'"{name}" [label=<' in text
        for column in table["columns"]:
            assert f'port="{column["name"]}"' in text
        for fk in table["foreign_keys"]:
            assert (f'"{name}":"{fk["columns"][0]}" -> '
                    f'"{fk["ref_table"]}":"{fk["ref_columns"][0]}"') in text
    assert sum(len(t["foreign_keys"]) for t in live["tables"].values()) == len(
        re.findall(r'^    "\w+":"\w+" -> ', text, re.M))


def test_the_cli_prints_the_diagram(migrated, db_url):
    result = conftest.run_cli("diagram", "--database", db_url)
    assert result.exit_code == 0, result.output
    assert result.output == diagram(migrated)
    result = conftest.run_cli("diagram", "--format", "dot", "--database", db_url)
    assert result.exit_code == 0 and result.output.startswith("digraph")
    assert conftest.run_cli("diagram", "--format", "png", "--database", db_url).exit_code == 2


def test_an_unknown_format_is_refused(migrated):
    with pytest.raises(ConfigurationError, match="unknown diagram format"):
        diagram(migrated, "png")


README = conftest.REPO_ROOT / "README.md"


@conftest.postgres_only
def test_the_readme_shows_the_diagram_of_the_shipped_schema(migrated):
    """The README's Mermaid block is `bitloot-lite diagram` on PostgreSQL at head."""
    blocks = re.findall(r"```mermaid\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    current = diagram(migrated)
    assert blocks[0] == current, (
        "README.md's diagram is out of date: replace its ```mermaid block with the output of "
        "`bitloot-lite diagram --database postgresql://...` on a database migrated to head:\n"
        + current)
