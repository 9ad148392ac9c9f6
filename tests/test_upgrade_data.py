"""Release 1.0.0 → 1.1.0 and back without losing a row: rows in every table, the backfill right,
the downs restoring exactly the 1.0.0 structure (Core's check proves it)."""
from __future__ import annotations

import psycopg
import pytest

from tests.helpers import REPO, audit, query, run_module, runner, versions
from tests.sample_data import TABLES, fingerprints, load

SHIPPED = str(REPO / "schemas" / "migrations")


def check(db, release):
    return run_module("core.runtime", "check", "--expect-release", release, "--migrations-dir", SHIPPED, dsn=db)


@pytest.fixture
def loaded_1_0(db):
    assert runner("upgrade", "--to", "1.0.0", "--migrations-dir", SHIPPED, dsn=db).code == 0
    with psycopg.connect(db, autocommit=True) as conn:
        counts = load(conn, machines=12, events_per_machine=30, seed=3)
        prints = fingerprints(conn)
    assert all(counts[t] > 0 for t in TABLES), counts
    return db, prints


@pytest.mark.parametrize("mode", ["--atomic", "--no-atomic"])
def test_upgrade_keeps_every_row_and_backfills_then_rollback_keeps_them_again(loaded_1_0, mode):
    db, before = loaded_1_0
    r = runner("upgrade", "--to", "1.1.0", mode, "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 0, r.stderr
    assert check(db, "1.1.0").code == 0
    with psycopg.connect(db, autocommit=True) as conn:
        assert fingerprints(conn) == before, "every 1.0.0 row is still there, unchanged"
    # the backfill: one score per machine, from its open incidents and unresolved detections
    wrong = query(db, """
        SELECT m.machine_id FROM machines m
          LEFT JOIN machine_risk_scores s USING (machine_id)
          LEFT JOIN LATERAL (SELECT count(*) n FROM incidents i WHERE i.primary_machine_id = m.machine_id
                               AND i.status NOT IN ('resolved', 'false_positive')) i ON true
          LEFT JOIN LATERAL (SELECT count(*) n FROM detections d WHERE d.machine_id = m.machine_id
                               AND d.resolved_at IS NULL) d ON true
         WHERE s.machine_id IS NULL OR s.open_incidents <> i.n OR s.unresolved_detections <> d.n
            OR s.score <> LEAST(100, 25 * i.n + 10 * d.n)""")
    assert wrong == []
    assert query(db, "SELECT count(*) FROM machine_risk_scores") == query(db, "SELECT count(*) FROM machines")
    assert query(db, "SELECT count(*) FROM raw_events WHERE ingest_source <> 'agent'") == [(0,)]
    assert query(db, "SELECT count(*) FROM machine_risk_scores WHERE score > 0")[0][0] > 0

    r = runner("downgrade", "--to", "1.0.0", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 0, r.stderr
    assert versions(db) == ["20250101_000000"]
    assert check(db, "1.0.0").code == 0, "the downs restore exactly the 1.0.0 structure"
    with psycopg.connect(db, autocommit=True) as conn:
        assert fingerprints(conn) == before
    downs = [a[0] for a in audit(db) if a[1] == "down"]
    assert downs == sorted(downs, reverse=True) and len(downs) == 4


def test_rollback_refuses_rows_that_1_0_0_cannot_store(loaded_1_0):
    db, _ = loaded_1_0
    assert runner("upgrade", "--to", "1.1.0", "--migrations-dir", SHIPPED, dsn=db).code == 0
    query(db, "INSERT INTO response_actions (machine_id, action_type, requested_by) "
              "SELECT machine_id, 'snapshot_volume', 'analyst' FROM machines LIMIT 1")
    r = runner("downgrade", "--to", "1.0.0", "--migrations-dir", SHIPPED, dsn=db)
    assert r.code == 12 and "snapshot_volume" in r.stderr and "23001" in r.stderr
    assert versions(db)[-1] == "20250301_090100", "the later downs ran, the refusing one rolled back"
    assert query(db, "SELECT count(*) FROM response_actions WHERE action_type = 'snapshot_volume'") == [(1,)]
