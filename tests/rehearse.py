"""Rehearse a release upgrade on production-like volumes and report what each migration costs.

    python3 -m tests.rehearse [--raw-events N] [--machines M] [--from 1.0.0] [--to 1.1.0]
                              [--markdown FILE] [--json FILE] [--dsn ADMIN_DSN] [--no-atomic] [--cold]

It starts its own throwaway PostgreSQL 15 cluster with fsync on (a customer's is), upgrades a
new database to the previous release, loads ``tests.sample_data`` (default 3,000,000 raw_events
over 5,000 machines), runs VACUUM ANALYZE, then applies each pending migration ONE AT A TIME
through the runner (``runner.upgrade(..., to=<that version>)``) with the runner's default
settings. Per migration it reports:

- the duration of the migration's SQL, as the runner recorded it (schema_migrations.execution_ms);
- the locks the runner's backends held, strongest mode per relation, and for how long:
  a second connection samples pg_locks every ``--sample-ms`` (20 ms) filtered on the backends
  whose application_name starts with 'ransomeye-migrate'. Migrations shorter than one sample
  would slip through, so the watcher also *gates* the runner: it holds an EXCLUSIVE lock on
  schema_migration_audit, which the runner writes at every migration boundary (the 'started' row
  before the migration, the outcome inside its transaction). The runner waits there until the
  next sample, which records exactly what it holds at that instant; the watcher then lets it
  through with a second gate connection already queued behind it, so the next boundary is caught
  as well and the moment the transaction commits is seen at once. The time the runner spent
  waiting at a gate (pg_locks.waitstart) is left out of every figure. A held time is an upper
  bound: from the later of the migration's start and the last observation without the lock, to
  the first observation after its release; it includes the COMMIT and its WAL flush;
- rows rewritten: a changed pg_class.relfilenode means the table was rewritten (all its rows),
  plus the n_tup_ins/upd/del deltas of pg_stat_user_tables;
- table and index sizes before and after, for the tables the migration touched.

Then the same release again in atomic mode (``upgrade(..., atomic=True)``: every migration in one
transaction) on a copy of the loaded database (CREATE DATABASE … TEMPLATE), where every lock is
held until the release commits. ``--cold`` restarts the server before each run with the
database's files dropped from the OS page cache, so the scans read from disk.

Prints a table (rich on a terminal, plain otherwise); ``--markdown FILE`` writes the same as
Markdown, ``--json FILE`` everything measured. Every cluster it starts is stopped and deleted,
also on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from common.db import runner
from common.db.migrations import MigrationSet, load_migrations
from tests import sample_data

REPO = Path(__file__).resolve().parent.parent
RUNNER_APP = "ransomeye-migrate"
WATCH_APP = "ransomeye-rehearse"
GATE_TABLE = "schema_migration_audit"
HISTORY_TABLES = {"schema_migrations", "schema_migration_audit"}
MODES = ["AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
         "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"]
STRENGTH = {m: i for i, m in enumerate(MODES)}

Say = Callable[[str], None]


def _stderr(line: str) -> None:
    print(f"[rehearse] {line}", file=sys.stderr, flush=True)


def mode_name(mode: str) -> str:
    """'AccessExclusiveLock' -> 'ACCESS EXCLUSIVE', as the PostgreSQL documentation writes it."""
    base = mode[:-4] if mode.endswith("Lock") else mode
    out = "".join(" " + c if c.isupper() and i else c for i, c in enumerate(base))
    return out.upper()


def dsn_for(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


# ---------------------------------------------------------------------------------------------
# The lock watcher
# ---------------------------------------------------------------------------------------------
_SAMPLE = """
SELECT l.locktype, l.relation, l.classid, l.objid, l.objsubid, l.mode, l.granted,
       extract(epoch FROM clock_timestamp() - l.waitstart)::float8
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE a.application_name LIKE %s AND l.pid <> pg_backend_pid()
   AND l.locktype IN ('relation', 'object')
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class LockWatch(threading.Thread):
    """Samples the runner's locks while it runs; see the module docstring for the gate."""

    MAX_PENDING = 2.0  # seconds a queued gate may wait before it is withdrawn

    def __init__(self, dsn: str, interval: float = 0.02, gate: bool = True) -> None:
        super().__init__(name="lock-watch", daemon=True)
        self.dsn, self.interval, self.use_gate = dsn, interval, gate
        # (time the query was sent, time its answer came back, {(lock key, mode)} held)
        self.observations: list[tuple[float, float, frozenset]] = []
        # (start, end) of each time the runner waited at a gate; excluded from the hold times
        self.pauses: list[tuple[float, float]] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.gate_withdrawn = False
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        if self.error:
            raise self.error

    # -- gate helpers (raw libpq: a LOCK that waits must not block the sampling) ---------------
    def _send_lock(self, conn: psycopg.Connection) -> None:
        conn.pgconn.send_query(f"BEGIN; LOCK TABLE {GATE_TABLE} IN EXCLUSIVE MODE".encode())

    @staticmethod
    def _lock_done(conn: psycopg.Connection) -> bool:
        pg = conn.pgconn
        pg.consume_input()
        if pg.is_busy():
            return False
        errors = []
        while (res := pg.get_result()) is not None:
            if res.status != psycopg.pq.ExecStatus.COMMAND_OK:
                errors.append(res.error_message.decode(errors="replace").strip())
        if errors:
            raise RuntimeError(f"gate: {errors[0]}")
        return True

    @staticmethod
    def _end(conn: psycopg.Connection) -> None:
        pg = conn.pgconn
        pg.send_query(b"COMMIT")
        while pg.get_result() is not None:
            pass

    def _wait_queued(self, sampler: psycopg.Connection, gate: psycopg.Connection) -> None:
        """Until the server shows the gate connection waiting for the lock (at most 2 s)."""
        deadline = time.perf_counter() + 2
        while time.perf_counter() < deadline:
            if sampler.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted",
                               (gate.pgconn.backend_pid,)).fetchone():
                return
            time.sleep(0.0005)

    def run(self) -> None:
        conns: list[psycopg.Connection] = []
        try:
            sampler = psycopg.connect(self.dsn, autocommit=True, application_name=WATCH_APP)
            conns.append(sampler)
            sampler.execute("SET jit = off")
            gate_oid = sampler.execute("SELECT to_regclass(%s)::oid", (GATE_TABLE,)).fetchone()[0]
            gates: list[psycopg.Connection] = []
            holder = pending = None
            pending_since = 0.0
            if self.use_gate and gate_oid:
                gates = [psycopg.connect(self.dsn, autocommit=True, application_name=f"{WATCH_APP} gate")
                         for _ in range(2)]
                conns.extend(gates)
                self._send_lock(gates[0])
                while not self._lock_done(gates[0]):
                    time.sleep(0.001)
                holder = 0
            self.ready.set()
            pattern = RUNNER_APP + "%"
            stopping = False
            while True:
                if pending is not None and self._lock_done(gates[pending]):
                    # The runner's statement (or its whole transaction) just ended; sample at once.
                    holder, pending = pending, None
                now = time.perf_counter()
                held, waited = set(), None
                for locktype, rel, classid, objid, objsubid, mode, granted, wait_s in sampler.execute(_SAMPLE, (pattern,)):
                    key = ("relation", rel) if locktype == "relation" else ("object", classid, objid, objsubid)
                    if granted:
                        held.add((key, mode))
                    elif locktype == "relation" and rel == gate_oid:
                        waited = max(waited or 0.0, wait_s or 0.0)
                answered = time.perf_counter()
                self.observations.append((now, answered, frozenset(held)))
                if stopping:
                    break
                if waited is not None and holder is not None and pending is None:
                    # The runner is at a boundary: what it holds now is exact. Queue the other gate
                    # behind it before letting it through, so the next boundary is caught too.
                    other = 1 - holder
                    self._send_lock(gates[other])
                    self._wait_queued(sampler, gates[other])
                    self._end(gates[holder])
                    self.pauses.append(((now + answered) / 2 - waited, time.perf_counter()))
                    holder, pending, pending_since = None, other, now
                elif pending is not None and now - pending_since > self.MAX_PENDING:
                    # Every boundary the runner has today clears in milliseconds. A gate still queued
                    # could stand between two of the runner's own connections: withdraw it and go
                    # on sampling only.
                    gates[pending].cancel()
                    try:
                        while not self._lock_done(gates[pending]):
                            time.sleep(0.001)
                    except RuntimeError:
                        pass
                    self._end(gates[pending])
                    pending = None
                    self.gate_withdrawn = True
                if self._halt.is_set():
                    stopping = True  # one last sample
                    continue
                if pending is not None:
                    # wakes when the gate is granted, i.e. when the runner's statement ends
                    select.select([gates[pending].pgconn.socket], [], [], self.interval)
                else:
                    time.sleep(self.interval)
            if holder is not None:
                self._end(gates[holder])
        except BaseException as exc:  # reported by stop(); the runner must never stay gated
            self.error = exc
            self.ready.set()
        finally:
            for c in conns:
                try:
                    c.cancel()
                except Exception:
                    pass
                c.close()

    # -- what was held, and when -------------------------------------------------------------
    def intervals(self) -> dict[tuple, dict]:
        """For each (lock key, mode) its first period held, in conservative bounds:
        ``absent_before`` (the send time of the last observation without it: taken after that),
        ``first`` (the answer time of the first observation with it: taken before that),
        ``absent_after`` (the answer time of the first observation without it again; None if it
        was still held at the end)."""
        out: dict[tuple, dict] = {}
        prev_t0 = None
        for t0, t1, held in self.observations:
            for km in held:
                if km not in out:
                    out[km] = {"absent_before": prev_t0, "first": t1, "absent_after": None}
            for km, iv in out.items():
                if iv["absent_after"] is None and km not in held:
                    iv["absent_after"] = t1
            prev_t0 = t0
        return out


