"""ransomeye-migrate: the command line over the common.db library.

    python3 -m common.db.migration_runner upgrade --migrations-dir schemas/migrations

This module alone turns errors into exit codes (``main`` returns one); every sub-command is a few
lines that call the library.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from . import errors
from .errors import Interrupted, MigrationError

DEFAULT_MIGRATIONS_DIR = os.environ.get("RANSOMEYE_MIGRATIONS_DIR", "schemas/migrations")


def _raise_interrupted(signum, frame):
    # Ignore a second signal while the first one is being cleaned up (rollback + audit row).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2 with one line, like every other error
        raise errors.UsageError(f"{self.prog}: {message}", hint=f"Run '{self.prog} --help'.")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--migrations-dir", default=DEFAULT_MIGRATIONS_DIR,
                        help="directory of migration_*_up.sql/_down.sql files (default: %(default)s)")
    common.add_argument("--dsn", help="libpq connection string WITHOUT password (else RANSOMEYE_DB_DSN, else PG* variables)")
    common.add_argument("--dsn-file", help="file holding the connection string; must be mode 0600")
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    common.add_argument("--connect-retries", type=int, default=5, metavar="N",
                        help="retries with backoff while the server is not up (default: %(default)s)")
    common.add_argument("--lock-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="wait this long for another run's migration lock (default: %(default)s)")
    p = _Parser(prog="ransomeye-migrate", description="RansomEye Core schema migrations.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def timeouts(sp):
        sp.add_argument("--ddl-lock-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="PostgreSQL lock_timeout for each migration's statements (default: %(default)s)")
        sp.add_argument("--statement-timeout", type=float, default=900.0, metavar="SECONDS",
                        help="PostgreSQL statement_timeout for each migration (default: %(default)s)")

    sp = sub.add_parser("upgrade", parents=[common], help="apply pending migrations")
    sp.add_argument("--to", metavar="VERSION", help="migration version (YYYYMMDD_HHMMSS) or release (X.Y.Z)")
    mode = sp.add_mutually_exclusive_group()
    mode.add_argument("--atomic", dest="atomic", action="store_true", default=False,
                      help="all pending migrations and the structure check in ONE transaction")
    mode.add_argument("--no-atomic", dest="atomic", action="store_false",
                      help="one transaction per migration (the default)")
    timeouts(sp)
    sp = sub.add_parser("downgrade", parents=[common], help="revert migrations, newest first")
    sp.add_argument("--to", metavar="VERSION", required=True, help="version, release, or 'base' for an empty schema")
    timeouts(sp)
    sub.add_parser("status", parents=[common], help="schema version, release, pending migrations")
    sp = sub.add_parser("history", parents=[common], help="the audit trail of every attempt")
    sp.add_argument("--limit", type=int, default=None, help="only the newest N attempts")
    sp = sub.add_parser("verify", parents=[common],
                        help="checksums, version and structure against the expected schema (exit 13/14/16)")
    sp.add_argument("--release", help="release to verify against (default: the newest this set ships)")
    sp.add_argument("--roundtrip", action="store_true",
                    help="instead: take every migration through up, down, up on a scratch database created on "
                         "the server the connection points at (needs CREATEDB) and compare the catalogs")
    sp.add_argument("--lock-wait", type=float, default=60.0, metavar="SECONDS",
                    help="wait this long for a running migration before deciding (default: %(default)s)")
    sp = sub.add_parser("lint", parents=[common],
                        help="check every migration with PostgreSQL's own parser (exit 15 on errors)")
    sp.add_argument("--strict", action="store_true", help="treat warnings as errors")
    sp.add_argument("--record", action="store_true",
                    help="write lint-record.json into the migrations directory: the migrations without an error "
                         "finding, so an upgrade need not lint them again (build/build.sh does this)")
    sp = sub.add_parser("baseline", parents=[common],
                        help="record a database built by hand from a release's bundle as being at that release")
    sp.add_argument("--version", required=True, metavar="RELEASE", help="the release (X.Y.Z) it was built from")
    sp = sub.add_parser("snapshot", parents=[common],
                        help="regenerate schemas/snapshots/<release>.schema on a scratch database")
    sp.add_argument("--write", action="store_true", help="write changed snapshots (default: only report)")
    return p


def _settings(args, out):
    from .connection import resolve_dsn
    from .runner import Settings
    s = Settings(dsn=resolve_dsn(args.dsn, args.dsn_file), lock_timeout=args.lock_timeout,
                 connect_retries=args.connect_retries, report=out.event)
    if hasattr(args, "ddl_lock_timeout"):
        s.ddl_lock_timeout, s.statement_timeout = args.ddl_lock_timeout, args.statement_timeout
    return s


def _load(args):
    from .migrations import load_migrations
    return load_migrations(args.migrations_dir)


def cmd_upgrade(args, out) -> int:
    from . import runner
    mset = _load(args)
    result = runner.upgrade(mset, _settings(args, out), to=args.to, atomic=args.atomic)
    out.stop_progress()
    out.say(f"database at {result.after or 'base'}"
            f"{' (release ' + mset.release_of(result.after) + ')' if mset.release_of(result.after) else ''}", "green")
    out.document(result.to_json(mset))
    return errors.OK


def cmd_downgrade(args, out) -> int:
    from . import runner
    mset = _load(args)
    result = runner.downgrade(mset, _settings(args, out), to=args.to)
    out.stop_progress()
    out.say(f"database at {result.after or 'base'}", "green")
    out.document(result.to_json(mset))
    return errors.OK


def cmd_status(args, out) -> int:
    from . import runner
    mset = _load(args)
    r = runner.status(mset, _settings(args, out))
    x = r.extra
    out.line(f"schema version: {x['schema_version'] or 'base'}"
             f"{' (release ' + x['release'] + ')' if x['release'] else ''}"
             f"{'' if x['initialised'] else ' - never initialised by the runner'}")
    out.line(f"this release:   {x['shipped_latest'] or '-'}"
             f"{' (release ' + x['shipped_release'] + ')' if x['shipped_release'] else ''}; {x['pending']} pending")
    if x["migration_running"]:
        out.line("a migration run is in progress right now (the schema lock is held)")
    for p in x["last_run_problems"]:
        out.line(f"last run: {p['direction']} {p['version']} {p['status']}: {p['error_message'] or ''}")
    out.table("migrations", ["version", "description", "release", "state", "applied at"],
              [[m["version"], m["description"], m["release"], m["state"], m["applied_at"]] for m in x["migrations"]])
    out.document(r.to_json(mset))
    return errors.OK


def cmd_history(args, out) -> int:
    from . import runner
    mset = _load(args)
    r = runner.history_of(mset, _settings(args, out), args.limit)
    out.table("migration attempts", ["id", "started", "version", "dir", "mode", "status", "ms", "by", "error"],
              [[a["id"], a["started_at"][:19], a["version"], a["direction"], a["mode"], a["status"],
                a["duration_ms"], f"{a['os_user']}@{a['client_host']}", a["error_message"]] for a in r.extra["attempts"]])
    out.document(r.to_json(mset))
    return errors.OK


def print_verify_report(out, rep) -> None:
    for p in rep.last_run_problems:
        out.say(f"warning: the last migration run did not finish cleanly: {p['direction']} {p['version']} "
                f"{p['description']} is '{p['status']}'"
                f"{': ' + p['error_message'] if p['error_message'] else ''}", "yellow")
    if rep.migration_running:
        out.say("warning: a migration run still holds the schema lock", "yellow")
    out.say(f"schema ok: {'release ' + rep.expected_release + ', ' if rep.expected_release else ''}"
            f"version {rep.version}, {rep.objects_checked} objects match the expected schema "
            f"({rep.elapsed_ms:.0f} ms)", "green")
    out.document({"ok": True, **rep.to_json()})


def cmd_verify(args, out) -> int:
    from . import snapshots, verify
    mset = _load(args)
    if args.roundtrip:
        from .roundtrip import roundtrip
        results = roundtrip(mset, _settings(args, out).dsn, out.event)
        out.say(f"round trip ok: {len(results)} migration(s) restore their catalog exactly", "green")
        out.document({"ok": True, "roundtrip": results})
        return errors.OK
    release = args.release or mset.latest_release
    if release is not None and release not in mset.releases:
        raise errors.UsageError(f"--release {release}: not in {mset.directory}/releases.toml.")
    version = mset.releases[release] if release else mset.latest
    rep = verify.verify(mset, _settings(args, out), version, snapshots.expected_for(mset, version),
                        lock_wait=args.lock_wait)
    print_verify_report(out, rep)
    return errors.OK


def cmd_snapshot(args, out) -> int:
    from . import snapshots
    mset = _load(args)
    s = _settings(args, out)
    results = snapshots.write_all(mset, s.dsn, check_only=not args.write)
    stale = [r for r in results if r[2]]
    for release, path, changed in results:
        out.say(f"{path}: {'written' if changed and args.write else 'stale' if changed else 'up to date'}")
    out.document({"snapshots": [{"release": r, "path": str(p), "changed": c} for r, p, c in results],
                  "written": bool(args.write)})
    if stale and not args.write:
        raise errors.SchemaDrift(f"{len(stale)} snapshot(s) are stale: the migrations changed since they were "
                                 "generated.", hint="Run 'snapshot --write' and commit the result.")
    return errors.OK


def cmd_baseline(args, out) -> int:
    from . import runner
    mset = _load(args)
    r = runner.record_baseline(mset, _settings(args, out), args.version)
    out.say(f"database recorded at {r.after} (release {r.extra['baseline']['release']})", "green")
    out.document(r.to_json(mset))
    return errors.OK


def cmd_lint(args, out) -> int:
    from .lint import lint_set
    mset = _load(args)
    findings = lint_set(mset, strict=args.strict)
    errors_ = [f for f in findings if f.severity == "error"]
    for f in findings:
        out.say(f.format(), "red" if f.severity == "error" else "yellow")
    out.say(f"{len(mset.migrations)} migration(s) checked: {len(errors_)} error(s), "
            f"{len(findings) - len(errors_)} warning(s)", "green" if not findings else "")
    doc = {"ok": not errors_, "strict": args.strict, "migrations": len(mset.migrations),
           "findings": [f.to_json() for f in findings]}
    if args.record:
        from . import lintrecord
        try:
            path, cleared = lintrecord.write(mset.directory, mset.migrations, findings)
        except OSError as exc:
            raise errors.UsageError(f"could not write the lint record into {mset.directory}: {exc.strerror or exc}",
                                    hint="Run it where the migrations directory is writable.") from None
        out.say(f"recorded {cleared} of {len(mset.migrations)} migration(s) as clean in {path}")
        doc["record"] = {"path": str(path), "clean": cleared}
    out.document(doc)
    return errors.INVALID_SET if errors_ else errors.OK


COMMANDS = {"lint": cmd_lint, "baseline": cmd_baseline, "verify": cmd_verify, "snapshot": cmd_snapshot, "upgrade": cmd_upgrade, "downgrade": cmd_downgrade, "status": cmd_status, "history": cmd_history}


def run_guarded(out, fn) -> int:
    """The one place an exception becomes an exit code (shared with core.runtime)."""
    install_signal_handlers()
    try:
        return fn()
    except MigrationError as exc:
        out.stop_progress()
        if exc.details and isinstance(exc, errors.SchemaDrift):
            out.table("differences", ["object", "kind", "expected", "actual"],
                      [[d["object"], d["kind"], d["expected"], d["actual"]] for d in exc.details])
        out.error(exc.message, exc.hint)
        out.document(exc.to_json())
        return exc.exit_code
    except Interrupted as exc:
        out.stop_progress()
        out.error(f"{exc.message}; the in-flight migration was rolled back and recorded as interrupted.",
                  "Run the same command again to continue from the last good version.")
        out.document({"error": "interrupted", "exit_code": exc.exit_code, "message": exc.message})
        return exc.exit_code
    except KeyboardInterrupt:
        out.stop_progress()
        out.error("interrupted")
        return errors.INTERRUPTED_SIGINT
    except BrokenPipeError:
        sys.stderr.close()
        return errors.INTERNAL
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else errors.OK
    except Exception as exc:  # a bug: one line unless --debug
        out.stop_progress()
        if out.debug:
            import traceback
            traceback.print_exc()
        out.error(f"internal error: {type(exc).__name__}: {exc}", "Run again with --debug and report the traceback.")
        out.document({"error": "internal-error", "exit_code": errors.INTERNAL, "message": str(exc)})
        return errors.INTERNAL


def main(argv: list[str] | None = None) -> int:
    from .output import Output
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Output(json_mode="--json" in argv, debug="--debug" in argv)

    def go() -> int:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, out)
    return run_guarded(out, go)


def exit_process(code: int) -> None:
    """End the process with ``code`` once stdout and stderr are flushed, skipping the interpreter's
    teardown. By now every connection is closed and every file written; what is left is freeing
    modules and the destructors of libpq's shared libraries (OpenSSL, Kerberos, LDAP), which took
    35 ms of a 0.18 s no-op run here (docs/PERFORMANCE.md). A flush that fails (the reader went
    away) turns success into exit 1, as the interpreter would."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a broken pipe, or a stream already closed after one
            code = code or errors.INTERNAL
    os._exit(code)


if __name__ == "__main__":
    exit_process(main())
