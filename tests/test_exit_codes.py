"""The exit-code table is a contract with operators and CI pipelines: changing it is a visible decision."""
import re
from pathlib import Path

from common.db import errors

PINNED = {0: "OK", 1: "INTERNAL", 2: "USAGE", 10: "CONNECT", 11: "LOCK_TIMEOUT", 12: "MIGRATION_FAILED",
          13: "INTEGRITY", 14: "VERSION_CONFLICT", 15: "INVALID_SET", 16: "SCHEMA_DRIFT", 17: "READ_ONLY",
          20: "MISSING_PREREQUISITE", 21: "PREFIX_NOT_WRITABLE", 22: "UPGRADE_ROLLED_BACK", 23: "ROLLBACK_FAILED",
          130: "INTERRUPTED_SIGINT", 143: "INTERRUPTED_SIGTERM"}


def test_exit_code_constants_are_pinned():
    assert {getattr(errors, name): name for name in PINNED.values()} == PINNED
    assert set(errors.EXIT_CODES) == set(PINNED)


def test_every_error_class_maps_to_a_documented_code():
    for cls in [errors.UsageError, errors.ConnectError, errors.LockTimeout, errors.MigrationFailed,
                errors.IntegrityError, errors.VersionConflict, errors.InvalidMigrationSet, errors.SchemaDrift,
                errors.ReadOnlyDatabase]:
        assert cls.exit_code in errors.EXIT_CODES


def test_readme_table_matches_the_code():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\|\s*(\d+)\s*\|", section, re.M)}
    assert documented == set(PINNED)