# ---------------------------------------------------------------------------------------------
# Catalog snapshots
# ---------------------------------------------------------------------------------------------
@dataclass
class RelState:
    oid: int
    name: str
    kind: str
    relfilenode: int
    ins: int = 0
    upd: int = 0
    dele: int = 0
    live: int = 0
    table_bytes: int = 0
    index_bytes: int = 0


def snapshot(conn: psycopg.Connection) -> dict[str, RelState]:
    """Every table and index of schema public with its relfilenode, stats and sizes."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        """SELECT c.oid, c.relname, c.relkind, c.relfilenode,
                  coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_upd, 0), coalesce(s.n_tup_del, 0),
                  coalesce(s.n_live_tup, 0),
                  CASE WHEN c.relkind IN ('r', 'p') THEN pg_table_size(c.oid) ELSE pg_relation_size(c.oid) END,
                  CASE WHEN c.relkind IN ('r', 'p') THEN pg_indexes_size(c.oid) ELSE 0 END
             FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'i')""").fetchall()
    return {r[1]: RelState(*r) for r in rows}


def wait_runner_gone(conn: psycopg.Connection, timeout: float = 10.0) -> None:
    """The runner's backends flush their statistics when they exit: wait for that."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE application_name LIKE %s "
                            "AND datname = current_database()", (RUNNER_APP + "%",)).fetchone():
            return
        time.sleep(0.02)


