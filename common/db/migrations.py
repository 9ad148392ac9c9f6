"""Discover, read, validate and checksum a migration set. No database in here.

A migration is a pair of files in one directory::

    migration_YYYYMMDD_HHMMSS_<description>_up.sql
    migration_YYYYMMDD_HHMMSS_<description>_down.sql

Its version is ``YYYYMMDD_HHMMSS``. A line of the exact form ``-- ransomeye:include <path>``
is replaced by the text of ``<path>`` (relative to the migration's directory, and resolving inside
the schema root, the migrations directory's parent). That lets the first migration *be* the
immutable v1.0.0 bundle without writing its DDL twice. The checksum is the SHA-256 of the
expanded text, i.e. of exactly the SQL that runs.

Every file is read once; ``load_migrations`` returns the whole validated set or raises
``InvalidMigrationSet`` naming the first file at fault, before anything touches a database.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .errors import InvalidMigrationSet

FILE_RE = re.compile(
    r"^migration_(?P<date>\d{8})_(?P<time>\d{6})_(?P<desc>[a-z0-9][a-z0-9_]*?)_(?P<dir>up|down)\.sql$"
)
VERSION_RE = re.compile(r"^\d{8}_\d{6}$")
INCLUDE_RE = re.compile(r"^--\s*ransomeye:include\s+(?P<path>\S+)\s*$")
RELEASES_FILE = "releases.toml"
LINT_RECORD_FILE = "lint-record.json"  # written by `lint --record`, see lintrecord.py
IGNORED_NAMES = {"README", "README.md", "README.txt"}
BASE = "base"


@dataclass(frozen=True)
class Migration:
    version: str
    description: str
    up_path: Path
    down_path: Path
    up_sql: str
    down_sql: str
    checksum: str
    down_checksum: str

    @property
    def name(self) -> str:
        return f"{self.version}_{self.description}"


@dataclass(frozen=True)
class MigrationSet:
    directory: Path
    migrations: tuple[Migration, ...]
    releases: dict[str, str]  # release (semantic version) -> migration version

    def versions(self) -> list[str]:
        return [m.version for m in self.migrations]

    def by_version(self, version: str) -> Migration | None:
        for m in self.migrations:
            if m.version == version:
                return m
        return None

    @property
    def latest(self) -> str | None:
        return self.migrations[-1].version if self.migrations else None

    def release_of(self, version: str | None) -> str | None:
        """The release whose schema version is exactly ``version``, if one names it."""
        for release, v in self.releases.items():
            if v == version:
                return release
        return None

    @property
    def latest_release(self) -> str | None:
        return self.release_of(self.latest)

    def resolve_target(self, target: str | None) -> str | None:
        """Turn ``--to`` (None, 'base', a migration version or a release) into a migration version."""
        if target is None:
            return self.latest
        if target == BASE:
            return None
        if target in self.releases:
            return self.releases[target]
        if VERSION_RE.match(target):
            if self.by_version(target) is None:
                raise InvalidMigrationSet(
                    f"--to {target}: no migration with that version in {self.directory}.",
                    hint="Run 'status' to list the versions this release ships.",
                )
            return target
        raise InvalidMigrationSet(
            f"--to {target}: not a migration version (YYYYMMDD_HHMMSS), a release "
            f"({', '.join(self.releases) or 'none defined'}) or 'base'."
        )


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _bad(path: Path | str, why: str, hint: str = "") -> InvalidMigrationSet:
    return InvalidMigrationSet(f"{path}: {why}. Nothing was applied.", hint=hint)


def _read_text(path: Path, root: Path, regular: Path | None = None) -> str:
    """Read a regular UTF-8 file that resolves inside ``root`` (``regular``: its resolved path, when
    the caller has already seen a regular file there)."""
    real = regular or Path(os.path.realpath(path))
    if real != root and root not in real.parents:
        raise _bad(path, f"resolves to {real}, outside {root}", "Copy the file into the directory instead of linking to it.")
    if regular is None and not real.is_file():
        raise _bad(path, "is not a regular file")
    try:
        data = real.read_bytes()
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        raise _bad(path, "starts with a UTF-8 byte-order mark", "Save it as UTF-8 without BOM.")
    if b"\x00" in data:
        raise _bad(path, "contains a NUL byte (binary file?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _bad(path, f"is not valid UTF-8 (line {line}, byte {exc.start})", "Convert it to UTF-8.") from None


def _expand(path: Path, text: str, root: Path) -> str:
    if "ransomeye:include" not in text:
        return text
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        m = INCLUDE_RE.match(line.strip())
        if not m:
            out.append(line)
            continue
        target = path.parent / m.group("path")
        included = _read_text(target, root)
        if any(INCLUDE_RE.match(l.strip()) for l in included.splitlines()):
            raise _bad(path, f"line {lineno}: included file {target} has includes of its own (not supported)")
        if included and not included.endswith("\n"):
            included += "\n"
        out.append(included)
    return "".join(out)


_COMMENT_RE = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)


def is_blank_sql(sql: str) -> bool:
    return not _COMMENT_RE.sub("", sql).strip(" \t\r\n;")


def load_migrations(directory: str | os.PathLike) -> MigrationSet:
    """Read and validate the whole set, or raise InvalidMigrationSet naming the file at fault."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidMigrationSet(f"migrations directory {directory} does not exist or is not a directory.")
    root_dir = Path(os.path.realpath(directory))
    schema_root = root_dir.parent
    pairs: dict[str, dict[str, Path]] = {}
    descriptions: dict[str, str] = {}
    releases: dict[str, str] = {}
    resolved: dict[Path, Path] = {}
    for entry in sorted(os.listdir(directory)):
        path = directory / entry
        if entry.startswith(".") or entry in IGNORED_NAMES or entry == LINT_RECORD_FILE:
            continue
        if entry == RELEASES_FILE:
            releases = _load_releases(path, root_dir)
            continue
        m = FILE_RE.match(entry)
        if not m:
            raise _bad(path, "is not a migration file name",
                       "Names are migration_YYYYMMDD_HHMMSS_<description>_up.sql / _down.sql, "
                       "description in lower-case letters, digits and underscores.")
        d, t = m["date"], m["time"]
        try:
            datetime(int(d[:4]), int(d[4:6]), int(d[6:]), int(t[:2]), int(t[2:4]), int(t[4:]))
        except ValueError:
            raise _bad(path, f"{m['date']}_{m['time']} is not a real date and time") from None
        version = f"{m['date']}_{m['time']}"
        if version in descriptions and descriptions[version] != m["desc"]:
            raise _bad(path, f"duplicate version {version} (also used by '{descriptions[version]}')",
                       "Give each migration its own timestamp.")
        descriptions[version] = m["desc"]
        pairs.setdefault(version, {})[m["dir"]] = path
        if stat.S_ISREG(os.lstat(path).st_mode):  # a plain file in the directory: resolved already
            resolved[path] = root_dir / entry
    migrations = []
    for version in sorted(pairs):
        files = pairs[version]
        for needed in ("up", "down"):
            if needed not in files:
                other = files["down" if needed == "up" else "up"]
                raise _bad(other, f"has no matching _{needed}.sql file",
                           "Every migration ships an up and a down.")
        texts = {}
        for d in ("up", "down"):
            raw = _read_text(files[d], root_dir, resolved.get(files[d]))
            texts[d] = _expand(files[d], raw, schema_root)
            if is_blank_sql(texts[d]):
                raise _bad(files[d], "is empty (no SQL statement)")
        migrations.append(Migration(
            version=version, description=descriptions[version],
            up_path=files["up"], down_path=files["down"],
            up_sql=texts["up"], down_sql=texts["down"],
            checksum=sha256(texts["up"]), down_checksum=sha256(texts["down"]),
        ))
    known = {m.version for m in migrations}
    for release, version in releases.items():
        if version not in known:
            raise _bad(directory / RELEASES_FILE, f"release {release} names migration {version}, which is not in the set")
    return MigrationSet(directory=directory, migrations=tuple(migrations), releases=releases)


_SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+$")


def _load_releases(path: Path, root: Path) -> dict[str, str]:
    text = _read_text(path, root)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path, f"is not valid TOML ({exc})") from None
    table = doc.get("releases", {})
    if not isinstance(table, dict):
        raise _bad(path, "[releases] must be a table of \"X.Y.Z\" = \"YYYYMMDD_HHMMSS\"")
    out: dict[str, str] = {}
    for release, version in table.items():
        if not _SEMVER_RE.match(release) or not isinstance(version, str) or not VERSION_RE.match(version):
            raise _bad(path, f"bad release entry {release!r} = {version!r}",
                       "Entries are \"X.Y.Z\" = \"YYYYMMDD_HHMMSS\".")
        out[release] = version
    order = sorted(out, key=lambda r: tuple(int(p) for p in r.split(".")))
    if [out[r] for r in order] != sorted(out.values()):
        raise _bad(path, "release versions and migration versions are not in the same order")
    return {r: out[r] for r in order}
