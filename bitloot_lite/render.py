"""The migration file for a list of changes (autogenerate.py says what differs).

The file is in the format of the shipped ones: per-backend SQL lists for
PostgreSQL and SQLite, the model state for ``migrator.orm`` (in
``migrator.fake()``), and the rollback of each. Every choice is a safe one:

- on PostgreSQL an index on an existing table is built CONCURRENTLY by the
  runner after the commit (``POSTGRES_CONCURRENT_INDEXES``, as 005 does);
- a type or nullability change on SQLite is a table rebuild that copies
  every row, as 004 does, run with foreign keys off by the runner;
- what cannot be written safely (a NOT NULL column with no SQL default for
  the existing rows, a type change that needs a conversion, an unknown field
  type, a drop that loses data) is written with a ``TODO`` entry: the
  migration then refuses to run until someone has edited it.
"""

from __future__ import annotations

import peewee as pw

from .autogenerate import Change
from .ddl import column_sql, default_sql, field_code, index_name, model_code, quote, sql_type

__all__ = ["migration"]

#: A statement of the file: SQL, or (table, old, new) column definitions for SQLite's rebuild.
#: SQL text, or a SQLite rebuild of (table, old column definition or None, new or None).
Statement = str | tuple[str, str | None, str | None]

#: Type changes PostgreSQL makes by a plain cast that keeps every value (or refuses).
_SAFE_CASTS = {("varchar", "varchar"), ("varchar", "text"), ("text", "varchar"),
               ("numeric", "numeric"), ("integer", "bigint"), ("smallint", "integer"),
               ("smallint", "bigint")}


# -- each change, as SQL and state on both backends -----------------------------------


class _Plan:
    """What the file will hold, filled change by change."""

    def __init__(self) -> None:
        self.up: dict[str, list[Statement]] = {"postgres": [], "sqlite": []}
        #: In rollback order once reversed.
        self.down: dict[str, list[Statement]] = {"postgres": [], "sqlite": []}
        self.concurrent: dict[str, str] = {}
        self.state_up: list[str] = []
        self.state_down: list[str] = []
        self.todo: list[str] = []
        self.classes: list[str] = []  # model classes defined in migrate/rollback
        self.down_classes: list[str] = []

    def both(self, up: Statement, down: Statement | None = None) -> None:
        for backend in ("postgres", "sqlite"):
            self.up[backend].append(up)
            if down is not None:
                self.down[backend].append(down)


def _class_name(table: str) -> str:
    return "".join(part.title() for part in table.split("_")) or "Table"


def _add_table(plan: _Plan, change: Change) -> None:
    model, table = change.model, change.table
    assert model is not None  # each kind of Change carries what it needs: see describe()
    for backend in ("postgres", "sqlite"):
        columns = []
        for field in model._meta.sorted_fields:
            column = column_sql(field, backend, table=table)
            if column is None:
                plan.todo.append(f"write the type of {table}.{field.column_name} "
                                 f"({type(field).__name__}) in both CREATE TABLEs")
                column = f"{quote(field.column_name)} /* TODO: type */"
            columns.append(column)
        key = model._meta.primary_key
        if key and not isinstance(key, pw.CompositeKey):  # peewee: False for no key
            columns.append(f"CONSTRAINT {quote(f'PK_{table}')} "
                           f"PRIMARY KEY ({quote(key.column_name)})")
        else:
            plan.todo.append(f"{table} has no single-column primary key: write its own")
        body = ",\n    ".join(columns)
        plan.up[backend].append(f"CREATE TABLE {quote(table)} (\n    {body}\n)")
        plan.down[backend].append(f"DROP TABLE {quote(table)}")
    name = _class_name(table)
    code = model_code(model, name)
    if code is None:
        plan.todo.append(f"record the model of {table} in the state (a field type peewee "
                         "alone cannot name)")
    else:
        plan.classes.append(code)
        plan.state_up.append(f"migrator.create_model({name})")
    plan.state_down.append(f"migrator.remove_model({table!r})")


