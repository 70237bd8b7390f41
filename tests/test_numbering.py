"""``new`` numbers a user's series from 100 (issue 16), leaving 007-099 to the migrations later
releases of bitloot-lite ship; an upgrade that ships them runs them and keeps the user's."""

import pytest
from conftest import MIGRATIONS, MIGRATIONS_DIR, fetch, opened, run_cli

from bitloot_lite.schema import HISTORY_TABLE

#: A migration a later release ships: a table of its own, undone by dropping it.
SHIPPED = '''\
"""{name}: a table a later release adds."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "{table}" ("id" integer PRIMARY KEY)')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "{table}"')
'''

RELEASE = ["007_release_a", "008_release_b", "009_release_c", "010_release_d"]


def ok(*args):
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


def written(result):
    return result.stdout.split()[1].rsplit("/", 1)[-1][:-3]


def history(url):
    with opened(url) as database:
        return [name for (name,) in fetch(database,
                                          f'SELECT "name" FROM "{HISTORY_TABLE}" ORDER BY "id"')]


@pytest.fixture
def mine(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    return folder


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of the shipped migrations, standing in for the installed release's folder."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    for name in MIGRATIONS:
        (folder / f"{name}.py").write_bytes((MIGRATIONS_DIR / f"{name}.py").read_bytes())
    monkeypatch.setenv("BITLOOT_SHIPPED_MIGRATIONS_DIR", str(folder))
    return folder


def test_a_users_first_migration_is_100_and_the_next_follow_their_newest(mine):
    assert written(ok("new", "first", "--migrations", mine)) == "100_first"
    assert written(ok("new", "second", "--migrations", mine)) == "101_second"
    assert written(ok("new", "jump", "--number", 500, "--migrations", mine)) == "500_jump"
    assert written(ok("new", "after", "--migrations", mine)) == "501_after"

    for number, reason in ((6, "006 is among the shipped migrations (up to 006); number "
                               "yours from 100"),
                           (300, "300 does not come after your newest migration, 501_after")):
        refused = run_cli("new", "x", "--number", number, "--migrations", mine)
        assert refused.exit_code == 1
        assert refused.stderr == f"Error: invalid number: {reason}\n"
    assert run_cli("new", "x", "--number", 1000, "--migrations", mine).exit_code == 2
    assert sorted(path.stem for path in mine.glob("*.py")) == [
        "100_first", "101_second", "500_jump", "501_after"]


def test_new_continues_an_older_series_numbered_after_the_shipped_ones(mine):
    """A folder begun before this rule (007, written by an earlier `new`) goes on from it."""
    ok("new", "first", "--number", 7, "--migrations", mine)
    assert written(ok("new", "second", "--migrations", mine)) == "008_second"


def test_an_upgrade_shipping_007_to_010_applies_them_and_keeps_the_users(db_url, mine,
                                                                         shipped):
    where = ("--database", db_url, "--migrations", mine)
    yours = [written(ok("new", slug, "--migrations", mine)) for slug in ("a", "b", "c")]
    assert yours == ["100_a", "101_b", "102_c"]
    ok("migrate", "-q", *where)
    assert history(db_url) == [*MIGRATIONS, *yours]

    for name in RELEASE:  # the next release of bitloot-lite
        (shipped / f"{name}.py").write_text(SHIPPED.format(name=name, table=name[4:]))

    status = run_cli("status", *where)
    assert status.exit_code == 1  # the release's migrations are pending
    assert [line.split()[:2] for line in status.stdout.splitlines()] == (
        [["applied", name] for name in MIGRATIONS] + [["pending", name] for name in RELEASE]
        + [["applied", name] for name in yours])
    migrated = ok("migrate", *where)
    assert [line.split()[1] for line in migrated.stdout.splitlines()[:-1]] == RELEASE
    assert history(db_url) == [*MIGRATIONS, *yours, *RELEASE]  # in the order applied
    assert ok("status", *where).stdout.count("applied ") == len(MIGRATIONS + RELEASE + yours)

    # rollback undoes the newest applied first: the release's, then yours.
    undone = ok("rollback", "--steps", 5, *where)
    assert [line.split()[2] for line in undone.stdout.splitlines()[:-1]] == [
        *RELEASE[::-1], "102_c"]
    assert history(db_url) == [*MIGRATIONS, "100_a", "101_b"]
    ok("migrate", "-q", *where)  # and forward again: the user's 102_c, then the release's
    assert history(db_url) == [*MIGRATIONS, "100_a", "101_b", *RELEASE, "102_c"]
