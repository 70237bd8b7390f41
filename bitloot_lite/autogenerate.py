"""What differs between the models and the state the migrations record (Alembic's compare).

``changes(models, migrations_dir)`` replays every migration on a scratch
SQLite database (it needs no server) and compares the models with two things
that replay gives:

- the model state the migrations record (peewee-migrate's ``migrator.orm``):
  tables, columns, their type and nullability, and the indexes a migration
  declared;
- the schema they build (``schema.snapshot``): the shipped migrations make
  their indexes with plain SQL, so their model state does not list them.

An index is added when a model declares it and the schema lacks it, and
dropped only when the model state declared it and the model no longer does:
an index no model ever declared (``IDX_orders_createdAt``) is never dropped.
Types are compared as the model state records them, with two allowances for
the shipped state, which stands in for what peewee cannot say: a JSONField is
recorded as a TextField, and an EnumField as a CharField of its enum's width
(so a change between text and JSON, or of an enum's labels, is not seen).

``render.py`` turns the changes into a migration file.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import peewee as pw
from peewee_migrate.migrator import ORM

from . import schema
from .errors import ModelsNotFound
from .models import MODELS, BaseModel
from .replay import scratch_sqlite
from .runner import Router

if TYPE_CHECKING:
    from ._typing import StrPath
    from .schema import Snapshot

__all__ = ["Change", "changes", "extended_models", "model_indexes", "models"]

#: An index of a Change: (name or None, (column, ...), unique).
Index = tuple["str | None", tuple[str, ...], bool]


@dataclass(frozen=True)
class Change:
    """One difference. ``kind``: add_table, drop_table, add_column, drop_column,
    alter_column, add_index or drop_index. ``field``/``model``: the model's side
    (None for a drop), ``old``: the migrations' side (None for an add)."""

    kind: str
    table: str
    column: str | None = None
    field: pw.Field[Any] | None = None
    old: pw.Field[Any] | None = None
    model: type[pw.Model] | None = None
    index: Index | None = None  # (name or None, (column, ...), unique)
    #: SQLite's stored text of the column (alter, drop column: a rebuild replaces it)
    #: or of the table (drop table: its rollback makes it again).
    definition: str | None = None

    def describe(self) -> str:
        if self.kind in ("add_table", "drop_table"):
            return f"{self.kind.replace('_', ' ')} {self.table}"
        if self.kind in ("add_index", "drop_index", "change_index"):
            name, columns, unique = self.index  # type: ignore[misc]  # an index change: one
            what = "unique index" if unique else "index"
            if self.kind == "change_index":
                what = f"index to {'unique' if unique else 'not unique'}"
            return (f"{self.kind.split('_')[0]} {what} {name or ''} on {self.table} "
                    f"({', '.join(columns)})").replace("  ", " ")
        if self.kind == "alter_column":
            return f"alter column {self.table}.{self.column}: {_spec(self.old)} -> " \
                   f"{_spec(self.field)}"
        return f"{self.kind.replace('_', ' ')} {self.table}.{self.column}"


# -- the user's models --------------------------------------------------------------------


def _import(spec: str) -> ModuleType:
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec)
        name = f"bitloot_user_models_{abs(hash(str(path.resolve())))}"
        loader = importlib.util.spec_from_file_location(name, path)
        if loader is None or not path.is_file():
            raise ModelsNotFound(spec, "no such file")
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module
        loader.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    return importlib.import_module(spec)