def describe_keys(conn: psycopg.Connection, keys: set[tuple]) -> dict[tuple, tuple[str, str, str]]:
    """lock key -> (name, kind, schema) read after the fact, when new relations are visible."""
    out: dict[tuple, tuple[str, str, str]] = {}
    kinds = {"r": "table", "p": "table", "i": "index", "S": "sequence", "t": "toast", "v": "view", "m": "view"}
    for key in keys:
        if key[0] == "relation":
            row = conn.execute("SELECT c.relname, c.relkind, n.nspname FROM pg_class c "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s", (key[1],)).fetchone()
            out[key] = (row[0], kinds.get(row[1], row[1]), row[2]) if row else (f"oid {key[1]}", "dropped", "")
        else:
            row = conn.execute("SELECT pg_describe_object(%s, %s, %s)", key[1:]).fetchone()
            out[key] = (row[0] or f"object {key[2]}", "object", "")
    return out


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass
class LockUse:
    relation: str
    kind: str            # table, index, sequence, object
    mode: str            # strongest mode held, e.g. ACCESS EXCLUSIVE
    held_s: float        # upper bound: from the last observation without it to the first after release
    new: bool = False    # created by the migration itself (no one else can be waiting for it)
    modes: list[str] = field(default_factory=list)


@dataclass
class TableChange:
    table: str
    new: bool
    rewritten: bool
    rows_rewritten: int
    inserted: int
    updated: int
    deleted: int
    table_bytes_before: int
    table_bytes_after: int
    index_bytes_before: int
    index_bytes_after: int


@dataclass
class StepResult:
    version: str
    description: str
    duration_s: float
    locks: list[LockUse] = field(default_factory=list)
    tables: list[TableChange] = field(default_factory=list)


@dataclass
class RunResult:
    mode: str                       # per-migration | atomic
    wall_s: float
    cache: str = "warm"             # warm: data in the OS page cache; cold: read from disk (--cold)
    steps: list[StepResult] = field(default_factory=list)
    tables: list[TableChange] = field(default_factory=list)   # the whole run (atomic: the release)
    gate_captures: int = 0          # boundaries at which the watcher held the runner for a moment
    gate_pause_s: float = 0.0       # their total, left out of wall_s and of every hold time
    observations: int = 0


@dataclass
class Rehearsal:
    from_release: str
    to_release: str
    machine: dict
    data: dict
    runs: list[RunResult] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def table_changes(before: dict[str, RelState], after: dict[str, RelState], touched: set[str]) -> list[TableChange]:
    out = []
    for name, a in sorted(after.items()):
        if a.kind not in ("r", "p") or name in HISTORY_TABLES:
            continue
        b = before.get(name)
        new = b is None
        rewritten = not new and b.relfilenode != a.relfilenode
        ins, upd, dele = (a.ins - (b.ins if b else 0), a.upd - (b.upd if b else 0), a.dele - (b.dele if b else 0))
        if not (new or rewritten or ins or upd or dele or name in touched):
            continue
        out.append(TableChange(name, new, rewritten, a.live if rewritten else 0, ins, upd, dele,
                               b.table_bytes if b else 0, a.table_bytes, b.index_bytes if b else 0, a.index_bytes))
    return out


def _locks_by_step(watch: LockWatch, starts: list[tuple[str, float]], names: dict[tuple, tuple[str, str, str]],
                   new_oids: set[int]) -> dict[str, list[LockUse]]:
    """Attribute each lock to the migration that was running when it was first seen; its hold
    time leaves out the moments the watcher itself kept the runner waiting at a gate."""
    per: dict[str, dict[str, LockUse]] = {v: {} for v, _ in starts}
    end = watch.observations[-1][1] if watch.observations else 0.0
    for (key, mode), iv in watch.intervals().items():
        name, kind, schema = names.get(key, (str(key), "?", ""))
        if schema in ("pg_catalog", "pg_toast", "information_schema") or name in HISTORY_TABLES:
            continue
        if kind == "index" or kind == "toast":
            continue  # an index is locked with its table; the table's lock is the one that matters
        owner = None
        for version, t in starts:
            if t <= iv["first"]:
                owner = version
        if owner is None:
            continue  # taken by the runner's setup before any migration (none expected)
        # it cannot have been taken before its migration started
        lo = max(iv["absent_before"] if iv["absent_before"] is not None else iv["first"], dict(starts)[owner])
        hi = iv["absent_after"] if iv["absent_after"] is not None else end
        paused = sum(max(0.0, min(hi, b) - max(lo, a)) for a, b in watch.pauses)
        held = max(hi - lo - paused, 0.0)
        use = per[owner].get(name)
        pretty = mode_name(mode)
        if use is None:
            per[owner][name] = LockUse(name, kind, pretty, round(held, 4),
                                       key[0] == "relation" and key[1] in new_oids, [pretty])
        else:
            use.modes.append(pretty)
            if STRENGTH.get(mode, -1) > STRENGTH.get(_mode_key(use.mode), -1):
                use.mode, use.held_s = pretty, round(held, 4)
    return {v: sorted(d.values(), key=lambda u: (-STRENGTH.get(_mode_key(u.mode), -1), u.relation))
            for v, d in per.items()}


def _mode_key(pretty: str) -> str:
    return "".join(w.capitalize() for w in pretty.split()) + "Lock"


# ---------------------------------------------------------------------------------------------
# Running the runner under watch
# ---------------------------------------------------------------------------------------------
def watched_upgrade(dsn: str, mset: MigrationSet, to: str, atomic: bool, interval: float,
                    say: Say = _stderr) -> RunResult:
    """One ``runner.upgrade`` call under the lock watcher, with snapshots before and after."""
    starts: list[tuple[str, float]] = []

    def report(event: str, data: dict) -> None:
        if event == "apply_start":
            starts.append((data["version"], time.perf_counter()))
            say(f"  applying {data['version']} {data['description']}")

    with psycopg.connect(dsn, autocommit=True, application_name=WATCH_APP) as conn:
        conn.execute("SET jit = off")
        before = snapshot(conn)
        watch = LockWatch(dsn, interval)
        watch.start()
        watch.ready.wait(30)
        t0 = time.perf_counter()
        try:
            outcome = runner.upgrade(mset, runner.Settings(dsn=dsn, report=report), to=to, atomic=atomic)
        finally:
            wall = time.perf_counter() - t0
            watch.stop()
        wait_runner_gone(conn)
        after = snapshot(conn)
        # the runner's own measure of each migration's SQL (before its history row and COMMIT)
        sql_ms = dict(conn.execute("SELECT version, execution_ms FROM schema_migrations WHERE version = ANY(%s)",
                                   ([st["version"] for st in outcome.steps],)).fetchall())
        keys = {k for _, _, held in watch.observations for k, _ in held}
        names = describe_keys(conn, keys)
    new_oids = {s.oid for n, s in after.items() if n not in before}
    locks = _locks_by_step(watch, starts, names, new_oids)
    paused = sum(b - a for a, b in watch.pauses)
    run = RunResult("atomic" if atomic else "per-migration", round(wall - paused, 3),
                    gate_captures=len(watch.pauses), gate_pause_s=round(paused, 4),
                    observations=len(watch.observations))
    touched_all: set[str] = set()
    for step in outcome.steps:
        used = locks.get(step["version"], [])
        touched = {u.relation for u in used if u.kind == "table" and STRENGTH.get(_mode_key(u.mode), 0) > 0}
        touched_all |= touched
        run.steps.append(StepResult(step["version"], step["description"], sql_ms[step["version"]] / 1000, used))
    run.tables = table_changes(before, after, touched_all)
    if not atomic and len(run.steps) == 1:
        run.steps[0].tables = run.tables
    return run


# ---------------------------------------------------------------------------------------------
# The rehearsal
# ---------------------------------------------------------------------------------------------
def machine_description(conn: psycopg.Connection) -> dict:
    mem = cpu = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    settings = dict(conn.execute(
        "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', "
        "'maintenance_work_mem', 'max_wal_size', 'fsync', 'synchronous_commit', 'full_page_writes', "
        "'checkpoint_timeout', 'max_parallel_maintenance_workers', 'jit', 'wal_level')").fetchall())
    return {"nproc": os.cpu_count(), "memory": mem, "cpu": cpu, "os": platform.platform(),
            "postgresql": conn.execute("SELECT version()").fetchone()[0], "settings": settings}


def make_cold(cluster, admin_dsn: str, dbname: str) -> int:
    """CHECKPOINT, stop the server, drop the database's files from the OS page cache, start again:
    the next run reads from disk, as after a reboot. Returns the bytes evicted."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        oid = admin.execute("SELECT oid FROM pg_database WHERE datname = %s", (dbname,)).fetchone()[0]
        admin.execute("CHECKPOINT")
    cluster.stop()
    evicted = 0
    for f in (cluster.datadir / "base" / str(oid)).iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                evicted += os.fstat(fd).st_size
            finally:
                os.close(fd)
    cluster.start(fsync=True)
    return evicted


def rehearse(raw_events: int = 3_000_000, machines: int = 5_000, from_release: str = "1.0.0",
             to_release: str | None = None, admin_dsn: str | None = None, atomic: bool = True,
             interval: float = 0.02, seed: int = 1, migrations_dir: str | os.PathLike = REPO / "schemas" / "migrations",
             cold: bool = False, say: Say = _stderr) -> Rehearsal:
    """The whole rehearsal; starts (and always deletes) its own fsync=on cluster unless admin_dsn.

    ``cold``: before each run, restart the server with the database's files dropped from the OS
    page cache (needs the rehearsal's own cluster)."""
    from tests.pgcluster import create_cluster

    if cold and admin_dsn is not None:
        raise ValueError("a cold-cache rehearsal restarts the server: it needs its own cluster, not --dsn")

    mset = load_migrations(migrations_dir)
    to_release = to_release or mset.latest_release
    start_v, target_v = mset.resolve_target(from_release), mset.resolve_target(to_release)
    if start_v is None:
        raise ValueError("--from must be a release with the v1.0.0 tables (1.0.0 or later)")
    plan = [m for m in mset.migrations if start_v < m.version <= target_v]
    cluster = None
    if admin_dsn is None:
        say("starting a throwaway PostgreSQL cluster (fsync on)")
        cluster = create_cluster(fsync=True)
        admin_dsn = cluster.dsn()
    db = f"rehearse_{os.getpid()}"
    copy = f"{db}_atomic"
    created: list[str] = []
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            created.append(db)
            machine = machine_description(admin)
        dsn = dsn_for(admin_dsn, db)
        say(f"upgrading a new database to {from_release}")
        runner.upgrade(mset, runner.Settings(dsn=dsn), to=from_release)
        per_machine = max(1, raw_events // machines)
        say(f"loading {machines * per_machine:,} raw_events over {machines:,} machines")
        t = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            counts = sample_data.load(conn, machines=machines, events_per_machine=per_machine, seed=seed,
                                      progress=lambda m: say(f"  {m} (at {time.perf_counter() - t:.0f} s)"))
            load_s = time.perf_counter() - t
            say(f"loaded in {load_s:.1f} s; VACUUM ANALYZE")
            t = time.perf_counter()
            conn.execute("VACUUM ANALYZE")
            vacuum_s = time.perf_counter() - t
            db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        data = {"machines": machines, "events_per_machine": per_machine, "rows": counts, "seed": seed,
                "load_s": round(load_s, 1), "vacuum_analyze_s": round(vacuum_s, 1), "database_bytes": db_bytes}
        if atomic:
            say("copying the loaded database for the atomic run (CREATE DATABASE … TEMPLATE)")
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(copy), sql.Identifier(db)))
                created.append(copy)
        result = Rehearsal(from_release, to_release, machine, data)
        if cold:
            n = make_cold(cluster, admin_dsn, db)
            say(f"server restarted with {human_bytes(n)} of the database's files out of the page cache")
        say(f"per-migration: {len(plan)} migration(s), one at a time")
        per = RunResult("per-migration", 0.0, cache="cold" if cold else "warm")
        for m in plan:
            step_run = watched_upgrade(dsn, mset, m.version, False, interval, say)
            per.wall_s = round(per.wall_s + step_run.wall_s, 3)
            per.steps.extend(step_run.steps)
            per.tables.extend(step_run.tables)
            per.gate_captures += step_run.gate_captures
            per.gate_pause_s = round(per.gate_pause_s + step_run.gate_pause_s, 4)
            per.observations += step_run.observations
        result.runs.append(per)
        if atomic:
            if cold:
                make_cold(cluster, admin_dsn, copy)
            say(f"atomic: the same {len(plan)} migration(s) in one transaction, on the copy")
            run = watched_upgrade(dsn_for(admin_dsn, copy), mset, target_v, True, interval, say)
            run.cache = "cold" if cold else "warm"
            result.runs.append(run)
        return result
    finally:
        if cluster is not None:
            cluster.destroy()
            say("cluster stopped and deleted")
        else:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                for name in created:
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_s(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


HEADERS = ["Migration", "Duration (SQL)", "Locks (strongest per table, held ≤)", "Rewritten", "Rows written",
           "Size before → after (table + indexes)"]


def _lock_lines(locks: list[LockUse]) -> list[str]:
    return [f"{u.relation}{' (new)' if u.new else ''}: {u.mode} {human_s(u.held_s)}" for u in locks] or ["—"]


def _change_lines(tables: list[TableChange]) -> tuple[list[str], list[str], list[str]]:
    rew = [f"{t.table}: {t.rows_rewritten:,} rows" for t in tables if t.rewritten] or ["none"]
    rows = [f"{t.table}: +{t.inserted:,} / ~{t.updated:,} / -{t.deleted:,}" for t in tables
            if t.inserted or t.updated or t.deleted] or ["0"]
    size = [f"{t.table}: {_size_change(t)}" for t in tables] or ["—"]
    return rew, rows, size


def _size_change(t: TableChange) -> str:
    before, after = t.table_bytes_before + t.index_bytes_before, t.table_bytes_after + t.index_bytes_after
    if t.new:
        return f"new → {human_bytes(after)}"
    delta = after - before
    sign = f" ({'+' if delta > 0 else '-'}{human_bytes(abs(delta))})" if delta else " (unchanged)"
    return f"{human_bytes(before)} → {human_bytes(after)}{sign}"


def table_rows(run: RunResult) -> list[list[list[str]]]:
    rows = []
    for s in run.steps:
        if run.mode == "atomic":
            rew, wr, size = ["(release)"], ["(release)"], ["(release)"]
        else:
            rew, wr, size = _change_lines(s.tables)
        rows.append([[f"{s.version} {s.description}"], [human_s(s.duration_s)], _lock_lines(s.locks), rew, wr, size])
    if run.mode == "atomic":
        rew, wr, size = _change_lines(run.tables)
        rows.append([["whole release, one transaction"], [human_s(run.wall_s) + " with check and COMMIT"],
                     ["every lock above is held until the release commits"], rew, wr, size])
    return rows


def run_title(run: RunResult) -> str:
    title = ("Each migration in its own transaction (default)" if run.mode == "per-migration"
             else "The release in one transaction (--atomic)")
    return f"{title}, {run.cache} cache"


def summary_lines(r: Rehearsal) -> list[str]:
    m, d = r.machine, r.data
    return [f"Machine: {m['nproc']} CPUs ({m['cpu'] or 'unknown'}), {m['memory']} RAM; {m['postgresql'].split(',')[0]}",
            "Server settings: " + ", ".join(f"{k}={v}" for k, v in sorted(m["settings"].items())),
            f"Data: {d['rows']['raw_events']:,} raw_events over {d['machines']:,} machines "
            f"({', '.join(f'{k} {v:,}' for k, v in d['rows'].items() if k != 'raw_events')}); "
            f"database {human_bytes(d['database_bytes'])}; loaded in {human_s(d['load_s'])}, "
            f"VACUUM ANALYZE {human_s(d['vacuum_analyze_s'])}",
            f"Upgrade {r.from_release} → {r.to_release}"]


def render_plain(r: Rehearsal, out) -> None:
    for line in summary_lines(r):
        print(line, file=out)
    for run in r.runs:
        print(f"\n{run_title(run)}: {human_s(run.wall_s)} in all", file=out)
        rows = table_rows(run)
        widths = [max(len(h), *(len(x) for row in rows for x in row[i])) for i, h in enumerate(HEADERS)]
        print(" | ".join(h.ljust(w) for h, w in zip(HEADERS, widths)), file=out)
        print("-+-".join("-" * w for w in widths), file=out)
        for row in rows:
            for k in range(max(len(c) for c in row)):
                print(" | ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)


def render_rich(r: Rehearsal) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console()
    for line in summary_lines(r):
        console.print(line, markup=False, highlight=False)
    for run in r.runs:
        t = Table(title=f"{run_title(run)}: {human_s(run.wall_s)} in all", show_lines=True)
        for h in HEADERS:
            t.add_column(h)
        for row in table_rows(run):
            t.add_row(*("\n".join(c) for c in row))
        console.print(t)


def render_markdown(r: Rehearsal) -> str:
    out = [f"- {line}" for line in summary_lines(r)]
    for run in r.runs:
        out += ["", f"**{run_title(run)}** — {human_s(run.wall_s)} in all", "",
                "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        for row in table_rows(run):
            out.append("| " + " | ".join("<br>".join(x.replace("|", "\\|") for x in c) for c in row) + " |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m tests.rehearse", description=__doc__.split("\n\n")[0])
    p.add_argument("--raw-events", type=int, default=3_000_000)
    p.add_argument("--machines", type=int, default=5_000)
    p.add_argument("--from", dest="from_release", default="1.0.0")
    p.add_argument("--to", dest="to_release", default=None, help="default: the newest release")
    p.add_argument("--markdown", metavar="FILE")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--dsn", help="a superuser connection string: use that server instead of a new cluster")
    p.add_argument("--no-atomic", action="store_true", help="skip the run of the release in one transaction")
    p.add_argument("--sample-ms", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cold", action="store_true",
                   help="before each run, restart the server with the database's files out of the OS page cache")
    p.add_argument("--migrations-dir", default=str(REPO / "schemas" / "migrations"))
    a = p.parse_args(argv)
    if a.raw_events < 1 or a.machines < 1:
        p.error("--raw-events and --machines must be positive")
    if a.cold and a.dsn:
        p.error("--cold restarts the server: it needs the rehearsal's own cluster, not --dsn")
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop and delete the cluster.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        result = rehearse(a.raw_events, a.machines, a.from_release, a.to_release, a.dsn, not a.no_atomic,
                          a.sample_ms / 1000, a.seed, a.migrations_dir, a.cold)
    except KeyboardInterrupt:
        print("[rehearse] interrupted; the rehearsal's databases and cluster were removed", file=sys.stderr)
        return 130
    if sys.stdout.isatty():
        render_rich(result)
    else:
        render_plain(result, sys.stdout)
    if a.markdown:
        Path(a.markdown).write_text(render_markdown(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
