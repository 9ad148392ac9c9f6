"""Read the live schema from the PostgreSQL catalogs and keep it as a reviewable text snapshot.

A ``Catalog`` maps an object key (``column public.machines.hostname``) to its canonical definition
(``character varying(255) NOT NULL``). ``read_catalog`` builds one in a dozen queries, one per
object class; ``render`` writes it one object per line, sorted; ``parse`` reads that text back.

What it reads: schemas, tables (kind, UNLOGGED, partitioning, inheritance, options, row level
security), columns (type, collation, NOT NULL, default, identity, generated) and each table's
column order, constraints, indexes, enum/domain/composite/range types, sequences, views and
materialized views, functions/procedures/aggregates, triggers, rules, policies and extensions.
Objects that belong to an extension are covered by the extension's name and version, not listed.
Not read: owners, privileges, comments, statistics targets, storage settings, tablespaces.

Equal schemas give equal catalogs
---------------------------------
Nothing that differs between two databases built by the same DDL is kept: no OIDs, no attnums (a
dropped column leaves a hole in attnum; the ``columns`` line records the order of the live
columns only), and no name that PostgreSQL chose. PostgreSQL names an unnamed constraint, index
or serial/identity sequence ``<table>_<columns>_<label>`` (labels ``pkey``, ``key``, ``fkey``,
``check``, ``excl``, ``idx``, ``seq``), adds a number on a collision (``t_c_check1``) and shortens
both parts to fit 63 bytes. A name of that shape is treated as chosen by the server: such an
object is keyed by what it is, ``constraint public.t CHECK ((c > 0))`` or ``index public.t
USING btree (c)`` or ``sequence owned by public.t.id``, and its definition reads ``auto-named``.
Every other name was chosen by the author and is part of the key (``constraint
public.machines.ck_machines_seen_order``), so a renamed constraint is a difference and a changed
one is "changed", not "missing" plus "extra". Two unnamed objects with the same definition on one
table are numbered ``#2``, ``#3`` in the key. A default ``nextval('public.t_id_seq'::regclass)``
on the column that owns the sequence reads ``nextval(<owned sequence>)``. An author who spells
out a server-style name gets it ignored, which costs nothing but the check of that one name. A
name the server chose for a table that was renamed later no longer starts with the table's name
and counts as the author's; the same migrations give the same names, so that compares equal too.

Definitions are PostgreSQL's own deparsed text, so a snapshot compares with databases of the same
PostgreSQL major version (the one the installer embeds); another major version may spell a view
or a default differently.

The deparsing functions (``format_type``, ``pg_get_expr``, ``pg_get_constraintdef`` ...) print
differently under different settings, so the read pins them for its own duration:
``search_path=pg_catalog`` (every user object comes out schema-qualified), ISO dates, UTC, and
the other settings in ``_PINNED``. The multi-line output of views, functions and rules is flattened
to one line (each line stripped, joined by one space).

Transactions
------------
``read_catalog`` never writes. On an autocommit or idle connection it runs in its own REPEATABLE
READ, READ ONLY transaction, rolled back at the end; inside an open transaction it uses a
savepoint that is rolled back, so the caller's transaction, uncommitted DDL included, is read as it
stands and the settings are back as they were. Needs PostgreSQL 13 or later.

Snapshot text
-------------
``key<TAB>definition`` per line, sorted by key; ``#`` lines are comments (the header). A tab,
newline or carriage return inside a key or definition is written ``\\t``, ``\\n``, ``\\r``, and a
backslash is doubled only where it comes before one of those escapes, so regular expressions in
CHECK constraints stay readable.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row

__all__ = ["Catalog", "read_catalog", "render", "parse", "load_snapshot", "AUTO_NAMED"]

AUTO_NAMED = "auto-named"
OWNED_SEQUENCE = "<owned sequence>"
_NAMEDATALEN = 64

# Settings that change what the deparsing functions print; pinned for the read only.
_PINNED = {
    "search_path": "pg_catalog",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "quote_all_identifiers": "off",
    "standard_conforming_strings": "on",
    "lc_monetary": "C",
}


@dataclass(frozen=True)
class Catalog:
    objects: dict[str, str]  # object key -> canonical definition (one line each)


# --- reading -------------------------------------------------------------------------------------

def read_catalog(conn: psycopg.Connection, schemas: list[str] | None = None) -> Catalog:
    """The schema of ``schemas`` (default: every non-system schema) as the connection sees it now."""
    if isinstance(schemas, str):
        raise TypeError("schemas must be a list of schema names, not a string")
    # IDLE: no transaction open, whether autocommit or not (an autocommit connection inside a
    # ``with conn.transaction():`` block is INTRANS); then the read gets a transaction of its own.
    own_transaction = conn.info.transaction_status == TransactionStatus.IDLE
    with conn.transaction(force_rollback=True):
        with conn.cursor(row_factory=namedtuple_row) as cur:
            if own_transaction:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT " + ", ".join(f"set_config(%s, %s, true) AS s{i}" for i in range(len(_PINNED))),
                        [v for item in _PINNED.items() for v in item])
            return Catalog(_Reader(cur, schemas).read())


_SCHEMAS = """
SELECT n.oid, quote_ident(n.nspname) AS q
  FROM pg_namespace n
 WHERE CASE WHEN %(names)s::text[] IS NULL
            THEN n.nspname NOT IN ('pg_catalog', 'information_schema')
                 AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
            ELSE n.nspname = ANY(%(names)s::text[]) END
