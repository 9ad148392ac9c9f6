#!/usr/bin/env bash
# Build ransomeye-migrate (PyInstaller, onedir: see build/README.md) and the release bundle
#   dist/ransomeye-core-<release>.tar.gz
#
#   usage: build/build.sh [--out DIR] [--release-version X.Y.Z] [--from-git REV | --src DIR] [--python PY]
#
#   --out DIR              where the tarball goes (default: <repo>/dist)
#   --release-version V    the bundle's release (default: the newest in schemas/migrations/releases.toml).
#                          A release older than the newest gives a real bundle of that release from
#                          this tree: only the migrations up to its schema version, releases.toml cut
#                          to the releases up to it, and only their snapshots, so Core's check in the
#                          bundle expects V. The Python code is this tree's.
#   --from-git REV         build from the repository at git revision REV (exported with git archive
#                          into a temporary directory; the work tree is not touched). Files the
#                          revision does not have yet (build recipe, installer) come from the work
#                          tree, and BUILDINFO says so.
#   --src DIR              build from the source tree at DIR instead (an unpacked source archive)
#   --python PY            interpreter to freeze with (default: the project's .venv; a different one
#                          gets its own venv under build/work/ with the pinned requirements)
#
# Repeat builds are fast: the frozen binary is cached under build/work/cache/, keyed by a hash of
# the Python sources, the build recipe, the requirements and the interpreter.
#   env: RANSOMEYE_MAX_GLIBC (default 2.35): refuse a binary needing a newer glibc than this.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR="$REPO/build"
WORK="$BUILD_DIR/work"
NAME=ransomeye-migrate
MAX_GLIBC=${RANSOMEYE_MAX_GLIBC:-2.35}
PYINSTALLER_PIN=$(grep -E '^pyinstaller==' "$REPO/requirements-dev.txt" | head -n1)

say() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] error: %s\n' "$1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"; }

OUT="$REPO/dist"
RELEASE=""
FROM_GIT=""
FROM_DIR=""
PY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=${2:?--out needs a directory}; shift 2 ;;
        --release-version) RELEASE=${2:?--release-version needs X.Y.Z}; shift 2 ;;
        --from-git) FROM_GIT=${2:?--from-git needs a revision}; shift 2 ;;
        --src) FROM_DIR=${2:?--src needs a directory}; shift 2 ;;
        --python) PY=${2:?--python needs an interpreter}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" 2 ;;
    esac
done
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ransomeye-build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# --- 1. the source tree ---------------------------------------------------------------------
if [ -n "$FROM_GIT" ]; then
    COMMIT=$(git -C "$REPO" rev-parse --verify --quiet "$FROM_GIT^{commit}") \
        || die "--from-git $FROM_GIT: not a revision of $REPO" 2
    SRC="$TMP/src"
    mkdir -p "$SRC"
    git -C "$REPO" archive --format=tar "$COMMIT" | tar -x -C "$SRC"
    SOURCE_DESC="git $FROM_GIT ($COMMIT)"
elif [ -n "$FROM_DIR" ]; then
    SRC=$(cd "$FROM_DIR" && pwd) || die "--src $FROM_DIR: no such directory" 2
    COMMIT=$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)
    SOURCE_DESC="directory $SRC"
else
    SRC="$REPO"
    COMMIT=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$REPO" status --porcelain -- common core schemas build installer install.sh 2>/dev/null)" ]; then
        COMMIT="$COMMIT-dirty"
    fi
    SOURCE_DESC="work tree"
fi
# The build recipe and the installer: from the source tree when it has them, else the work tree.
recipe_from() { if [ -e "$SRC/$1" ]; then printf '%s' "$SRC"; else printf '%s' "$REPO"; fi; }
RECIPE_ROOT=$(recipe_from build/ransomeye-migrate.spec)
INSTALLER_ROOT=$(recipe_from installer/core/install.sh)
[ -f "$SRC/common/db/migration_runner.py" ] || die "$SOURCE_DESC has no common/db/migration_runner.py"
[ -f "$SRC/schemas/migrations/releases.toml" ] || die "$SOURCE_DESC has no schemas/migrations/releases.toml"

# --- 2. the interpreter and its pinned packages ------------------------------------------------
deps_ok() {  # does interpreter $1 have every pin of $2 (plus PyInstaller)?
    "$1" - "$2" "$PYINSTALLER_PIN" <<'EOF'
import re, sys
from importlib import metadata
lines = open(sys.argv[1]).read().splitlines() + [sys.argv[2]]
for line in lines:
    m = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;#]+)", line)
    if not m:
        continue
    try:
        if metadata.version(m[1]) != m[3]:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if m[2] and "binary" in m[2]:  # psycopg[binary]: the extra is a package of its own
        try:
            metadata.version(m[1] + "-binary")
        except metadata.PackageNotFoundError:
            sys.exit(1)
EOF
}
REQS="$SRC/requirements.txt"
if [ -z "$PY" ] && [ -x "$REPO/.venv/bin/python" ] && deps_ok "$REPO/.venv/bin/python" "$REQS"; then
    BPY="$REPO/.venv/bin/python"
