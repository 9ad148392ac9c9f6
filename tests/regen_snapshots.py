"""Regenerate schemas/snapshots/*.schema on a throwaway PostgreSQL cluster.

    python3 -m tests.regen_snapshots [--migrations-dir schemas/migrations]

(Equivalent to ``migration_runner snapshot --write --dsn <a server where you may CREATE DATABASE>``.)
"""
from __future__ import annotations

import sys

from common.db import migration_runner
from tests.pgcluster import create_cluster


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cluster = create_cluster()
    try:
        return migration_runner.main(["snapshot", "--write", "--dsn", cluster.dsn(), *argv])
    finally:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