"""

# "Not a member of an extension", for an object of catalog CLASS whose oid is OID.
_NOT_EXT = ("NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{cls}'::regclass "
            "AND e.objid = {oid} AND e.deptype = 'e')")

_RELATIONS = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS q, c.relkind, c.relpersistence,
       c.relrowsecurity, c.relforcerowsecurity, c.reloptions::text[] AS options, am.amname,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
       c.relispartition,
       (SELECT array_agg(quote_ident(pn.nspname) || '.' || quote_ident(pc.relname) ORDER BY i.inhseqno)
          FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
          JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE i.inhrelid = c.oid) AS parents,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef,
       (SELECT quote_ident(s.srvname) FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver
         WHERE ft.ftrelid = c.oid) AS server
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_am am ON am.oid = c.relam
 WHERE c.relnamespace = ANY(%(nsp)s::oid[]) AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
   AND {_NOT_EXT.format(cls='pg_class', oid='c.oid')}
"""

_COLUMNS = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS rel, c.relkind,
       quote_ident(a.attname) AS q, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull, a.attidentity, a.attgenerated,
       pg_get_expr(d.adbin, d.adrelid) AS dflt,
       CASE WHEN a.attcollation <> t.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS coll
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE c.relnamespace = ANY(%(nsp)s::oid[]) AND c.relkind IN ('r', 'p', 'f', 'c')
   AND a.attnum > 0 AND NOT a.attisdropped
   AND {_NOT_EXT.format(cls='pg_class', oid='c.oid')}
   AND (c.relkind <> 'c' OR {_NOT_EXT.format(cls='pg_type', oid='c.reltype')})
 ORDER BY c.oid, a.attnum
"""

# Constraints on tables and domains. A partition's copies of its parent's constraints
# (conparentid <> 0) follow from the parent and are not listed; NOT NULL is a column property.
_CONSTRAINTS = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(coalesce(c.relname, t.typname)) AS owner_q,
       coalesce(c.relname, t.typname) AS owner, con.conname AS name, quote_ident(con.conname) AS q,
       con.contype, con.convalidated, pg_get_constraintdef(con.oid) AS ddl
  FROM pg_constraint con
  JOIN pg_namespace n ON n.oid = con.connamespace
  LEFT JOIN pg_class c ON c.oid = con.conrelid
  LEFT JOIN pg_type t ON t.oid = con.contypid
 WHERE con.connamespace = ANY(%(nsp)s::oid[]) AND con.contype IN ('p', 'u', 'f', 'c', 'x')
   AND con.conparentid = 0 AND (c.oid IS NOT NULL OR t.oid IS NOT NULL)
   AND {_NOT_EXT.format(cls='pg_class', oid='coalesce(c.oid, 0)')}
   AND {_NOT_EXT.format(cls='pg_type', oid='coalesce(t.oid, 0)')}
"""

# Indexes that are not the index of a PRIMARY KEY, UNIQUE or EXCLUDE constraint (those are
# covered by the constraint) nor a partition's copy of its parent's index.
_INDEXES = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(t.relname) AS owner_q, t.relname AS owner,
       i.relname AS name, quote_ident(i.relname) AS q, x.indisunique, x.indisvalid,
       pg_get_indexdef(i.oid) AS ddl
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE t.relnamespace = ANY(%(nsp)s::oid[]) AND NOT i.relispartition
   AND x.indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE contype IN ('p', 'u', 'x'))
   AND {_NOT_EXT.format(cls='pg_class', oid='t.oid')}
