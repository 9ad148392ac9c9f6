"""Adopting a database that was built by hand from a release's bundle, before the runner existed.

Such a database has the schema but no ``schema_migrations``. If its structure equals a release's
expected schema exactly, the runner records that release's migrations as applied (audited as an
adoption) and carries on; if it matches only in part, nothing changes and every difference is
listed (exit 16). ``baseline --version`` does the same on purpose for one named release.
"""
from __future__ import annotations

import re

import psycopg

from . import history
from .catalog import Catalog, read_catalog
from .errors import SchemaDrift, VersionConflict
from .migrations import MigrationSet
from .schemadiff import Difference, compare
from .snapshots import expected_for

_RUNNER_OBJECT = re.compile(r"\bpublic\.(schema_migrations|schema_migration_audit)\b")


def without_runner_tables(cat: Catalog) -> Catalog:
    return Catalog({k: v for k, v in cat.objects.items() if not _RUNNER_OBJECT.search(k)})


def has_user_objects(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                             AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
                             AND c.relname NOT IN ('schema_migrations', 'schema_migration_audit')
                             AND c.relname NOT LIKE 'schema_migration_audit_%%')
               OR EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                           WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd'))""").fetchone()
    return bool(row[0])


def _match(mset: MigrationSet, live: Catalog, releases: list[str]) -> tuple[str | None, dict[str, list[Difference]]]:
    diffs: dict[str, list[Difference]] = {}
    for release in releases:
        expected = without_runner_tables(expected_for(mset, mset.releases[release]))
        diffs[release] = compare(expected, live)
        if not diffs[release]:
            return release, diffs
    return None, diffs


def adopt(conn: psycopg.Connection, mset: MigrationSet, release: str | None, report) -> dict:
    """Record the baseline if the live structure equals a release's (``release`` or any) exactly.

    Runs in one transaction: create the runner's tables, re-read the catalog, compare, record. A
    mismatch rolls it all back (raises SchemaDrift). The caller holds the migration lock.
    """
    mode = "baseline" if release else "adopt"
    if history.tables_exist(conn)[0] and history.applied(conn):
        raise VersionConflict("this database already has applied migrations; a baseline is only recorded on a "
                              "database the runner has never managed. Nothing was changed.")
    candidates = [release] if release else list(reversed(mset.releases))
    if not candidates:
        raise SchemaDrift("the database already holds tables or types but was never managed by the runner (no "
                          "schema_migrations), and this migration set names no release to compare it with; "
                          "nothing was changed.",
                          hint="Use an empty database, or the migrations directory of the release that built it.")
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")  # the runner's session default is off
        live = without_runner_tables(read_catalog(conn))
        matched, diffs = _match(mset, live, candidates)
        if matched is None:
            closest = min(diffs, key=lambda r: len(diffs[r]))
            found = diffs[closest]
            raise SchemaDrift(
                f"the database was not built by the runner and its structure does not match "
                f"{'release ' + closest if release else 'any release'} exactly "
                f"({len(found)} difference(s) from release {closest}); nothing was changed.",
                hint="Repair the listed objects by hand (or restore from backup), then run again.",
                details=[d.__dict__ for d in found])
        conn.execute(history.DDL)
        audit = history.Audit(conn, mode=mode)
        target = mset.releases[matched]
        recorded = []
        for m in mset.migrations:
            if m.version > target:
                break
            history.record_applied(conn, m.version, m.description, m.checksum, 0)
            audit.record(m.version, m.description, "baseline", "succeeded", m.checksum,
                         error=f"recorded as applied: the structure matched release {matched} ({mode})")
            recorded.append(m.version)
    report("message", {"text": f"{'adopted' if mode == 'adopt' else 'baselined'} a database built by hand: its "
                               f"structure matches release {matched} exactly; recorded {len(recorded)} migration(s) "
                               f"as applied", "style": "yellow"})
    return {"release": matched, "version": target, "recorded": recorded, "mode": mode}
