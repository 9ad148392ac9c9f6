"""The catalog reader, the snapshot text and the comparison, against a real server.

Drift tests read a database, change one thing, read it again and pin the exact differences, so
each one fails if its drift goes unnoticed or if anything else shows up with it.
"""
from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from common.db.catalog import AUTO_NAMED, Catalog, load_snapshot, parse, read_catalog, render
from common.db.schemadiff import Difference, compare

REPO = Path(__file__).resolve().parent.parent
BUNDLE = [REPO / "schemas" / f"{name}.sql" for name in (
    "00_core_identity", "01_raw_events", "02_normalized_activity", "03_detections", "04_incidents",
    "05_response_policy", "06_indexes")]

# Something of every object class the catalog covers, in a schema of its own.
RICH = r"""
CREATE SCHEMA app;
CREATE EXTENSION pgcrypto SCHEMA app;
CREATE TYPE app.sev AS ENUM ('low', 'high');
CREATE DOMAIN app.positive AS integer NOT NULL DEFAULT 1 CHECK (VALUE > 0);
CREATE TYPE app.pair AS (a integer, b text COLLATE "C");
CREATE TYPE app.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE SEQUENCE app.ticket_no AS integer INCREMENT BY 10 START WITH 100;
CREATE TABLE app.hosts (
    id          serial PRIMARY KEY,
    name        text COLLATE "C" NOT NULL UNIQUE,
    weight      app.positive,
    sev         app.sev NOT NULL DEFAULT 'low',
    ticket      integer DEFAULT nextval('app.ticket_no'),
    name_len    integer GENERATED ALWAYS AS (length(name)) STORED,
    seen        timestamptz DEFAULT '2024-01-01 00:00:00+00',
    token       bytea DEFAULT app.gen_random_bytes(16),
    CHECK (weight < 1000),
    CHECK (sev <> 'high' OR weight > 10),
    CONSTRAINT ck_hosts_name_word CHECK (name ~ '^\w+$' AND name !~ '\t')
);
ALTER TABLE app.hosts ADD CHECK (length(name) < 200) NOT VALID;
CREATE INDEX hosts_lower_name ON app.hosts (lower(name)) WHERE weight > 5;
CREATE INDEX ON app.hosts (sev, seen DESC) INCLUDE (weight);
CREATE TABLE app.events (
    id          bigint GENERATED ALWAYS AS IDENTITY (START WITH 1000),
    host_id     integer NOT NULL REFERENCES app.hosts (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    at          timestamptz NOT NULL,
    payload     jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE INDEX ON app.events (host_id, at DESC);
CREATE TABLE app.bookings (room integer, during tstzrange, EXCLUDE USING gist (during WITH &&));
CREATE UNLOGGED TABLE app.scratch (k text PRIMARY KEY, v text) WITH (fillfactor = 70);
CREATE TABLE app.base_t (x integer);
CREATE TABLE app.child_t (y integer) INHERITS (app.base_t);
ALTER TABLE app.hosts ENABLE ROW LEVEL SECURITY;
CREATE POLICY hosts_read ON app.hosts FOR SELECT TO PUBLIC USING (sev = 'low');
CREATE VIEW app.loud_hosts AS SELECT id, name FROM app.hosts WHERE sev = 'high';
CREATE MATERIALIZED VIEW app.host_counts AS SELECT sev, count(*) AS n FROM app.hosts GROUP BY sev;
CREATE UNIQUE INDEX ON app.host_counts (sev);
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.seen := now();
    RETURN NEW;
END $$;
CREATE TRIGGER hosts_touch BEFORE UPDATE ON app.hosts FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE FUNCTION app.weight_of(h app.hosts) RETURNS integer LANGUAGE sql STABLE AS 'SELECT h.weight';
CREATE PROCEDURE app.purge(older_than interval) LANGUAGE sql
    BEGIN ATOMIC DELETE FROM app.events WHERE at < now() - older_than; END;
CREATE AGGREGATE app.total(integer) (SFUNC = int4pl, STYPE = integer, INITCOND = '0');
CREATE RULE scratch_keep AS ON DELETE TO app.scratch DO INSTEAD NOTHING;
CREATE TABLE app."odd	name" ("two
lines" text DEFAULT E'tab\there\\back', "back\slash" integer);
"""

