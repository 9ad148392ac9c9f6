"""Core's startup gate: refuse, fast, any database that is not exactly the schema this Core was
built for.

    python3 -m core.runtime check [--dsn …] [--migrations-dir schemas/migrations] [--json]

Core's startup calls ``startup_check()``; it raises a ``MigrationError`` (exit codes from the
shared table: 10 cannot connect, 13 changed migration, 14 version mismatch, 16 structure differs)
and Core must not start when it does.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The release this Core was built for is the newest release named in the releases.toml that
# ships with it (schemas/migrations/ of the same release bundle): code and schema travel together.

_DEFAULT_DIR = Path(__file__).resolve().parent.parent / "schemas" / "migrations"


def default_migrations_dir() -> str:
    return os.environ.get("RANSOMEYE_MIGRATIONS_DIR") or str(_DEFAULT_DIR)


def startup_check(dsn: str | None = None, migrations_dir: str | None = None, lock_wait: float = 60.0,
                  connect_retries: int = 5, report=None, expect_release: str | None = None):
    """Verify version, checksums and structure; return the report or raise MigrationError."""
    from common.db import errors
    from common.db.connection import resolve_dsn
    from common.db.migrations import load_migrations
    from common.db.runner import Settings
    from common.db.snapshots import expected_for
    from common.db.verify import verify

    mset = load_migrations(migrations_dir or default_migrations_dir())
    release = expect_release or (list(mset.releases)[-1] if mset.releases else None)
    if release not in mset.releases:
        raise errors.InvalidMigrationSet(
            f"no release {release or ''} in {mset.directory}/releases.toml: this Core does not know which schema "
            "it needs.", hint="Point --migrations-dir at the schemas/migrations shipped with this Core.")
    version = mset.releases[release]
    settings = Settings(dsn=dsn if dsn is not None else resolve_dsn(), connect_retries=connect_retries)
    if report is not None:
        settings.report = report
    return verify(mset, settings, version, expected_for(mset, version), lock_wait=lock_wait)


def build_parser() -> argparse.ArgumentParser:
    from common.db.migration_runner import _Parser
    p = _Parser(prog="core.runtime", description="RansomEye Core startup checks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sp = sub.add_parser("check", help="is the database exactly the schema of this Core's release?")
    sp.add_argument("--expect-release", metavar="X.Y.Z",
                    help="the release to check for (default: the newest in the shipped releases.toml)")
    sp.add_argument("--dsn", help="libpq connection string WITHOUT password (else RANSOMEYE_DB_DSN, else PG*)")
    sp.add_argument("--dsn-file", help="file holding the connection string; must be mode 0600")
    sp.add_argument("--migrations-dir", default=None, help="the schemas/migrations shipped with this Core")
    sp.add_argument("--lock-wait", type=float, default=60.0, metavar="SECONDS",
                    help="wait this long for a running migration before deciding (default: %(default)s)")
    sp.add_argument("--connect-retries", type=int, default=5, metavar="N")
    sp.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    sp.add_argument("--debug", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from common.db import errors
    from common.db.connection import resolve_dsn
    from common.db.migration_runner import print_verify_report, run_guarded
    from common.db.output import Output

    argv = list(sys.argv[1:] if argv is None else argv)
    out = Output(json_mode="--json" in argv, debug="--debug" in argv)

    def go() -> int:
        args = build_parser().parse_args(argv)
        dsn = resolve_dsn(args.dsn, args.dsn_file)
        rep = startup_check(dsn, args.migrations_dir, args.lock_wait, args.connect_retries, report=out.event,
                            expect_release=args.expect_release)
        print_verify_report(out, rep)
        return errors.OK
    return run_guarded(out, go)


if __name__ == "__main__":
    from common.db.migration_runner import exit_process
    exit_process(main())
