"""Plan and apply migrations. The only module that opens migration transactions.

Every verb reads the same way: connect, take the lock, read the version, refuse a bad state,
run. Progress goes to an injected ``report(event, data)`` callback; the library never prints and
never exits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg

from . import history, lock
from .connection import connect, ensure_writable
from .errors import (ChecksumMismatch, MigrationError, MigrationFailed, VersionConflict)
from .migrations import Migration, MigrationSet

Report = Callable[[str, dict], None]


def _quiet(event: str, data: dict) -> None:
    pass


@dataclass
class Settings:
    dsn: str = ""
    lock_timeout: float = 60.0           # seconds to wait for the migration lock
    ddl_lock_timeout: float = 10.0       # PostgreSQL lock_timeout inside each migration
    statement_timeout: float = 900.0     # PostgreSQL statement_timeout inside each migration
    connect_retries: int = 5
    report: Report = field(default=_quiet)


@dataclass
class Outcome:
    """What a verb did, for the CLI to render and --json to dump."""
    command: str
    before: str | None
    after: str | None
    steps: list[dict] = field(default_factory=list)
    interrupted: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self, mset: MigrationSet) -> dict:
        return {"command": self.command,
                "version_before": self.before, "release_before": mset.release_of(self.before),
                "version_after": self.after, "release_after": mset.release_of(self.after),
                "steps": self.steps, "interrupted_attempts": self.interrupted, **self.extra}


# ---------------------------------------------------------------------------------------------
# Session: one connection, one lock, for a whole run
# ---------------------------------------------------------------------------------------------
class Session:
    def __init__(self, settings: Settings, writable: bool = True, purpose: str = "") -> None:
        self.settings = settings
        self.writable = writable
        self.purpose = purpose
        self.conn: psycopg.Connection | None = None
        self.locked = False

    def __enter__(self) -> "Session":
        s = self.settings
        self.conn = connect(s.dsn, retries=s.connect_retries, purpose=self.purpose)
        try:
            if self.writable:
                ensure_writable(self.conn)
                # Bookkeeping commits (audit 'started' rows) need no WAL flush of their own: every
                # migration transaction turns synchronous_commit back on (see migration_prefix).
                self.conn.execute("SET synchronous_commit = off")
                waited = lock.acquire(self.conn, s.lock_timeout)
                self.locked = True
                if waited > 0.5:
                    s.report("lock_acquired", {"waited_s": round(waited, 2)})
        except BaseException:
            self.conn.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        # Closing the session releases the advisory lock; an explicit unlock failing must not
        # hide the error that is already on its way out.
        try:
            if self.locked and not self.conn.closed:
                lock.release(self.conn)
        except psycopg.Error:
            pass
        finally:
            self.conn.close()


def check_applied_against_set(mset: MigrationSet, applied: list[history.Applied]) -> None:
    """Refuse a database this set cannot safely move: changed files (13), unknown versions (14)."""
    shipped = {m.version: m for m in mset.migrations}
    for a in applied:
        m = shipped.get(a.version)
        if m is None:
            raise VersionConflict(
                f"the database has migration {a.version} ({a.description}), which this release does not ship: "
                f"the database is newer than, or diverged from, this release. Nothing was changed.",
                hint="Use the installer of the release that applied it, or the matching migrations directory.")
        if m.checksum != a.checksum.strip():
            raise ChecksumMismatch(a.version, a.checksum.strip(), m.checksum, str(m.up_path))


def read_state(conn: psycopg.Connection, mset: MigrationSet, settings: Settings) -> tuple[list, list[dict]]:
    """The beats every writing verb starts with, under the lock: tracking tables, attempts a dead run
    left open (closed as interrupted and reported), the applied versions checked against the set."""
    history.ensure_tables(conn)
    interrupted = [r.to_json() for r in history.mark_interrupted(conn)]
    if interrupted:
        settings.report("interrupted_attempts", {"attempts": interrupted})
    applied = history.applied(conn)
    check_applied_against_set(mset, applied)
    return applied, interrupted


def pending(mset: MigrationSet, applied: list[history.Applied], target: str | None) -> list[Migration]:
    done = {a.version for a in applied}
    newest = max(done) if done else None
    todo = [m for m in mset.migrations if m.version not in done and (target is None or m.version <= target)]
    late = [m for m in todo if newest and m.version < newest]
    if late:
        raise VersionConflict(
            f"migration {late[0].version} ({late[0].description}) is older than the newest applied "
            f"migration {newest} but was never applied (out of order). Nothing was changed.",
            hint="Give the new migration a timestamp later than every applied one.")
    return todo


def _position(sql: str, pos: int | None) -> str:
    if not pos:
        return ""
    before = sql[: pos - 1]
    line = before.count("\n") + 1
    col = pos - (before.rfind("\n") + 1)
    return f" at line {line}, column {col}"


def describe_error(m: Migration, direction: str, exc: psycopg.Error, shift: int = 0) -> tuple[str, str | None]:
    sql = m.up_sql if direction == "up" else m.down_sql
    diag = exc.diag
    pos = int(diag.statement_position) - shift if diag.statement_position else None
    where = _position(sql, pos if pos and pos > 0 else None)
    primary = diag.message_primary or (str(exc).strip().splitlines() or ["error"])[0]
    state = exc.sqlstate
    text = f"{primary}{f' ({state})' if state else ''}{where}"
    if diag.message_hint:
        text += f"; hint: {diag.message_hint.strip()}"
    if diag.context:
        text += f"; context: {diag.context.strip().splitlines()[0]}"
    return text, state


def migration_prefix(s: Settings) -> str:
    """Sent in the same round trip as the migration's SQL; positions in errors are shifted back."""
    return (f"SET LOCAL lock_timeout = {int(s.ddl_lock_timeout * 1000)}; "
            f"SET LOCAL statement_timeout = {int(s.statement_timeout * 1000)}; "
            "SET LOCAL synchronous_commit = on;\n")