# The schema each drift test starts from.
BASE = """
CREATE TYPE sev AS ENUM ('low', 'high');
CREATE SEQUENCE ticket_no;
CREATE TABLE machines (
    id          serial PRIMARY KEY,
    hostname    varchar(255) NOT NULL,
    fqdn        text,
    os          text NOT NULL DEFAULT 'linux',
    weight      integer CONSTRAINT ck_machines_weight CHECK (weight > 0)
);
CREATE INDEX ix_machines_hostname ON machines (hostname);
CREATE TABLE agents (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id  integer NOT NULL CONSTRAINT fk_agents_machine REFERENCES machines (id),
    severity    sev NOT NULL DEFAULT 'low'
);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER agents_touch BEFORE UPDATE ON agents FOR EACH ROW EXECUTE FUNCTION touch();
"""


def apply(dsn: str, *scripts: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for script in scripts:
            conn.execute(script)


def catalog_of(dsn: str, schemas: list[str] | None = None) -> Catalog:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return read_catalog(conn, schemas)


def diffs(expected: Catalog, actual: Catalog) -> set[tuple[str, str]]:
    return {(d.kind, d.object) for d in compare(expected, actual)}


# --- every kind of drift is reported, and nothing else -----------------------------------------

DRIFTS = {
    "dropped column": ("ALTER TABLE machines DROP COLUMN fqdn",
                       {("missing", "column public.machines.fqdn"), ("changed", "columns public.machines")}),
    "changed column type": ("ALTER TABLE machines ALTER COLUMN fqdn TYPE varchar(100)",
                            {("changed", "column public.machines.fqdn")}),
    "dropped not null": ("ALTER TABLE machines ALTER COLUMN os DROP NOT NULL",
                         {("changed", "column public.machines.os")}),
    "changed default": ("ALTER TABLE machines ALTER COLUMN os SET DEFAULT 'windows'",
                        {("changed", "column public.machines.os")}),
    "dropped index": ("DROP INDEX ix_machines_hostname",
                      {("missing", "index public.machines.ix_machines_hostname")}),
    "added index": ("CREATE INDEX ON machines (fqdn)",
                    {("extra", "index public.machines USING btree (fqdn)")}),
    "added named index": ("CREATE UNIQUE INDEX ux_machines_fqdn ON machines (fqdn)",
                          {("extra", "index public.machines.ux_machines_fqdn")}),
    "index left invalid": ("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_machines_hostname'::regclass",
                           {("changed", "index public.machines.ix_machines_hostname")}),
    "changed check constraint": (
        "ALTER TABLE machines DROP CONSTRAINT ck_machines_weight, "
        "ADD CONSTRAINT ck_machines_weight CHECK (weight >= 0)",
        {("changed", "constraint public.machines.ck_machines_weight")}),
    "renamed check constraint": (
        "ALTER TABLE machines RENAME CONSTRAINT ck_machines_weight TO ck_machines_weight_positive",
        {("missing", "constraint public.machines.ck_machines_weight"),
         ("extra", "constraint public.machines.ck_machines_weight_positive")}),
    "dropped foreign key": ("ALTER TABLE agents DROP CONSTRAINT fk_agents_machine",
                            {("missing", "constraint public.agents.fk_agents_machine")}),
    "dropped primary key": ("ALTER TABLE machines DROP CONSTRAINT machines_pkey CASCADE",
                            {("missing", "constraint public.machines PRIMARY KEY (id)"),
                             ("missing", "constraint public.agents.fk_agents_machine")}),
    "enum label added": ("ALTER TYPE sev ADD VALUE 'critical'", {("changed", "type public.sev")}),
    "enum labels reordered": (
        "ALTER TYPE sev RENAME VALUE 'low' TO 'tmp'; ALTER TYPE sev RENAME VALUE 'high' TO 'low'; "
        "ALTER TYPE sev RENAME VALUE 'tmp' TO 'high'",
        # the column default points at the label that was 'low' and now reads 'high'
        {("changed", "type public.sev"), ("changed", "column public.agents.severity")}),
    "extra table": ("CREATE TABLE notes (body text)",
                    {("extra", "table public.notes"), ("extra", "columns public.notes"),
                     ("extra", "column public.notes.body")}),
    "extra trigger": ("CREATE TRIGGER machines_touch BEFORE UPDATE ON machines "
                      "FOR EACH ROW EXECUTE FUNCTION touch()",
                      {("extra", "trigger public.machines.machines_touch")}),
    "disabled trigger": ("ALTER TABLE agents DISABLE TRIGGER agents_touch",
                         {("changed", "trigger public.agents.agents_touch")}),
    "extra function": ("CREATE FUNCTION answer() RETURNS integer LANGUAGE sql AS 'SELECT 42'",
                       {("extra", "function public.answer()")}),
    "changed function body": (
        "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
        {("changed", "function public.touch()")}),
    "extra view": ("CREATE VIEW heavy_machines AS SELECT id FROM machines WHERE weight > 100",
                   {("extra", "view public.heavy_machines")}),
    "changed sequence": ("ALTER SEQUENCE ticket_no INCREMENT BY 10",
                         {("changed", "sequence public.ticket_no")}),
    "changed identity sequence": ("ALTER TABLE agents ALTER COLUMN id SET INCREMENT BY 5",
                                  {("changed", "sequence owned by public.agents.id")}),
    "row level security enabled": ("ALTER TABLE machines ENABLE ROW LEVEL SECURITY",
                                   {("changed", "table public.machines")}),
    "extra policy": ("CREATE POLICY own_rows ON machines USING (os = current_user)",
                     {("extra", "policy public.machines.own_rows")}),
    "extra schema": ("CREATE SCHEMA reporting", {("extra", "schema reporting")}),
    "extra extension": ("CREATE EXTENSION pg_trgm", {("extra", "extension pg_trgm")}),
}


@pytest.mark.parametrize("drift", DRIFTS, ids=[name.replace(" ", "_") for name in DRIFTS])
def test_drift_is_reported_exactly(db, drift):
    change, expected = DRIFTS[drift]
    apply(db, BASE)
    before = catalog_of(db)
    apply(db, change)
    after = catalog_of(db)
    assert diffs(before, after) == expected


def test_difference_carries_both_definitions(db):
    apply(db, BASE)
    before = catalog_of(db)
    apply(db, "ALTER TABLE machines ALTER COLUMN os SET DEFAULT 'windows'")
    assert compare(before, catalog_of(db)) == [Difference(
        "column public.machines.os", "changed",
        "text NOT NULL DEFAULT 'linux'::text", "text NOT NULL DEFAULT 'windows'::text")]


# --- equal schemas compare equal -----------------------------------------------------------------

def test_same_ddl_in_two_databases_compares_equal(make_db):
    a, b = make_db(), make_db()
    apply(a, RICH)
    apply(b, RICH)
    first, second = catalog_of(a), catalog_of(b)
    assert compare(first, second) == []
    assert first == second
    # and the catalog did see every class of object
    classes = {key.split(" ")[0] for key in first.objects}
    assert classes >= {"schema", "extension", "type", "sequence", "table", "columns", "column", "constraint",
                       "index", "view", "materialized", "function", "procedure", "aggregate", "trigger",
                       "rule", "policy"}
    # what comes with another object is not listed on its own: a range type's constructors,
    # a partition's copies of its parent's keys and indexes, pgcrypto's functions
    assert not [key for key in first.objects if "floatmultirange" in key or "gen_random_bytes" in key
                or key.startswith(("constraint app.events_2024", "index app.events_2024"))]


def test_server_chosen_names_do_not_make_equal_schemas_differ(make_db):
    """The same schema reached by two histories: PostgreSQL picks different names for the unnamed
    check constraints, indexes, the serial sequence and the primary key, and one table carries a
    dropped column."""
    long_table = "t" * 40 + "_events"
    long_col = "c" * 40
    a, b = make_db(), make_db()
    apply(a, f"""
        CREATE TABLE t (id serial PRIMARY KEY, c integer, d integer, legacy integer);
        ALTER TABLE t DROP COLUMN legacy;
        ALTER TABLE t ADD CHECK (c < 100);
        ALTER TABLE t ADD CHECK (c > 0);
        CREATE INDEX ON t (c);
        CREATE INDEX ON t (d);
        CREATE TABLE {long_table} ({long_col} integer);
        ALTER TABLE {long_table} ADD CHECK ({long_col} > 0);
        ALTER TABLE {long_table} ADD CHECK ({long_col} < 9);
    """)
    apply(b, f"""
        CREATE SEQUENCE t_id_seq;
        CREATE TABLE t_c_idx (x integer);
        CREATE TABLE t_pkey (x integer);
        CREATE TABLE t (id serial PRIMARY KEY, c integer, d integer);
        ALTER TABLE t ADD CHECK (c > 0);
        ALTER TABLE t ADD CHECK (c < 100);
        CREATE INDEX ON t (d);
        CREATE INDEX ON t (c);
        DROP TABLE t_c_idx, t_pkey;
        DROP SEQUENCE t_id_seq;
        CREATE TABLE {long_table} ({long_col} integer);
        ALTER TABLE {long_table} ADD CHECK ({long_col} < 9);
        ALTER TABLE {long_table} ADD CHECK ({long_col} > 0);
    """)
    names = """SELECT array_agg(n ORDER BY n) FROM (
                   SELECT conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint
                    WHERE connamespace = 'public'::regnamespace
                   UNION ALL SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace) s(n)"""
    with psycopg.connect(a) as ca, psycopg.connect(b) as cb:
        assert ca.execute(names).fetchone() != cb.execute(names).fetchone()  # the premise: names differ
    first, second = catalog_of(a), catalog_of(b)
    assert compare(first, second) == []
    assert first.objects["constraint public.t CHECK ((c > 0))"] == AUTO_NAMED
    assert first.objects["column public.t.id"] == "integer NOT NULL DEFAULT nextval(<owned sequence>)"
    assert "sequence owned by public.t.id" in first.objects
    assert first.objects["columns public.t"] == "id, c, d"


def test_duplicate_unnamed_definitions_are_numbered(db):
    apply(db, "CREATE TABLE t (c integer CHECK (c > 0)); ALTER TABLE t ADD CHECK (c > 0); "
              "CREATE INDEX ON t (c); CREATE INDEX ON t (c)")
    keys = set(catalog_of(db).objects)
    assert {"constraint public.t CHECK ((c > 0))", "constraint public.t CHECK ((c > 0)) #2",
            "index public.t USING btree (c)", "index public.t USING btree (c) #2"} <= keys


def test_core_bundle_in_two_databases_compares_equal(make_db):
    from common.db.history import DDL as RUNNER_TABLES
    scripts = [path.read_text(encoding="utf-8") for path in BUNDLE]
    a, b = make_db(), make_db()
    apply(a, *scripts, RUNNER_TABLES)
    apply(b, *scripts, RUNNER_TABLES)
    first = catalog_of(a)
    assert compare(first, catalog_of(b)) == []
    assert first.objects["table public.schema_migrations"] == "TABLE"
    assert "sequence owned by public.schema_migration_audit.id" in first.objects
    assert first.objects["constraint public.schema_migrations PRIMARY KEY (version)"] == AUTO_NAMED
    assert len([k for k in first.objects if k.startswith("table ")]) == 15


# --- transactions and side effects ---------------------------------------------------------------

def test_reads_uncommitted_ddl_inside_open_transaction_and_leaves_it_open(db):
    with psycopg.connect(db) as conn:
        conn.execute("SET search_path = public")
        conn.execute("CREATE TABLE pending (id integer)")
        catalog = read_catalog(conn)
        assert "table public.pending" in catalog.objects
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        assert conn.execute("SHOW search_path").fetchone()[0] == "public"
        conn.execute("INSERT INTO pending VALUES (1)")  # the transaction is still usable
        conn.rollback()
        assert "table public.pending" not in read_catalog(conn).objects


def test_reads_inside_a_transaction_block_and_a_read_only_transaction(db):
    with psycopg.connect(db) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL TimeZone = 'Asia/Tokyo'")
            conn.execute("CREATE TABLE pending (at timestamptz DEFAULT '2024-01-01 00:00+00')")
            catalog = read_catalog(conn)
            assert conn.execute("SHOW TimeZone").fetchone()[0] == "Asia/Tokyo"
        assert catalog.objects["column public.pending.at"] == \
            "timestamp with time zone DEFAULT '2024-01-01 00:00:00+00'::timestamp with time zone"
        conn.read_only = True
        with conn.transaction():
            assert read_catalog(conn) == catalog
    with psycopg.connect(db, autocommit=True) as conn:  # the runner's way: autocommit, explicit block
        with conn.transaction():
            conn.execute("CREATE TABLE pending_too (id integer)")
            assert "table public.pending_too" in read_catalog(conn).objects
            conn.execute("INSERT INTO pending_too VALUES (1)")
        assert conn.execute("SELECT count(*) FROM pending_too").fetchone()[0] == 1  # committed as usual


def test_autocommit_read_leaves_no_transaction_and_settings_unchanged(db):
    apply(db, BASE)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog, public; SET DateStyle = 'German'")
        read_catalog(conn)
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.execute("SHOW search_path").fetchone()[0] == "pg_catalog, public"
        assert conn.execute("SHOW DateStyle").fetchone()[0] == "German, DMY"
    with psycopg.connect(db) as conn:  # not autocommit, idle: no transaction left behind either
        read_catalog(conn)
        assert conn.info.transaction_status == TransactionStatus.IDLE


def test_session_settings_do_not_change_the_catalog(db):
    apply(db, RICH)
    plain = catalog_of(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SET search_path = app, public; SET DateStyle = 'SQL, DMY'; SET TimeZone = 'America/Lima'; "
                     "SET quote_all_identifiers = on; SET extra_float_digits = 0")
        assert compare(plain, read_catalog(conn)) == []


def test_an_unprivileged_role_reads_the_same_catalog(db):
    role = f"catalog_reader_{os.getpid()}"
    apply(db, RICH, BASE, f"CREATE ROLE {role} NOLOGIN")
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"SET ROLE {role}")
            as_reader = read_catalog(conn)
        assert compare(catalog_of(db), as_reader) == []
    finally:
        apply(db, f"DROP OWNED BY {role}; DROP ROLE {role}")


