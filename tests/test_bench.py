"""The benchmark harness (bench/, `make bench`) runs every scenario end to end, on
SQLite and PostgreSQL, at a tiny scale. Speed is not asserted here: `make bench`
measures it; this proves the harness works (SQLAlchemy comes with the test extra)."""

import subprocess
import sys
from pathlib import Path

import conftest
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is a folder of the clone, not of the package
    sys.path.insert(0, str(ROOT))

from bench import online  # noqa: E402
from bench.run import SCENARIOS  # noqa: E402

HEADINGS = ("== 1. Checkout flow ==", "== 2. Key restock ==", "== 3. Lookup at scale ==",
            "== 4. Start-up ==", "== 5. Migrate ==", "== 6. Online migration (PostgreSQL) ==",
            "== 7. Checkout through PgBouncer (transaction pooling) ==",
            "== 8. Lookup on a read replica (PostgreSQL) ==", "== Targets ==")


def _bench_databases(pg_admin):
    rows = pg_admin.execute_sql(
        "SELECT datname FROM pg_database WHERE datname LIKE 'bitloot\\_bench\\_%%'"
    ).fetchall()
    return {name for (name,) in rows}


@pytest.mark.slow
def test_every_scenario_runs_at_a_tiny_scale(pg_admin):
    before = _bench_databases(pg_admin)
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--scale", "0.001", "--reps", "2",
         "--pg-url", conftest.PG_URL],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for heading in HEADINGS:
        assert heading in out
    for backend in ("sqlite", "postgres"):
        for contender in ("bitloot-lite", "raw driver", "SQLAlchemy ORM"):
            assert any(line.startswith(backend) and contender in line
                       for line in out.splitlines()), (backend, contender)
    assert out.count("IDX_orders_kinguinReservationId") >= 4  # both plans, both targets
    targets = out.split("== Targets ==", 1)[1]
    assert "start-up" in targets and "online migrate" in targets
    assert "checkout via PgBouncer" in targets and "not measured" not in targets
    assert "8. replica lookup" in targets and "no servers" not in targets
    assert " met, " in targets.splitlines()[-1]
    # The throwaway databases are gone.
    assert _bench_databases(pg_admin) <= before


def test_only_runs_a_subset_and_refuses_unknown_names():
    assert "startup" in SCENARIOS
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--only", "startup", "--scale", "0.001",
         "--reps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line for line in result.stdout.splitlines() if line.startswith("== ")] == [
        "== 4. Start-up ==", "== Targets =="]
    result = subprocess.run([sys.executable, "-m", "bench.run", "--only", "nonsense"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown scenario(s): nonsense" in result.stderr


def test_the_plain_comparison_builds_the_index_inside_the_migration(tmp_path):
    """The online comparison's copy of 005 differs from the shipped one in one way only:
    its index on orders is a plain CREATE INDEX inside the transaction."""
    folder = online.plain_migrations(tmp_path)
    shipped = sorted(p.name for p in (ROOT / "migrations").glob("0*.py"))
    assert sorted(p.name for p in folder.glob("0*.py")) == shipped
    (path,) = folder.glob("005_*.py")
    scope = {"__file__": str(path)}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), scope)
    assert scope["POSTGRES_CONCURRENT_INDEXES"] == {}
    plain = [s for s in scope["POSTGRES_UP"] if '"IDX_orders_kinguinReservationId"' in s]
    assert plain == ['CREATE INDEX "IDX_orders_kinguinReservationId" ON "orders" '
                     '("kinguinReservationId")']
    original = (ROOT / "migrations" / path.name).read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8").startswith(original)
