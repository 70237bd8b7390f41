"""A model field as the migrations write it: its column type and definition on each
backend, and the plain-peewee code that records it in ``migrator.orm``.

The types are the ones the shipped migrations use (uuid/TEXT, timestamp/DATETIME,
numeric(p,s)/NUMERIC(p,s), jsonb/TEXT with a json_valid CHECK, boolean/BOOLEAN);
a migration file never imports bitloot_lite, so the state is recorded with
peewee's own fields (a JSONField as a TextField, as 002 and 003 do).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Iterable
from typing import Any

import peewee as pw

from .fields import utcnow
from .target import SQLITE_UUID_DEFAULT

__all__ = ["column_sql", "default_sql", "field_code", "index_name", "model_code", "quote",
           "sql_type"]

_SQLITE_UUID = f"({SQLITE_UUID_DEFAULT})"
#: peewee field_type -> (PostgreSQL, SQLite); sizes are added by sql_type.
_TYPES = {"VARCHAR": ("varchar", "VARCHAR"), "TEXT": ("text", "TEXT"),
          "INT": ("integer", "INTEGER"), "BIGINT": ("bigint", "INTEGER"),
          "SMALLINT": ("smallint", "INTEGER"), "BOOL": ("boolean", "BOOLEAN"),
          "FLOAT": ("real", "REAL"), "DOUBLE": ("double precision", "REAL"),
          "DATETIME": ("timestamp", "DATETIME"), "DATE": ("date", "DATE"),
          "UUID": ("uuid", "TEXT"), "JSON": ("jsonb", "TEXT"),
          "DECIMAL": ("numeric", "NUMERIC")}


def sql_type(field: pw.Field[Any], backend: str) -> str | None:
    """The column type the migrations use for ``field`` on ``backend``; None if unknown."""
    if isinstance(field, pw.ForeignKeyField):
        return sql_type(field.rel_field, backend)
    if hasattr(field, "enum"):
        return None  # an enum needs a type (PostgreSQL) or a CHECK (SQLite): by hand
    names = _TYPES.get(field.field_type)
    if names is None:
        return None
    name = names[backend == "sqlite"]
    if field.field_type == "VARCHAR":
        return f"{name}({field.max_length})"  # type: ignore[attr-defined]  # a CharField
    if field.field_type == "DECIMAL":
        return f"{name}({field.max_digits},{field.decimal_places})"  # type: ignore[attr-defined]
    return name


def default_sql(field: pw.Field[Any], backend: str) -> tuple[str | None, bool]:
    """(SQL default or None, whether it is an expression rather than a constant)."""
    value = field.default
    if value is None:
        return None, False
    if callable(value):
        if value in (utcnow, dt.datetime.now, dt.datetime.utcnow):
            return ("now()" if backend == "postgres" else "CURRENT_TIMESTAMP"), True
        if value is uuid.uuid4:
            return ("gen_random_uuid()" if backend == "postgres" else _SQLITE_UUID), True
        return None, False
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return (("true" if value else "false") if backend == "postgres" else str(int(value))
                ), False
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(value), False
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'", False
    return None, False


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_sql(field: pw.Field[Any], backend: str, *, table: str | None = None) -> str | None:
    """The column definition of ``field`` (its foreign key inline, named
    ``FK_<table>_<column>``); None if its type is unknown."""
    type_ = sql_type(field, backend)
    if type_ is None:
        return None
    parts = [quote(field.column_name), type_]
    if not field.null:
        parts.append("NOT NULL")
    default, _expression = default_sql(field, backend)
    if default is not None:
        parts.append(f"DEFAULT {default}")
    if field.field_type == "JSON" and backend == "sqlite":
        column = quote(field.column_name)
        parts.append(f"CHECK ({column} IS NULL OR json_valid({column}))" if field.null
                     else f"CHECK (json_valid({column}))")
    if isinstance(field, pw.ForeignKeyField):
        parts.append(f"CONSTRAINT {quote(f'FK_{table}_{field.column_name}')} REFERENCES "
                     f"{quote(field.rel_model._meta.table_name)} "
                     f"({quote(field.rel_field.column_name)})")
        for rule, value in (("ON DELETE", field.on_delete), ("ON UPDATE", field.on_update)):
            if value:
                parts.append(f"{rule} {value.upper()}")
    return " ".join(parts)


def index_name(table: str, columns: Iterable[str]) -> str:
    return f"IDX_{table}_{'_'.join(columns)}"


# -- the model state, as code ---------------------------------------------------------

_PLAIN = {"JSON": "TextField", "DATETIME": "DateTimeField", "DECIMAL": "DecimalField",
          "UUID": "UUIDField"}


def field_code(field: pw.Field[Any], *, with_index: bool = True) -> str | None:
    """``pw.XField(...)`` recording ``field`` in the model state (plain peewee: a
    migration never imports bitloot_lite); None if it cannot be said."""
    if isinstance(field, pw.ForeignKeyField):
        cls = "ForeignKeyField"
    elif hasattr(field, "enum"):
        cls = "CharField"
    else:
        cls = _PLAIN.get(field.field_type, type(field).__name__)
        if not hasattr(pw, cls) or not issubclass(getattr(pw, cls), pw.Field):
            return None
    args = []
    if isinstance(field, pw.ForeignKeyField):
        args += [f"migrator.orm[{field.rel_model._meta.table_name!r}]", "backref='+'"]
        args += [f"{key}={getattr(field, key)!r}" for key in ("on_delete", "on_update")
                 if getattr(field, key)]
    if cls == "CharField":
        args.append(f"max_length={field.max_length}")  # type: ignore[attr-defined]
    if cls == "DecimalField":
        args += [f"max_digits={field.max_digits}", f"decimal_places={field.decimal_places}"]  # type: ignore[attr-defined]
    if field.primary_key:
        args.append("primary_key=True")
    if field.null:
        args.append("null=True")
    if with_index and field.unique:
        args.append("unique=True")
    elif isinstance(field, pw.ForeignKeyField) and not (with_index and field.index):
        args.append("index=False")
    elif with_index and field.index and not isinstance(field, pw.ForeignKeyField):
        args.append("index=True")
    default, _expression = default_sql(field, "postgres")
    if default is not None and not callable(field.default):
        value = field.default.value if isinstance(field.default, enum.Enum) else field.default
        args.append(f"default={value!r}")
    elif default is not None:  # the callables default_sql knows, said without bitloot_lite
        args.append("default=uuid.uuid4" if field.default is uuid.uuid4
                    else "default=dt.datetime.now")
    if field.column_name != field.name:
        args.append(f"column_name={field.column_name!r}")
    return f"pw.{cls}({', '.join(args)})"


def model_code(model: type[pw.Model], class_name: str, indent: str = "    ") -> str | None:
    """A model class recording ``model``'s table in the state, or None."""
    lines = [f"{indent}class {class_name}(pw.Model):"]
    for field in model._meta.sorted_fields:
        code = field_code(field)
        if code is None:
            return None
        lines.append(f"{indent}    {field.name} = {code}")
    indexes = [i for i in model._meta.indexes if isinstance(i, tuple)]
    lines += ["", f"{indent}    class Meta:",
              f"{indent}        table_name = {model._meta.table_name!r}"]
    if indexes:
        lines.append(f"{indent}        indexes = {tuple(indexes)!r}")
    return "\n".join(lines)