else
    BASE_PY=${PY:-python3}
    command -v "$BASE_PY" >/dev/null || die "interpreter $BASE_PY not found" 20
    key=$( { "$BASE_PY" -c 'import sys; print(sys.executable, sys.version)'; cat "$REQS"; echo "$PYINSTALLER_PIN"; } \
           | sha256sum | cut -c1-16)
    VENV="$WORK/venv-$key"
    if [ ! -x "$VENV/bin/python" ] || ! deps_ok "$VENV/bin/python" "$REQS"; then
        say "creating build venv $VENV with $BASE_PY"
        rm -rf "$VENV"
        "$BASE_PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" "$PYINSTALLER_PIN"
    fi
    BPY="$VENV/bin/python"
fi

# --- 3. the release version -------------------------------------------------------------------
NEWEST=$("$BPY" - "$SRC/schemas/migrations/releases.toml" <<'EOF'
import sys, tomllib
rel = tomllib.load(open(sys.argv[1], "rb")).get("releases", {})
print(max(rel, key=lambda r: tuple(int(p) for p in r.split("."))) if rel else "")
EOF
)
RELEASE=${RELEASE:-$NEWEST}
[ -n "$RELEASE" ] || die "no release in releases.toml and no --release-version" 2
printf '%s' "$RELEASE" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' || die "--release-version $RELEASE is not X.Y.Z" 2
grep -Eq "^\"$RELEASE\"[[:space:]]*=" "$SRC/schemas/migrations/releases.toml" \
    || die "release $RELEASE is not named in schemas/migrations/releases.toml (newest there: ${NEWEST:-none}); the installer upgrades the database to exactly that release" 2

# --- 4. freeze (cached) -----------------------------------------------------------------------
KEY=$( {
    "$BPY" -c 'import sys; print(sys.executable, sys.version)'
    echo "$PYINSTALLER_PIN"
    cat "$REQS" "$RECIPE_ROOT/build/ransomeye-migrate.spec" "$RECIPE_ROOT/build/entry.py"
    (cd "$SRC" && for d in common core; do if [ -d "$d" ]; then find "$d" -name '*.py' -type f; fi; done \
        | LC_ALL=C sort | xargs -r sha256sum)
} | sha256sum | cut -c1-20)
CACHE="$WORK/cache/$KEY"
if [ -x "$CACHE/$NAME/$NAME" ]; then
    say "binary unchanged (cache $KEY)"
else
    say "freezing $NAME with $("$BPY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    rm -rf "$WORK/pyi-$KEY"
    RANSOMEYE_SRC="$SRC" RANSOMEYE_FREEZE_MODE=onedir "$BPY" -m PyInstaller --noconfirm --log-level WARN \
        --distpath "$TMP/dist" --workpath "$WORK/pyi-$KEY" "$RECIPE_ROOT/build/ransomeye-migrate.spec" >&2
    env -i "$TMP/dist/$NAME/$NAME" --help >/dev/null || die "the frozen binary does not run"
    mkdir -p "$WORK/cache"
    rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp" && mv "$TMP/dist/$NAME" "$CACHE.tmp/"
    rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
    rm -rf "$WORK/pyi-$KEY"
    # keep the three newest cache entries
    find "$WORK/cache" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn | tail -n +4 \
        | cut -d' ' -f2- | xargs -r rm -rf
fi
touch "$CACHE"

