"""Where the connection string comes from, and connecting with bounded retries.

Order: ``--dsn`` (without a password), else ``--dsn-file`` (a 0600 file), else ``RANSOMEYE_DB_DSN``,
else libpq's own ``PG*`` variables and passfile (an empty conninfo). A password never comes from
the command line, and ``mask`` is the only way a connection string reaches output.
"""
from __future__ import annotations

import getpass
import os
import socket
import stat
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConnectError, ReadOnlyDatabase, UsageError

RUNNER_VERSION = "1.0.0"
APPLICATION_NAME = "ransomeye-migrate"
# SQLSTATEs that mean "the server is not ready yet": worth waiting for.
_RETRY_SQLSTATES = {"57P03", "53300"}  # cannot_connect_now (starting up), too_many_connections


def resolve_dsn(dsn: str | None = None, dsn_file: str | None = None) -> str:
    if dsn:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConnectError(f"the connection string is malformed: {_first_line(exc)}.",
                               hint="Check --dsn; see libpq's connection-string format.") from None
        if params.get("password"):
            raise UsageError("--dsn must not contain a password: command lines are visible to every user "
                             "of the host.", hint="Use PGPASSWORD, a passfile (~/.pgpass) or --dsn-file with mode 0600.")
        return dsn
    if dsn_file:
        return read_dsn_file(dsn_file)
    return os.environ.get("RANSOMEYE_DB_DSN", "")


def read_dsn_file(path: str) -> str:
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as fh:
            text = fh.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read connection file {path}: {exc.strerror}.") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"connection file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}).",
                         hint=f"Run: chmod 600 {path}")
    return text


def mask(dsn: str) -> str:
    """The connection string with any password removed, for messages and logs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<malformed connection string>"
    if "password" in params:
        params["password"] = "********"
    return make_conninfo(**params) if params else "(libpq defaults: PG* variables)"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def describe_target(conn: psycopg.Connection) -> str:
    info = conn.info
    return f"database {info.dbname} on {info.host}:{info.port} as {info.user}"


def connect(dsn: str, *, retries: int = 5, backoff: float = 0.5, connect_timeout: int = 10,
            purpose: str = "", autocommit: bool = True) -> psycopg.Connection:
    """Connect, retrying with exponential backoff while the server is not up yet.

    Authentication failures and malformed strings are not retried. Raises ConnectError (exit 10).
    """
    try:
        params = conninfo_to_dict(dsn) if dsn else {}
    except psycopg.ProgrammingError as exc:
        raise ConnectError(f"the connection string is malformed: {_first_line(exc)}.") from None
    app = f"{APPLICATION_NAME}/{RUNNER_VERSION}{' ' + purpose if purpose else ''} pid={os.getpid()}"
    params.setdefault("connect_timeout", str(connect_timeout))
    params["application_name"] = app[:63]
    # Let the server notice a dead client (SIGKILL, pulled cable) during a long statement and
    # roll its migration back, instead of finishing it for nobody.
    check = "-c client_connection_check_interval=1000"
    params["options"] = f"{params['options']} {check}" if params.get("options") else check
    delay = backoff
    last: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            return psycopg.connect(**params, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            last = exc
            if not _worth_retrying(exc) or attempt == retries:
                break
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        except psycopg.ProgrammingError as exc:
            raise ConnectError(f"the connection string is malformed: {_first_line(exc)}.") from None
    target = mask(dsn) if dsn else "(libpq defaults: PG* variables)"
    text = str(last).lower()
    if "session is read-only" in text or "hot standby" in text:  # target_session_attrs=read-write found no primary
        raise ReadOnlyDatabase(f"no primary among the hosts of {target}: every server that answered is read-only "
                               "(a standby); nothing was changed.",
                               hint="Wait for the failover to finish, or list the primary's host in the connection "
                                    "string.")
    raise ConnectError(f"cannot connect to {target}: {_first_line(last)}.",
                       hint="Check that the server is running and the host, port, user and password "
                            "(PGPASSWORD or passfile) are right; nothing was changed.")


def _worth_retrying(exc: psycopg.OperationalError) -> bool:
    if exc.sqlstate in _RETRY_SQLSTATES:
        return True
    if exc.sqlstate:  # the server answered with an error: auth, unknown database, …
        return False
    text = str(exc).lower()
    # libpq reports these before any server answer; nothing else to go on.
    if "authentication" in text or "password" in text or "does not exist" in text or "role" in text:
        return False
    return True


def ensure_writable(conn: psycopg.Connection) -> None:
    """Refuse a standby or a read-only database before anything is changed (exit 17)."""
    row = conn.execute("SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'").fetchone()
    if row[0] or row[1]:
        what = "a standby (in recovery)" if row[0] else "read-only (default_transaction_read_only)"
        raise ReadOnlyDatabase(
            f"{describe_target(conn)} is {what}; nothing was changed.",
            hint="Point the runner at the primary, e.g. list every host with target_session_attrs=read-write.")


def client_identity() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in a container
        user = str(os.getuid())
    return user, socket.gethostname()