def models(spec: str | None) -> list[type[pw.Model]]:
    """bitloot-lite's models, plus those of the module ``spec`` (a dotted name or a .py
    file: its pw.Model classes, or its ``MODELS`` if it has one), parents first."""
    found: list[type[pw.Model]] = list(MODELS)
    if not spec:
        return found
    try:
        module = _import(spec)
    except ModelsNotFound:
        raise
    except Exception as exc:  # the user's code: any error is theirs, in one line
        lines = str(exc).strip().splitlines()
        raise ModelsNotFound(spec, f"{type(exc).__name__}: {lines[0] if lines else ''}"
                             ) from None
    declared = getattr(module, "MODELS", None)
    if declared is None:
        declared = [value for value in vars(module).values()
                    if isinstance(value, type) and issubclass(value, pw.Model)
                    and value.__module__ == module.__name__]
        # A base class of the user's (like our BaseModel) has no table of its own.
        declared = [m for m in declared if not any(
            other is not m and issubclass(other, m) for other in declared)]
    found += [m for m in declared if m not in found and m is not BaseModel]
    return found


@contextlib.contextmanager
def extended_models(spec: str | None) -> Iterator[list[type[pw.Model]]]:
    """``models(spec)`` for the block; the shipped models are restored after it, so
    that a module that extends them (``Order._meta.add_field``) leaves no trace."""
    saved = {model: (dict(model._meta.fields), list(model._meta.indexes),
                     dict(vars(model))) for model in MODELS}
    loaded = set(sys.modules)
    try:
        yield models(spec)
    finally:
        for name in set(sys.modules) - loaded:  # imported again, extending again, next time
            del sys.modules[name]
        for model, (fields, indexes, attributes) in saved.items():
            for name in [n for n in model._meta.fields if n not in fields]:
                model._meta.remove_field(name)
                if name not in attributes and name in vars(model):
                    delattr(model, name)
            for name, field in fields.items():
                if model._meta.fields.get(name) is not field:
                    model._meta.add_field(name, field)
            model._meta.indexes = indexes


# -- comparing ----------------------------------------------------------------------------


def model_indexes(model: type[pw.Model]) -> dict[tuple[str, ...], bool]:
    """{(column, ...): unique} of the indexes ``model`` declares (primary key aside)."""
    found: dict[tuple[str, ...], bool]
    meta, found = model._meta, {}
    for field in meta.sorted_fields:
        if field is meta.primary_key:
            continue
        if field.unique or field.index:
            found[(field.column_name,)] = bool(field.unique)
    for index in meta.indexes:
        if isinstance(index, tuple):
            names, unique = index
            columns = tuple(meta.fields[n].column_name if n in meta.fields else n
                            for n in names)
        else:  # a ModelIndex (Model.add_index)
            columns = tuple(getattr(f, "column_name", str(f)) for f in index._expressions)
            unique = index._unique
        found[columns] = bool(unique)
    return found


def _kind(field: pw.Field[Any]) -> tuple[str, Any]:
    """What the type comparison looks at: (family, size)."""
    if isinstance(field, pw.ForeignKeyField):
        return _kind(field.rel_field)
    family = field.field_type
    if family == "JSON":
        family = "TEXT"  # the migrations' model state records JSON as text
    if hasattr(field, "enum"):  # an EnumField: the migration owns its type
        return ("ENUM", None)
    size = getattr(field, "max_length", None) if family == "VARCHAR" else None
    if family == "DECIMAL":
        size = (field.max_digits, field.decimal_places)  # type: ignore[attr-defined]
    return (family, size)


def _same_type(model_field: pw.Field[Any], state_field: pw.Field[Any]) -> bool:
    have, want = _kind(state_field), _kind(model_field)
    if want[0] == "ENUM":
        return have[0] in ("VARCHAR", "ENUM")
    return have == want


def _spec(field: Any) -> str:  # a Field (alter_column's old and field are both set)
    family, size = _kind(field)
    if isinstance(size, tuple):
        size = ",".join(map(str, size))
    size = "" if size is None else f"({size})"
    return f"{family.lower()}{size} {'NULL' if field.null else 'NOT NULL'}"