# glibc floor: the newest GLIBC_x.y symbol version any bundled ELF file needs
GLIBC_FLOOR=$(find "$CACHE/$NAME" -type f \( -name '*.so*' -o -name "$NAME" \) -print0 \
    | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
[ -n "$GLIBC_FLOOR" ] || die "could not read the glibc floor (objdump from binutils missing?)" 20
if [ "$(printf '%s\n%s\n' "$GLIBC_FLOOR" "$MAX_GLIBC" | sort -V | tail -n1)" != "$MAX_GLIBC" ]; then
    die "the binary needs glibc $GLIBC_FLOOR, newer than the supported floor $MAX_GLIBC (RANSOMEYE_MAX_GLIBC); build with an older interpreter (--python)"
fi

# --- 5. the bundle ----------------------------------------------------------------------------
umask 022
TOP="ransomeye-core-$RELEASE"
B="$TMP/bundle/$TOP"
mkdir -p "$B/bin" "$B/installer"
cp "$INSTALLER_ROOT/install.sh" "$B/install.sh"
cp -R "$INSTALLER_ROOT/installer/." "$B/installer/"
cp -a "$CACHE/$NAME/." "$B/bin/"
mkdir -p "$B/schemas"
(cd "$SRC/schemas" && find . -mindepth 1 -name '.*' -prune -o -print | LC_ALL=C sort) | while IFS= read -r p; do
    [ "$p" = "." ] && continue
    if [ -d "$SRC/schemas/$p" ]; then mkdir -p "$B/schemas/$p"; else cp "$SRC/schemas/$p" "$B/schemas/$p"; fi
done
[ -f "$SRC/README.md" ] && cp "$SRC/README.md" "$B/README.md"

# A release older than the newest: cut the schemas to what that release shipped. Migrations newer
# than its schema version, the later releases' lines in releases.toml and their snapshots go.
SCHEMA_VERSION=$("$BPY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["releases"][sys.argv[2]])' \
    "$SRC/schemas/migrations/releases.toml" "$RELEASE")
if [ "$RELEASE" != "$NEWEST" ]; then
    say "release $RELEASE is older than $NEWEST: shipping the migrations up to $SCHEMA_VERSION and the releases up to $RELEASE"
    "$BPY" - "$B/schemas" "$RELEASE" <<'PY' || die "could not cut the schemas to release $RELEASE"
import re, sys, tomllib
from pathlib import Path

schemas, release = Path(sys.argv[1]), sys.argv[2]
key = lambda r: tuple(int(p) for p in r.split("."))
toml = schemas / "migrations" / "releases.toml"
releases = tomllib.loads(toml.read_text())["releases"]
cut = releases[release]
later = {r for r in releases if key(r) > key(release)}
# releases.toml: drop the later releases' lines; comments and the rest stay as written
text = "".join(line for line in toml.read_text().splitlines(keepends=True)
               if not ((m := re.match(r'\s*"(\d+\.\d+\.\d+)"\s*=', line)) and m[1] in later))
kept = tomllib.loads(text)["releases"]
if set(kept) != set(releases) - later:
    sys.exit(f"releases.toml: could not drop {sorted(later)} line by line (left {sorted(kept)})")
toml.write_text(text)
for f in sorted((schemas / "migrations").iterdir()):
    m = re.match(r"migration_(\d{8}_\d{6})_", f.name)
    if m and m[1] > cut:
        f.unlink()
for r in later:
    (schemas / "snapshots" / f"{r}.schema").unlink(missing_ok=True)
PY
fi
# The lint's verdict, by the binary that ships, so an upgrade need not parse the files again
# (common/db/lintrecord.py). A migration the lint refuses stops the build here, not at a customer.
if [ -f "$SRC/common/db/lintrecord.py" ]; then
    "$B/bin/$NAME" lint --record --migrations-dir "$B/schemas/migrations" >"$TMP/lint.log" 2>&1 \
        || { cat "$TMP/lint.log" >&2; die "the migrations of release $RELEASE do not pass the lint (above); nothing was built" 15; }
fi
chmod -R u+rwX,go+rX,go-w "$B"
chmod 0755 "$B/install.sh" "$B/installer/core/install.sh" "$B/bin/$NAME"

pyver() { "$BPY" -c "from importlib.metadata import version; print(version('$1'))"; }
{
    echo "release=$RELEASE"
    echo "git_commit=$COMMIT"
    echo "source=$SOURCE_DESC"
    echo "schema_version=$SCHEMA_VERSION"
    echo "releases=$("$BPY" -c 'import sys, tomllib; print(",".join(tomllib.load(open(sys.argv[1], "rb"))["releases"]))' \
        "$B/schemas/migrations/releases.toml")"
    echo "recipe_from=$([ "$SRC" != "$REPO" ] && [ "$RECIPE_ROOT" = "$SRC" ] && echo "$SOURCE_DESC" || echo "work tree")"
    echo "installer_from=$([ "$SRC" != "$REPO" ] && [ "$INSTALLER_ROOT" = "$SRC" ] && echo "$SOURCE_DESC" || echo "work tree")"
    echo "build_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "freeze_mode=onedir"
    echo "python=$("$BPY" -c 'import platform; print(platform.python_version(), platform.python_implementation())')"
    echo "pyinstaller=$(pyver pyinstaller)"
    echo "psycopg=$(pyver psycopg)"
    echo "psycopg_binary=$(pyver psycopg-binary)"
    echo "libpq=$("$BPY" -c 'import psycopg; v = psycopg.pq.version(); print(f"{v // 10000}.{v % 10000}")')"
    echo "pglast=$(pyver pglast)"
    echo "rich=$(pyver rich)"
    echo "glibc_floor=$GLIBC_FLOOR"
    echo "build_host_glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
    echo "binary_cache_key=$KEY"
} > "$B/BUILDINFO"

(cd "$B" && find . \( -type f -o -type l \) -printf '%P\n' | LC_ALL=C sort \
    | xargs -d '\n' sha256sum) > "$TMP/SHA256SUMS"
mv "$TMP/SHA256SUMS" "$B/SHA256SUMS"

TARBALL="$OUT/$TOP.tar.gz"
tar -C "$TMP/bundle" --sort=name --owner=0 --group=0 --numeric-owner -czf "$TMP/$TOP.tar.gz" "$TOP"
mv -f "$TMP/$TOP.tar.gz" "$TARBALL"
say "built $TARBALL ($(du -h "$TARBALL" | cut -f1), release $RELEASE, glibc >= $GLIBC_FLOOR, $SOURCE_DESC)"
echo "$TARBALL"