def apply_one(sess: Session, audit: history.Audit, m: Migration, direction: str) -> dict:
    """Run one migration and its history change in one transaction, audited before and after, in
    ONE round trip (see ``Audit.framing``): the 'started' row commits first, on its own."""
    conn, s = sess.conn, sess.settings
    sql = m.up_sql if direction == "up" else m.down_sql
    checksum = m.checksum if direction == "up" else m.down_checksum
    head, tail = audit.framing(m.version, m.description, direction, checksum, m.checksum, migration_prefix(s))
    s.report("apply_start", {"version": m.version, "description": m.description, "direction": direction})
    t0 = time.perf_counter()
    try:
        conn.execute(head + sql + tail)
    except KeyboardInterrupt as exc:  # Interrupted too: psycopg cancelled the statement
        _finish_after_failure(sess, audit, m, direction, checksum, "interrupted", t0,
                              getattr(exc, "message", "interrupted"), None)
        raise
    except psycopg.Error as exc:
        text, state = describe_error(m, direction, exc, shift=len(head))
        lost = conn.closed or conn.broken
        _finish_after_failure(sess, audit, m, direction, checksum, "failed", t0, text, state)
        version_now, applied_now = _safe_state(sess)
        if lost and applied_now is not None and ((direction == "up") == (m.version in applied_now)):
            raise MigrationFailed(
                f"the connection to the server was lost while migration {m.version} ({m.description}, {direction}) "
                f"was committing, and the server did commit it: the database is at "
                f"{version_now or 'base (no migration applied)'}. The rest of the run did not happen.",
                hint="Run the command again to continue from there.",
                details=[{"version": m.version, "direction": direction, "error": text, "committed": True}]) from None
        raise MigrationFailed(
            f"migration {m.version} ({m.description}, {direction}) failed"
            f"{' (the connection to the server was lost)' if lost else ''}: {text}. "
            f"The database is still at {version_now or 'base (no migration applied)'}; nothing from this "
            f"migration was kept.",
            hint="Fix the migration (or the data it trips over) and run the command again; it continues "
                 "from the last good version.",
            details=[{"version": m.version, "direction": direction, "error": text, "sqlstate": state}]) from None
    ms = int((time.perf_counter() - t0) * 1000)
    s.report("apply_done", {"version": m.version, "description": m.description, "direction": direction, "ms": ms})
    return {"version": m.version, "description": m.description, "direction": direction, "status": "succeeded",
            "duration_ms": ms}


