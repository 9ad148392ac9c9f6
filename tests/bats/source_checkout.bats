#!/usr/bin/env bats
# The top-level install.sh run from a source checkout (no SHA256SUMS or bin/ beside it): it builds
# the bundle with build/build.sh, unpacks it into a temporary directory, runs that bundle's
# installer with the same arguments, and removes the temporary directory again. And a bundle
# sitting on a noexec mount: its binary cannot run there, so the database version is read from
# the staged copy on the prefix's filesystem.

setup_file() {
    load test_helper
    extract_bundle
    extract_prev_bundle
    pg_start
}

teardown_file() {
    pg_stop
}

setup() {
    load test_helper
    make_reachable "$BATS_TEST_TMPDIR"
    export RANSOMEYE_CONNECT_RETRIES=0
}

teardown() {
    stop_embedded "$BATS_TEST_TMPDIR/local"
}

@test "./install.sh --prefix ./local --yes from a source checkout: builds, installs on the embedded default, cleans up" {
    local tmp="$BATS_TEST_TMPDIR/tmp"
    mkdir -p "$tmp"
    cd "$BATS_TEST_TMPDIR"
    TMPDIR="$tmp" run -0 "$REPO_ROOT/install.sh" --prefix ./local --yes
    assert_output --partial "ransomeye-install: source checkout $REPO_ROOT: building the release bundle first with build/build.sh"
    assert_output --partial "[build] built "
    assert_output --partial "ransomeye-install: running the bundle's installer: ransomeye-core-$RELEASE/install.sh --prefix ./local --yes"
    assert_output --partial "[8/8] switching releases … ok (current -> $RELEASE, receipt written)"
    refute_output --partial "WARNING"   # PyInstaller's chatter stays in the build log
    [ "$(readlink "$BATS_TEST_TMPDIR/local/current")" = "releases/$RELEASE" ]
    run -0 "$BATS_TEST_TMPDIR/local/current/bin/ransomeye-migrate" check --dsn-file "$BATS_TEST_TMPDIR/local/etc/db.conf" \
        --migrations-dir "$BATS_TEST_TMPDIR/local/current/schemas/migrations"
    run -0 ls -A "$tmp"
    assert_output ""
    # --help needs no build
    run -0 "$REPO_ROOT/install.sh" --help
    assert_output --partial "--rollback"
    refute_output --partial "building"
}

@test "a bundle on a noexec mount: the version is checked from the staged copy; an older one still refuses 14 without installing" {
    if ! unshare -m true 2>/dev/null; then
        skip "unshare -m refused here, cannot make a private noexec mount"
    fi
    local ro="$BATS_TEST_TMPDIR/noexec" prefix="$BATS_TEST_TMPDIR/prefix" db before
    mkdir -p "$ro"
    cp -a "$BUNDLE" "$BUNDLE_PREV" "$ro/"
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db"
    in_noexec() {  # in_noexec BUNDLE-NAME ARGS...: run that bundle's installer from the noexec mount
        local name="$1"
        shift
        unshare -m -- bash -c 'mount --bind "$1" "$1" && mount -o remount,noexec,bind "$1" && shift 2 && exec bash "$0" "$@"' \
            "$ro/$name/install.sh" "$ro" _ "$@"
    }
    run -0 in_noexec "$(basename "$BUNDLE")" --prefix "$prefix" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "[3/8] database version … ok (deferred: $ro/$(basename "$BUNDLE")/bin/ransomeye-migrate cannot run there"
    assert_output --partial "[5/8] installing files … ok (releases/$RELEASE, database new database, will be created at release $RELEASE)"
    assert_output --partial "[8/8] switching releases … ok"

    before=$(readlink "$prefix/current")
    run -14 in_noexec "$(basename "$BUNDLE_PREV")" --prefix "$prefix"
    assert_output --partial "[5/8] installing files … failed"
    assert_output --partial "newer than release $PREV_RELEASE"
    [ ! -e "$prefix/releases/$PREV_RELEASE" ]
    [ "$(readlink "$prefix/current")" = "$before" ]
    run -0 find "$prefix/releases" -mindepth 1 -maxdepth 1 -name '.*'
    assert_output ""
}
