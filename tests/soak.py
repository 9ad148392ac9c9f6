"""Crash and fault injection: kill the runner (or the server) at random moments of a long upgrade,
then prove the database is at a known version and never half-changed.

    python3 -m tests.soak --trials 50 [--seed S] [--migrations 300] [--faults kill,terminate,immediate]
                          [--mode per-migration|atomic|both] [--binary dist/.../ransomeye-migrate]

Each trial: a fresh database, the runner upgrading the shipped migrations plus a generated set
(some slow), one fault at a random moment, then the checks:
  1. the versions in schema_migrations are an exact prefix of the set (atomic: a whole release);
  2. the live catalog equals that version's expected catalog (computed once, migration by migration);
  3. the audit trail agrees: succeeded ups == recorded versions, at most one attempt left open;
  4. the next run completes, marks the open attempt interrupted, and Core's check passes.
The seed is printed first, so a failing run can be replayed with --seed.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from common.db import history
from common.db.catalog import Catalog, read_catalog, render
from common.db.migrations import load_migrations

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "schemas" / "migrations"
FAULTS = ("kill", "terminate", "immediate")


def generate_set(directory: Path, count: int, rng: random.Random, slow_every: int = 25) -> Path:
    """The shipped migrations plus ``count`` generated ones after them; one release at the end."""
    directory.mkdir(parents=True)
    for f in SHIPPED.iterdir():
        if f.name.endswith(".sql"):
            shutil.copy(f, directory / f.name)
    for f in (REPO / "schemas").glob("0[0-6]_*.sql"):  # the bundle the baseline includes
        shutil.copy(f, directory.parent / f.name)
    for i in range(count):
        version = f"20260101_{i // 60:04d}{i % 60:02d}"
        slow = "SELECT pg_sleep(0.15);\n" if i % slow_every == slow_every - 1 else ""
        if i % 3 == 2 and i > 3:
            target = f"gen_{i - 2:04d}"
            up = (f"{slow}ALTER TABLE {target} ADD COLUMN extra_{i} integer NOT NULL DEFAULT {i};\n"
                  f"CREATE INDEX ix_{target}_extra_{i} ON {target} (extra_{i});\n")
            down = f"ALTER TABLE {target} DROP COLUMN extra_{i};\n"
        else:
            up = (f"{slow}CREATE TABLE gen_{i:04d} (id bigint PRIMARY KEY, machine_id varchar(255) "
                  f"REFERENCES machines (machine_id), note text NOT NULL DEFAULT 'n{rng.randint(0, 999)}', "
                  f"CONSTRAINT ck_gen_{i:04d}_id CHECK (id >= 0));\n"
                  f"CREATE INDEX ix_gen_{i:04d}_note ON gen_{i:04d} (note);\n"
                  f"INSERT INTO gen_{i:04d} (id) SELECT g FROM generate_series(1, 100) g;\n")
            down = f"DROP TABLE gen_{i:04d};\n"
        (directory / f"migration_{version}_gen_{i:04d}_up.sql").write_text(up)
        (directory / f"migration_{version}_gen_{i:04d}_down.sql").write_text(down)
    mset = load_migrations(directory)
    releases = dict(load_migrations(SHIPPED).releases)
    releases["9.0.0"] = mset.latest
    (directory / "releases.toml").write_text(
        "[releases]\n" + "".join(f'"{r}" = "{v}"\n' for r, v in releases.items()))
    return directory


def expected_catalogs(mset, dsn: str) -> dict[str | None, Catalog]:
    """The catalog after each version, applying the set exactly as the runner does."""
    out: dict[str | None, Catalog] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(history.DDL)
        out[None] = read_catalog(conn)
        for m in mset.migrations:
            with conn.transaction():
                conn.execute(m.up_sql)
                history.record_applied(conn, m.version, m.description, m.checksum, 0)
            out[m.version] = read_catalog(conn)
    return out


@dataclass
class Tally:
    trials: int = 0
    faults: dict = field(default_factory=lambda: {f: 0 for f in FAULTS})
    states_checked: int = 0
    inconsistent: int = 0
    reruns_failed: int = 0
    problems: list = field(default_factory=list)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.faults.items())
        return (f"trials {self.trials}, faults {sum(self.faults.values())} ({kinds}), states checked "
                f"{self.states_checked}, inconsistent states {self.inconsistent}, re-runs failed {self.reruns_failed}")


class Soak:
    def __init__(self, cluster, workdir: Path, migrations: int, seed: int, binary: str | None = None,
                 log=print) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.binary = binary
        self.log = log
        self.dir = generate_set(workdir / "schemas" / "migrations", migrations, self.rng)
        self.mset = load_migrations(self.dir)
        self.versions = self.mset.versions()
        self.release_bounds = {None, *self.mset.releases.values()}
        scratch = self._new_db("soak_expected")
        with psycopg.connect(scratch, autocommit=True) as conn:
            self.empty = read_catalog(conn)
        self.expected = expected_catalogs(self.mset, scratch)
        (self.dir.parent / "snapshots").mkdir(exist_ok=True)
        (self.dir.parent / "snapshots" / "9.0.0.schema").write_text(render(self.expected[self.mset.latest]))
        self._n = 0
        self.tally = Tally()
        self.full_run_s = self._calibrate()
        log(f"a full upgrade of {len(self.versions)} migrations takes {self.full_run_s:.2f} s here; faults land "
            "at random moments inside it")

    def _calibrate(self) -> float:
        dsn = self._new_db("soak_calibrate")
        t0 = time.monotonic()
        subprocess.run(self._cmd("upgrade", "--migrations-dir", str(self.dir)), env=self._env(dsn), check=True,
                       capture_output=True)
        return time.monotonic() - t0

    # -- plumbing ----------------------------------------------------------------------------
    def _admin(self):
        return psycopg.connect(self.cluster.dsn(), autocommit=True)

    def _new_db(self, name: str) -> str:
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return self.cluster.dsn(dbname=name)

    def _cmd(self, *args: str) -> list[str]:
        if self.binary:
            return [self.binary, *args]
        return [sys.executable, "-m", "common.db.migration_runner", *args]

    def _env(self, dsn: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(RANSOMEYE_DB_DSN=dsn, PYTHONPATH=str(REPO))
        return env

    def _runner_pid(self, dsn: str) -> int | None:
        with psycopg.connect(dsn, autocommit=True) as c:
            row = c.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND application_name LIKE 'ransomeye-migrate%%upgrade%%'").fetchone()
        return row[0] if row else None

    def _wait_quiet(self, dsn: str, timeout: float = 30) -> None:
        """Until no backend of a dead runner is left (the server rolls its transaction back)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._runner_pid(dsn) is None:
                    return
            except psycopg.OperationalError:
                pass
            time.sleep(0.05)
        raise AssertionError("a killed runner's backend never went away")

    # -- one trial -------------------------------------------------------------------------------
    def trial(self, fault: str, atomic: bool) -> None:
        self._n += 1
        t = self.tally
        t.trials += 1
        dsn = self._new_db(f"soak_{self._n}")
        args = ["upgrade", "--migrations-dir", str(self.dir)] + (["--atomic"] if atomic else [])
        proc = subprocess.Popen(self._cmd(*args), env=self._env(dsn), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        delay = self.rng.uniform(0.05, 0.95) * self.full_run_s
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        if proc.poll() is None:
            t.faults[fault] += 1
            if fault == "kill":
                proc.kill()
            elif fault == "terminate":
                pid = self._runner_pid(dsn)
                if pid:
                    with self._admin() as c:
                        c.execute("SELECT pg_terminate_backend(%s)", (pid,))
            elif fault == "immediate":
                self.cluster.stop("immediate")
                self.cluster.start(fsync=True)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        self._wait_quiet(dsn)
        where = f"trial {self._n} ({fault}{', atomic' if atomic else ''}, after {delay:.2f} s, exit {proc.returncode})"
        problems = self.check_state(dsn, atomic)
        t.states_checked += 1
        if problems:
            t.inconsistent += 1
            t.problems.append(f"{where}: {'; '.join(problems)}; runner said: {stderr.strip()[-300:]}")
        rerun = subprocess.run(self._cmd(*args), env=self._env(dsn), capture_output=True, text=True)
        gate = subprocess.run(self._cmd("verify", "--migrations-dir", str(self.dir), "--lock-wait", "5")
                              if self.binary else
                              [sys.executable, "-m", "core.runtime", "check", "--migrations-dir", str(self.dir)],
                              env=self._env(dsn), capture_output=True, text=True)
        open_rows = self._audit(dsn, "SELECT count(*) FROM schema_migration_audit WHERE status = 'started'")
        if rerun.returncode != 0 or gate.returncode != 0 or open_rows:
            t.reruns_failed += 1
            t.problems.append(f"{where}: re-run exit {rerun.returncode}, check exit {gate.returncode}, "
                              f"{open_rows} attempts still open: {(rerun.stderr + gate.stderr).strip()[-300:]}")
        with self._admin() as c:
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(f"soak_{self._n}")))

    def _audit(self, dsn: str, q: str):
        with psycopg.connect(dsn, autocommit=True) as c:
            if c.execute("SELECT to_regclass('schema_migration_audit')").fetchone()[0] is None:
                return 0
            return c.execute(q).fetchone()[0]

    def check_state(self, dsn: str, atomic: bool) -> list[str]:
        problems = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            has_versions, has_audit = history.tables_exist(conn)
            live = read_catalog(conn)
            if not has_versions:
                return [] if live == self.empty else ["no schema_migrations, but the database is not empty"]
            recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
            if recorded != self.versions[: len(recorded)]:
                problems.append(f"versions {recorded[-3:]} are not a prefix of the set")
            current = recorded[-1] if recorded else None
            if atomic and current not in self.release_bounds:
                problems.append(f"atomic upgrade stopped inside a release, at {current}")
            expected = self.expected.get(current)
            if expected is None or expected != live:
                n = len(set(expected.objects.items()) ^ set(live.objects.items())) if expected else -1
                problems.append(f"live structure differs from the expected one at {current} ({n} entries)")
            if has_audit:
                ok = {r[0] for r in conn.execute(
                    "SELECT version FROM schema_migration_audit WHERE direction = 'up' AND status = 'succeeded'")}
                if ok != set(recorded):
                    problems.append(f"audit says {len(ok)} migrations succeeded, schema_migrations has {len(recorded)}")
                still_open = conn.execute(
                    "SELECT count(*) FROM schema_migration_audit WHERE status = 'started'").fetchone()[0]
                if still_open > (len(self.versions) if atomic else 1):
                    problems.append(f"{still_open} attempts left 'started'")
        return problems


