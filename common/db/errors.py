"""Typed errors and the one exit-code table shared by the runner, Core's check and the installer.

Every error the library raises is a ``MigrationError`` carrying its exit code, a one-line message
that says what happened and what state the database is in, and a hint that says what to do next.
Only the CLI edge (``migration_runner.main`` / ``core.runtime.main``) turns an error into an exit
code; the library never exits.
"""
from __future__ import annotations

# --- The exit-code table (README "Exit codes"; tests/test_exit_codes.py pins it) -------------
OK = 0
INTERNAL = 1
USAGE = 2
CONNECT = 10
LOCK_TIMEOUT = 11
MIGRATION_FAILED = 12
INTEGRITY = 13
VERSION_CONFLICT = 14
INVALID_SET = 15
SCHEMA_DRIFT = 16
READ_ONLY = 17
# installer-only codes
MISSING_PREREQUISITE = 20
PREFIX_NOT_WRITABLE = 21
UPGRADE_ROLLED_BACK = 22
ROLLBACK_FAILED = 23
# signals
INTERRUPTED_SIGINT = 130
INTERRUPTED_SIGTERM = 143

EXIT_CODES: dict[int, str] = {
    OK: "success, or nothing to do",
    INTERNAL: "internal error (a bug: run again with --debug and report it)",
    USAGE: "usage error (bad command line)",
    CONNECT: "cannot connect to or authenticate with the database",
    LOCK_TIMEOUT: "the migration lock was not acquired in time (another runner holds it)",
    MIGRATION_FAILED: "a migration failed and was rolled back; the database is at the last good version",
    INTEGRITY: "integrity: an applied migration's file changed, or a shipped file fails its checksum",
    VERSION_CONFLICT: "version conflict: unknown or newer version in the database, out-of-order "
    "migration, or Core's expected version differs",
    INVALID_SET: "invalid migration set (file name, duplicate, missing down, unreadable file, "
    "statement that cannot run in a transaction)",
    SCHEMA_DRIFT: "the live schema differs from the expected schema",
    READ_ONLY: "the database is read-only (a standby, or default_transaction_read_only)",
    MISSING_PREREQUISITE: "installer: a required tool or package is missing",
    PREFIX_NOT_WRITABLE: "installer: the install prefix is not writable or lacks space",
    UPGRADE_ROLLED_BACK: "installer: the upgrade failed and the previous release was restored",
    ROLLBACK_FAILED: "installer: the upgrade failed and restoring the previous release failed too",
    INTERRUPTED_SIGINT: "interrupted by SIGINT; the in-flight migration was rolled back",
    INTERRUPTED_SIGTERM: "interrupted by SIGTERM; the in-flight migration was rolled back",
}


class MigrationError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = INTERNAL
    reference = "internal-error"

    def __init__(self, message: str, *, hint: str = "", details: list | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} {self.hint}"

    def to_json(self) -> dict:
        doc = {
            "error": self.reference,
            "exit_code": self.exit_code,
            "message": self.message,
        }
        if self.hint:
            doc["hint"] = self.hint
        if self.details:
            doc["details"] = self.details
        return doc


class UsageError(MigrationError):
    exit_code = USAGE
    reference = "usage"


class ConnectError(MigrationError):
    exit_code = CONNECT
    reference = "cannot-connect"


class LockTimeout(MigrationError):
    exit_code = LOCK_TIMEOUT
    reference = "lock-timeout"


class MigrationFailed(MigrationError):
    exit_code = MIGRATION_FAILED
    reference = "migration-failed"


class IntegrityError(MigrationError):
    exit_code = INTEGRITY
    reference = "integrity"


class ChecksumMismatch(IntegrityError):
    reference = "checksum-mismatch"

    def __init__(self, version: str, recorded: str, actual: str, path: str) -> None:
        super().__init__(
            f"applied migration {version} was changed after it was applied: recorded sha256 "
            f"{recorded[:12]}…, file {path} now has {actual[:12]}…. Nothing was applied.",
            hint="Restore the original file; a change to an applied migration must be a new migration.",
            details=[{"version": version, "recorded": recorded, "actual": actual, "file": path}],
        )
        self.version = version


class VersionConflict(MigrationError):
    exit_code = VERSION_CONFLICT
    reference = "version-conflict"


class InvalidMigrationSet(MigrationError):
    exit_code = INVALID_SET
    reference = "invalid-migration-set"


class SchemaDrift(MigrationError):
    exit_code = SCHEMA_DRIFT
    reference = "schema-drift"


class ReadOnlyDatabase(MigrationError):
    exit_code = READ_ONLY
    reference = "read-only-database"


class Interrupted(KeyboardInterrupt):
    """Raised from the SIGINT/SIGTERM handler.

    A ``KeyboardInterrupt`` subclass on purpose: psycopg cancels the running query on the server
    when a ``KeyboardInterrupt`` reaches its wait loop, so the migration's transaction rolls back
    and the connection stays usable for the audit row that records the interruption.
    """

    reference = "interrupted"

    def __init__(self, signum: int) -> None:
        import signal as _signal

        self.signum = signum
        self.exit_code = 128 + signum
        self.message = f"interrupted by {_signal.Signals(signum).name}"
        super().__init__(self.message)