def _drop_table(plan: _Plan, change: Change) -> None:
    table, model = change.table, change.model
    plan.todo.append(f"this drops the table {table} and its rows: confirm it (the rollback "
                     "recreates it empty)")
    recreate = _Plan()
    _add_table(recreate, Change("add_table", table, model=model))
    for backend in ("postgres", "sqlite"):
        plan.up[backend].append(f"DROP TABLE {quote(table)}")
        # SQLite: the table exactly as the migrations made it; PostgreSQL: from its state.
        plan.down[backend].append(change.definition if backend == "sqlite" and
                                  change.definition else recreate.up[backend][0])
    plan.state_up.append(f"migrator.remove_model({table!r})")
    plan.down_classes += recreate.classes
    plan.state_down += recreate.state_up
    plan.todo += recreate.todo


def _add_column(plan: _Plan, change: Change) -> None:
    field, table, column = change.field, change.table, change.column
    assert field is not None and column is not None
    for backend in ("postgres", "sqlite"):
        definition = column_sql(field, backend, table=table)
        if definition is None:
            plan.todo.append(f"write the type of {table}.{column} ({type(field).__name__})")
            definition = f"{quote(column)} /* TODO: type */"
        plan.up[backend].append(f"ALTER TABLE {quote(table)} ADD COLUMN {definition}")
        if backend == "sqlite" and (isinstance(field, pw.ForeignKeyField) or field.unique):
            # SQLite cannot DROP a column in a foreign key or UNIQUE: rebuild without it.
            plan.down[backend].append((table, definition, None))
        else:
            plan.down[backend].append(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(column)}")
    default, expression = default_sql(field, "sqlite")
    if not field.null and default is None:
        plan.todo.append(f"{table}.{column} is NOT NULL with no SQL default: give the "
                         "existing rows a value (add it nullable, fill it, then SET NOT NULL)")
    elif expression and not field.null:
        plan.todo.append(f"{table}.{column} defaults to an expression, which SQLite cannot "
                         "ADD COLUMN with: add it nullable and fill it")
    code = field_code(field)
    if code is None:
        plan.todo.append(f"record {table}.{column} in the state")
    else:
        plan.state_up.append(f"migrator.add_fields({table!r}, {field.name}={code})")
    plan.state_down.append(f"migrator.remove_fields({table!r}, {field.name!r})")


def _drop_column(plan: _Plan, change: Change) -> None:
    old, table, column = change.old, change.table, change.column
    assert old is not None and column is not None
    plan.todo.append(f"this drops {table}.{column} and its values: confirm it (the rollback "
                     "adds it back empty)")
    stored = change.definition
    for backend in ("postgres", "sqlite"):
        definition = stored if backend == "sqlite" and stored else column_sql(
            old, backend, table=table)
        if backend == "sqlite" and (isinstance(old, pw.ForeignKeyField) or old.unique):
            plan.up[backend].append((table, stored, None))
        else:
            plan.up[backend].append(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(column)}")
        plan.down[backend].append(f"ALTER TABLE {quote(table)} ADD COLUMN {definition}")
    if not old.null and default_sql(old, "sqlite")[0] is None:
        plan.todo.append(f"the rollback re-adds {table}.{column} NOT NULL with no default: "
                         "give it one")
    plan.state_up.append(f"migrator.remove_fields({table!r}, {old.name!r})")
    code = field_code(old)
    if code is not None:
        plan.state_down.append(f"migrator.add_fields({table!r}, {old.name}={code})")


