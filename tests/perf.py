"""The benchmark: what the runner costs above the SQL it executes.

    python3 -m tests.perf [--migrations 200] [--repeat 7] [--tables 500] [--binary PATH] [--dbmate PATH]
                          [--markdown FILE]

Starts its own throwaway PostgreSQL (fsync ON, as a customer's would be), generates the workloads,
times whole processes on a fresh database per run, and prints median / min / max and the ratio to
the limit: psql in ONE session with one transaction per file (psql being the real binary, not
Debian's Perl wrapper). The tools compared in one table take turns (one run of each, then the
next round), so a drift of the machine's fsync speed hits them alike. dbmate (the Go peer:
`npm install --no-save dbmate@2.36.0` puts it in node_modules/.bin) runs beside them when it is
there. Each workload
directory gets the lint record the build ships (`lint --record`, outside the timing); one row
shows the upgrade without it. Sizes come from the command line; CI runs it small as a smoke test.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
PSQL = Path(os.environ.get("RANSOMEYE_PG_BIN", "/usr/lib/postgresql/15/bin")) / "psql"


# --- workloads ---------------------------------------------------------------------------------
def simple_workload(directory: Path, n: int) -> Path:
    """Each: CREATE TABLE + CREATE INDEX + INSERT 100 rows; down = DROP TABLE (the issue's yardstick)."""
    directory.mkdir(parents=True)
    for i in range(n):
        v = f"20250101_{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}"
        (directory / f"migration_{v}_t{i:04d}_up.sql").write_text(
            f"CREATE TABLE t{i:04d} (id int PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now());\n"
            f"CREATE INDEX ix_t{i:04d}_name ON t{i:04d} (name);\n"
            f"INSERT INTO t{i:04d} (id, name) SELECT g, 'n' || g FROM generate_series(1, 100) g;\n")
        (directory / f"migration_{v}_t{i:04d}_down.sql").write_text(f"DROP TABLE t{i:04d};\n")
    return directory


def rich_workload(directory: Path, n: int) -> Path:
    """Foreign keys, checks, enums and added columns."""
    directory.mkdir(parents=True)
    for i in range(n):
        v = f"20250101_{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}"
        if i == 0:
            up = ("CREATE TYPE lvl AS ENUM ('low', 'mid', 'high');\n"
                  "CREATE TABLE hosts (id int PRIMARY KEY, name text NOT NULL CHECK (name <> ''));\n"
                  "INSERT INTO hosts SELECT g, 'h' || g FROM generate_series(1, 100) g;\n")
            down = "DROP TABLE hosts;\nDROP TYPE lvl;\n"
        elif i % 4 == 3:
            t = f"r{i - 1:04d}"
            up = f"ALTER TABLE {t} ADD COLUMN note_{i} text NOT NULL DEFAULT 'x';\n"
            down = f"ALTER TABLE {t} DROP COLUMN note_{i};\n"
        else:
            up = (f"CREATE TABLE r{i:04d} (id int PRIMARY KEY, host_id int NOT NULL REFERENCES hosts (id), "
                  f"level lvl NOT NULL DEFAULT 'low', score numeric(5,2) CHECK (score BETWEEN 0 AND 100));\n"
                  f"CREATE INDEX ix_r{i:04d}_host ON r{i:04d} (host_id);\n"
                  f"INSERT INTO r{i:04d} (id, host_id, score) SELECT g, g, g % 100 FROM generate_series(1, 100) g;\n")
            down = f"DROP TABLE r{i:04d};\n"
        (directory / f"migration_{v}_r{i:04d}_up.sql").write_text(up)
        (directory / f"migration_{v}_r{i:04d}_down.sql").write_text(down)
    return directory


def psql_script(directory: Path, direction: str) -> Path:
    files = sorted(directory.glob(f"migration_*_{direction}.sql"), reverse=(direction == "down"))
    script = directory.parent / f"all_{directory.name}_{direction}.psql"
    script.write_text("".join(f"BEGIN;\n\\i {f}\nCOMMIT;\n" for f in files))
    return script


def dbmate_workload(directory: Path) -> Path:
    """The same migrations in dbmate's format: one file each, ``-- migrate:up`` / ``-- migrate:down``."""
    out = directory.parent / f"dbmate_{directory.name}"
    out.mkdir()
    for up in sorted(directory.glob("migration_*_up.sql")):
        version = up.name[len("migration_"):len("migration_") + 15]
        name = up.name[len("migration_") + 16:-len("_up.sql")]
        down = up.with_name(up.name[:-len("_up.sql")] + "_down.sql")
        (out / f"{version.replace('_', '')}_{name}.sql").write_text(
            f"-- migrate:up\n{up.read_text()}\n-- migrate:down\n{down.read_text()}\n")
    return out


def record_lint(directory: Path) -> Path:
    """What build/build.sh does to the migrations it ships (outside any timing)."""
    subprocess.run([sys.executable, "-m", "common.db.migration_runner", "lint", "--record", "--migrations-dir",
                    str(directory)], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), check=True,
                   capture_output=True)
    return directory


