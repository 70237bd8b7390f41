"""Linting migrations: squawk on their PostgreSQL SQL, plus what only the live database knows.

The linting is squawk's (PyPI ``squawk-cli``, the ``lint`` extra): each
migration's PostgreSQL script (``offline.blocks``: its transaction, its
``SET LOCAL lock_timeout``, the concurrent index builds after the commit) is
one file given to ``squawk --reporter json``. Rules that contradict the target
schema (docs/SCHEMA.md) are left out, each for its reason (``EXCLUDED``).

What squawk cannot know is the data. Connected to a PostgreSQL database, each
statement is looked at against its table's rows (tables created in the same
migration are empty):

- ``blocking-index-build``: CREATE INDEX without CONCURRENTLY on a table with
  rows blocks its writes for the whole build;
- ``required-column-on-rows``: ADD COLUMN ... NOT NULL without a DEFAULT fails
  on a table with rows;
- ``rewriting-type-change``: ALTER COLUMN ... TYPE that rewrites the table
  (anything but widening a varchar or numeric, or varchar to text) holds an
  exclusive lock for the rewrite;
- ``foreign-key-scan``: a foreign key added without NOT VALID scans the rows
  under a lock that blocks writes to both tables;

and squawk's findings of those same kinds on a table that is empty are notes,
not findings. On SQLite, squawk's findings only (row counts are PostgreSQL's).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import offline, schema
from .db import is_postgres
from .errors import LinterFailed, LinterUnavailable
from .migrating import pending
from .runner import migration_files, resolve_name

if TYPE_CHECKING:
    import peewee as pw

    from ._typing import StrPath
    from .offline import Block
    from .schema import Snapshot

__all__ = ["EXCLUDED", "Finding", "lint", "squawk_path"]

#: squawk rules left out, and why: each contradicts docs/SCHEMA.md or the runner.
EXCLUDED = {
    "prefer-text-field": "SCHEMA.md's columns are varchar(n)",
    "prefer-bigint-over-int": "SCHEMA.md's counters are integer",
    "prefer-bigint-over-smallint": "SCHEMA.md's counters are integer",
    "prefer-identity": "ids are uuid with gen_random_uuid()",
    "prefer-timestamptz": "SCHEMA.md's timestamps are timestamp without time zone, in UTC",
    "require-statement-timeout": "the runner sets lock_timeout, which bounds the wait for a "
                                 "lock; a statement_timeout would abort a long index build",
    "prefer-robust-stmts": "each migration runs once, in its transaction, recorded; "
                           "IF NOT EXISTS would hide a drift that check reports",
}

#: squawk rules whose harm is the rows of the table: on an empty one they are notes.
_ROW_RULES = {"require-concurrent-index-creation", "adding-foreign-key-constraint",
              "changing-column-type", "adding-required-field", "adding-not-nullable-field",
              "disallowed-unique-constraint", "constraint-missing-not-valid",
              "adding-field-with-default"}


@dataclass(frozen=True)
class Finding:
    """A problem in migration ``name``: ``rule`` (squawk's or ours), ``message``,
    the ``statement`` (its first line); ``source`` "squawk" or "database"."""

    name: str
    rule: str
    message: str
    statement: str
    source: str

    def line(self) -> str:
        return f"{self.name}: {self.rule}: {self.message} [{self.statement}]"


def squawk_path() -> str:
    """The squawk executable (beside this Python's, else on PATH)."""
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.is_file() else shutil.which("squawk")
    if not found:
        raise LinterUnavailable()
    return found


def lint(database: pw.Database | None, migrations_dir: StrPath | None = None,
         names: Iterable[str] | None = None) -> tuple[list[Finding], list[str]]:
    """(findings, notes) for migrations ``names`` (default: the pending ones on
    ``database``; with no database, every one). ``database`` may be None."""
    todo = [name for name, _path in migration_files(migrations_dir)]
    if names:
        named = {resolve_name(name, todo) for name in names}
        chosen = [name for name in todo if name in named]
    else:
        chosen = todo if database is None else pending(database, migrations_dir)
    if not chosen:
        return [], []
    scripts = {name: offline.blocks("postgres", migrations_dir, start=name, end=name)
               for name in chosen}
    findings: list[Finding] = []
    notes: list[str] = []
    rows = _row_counts(database) if database is not None and is_postgres(database) else None
    live = schema.snapshot(database) if rows is not None else None  # type: ignore[arg-type]  # rows: a PostgreSQL database
    if rows is None:
        notes.append("row-count checks need a PostgreSQL database: squawk's findings only")
    version = "15"  # the production server's major version; the live one where connected
    if rows is not None and getattr(database, "server_version", None):
        version = f"{database.server_version // 10000}.0"  # type: ignore[union-attr]  # rows: a database
    for name, found in _squawk(scripts, version).items():
        created = _created_tables(scripts[name])
        for finding, table in found:
            empty = rows is not None and table is not None and (
                table in created or rows.get(table, 0) == 0)
            changed = _TYPE_CHANGE.search(finding.statement)
            if finding.rule in _ROW_RULES and empty:
                notes.append(f"{finding.name}: {finding.rule} on {table}, which is empty: "
                             "harmless now")
            elif (finding.rule == "changing-column-type" and live is not None and changed
                  and not _rewrites(live, table, changed.group(1), changed.group(2))):
                notes.append(f"{finding.name}: {finding.rule} on {table}: a widening, which "
                             "PostgreSQL makes without rewriting the table")
            else:
                findings.append(finding)
    if rows is not None:
        for name in chosen:
            findings += _database_findings(name, scripts[name], rows, live)
    return findings, notes


# -- squawk -------------------------------------------------------------------------------


def _squawk(scripts: dict[str, list[Block]],
            version: str) -> dict[str, list[tuple[Finding, str | None]]]:
    """{name: [(Finding, table or None)]} from one squawk run over every script."""
    folder = Path(tempfile.mkdtemp(prefix="bitloot-lint-"))
    try:
        lines: dict[str, list[str]] = {}  # name -> [statement of each line]
        for name, blocks in scripts.items():
            text = offline.text(blocks, "postgres")
            (folder / f"{name}.sql").write_text(text, encoding="utf-8")
            lines[name] = _statement_of_each_line(text)
        command = [squawk_path(), "--reporter", "json", "--pg-version", version,
                   "--exclude", ",".join(EXCLUDED), *sorted(map(str, folder.glob("*.sql")))]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode not in (0, 1):
            lines = done.stderr.strip().splitlines()  # type: ignore[assignment]  # reused: stderr's
            raise LinterFailed(lines[0] if lines else f"exit code {done.returncode}")  # type: ignore[index,arg-type]  # a list here
        results = json.loads(done.stdout or "[]")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    found: dict[str, list[tuple[Finding, str | None]]] = {name: [] for name in scripts}
    for item in results:
        name = Path(item["file"]).stem
        statement = lines[name][min(item["line"], len(lines[name]) - 1)]
        message = item["message"] + (f" {item['help']}" if item.get("help") else "")
        found[name].append((Finding(name, item["rule_name"], message, _first(statement),
                                    "squawk"), _table_of(statement)))
    return found


def _statement_of_each_line(text: str) -> list[str]:
    """For each line of ``text`` (0-based, as squawk reports), the statement it is in."""
    result: list[str | None] = []
    current: list[str] = []
    for line in text.splitlines():
        current.append(line)
        result.append(None)
        if line.rstrip().endswith(";") and not line.lstrip().startswith("--"):
            statement = "\n".join(current)
            for i in range(len(result) - len(current), len(result)):
                result[i] = statement
            current = []
    return [s or "" for s in result]


def _first(statement: str) -> str:
    lines = [line for line in statement.splitlines() if line and not line.startswith("--")]
    return lines[0].strip() if lines else statement.strip()


_TABLE = re.compile(r'(?:ALTER\s+TABLE|ON|INTO|UPDATE)\s+(?:ONLY\s+)?"([^"]+)"', re.I)
_CREATE_TABLE = re.compile(r'^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"([^"]+)"', re.I)


def _table_of(statement: str | None) -> str | None:
    match = _TABLE.search(statement or "")
    return match.group(1) if match else None


def _created_tables(blocks: Iterable[offline.Block]) -> set[str]:
    return {m.group(1) for b in blocks for s in b.statements
            for m in [_CREATE_TABLE.match(s)] if m}


# -- what only the database knows ---------------------------------------------------------


def _row_counts(database: pw.Database) -> dict[str, int]:
    """{table: rows} of the public tables: the planner's estimate, or an exact count
    where the estimate says none (a table never analysed may have rows)."""
    counts: dict[str, int] = {}
    for table, estimate in database.execute_sql(
        "SELECT c.relname, c.reltuples::bigint FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
    ).fetchall():
        if estimate <= 0:  # -1: never analysed; 0 may be stale
            estimate = database.execute_sql(
                f'SELECT count(*) FROM (SELECT 1 FROM "{table}" LIMIT 1000) AS sample'
            ).fetchone()[0]
        counts[table] = estimate
    return counts


_ADD_REQUIRED = re.compile(r'ADD\s+(?:COLUMN\s+)?"([^"]+)"\s+[^,]*\bNOT\s+NULL\b', re.I)
_TYPE_CHANGE = re.compile(r'ALTER\s+COLUMN\s+"([^"]+)"\s+TYPE\s+([a-z ]+(?:\(\d+(?:,\d+)?\))?)',
                          re.I)


def _database_findings(name: str, blocks: list[offline.Block], rows: dict[str, int],
                       live: Snapshot | None) -> list[Finding]:
    created = _created_tables(blocks)
    findings: list[Finding] = []
    for block in blocks:
        if block.direction != "migrate":
            continue  # the "after commit" builds are CONCURRENTLY
        for statement in block.statements:
            table = _table_of(statement)
            if table is None or table in created or rows.get(table, 0) == 0:
                continue
            count = f"{table} has {'about ' if rows[table] >= 1000 else ''}{rows[table]} row(s)"
            upper = statement.upper()

            def found(rule: str, message: str, statement: str = statement,
                      count: str = count) -> None:
                findings.append(Finding(name, rule, f"{message} ({count})", _first(statement),
                                        "database"))

            if re.match(r"\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)", upper):
                found("blocking-index-build", "CREATE INDEX inside the transaction blocks every "
                      "write to the table for the whole build; build it CONCURRENTLY after "
                      "the commit (POSTGRES_CONCURRENT_INDEXES)")
            added = _ADD_REQUIRED.search(statement)
            if added and " DEFAULT " not in upper:
                found("required-column-on-rows", f"ADD COLUMN {added.group(1)} NOT NULL "
                      "without a DEFAULT fails on a table with rows")
            changed = _TYPE_CHANGE.search(statement)
            if changed and _rewrites(live, table, changed.group(1), changed.group(2)):  # type: ignore[arg-type]  # rows: a PostgreSQL database
                found("rewriting-type-change", f"changing the type of {changed.group(1)} "
                      "rewrites the table under an exclusive lock")
            if "REFERENCES" in upper and upper.startswith("ALTER TABLE") and \
                    "NOT VALID" not in upper:
                found("foreign-key-scan", "a foreign key added without NOT VALID scans every "
                      "row while blocking writes; add it NOT VALID, then VALIDATE CONSTRAINT")
    return findings


_SIZED = re.compile(r"^(character varying|varchar|numeric)\s*\((\d+)(?:,(\d+))?\)$")


def _rewrites(live: Snapshot, table: str | None, column: str, new_type: str) -> bool:
    """Whether ALTER COLUMN ... TYPE ``new_type`` rewrites the table (PostgreSQL's rules:
    a wider varchar, varchar to text, a numeric with more digits and the same scale don't)."""
    columns = {c["name"]: c["type"] for c in live["tables"].get(table, {}).get("columns", [])}
    old, new = columns.get(column, "").lower(), " ".join(new_type.lower().split())
    new = new.replace("varchar", "character varying")
    if old == new:
        return False
    old_m, new_m = _SIZED.match(old), _SIZED.match(new)
    if new == "text" and old.startswith("character varying"):
        return False
    if old_m and new_m and old_m.group(1) == new_m.group(1):
        if old_m.group(1) == "numeric":
            return not (int(new_m.group(2)) >= int(old_m.group(2))
                        and new_m.group(3) == old_m.group(3))
        return int(new_m.group(2)) < int(old_m.group(2))
    return True