def _alter_column(plan: _Plan, change: Change) -> None:
    field, old, table, column = change.field, change.old, change.table, change.column
    assert field is not None and old is not None and column is not None
    new_pg, old_pg = sql_type(field, "postgres"), sql_type(old, "postgres")
    col, tab = quote(column), quote(table)
    if new_pg != old_pg:
        families = (old_pg or "?").split("(")[0], (new_pg or "?").split("(")[0]
        if new_pg is None or old_pg is None or families not in _SAFE_CASTS:
            plan.todo.append(f"{table}.{column} changes type {old_pg} -> {new_pg}: write the "
                             "conversion (USING ...) and its rollback")
        plan.up["postgres"].append(f"ALTER TABLE {tab} ALTER COLUMN {col} TYPE {new_pg} "
                                   f"USING {col}::{new_pg}")
        plan.down["postgres"].append(f"ALTER TABLE {tab} ALTER COLUMN {col} TYPE {old_pg} "
                                     f"USING {col}::{old_pg}")
    if bool(field.null) != bool(old.null):
        up, down = ("DROP NOT NULL", "SET NOT NULL") if field.null else ("SET NOT NULL",
                                                                          "DROP NOT NULL")
        plan.up["postgres"].append(f"ALTER TABLE {tab} ALTER COLUMN {col} {up}")
        plan.down["postgres"].append(f"ALTER TABLE {tab} ALTER COLUMN {col} {down}")
    new_definition = _rewritten(change)
    if new_definition is None:
        plan.todo.append(f"write SQLite's rebuild of {table} for {column}: its stored "
                         f"definition is not the simple one expected ({change.definition!r})")
        plan.up["sqlite"].append(f"-- TODO: rebuild {table} for {column}")
    else:
        assert change.definition is not None  # _rewritten rewrote it
        plan.up["sqlite"].append((table, change.definition, new_definition))
        plan.down["sqlite"].append((table, new_definition, change.definition))
    code = field_code(field)
    if code is None:
        plan.todo.append(f"record {table}.{column} in the state")
    else:
        plan.state_up.append(f"migrator.change_fields({table!r}, {field.name}={code})")
    old_code = field_code(old)
    if old_code is not None:
        plan.state_down.append(f"migrator.change_fields({table!r}, {old.name}={old_code})")


def _rewritten(change: Change) -> str | None:
    """SQLite's stored definition of the column with the new type and nullability, or None."""
    definition, old, field = change.definition, change.old, change.field
    assert old is not None and field is not None
    if not definition:
        return None
    words = definition.split(None, 2)
    old_type, new_type = sql_type(old, "sqlite"), sql_type(field, "sqlite")
    if len(words) < 2 or words[1].upper() != (old_type or "").upper() or new_type is None:
        return None
    rest = words[2] if len(words) > 2 else ""
    if "PRIMARY KEY" in rest.upper():
        return None
    if field.null and not old.null:
        if rest.upper().count("NOT NULL") != 1:
            return None
        at = rest.upper().index("NOT NULL")
        rest = (rest[:at] + rest[at + len("NOT NULL"):]).strip()
    elif not field.null and old.null:
        rest = ("NOT NULL " + rest).strip()
    return " ".join(part for part in (words[0], new_type, rest) if part)


def _add_index(plan: _Plan, change: Change, new_tables: set[str]) -> None:
    assert change.index is not None
    _name, columns, unique = change.index
    table, name = change.table, index_name(change.table, change.index[1])
    if len(name) > 63:
        plan.todo.append(f"name the index on {table} ({', '.join(columns)}): {name} is longer "
                         "than PostgreSQL's 63 characters")
    create = (f"CREATE {'UNIQUE ' if unique else ''}INDEX {quote(name)} ON {quote(table)} "
              f"({', '.join(map(quote, columns))})")
    drop = f"DROP INDEX IF EXISTS {quote(name)}"
    plan.up["sqlite"].append(create)
    plan.down["sqlite"].append(drop)
    # On an existing table, bitloot-lite's runner takes the plain statement out of the
    # transaction and builds the index CONCURRENTLY after the commit, without blocking
    # writes (as 005); peewee-migrate's own runner builds it in place.
    plan.up["postgres"].append(create)
    if table not in new_tables:  # an empty new table has no writer to block
        plan.concurrent[name] = create.replace("INDEX", "INDEX CONCURRENTLY", 1)
    plan.down["postgres"].append(drop)
    if table not in new_tables:
        _index_state(plan, change, "add_index", "drop_index")


