"""One runner at a time: a session-level PostgreSQL advisory lock.

The lock lives on the runner's autocommit connection, so it outlives each migration's transaction
and disappears with the session when the process dies: nothing goes stale and there is no
break-lock verb. A second runner polls up to its timeout, then raises LockTimeout (exit 11)
naming the holder, which it finds in pg_stat_activity by the runner's application_name.
"""
from __future__ import annotations

import time

import psycopg

from .errors import LockTimeout

# Two 32-bit keys: "RNSM" / "SCHM". Core's check looks for the same pair.
LOCK_KEY1 = 0x524E534D
LOCK_KEY2 = 0x5343484D
_POLL = 0.1


def try_lock(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_KEY1, LOCK_KEY2)).fetchone()[0])


def acquire(conn: psycopg.Connection, timeout: float) -> float:
    """Take the lock, waiting up to ``timeout`` seconds. Returns the seconds waited."""
    start = time.monotonic()
    deadline = start + max(timeout, 0)
    while True:
        if try_lock(conn):
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            holder = lock_holder(conn)
            raise LockTimeout(
                f"another migration run holds the schema lock ({holder}); gave up after {timeout:g} s. "
                "Nothing was changed.",
                hint="Wait for it to finish, or raise --lock-timeout. Find it in pg_stat_activity by its pid.")
        time.sleep(_POLL)


def release(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_KEY1, LOCK_KEY2))


def lock_holder(conn: psycopg.Connection) -> str:
    row = conn.execute(
        """SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'),
                  a.backend_start
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted
              AND l.classid = %s AND l.objid = %s AND l.objsubid = 2
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        (LOCK_KEY1, LOCK_KEY2)).fetchone()
    if not row:
        return "holder unknown"
    return f"pid {row[0]}, application '{row[1]}', client {row[2]}, connected since {row[3]:%Y-%m-%d %H:%M:%S}"


def is_held_by_other(conn: psycopg.Connection) -> bool:
    """True while some other session holds the lock (Core's check waits on this)."""
    row = conn.execute(
        """SELECT count(*) FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND classid = %s AND objid = %s AND objsubid = 2
              AND pid <> pg_backend_pid()
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        (LOCK_KEY1, LOCK_KEY2)).fetchone()
    return row[0] > 0
