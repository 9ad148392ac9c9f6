"""Is this database exactly the schema a given release expects? Shared by Core's startup gate
(``core.runtime``) and the runner's ``verify`` verb.

Four beats: wait (bounded) while a migration run holds the lock; the version must equal the
expected one exactly; applied migrations' checksums must match the shipped files; the live
catalog must equal the release's expected-schema snapshot, every difference listed. Everything is
read in one REPEATABLE READ, read-only transaction, so the version and the catalog agree.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg

from . import history, lock
from .catalog import Catalog, read_catalog
from .connection import connect
from .errors import ChecksumMismatch, SchemaDrift, VersionConflict
from .migrations import MigrationSet
from .runner import Settings
from .schemadiff import compare


@dataclass
class Report:
    expected_version: str | None
    expected_release: str | None
    version: str | None = None
    release: str | None = None
    waited_s: float = 0.0
    migration_running: bool = False
    last_run_problems: list[dict] = field(default_factory=list)
    differences: list[dict] = field(default_factory=list)
    objects_checked: int = 0
    elapsed_ms: float = 0.0

    def to_json(self) -> dict:
        return dict(self.__dict__)


def wait_for_migrations(conn: psycopg.Connection, lock_wait: float, report) -> tuple[float, bool]:
    """Wait up to ``lock_wait`` s while another session holds the migration lock."""
    start = time.monotonic()
    announced = False
    while lock.is_held_by_other(conn):
        if not announced:
            report("message", {"text": f"a migration run is in progress; waiting up to {lock_wait:g} s for it"})
            announced = True
        if time.monotonic() - start >= lock_wait:
            return time.monotonic() - start, True
        time.sleep(0.2)
    return time.monotonic() - start, False


def verify(mset: MigrationSet, settings: Settings, expected_version: str | None, expected: Catalog,
           lock_wait: float = 60.0, check_structure: bool = True) -> Report:
    """Raise VersionConflict (14), ChecksumMismatch (13) or SchemaDrift (16); return the report if clean."""
    t0 = time.perf_counter()
    rep = Report(expected_version=expected_version, expected_release=mset.release_of(expected_version))
    with connect(settings.dsn, retries=settings.connect_retries, purpose="check") as conn:
        rep.waited_s, rep.migration_running = wait_for_migrations(conn, lock_wait, settings.report)
        rep.waited_s = round(rep.waited_s, 3)
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            has_versions, has_audit = history.tables_exist(conn)
            if not has_versions:
                raise VersionConflict(
                    "this database was never initialised by the RansomEye installer: it has no schema_migrations "
                    "table. Nothing was changed.",
                    hint="Run install.sh to create the schema (a database built by hand from the v1.0.0 bundle "
                         "is adopted by 'migration_runner upgrade').")
            applied = history.applied(conn)
            rep.version = applied[-1].version if applied else None
            rep.release = mset.release_of(rep.version)
            rep.last_run_problems = [r.to_json() for r in history.last_run_problem(conn, rep.migration_running)]
            _check_version(mset, rep, applied)
            for a in applied:
                m = mset.by_version(a.version)
                if m.checksum != a.checksum.strip():
                    raise ChecksumMismatch(a.version, a.checksum.strip(), m.checksum, str(m.up_path))
            if check_structure:
                actual = read_catalog(conn)
                rep.objects_checked = len(actual.objects)
                diffs = compare(expected, actual)
                rep.differences = [d.__dict__ for d in diffs]
                if diffs:
                    rep.elapsed_ms = round((time.perf_counter() - t0) * 1000, 1)
                    raise SchemaDrift(
                        f"the live schema differs from the expected schema of "
                        f"{'release ' + rep.expected_release if rep.expected_release else expected_version} "
                        f"in {len(diffs)} place(s); Core must not start on it.",
                        hint="Find out who changed the schema by hand; restore the expected objects "
                             "(or re-install) before Core starts.",
                        details=rep.differences)
    rep.elapsed_ms = round((time.perf_counter() - t0) * 1000, 1)
    return rep


def _check_version(mset: MigrationSet, rep: Report, applied: list[history.Applied]) -> None:
    have, want = rep.version, rep.expected_version
    want_name = f"{want} (release {rep.expected_release})" if rep.expected_release else str(want)
    shipped = set(mset.versions())
    unknown = [a.version for a in applied if a.version not in shipped]
    if unknown or (have and want and have > want):
        raise VersionConflict(
            f"the database is at {have}{' (release ' + rep.release + ')' if rep.release else ''}, newer than "
            f"{want_name}: this Core is older than its database. Nothing was changed.",
            hint="Install the Core release that matches the database, or restore the database from backup.")
    if have != want:
        raise VersionConflict(
            f"database at {have or 'base (no migration applied)'}"
            f"{' (release ' + rep.release + ')' if rep.release else ''}, Core needs {want_name}: run install.sh "
            "to upgrade. Nothing was changed.",
            hint="Run install.sh of this release; it applies the pending migrations.")
