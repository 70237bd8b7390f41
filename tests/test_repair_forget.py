"""``repair`` forgets a user's migration only when named, and only once it has looked in the
user's folder (issue 16): without that folder every user migration looks gone, and
forgetting one makes the next ``migrate`` run it a second time."""

import pytest
from conftest import MIGRATIONS, fetch, opened, run_cli

from bitloot_lite import migrating
from bitloot_lite.schema import HISTORY_TABLE

#: A user's data migration: run twice, it would add the surcharge twice.
SURCHARGE = '''\
"""100_surcharge: a 5.00 surcharge on every order."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('UPDATE "orders" SET "total" = "total" + 5')


def rollback(migrator, database, *, fake=False):
    migrator.sql('UPDATE "orders" SET "total" = "total" - 5')
'''

NAME = "100_surcharge"


def ok(*args):
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


def history(url):
    with opened(url) as database:
        return [name for (name,) in fetch(database,
                                          f'SELECT "name" FROM "{HISTORY_TABLE}" ORDER BY "id"')]


def totals(url):
    with opened(url) as database:
        return sum(float(total) for (total,) in fetch(database, 'SELECT "total" FROM "orders"'))


@pytest.fixture
def mine(tmp_path, db_url):
    """The user's folder ``mine`` holding 100_surcharge, applied to ``db_url`` over two
    orders (totals 922.02 then 932.02)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / f"{NAME}.py").write_text(SURCHARGE, encoding="utf-8")
    ok("migrate", "-q", "--database", db_url)
    with opened(db_url) as database:
        database.execute_sql("INSERT INTO orders (email, total) VALUES "
                             "('a@example.com', 900.02), ('b@example.com', 22.00)")
    ok("migrate", "-q", "--database", db_url, "--migrations", folder)
    assert totals(db_url) == pytest.approx(932.02)
    return folder


def test_repair_without_the_users_folder_keeps_their_history_and_migrate_does_not_rerun(
        db_url, mine):
    """The issue's scenario: the data migration applied with --migrations mine, then
    `repair --yes` without it; the next `migrate --migrations mine` must not run it again."""
    status = ok("status", "--database", db_url)
    (line,) = [line for line in status.stdout.splitlines() if NAME in line]
    assert "no user migrations folder is configured" in line
    assert "--migrations / BITLOOT_MIGRATIONS_DIR" in line

    repaired = ok("repair", "--yes", "--database", db_url)
    assert f"kept {NAME}" in repaired.stdout and f"--forget {NAME}" in repaired.stdout
    assert NAME in history(db_url)

    refused = run_cli("repair", "--yes", "--forget", NAME, "--database", db_url)
    assert refused.exit_code == 1
    (message,) = refused.stderr.splitlines()
    assert f"cannot forget {NAME}: no user migrations folder is configured" in message
    assert "--migrations / BITLOOT_MIGRATIONS_DIR" in message
    assert NAME in history(db_url)

    again = ok("migrate", "--database", db_url, "--migrations", mine)
    assert "nothing to migrate" in again.stdout
    assert totals(db_url) == pytest.approx(932.02)
    assert history(db_url) == [*MIGRATIONS, NAME]


def test_an_empty_or_missing_folder_cannot_forget_either(db_url, mine, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a migration")

    refused = run_cli("repair", "--yes", "--forget", NAME, "--database", db_url,
                      "--migrations", empty)
    assert refused.exit_code == 1
    assert f"your migrations folder {empty} holds no migration" in refused.stderr
    status = ok("status", "--database", db_url, "--migrations", empty)
    assert f"{empty} holds no migration" in status.stdout

    missing = tmp_path / "missing"
    refused = run_cli("repair", "--yes", "--forget", NAME, "--database", db_url,
                      "--migrations", missing)
    assert refused.exit_code == 1 and f"no such folder: {missing}" in refused.stderr
    assert NAME in history(db_url)


def test_a_file_really_gone_is_forgotten_only_when_named(db_url, mine, tmp_path):
    """The folder holds the user's other migrations, not this one: plain `repair --yes`
    keeps the row and says how to forget it; `--forget NAME` forgets it."""
    (mine / f"{NAME}.py").unlink()
    (mine / "101_labels.py").write_text(
        'def migrate(migrator, database, *, fake=False):\n'
        '    migrator.sql(\'CREATE TABLE "labels" ("id" integer PRIMARY KEY)\')\n\n\n'
        'ROLLBACK = "noop"\n', encoding="utf-8")
    where = ("--database", db_url, "--migrations", mine)
    status = run_cli("status", *where)  # exit 1: 101_labels is pending
    assert f"its file is gone from {mine}: see `bitloot-lite repair`" in status.stdout

    kept = ok("repair", "--yes", *where)
    assert f"kept {NAME}" in kept.stdout and f"gone from {mine}" in kept.stdout
    assert NAME in history(db_url)

    for name, reason in (("999_never", "not in the migration history"),
                         (MIGRATIONS[0], "its file is still there")):
        refused = run_cli("repair", "--yes", "--forget", name, "--forget", NAME, *where)
        assert refused.exit_code == 1 and reason in refused.stderr, refused.output
        assert NAME in history(db_url)

    forgotten = ok("repair", "--yes", "--forget", NAME, *where)
    assert f"remove {NAME}" in forgotten.stdout
    assert forgotten.stdout.splitlines()[-1].startswith("1 history row(s) repaired")
    assert NAME not in history(db_url)


def test_the_library_refuses_the_same(database, tmp_path):
    from bitloot_lite import repairing
    from bitloot_lite.errors import ForgetRefused

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / f"{NAME}.py").write_text(SURCHARGE, encoding="utf-8")
    migrating.migrate(database, migrations_dir=folder)

    assert repairing.gone(database) == [NAME]
    assert migrating.repairs(database) == []  # not named: nothing to change
    assert migrating.repair(database) == []
    with pytest.raises(ForgetRefused) as info:
        migrating.repair(database, forget=[NAME])
    assert info.value.name == NAME and info.value.folder is None
    with pytest.raises(ValueError, match="list of migration names"):
        migrating.repairs(database, folder, forget=NAME)
    assert NAME in [s.name for s in migrating.status(database, folder) if s.applied]
