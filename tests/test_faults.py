"""Faults injected for real: killed runners, killed connections, a crashed server, eight runners
at once. The long soak is `python3 -m tests.soak --trials N`; this runs it small."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, audit, cli_env, run_module, runner, versions
from tests.pgcluster import create_cluster
from tests.soak import Soak

SHIPPED = str(REPO / "schemas" / "migrations")


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    cluster = create_cluster(fsync=True)
    try:
        yield Soak(cluster, tmp_path_factory.mktemp("soak"), migrations=60, seed=20251125, log=print)
    finally:
        cluster.destroy()


@pytest.mark.parametrize("fault", ["kill", "terminate", "immediate"])
@pytest.mark.parametrize("atomic", [False, True], ids=["per-migration", "atomic"])
def test_fault_during_upgrade_leaves_a_known_version_and_the_next_run_completes(soak, fault, atomic):
    before = soak.tally.inconsistent, soak.tally.reruns_failed
    for _ in range(2):
        soak.trial(fault, atomic)
    print(soak.tally.summary(), *soak.tally.problems, sep="\n")
    assert (soak.tally.inconsistent, soak.tally.reruns_failed) == before, soak.tally.problems


def test_faults_land_inside_the_upgrade_not_after_it(soak):
    """The soak proves something only if its faults hit a run in progress."""
    before = soak.tally.faults["kill"]
    for _ in range(3):
        soak.trial("kill", False)
    assert soak.tally.faults["kill"] - before >= 2, "the kills came after the upgrade had finished"
    assert soak.tally.inconsistent == 0 and soak.tally.reruns_failed == 0, soak.tally.problems


def test_eight_runners_at_once_apply_every_migration_exactly_once(db):
    procs = [subprocess.Popen([sys.executable, "-m", "common.db.migration_runner", "upgrade", "--json",
                               "--migrations-dir", SHIPPED, "--lock-timeout", "60"], cwd=REPO, env=cli_env(db),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    codes = [p.wait(120) for p in procs]
    assert codes == [0] * 8, [p.stderr.read() for p in procs]
    from common.db.migrations import load_migrations
    shipped = load_migrations(SHIPPED).versions()
    assert versions(db) == shipped
    ups = [a for a in audit(db) if a[1] == "up"]
    assert sorted(a[0] for a in ups) == shipped, "each migration attempted exactly once"
    assert all(a[2] == "succeeded" for a in ups)
    assert run_module("core.runtime", "check", "--migrations-dir", SHIPPED, dsn=db).code == 0


def test_runners_whose_lock_wait_runs_out_exit_11_and_nothing_else_fails(db, tmp_path):
    from tests.helpers import write_set
    d = write_set(tmp_path / "m", {"20250101_000000_slow": ("SELECT pg_sleep(3); CREATE TABLE s (id int);",
                                                            "DROP TABLE s;")})
    procs = [subprocess.Popen([sys.executable, "-m", "common.db.migration_runner", "upgrade", "--migrations-dir",
                               str(d), "--lock-timeout", "1"], cwd=REPO, env=cli_env(db), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    codes = sorted(p.wait(60) for p in procs)
    assert codes.count(0) >= 1 and set(codes) <= {0, 11}, codes
    assert versions(db) == ["20250101_000000"]
    assert [a[2] for a in audit(db)] == ["succeeded"]