"""

_SEQUENCES = f"""
SELECT quote_ident(n.nspname) AS nsp, c.relname AS name, quote_ident(c.relname) AS q,
       format_type(s.seqtypid, NULL) AS type, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
       s.seqcache, s.seqcycle, quote_literal(c.oid::regclass::text) AS literal,
       tc.relname AS owner, quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) AS owner_q,
       quote_ident(a.attname) AS column_q
  FROM pg_sequence s
  JOIN pg_class c ON c.oid = s.seqrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
        AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
  LEFT JOIN pg_class tc ON tc.oid = d.refobjid
  LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE c.relnamespace = ANY(%(nsp)s::oid[])
   AND {_NOT_EXT.format(cls='pg_class', oid='c.oid')}
"""

_TYPES = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(t.typname) AS q, t.typtype,
       (SELECT array_agg(quote_literal(e.enumlabel) ORDER BY e.enumsortorder)
          FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base,
       t.typnotnull, pg_get_expr(t.typdefaultbin, 0) AS dflt,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS coll,
       format_type(r.rngsubtype, NULL) AS subtype,
       quote_ident(opn.nspname) || '.' || quote_ident(opc.opcname) AS subtype_opclass,
       CASE WHEN r.rngcollation <> 0
            THEN quote_ident(rcn.nspname) || '.' || quote_ident(rco.collname) END AS range_coll,
       nullif(r.rngcanonical, 0)::regproc::text AS canonical,
       nullif(r.rngsubdiff, 0)::regproc::text AS subdiff
  FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace
  LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
  LEFT JOIN pg_class c ON c.oid = t.typrelid
  LEFT JOIN pg_collation co ON co.oid = t.typcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
  LEFT JOIN pg_range r ON r.rngtypid = t.oid
  LEFT JOIN pg_opclass opc ON opc.oid = r.rngsubopc
  LEFT JOIN pg_namespace opn ON opn.oid = opc.opcnamespace
  LEFT JOIN pg_collation rco ON rco.oid = r.rngcollation
  LEFT JOIN pg_namespace rcn ON rcn.oid = rco.collnamespace
 WHERE t.typnamespace = ANY(%(nsp)s::oid[])
   AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
   AND {_NOT_EXT.format(cls='pg_type', oid='t.oid')}
"""

_FUNCTIONS = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname)
           || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS q,
       p.prokind,
       CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS ddl,
       CASE WHEN p.prokind = 'a' THEN concat_ws(', ',
            'SFUNC = ' || ag.aggtransfn::regproc::text,
            'STYPE = ' || format_type(ag.aggtranstype, NULL),
            'FINALFUNC = ' || nullif(ag.aggfinalfn, 0)::regproc::text,
            'COMBINEFUNC = ' || nullif(ag.aggcombinefn, 0)::regproc::text,
            'INITCOND = ' || quote_literal(ag.agginitval),
            'SORTOP = ' || nullif(ag.aggsortop, 0)::regoperator::text,
            'KIND = ' || ag.aggkind::text)
            || ' RETURNS ' || format_type(p.prorettype, NULL) END AS agg
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  LEFT JOIN pg_aggregate ag ON ag.aggfnoid = p.oid
 WHERE p.pronamespace = ANY(%(nsp)s::oid[])
   AND {_NOT_EXT.format(cls='pg_proc', oid='p.oid')}
   AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass AND i.objid = p.oid
                   AND i.deptype = 'i')  -- a range type's constructors come with the type
"""

# User triggers only: not the internal ones behind foreign keys, not a partition's clones.
_TRIGGERS = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(tg.tgname) AS q,
       pg_get_triggerdef(tg.oid) AS ddl, tg.tgenabled
  FROM pg_trigger tg
  JOIN pg_class c ON c.oid = tg.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relnamespace = ANY(%(nsp)s::oid[]) AND NOT tg.tgisinternal AND tg.tgparentid = 0
   AND {_NOT_EXT.format(cls='pg_class', oid='c.oid')}
"""

_RULES = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(r.rulename) AS q,
       pg_get_ruledef(r.oid) AS ddl, r.ev_enabled
  FROM pg_rewrite r
  JOIN pg_class c ON c.oid = r.ev_class
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relnamespace = ANY(%(nsp)s::oid[]) AND r.rulename <> '_RETURN'
   AND {_NOT_EXT.format(cls='pg_class', oid='c.oid')}
