"""A user's own migrations folder for the tests of issue 11 (check, sql, new, lint).

Where the runner adds the user's folder to the shipped migrations
(``runner.migration_files``), the folder starts empty; before that, it starts
as a copy of the shipped ones, which ``--migrations`` then replaces. Either way
``next_name(slug)`` is the name of the next migration, numbered after
``MIGRATIONS[-1]``, and the folder holds every migration the commands see.
"""

import shutil
import textwrap

from conftest import MIGRATIONS, MIGRATIONS_DIR

from bitloot_lite import runner

ADDS_TO_SHIPPED = hasattr(runner, "migration_files")


def make_folder(path):
    path.mkdir(parents=True, exist_ok=True)
    if not ADDS_TO_SHIPPED:
        for name in MIGRATIONS:
            shutil.copy(MIGRATIONS_DIR / f"{name}.py", path / f"{name}.py")
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
