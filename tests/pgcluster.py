"""Start and stop a throwaway PostgreSQL cluster for tests, benchmarks and soaks.

As root the server refuses to run, so initdb and pg_ctl run through ``runuser -u postgres`` on a
directory that user owns. The cluster listens on a private unix socket (and, on request, on
127.0.0.1) and is stopped by its data directory, never by process name.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("RANSOMEYE_PG_BIN", "/usr/lib/postgresql/15/bin"))


class ClusterError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class Cluster:
    base: Path
    port: int
    tcp: bool = False

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user={user} dbname={dbname}"

    def tcp_dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(_as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), *args]),
                              capture_output=True, text=True, check=check)

    def start(self, fsync: bool = False, extra: str = "") -> None:
        opts = (f"-p {self.port} -k {self.socket_dir} "
                f"-c listen_addresses={'127.0.0.1' if self.tcp else chr(39) * 2} "
                f"-c fsync={'on' if fsync else 'off'} -c max_connections=200 {extra}")
        r = self.pg_ctl("-o", opts, "-l", str(self.log), "-w", "-t", "60", "start", check=False)
        if r.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ClusterError(f"pg_ctl start failed ({r.returncode}): {r.stderr.strip()}\n{tail}")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop", check=False)

    def is_running(self) -> bool:
        return self.pg_ctl("status", check=False).returncode == 0

    def destroy(self) -> None:
        if self.datadir.exists():
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def create_cluster(tcp: bool = False, fsync: bool = False, start: bool = True, port: int | None = None,
                   host_auth: str = "trust") -> Cluster:
    """initdb a new cluster in a fresh temporary directory and (by default) start it."""
    initdb = PG_BIN / "initdb"
    if not initdb.exists():
        raise ClusterError(
            f"PostgreSQL server binaries not found at {PG_BIN} (initdb missing). "
            "Install the postgresql-15 package, or set RANSOMEYE_PG_BIN.")
    base = Path(tempfile.mkdtemp(prefix="ransomeye-pg-"))
    os.chmod(base, 0o755)
    (base / "sock").mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(base / "sock", "postgres")
    cluster = Cluster(base=base, port=port or _free_port(), tcp=tcp)
    r = subprocess.run(_as_pg_user([str(initdb), "--no-sync", "--auth-local=trust", f"--auth-host={host_auth}",
                                    "-U", "postgres", "-E", "UTF8",
                                    "--locale=C.UTF-8", "-D", str(cluster.datadir)]),
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise ClusterError(f"initdb failed: {r.stderr.strip()}")
    if start:
        for attempt in range(3):
            try:
                cluster.start(fsync=fsync)
                break
            except ClusterError:
                if attempt == 2:
                    raise
                cluster.port = _free_port()
                time.sleep(0.2)
    return cluster


def create_standby(primary: Cluster, tcp: bool = True, start: bool = True) -> Cluster:
    """A streaming standby of ``primary``: ``pg_basebackup -R -X stream -c fast`` over TCP on
    127.0.0.1, in a fresh temporary directory, started (hot standby) on its own free port.

    The primary must listen on 127.0.0.1 (``create_cluster(tcp=True)``) and allow replication from
    there: initdb's default pg_hba with ``-A trust`` does, and a missing line is added here.
    PostgreSQL 15's defaults (wal_level=replica, max_wal_senders=10) need nothing else.
    """
    if not primary.tcp:
        raise ClusterError("the primary must listen on 127.0.0.1 (create_cluster(tcp=True)) to stream to a standby")
    hba = primary.datadir / "pg_hba.conf"
    lines = hba.read_text().splitlines()
    if not any(ln.split()[:4] == ["host", "replication", "all", "127.0.0.1/32"] for ln in lines if ln.strip()):
        with open(hba, "a") as fh:
            fh.write("host    replication     all             127.0.0.1/32            trust\n")
        primary.pg_ctl("reload")
    base = Path(tempfile.mkdtemp(prefix="ransomeye-pg-standby-"))
    os.chmod(base, 0o755)
    (base / "sock").mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(base / "sock", "postgres")
    standby = Cluster(base=base, port=_free_port(), tcp=tcp)
    r = subprocess.run(_as_pg_user([str(PG_BIN / "pg_basebackup"), "-D", str(standby.datadir), "-R",
                                    "-X", "stream", "-c", "fast", "--no-sync",
                                    "-d", f"host=127.0.0.1 port={primary.port} user=postgres"]),
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise ClusterError(f"pg_basebackup failed ({r.returncode}): {r.stderr.strip()}")
    if start:
        for attempt in range(3):
            try:
                standby.start()
                break
            except ClusterError:
                if attempt == 2:
                    standby.destroy()
                    raise
                standby.port = _free_port()
                time.sleep(0.2)
    return standby
