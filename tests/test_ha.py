"""High availability: a primary and a streaming standby on 127.0.0.1, each on its own port.

The runner changes only the primary: a multi-host DSN with target_session_attrs=read-write finds it
whichever order the hosts are listed in, and a standby alone is refused with exit 17 before
anything is touched. Core's check only reads, so it passes on a standby once the upgrade has been
replayed there, and after a failover the promoted standby is upgraded like any primary.
"""
from __future__ import annotations

import contextlib
import itertools
import time

import psycopg
import pytest
from psycopg import sql

from common.db import errors
from common.db.migrations import load_migrations
from tests.helpers import REPO, query, run_module, runner, scalar, versions
from tests.pgcluster import Cluster, ClusterError, create_cluster, create_standby

SHIPPED = str(REPO / "schemas" / "migrations")
_SET = load_migrations(SHIPPED)
ALL_VERSIONS = _SET.versions()
FIRST_RELEASE = list(_SET.releases)[0]
LATEST_VERSION = _SET.releases[list(_SET.releases)[-1]]
_names = itertools.count()


# ---------------------------------------------------------------------------------------------
# The pair
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def replica_pair():
    """A primary and its streaming standby; both stopped and deleted (by data directory) on exit."""
    clusters: list[Cluster] = []
    try:
        try:
            clusters.append(create_cluster(tcp=True))
            clusters.append(create_standby(clusters[0]))
        except ClusterError as exc:
            pytest.fail(f"cannot start the primary/standby pair: {exc}", pytrace=False)
        yield clusters[0], clusters[1]
    finally:
        for c in reversed(clusters):
            c.destroy()


@pytest.fixture(scope="module")
def pair():
    with replica_pair() as (primary, standby):
        yield primary, standby


def wait_for_replay(primary: Cluster, standby: Cluster, timeout: float = 30.0) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    target = scalar(primary.tcp_dsn(), "SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + timeout
    while not scalar(standby.tcp_dsn(), "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the standby did not replay up to {target} within {timeout:g} s")
        time.sleep(0.05)


def new_database(primary: Cluster, standby: Cluster) -> str:
    """An empty database created on the primary and already replayed on the standby."""
    name = f"ha_{next(_names)}"
    with psycopg.connect(primary.tcp_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    wait_for_replay(primary, standby)
    return name


def both_hosts(*clusters: Cluster, dbname: str) -> str:
    ports = ",".join(str(c.port) for c in clusters)
    hosts = ",".join("127.0.0.1" for _ in clusters)
    return f"host={hosts} port={ports} user=postgres dbname={dbname} target_session_attrs=read-write"


def audit_count(dsn: str) -> int:
    if not scalar(dsn, "SELECT to_regclass('schema_migration_audit') IS NOT NULL"):
        return 0
    return scalar(dsn, "SELECT count(*) FROM schema_migration_audit")


def check(dsn: str, *args: str):
    return run_module("core.runtime", "check", "--migrations-dir", SHIPPED, *args, dsn=dsn)


# ---------------------------------------------------------------------------------------------
# 1. A multi-host DSN finds the primary
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["primary-first", "standby-first"])
def test_multi_host_dsn_with_read_write_upgrades_the_primary_in_either_order(pair, order):
    primary, standby = pair
    name = new_database(primary, standby)
    dsn = both_hosts(*(pair if order == "primary-first" else reversed(pair)), dbname=name)

    r = runner("upgrade", "--migrations-dir", SHIPPED, "--json", dsn=dsn)

    assert r.code == 0, r.stdout + r.stderr
    assert r.json["version_after"] == LATEST_VERSION
    assert versions(primary.tcp_dsn(name)) == ALL_VERSIONS
    wait_for_replay(primary, standby)
    assert versions(standby.tcp_dsn(name)) == ALL_VERSIONS


def test_multi_host_dsn_status_and_check_read_the_primary(pair):
    primary, standby = pair
    name = new_database(primary, standby)
    dsn = both_hosts(standby, primary, dbname=name)
    assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=dsn).code == 0
    s = runner("status", "--migrations-dir", SHIPPED, "--json", dsn=dsn)
    assert s.code == 0 and s.json["schema_version"] == LATEST_VERSION and s.json["pending"] == 0
    c = check(dsn)
    assert c.code == 0, c.stdout + c.stderr