def main(argv: list[str] | None = None) -> int:
    from tests.pgcluster import create_cluster
    p = argparse.ArgumentParser(prog="python3 -m tests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--migrations", type=int, default=300, help="generated migrations after the shipped ones")
    p.add_argument("--faults", default=",".join(FAULTS))
    p.add_argument("--mode", choices=["per-migration", "atomic", "both"], default="both")
    p.add_argument("--binary", help="the frozen ransomeye-migrate instead of the Python runner")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    print(f"seed {seed} (replay with --seed {seed})", flush=True)
    faults = [f for f in args.faults.split(",") if f]
    cluster = create_cluster(fsync=True)
    work = Path(tempfile.mkdtemp(prefix="ransomeye-soak-"))
    try:
        soak = Soak(cluster, work, args.migrations, seed, args.binary)
        modes = {"per-migration": [False], "atomic": [True], "both": [False, True]}[args.mode]
        for i in range(args.trials):
            soak.trial(faults[i % len(faults)], modes[i % len(modes)])
            print(f"  {soak.tally.summary()}", flush=True)
        for line in soak.tally.problems:
            print(f"PROBLEM {line}")
        print(soak.tally.summary())
        t = soak.tally
        print(f"{t.states_checked - t.inconsistent} passed, {t.inconsistent + t.reruns_failed} failed")
        return 0 if not t.inconsistent and not t.reruns_failed else 1
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
