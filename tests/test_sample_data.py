"""The sample data set: every v1.0.0 table filled within its constraints, deterministic per seed,
and a row fingerprint that survives the columns later releases add."""
from __future__ import annotations

import psycopg

from common.db import runner
from common.db.migrations import load_migrations
from tests import sample_data
from tests.conftest import SHIPPED_MIGRATIONS

MACHINES, EVENTS = 20, 50


def at_release(dsn: str, release: str) -> str:
    runner.upgrade(load_migrations(SHIPPED_MIGRATIONS), runner.Settings(dsn=dsn), to=release)
    return dsn


def loaded(dsn: str, seed: int = 1) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return sample_data.load(conn, machines=MACHINES, events_per_machine=EVENTS, seed=seed)


def fingerprints(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return sample_data.fingerprints(conn)


def test_column_and_key_lists_are_exactly_the_1_0_0_schema(db):
    at_release(db, "1.0.0")
    with psycopg.connect(db) as conn:
        cols = conn.execute(
            "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name NOT LIKE 'schema_migration%' GROUP BY table_name").fetchall()
        pks = conn.execute(
            "SELECT c.conrelid::regclass::text, array_agg(a.attname::text ORDER BY k.ord) "
            "FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
            "WHERE c.contype = 'p' AND c.connamespace = 'public'::regnamespace "
            "AND c.conrelid::regclass::text NOT LIKE 'schema_migration%' GROUP BY 1").fetchall()
    assert {t: tuple(c) for t, c in cols} == sample_data.V1_COLUMNS
    assert {t: tuple(c) for t, c in pks} == sample_data.V1_PRIMARY_KEYS


def test_load_fills_every_table_within_its_constraints(db):
    counts = loaded(at_release(db, "1.0.0"))
    assert set(counts) == set(sample_data.TABLES)
    assert all(n > 0 for n in counts.values()), counts
    assert counts["raw_events"] == MACHINES * EVENTS and counts["machines"] == MACHINES
    with psycopg.connect(db) as conn:
        def one(q: str):
            return conn.execute(q).fetchone()[0]
        for table, n in counts.items():
            assert one(f"SELECT count(*) FROM {table}") == n, table
        # every constraint is still valid (they were checked on insert; NOT VALID ones would not be)
        assert one("SELECT count(*) FROM pg_constraint WHERE NOT convalidated "
                   "AND connamespace = 'public'::regnamespace") == 0
        assert one("SELECT count(*) FROM process_events") + one("SELECT count(*) FROM file_events") \
            == one("SELECT count(*) FROM raw_events WHERE event_type::text LIKE 'process%' OR event_type::text LIKE 'file%'")
        # the shape the migrations of later releases care about
        assert one("SELECT count(DISTINCT primary_machine_id) FROM incidents "
                   "WHERE status IN ('open', 'investigating', 'contained')") > 1
        assert one("SELECT count(*) FROM incidents WHERE status IN ('resolved', 'false_positive')") > 0
        assert one("SELECT count(DISTINCT machine_id) FROM detections WHERE resolved_at IS NULL") > MACHINES // 2
        assert one("SELECT count(*) FROM detections WHERE resolved_at IS NOT NULL") > 0
        assert one("SELECT count(DISTINCT status) FROM response_actions") >= 3
        avg = one("SELECT avg(octet_length(payload::text)) FROM raw_events")
        most = one("SELECT max(n)::float8 / sum(n) FROM (SELECT count(*) AS n FROM raw_events GROUP BY event_type) s")
        assert 200 <= avg <= 1000, "payloads of a few hundred bytes"
        assert one("SELECT count(DISTINCT event_type) FROM raw_events") >= 10 and most < 0.3
        assert one("SELECT count(*) FROM raw_events WHERE payload_sha256 = "
                   "encode(sha256(convert_to(payload::text, 'UTF8')), 'hex')") == counts["raw_events"]


def test_same_seed_gives_the_same_rows_and_another_seed_does_not(make_db):
    first, second, other = (at_release(make_db(), "1.0.0") for _ in range(3))
    loaded(first), loaded(second), loaded(other, seed=2)
    assert fingerprints(first) == fingerprints(second)
    differ = {t for t, fp in fingerprints(other).items() if fp != fingerprints(first)[t]}
    assert {"machines", "raw_events", "detections", "incidents"} <= differ


def test_fingerprint_sees_a_changed_row_but_not_columns_added_by_release_1_1_0(db):
    loaded(at_release(db, "1.0.0"))
    before = fingerprints(db)
    assert len(set(before.values())) == len(before), "each table has its own fingerprint"
    at_release(db, "1.1.0")
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns "
                            "WHERE table_name = 'raw_events' AND column_name = 'ingest_source'").fetchone()[0] == 1
    assert fingerprints(db) == before, "upgrading to 1.1.0 must not change any 1.0.0 row"
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE incidents SET assigned_to = 'someone.else' "
                     "WHERE incident_id = (SELECT incident_id FROM incidents ORDER BY incident_id LIMIT 1)")
    after = fingerprints(db)
    assert after["incidents"] != before["incidents"]
    assert {t: fp for t, fp in after.items() if t != "incidents"} == \
        {t: fp for t, fp in before.items() if t != "incidents"}
