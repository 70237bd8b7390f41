"""Helpers for the tests of a user's own migrations (check, sql, new, lint, the walkthrough).

The runner adds the user's folder (--migrations) to the shipped migrations:
``next_name(slug)`` is the name of the next migration, numbered after
``MIGRATIONS[-1]``. ``run_script`` runs a script in the backend's own shell.
"""

import subprocess
import textwrap

from conftest import MIGRATIONS, opened, sqlite_path

from bitloot_lite import schema
from bitloot_lite.runner import HISTORY_TABLE


def make_folder(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def next_name(slug, after=None):
    number = int((after or MIGRATIONS[-1])[:3]) + 1
    return f"{number:03d}_{slug}"


def write(folder, name, text):
    (folder / f"{name}.py").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return name


#: A hand-written user migration: a nullable orders.note, in the project's format.
NOTE_MIGRATION = '''
    """orders.note: a free-text note on an order."""

    import peewee as pw
    from peewee_migrate import Migrator


    def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
        with migrator.fake():
            migrator.add_fields("orders", note=pw.TextField(null=True))
        migrator.sql('ALTER TABLE "orders" ADD COLUMN "note" TEXT')


    def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
        migrator.sql('ALTER TABLE "orders" DROP COLUMN "note"')
        with migrator.fake():
            migrator.remove_fields("orders", "note")
'''


def run_script(url, script):
    """Run ``script`` with the backend's own shell (sqlite3, psql), stopping at the first
    error."""
    if url.startswith("sqlite"):
        command = ["sqlite3", "-bail", sqlite_path(url)]
    else:
        command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]
    done = subprocess.run(command, input=script, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def state(url):
    """(snapshot, history names) of the database at ``url``."""
    with opened(url) as database:
        names = [row[0] for row in database.execute_sql(
            f'SELECT "name" FROM "{HISTORY_TABLE}" ORDER BY "id"').fetchall()]
        return schema.snapshot(database), names