def _finish_after_failure(sess: Session, audit: history.Audit, m: Migration, direction: str, checksum: str | None,
                          status: str, t0: float, text: str, state: str | None) -> None:
    ms = int((time.perf_counter() - t0) * 1000)
    conn = sess.conn
    try:
        if conn.closed or conn.broken:
            # The server went away mid-migration: record the outcome on a new connection if we can.
            with connect(sess.settings.dsn, retries=2, purpose="audit") as c2:
                audit.finish_attempt(m.version, m.description, direction, checksum, status, ms, text, state, conn=c2)
        else:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")  # the migration's aborted transaction
            audit.finish_attempt(m.version, m.description, direction, checksum, status, ms, text, state)
    except (psycopg.Error, MigrationError):
        pass  # the attempt stays 'started' and the next run reports it as interrupted


def _safe_state(sess: Session) -> tuple[str | None, set[str] | None]:
    """The version and applied set as the server has them now (a new connection if the old one died)."""
    try:
        if not sess.conn.closed and not sess.conn.broken:
            applied = {a.version for a in history.applied(sess.conn)}
        else:
            with connect(sess.settings.dsn, retries=3, purpose="status") as c2:
                applied = {a.version for a in history.applied(c2)}
        return (max(applied) if applied else None), applied
    except (psycopg.Error, MigrationError):
        return "unknown (could not read it back)", None


# ---------------------------------------------------------------------------------------------
# Verbs
# ---------------------------------------------------------------------------------------------
def refuse_unsafe(mset: MigrationSet, plan: list[Migration], atomic: bool) -> None:
    """The lint's errors stop an upgrade before it starts (exit 15).

    Each planned migration is judged as ``lint`` judges it: in the context of every migration
    before it in the set (the database is at the one before the plan). A lint record that vouches
    for every planned file spares the parse (lintrecord.py); the atomic release check always runs.
    """
    if not plan:
        return
    from . import lintrecord
    from .errors import InvalidMigrationSet
    found = []
    if not lintrecord.all_vouched(mset.directory, plan):
        from .lint import lint_set
        upto = mset.migrations[: mset.migrations.index(plan[-1]) + 1]
        planned = {m.version for m in plan}
        applied_files = {str(p) for m in upto if m.version not in planned for p in (m.up_path, m.down_path)}
        found = [f for f in lint_set(MigrationSet(mset.directory, upto, {}))
                 if f.severity == "error" and f.file not in applied_files]  # the plan's, or no file's
    if atomic:
        from .lint import lint_release
        earlier = [m for m in mset.migrations if m.version < plan[0].version]
        found += [f for f in lint_release(plan, earlier=earlier) if f.severity == "error"]
    if found:
        raise InvalidMigrationSet(
            f"{len(found)} migration(s) cannot run safely: {found[0].format()} Nothing was applied.",
            hint="Run 'migration_runner lint' for every finding and what to do instead.",
            details=[f.to_json() for f in found])


def upgrade(mset: MigrationSet, settings: Settings, to: str | None = None, atomic: bool = False) -> Outcome:
    target = mset.resolve_target(to)
    with Session(settings, purpose="upgrade") as sess:
        conn = sess.conn
        adopted = None
        if not history.tables_exist(conn)[0]:
            from . import baseline
            if baseline.has_user_objects(conn):
                adopted = baseline.adopt(conn, mset, None, settings.report)
        applied, interrupted = read_state(conn, mset, settings)
        before = applied[-1].version if applied else None
        if to is not None and target is not None and before and target < before:
            raise VersionConflict(f"--to {to} is older than the database's version {before}; nothing was changed.",
                                  hint="Use 'downgrade --to' to go back.")
        plan = pending(mset, applied, target)
        refuse_unsafe(mset, plan, atomic)
        outcome = Outcome("upgrade", before, before, interrupted=interrupted)
        outcome.extra["mode"] = "atomic" if atomic else "per-migration"
        outcome.extra["adopted"] = adopted
        settings.report("plan", {"count": len(plan), "direction": "up", "from": before, "to": target})
        if atomic and plan:
            apply_release(sess, mset, plan, target, outcome)
            return outcome
        audit = history.Audit(conn)
        for m in plan:
            outcome.steps.append(apply_one(sess, audit, m, "up"))
            outcome.after = m.version
        return outcome


