"""The content checksum of a table, the same for the same rows on either backend.

Each value is put in one canonical text by the kind of its model field (uuid,
timestamp, numeric(20,8), JSON, boolean, plain), whatever form the backend
hands it in (SQLite's text and floats, psycopg2's datetimes and Decimals); a
row's sha256 is taken of those texts, and a table's checksum is the sum of its
rows' (mod 2**256), so that it needs no ORDER BY and is computed as the rows
stream by. ``copy`` uses it on both sides of a copy.
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import peewee as pw

from ..fields import JSONField, MoneyField, UTCDateTimeField, UUIDField

MODULUS = 1 << 256


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # uuid, json, ts, money, bool, plain
    field: Any  # the model's Field (None for a column no model declares: kind "plain")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]


def kind_of(model_field: object) -> str:
    if isinstance(model_field, UUIDField):
        return "uuid"
    if isinstance(model_field, JSONField):
        return "json"
    if isinstance(model_field, UTCDateTimeField):
        return "ts"
    if isinstance(model_field, MoneyField):
        return "money"
    if isinstance(model_field, pw.BooleanField):
        return "bool"
    if isinstance(model_field, pw.ForeignKeyField):
        return "uuid"
    return "plain"


def canonical(column: Column) -> Callable[[Any], str]:
    """value (either backend's, or about to be written) -> the text the checksum uses."""
    kind = column.kind
    if kind == "ts":
        parse = column.field.python_value

        def canonical(value: Any) -> str:
            if isinstance(value, str):
                if len(value) == 19:
                    return value + ".000000"
                if len(value) == 26 and value[10] == " ":
                    return value
                value = parse(value)
            return cast(str, value.replace(tzinfo=None).isoformat(" ", "microseconds"))
        return canonical
    if kind == "money":
        quantize = column.field.python_value
        return lambda value: str(quantize(value))
    if kind == "json":
        return canonical_json
    if kind == "bool":
        return lambda value: "1" if value else "0"
    return str


#: JSON's canonical form: keys sorted, no spaces, every number a float (jsonb writes
#: 1e2 as 100 and keeps 1.0; SQLite keeps the text as it came), decoder and encoder
#: made once (making them took a third of the time).
_decode = json.JSONDecoder(parse_int=float).decode
_encode = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode


def canonical_json(text: str) -> str:
    return _encode(_decode(text))


def row_hasher(table: Table) -> Callable[[Sequence[Any]], int]:
    canon = [canonical(column) for column in table.columns]

    def row_hash(row: Sequence[Any]) -> int:
        text = "\x1f".join(["\x00" if value is None else c(value)
                            for c, value in zip(canon, row, strict=True)])
        return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(),
                              "big")
    return row_hash




def hexdigest(total: int) -> str:
    """A table's checksum (the sum of its row hashes) as text."""
    return f"{total % MODULUS:064x}"