def without_lint_record(directory: Path) -> Path:
    out = directory.parent / f"{directory.name}_unrecorded"
    shutil.copytree(directory, out)
    (out / "lint-record.json").unlink(missing_ok=True)
    return out


# --- timing ------------------------------------------------------------------------------------
class Bench:
    def __init__(self, cluster, repeat: int, binary: str | None, dbmate: str | None = None) -> None:
        self.cluster = cluster
        self.repeat = repeat
        self.binary = binary
        self.dbmate = dbmate
        self.rows: list[tuple] = []
        self._n = 0

    def fresh(self) -> str:
        self._n += 1
        name = f"bench_{self._n}"
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return self.cluster.dsn(dbname=name)

    def env(self, dsn: str) -> dict:
        # PYTHONDONTWRITEBYTECODE would make the Python runner compile its modules on every start;
        # an installed Python runner has its bytecode cached, and the frozen binary ships it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(RANSOMEYE_DB_DSN=dsn, PYTHONPATH=str(REPO))
        return env

    def runner_cmd(self, frozen: bool, *args: str) -> list[str]:
        return [self.binary, *args] if frozen else [sys.executable, "-m", "common.db.migration_runner", *args]

    @staticmethod
    def timed(cmd: list[str], env: dict) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    def turns(self, tools: dict) -> dict[str, list[float]]:
        """{name: (prepare, run)}: one run of each tool per round, ``repeat`` rounds."""
        times: dict[str, list[float]] = {name: [] for name in tools}
        for _ in range(self.repeat):
            for name, (prepare, run) in tools.items():
                times[name].append(run(prepare()))
        return times

    def dbmate_url(self, dsn: str) -> str:
        c = self.cluster
        return f"postgres://postgres@/{dsn.split('dbname=')[1].split()[0]}?host={c.socket_dir}&port={c.port}&sslmode=disable"

    def dbmate_cmd(self, dsn: str, d: Path, verb: str) -> list[str]:
        return [self.dbmate, "--url", self.dbmate_url(dsn), "--migrations-dir", str(d), "--no-dump-schema", verb]

    def record(self, group: str, name: str, times: list[float], limit: float | None) -> float:
        med = statistics.median(times)
        self.rows.append((group, name, med, min(times), max(times), med / limit if limit else None))
        print(f"  {group:<28} {name:<44} median {med:7.3f} s   min {min(times):7.3f}   max {max(times):7.3f}"
              + (f"   {med / limit:5.2f}x" if limit else ""), flush=True)
        return med

    # -- the measurements ----------------------------------------------------------------------
    def upgrade_vs_psql(self, label: str, d: Path, unrecorded: bool = False) -> None:
        script = psql_script(d, "up")
        psql = [str(PSQL), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)]
        tools = {"psql, one session, one txn per file (limit)":
                 (self.fresh, lambda dsn: self.timed(psql + ["-d", dsn], self.env(dsn)))}
        for frozen in ([False, True] if self.binary else [False]):
            cmd = self.runner_cmd(frozen, "upgrade", "--migrations-dir", str(d))
            tools[f"{'frozen binary' if frozen else 'Python runner'}: upgrade"] = (
                self.fresh, lambda dsn, cmd=cmd: self.timed(cmd, self.env(dsn)))
        if unrecorded:
            bare = without_lint_record(d)
            cmd = self.runner_cmd(bool(self.binary), "upgrade", "--migrations-dir", str(bare))
            tools[f"{'frozen binary' if self.binary else 'Python runner'}: upgrade, no lint record (lints 2×{len(list(d.glob('*_up.sql')))} files)"] = (
                self.fresh, lambda dsn, cmd=cmd: self.timed(cmd, self.env(dsn)))
        if self.dbmate:
            dm = dbmate_workload(d)
            tools["dbmate 2.36 (Go): up"] = (self.fresh, lambda dsn: self.timed(self.dbmate_cmd(dsn, dm, "up"), self.env(dsn)))
        self.record_turns(label, tools)

    def record_turns(self, label: str, tools: dict) -> None:
        times = self.turns(tools)
        names = list(times)
        limit = self.record(label, names[0], times[names[0]], None)
        self.rows[-1] = self.rows[-1][:5] + (1.0,)
        for name in names[1:]:
            self.record(label, name, times[name], limit)

    def noop(self, d: Path) -> None:
        tools = {}
        for frozen in ([False, True] if self.binary else [False]):
            dsn = self.fresh()
            cmd = self.runner_cmd(frozen, "upgrade", "--migrations-dir", str(d))
            self.timed(cmd, self.env(dsn))
            tools["frozen binary" if frozen else "Python runner"] = (lambda dsn=dsn: dsn,
                                                                     lambda dsn, cmd=cmd: self.timed(cmd, self.env(dsn)))
        if self.dbmate:
            dm = d.parent / f"dbmate_{d.name}"
            dm = dm if dm.is_dir() else dbmate_workload(d)
            dsn = self.fresh()
            self.timed(self.dbmate_cmd(dsn, dm, "up"), self.env(dsn))
            tools["dbmate 2.36 (Go)"] = (lambda dsn=dsn: dsn,
                                         lambda dsn: self.timed(self.dbmate_cmd(dsn, dm, "up"), self.env(dsn)))
        for name, t in self.turns(tools).items():
            self.record("no-op re-run (whole process)", name, t, None)

    def breakdown(self, d: Path) -> None:
        """Where a no-op re-run's time goes: each piece is the difference of two whole-process
        timings (medians), the database part is timed in-process."""
        from common.db import runner
        from common.db.migrations import load_migrations
        dsn = self.fresh()
        mset = load_migrations(d)
        runner.upgrade(mset, runner.Settings(dsn=dsn))
        env = self.env(dsn)
        n = max(self.repeat, 5)

        def proc(*code: str) -> float:
            return statistics.median(self.timed([sys.executable, "-c", "; ".join(code)], env) for _ in range(n))
        quit_now = "os._exit(0)"
        ours = ("from common.db import migration_runner, runner, history, lock, migrations, lintrecord, connection, "
                "output")
        start = proc("import os", quit_now)
        with_psycopg = proc("import os, psycopg", quit_now)
        with_ours = proc("import os, psycopg", ours, quit_now)
        teardown = proc("import os, psycopg", ours) - with_ours
        db = statistics.median(self._timed_call(lambda: runner.upgrade(mset, runner.Settings(dsn=dsn))) for _ in range(n))
        whole = statistics.median(self.timed(self.runner_cmd(False, "upgrade", "--migrations-dir", str(d)), env)
                                  for _ in range(n))
        group = "no-op breakdown (Python runner)"
        pieces = [("interpreter start and exit", start), ("import psycopg", with_psycopg - start),
                  ("import the runner's modules", with_ours - with_psycopg),
                  ("connect, lock, read the state, unlock (in-process)", db)]
        pieces.append(("the rest: arguments, loading and hashing the files", whole - sum(t for _, t in pieces)))
        for name, t in (*pieces, ("whole process", whole),
                        ("interpreter teardown, now skipped (exit_process)", teardown)):
            self.rows.append((group, name, t, None, None, None))
            print(f"  {group:<28} {name:<44} {t:7.3f} s", flush=True)
        if self.binary:
            helps = [self.timed([self.binary, "--help"], env) for _ in range(n)]
            self.record("no-op breakdown (frozen)", "bootloader, interpreter, CLI imports (--help)", helps, None)

    @staticmethod
    def _timed_call(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def downgrade_vs_psql(self, d: Path) -> None:
        up = [str(PSQL), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(psql_script(d, "up"))]
        down = [str(PSQL), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(psql_script(d, "down"))]

        def applied_by_psql():
            dsn = self.fresh()
            subprocess.run(up + ["-d", dsn], check=True, stdout=subprocess.DEVNULL)
            return dsn
        tools = {"psql running the downs (limit)": (applied_by_psql,
                                                    lambda dsn: self.timed(down + ["-d", dsn], self.env(dsn)))}
        for frozen in ([False, True] if self.binary else [False]):
            def applied_by_runner(frozen=frozen):
                dsn = self.fresh()
                subprocess.run(self.runner_cmd(frozen, "upgrade", "--migrations-dir", str(d)), env=self.env(dsn),
                               check=True, capture_output=True)
                return dsn
            cmd = self.runner_cmd(frozen, "downgrade", "--to", "base", "--migrations-dir", str(d))
            tools[f"{'frozen binary' if frozen else 'Python runner'}: downgrade --to base"] = (
                applied_by_runner, lambda dsn, cmd=cmd: self.timed(cmd, self.env(dsn)))
        if self.dbmate:
            dm = d.parent / f"dbmate_{d.name}"
            dm = dm if dm.is_dir() else dbmate_workload(d)
            n = len(list(dm.glob("*.sql")))

            def applied_by_dbmate():
                dsn = self.fresh()
                subprocess.run(self.dbmate_cmd(dsn, dm, "up"), env=self.env(dsn), check=True, capture_output=True)
                return dsn

            def all_rollbacks(dsn):  # dbmate rolls back one migration per process
                t0 = time.perf_counter()
                for _ in range(n):
                    subprocess.run(self.dbmate_cmd(dsn, dm, "rollback"), env=self.env(dsn), check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return time.perf_counter() - t0
            tools[f"dbmate 2.36 (Go): rollback ×{n}"] = (applied_by_dbmate, all_rollbacks)
        self.record_turns("down to base", tools)

    def atomic_vs_per_migration(self, d: Path) -> None:
        from common.db.migrations import load_migrations
        from common.db.snapshots import write_all
        mset = load_migrations(d)
        (d / "releases.toml").write_text(f'[releases]\n"1.0.0" = "{mset.latest}"\n')
        write_all(load_migrations(d), self.cluster.dsn())
        frozen = bool(self.binary)
        tools = {f"upgrade {mode}": (self.fresh, lambda dsn, cmd=self.runner_cmd(
                     frozen, "upgrade", mode, "--migrations-dir", str(d)): self.timed(cmd, self.env(dsn)))
                 for mode in ("--no-atomic", "--atomic")}
        for name, times in self.turns(tools).items():
            self.record("release mode", name, times, None)

    def core_check(self, tables: int, work: Path) -> None:
        from common.db import runner
        from common.db.migrations import load_migrations
        from common.db.snapshots import expected_for, write_all
        from common.db.verify import verify
        shipped = load_migrations(REPO / "schemas" / "migrations")
        dsn = self.fresh()
        runner.upgrade(shipped, runner.Settings(dsn=dsn))
        expected = expected_for(shipped, shipped.latest)
        times = []
        for _ in range(max(self.repeat, 5)):
            times.append(verify(shipped, runner.Settings(dsn=dsn), shipped.latest, expected, lock_wait=0).elapsed_ms / 1000)
        self.record("Core's check (in-process)", "real schema (1.1.0)", times, None)
        cmd = [sys.executable, "-m", "core.runtime", "check"] if not self.binary else [self.binary, "check"]
        self.record("Core's check (whole process)", f"real schema, {'frozen' if self.binary else 'Python'}",
                    [self.timed(cmd + ["--migrations-dir", str(REPO / "schemas" / "migrations")], self.env(dsn))
                     for _ in range(self.repeat)], None)
        d = work / "big" / "migrations"
        d.mkdir(parents=True)
        body = ["CREATE TABLE parent (id int PRIMARY KEY);"]
        for i in range(tables):
            body.append(f"CREATE TABLE big_{i:04d} (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id), "
                        f"name text NOT NULL, score int CONSTRAINT ck_big_{i:04d}_score CHECK (score >= 0), "
                        f"created_at timestamptz NOT NULL DEFAULT now());"
                        f"CREATE INDEX ix_big_{i:04d}_parent ON big_{i:04d} (parent_id);"
                        f"CREATE INDEX ix_big_{i:04d}_name ON big_{i:04d} (name, created_at);")
        (d / "migration_20250101_000000_big_up.sql").write_text("\n".join(body))
        (d / "migration_20250101_000000_big_down.sql").write_text(
            "\n".join(f"DROP TABLE big_{i:04d};" for i in range(tables)) + "\nDROP TABLE parent;")
        (d / "releases.toml").write_text('[releases]\n"1.0.0" = "20250101_000000"\n')
        big = load_migrations(d)
        write_all(big, self.cluster.dsn())
        dsn = self.fresh()
        runner.upgrade(big, runner.Settings(dsn=dsn))
        expected = expected_for(big, big.latest)
        times = [verify(big, runner.Settings(dsn=dsn), big.latest, expected, lock_wait=0).elapsed_ms / 1000
                 for _ in range(max(self.repeat, 5))]
        self.record("Core's check (in-process)", f"generated schema, {tables} tables", times, None)


def markdown(rows: list[tuple], header: str) -> str:
    out = [header, "", "| measurement | what | median (s) | min (s) | max (s) | ÷ limit |", "|---|---|---:|---:|---:|---:|"]
    for g, n, med, lo, hi, ratio in rows:
        lo_hi = " | ".join("" if x is None else f"{x:.3f}" for x in (lo, hi))
        out.append(f"| {g} | {n} | {med:.3f} | {lo_hi} | {'' if ratio is None else f'{ratio:.2f}×'} |")
    return "\n".join(out) + "\n"


def machine() -> str:
    mem = ""
    try:
        mem = f"{int(open('/proc/meminfo').read().split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    pg = subprocess.run([str(PSQL), "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores, {mem}, {platform.platform()}, Python {platform.python_version()}, {pg}, fsync on"


def main(argv: list[str] | None = None) -> int:
    from tests.pgcluster import create_cluster
    p = argparse.ArgumentParser(prog="python3 -m tests.perf", description=__doc__.split("\n\n")[0])
    p.add_argument("--migrations", type=int, default=200)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--tables", type=int, default=500, help="tables in the generated schema for Core's check")
    p.add_argument("--binary", help="the frozen ransomeye-migrate to measure beside the Python runner")
    p.add_argument("--dbmate", default=str(REPO / "node_modules" / ".bin" / "dbmate"),
                   help="dbmate, the peer measured beside the runner (default: %(default)s, where "
                        "'npm install --no-save dbmate@2.36.0' puts it); '' leaves it out")
    p.add_argument("--markdown", help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    cluster = create_cluster(fsync=True)
    work = Path(tempfile.mkdtemp(prefix="ransomeye-perf-"))
    try:
        dbmate = args.dbmate if args.dbmate and os.access(args.dbmate, os.X_OK) else None
        if not dbmate:
            print(f"dbmate not found at {args.dbmate!r} (npm install --no-save dbmate@2.36.0): the peer rows are "
                  "left out", flush=True)
        b = Bench(cluster, args.repeat, args.binary, dbmate)
        simple = record_lint(simple_workload(work / "simple" / "migrations", args.migrations))
        rich = record_lint(rich_workload(work / "rich" / "migrations", args.migrations))
        b.upgrade_vs_psql(f"up, {args.migrations} simple migrations", simple, unrecorded=True)
        b.upgrade_vs_psql(f"up, {args.migrations} FK/check/enum migrations", rich)
        b.noop(simple)
        b.breakdown(simple)
        b.downgrade_vs_psql(simple)
        b.core_check(args.tables, work)
        b.atomic_vs_per_migration(simple)
        text = markdown(b.rows, f"Measured on: {machine()}; {args.repeat} runs each, fresh database per run.")
        print(text)
        if args.markdown:
            Path(args.markdown).write_text(text)
        print(f"{len(b.rows)} passed, 0 failed")
        return 0
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