def apply_release(sess: Session, mset: MigrationSet, plan: list[Migration], target: str, outcome: Outcome) -> None:
    """All pending migrations, their history rows and the structure check in ONE transaction.

    The started rows go through a second connection and commit on their own, so a crash still
    leaves them visible; the outcomes are written inside the transaction on success and after the
    rollback otherwise. Nothing of the release is kept unless the catalog, read inside the
    transaction before COMMIT, equals the target release's expected schema.
    """
    from .catalog import read_catalog
    from .errors import SchemaDrift
    from .schemadiff import compare
    from .snapshots import expected_for

    conn, s = sess.conn, sess.settings
    expected = expected_for(mset, target)  # refuse before anything starts if it is missing
    started: list[tuple[int, Migration]] = []
    current: Migration | None = None
    t_release = time.perf_counter()
    with connect(s.dsn, retries=s.connect_retries, purpose="audit") as aconn:
        aconn.execute("SET synchronous_commit = off")  # flushed by the release's own COMMIT
        audit = history.Audit(aconn, mode="atomic")
        try:
            with conn.transaction():
                conn.execute(migration_prefix(s))
                for m in plan:
                    current = m
                    started.append((audit.started(m.version, m.description, "up", m.checksum), m))
                    s.report("apply_start", {"version": m.version, "description": m.description, "direction": "up"})
                    t0 = time.perf_counter()
                    conn.execute(m.up_sql)
                    ms = int((time.perf_counter() - t0) * 1000)
                    history.record_applied(conn, m.version, m.description, m.checksum, ms)
                    outcome.steps.append({"version": m.version, "description": m.description, "direction": "up",
                                          "status": "applied, not yet committed", "duration_ms": ms})
                    s.report("apply_done", {"version": m.version, "description": m.description, "direction": "up",
                                            "ms": ms})
                current = None
                t0 = time.perf_counter()
                actual = read_catalog(conn)
                diffs = compare(expected, actual)
                check = {"release": mset.release_of(target), "objects": len(actual.objects),
                         "differences": [d.__dict__ for d in diffs], "ms": int((time.perf_counter() - t0) * 1000)}
                outcome.extra["structure_check"] = check
                s.report("structure_checked", check)
                if diffs:
                    raise SchemaDrift(
                        f"the release's migrations ran, but the result differs from the expected schema of release "
                        f"{mset.release_of(target)} in {len(diffs)} place(s); the whole release was rolled back and "
                        f"the database is still at {outcome.before or 'base'}.",
                        hint="Fix the migrations or regenerate the snapshot (snapshot --write) if the change is "
                             "intended.", details=check["differences"])
                for (aid, m), step in zip(started, outcome.steps):
                    audit.finish(aid, "succeeded", step["duration_ms"], conn=conn)
                    step["status"] = "succeeded"
        except KeyboardInterrupt as exc:
            _close_release(audit, started, current, "interrupted", getattr(exc, "message", "interrupted"), None)
            raise
        except SchemaDrift as exc:
            _close_release(audit, started, None, "rolled_back", exc.message, None)
            raise
        except psycopg.Error as exc:
            text, state = describe_error(current, "up", exc) if current else (str(exc).strip(), exc.sqlstate)
            _close_release(audit, started, current, "failed", text, state)
            lost = " (the connection to the server was lost)" if conn.closed or conn.broken else ""
            version_now, applied_now = _safe_state(sess)
            if lost and current is None and applied_now is not None and plan[-1].version in applied_now:
                raise MigrationFailed(
                    f"the connection to the server was lost while the release was committing, and the server did "
                    f"commit it: the database is at {version_now}.",
                    hint="Run Core's check (or 'verify') to confirm, then carry on.",
                    details=[{"version": plan[-1].version, "error": text, "committed": True}]) from None
            raise MigrationFailed(
                f"release upgrade failed{lost} in migration {current.version if current else '(commit)'}"
                f"{' (' + current.description + ')' if current else ''}: {text}. The whole release was rolled "
                f"back: the database is still at {outcome.before or 'base (no migration applied)'}, no down "
                "migration was run.",
                hint="Fix the migration and run the upgrade again.",
                details=[{"version": current.version if current else None, "error": text, "sqlstate": state}]) from None
    outcome.after = plan[-1].version
    outcome.extra["release_ms"] = int((time.perf_counter() - t_release) * 1000)


