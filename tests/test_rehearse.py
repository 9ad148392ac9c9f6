"""The upgrade rehearsal at a tiny size against the suite's server: one report row per migration,
with the locks, rewrites and sizes that release 1.1.0 is known to cause."""
from __future__ import annotations

import json

import psycopg

from common.db.migrations import load_migrations
from tests import rehearse
from tests.conftest import SHIPPED_MIGRATIONS


def test_rehearsal_reports_every_migration_of_the_release_in_both_modes(pg_admin_dsn, tmp_path, capsys):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    code = rehearse.main(["--dsn", pg_admin_dsn, "--raw-events", "2000", "--machines", "20", "--from", "1.0.0",
                          "--to", "1.1.0", "--markdown", str(md), "--json", str(js)])
    assert code == 0
    mset = load_migrations(SHIPPED_MIGRATIONS)
    pending = [m.version for m in mset.migrations
               if mset.releases["1.0.0"] < m.version <= mset.releases["1.1.0"]]
    assert len(pending) == 4

    report = json.loads(js.read_text())
    assert report["data"]["rows"]["raw_events"] == 2000 and report["machine"]["postgresql"].startswith("PostgreSQL")
    per, atomic = report["runs"]
    assert (per["mode"], atomic["mode"]) == ("per-migration", "atomic")
    for run in (per, atomic):
        assert [s["version"] for s in run["steps"]] == pending
        assert all(0 <= s["duration_s"] < 10 for s in run["steps"])
        assert run["gate_captures"] >= 2 * len(pending) if run["mode"] == "per-migration" else run["gate_captures"] > 0
        assert not any(t["rewritten"] for t in run["tables"]), "no 1.1.0 migration may rewrite a table"
    locks = {s["description"]: {u["relation"]: u for u in s["locks"]} for s in per["steps"]}
    assert locks["raw_events_ingest_source"]["raw_events"]["mode"] == "ACCESS EXCLUSIVE"
    assert locks["response_action_snapshot_volume"]["type response_action_type"]["kind"] == "object"
    assert locks["machine_risk_scores"]["machine_risk_scores"]["new"]
    assert locks["machine_risk_scores"]["machines"]["mode"] == "SHARE ROW EXCLUSIVE"
    assert locks["raw_events_ingest_source_index"]["raw_events"]["mode"] == "SHARE"
    assert all(0 <= u["held_s"] < 10 for s in per["steps"] for u in s["locks"])
    risk = next(t for s in per["steps"] for t in s["tables"] if t["table"] == "machine_risk_scores")
    assert risk["new"] and risk["inserted"] == 20 and risk["table_bytes_after"] > 0
    raw = next(t for t in per["tables"] if t["table"] == "raw_events")
    assert raw["table_bytes_before"] == raw["table_bytes_after"] > 0
    assert {t["table"] for t in atomic["tables"]} >= {"machine_risk_scores", "raw_events"}

    text = md.read_text()
    for version in pending:
        assert text.count(f"| {version} ") == 2, "one row per migration in each table"
    assert "| whole release, one transaction |" in text
    out = capsys.readouterr().out
    assert all(v in out for v in pending) and "Each migration in its own transaction" in out

    with psycopg.connect(pg_admin_dsn) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'rehearse\\_%'").fetchall()
    assert left == [], "the rehearsal drops the databases it created"
