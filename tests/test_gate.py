"""Core's startup gate: the exact version and the exact structure, or Core does not start."""
from __future__ import annotations

import time

import psycopg
import pytest

from core import runtime
from common.db import errors
from common.db.migrations import load_migrations
from tests.helpers import REPO, query, run_module, runner, spawn_runner, write_set

SHIPPED = str(REPO / "schemas" / "migrations")
_SHIPPED_SET = load_migrations(SHIPPED)
LATEST = list(_SHIPPED_SET.releases)[-1]
LATEST_VERSION = _SHIPPED_SET.releases[LATEST]


def check(db, *args):
    return run_module("core.runtime", "check", "--migrations-dir", SHIPPED, *args, dsn=db)


@pytest.fixture
def installed(db):
    assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=db).code == 0
    return db


def test_freshly_upgraded_database_passes_with_no_false_difference(installed):
    r = check(installed)
    assert r.code == 0, r.stdout + r.stderr
    assert "schema ok" in r.stderr


def test_passes_again_after_downgrade_to_base_and_upgrade(installed):
    assert runner("downgrade", "--to", "base", "--migrations-dir", SHIPPED, dsn=installed).code == 0
    assert check(installed).code == 14
    assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=installed).code == 0
    r = check(installed, "--json")
    assert r.code == 0 and r.json["ok"] and r.json["differences"] == []


DRIFTS = {
    "dropped column": ("ALTER TABLE raw_events DROP COLUMN payload_sha256", "column public.raw_events.payload_sha256"),
    "changed column type": ("ALTER TABLE machines ALTER COLUMN hostname TYPE text", "column public.machines.hostname"),
    "dropped NOT NULL": ("ALTER TABLE machines ALTER COLUMN hostname DROP NOT NULL", "column public.machines.hostname"),
    "changed default": ("ALTER TABLE raw_events ALTER COLUMN received_at SET DEFAULT '2020-01-01'",
                        "column public.raw_events.received_at"),
    "dropped index": ("DROP INDEX ix_detections_rule_id", "ix_detections_rule_id"),
    "added index": ("CREATE INDEX sneaky ON raw_events (payload_sha256)", "sneaky"),
    "added unnamed index": ("CREATE INDEX ON raw_events (payload_sha256)", "payload_sha256"),
    "changed check constraint": ("ALTER TABLE raw_events DROP CONSTRAINT ck_raw_events_schema_version_positive; "
                                 "ALTER TABLE raw_events ADD CONSTRAINT ck_raw_events_schema_version_positive "
                                 "CHECK (schema_version >= 0)", "ck_raw_events_schema_version_positive"),
    "dropped foreign key": ("ALTER TABLE raw_events DROP CONSTRAINT fk_raw_events_machine", "fk_raw_events_machine"),
    "enum label added": ("ALTER TYPE severity_level ADD VALUE 'catastrophic'", "severity_level"),
    "enum labels reordered": ("ALTER TYPE os_family RENAME VALUE 'linux' TO 'tmp'; "
                              "ALTER TYPE os_family RENAME VALUE 'windows' TO 'linux'; "
                              "ALTER TYPE os_family RENAME VALUE 'tmp' TO 'windows'", "os_family"),
    "extra table": ("CREATE TABLE exfil (data text)", "exfil"),
    "extra trigger": ("CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; "
                      "CREATE TRIGGER spy BEFORE INSERT ON raw_events FOR EACH ROW EXECUTE FUNCTION noop()", "spy"),
    "extra function": ("CREATE FUNCTION public.backdoor() RETURNS int LANGUAGE sql AS 'SELECT 1'", "backdoor"),
    "extra view": ("CREATE VIEW v_machines AS SELECT machine_id FROM machines", "v_machines"),
    "runner table changed": ("ALTER TABLE schema_migration_audit DROP CONSTRAINT schema_migration_audit_status",
                             "schema_migration_audit_status"),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_each_kind_of_drift_is_found_and_exits_16(installed, drift):
    ddl, needle = DRIFTS[drift]
    query(installed, ddl)
    r = check(installed, "--json")
    assert r.code == errors.SCHEMA_DRIFT == 16, r.stderr
    objects = [d["object"] + " " + str(d["expected"]) + " " + str(d["actual"]) for d in r.json["details"]]
    assert any(needle in o for o in objects), objects
    human = check(installed)
    assert human.code == 16 and needle in human.stdout and "differs from the expected schema" in human.stderr


def test_all_differences_are_listed_not_only_the_first(installed):
    query(installed, "CREATE TABLE a1 (x int); CREATE TABLE a2 (x int); ALTER TABLE machines DROP COLUMN os_version")
    r = check(installed, "--json")
    objects = {d["object"] for d in r.json["details"]}
    assert {"table public.a1", "table public.a2", "column public.machines.os_version"} <= objects


def test_older_database_asks_for_install(db, tmp_path):
    assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=db).code == 0
    query(db, "DELETE FROM schema_migrations")
    r = check(db)
    assert r.code == 14 and f"Core needs {LATEST_VERSION} (release {LATEST}): run install.sh to upgrade" in r.stderr