# --- scope -----------------------------------------------------------------------------------------

def test_schema_list_limits_the_read_and_system_schemas_are_never_read(db):
    apply(db, RICH, BASE)
    everything = catalog_of(db)
    only_app = catalog_of(db, ["app"])
    outside = [key for key, definition in only_app.objects.items()
               if " app." not in key and key != "schema app" and not definition.endswith(" SCHEMA app")]
    assert only_app.objects and outside == []
    assert set(only_app.objects) < set(everything.objects)
    assert not [key for key in everything.objects if "pg_catalog." in key or "information_schema" in key]


def test_extension_members_are_covered_by_the_extension_not_listed(db):
    apply(db, "CREATE EXTENSION pgcrypto")
    objects = catalog_of(db).objects
    assert objects["extension pgcrypto"].startswith("VERSION '")
    assert not [key for key in objects if key.startswith("function ")]


# --- snapshot text -----------------------------------------------------------------------------------

def test_render_parse_round_trips_exactly(db, tmp_path):
    apply(db, RICH, BASE)
    catalog = catalog_of(db)
    text = render(catalog, header="RansomEye test snapshot\nsecond line")
    assert text.startswith("# RansomEye test snapshot\n# second line\n")
    assert len(text.splitlines()) == len(catalog.objects) + 2  # one line per object
    assert parse(text) == catalog
    assert render(parse(text), header="RansomEye test snapshot\nsecond line") == text
    path = tmp_path / "snapshot.schema"
    path.write_text(text, encoding="utf-8")
    assert load_snapshot(path) == catalog
    # odd identifiers and literals survive, and a regular expression stays readable
    assert any("\t" in key for key in catalog.objects)
    assert r"CHECK (((name ~ '^\w+$'::text) AND (name !~ '\\t'::text)))" in text


