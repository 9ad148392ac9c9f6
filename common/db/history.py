"""The runner's own tables: ``schema_migrations`` (the schema version) and
``schema_migration_audit`` (one row per attempt, failures and interruptions included).

The database's schema version is ``SELECT max(version) FROM schema_migrations``.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from .connection import RUNNER_VERSION, client_identity

MIGRATIONS_TABLE = "schema_migrations"
# The columns of a 'started' audit row, in the order both ways of writing one give them.
_STARTED_COLS = ("run_id, version, description, direction, mode, status, checksum, os_user, client_host, "
                 "runner_version")
AUDIT_TABLE = "schema_migration_audit"

DDL = r"""
CREATE TABLE IF NOT EXISTS schema_migrations (
    version         varchar(15) PRIMARY KEY CONSTRAINT schema_migrations_version_format
                        CHECK (version ~ '^[0-9]{8}_[0-9]{6}$'),
    description     text        NOT NULL,
    checksum        char(64)    NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    applied_by      text        NOT NULL DEFAULT current_user,
    execution_ms    integer     NOT NULL CONSTRAINT schema_migrations_execution_ms_nonneg CHECK (execution_ms >= 0),
    runner_version  text        NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_migration_audit (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          uuid        NOT NULL,
    version         varchar(15) NOT NULL,
    description     text        NOT NULL DEFAULT '',
    direction       text        NOT NULL CONSTRAINT schema_migration_audit_direction
                        CHECK (direction IN ('up', 'down', 'baseline')),
    mode            text        NOT NULL DEFAULT 'per-migration' CONSTRAINT schema_migration_audit_mode
                        CHECK (mode IN ('per-migration', 'atomic', 'adopt', 'baseline')),
    status          text        NOT NULL CONSTRAINT schema_migration_audit_status
                        CHECK (status IN ('started', 'succeeded', 'failed', 'interrupted', 'rolled_back')),
    checksum        char(64),
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at        timestamptz,
    duration_ms     integer,
    error_message   text,
    sqlstate        char(5),
    db_user         text        NOT NULL DEFAULT current_user,
    os_user         text        NOT NULL,
    client_host     text        NOT NULL,
    runner_version  text        NOT NULL
);
"""


@dataclass(frozen=True)
class Applied:
    version: str
    description: str
    checksum: str
    applied_at: datetime
    applied_by: str
    execution_ms: int
    runner_version: str


@dataclass(frozen=True)
class AuditRow:
    id: int
    run_id: str
    version: str
    description: str
    direction: str
    mode: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    duration_ms: int | None
    error_message: str | None
    sqlstate: str | None
    db_user: str
    os_user: str
    client_host: str
    runner_version: str

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["started_at"] = self.started_at.isoformat()
        d["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        d["run_id"] = str(self.run_id)
        return d


def tables_exist(conn: psycopg.Connection) -> tuple[bool, bool]:
    row = conn.execute(
        "SELECT to_regclass('schema_migrations') IS NOT NULL, to_regclass('schema_migration_audit') IS NOT NULL"
    ).fetchone()
    return bool(row[0]), bool(row[1])


def ensure_tables(conn: psycopg.Connection) -> None:
    """Create the tracking tables if they are missing (caller holds the migration lock)."""
    if all(tables_exist(conn)):
        return
    with conn.transaction():
        conn.execute(DDL)


def applied(conn: psycopg.Connection) -> list[Applied]:
    if not tables_exist(conn)[0]:
        return []
    rows = conn.execute(
        "SELECT version, description, checksum, applied_at, applied_by, execution_ms, runner_version "
        "FROM schema_migrations ORDER BY version").fetchall()
    return [Applied(*r) for r in rows]


def current_version(conn: psycopg.Connection) -> str | None:
    return conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]


def record_applied(conn: psycopg.Connection, version: str, description: str, checksum: str,
                   execution_ms: int) -> None:
    conn.execute(
        "INSERT INTO schema_migrations (version, description, checksum, execution_ms, runner_version) "
        "VALUES (%s, %s, %s, %s, %s)", (version, description, checksum, execution_ms, RUNNER_VERSION))


class Audit:
    """Writes one run's attempts. ``started`` commits on its own (cheaply: synchronous_commit off,
    flushed by the migration's own synchronous commit that follows) before the migration runs."""

    def __init__(self, conn: psycopg.Connection, mode: str = "per-migration") -> None:
        self.conn = conn
        self.run_id = uuid.uuid4()
        self.mode = mode
        self.os_user, self.host = client_identity()

    def started(self, version: str, description: str, direction: str, checksum: str | None) -> int:
        """One round trip. The runner's session runs with synchronous_commit off, so this commit
        costs no WAL flush; the migration's own synchronous COMMIT that follows flushes it too."""
        return self.conn.execute(
            f"INSERT INTO schema_migration_audit ({_STARTED_COLS}) "
            "VALUES (%s, %s, %s, %s, %s, 'started', %s, %s, %s, %s) RETURNING id",
            (self.run_id, version, description, direction, self.mode, checksum, self.os_user, self.host,
             RUNNER_VERSION)).fetchone()[0]

    def _lit(self, value) -> str:
        return sql.Literal(value).as_string(self.conn)

    @functools.cached_property
    def _run_literals(self) -> tuple[str, str, str]:
        """run_id, mode and "os_user, client_host, runner_version" as SQL literals: the same for
        every attempt of the run."""
        who = ", ".join(map(self._lit, (self.os_user, self.host, RUNNER_VERSION)))
        return f"{self._lit(str(self.run_id))}::uuid", self._lit(self.mode), who

    def framing(self, version: str, description: str, direction: str, checksum: str | None, up_checksum: str,
                settings_sql: str) -> tuple[str, str]:
        """The SQL sent before and after a migration's own so that the whole attempt is ONE round trip:

            BEGIN; INSERT 'started' row; COMMIT;              -- async commit (the session's setting)
            BEGIN; <settings_sql> <the migration> ;
            <history row + 'succeeded' outcome, one statement>; COMMIT;   -- synchronous

        The server stops at the first error and leaves the migration's transaction aborted (the
        caller rolls it back); a syntax error anywhere stops it before the 'started' row, which
        ``finish_attempt`` then writes as a complete failed row. The history row cannot be skipped:
        its execution_ms comes from the 'started' row's UPDATE and is NOT NULL.
        """
        run_id, mode, who = self._run_literals
        v, d = self._lit(version), self._lit(description)
        started = (f"BEGIN; INSERT INTO schema_migration_audit ({_STARTED_COLS}) VALUES ({run_id}, {v}, {d}, "
                   f"{self._lit(direction)}, {mode}, 'started', {self._lit(checksum)}, {who}); COMMIT;\n")
        outcome = ("WITH a AS (UPDATE schema_migration_audit SET status = 'succeeded', ended_at = clock_timestamp(), "
                   "duration_ms = (1000 * extract(epoch FROM clock_timestamp() - started_at))::int "
                   "WHERE id = currval(pg_get_serial_sequence('schema_migration_audit', 'id')) AND status = 'started' "
                   "RETURNING duration_ms) ")
        if direction == "up":
            outcome += ("INSERT INTO schema_migrations (version, description, checksum, execution_ms, runner_version) "
                        f"VALUES ({v}, {d}, {self._lit(up_checksum)}, (SELECT duration_ms FROM a), "
                        f"{self._lit(RUNNER_VERSION)})")
        else:
            outcome += f"DELETE FROM schema_migrations WHERE version = {v} AND EXISTS (SELECT FROM a)"
        return started + "BEGIN; " + settings_sql, "\n;\n" + outcome + "; COMMIT;"

    def finish_attempt(self, version: str, description: str, direction: str, checksum: str | None, status: str,
                       duration_ms: int | None, error: str | None, sqlstate: str | None,
                       conn: psycopg.Connection | None = None) -> None:
        """The outcome of an attempt started through ``framing`` that did not succeed, committed durably.

        Its 'started' row gets the outcome; when there is none (a syntax error stopped the server
        before it), a complete row is written; an attempt that did commit ('succeeded', after a
        connection lost during COMMIT) is left as it is.
        """
        c = conn or self.conn
        key = (self.run_id, version, direction)
        with c.transaction():
            c.execute("SET LOCAL synchronous_commit = on")
            c.execute(
                "WITH u AS (UPDATE schema_migration_audit SET status = %s, ended_at = clock_timestamp(), "
                "duration_ms = %s, error_message = %s, sqlstate = %s "
                "WHERE run_id = %s AND version = %s AND direction = %s AND status = 'started' RETURNING 1) "
                "INSERT INTO schema_migration_audit (run_id, version, description, direction, mode, status, checksum, "
                "ended_at, duration_ms, error_message, sqlstate, os_user, client_host, runner_version) "
                "SELECT %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), %s, %s, %s, %s, %s, %s "
                "WHERE NOT EXISTS (SELECT FROM schema_migration_audit WHERE run_id = %s AND version = %s "
                "AND direction = %s)",
                (status, duration_ms, error, sqlstate, *key,
                 self.run_id, version, description, direction, self.mode, status, checksum, duration_ms, error,
                 sqlstate, self.os_user, self.host, RUNNER_VERSION, *key))

    def finish(self, audit_id: int, status: str, duration_ms: int | None = None, error: str | None = None,
               sqlstate: str | None = None, conn: psycopg.Connection | None = None) -> None:
        """Record an outcome: inside a transaction it is part of it; outside, it commits durably."""
        c = conn or self.conn
        if c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with c.transaction():
                c.execute("SET LOCAL synchronous_commit = on")
                self._finish(c, audit_id, status, duration_ms, error, sqlstate)
        else:
            self._finish(c, audit_id, status, duration_ms, error, sqlstate)

    @staticmethod
    def _finish(c, audit_id, status, duration_ms, error, sqlstate) -> None:
        c.execute(
            "UPDATE schema_migration_audit SET status = %s, ended_at = clock_timestamp(), duration_ms = %s, "
            "error_message = %s, sqlstate = %s WHERE id = %s AND status = 'started'",
            (status, duration_ms, error, sqlstate, audit_id))
        # 'AND status = started': an outcome is written once. After a connection lost during COMMIT
        # the server may have committed the migration with its 'succeeded' row; it must stay so.

    def record(self, version: str, description: str, direction: str, status: str, checksum: str | None,
               error: str | None = None) -> None:
        """A complete attempt in one row (adoption, baseline)."""
        self.conn.execute(
            "INSERT INTO schema_migration_audit (run_id, version, description, direction, mode, status, checksum, "
            "ended_at, duration_ms, error_message, os_user, client_host, runner_version) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, clock_timestamp(), 0, %s, %s, %s, %s)",
            (self.run_id, version, description, direction, self.mode, status, checksum, error, self.os_user,
             self.host, RUNNER_VERSION))


def mark_interrupted(conn: psycopg.Connection) -> list[AuditRow]:
    """Close attempts left 'started' by a run that died. Only call while holding the lock."""
    if not tables_exist(conn)[1]:
        return []
    rows = conn.execute(
        "UPDATE schema_migration_audit SET status = 'interrupted', "
        "error_message = coalesce(error_message, 'the run ended before recording an outcome (crash, kill or lost connection)') "
        f"WHERE status = 'started' RETURNING {_AUDIT_COLS}").fetchall()
    return [AuditRow(*r) for r in rows]


_AUDIT_COLS = ("id, run_id, version, description, direction, mode, status, started_at, ended_at, duration_ms, "
               "error_message, sqlstate, db_user, os_user, client_host, runner_version")


def audit_rows(conn: psycopg.Connection, limit: int | None = None) -> list[AuditRow]:
    if not tables_exist(conn)[1]:
        return []
    q = f"SELECT {_AUDIT_COLS} FROM schema_migration_audit ORDER BY id DESC"
    if limit:
        q += f" LIMIT {int(limit)}"
    rows = conn.execute(q).fetchall()
    return [AuditRow(*r) for r in reversed(rows)]


def last_run_problem(conn: psycopg.Connection, lock_held: bool) -> list[AuditRow]:
    """Attempts of the most recent run that failed, were interrupted, or were left 'started' by a
    run that is no longer alive (when nobody holds the lock)."""
    if not tables_exist(conn)[1]:
        return []
    rows = conn.execute(
        f"SELECT {_AUDIT_COLS} FROM schema_migration_audit WHERE run_id = "
        "(SELECT run_id FROM schema_migration_audit ORDER BY id DESC LIMIT 1) ORDER BY id").fetchall()
    out = []
    for r in map(lambda r: AuditRow(*r), rows):
        if r.status in ("failed", "interrupted", "rolled_back") or (r.status == "started" and not lock_held):
            out.append(r)
    return out