def _drop_index(plan: _Plan, change: Change) -> None:
    assert change.index is not None
    name, columns, unique = change.index
    assert name is not None  # a dropped index has the name the migrations gave it
    create = (f"CREATE {'UNIQUE ' if unique else ''}INDEX {quote(name)} "
              f"ON {quote(change.table)} ({', '.join(map(quote, columns))})")
    plan.both(f"DROP INDEX IF EXISTS {quote(name)}", create)
    _index_state(plan, change, "drop_index", "add_index")


def _index_state(plan: _Plan, change: Change, up: str, down: str) -> None:
    model = change.model
    assert change.index is not None
    fields = {f.column_name: f.name for f in model._meta.sorted_fields} if model else {}
    names = [fields.get(column, column) for column in change.index[1]]
    unique = ", unique=True" if change.index[2] else ""
    args = ", ".join(repr(n) for n in names)
    plan.state_up.append(f"migrator.{up}({change.table!r}, {args}"
                         f"{unique if up == 'add_index' else ''})")
    plan.state_down.append(f"migrator.{down}({change.table!r}, {args}"
                           f"{unique if down == 'add_index' else ''})")


_RENDER = {"add_table": _add_table, "drop_table": _drop_table, "add_column": _add_column,
           "drop_column": _drop_column, "alter_column": _alter_column,
           "drop_index": _drop_index}


# -- the file ---------------------------------------------------------------------------

_HEAD = '''"""{name}: {title}.

{origin}
Review it before applying: `bitloot-lite sql --offline --from {name} --to {name}`
prints its SQL, `bitloot-lite lint {name}` checks it.
"""

{imports}import peewee as pw
from peewee_migrate import Migrator

#: While this lists anything, the migration refuses to run: do what each entry
#: says, then delete it.
TODO = {todo}

'''

_TAIL = '''

def _refuse_while_todo(fake):
    if TODO and not fake:
        raise RuntimeError("{name} is not finished (TODO): " + "; ".join(TODO))


def _sqlite_rebuild(database, table, old, new):
    """Rebuild ``table`` with the column definition ``old`` replaced by ``new`` (None:
    the column dropped), copying every row, as 004 does: SQLite's documented
    procedure for what ALTER TABLE cannot do. Refuses while foreign keys are
    enforced (dropping a parent table would cascade-delete the child rows);
    the runner turns them off and checks them again before the commit."""
    (enforced,) = database.execute_sql("PRAGMA foreign_keys").fetchone()
    if enforced:
        raise RuntimeError(f"rebuilding {{table}} with foreign keys enforced would "
                           "cascade-delete child rows; run this migration through bitloot-lite")
    (create,) = database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if create.count(old) != 1:
        raise RuntimeError(f"{{table}} does not have the column definition {{old!r}}")
    indexes = [sql for (sql,) in database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL", (table,))]
    head = f'CREATE TABLE "{{table}}"'
    if not create.startswith(head):
        raise RuntimeError(f"unexpected CREATE TABLE text for {{table}}")
    if new is None:  # the definition and the comma before it
        start = create.index(old)
        comma = create.rindex(",", 0, start)
        body = create[:comma] + create[start + len(old):]
    else:
        body = create.replace(old, new)
    temporary = f"_{{table}}_rebuild"
    database.execute_sql(f'CREATE TABLE "{{temporary}}"' + body[len(head):])
    columns = ", ".join(
        '"' + row[1].replace('"', '""') + '"'
        for row in database.execute_sql(f'PRAGMA table_info("{{temporary}}")').fetchall())
    database.execute_sql(
        f'INSERT INTO "{{temporary}}" ({{columns}}) SELECT {{columns}} FROM "{{table}}"')
    database.execute_sql(f'DROP TABLE "{{table}}"')
    database.execute_sql(f'ALTER TABLE "{{temporary}}" RENAME TO "{{table}}"')
    for sql in indexes:
        database.execute_sql(sql)


def _run(migrator, database, steps):
    for step in steps:
        if isinstance(step, tuple):  # (table, old definition, new one): SQLite's rebuild
            migrator.run(_sqlite_rebuild, database, *step)
        else:
            migrator.sql(step)


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    _refuse_while_todo(fake)
{classes}    with migrator.fake():
{state_up}
    postgres = isinstance(database, pw.PostgresqlDatabase)
    _run(migrator, database, POSTGRES_UP if postgres else SQLITE_UP)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    _refuse_while_todo(fake)
    postgres = isinstance(database, pw.PostgresqlDatabase)
    _run(migrator, database, POSTGRES_DOWN if postgres else SQLITE_DOWN)
{down_classes}    with migrator.fake():
{state_down}
'''


