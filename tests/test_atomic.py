"""upgrade --atomic: a whole release and its structure check commit as one unit or not at all."""
from __future__ import annotations

import psycopg
import pytest

from common.db.catalog import read_catalog
from common.db.migrations import load_migrations
from common.db.snapshots import write_all
from tests.helpers import audit, query, runner, tables, versions, write_set

BASE = {
    "20250101_000000_base": ("CREATE TABLE machines (id text PRIMARY KEY, name text NOT NULL);\n"
                             "CREATE TYPE sev AS ENUM ('low', 'high');", "DROP TABLE machines; DROP TYPE sev;"),
}
RELEASE = {
    "20250201_000000_alerts": ("CREATE TABLE alerts (id int PRIMARY KEY, machine_id text REFERENCES machines);",
                               "DROP TABLE alerts;"),
    "20250202_000000_column": ("ALTER TABLE machines ADD COLUMN site text NOT NULL DEFAULT 'hq';",
                               "ALTER TABLE machines DROP COLUMN site;"),
    "20250203_000000_backfill": ("INSERT INTO alerts SELECT row_number() OVER (), id FROM machines;",
                                 "DELETE FROM alerts;"),
}
RELEASES = {"1.0.0": "20250101_000000", "1.1.0": "20250203_000000"}


@pytest.fixture
def release_set(tmp_path, pg_admin_dsn):
    d = write_set(tmp_path / "schemas" / "migrations", {**BASE, **RELEASE}, releases=RELEASES)
    write_all(load_migrations(d), pg_admin_dsn)
    return d


@pytest.fixture
def at_1_0(db, release_set):
    assert runner("upgrade", "--to", "1.0.0", "--migrations-dir", str(release_set), dsn=db).code == 0
    query(db, "INSERT INTO machines VALUES ('m1', 'one'), ('m2', 'two')")
    return db


def state(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cat = read_catalog(conn)
        rows = conn.execute("SELECT * FROM machines ORDER BY id").fetchall()
        hist = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY version").fetchall()
    return cat, rows, hist


def test_atomic_release_commits_every_migration_and_reports_the_structure_check(at_1_0, release_set):
    r = runner("upgrade", "--atomic", "--json", "--migrations-dir", str(release_set), dsn=at_1_0)
    assert r.code == 0, r.stderr
    doc = r.json
    assert doc["mode"] == "atomic" and doc["version_after"] == "20250203_000000"
    assert [s["version"] for s in doc["steps"]] == sorted(k[:15] for k in RELEASE)
    assert all(s["status"] == "succeeded" and s["duration_ms"] >= 0 for s in doc["steps"])
    assert doc["structure_check"]["differences"] == [] and doc["structure_check"]["objects"] > 0
    assert query(at_1_0, "SELECT count(*) FROM alerts") == [(2,)]
    assert [(a[1], a[2]) for a in audit(at_1_0)][-3:] == [("up", "succeeded")] * 3
    assert query(at_1_0, "SELECT DISTINCT mode FROM schema_migration_audit WHERE version >= '20250201'") == [("atomic",)]


def test_failing_last_migration_leaves_the_previous_version_exactly(at_1_0, release_set):
    before = state(at_1_0)
    (release_set / "migration_20250203_000000_backfill_up.sql").write_text(
        "INSERT INTO alerts SELECT row_number() OVER (), id FROM machines;\nSELECT 1 / 0;")
    r = runner("upgrade", "--atomic", "--migrations-dir", str(release_set), dsn=at_1_0)
    assert r.code == 12, r.stderr
    assert "20250203_000000" in r.stderr and "22012" in r.stderr and "no down migration was run" in r.stderr
    assert state(at_1_0) == before
    last = audit(at_1_0)[-3:]
    assert [(a[0], a[2]) for a in last] == [("20250201_000000", "rolled_back"), ("20250202_000000", "rolled_back"),
                                            ("20250203_000000", "failed")]
    assert last[2][3] == "22012"
    assert not any(a[1] == "down" for a in audit(at_1_0))


def test_structure_that_differs_from_the_snapshot_is_rolled_back_with_16(at_1_0, release_set):
    before = state(at_1_0)
    (release_set / "migration_20250202_000000_column_up.sql").write_text(
        "ALTER TABLE machines ADD COLUMN site text NOT NULL DEFAULT 'hq';\nCREATE INDEX ix_extra ON machines (name);")
    r = runner("upgrade", "--atomic", "--json", "--migrations-dir", str(release_set), dsn=at_1_0)
    assert r.code == 16, r.stderr
    assert any("ix_extra" in d["object"] + str(d["actual"]) for d in r.json["details"])
    assert state(at_1_0) == before
    assert [a[2] for a in audit(at_1_0)[-3:]] == ["rolled_back"] * 3


def test_per_migration_mode_keeps_what_succeeded(at_1_0, release_set):
    (release_set / "migration_20250203_000000_backfill_up.sql").write_text("SELECT 1 / 0;")
    r = runner("upgrade", "--no-atomic", "--migrations-dir", str(release_set), dsn=at_1_0)
    assert r.code == 12
    assert versions(at_1_0) == ["20250101_000000", "20250201_000000", "20250202_000000"]


def test_atomic_needs_the_target_snapshot(db, tmp_path):
    d = write_set(tmp_path / "schemas" / "migrations", {**BASE, **RELEASE}, releases=RELEASES)
    r = runner("upgrade", "--atomic", "--migrations-dir", str(d), dsn=db)
    assert r.code == 15 and "snapshot" in r.stderr
    assert "machines" not in tables(db)


def test_enum_value_added_then_used_in_one_release_is_refused_naming_both_files(db, tmp_path, pg_admin_dsn):
    d = write_set(tmp_path / "schemas" / "migrations", {
        **BASE,
        "20250201_000000_add_value": ("ALTER TYPE sev ADD VALUE 'critical';", "SELECT 1;"),
        "20250202_000000_use_value": ("CREATE TABLE pages (id int, s sev NOT NULL DEFAULT 'critical');",
                                      "DROP TABLE pages;"),
    }, releases={"1.0.0": "20250101_000000"})
    assert runner("upgrade", "--to", "1.0.0", "--migrations-dir", str(d), dsn=db).code == 0
    r = runner("upgrade", "--atomic", "--migrations-dir", str(d), dsn=db)
    assert r.code == 15, r.stderr
    assert "add_value" in r.stderr and "use_value" in r.stderr
    assert versions(db) == ["20250101_000000"]
    # the same set is fine one transaction per migration (the value is committed before it is used)
    assert runner("upgrade", "--no-atomic", "--migrations-dir", str(d), dsn=db).code == 0


def test_shipped_release_upgrades_atomically_from_1_0_0(db):
    from tests.helpers import REPO
    shipped = str(REPO / "schemas" / "migrations")
    assert runner("upgrade", "--to", "1.0.0", "--migrations-dir", shipped, dsn=db).code == 0
    r = runner("upgrade", "--atomic", "--json", "--migrations-dir", shipped, dsn=db)
    assert r.code == 0, r.stderr
    assert r.json["structure_check"]["differences"] == []