def state(migrations_dir: StrPath | None = None, names: Iterable[str] | None = None,
          ) -> tuple[ORM, Snapshot, dict[str, dict[str | None, str]]]:
    """(orm, snapshot, {table: {column: definition, None: CREATE TABLE}}): the model
    state, the SQLite schema and the stored text of each table and column after
    migrations ``names`` (default: all), replayed on a scratch database."""
    with scratch_sqlite() as scratch:
        router = Router(scratch, migrations_dir)
        for name in router.todo if names is None else names:
            router.run_one(name, router.migrator, fake=False)
        creates = scratch.execute_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
        return (router.migrator.orm, schema.snapshot(scratch),
                {table: {**column_definitions(sql), None: sql} for table, sql in creates})


def column_definitions(create: str) -> dict[str | None, str]:
    """{column: its definition, as written} of a CREATE TABLE text (constraints left out)."""
    body = create[create.index("(") + 1:create.rindex(")")]
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(body):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    found: dict[str | None, str] = {}
    for part in (p.strip() for p in parts):
        if part[:1] == '"':
            found[part[1:part.index('"', 1)]] = part
    return found


def changes(all_models: Iterable[type[pw.Model]], migrations_dir: StrPath | None = None,
            names: Iterable[str] | None = None) -> list[Change]:
    """The changes that would bring the migrations' state to ``all_models``, in the
    order a migration makes them: new tables, columns, type changes, indexes; then
    the index, column and table drops. The replay is on SQLite whatever the
    backend: the model state and the indexes are the same on both."""
    orm, built, definitions = state(migrations_dir, names)
    tables = {model._meta.table_name: model for model in orm}
    wanted = {model._meta.table_name: model for model in all_models}
    adds, drops = [], []
    for table, model in wanted.items():
        if table not in tables:
            adds.append(Change("add_table", table, model=model))
            adds += [Change("add_index", table, index=(None, cols, unique), model=model)
                     for cols, unique in model_indexes(model).items()]
            continue
        have = {f.column_name: f for f in tables[table]._meta.sorted_fields}
        want = {f.column_name: f for f in model._meta.sorted_fields}
        for column, field in want.items():
            if column not in have:
                adds.append(Change("add_column", table, column, field=field))
            elif not _same_type(field, have[column]) or bool(field.null) != bool(
                    have[column].null):
                adds.append(Change("alter_column", table, column, field=field,
                                   old=have[column],
                                   definition=definitions[table].get(column)))
        drops += [Change("drop_column", table, column, old=have[column],
                         definition=definitions[table].get(column))
                  for column in have if column not in want]
        physical = _physical_indexes(built["tables"].get(table))
        declared = model_indexes(tables[table])
        for cols, unique in model_indexes(model).items():
            if cols not in physical:
                adds.append(Change("add_index", table, index=(None, cols, unique),
                                   model=model))
            elif physical[cols][1] != unique:  # rendered as a TODO: which rows clash?
                adds.append(Change("change_index", table, index=(physical[cols][0], cols,
                                                                 unique)))
        for cols in declared:
            if cols not in model_indexes(model) and cols in physical:
                drops.insert(0, Change("drop_index", table, model=tables[table],
                                       index=(physical[cols][0], cols, physical[cols][1])))
    for table in [table for table in tables if table not in wanted]:
        # Its indexes first, so that the rollback makes them again after the table.
        drops += [Change("drop_index", table, model=tables[table],
                         index=(index["name"], tuple(index["columns"]), index["unique"]))
                  for index in built["tables"].get(table, {}).get("indexes", [])]
        drops.append(Change("drop_table", table, model=tables[table],
                            definition=definitions[table][None]))
    return adds + drops


def _physical_indexes(table: dict[str, Any] | None) -> dict[tuple[str, ...],
                      tuple[str | None, bool]]:
    """{(column, ...): (name, unique)} of a snapshot table's indexes and UNIQUE constraints."""
    if table is None:
        return {}
    found = {tuple(i["columns"]): (i["name"], i["unique"]) for i in table["indexes"]}
    found.update({tuple(u["columns"]): (u["name"], True) for u in table["unique"]})
    return found
