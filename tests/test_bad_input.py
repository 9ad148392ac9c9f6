"""Bad input that needs more than a file name to show: each exits with its documented code and
leaves the database exactly as it was (catalog and rows compared). The rest of the table in
docs/BAD_INPUT.md is pinned in test_migration_set.py, test_runner.py and tests/bats/."""
from __future__ import annotations

import psycopg
import pytest

from common.db.catalog import read_catalog
from tests.helpers import REPO, runner, write_set
from tests.pgcluster import create_cluster

SHIPPED = str(REPO / "schemas" / "migrations")
GOOD = {"20250101_000000_first": ("CREATE TABLE first (id int PRIMARY KEY);", "DROP TABLE first;")}


def snapshot(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cat = read_catalog(conn)
        hist = conn.execute("SELECT to_regclass('schema_migration_audit') IS NOT NULL").fetchone()[0] and \
            conn.execute("SELECT count(*) FROM schema_migration_audit").fetchone()[0]
    return cat, hist


@pytest.fixture
def managed(db, tmp_path):
    d = write_set(tmp_path / "m", GOOD)
    assert runner("upgrade", "--migrations-dir", str(d), dsn=db).code == 0
    return db, d


@pytest.mark.parametrize("sql,rule", [
    ("CREATE TABLE second (id int PRIMARY KEY,);", "syntax-error"),
    ("CREATE INDEX CONCURRENTLY ix_first ON first (id);", "concurrently-in-transaction"),
    ("VACUUM first;", "cannot-run-in-transaction"),
    ("BEGIN;\nCREATE TABLE second (id int);\nCOMMIT;", "transaction-control"),
    ("\\i other.sql\nCREATE TABLE second (id int);", "psql-meta-command"),
])
def test_unsafe_or_broken_sql_is_refused_before_anything_runs(managed, sql, rule):
    db, d = managed
    write_set(d, {"20250102_000000_second": (sql, "DROP TABLE second;")})
    before = snapshot(db)
    r = runner("upgrade", "--migrations-dir", str(d), dsn=db)
    assert r.code == 15, r.stderr
    assert rule in r.stderr and "migration_20250102_000000_second_up.sql" in r.stderr
    assert snapshot(db) == before


@pytest.fixture(scope="module")
def password_cluster():
    cluster = create_cluster(tcp=True, host_auth="scram-sha-256")
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE ROLE app LOGIN PASSWORD 'correct horse'")
            conn.execute("CREATE DATABASE app OWNER app")
        yield cluster
    finally:
        cluster.destroy()


def test_wrong_password_exits_10_and_is_never_echoed(password_cluster, tmp_path):
    dsn = password_cluster.tcp_dsn(dbname="app", user="app")
    from tests.helpers import cli_env
    env = cli_env(dsn, PGPASSWORD="battery staple")
    r = runner("upgrade", "--migrations-dir", SHIPPED, "--connect-retries", "3", env=env)
    assert r.code == 10, r.stderr
    assert "password authentication failed" in r.stderr
    assert "battery staple" not in r.stdout + r.stderr
    ok = runner("upgrade", "--migrations-dir", SHIPPED, env=cli_env(dsn, PGPASSWORD="correct horse"))
    assert ok.code == 0, ok.stderr


def test_password_in_a_private_dsn_file_works_and_is_masked_in_errors(password_cluster, tmp_path):
    f = tmp_path / "db.conf"
    f.write_text(password_cluster.tcp_dsn(dbname="nosuchdb", user="app") + " password='correct horse'")
    f.chmod(0o600)
    from tests.helpers import cli_env
    r = runner("status", "--dsn-file", str(f), "--migrations-dir", SHIPPED, env=cli_env())
    assert r.code == 10 and "nosuchdb" in r.stderr
    assert "correct horse" not in r.stdout + r.stderr


def test_connecting_to_a_database_that_does_not_exist_is_not_retried(db):
    import time
    t0 = time.monotonic()
    r = runner("status", "--migrations-dir", SHIPPED, "--connect-retries", "5", dsn=db + " dbname=nope")
    assert r.code == 10 and time.monotonic() - t0 < 3
