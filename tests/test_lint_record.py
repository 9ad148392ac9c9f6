"""The lint record (lint --record, lintrecord.py): it spares an upgrade the parse, and never lets
through a migration the lint refuses."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pglast

from common.db import errors, lintrecord
from common.db.migrations import LINT_RECORD_FILE, load_migrations
from tests.helpers import REPO, cli_env, runner, versions, write_set

CLEAN = {
    "20250102_000000_first": ("CREATE TABLE first (id int PRIMARY KEY);", "DROP TABLE first;"),
    "20250103_000000_second": ("CREATE TABLE second (id int PRIMARY KEY);", "DROP TABLE second;"),
}
COMMITS = ("CREATE TABLE third (id int PRIMARY KEY);\nCOMMIT;\n", "DROP TABLE third;")


def test_fingerprint_is_the_lint_that_runs():
    """Bump LINT_FINGERPRINT whenever lint.py or the pglast pin changes (the value to set is below)."""
    lint_py = REPO / "common" / "db" / "lint.py"
    want = hashlib.sha256(lint_py.read_bytes() + f"pglast=={pglast.__version__}".encode()).hexdigest()[:32]
    assert lintrecord.LINT_FINGERPRINT == want, f"set LINT_FINGERPRINT = \"{want}\" in common/db/lintrecord.py"


def _record(d: Path) -> dict:
    return json.loads((d / LINT_RECORD_FILE).read_text())


def _upgrade_reporting_pglast(d: Path, dsn: str) -> tuple[int, bool]:
    """Run the CLI in a child and report whether it imported pglast (i.e. parsed anything)."""
    code = ("import sys\nfrom common.db import migration_runner\n"
            f"rc = migration_runner.main(['upgrade', '--migrations-dir', {str(d)!r}])\n"
            "print('pglast' in sys.modules)\nsys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(dsn), capture_output=True, text=True)
    return p.returncode, p.stdout.strip().splitlines()[-1] == "True"


def test_record_lists_clean_migrations_with_both_checksums(tmp_path):
    d = write_set(tmp_path / "m", CLEAN)
    r = runner("lint", "--record", "--migrations-dir", str(d), "--json")
    assert r.code == 0, r.stderr
    doc = _record(d)
    mset = load_migrations(d)
    assert doc["lint"] == lintrecord.LINT_FINGERPRINT
    assert doc["clean"] == {m.version: f"{m.checksum}:{m.down_checksum}" for m in mset.migrations}
    assert r.json["record"]["clean"] == 2
    assert load_migrations(d).versions() == mset.versions()  # the record is not a migration file


def test_record_leaves_out_a_migration_with_an_error(tmp_path):
    d = write_set(tmp_path / "m", {**CLEAN, "20250104_000000_third": COMMITS})
    r = runner("lint", "--record", "--migrations-dir", str(d))
    assert r.code == errors.INVALID_SET
    assert sorted(_record(d)["clean"]) == ["20250102_000000", "20250103_000000"]


def test_vouched_upgrade_does_not_parse(tmp_path, db):
    d = write_set(tmp_path / "m", CLEAN)
    assert runner("lint", "--record", "--migrations-dir", str(d)).code == 0
    rc, parsed = _upgrade_reporting_pglast(d, db)
    assert rc == 0 and not parsed
    assert versions(db) == ["20250102_000000", "20250103_000000"]


def test_without_a_record_the_upgrade_lints(tmp_path, db):
    d = write_set(tmp_path / "m", CLEAN)
    rc, parsed = _upgrade_reporting_pglast(d, db)
    assert rc == 0 and parsed


def test_a_file_changed_after_the_record_is_linted_and_refused(tmp_path, db):
    d = write_set(tmp_path / "m", {**CLEAN, "20250104_000000_third": ("CREATE TABLE third (id int);", "DROP TABLE third;")})
    assert runner("lint", "--record", "--migrations-dir", str(d)).code == 0
    (d / "migration_20250104_000000_third_up.sql").write_text(COMMITS[0])
    r = runner("upgrade", "--migrations-dir", str(d), dsn=db)
    assert r.code == errors.INVALID_SET, r.stderr
    assert "transaction-control" in r.stderr and versions(db) == []


def test_a_record_naming_an_erroring_file_as_clean_is_not_trusted_without_matching_checksums(tmp_path, db):
    """A hand-edited record cannot vouch for a file under a checksum it does not have."""
    d = write_set(tmp_path / "m", {**CLEAN, "20250104_000000_third": COMMITS})
    runner("lint", "--record", "--migrations-dir", str(d))
    doc = _record(d)
    doc["clean"]["20250104_000000"] = "0" * 64 + ":" + "0" * 64
    (d / LINT_RECORD_FILE).write_text(json.dumps(doc))
    r = runner("upgrade", "--migrations-dir", str(d), dsn=db)
    assert r.code == errors.INVALID_SET and versions(db) == []


def test_another_lint_or_a_broken_record_means_the_lint_runs(tmp_path, db):
    d = write_set(tmp_path / "m", CLEAN)
    runner("lint", "--record", "--migrations-dir", str(d))
    doc = _record(d)
    doc["lint"] = "0" * 32
    (d / LINT_RECORD_FILE).write_text(json.dumps(doc))
    assert lintrecord.vouched(d) == {}
    rc, parsed = _upgrade_reporting_pglast(d, db)
    assert rc == 0 and parsed
    for junk in ("{not json", "[]", '{"format": 1, "lint": "%s", "clean": 5}' % lintrecord.LINT_FINGERPRINT):
        (d / LINT_RECORD_FILE).write_text(junk)
        assert lintrecord.vouched(d) == {}


def test_record_into_a_read_only_directory_is_a_usage_error(tmp_path):
    d = write_set(tmp_path / "m", CLEAN)
    (d / LINT_RECORD_FILE).mkdir()  # cannot be replaced by a file: the write fails as on a read-only mount
    r = runner("lint", "--record", "--migrations-dir", str(d))
    assert r.code == errors.USAGE and "could not write the lint record" in r.stderr


def test_an_error_no_migration_can_be_blamed_for_vouches_for_none(tmp_path, monkeypatch):
    from common.db import lint, migration_runner
    d = write_set(tmp_path / "m", CLEAN)
    stray = lint.Finding("elsewhere.sql", 1, 1, "syntax-error", "error", "x", "y", "z")
    monkeypatch.setattr(lint, "lint_set", lambda mset, strict=False: [stray])
    assert migration_runner.main(["lint", "--record", "--migrations-dir", str(d)]) == errors.INVALID_SET
    assert _record(d)["clean"] == {}