def _listing(name: str, items: list[Statement], comment: str | None = None) -> str:
    lines = [f"#: {comment}"] if comment else []
    if not items:
        return "\n".join([*lines, f"{name} = []"])
    lines.append(f"{name} = [")
    lines += [f"    {item!r}," if isinstance(item, tuple) else f"    {_literal(item)},"
              for item in items]
    lines.append("]")
    return "\n".join(lines)


def _literal(text: str) -> str:
    if "\n" in text:
        return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'
    return repr(text)


def _block(lines: list[str]) -> str:
    return "\n".join(f"        {line}" for line in lines) if lines else "        pass"


def migration(name: str, changes: list[Change], *, title: str | None = None) -> str:
    """The text of migration ``name`` making ``changes`` (none: an empty migration to
    fill in by hand). Its TODO list is empty only if every change was written."""
    plan = _Plan()
    new_tables = {c.table for c in changes if c.kind == "add_table"}
    for change in changes:
        if change.kind == "add_index":
            _add_index(plan, change, new_tables)
        elif change.kind == "change_index":
            plan.todo.append(f"{change.describe()}: drop the index and create it anew "
                             "(a unique one fails on duplicate rows)")
        else:
            _RENDER[change.kind](plan, change)
    if changes:
        bullets = "\n".join(f"- {c.describe()}" for c in changes)
        origin = ("Written by `bitloot-lite new --auto` from the difference between the "
                  f"models\nand the state the migrations record:\n{bullets}\n")
    else:
        origin = ("Written by `bitloot-lite new`: fill in the SQL for both backends, the "
                  "model state\n(in migrator.fake()) and the rollback of each.\n")
    todo = "[]" if not plan.todo else "[\n" + "".join(
        f"    {item!r},\n" for item in dict.fromkeys(plan.todo)) + "]"
    code = "\n".join(plan.classes + plan.down_classes + plan.state_up + plan.state_down)
    imports = "".join(line for needed, line in (("dt.", "import datetime as dt\n"),
                                                 ("uuid.", "import uuid\n\n"))
                      if needed in code)
    if imports and not imports.endswith("\n\n"):
        imports += "\n"
    text = _HEAD.format(name=name, title=title or name.split("_", 1)[-1].replace("_", " "),
                        origin=origin, todo=todo, imports=imports)
    rebuild = "a tuple is SQLite's table rebuild: (table, old column definition, new one)"
    text += "\n\n".join([
        _listing("POSTGRES_UP", plan.up["postgres"]),
        _listing("SQLITE_UP", plan.up["sqlite"], rebuild),
        "# Built by bitloot-lite's runner after the commit, without blocking writes (as\n"
        "# 005's): it takes their plain statements in POSTGRES_UP out of the transaction.\n"
        "POSTGRES_CONCURRENT_INDEXES = {" + "".join(
            f"\n    {key!r}: {value!r}," for key, value in plan.concurrent.items())
        + ("\n}" if plan.concurrent else "}"),
        _listing("POSTGRES_DOWN", plan.down["postgres"][::-1]),
        _listing("SQLITE_DOWN", plan.down["sqlite"][::-1]),
    ]) + "\n"
    classes = "".join(f"{code}\n\n" for code in plan.classes)
    down_classes = "".join(f"{code}\n\n" for code in plan.down_classes)
    text += _TAIL.format(name=name, classes=classes, state_up=_block(plan.state_up),
                         down_classes=down_classes, state_down=_block(plan.state_down[::-1]))
    return text
