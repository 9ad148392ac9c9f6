"""Small helpers shared by the pytest suites: run the CLI as a user would, build migration sets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)


def cli_env(dsn: str | None = None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "RANSOMEYE_DB_DSN"}
    env["PYTHONPATH"] = str(REPO)
    env["COLUMNS"] = "200"
    if dsn is not None:
        env["RANSOMEYE_DB_DSN"] = dsn
    env.update(extra)
    return env


def run_module(module: str, *args: str, dsn: str | None = None, env: dict | None = None,
               timeout: float = 120) -> Result:
    p = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                       env=env or cli_env(dsn), timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)


def runner(*args: str, dsn: str | None = None, env: dict | None = None, timeout: float = 120) -> Result:
    return run_module("common.db.migration_runner", *args, dsn=dsn, env=env, timeout=timeout)


def spawn_runner(*args: str, dsn: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "common.db.migration_runner", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(dsn, **extra))


def write_set(directory: Path, migrations: dict[str, tuple[str, str]], releases: dict[str, str] | None = None) -> Path:
    """migrations: {"20250101_000000_name": (up_sql, down_sql)}"""
    directory.mkdir(parents=True, exist_ok=True)
    for key, (up, down) in migrations.items():
        (directory / f"migration_{key}_up.sql").write_text(up)
        (directory / f"migration_{key}_down.sql").write_text(down)
    if releases:
        body = "[releases]\n" + "".join(f'"{r}" = "{v}"\n' for r, v in releases.items())
        (directory / "releases.toml").write_text(body)
    return directory


def query(dsn: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def scalar(dsn: str, sql: str, params=None):
    rows = query(dsn, sql, params)
    return rows[0][0] if rows else None


def versions(dsn: str) -> list[str]:
    if not scalar(dsn, "SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return []
    return [r[0] for r in query(dsn, "SELECT version FROM schema_migrations ORDER BY version")]


def tables(dsn: str) -> list[str]:
    return [r[0] for r in query(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]


def audit(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT version, direction, status, sqlstate, error_message FROM schema_migration_audit ORDER BY id")
