"""The runner's rules, each pinned by a test against a real PostgreSQL server."""
from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from common.db import errors
from tests.helpers import (REPO, audit, cli_env, query, runner, scalar, spawn_runner, tables, versions,
                           write_set)

SHIPPED = str(REPO / "schemas" / "migrations")


def shipped_versions() -> list[str]:
    from common.db.migrations import load_migrations
    return load_migrations(SHIPPED).versions()

THREE = {
    "20250102_000000_first": ("CREATE TABLE first (id int PRIMARY KEY);", "DROP TABLE first;"),
    "20250103_000000_second": ("CREATE TABLE second (id int PRIMARY KEY);\nINSERT INTO second VALUES (1);",
                               "DROP TABLE second;"),
    "20250104_000000_third": ("CREATE TABLE third (id int PRIMARY KEY REFERENCES second);", "DROP TABLE third;"),
}


def test_upgrade_shipped_set_as_documented_then_rerun_is_a_noop(db):
    r = runner("upgrade", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 0, r.stderr
    assert versions(db) == shipped_versions()
    assert "machines" in tables(db) and "raw_events" in tables(db)
    row = query(db, "SELECT description, checksum, applied_by, execution_ms, runner_version FROM schema_migrations "
                    "ORDER BY version")[0]
    assert row[0] == "baseline_v1_0_0" and len(row[1]) == 64 and row[2] == "postgres" and row[3] >= 0 and row[4]
    before = audit(db)
    r = runner("upgrade", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 0
    assert "nothing to do" in r.stderr
    assert audit(db) == before, "a no-op run must not write to the audit trail"


def test_checksum_covers_exactly_the_expanded_sql_that_runs(db):
    from common.db.migrations import load_migrations, sha256
    m = load_migrations(SHIPPED).migrations[0]
    assert "ransomeye:include" not in m.up_sql and "CREATE TABLE machines" in m.up_sql
    runner("upgrade", "--migrations-dir", SHIPPED, dsn=db)
    assert scalar(db, "SELECT checksum FROM schema_migrations").strip() == sha256(m.up_sql)


def test_audit_rows_record_who_what_and_how_long(db, tmp_path):
    write_set(tmp_path, THREE)
    assert runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    rows = query(db, "SELECT version, direction, status, checksum, started_at, ended_at, duration_ms, db_user, "
                     "os_user, client_host, runner_version FROM schema_migration_audit ORDER BY id")
    assert [(r[0], r[1], r[2]) for r in rows] == [(v, "up", "succeeded") for v in
                                                    ("20250102_000000", "20250103_000000", "20250104_000000")]
    for r in rows:
        assert len(r[3]) == 64 and r[5] >= r[4] and r[6] is not None and r[7] == "postgres" and r[8] and r[9] and r[10]


def test_failure_in_the_middle_keeps_earlier_migrations_and_rerun_after_fix_completes(db, tmp_path):
    broken = dict(THREE)
    broken["20250103_000000_second"] = ("CREATE TABLE second (id int PRIMARY KEY);\n\nSELECT no_such_column FROM second;",
                                        "DROP TABLE second;")
    write_set(tmp_path, broken)
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == errors.MIGRATION_FAILED == 12
    assert "20250103_000000" in r.stderr and "42703" in r.stderr and "line 3" in r.stderr
    assert "still at 20250102_000000" in r.stderr
    assert versions(db) == ["20250102_000000"]
    assert "second" not in tables(db), "the failed migration must be rolled back completely"
    a = audit(db)
    assert a[-1][:4] == ("20250103_000000", "up", "failed", "42703")
    write_set(tmp_path, THREE)
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 0, r.stderr
    assert versions(db) == ["20250102_000000", "20250103_000000", "20250104_000000"]


def test_downgrade_to_base_empties_the_schema_and_upgrade_rebuilds_it(db):
    assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=db).code == 0
    r = runner("downgrade", "--to", "base", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 0, r.stderr
    assert versions(db) == []
    assert tables(db) == ["schema_migration_audit", "schema_migrations"]
    assert scalar(db, "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                      "WHERE n.nspname = 'public' AND t.typtype = 'e'") == 0
    assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=db).code == 0
    assert versions(db) == shipped_versions()
    n = len(shipped_versions())
    directions = [(r[1], r[2]) for r in audit(db)]
    assert directions == [("up", "succeeded")] * n + [("down", "succeeded")] * n + [("up", "succeeded")] * n
    downs = [r[0] for r in audit(db) if r[1] == "down"]
    assert downs == sorted(downs, reverse=True), "downs run newest first"


def test_upgrade_and_downgrade_to_a_version_or_release(db, tmp_path):
    write_set(tmp_path, THREE, releases={"1.0.0": "20250102_000000", "1.1.0": "20250104_000000"})
    assert runner("upgrade", "--to", "1.0.0", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    assert versions(db) == ["20250102_000000"]
    assert runner("upgrade", "--to", "20250103_000000", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    assert versions(db)[-1] == "20250103_000000"
    assert runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    r = runner("downgrade", "--to", "1.0.0", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 0, r.stderr
    assert versions(db) == ["20250102_000000"] and "third" not in tables(db) and "second" not in tables(db)
    r = runner("downgrade", "--to", "20250104_000000", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == errors.VERSION_CONFLICT
    r = runner("upgrade", "--to", "20250199_000000", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == errors.INVALID_SET


def test_status_shows_version_release_and_pending(db, tmp_path):
    write_set(tmp_path, THREE, releases={"1.0.0": "20250102_000000", "1.1.0": "20250104_000000"})
    runner("upgrade", "--to", "1.0.0", "--migrations-dir", str(tmp_path), dsn=db)
    r = runner("status", "--json", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 0
    doc = r.json
    assert doc["schema_version"] == "20250102_000000" and doc["release"] == "1.0.0"
    assert doc["shipped_release"] == "1.1.0" and doc["pending"] == 2
    r = runner("status", "--migrations-dir", str(tmp_path), dsn=db)
    assert "schema version: 20250102_000000 (release 1.0.0)" in r.stdout and "2 pending" in r.stdout


def test_history_lists_every_attempt_including_failures(db, tmp_path):
    write_set(tmp_path, {"20250102_000000_bad": ("SELECT 1/0;", "SELECT 1;")})
    assert runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db).code == 12
    r = runner("history", "--json", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 0
    [attempt] = r.json["attempts"]
    assert attempt["status"] == "failed" and attempt["sqlstate"] == "22012" and "division by zero" in attempt["error_message"]


def test_changed_applied_file_is_refused_before_any_change(db, tmp_path):
    write_set(tmp_path, {k: THREE[k] for k in list(THREE)[:1]})
    assert runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    (tmp_path / "migration_20250102_000000_first_up.sql").write_text("CREATE TABLE first (id bigint PRIMARY KEY);")
    write_set(tmp_path, {k: THREE[k] for k in list(THREE)[1:]})
    before = audit(db)
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == errors.INTEGRITY == 13
    assert "20250102_000000" in r.stderr and "changed" in r.stderr
    assert versions(db) == ["20250102_000000"] and "second" not in tables(db)
    assert audit(db) == before


def test_unknown_version_in_database_is_a_version_conflict(db, tmp_path):
    write_set(tmp_path, THREE)
    assert runner("upgrade", "--to", "20250102_000000", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    query(db, "INSERT INTO schema_migrations (version, description, checksum, execution_ms, runner_version) "
              "VALUES ('20300101_000000', 'from_the_future', repeat('0', 64), 0, 'x')")
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == errors.VERSION_CONFLICT == 14
    assert "20300101_000000" in r.stderr and "does not ship" in r.stderr
    assert "second" not in tables(db)


def test_out_of_order_pending_migration_is_refused(db, tmp_path):
    write_set(tmp_path, {k: THREE[k] for k in ("20250102_000000_first", "20250104_000000_third")})
    (tmp_path / "migration_20250104_000000_third_up.sql").write_text("CREATE TABLE third (id int);")
    assert runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    write_set(tmp_path, {"20250103_000000_second": THREE["20250103_000000_second"]})
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 14 and "out of order" in r.stderr
    assert "second" not in tables(db)


def _hold_lock(dsn):
    conn = psycopg.connect(dsn, autocommit=True, application_name="test-lock-holder")
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (0x524E534D, 0x5343484D))
    return conn


def test_second_runner_gives_up_after_lock_timeout_naming_the_holder(db, tmp_path):
    write_set(tmp_path, THREE)
    holder = _hold_lock(db)
    try:
        t0 = time.monotonic()
        r = runner("upgrade", "--lock-timeout", "1", "--migrations-dir", str(tmp_path), dsn=db)
        assert r.code == errors.LOCK_TIMEOUT == 11
        assert time.monotonic() - t0 >= 1
        assert "test-lock-holder" in r.stderr and f"pid {holder.info.backend_pid}" in r.stderr
        assert tables(db) == []
    finally:
        holder.close()


def test_second_runner_waits_for_the_lock_then_finds_nothing_to_do(db, tmp_path):
    write_set(tmp_path, {"20250102_000000_slow": ("SELECT pg_sleep(2); CREATE TABLE slow (id int);", "DROP TABLE slow;")})
    first = spawn_runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    deadline = time.monotonic() + 10
    while not scalar(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") and time.monotonic() < deadline:
        time.sleep(0.05)
    second = runner("upgrade", "--lock-timeout", "30", "--migrations-dir", str(tmp_path), dsn=db)
    assert first.wait(30) == 0
    assert second.code == 0 and "nothing to do" in second.stderr
    assert versions(db) == ["20250102_000000"]
    assert [a[2] for a in audit(db)] == ["succeeded"]


def test_statement_timeout_stops_a_hanging_migration(db, tmp_path):
    write_set(tmp_path, {"20250102_000000_hang": ("CREATE TABLE h (id int); SELECT pg_sleep(30);", "DROP TABLE h;")})
    r = runner("upgrade", "--statement-timeout", "1", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 12 and "57014" in r.stderr
    assert tables(db) == ["schema_migration_audit", "schema_migrations"]


def test_ddl_lock_timeout_stops_a_migration_stuck_behind_traffic(db, tmp_path):
    write_set(tmp_path, {"20250101_000000_busy": ("CREATE TABLE busy (id int);", "DROP TABLE busy;")})
    assert runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    write_set(tmp_path, {"20250102_000000_alter": ("ALTER TABLE busy ADD COLUMN x int;", "ALTER TABLE busy DROP COLUMN x;")})
    with psycopg.connect(db) as reader:
        reader.execute("SELECT * FROM busy")  # holds ACCESS SHARE until the transaction ends
        r = runner("upgrade", "--ddl-lock-timeout", "0.5", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 12 and "55P03" in r.stderr
    assert versions(db) == ["20250101_000000"]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_a_migration_rolls_it_back_and_audits_interrupted(db, tmp_path, sig, code):
    write_set(tmp_path, {"20250102_000000_first": THREE["20250102_000000_first"],
                         "20250103_000000_slow": ("CREATE TABLE slow (id int); SELECT pg_sleep(30);", "DROP TABLE slow;")})
    p = spawn_runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(30)%%' AND pid <> pg_backend_pid()"):
            break
        time.sleep(0.05)
    p.send_signal(sig)
    assert p.wait(20) == code
    assert versions(db) == ["20250102_000000"] and "slow" not in tables(db)
    assert audit(db)[-1][:3] == ("20250103_000000", "up", "interrupted")


def test_sigkill_leaves_an_interrupted_attempt_that_the_next_run_reports_and_completes(db, tmp_path):
    write_set(tmp_path, {"20250102_000000_slow": ("CREATE TABLE slow (id int); SELECT pg_sleep(30);", "DROP TABLE slow;")})
    p = spawn_runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(30)%%' AND pid <> pg_backend_pid()"):
            break
        time.sleep(0.05)
    p.kill()
    p.wait(10)
    # the server notices the dead client and rolls back; wait for the backend to go
    deadline = time.monotonic() + 40
    while scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(30)%%' AND pid <> pg_backend_pid()"):
        assert time.monotonic() < deadline, "server never noticed the killed client"
        time.sleep(0.2)
    assert versions(db) == [] and "slow" not in tables(db)
    assert audit(db)[-1][2] == "started"
    status = runner("status", "--json", "--migrations-dir", str(tmp_path), dsn=db).json
    assert status["last_run_problems"] and status["last_run_problems"][0]["status"] == "started"
    (tmp_path / "migration_20250102_000000_slow_up.sql").write_text("CREATE TABLE slow (id int);")
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 0, r.stderr
    assert "interrupted" in r.stderr
    assert [a[2] for a in audit(db)] == ["interrupted", "succeeded"]


def test_read_only_database_is_refused_with_its_own_code(db, tmp_path):
    write_set(tmp_path, THREE)
    dbname = scalar(db, "SELECT current_database()")
    query(db, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == errors.READ_ONLY == 17 and "read-only" in r.stderr


def test_password_on_the_command_line_is_refused(db):
    r = runner("status", "--dsn", "host=localhost password=hunter2", "--migrations-dir", SHIPPED)
    assert r.code == errors.USAGE
    assert "hunter2" not in r.stderr + r.stdout


def test_unreachable_server_exits_10_after_bounded_retries(tmp_path):
    t0 = time.monotonic()
    r = runner("upgrade", "--connect-retries", "2", "--migrations-dir", SHIPPED,
               dsn=f"host={tmp_path} port=1 user=postgres password=s3cret dbname=x")
    assert r.code == errors.CONNECT == 10
    assert time.monotonic() - t0 >= 1.0, "must retry with backoff (0.5 s + 1 s)"
    assert "s3cret" not in r.stderr and "cannot connect" in r.stderr


def test_wrong_password_exits_10_without_retrying_and_without_echoing_it(pg_admin_dsn, db):
    query(pg_admin_dsn, "DO $$BEGIN CREATE ROLE pwuser LOGIN PASSWORD 'right'; EXCEPTION WHEN duplicate_object THEN END$$")
    # the test cluster trusts local sockets; password auth needs TCP with md5/scram, which the suite's
    # cluster does not listen on, so a non-existent role stands in for a rejected login here.
    r = runner("status", "--migrations-dir", SHIPPED, dsn=db + " user=no_such_role")
    assert r.code == 10 and "no_such_role" in r.stderr


def test_malformed_dsn_exits_10_with_a_reason(db):
    r = runner("status", "--migrations-dir", SHIPPED, dsn="host=x port")
    assert r.code == 10 and "malformed" in r.stderr


def test_dsn_file_must_be_private(db, tmp_path):
    f = tmp_path / "db.conf"
    f.write_text(db)
    f.chmod(0o644)
    r = runner("status", "--dsn-file", str(f), "--migrations-dir", SHIPPED)
    assert r.code == 2 and "chmod 600" in r.stderr
    f.chmod(0o600)
    assert runner("status", "--dsn-file", str(f), "--migrations-dir", SHIPPED).code == 0


def test_json_mode_prints_one_document_on_stdout_even_on_error(db, tmp_path):
    write_set(tmp_path, {"20250102_000000_bad": ("SELECT 1/0;", "SELECT 1;")})
    r = runner("upgrade", "--json", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == 12
    assert r.json["error"] == "migration-failed" and r.json["exit_code"] == 12


def test_usage_error_exits_2():
    r = runner("upgrade", "--no-such-flag")
    assert r.code == 2 and "--no-such-flag" in r.stderr
    r = runner("downgrade")
    assert r.code == 2


def test_help_exits_0():
    r = runner("--help")
    assert r.code == 0 and "upgrade" in r.stdout


def test_a_statement_only_the_server_refuses_to_parse_is_audited_as_one_failed_attempt(db, tmp_path):
    """pglast knows PostgreSQL 17's grammar; the server is 15. It parses the whole round trip (the
    'started' row, the migration, the history row) before running any of it, so the attempt's
    one audit row is written afterwards, complete, and nothing of the migration is kept."""
    s = dict(THREE)
    s["20250103_000000_second"] = ("CREATE TABLE second (id int PRIMARY KEY);\nSELECT JSON_OBJECT('a' VALUE 1);\n",
                                   "DROP TABLE second;")
    write_set(tmp_path, s)
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db)
    assert r.code == errors.MIGRATION_FAILED, r.stderr
    assert "42601" in r.stderr and "line 2" in r.stderr and "still at 20250102_000000" in r.stderr
    assert versions(db) == ["20250102_000000"] and "second" not in tables(db)
    assert [a[:4] for a in audit(db)] == [("20250102_000000", "up", "succeeded", None),
                                          ("20250103_000000", "up", "failed", "42601")]


def test_durations_are_measured_by_the_server_around_the_migration(db, tmp_path):
    write_set(tmp_path, {"20250102_000000_slow": ("CREATE TABLE slow (id int);\nSELECT pg_sleep(0.3);\n",
                                                  "SELECT pg_sleep(0.2);\nDROP TABLE slow;\n")})
    assert runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    assert scalar(db, "SELECT execution_ms FROM schema_migrations") >= 300
    assert runner("downgrade", "--to", "base", "--migrations-dir", str(tmp_path), dsn=db).code == 0
    rows = query(db, "SELECT direction, status, duration_ms, ended_at >= started_at FROM schema_migration_audit "
                     "ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [("up", "succeeded"), ("down", "succeeded")]
    assert rows[0][2] >= 300 and rows[1][2] >= 200 and all(r[3] for r in rows)


def test_a_client_identity_with_quotes_and_backslashes_is_stored_verbatim(db, tmp_path):
    """The audit values travel as literals in the migration's round trip: quoting must hold."""
    write_set(tmp_path, THREE)
    r = runner("upgrade", "--migrations-dir", str(tmp_path), dsn=db,
               env={**cli_env(db), "USER": "o'brien\\x", "LOGNAME": "o'brien\\x"})
    assert r.code == 0, r.stderr
    assert {row[0] for row in query(db, "SELECT os_user FROM schema_migration_audit")} == {"o'brien\\x"}