def test_multi_host_dsn_from_a_0600_dsn_file_upgrades_the_primary(pair, tmp_path):
    """What the installer does with --db-dsn-file: the runner reads the same multi-host string."""
    primary, standby = pair
    name = new_database(primary, standby)
    dsn_file = tmp_path / "db.conf"
    dsn_file.write_text(both_hosts(standby, primary, dbname=name) + "\n")
    dsn_file.chmod(0o600)

    r = runner("upgrade", "--migrations-dir", SHIPPED, "--dsn-file", str(dsn_file))
    assert r.code == 0, r.stdout + r.stderr
    assert versions(primary.tcp_dsn(name)) == ALL_VERSIONS
    c = run_module("core.runtime", "check", "--migrations-dir", SHIPPED, "--dsn-file", str(dsn_file))
    assert c.code == 0, c.stdout + c.stderr


# ---------------------------------------------------------------------------------------------
# 2. A standby alone is refused with exit 17, nothing changed
# ---------------------------------------------------------------------------------------------
def _state(dsn: str) -> tuple:
    return versions(dsn), audit_count(dsn), scalar(
        dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")


@pytest.mark.parametrize("argv", [
    ("upgrade",),
    ("upgrade", "--atomic"),
    ("downgrade", "--to", "base"),
    ("baseline", "--version", FIRST_RELEASE),
], ids=lambda a: " ".join(a))
def test_runner_pointed_only_at_the_standby_refuses_with_exit_17_and_changes_nothing(pair, argv):
    primary, standby = pair
    name = new_database(primary, standby)
    assert runner("upgrade", "--to", FIRST_RELEASE, "--migrations-dir", SHIPPED, dsn=primary.tcp_dsn(name)).code == 0
    wait_for_replay(primary, standby)
    before_primary, before_standby = _state(primary.tcp_dsn(name)), _state(standby.tcp_dsn(name))

    r = runner(*argv, "--migrations-dir", SHIPPED, dsn=standby.tcp_dsn(name))

    assert r.code == errors.READ_ONLY, r.stdout + r.stderr
    assert "standby (in recovery)" in r.stderr and "nothing was changed" in r.stderr
    assert f"127.0.0.1:{standby.port}" in r.stderr
    assert "target_session_attrs=read-write" in r.stderr  # the hint says how to reach the primary
    wait_for_replay(primary, standby)
    assert _state(primary.tcp_dsn(name)) == before_primary
    assert _state(standby.tcp_dsn(name)) == before_standby


def test_standby_refusal_on_an_uninitialised_database_creates_no_tables(pair):
    primary, standby = pair
    name = new_database(primary, standby)

    r = runner("upgrade", "--migrations-dir", SHIPPED, "--json", dsn=standby.tcp_dsn(name))

    assert r.code == errors.READ_ONLY
    assert r.json["exit_code"] == errors.READ_ONLY and r.json["error"] == errors.ReadOnlyDatabase.reference
    wait_for_replay(primary, standby)
    for dsn in (primary.tcp_dsn(name), standby.tcp_dsn(name)):
        assert query(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []


# ---------------------------------------------------------------------------------------------
# 3. Core's check, status and verify only read: they work on a standby
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def upgraded(pair) -> str:
    """A database upgraded on the primary and replayed on the standby."""
    primary, standby = pair
    name = new_database(primary, standby)
    assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=primary.tcp_dsn(name)).code == 0
    wait_for_replay(primary, standby)
    return name


def test_core_check_passes_on_the_standby_after_replay(pair, upgraded):
    _, standby = pair
    r = check(standby.tcp_dsn(upgraded), "--json")
    assert r.code == 0, r.stdout + r.stderr
    assert r.json["ok"] and r.json["version"] == LATEST_VERSION and r.json["differences"] == []
    assert r.json["last_run_problems"] == []


def test_status_history_and_verify_work_on_the_standby(pair, upgraded):
    _, standby = pair
    dsn = standby.tcp_dsn(upgraded)
    s = runner("status", "--migrations-dir", SHIPPED, "--json", dsn=dsn)
    assert s.code == 0, s.stdout + s.stderr
    assert s.json["schema_version"] == LATEST_VERSION and s.json["pending"] == 0
    h = runner("history", "--migrations-dir", SHIPPED, "--json", dsn=dsn)
    assert h.code == 0, h.stdout + h.stderr
    assert [a["version"] for a in h.json["attempts"]] == ALL_VERSIONS
    v = runner("verify", "--migrations-dir", SHIPPED, dsn=dsn)
    assert v.code == 0, v.stdout + v.stderr
    assert "schema ok" in v.stderr


def test_check_on_a_standby_that_has_not_replayed_the_upgrade_refuses_until_it_has(pair):
    """Replication lag: the standby still shows the old version, so Core's check refuses (14)
    instead of passing on the wrong schema; once replay catches up it passes."""
    primary, standby = pair
    name = new_database(primary, standby)
    assert runner("upgrade", "--to", FIRST_RELEASE, "--migrations-dir", SHIPPED, dsn=primary.tcp_dsn(name)).code == 0
    wait_for_replay(primary, standby)
    query(standby.tcp_dsn(), "SELECT pg_wal_replay_pause()")
    try:
        assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=primary.tcp_dsn(name)).code == 0
        lagging = check(standby.tcp_dsn(name), "--lock-wait", "0")
        assert lagging.code == errors.VERSION_CONFLICT, lagging.stdout + lagging.stderr
        assert check(primary.tcp_dsn(name)).code == 0
    finally:
        query(standby.tcp_dsn(), "SELECT pg_wal_replay_resume()")
    wait_for_replay(primary, standby)
    caught_up = check(standby.tcp_dsn(name))
    assert caught_up.code == 0, caught_up.stdout + caught_up.stderr