@pytest.mark.parametrize("value", ["plain", "tab\there", "new\nline", "cr\r\n", "\\", "ends with \\",
                                   "\\t literal", "\\\t", "\\\\n", "C:\\temp\\new", "\\w+\\d", "", "x\\\\\\"])
def test_escaping_round_trips_any_text(value):
    catalog = Catalog({f"column public.t.{value!r}": value, "schema public": value})
    text = render(catalog)
    assert text.count("\n") == 2
    assert parse(text) == catalog


def test_parse_accepts_crlf_line_ends():
    catalog = Catalog({"schema public": "present", "column public.t.c": "text DEFAULT 'a\rb'::text"})
    assert parse(render(catalog, header="h").replace("\n", "\r\n")) == catalog


def test_parse_names_the_bad_line():
    with pytest.raises(ValueError, match="line 2"):
        parse("# header\nno tab here\n")
    with pytest.raises(ValueError, match="twice"):
        parse("schema a\tpresent\nschema a\tpresent\n")


def test_compare_is_sorted_and_names_each_kind():
    expected = Catalog({"table public.b": "TABLE", "table public.a": "TABLE", "type public.e": "ENUM ('x')"})
    actual = Catalog({"table public.c": "TABLE", "table public.a": "TABLE", "type public.e": "ENUM ('y')"})
    assert compare(expected, actual) == [
        Difference("table public.b", "missing", "TABLE", None),
        Difference("table public.c", "extra", None, "TABLE"),
        Difference("type public.e", "changed", "ENUM ('x')", "ENUM ('y')"),
    ]
    assert compare(expected, expected) == []
