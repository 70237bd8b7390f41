"""A user's own migrations folder for the tests of issue 11 (check, sql, new, lint).

The runner adds the user's folder (--migrations) to the shipped migrations:
``next_name(slug)`` is the name of the next migration, numbered after
``MIGRATIONS[-1]``.
"""

import textwrap

from conftest import MIGRATIONS


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
