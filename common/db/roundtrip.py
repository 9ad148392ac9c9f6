"""``verify --roundtrip``: every migration through up, down, up on a scratch database.

A down must restore exactly the catalog from before its up, and the second up must give exactly
the catalog of the first. The runner's own tables are left out of the comparison (they appear
with the first migration and stay).
"""
from __future__ import annotations

import psycopg

from . import runner
from .baseline import without_runner_tables
from .catalog import Catalog, read_catalog
from .errors import SchemaDrift
from .migrations import MigrationSet
from .schemadiff import compare
from .snapshots import ScratchDatabase


def _read(dsn: str) -> Catalog:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return without_runner_tables(read_catalog(conn))


def roundtrip(mset: MigrationSet, admin_dsn: str, report=lambda e, d: None) -> list[dict]:
    results = []
    with ScratchDatabase(admin_dsn) as scratch:
        settings = runner.Settings(dsn=scratch.dsn)
        previous = "base"
        for m in mset.migrations:
            before = _read(scratch.dsn)
            runner.upgrade(mset, settings, to=m.version)
            after_up = _read(scratch.dsn)
            runner.downgrade(mset, settings, to=previous)
            problems = [{"phase": "down does not restore the catalog from before the up", **d.__dict__}
                        for d in compare(before, _read(scratch.dsn))]
            if not problems:
                runner.upgrade(mset, settings, to=m.version)
                problems = [{"phase": "second up differs from the first", **d.__dict__}
                            for d in compare(after_up, _read(scratch.dsn))]
            results.append({"version": m.version, "description": m.description, "ok": not problems,
                            "problems": problems})
            report("message", {"text": f"round trip {m.version} {m.description}: "
                                       f"{'ok' if not problems else str(len(problems)) + ' difference(s)'}"})
            if problems:
                raise SchemaDrift(
                    f"migration {m.version} ({m.description}) fails the round trip: "
                    f"{problems[0]['phase']} ({len(problems)} difference(s), first: {problems[0]['object']}).",
                    hint="Fix its down migration so that it restores exactly the structure before the up.",
                    details=[{"object": p["object"], "kind": p["kind"], "expected": p["expected"],
                              "actual": p["actual"], "phase": p["phase"]} for p in problems])
            previous = m.version
    return results
