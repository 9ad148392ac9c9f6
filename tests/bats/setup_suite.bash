# shellcheck shell=bash
# Once per bats run: the previous release's bundle for the upgrade tests (upgrade.bats), unless
# RANSOMEYE_BUNDLE_PREV names one. Built from this work tree with build/build.sh --release-version
# <the release before the newest in releases.toml>: a real bundle of that release (its migrations,
# releases and snapshots only). The frozen binary comes from the build cache, so this takes ~2 s.

setup_suite() {
    local repo prev out
    [ -n "${RANSOMEYE_BUNDLE_PREV:-}" ] && return 0
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    prev=$(sed -n 's/^"\([0-9]*\.[0-9]*\.[0-9]*\)" *= *"[0-9_]*".*/\1/p' "$repo/schemas/migrations/releases.toml" \
        | sort -V | tail -n 2 | head -n 1)
    out="$BATS_RUN_TMPDIR/prev-bundle"
    mkdir -p "$out"
    if ! RANSOMEYE_BUNDLE_PREV=$(bash "$repo/build/build.sh" --out "$out" --release-version "$prev" 2>"$out/build.log"); then
        cat "$out/build.log" >&2
        return 1
    fi
    export RANSOMEYE_BUNDLE_PREV
}