def _close_release(audit: history.Audit, started: list[tuple[int, Migration]], current: Migration | None,
                   status: str, text: str, state: str | None) -> None:
    """After the release's transaction rolled back: the failing migration gets ``status``, the
    others 'rolled_back' with the reason."""
    try:
        for aid, m in started:
            if current is not None and m.version == current.version:
                audit.finish(aid, status, None, text, state)
            else:
                audit.finish(aid, "rolled_back", None,
                             f"rolled back with the rest of the release: {text}" if current is not None else text,
                             None if current is not None else state)
    except (psycopg.Error, MigrationError):
        pass  # left 'started': the next run reports them as interrupted


def downgrade(mset: MigrationSet, settings: Settings, to: str) -> Outcome:
    target = mset.resolve_target(to)
    with Session(settings, purpose="downgrade") as sess:
        conn = sess.conn
        applied, interrupted = read_state(conn, mset, settings)
        before = applied[-1].version if applied else None
        if target is not None and (before is None or target > before):
            raise VersionConflict(f"--to {to} is newer than the database's version {before or 'base'}; "
                                  "nothing was changed.", hint="Use 'upgrade --to' to go forward.")
        if target is not None and target not in {a.version for a in applied}:
            raise VersionConflict(f"--to {to}: version {target} is not applied in this database; nothing was changed.")
        plan = [mset.by_version(a.version) for a in reversed(applied) if target is None or a.version > target]
        outcome = Outcome("downgrade", before, before, interrupted=interrupted)
        settings.report("plan", {"count": len(plan), "direction": "down", "from": before, "to": target})
        audit = history.Audit(conn)
        remaining = [a.version for a in applied]
        for m in plan:
            outcome.steps.append(apply_one(sess, audit, m, "down"))
            remaining.remove(m.version)
            outcome.after = remaining[-1] if remaining else None
        return outcome


def record_baseline(mset: MigrationSet, settings: Settings, version: str) -> Outcome:
    """``baseline --version``: record a hand-built database as being at a release, if it matches."""
    from . import baseline
    release = version if version in mset.releases else mset.release_of(version)
    if release is None:
        from .errors import UsageError
        raise UsageError(f"--version {version}: not a release (or a release's schema version) in "
                         f"{mset.directory}/releases.toml; only a release has an expected schema to match.")
    with Session(settings, purpose="baseline") as sess:
        done = baseline.adopt(sess.conn, mset, release, settings.report)
    out = Outcome("baseline", None, done["version"])
    out.extra["baseline"] = done
    return out


def status(mset: MigrationSet, settings: Settings) -> Outcome:
    with Session(settings, writable=False, purpose="status") as sess:
        conn = sess.conn
        has_table = history.tables_exist(conn)[0]
        applied = history.applied(conn)
        lock_held = lock.is_held_by_other(conn)
        problems = [r.to_json() for r in history.last_run_problem(conn, lock_held)]
    by_version = {a.version: a for a in applied}
    rows = []
    for m in mset.migrations:
        a = by_version.pop(m.version, None)
        state = "pending"
        if a:
            state = "applied" if a.checksum.strip() == m.checksum else "changed"
        rows.append({"version": m.version, "description": m.description, "state": state,
                     "release": mset.release_of(m.version),
                     "applied_at": a.applied_at.isoformat() if a else None})
    for a in by_version.values():
        rows.append({"version": a.version, "description": a.description, "state": "unknown",
                     "release": None, "applied_at": a.applied_at.isoformat()})
    rows.sort(key=lambda r: r["version"])
    current = applied[-1].version if applied else None
    out = Outcome("status", current, current)
    out.extra = {"initialised": has_table, "schema_version": current,
                 "release": mset.release_of(current), "shipped_latest": mset.latest,
                 "shipped_release": mset.latest_release,
                 "pending": sum(r["state"] == "pending" for r in rows),
                 "migration_running": lock_held, "last_run_problems": problems, "migrations": rows}
    return out


def history_of(mset: MigrationSet, settings: Settings, limit: int | None = None) -> Outcome:
    with Session(settings, writable=False, purpose="history") as sess:
        rows = [r.to_json() for r in history.audit_rows(sess.conn, limit)]
        current = history.current_version(sess.conn) if history.tables_exist(sess.conn)[0] else None
    out = Outcome("history", current, current)
    out.extra = {"attempts": rows}
    return out
