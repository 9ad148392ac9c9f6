"""pytest fixtures: one real PostgreSQL server for the session, a fresh database per test.

The suite starts its own throwaway cluster unless RANSOMEYE_TEST_DSN names a server (a
superuser connection string). A missing server is a failure with a clear message, never a skip.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.pgcluster import ClusterError, create_cluster

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MIGRATIONS = REPO / "schemas" / "migrations"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's cluster object, or None when RANSOMEYE_TEST_DSN points at an outside server."""
    if os.environ.get("RANSOMEYE_TEST_DSN"):
        yield None
        return
    try:
        cluster = create_cluster()
    except ClusterError as exc:
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_admin_dsn(pg_cluster) -> str:
    dsn = os.environ.get("RANSOMEYE_TEST_DSN") or pg_cluster.dsn()
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(f"cannot connect to the test PostgreSQL server: {exc}", pytrace=False)
    return dsn


def _dsn_for(admin_dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture
def make_db(pg_admin_dsn):
    """Factory: a new empty database per call; all are dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"t_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        created.append(name)
        return _dsn_for(pg_admin_dsn, name)

    yield make
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(make_db) -> str:
    """The connection string of a fresh, empty database."""
    return make_db()