# ---------------------------------------------------------------------------------------------
# 4. Failover: the promoted standby is upgraded like any primary
# ---------------------------------------------------------------------------------------------
def test_after_failover_the_same_dsn_upgrades_the_promoted_standby():
    with replica_pair() as (primary, standby):
        name = new_database(primary, standby)
        dsn = both_hosts(primary, standby, dbname=name)
        assert runner("upgrade", "--to", FIRST_RELEASE, "--migrations-dir", SHIPPED, dsn=dsn).code == 0
        wait_for_replay(primary, standby)
        assert runner("upgrade", "--migrations-dir", SHIPPED, dsn=standby.tcp_dsn(name)).code == errors.READ_ONLY

        primary.stop("immediate")  # the primary is lost
        r = standby.pg_ctl("promote", "-w", "-t", "30", check=False)
        assert r.returncode == 0, r.stderr
        assert scalar(standby.tcp_dsn(name), "SELECT pg_is_in_recovery()") is False

        up = runner("upgrade", "--migrations-dir", SHIPPED, "--json", dsn=dsn)
        assert up.code == 0, up.stdout + up.stderr
        assert up.json["version_before"] == _SET.releases[FIRST_RELEASE]
        assert versions(standby.tcp_dsn(name)) == ALL_VERSIONS
        c = check(dsn)
        assert c.code == 0, c.stdout + c.stderr


def test_read_write_dsn_that_reaches_only_a_standby_exits_17_after_its_retries(pair):
    primary, standby = pair
    name = new_database(primary, standby)
    dsn = both_hosts(standby, dbname=name)
    r = runner("upgrade", "--migrations-dir", SHIPPED, "--connect-retries", "1", dsn=dsn)
    assert r.code == errors.READ_ONLY, r.stderr
    assert "no primary among the hosts" in r.stderr