def test_database_at_the_previous_release_asks_for_install(db):
    assert runner("upgrade", "--to", "1.0.0", "--migrations-dir", SHIPPED, dsn=db).code == 0
    r = check(db)
    assert r.code == 14
    assert f"database at 20250101_000000 (release 1.0.0), Core needs {LATEST_VERSION} (release {LATEST})" in r.stderr
    assert check(db, "--expect-release", "1.0.0").code == 0


def test_newer_database_says_core_is_older(installed):
    query(installed, "INSERT INTO schema_migrations (version, description, checksum, execution_ms, runner_version) "
                     "VALUES ('20300101_000000', 'future', repeat('0', 64), 0, 'x')")
    r = check(installed)
    assert r.code == 14 and "this Core is older than its database" in r.stderr


def test_missing_version_table_says_never_initialised(db):
    r = check(db)
    assert r.code == 14 and "never initialised by the RansomEye installer" in r.stderr


def test_changed_applied_migration_is_an_integrity_failure(installed):
    query(installed, "UPDATE schema_migrations SET checksum = repeat('a', 64)")
    assert check(installed).code == 13


def test_failed_last_attempt_is_reported_but_does_not_block_a_correct_schema(installed):
    query(installed, "INSERT INTO schema_migration_audit (run_id, version, direction, status, os_user, client_host, "
                     "runner_version, error_message) VALUES (gen_random_uuid(), '20250301_000000', 'up', 'failed', "
                     "'op', 'host', 'x', 'boom')")
    r = check(installed)
    assert r.code == 0 and "did not finish cleanly" in r.stderr and "boom" in r.stderr


def test_check_during_an_upgrade_waits_then_passes(db, pg_admin_dsn, tmp_path):
    from common.db.migrations import load_migrations
    from common.db.snapshots import write_all
    d = write_set(tmp_path / "schemas" / "migrations", {
        "20250101_000000_first": ("CREATE TABLE first (id int PRIMARY KEY);", "DROP TABLE first;"),
        "20250102_000000_slow": ("SELECT pg_sleep(3); CREATE TABLE slow (id int);", "DROP TABLE slow;"),
    }, releases={"1.0.0": "20250102_000000"})
    write_all(load_migrations(d), pg_admin_dsn)
    upgrade = spawn_runner("upgrade", "--migrations-dir", str(d), dsn=db)
    deadline = time.monotonic() + 15
    while not query(db, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    r = run_module("core.runtime", "check", "--migrations-dir", str(d), "--lock-wait", "30", dsn=db)
    assert upgrade.wait(30) == 0
    assert r.code == 0, r.stderr
    assert "waiting" in r.stderr and time.monotonic() - t0 >= 1.5


def test_check_gives_up_waiting_after_lock_wait_and_decides(installed):
    holder = psycopg.connect(installed, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s, %s)", (0x524E534D, 0x5343484D))
    try:
        r = check(installed, "--lock-wait", "1", "--json")
    finally:
        holder.close()
    assert r.code == 0 and r.json["migration_running"] is True and r.json["waited_s"] >= 1


def test_startup_check_function_raises_typed_errors(db):
    with pytest.raises(errors.VersionConflict):
        runtime.startup_check(db, SHIPPED, lock_wait=0, connect_retries=0)
    assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=db).code == 0
    rep = runtime.startup_check(db, SHIPPED, lock_wait=0, connect_retries=0)
    assert rep.version == LATEST_VERSION and rep.differences == []


def test_shipped_snapshots_are_up_to_date(pg_admin_dsn):
    """Fails when a migration changed and `snapshot --write` was not run."""
    from common.db.migrations import load_migrations
    r = runner("snapshot", "--migrations-dir", SHIPPED, "--json", dsn=pg_admin_dsn)
    assert r.code == 0, r.stderr + r.stdout
    assert [s["release"] for s in r.json["snapshots"]] == list(load_migrations(SHIPPED).releases)
    assert not any(s["changed"] for s in r.json["snapshots"])


def test_stale_snapshot_is_detected(pg_admin_dsn, tmp_path):
    d = write_set(tmp_path / "schemas" / "migrations",
                  {"20250101_000000_first": ("CREATE TABLE first (id int);", "DROP TABLE first;")},
                  releases={"1.0.0": "20250101_000000"})
    assert runner("snapshot", "--write", "--migrations-dir", str(d), dsn=pg_admin_dsn).code == 0
    assert runner("snapshot", "--migrations-dir", str(d), dsn=pg_admin_dsn).code == 0
    (d / "migration_20250101_000000_first_up.sql").write_text("CREATE TABLE first (id bigint);")
    r = runner("snapshot", "--migrations-dir", str(d), dsn=pg_admin_dsn)
    assert r.code == 16 and "stale" in r.stderr