"""

_POLICIES = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(p.polname) AS q,
       p.polpermissive, p.polcmd,
       (SELECT array_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END)
          FROM unnest(p.polroles) AS r) AS roles,
       pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS withcheck
  FROM pg_policy p
  JOIN pg_class c ON c.oid = p.polrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relnamespace = ANY(%(nsp)s::oid[])
"""

_EXTENSIONS = """
SELECT quote_ident(x.extname) AS q, x.extversion, quote_ident(n.nspname) AS nsp
  FROM pg_extension x
  JOIN pg_namespace n ON n.oid = x.extnamespace
 WHERE %(all)s OR x.extnamespace = ANY(%(nsp)s::oid[])
"""

_TABLE_KINDS = {"r": "TABLE", "p": "PARTITIONED TABLE", "f": "FOREIGN TABLE"}
_CONSTRAINT_LABELS = {"p": "pkey", "u": "key", "f": "fkey", "c": "check", "x": "excl"}
_POLICY_COMMANDS = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}
_ENABLED = {"O": "", "D": " DISABLED", "R": " ENABLE REPLICA", "A": " ENABLE ALWAYS"}


class _Reader:
    """One read: runs the class queries on ``cur`` and fills ``objects``."""

    def __init__(self, cur: psycopg.Cursor, schemas: list[str] | None) -> None:
        self.cur = cur
        self.schemas = schemas
        self.objects: dict[str, str] = {}
        self.params: dict = {}
        self.composites: dict[str, list[str]] = defaultdict(list)  # composite type -> its attributes

    def read(self) -> dict[str, str]:
        rows = self._query(_SCHEMAS, {"names": None if self.schemas is None else list(self.schemas)})
        self.params = {"nsp": [r.oid for r in rows], "all": self.schemas is None}
        for r in rows:
            self._add(f"schema {r.q}", "present")
        self._extensions()
        self._relations()
        owned = self._sequences()
        self._columns(owned)
        self._types()
        self._constraints()
        self._indexes()
        self._functions()
        self._triggers()
        self._rules()
        self._policies()
        return self.objects

    def _query(self, query: str, params: dict | None = None) -> list:
        self.cur.execute(query, self.params if params is None else params)
        return self.cur.fetchall()

    def _add(self, key: str, definition: str) -> None:
        if key in self.objects:  # the same unnamed definition twice on one object
            n = 2
            while f"{key} #{n}" in self.objects:
                n += 1
            key = f"{key} #{n}"
        self.objects[key] = definition

    def _extensions(self) -> None:
        for r in self._query(_EXTENSIONS):
            self._add(f"extension {r.q}", f"VERSION {_literal(r.extversion)} SCHEMA {r.nsp}")

    def _relations(self) -> None:
        for r in self._query(_RELATIONS):
            options = [f"WITH ({', '.join(sorted(r.options))})"] if r.options else []
            if r.relkind in ("v", "m"):
                kind = "view" if r.relkind == "v" else "materialized view"
                using = [f"USING {r.amname}"] if r.relkind == "m" and r.amname != "heap" else []
                self._add(f"{kind} {r.q}", " ".join([*using, *options, "AS", _flatten(r.viewdef)]))
                continue
            parts = [("UNLOGGED " if r.relpersistence == "u" else "") + _TABLE_KINDS[r.relkind]]
            if r.relispartition:
                parts.append(f"PARTITION OF {r.parents[0]} {r.bound}")
            elif r.parents:
                parts.append(f"INHERITS ({', '.join(r.parents)})")
            if r.partkey:
                parts.append(f"PARTITION BY {r.partkey}")
            if r.relkind == "r" and r.amname and r.amname != "heap":
                parts.append(f"USING {r.amname}")
            if r.server:
                parts.append(f"SERVER {r.server}")
            parts += options
            if r.relrowsecurity:
                parts.append("ROW LEVEL SECURITY")
            if r.relforcerowsecurity:
                parts.append("FORCE ROW LEVEL SECURITY")
            self._add(f"table {r.q}", " ".join(parts))

    def _sequences(self) -> dict[tuple[str, str], str]:
        """Adds the sequences; returns {(table, column): regclass literal} of owned sequences."""
        owned: dict[tuple[str, str], str] = {}
        for r in self._query(_SEQUENCES):
            definition = (f"AS {r.type} INCREMENT BY {r.seqincrement} MINVALUE {r.seqmin} MAXVALUE {r.seqmax} "
                          f"START WITH {r.seqstart} CACHE {r.seqcache} {'CYCLE' if r.seqcycle else 'NO CYCLE'}")
            if r.owner is None:
                self._add(f"sequence {r.nsp}.{r.q}", definition)
                continue
            owned[(r.owner_q, r.column_q)] = r.literal
            if looks_auto_named(r.name, r.owner, "seq"):  # OWNED BY: always the table's schema
                self._add(f"sequence owned by {r.owner_q}.{r.column_q}", definition)
            else:
                self._add(f"sequence {r.nsp}.{r.q}", f"{definition} OWNED BY {r.owner_q}.{r.column_q}")
        return owned

    def _columns(self, owned: dict[tuple[str, str], str]) -> None:
        order: dict[str, list[str]] = defaultdict(list)
        for r in self._query(_COLUMNS):
            definition = r.type + (f" COLLATE {r.coll}" if r.coll else "")
            if r.relkind == "c":
                self.composites[r.rel].append(f"{r.q} {definition}")
                continue
            order[r.rel].append(r.q)
            if r.attnotnull:
                definition += " NOT NULL"
            if r.attgenerated == "s":
                definition += f" GENERATED ALWAYS AS ({r.dflt}) STORED"
            elif r.dflt is not None:
                dflt = r.dflt
                literal = owned.get((r.rel, r.q))
                if literal:
                    dflt = dflt.replace(f"nextval({literal}::regclass)", f"nextval({OWNED_SEQUENCE})")
                definition += f" DEFAULT {dflt}"
            if r.attidentity:
                definition += f" GENERATED {'ALWAYS' if r.attidentity == 'a' else 'BY DEFAULT'} AS IDENTITY"
            self._add(f"column {r.rel}.{r.q}", definition)
        for rel, columns in order.items():
            self._add(f"columns {rel}", ", ".join(columns))

    def _types(self) -> None:
        for r in self._query(_TYPES):
            if r.typtype == "e":
                definition = f"ENUM ({', '.join(r.labels or [])})"
            elif r.typtype == "c":
                definition = f"COMPOSITE ({', '.join(self.composites.get(r.q, []))})"
            elif r.typtype == "r":
                extra = [f"SUBTYPE_OPCLASS = {r.subtype_opclass}"]
                extra += [f"COLLATION = {r.range_coll}"] if r.range_coll else []
                extra += [f"CANONICAL = {r.canonical}"] if r.canonical else []
                extra += [f"SUBTYPE_DIFF = {r.subdiff}"] if r.subdiff else []
                definition = f"RANGE (SUBTYPE = {r.subtype}, {', '.join(extra)})"
            else:
                definition = f"DOMAIN {r.base}"
                definition += f" COLLATE {r.coll}" if r.coll else ""
                definition += " NOT NULL" if r.typnotnull else ""
                definition += f" DEFAULT {r.dflt}" if r.dflt is not None else ""
            self._add(f"type {r.q}", definition)

    def _add_sorted(self, items: list[tuple[str, str]]) -> None:
        """Add in a fixed order, so that which of two equal unnamed objects gets ``#2`` does not
        depend on the order the server returned them in."""
        for key, definition in sorted(items):
            self._add(key, definition)

    def _constraints(self) -> None:
        items = []
        for r in self._query(_CONSTRAINTS):
            if looks_auto_named(r.name, r.owner, _CONSTRAINT_LABELS[r.contype]):
                definition, flags = r.ddl, AUTO_NAMED
                if not r.convalidated and definition.endswith(" NOT VALID"):
                    definition, flags = definition[: -len(" NOT VALID")], f"{AUTO_NAMED} NOT VALID"
                items.append((f"constraint {r.owner_q} {definition}", flags))
            else:
                items.append((f"constraint {r.owner_q}.{r.q}", r.ddl))
        self._add_sorted(items)

    def _indexes(self) -> None:
        items = []
        for r in self._query(_INDEXES):
            definition = _index_body(r.ddl, r.q, r.owner_q)
            invalid = "" if r.indisvalid else " INVALID"
            if definition is not None and looks_auto_named(r.name, r.owner, "idx"):
                items.append((f"index {r.owner_q} {definition}", AUTO_NAMED + invalid))
            else:
                items.append((f"index {r.owner_q}.{r.q}", (definition or r.ddl) + invalid))
        self._add_sorted(items)

    def _functions(self) -> None:
        kinds = {"f": "function", "w": "function", "p": "procedure", "a": "aggregate"}
        for r in self._query(_FUNCTIONS):
            self._add(f"{kinds[r.prokind]} {r.q}", r.agg if r.prokind == "a" else _flatten(r.ddl))

    def _triggers(self) -> None:
        for r in self._query(_TRIGGERS):
            self._add(f"trigger {r.q}", r.ddl + _ENABLED.get(r.tgenabled, f" ENABLED {r.tgenabled}"))

    def _rules(self) -> None:
        for r in self._query(_RULES):
            self._add(f"rule {r.q}", _flatten(r.ddl) + _ENABLED.get(r.ev_enabled, f" ENABLED {r.ev_enabled}"))

    def _policies(self) -> None:
        for r in self._query(_POLICIES):
            definition = (f"AS {'PERMISSIVE' if r.polpermissive else 'RESTRICTIVE'} "
                          f"FOR {_POLICY_COMMANDS[r.polcmd]} TO {', '.join(sorted(r.roles or ['PUBLIC']))}")
            definition += f" USING ({r.qual})" if r.qual is not None else ""
            definition += f" WITH CHECK ({r.withcheck})" if r.withcheck is not None else ""
            self._add(f"policy {r.q}", definition)


