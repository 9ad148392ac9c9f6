"""Databases built by hand from the v1.0.0 bundle, before the runner existed, and the round trip."""
from __future__ import annotations

import subprocess

import psycopg

from common.db.catalog import read_catalog
from common.db.migrations import load_migrations
from tests.helpers import REPO, audit, query, run_module, runner, tables, versions, write_set
from tests.pgcluster import PG_BIN

SHIPPED = str(REPO / "schemas" / "migrations")
BUNDLE = sorted((REPO / "schemas").glob("0[0-6]_*.sql"))


def apply_bundle_by_hand(dsn: str) -> None:
    """What sites did before the runner: psql over the seven bundle files."""
    args = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d", dsn]
    for f in BUNDLE:
        args += ["-f", str(f)]
    subprocess.run(args, check=True, capture_output=True)


def catalog(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return read_catalog(conn)


def test_hand_built_database_is_adopted_and_upgraded(db):
    apply_bundle_by_hand(db)
    query(db, "INSERT INTO machines (machine_id, hostname, os_family, os_version) VALUES ('m1', 'h1', 'linux', '6.1')")
    r = runner("upgrade", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 0, r.stderr
    assert "adopted" in r.stderr and "release 1.0.0" in r.stderr
    assert versions(db) == load_migrations(SHIPPED).versions()
    first = audit(db)[0]
    assert first[:3] == ("20250101_000000", "baseline", "succeeded")
    assert query(db, "SELECT mode FROM schema_migration_audit ORDER BY id LIMIT 1") == [("adopt",)]
    assert query(db, "SELECT machine_id FROM machines") == [("m1",)]
    assert query(db, "SELECT machine_id, score FROM machine_risk_scores") == [("m1", 0)]
    assert run_module("core.runtime", "check", "--migrations-dir", SHIPPED, dsn=db).code == 0


def test_hand_damaged_database_is_refused_with_the_differences_and_left_alone(db):
    apply_bundle_by_hand(db)
    query(db, "DROP INDEX ix_detections_rule_id; ALTER TABLE machines ADD COLUMN owner text")
    before = catalog(db)
    r = runner("upgrade", "--json", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 16, r.stderr
    objects = {d["object"] for d in r.json["details"]}
    assert "column public.machines.owner" in objects
    assert any("ix_detections_rule_id" in o for o in objects)
    assert "schema_migrations" not in tables(db) and "schema_migration_audit" not in tables(db)
    assert catalog(db) == before


def test_baseline_command_records_a_matching_database(db):
    apply_bundle_by_hand(db)
    r = runner("baseline", "--version", "1.0.0", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 0, r.stderr
    assert versions(db) == ["20250101_000000"]
    assert query(db, "SELECT mode, direction FROM schema_migration_audit") == [("baseline", "baseline")]
    assert run_module("core.runtime", "check", "--expect-release", "1.0.0", "--migrations-dir", SHIPPED,
                      dsn=db).code == 0


def test_baseline_command_refuses_a_database_that_does_not_match(db):
    apply_bundle_by_hand(db)
    query(db, "ALTER TABLE raw_events DROP CONSTRAINT ck_raw_events_payload_is_object")
    r = runner("baseline", "--version", "1.0.0", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 16 and "ck_raw_events_payload_is_object" in r.stdout
    assert "schema_migrations" not in tables(db)


def test_baseline_of_the_wrong_release_is_refused(db):
    apply_bundle_by_hand(db)
    r = runner("baseline", "--version", "1.1.0", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 16 and "machine_risk_scores" in r.stdout
    assert "schema_migrations" not in tables(db)


def test_baseline_on_a_managed_database_is_a_version_conflict(db):
    assert runner("upgrade", "--to", "1.0.0", "--migrations-dir", SHIPPED, dsn=db).code == 0
    r = runner("baseline", "--version", "1.0.0", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 14


def test_unknown_objects_in_an_unmanaged_database_are_refused(db):
    query(db, "CREATE TABLE legacy (id int)")
    r = runner("upgrade", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 16 and "table public.legacy" in r.stdout
    assert tables(db) == ["legacy"]


def test_roundtrip_passes_for_every_shipped_migration(pg_admin_dsn):
    r = runner("verify", "--roundtrip", "--json", "--migrations-dir", SHIPPED, dsn=pg_admin_dsn, timeout=300)
    assert r.code == 0, r.stderr + r.stdout
    assert [x["version"] for x in r.json["roundtrip"]] == load_migrations(SHIPPED).versions()
    assert all(x["ok"] for x in r.json["roundtrip"])


def test_roundtrip_catches_a_down_that_forgets_something(pg_admin_dsn, tmp_path):
    d = write_set(tmp_path / "m", {
        "20250101_000000_t": ("CREATE TABLE t (id int PRIMARY KEY, v text);", "DROP TABLE t;"),
        "20250102_000000_idx": ("CREATE INDEX ix_t_v ON t (v); ALTER TABLE t ADD COLUMN w int;",
                                "ALTER TABLE t DROP COLUMN w;"),
    })
    r = runner("verify", "--roundtrip", "--migrations-dir", str(d), dsn=pg_admin_dsn)
    assert r.code == 16
    assert "20250102_000000" in r.stderr and "ix_t_v" in r.stdout


def test_roundtrip_catches_a_down_that_does_not_restore_the_original_definition(pg_admin_dsn, tmp_path):
    d = write_set(tmp_path / "m", {
        "20250101_000000_t": ("CREATE TABLE t (id int PRIMARY KEY, v varchar(10));", "DROP TABLE t;"),
        "20250102_000000_widen": ("ALTER TABLE t ALTER COLUMN v TYPE varchar(20);",
                                  "ALTER TABLE t ALTER COLUMN v TYPE text;"),
    })
    r = runner("verify", "--roundtrip", "--migrations-dir", str(d), dsn=pg_admin_dsn)
    assert r.code == 16 and "column public.t.v" in r.stdout
