#!/usr/bin/env bash
# RansomEye Core: install this release bundle. A thin wrapper: the installer proper is
# installer/core/install.sh (see docs/INSTALLER.md, or run with --help).
#
# Run from a source checkout (no SHA256SUMS and bin/ beside this file, build/build.sh present), it
# first builds the release bundle with build/build.sh into a temporary directory, unpacks it, and
# runs that bundle's installer with the same arguments: `./install.sh --prefix ./local --yes`
# works on a fresh checkout. The build needs the project's .venv, or makes its own venv
# (build/README.md).
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

say() { printf 'ransomeye-install: %s\n' "$1"; }

if [ -f "$HERE/SHA256SUMS" ] && [ -d "$HERE/bin" ]; then
    if [ ! -f "$HERE/installer/core/install.sh" ]; then
        # e.g. unpacked from a tarball cut short in transit
        printf 'ransomeye-install: error: %s is not a complete release bundle (missing: installer/core/install.sh); nothing was changed\n' "$HERE" >&2
        printf "ransomeye-install: Was the tarball cut short? 'gzip -t' on it tells; unpack an intact copy.\n" >&2
        exit 13
    fi
    exec bash "$HERE/installer/core/install.sh" "$@"
fi

if [ ! -f "$HERE/build/build.sh" ]; then
    printf 'ransomeye-install: error: %s is neither a release bundle (SHA256SUMS, bin/) nor a source checkout (build/build.sh)\n' "$HERE" >&2
    exit 13
fi

for arg in "$@"; do
    case "$arg" in
        -h|--help) exec bash "$HERE/installer/core/install.sh" --help ;;
    esac
done

TMP=""
CHILD=""
cleanup() { [ -n "$TMP" ] && rm -rf "$TMP"; }
# Pass a signal on to the bundle's installer, which lets the runner roll its migration back. The
# installer runs in the background (so `wait` returns at once on a signal), where bash ignores
# SIGINT, so it is told with SIGTERM either way; the exit code names the signal we got.
forward() {
    local sig="$1" rc
    rc=$([ "$sig" = TERM ] && echo 143 || echo 130)
    if [ -n "$CHILD" ]; then
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD"
    fi
    cleanup
    exit "$rc"
}
trap cleanup EXIT
trap 'forward INT' INT
trap 'forward TERM' TERM

main() {
    local tarball rc bundle
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/ransomeye-source-install.XXXXXX") || {
        printf 'ransomeye-install: error: cannot create a temporary directory in %s\n' "${TMPDIR:-/tmp}" >&2
        return 1
    }
    say "source checkout $HERE: building the release bundle first with build/build.sh"
    # build.sh's own one-line steps ([build] …) are shown; PyInstaller's chatter goes to the log only.
    tarball=$(bash "$HERE/build/build.sh" --out "$TMP" 2> >(tee "$TMP/build.log" | grep --line-buffered '^\[build\]' >&2))
    rc=$?
    if [ "$rc" -ne 0 ] || [ ! -f "$tarball" ]; then
        tail -n 20 "$TMP/build.log" >&2
        printf 'ransomeye-install: error: building the bundle failed (build/build.sh exit %s); nothing was installed\n' "$rc" >&2
        [ "$rc" -ne 0 ] || rc=1
        return "$rc"
    fi
    say "unpacking $(basename "$tarball") into $TMP"
    tar -xzf "$tarball" -C "$TMP" || { printf 'ransomeye-install: error: cannot unpack %s\n' "$tarball" >&2; return 1; }
    bundle=$(find "$TMP" -mindepth 1 -maxdepth 1 -type d -name 'ransomeye-core-*' | head -n 1)
    say "running the bundle's installer: $(basename "$bundle")/install.sh $*"
    bash "$bundle/installer/core/install.sh" "$@" &
    CHILD=$!
    wait "$CHILD"
    rc=$?
    CHILD=""
    return "$rc"
}

main "$@"