def looks_auto_named(name: str, owner: str, label: str) -> bool:
    """Whether ``name`` has the shape PostgreSQL gives an unnamed object of ``owner`` (a table or
    domain): ``owner[_columns]_label[N]``, where makeObjectName() may have shortened the owner and
    column parts so that the whole fits in 63 bytes."""
    m = re.fullmatch(rf"(.+)_{label}[0-9]*", name, flags=re.DOTALL)
    if not m:
        return False
    head = m.group(1)
    if head == owner or head.startswith(owner + "_"):
        return True
    # Shortened: only ever to a name of (nearly) the maximum length; multibyte clipping can cost
    # up to 3 bytes in each of the two parts.
    if len(name.encode()) < _NAMEDATALEN - 1 - 6:
        return False
    return any(head == owner[:k] or head.startswith(owner[:k] + "_") for k in range(len(owner) - 1, 0, -1))


def _index_body(indexdef: str, name_q: str, owner_q: str) -> str | None:
    """``CREATE UNIQUE INDEX n ON ONLY s.t USING btree (c)`` -> ``UNIQUE ONLY USING btree (c)``;
    None if the text is not of that shape."""
    m = re.match(r"CREATE (UNIQUE )?INDEX ", indexdef)
    if not m:
        return None
    rest = indexdef[m.end():]
    if not rest.startswith(f"{name_q} ON "):
        return None
    rest = rest[len(name_q) + 4:]
    only = rest.startswith("ONLY ")
    rest = rest[5:] if only else rest
    if not rest.startswith(owner_q + " "):
        return None
    return (m.group(1) or "") + ("ONLY " if only else "") + rest[len(owner_q) + 1:]


