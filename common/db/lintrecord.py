"""The lint's verdict, recorded next to the migrations it judged, so an upgrade does not parse again
what the build already checked.

``migration_runner lint --record`` writes ``lint-record.json`` into the migrations directory
(build/build.sh runs it with the frozen binary it ships): for every migration without an error
finding, the SHA-256 of its up and down file as they run (includes expanded), under the
fingerprint of the lint that judged them. The verdict is the one ``lint`` gives: each migration
in the context of every migration before it in the set, which is the state the database is in
when the runner applies it (out-of-order migrations are refused).

An upgrade skips the lint only when every planned migration is vouched for by a record with this
runner's fingerprint and the same two checksums it has just computed from the files. Anything else
(no record, another lint, a changed file, a record that does not parse) means the lint runs as
it always did. The record can spare work; it can never let a migration through that the lint
refuses.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from .migrations import LINT_RECORD_FILE, Migration

# SHA-256 (first 32 hex digits) of common/db/lint.py followed by "pglast==<version>". A lint that
# judges differently must not trust an older verdict: tests/test_lint_record.py fails until this
# is updated whenever lint.py or the pglast pin changes.
LINT_FINGERPRINT = "ed8ea1fbd661a136fc7a46321be1a596"
FORMAT = 1


def _key(m: Migration) -> str:
    return f"{m.checksum}:{m.down_checksum}"


def vouched(directory: str | os.PathLike) -> dict[str, str]:
    """version -> "up-sha256:down-sha256" of the migrations the record clears, or {} when there is
    no usable record."""
    try:
        doc = json.loads((Path(directory) / LINT_RECORD_FILE).read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT or doc.get("lint") != LINT_FINGERPRINT:
            return {}
        clean = doc.get("clean")
        return {str(k): str(v) for k, v in clean.items()} if isinstance(clean, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def all_vouched(directory: str | os.PathLike, plan: Iterable[Migration]) -> bool:
    record = vouched(directory)
    return bool(record) and all(record.get(m.version) == _key(m) for m in plan)


def write(directory: str | os.PathLike, migrations: Sequence[Migration], findings: Iterable) -> tuple[Path, int]:
    """Record as clean every migration without an error among ``findings`` (``lint_set``'s, over
    ``migrations``); an error that names none of their files clears none. Written atomically (a
    temporary file renamed over the old record). Returns the path and how many were cleared."""
    directory = Path(directory)
    by_file = {str(p): m.version for m in migrations for p in (m.up_path, m.down_path)}
    failing = {by_file.get(f.file) for f in findings if f.severity == "error"}
    clean = {} if None in failing else {m.version: _key(m) for m in migrations if m.version not in failing}
    doc = {"format": FORMAT, "lint": LINT_FINGERPRINT, "clean": clean}
    fd, tmp = tempfile.mkstemp(prefix=".lint-record.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / LINT_RECORD_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return directory / LINT_RECORD_FILE, len(clean)