def _flatten(text: str) -> str:
    """Multi-line deparsed SQL as one line: each line stripped, joined by one space."""
    return " ".join(line.strip() for line in text.split("\n") if line.strip())


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- text ----------------------------------------------------------------------------------------

_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_NEEDS_DOUBLING = re.compile(r"\\(?=[\\tnr\t\n\r])")
_CONTROL = re.compile(r"[\t\n\r]")
_ESCAPE_SEQ = re.compile(r"\\([\\tnr])")


def _escape(s: str) -> str:
    return _CONTROL.sub(lambda m: _ESCAPES[m.group()], _NEEDS_DOUBLING.sub(r"\\\\", s))


def _unescape(s: str) -> str:
    return _ESCAPE_SEQ.sub(lambda m: _UNESCAPES[m.group(1)], s)


def render(catalog: Catalog, header: str = "") -> str:
    """The snapshot text: ``header`` as ``#`` lines, then ``key<TAB>definition`` sorted by key."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    lines += [f"{_escape(key)}\t{_escape(catalog.objects[key])}" for key in sorted(catalog.objects)]
    return "".join(line + "\n" for line in lines)


def parse(text: str) -> Catalog:
    """The catalog a ``render`` text holds; raises ValueError naming the first bad line."""
    objects: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line[:-1] if line.endswith("\r") else line  # CRLF from a checkout; a real CR is escaped
        if not line or line.startswith("#"):
            continue
        key, tab, definition = line.partition("\t")
        if not tab or not key:
            raise ValueError(f"line {number}: expected 'key<TAB>definition', got {line[:80]!r}")
        key = _unescape(key)
        if key in objects:
            raise ValueError(f"line {number}: object {key!r} appears twice")
        objects[key] = _unescape(definition)
    return Catalog(objects)


def load_snapshot(path) -> Catalog:
    try:
        return parse(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
