#!/usr/bin/env bats
# The installer on its default: a private PostgreSQL cluster under the prefix.

setup_file() {
    load test_helper
    extract_bundle
}

setup() {
    load test_helper
    make_reachable "$BATS_TEST_TMPDIR"
    PREFIX="$BATS_TEST_TMPDIR/prefix"
}

teardown() {
    stop_embedded "$PREFIX"
    if [ -f "$BATS_TEST_TMPDIR/nobody/prefix/pgdata/PG_VERSION" ]; then
        (cd / && runuser -u nobody -- "$PG_BIN/pg_ctl" -D "$BATS_TEST_TMPDIR/nobody/prefix/pgdata" -m immediate -w stop) \
            >/dev/null 2>&1 3>&- || true
    fi
}

@test "fresh install on the embedded default: every path exists, db.conf is 0600, Core's check passes" {
    run -0 installer --prefix "$PREFIX"
    assert_output --partial "[1/8] preflight … ok"
    assert_output --partial "[2/8] database … ok (embedded, new cluster"
    assert_output --partial "[3/8] database version … ok (new database"
    assert_output --partial "[4/8] staging files … ok (copied to $PREFIX/releases/.stage-$RELEASE."
    assert_output --partial "[5/8] installing files … ok (releases/$RELEASE)"
    assert_output --partial "[6/8] applying migrations … ok"
    assert_output --partial "[7/8] checking the schema … ok"
    assert_output --partial "[8/8] switching releases … ok (current -> $RELEASE, receipt written)"

    [ "$(readlink "$PREFIX/current")" = "releases/$RELEASE" ]
    for p in install.sh installer/core/install.sh bin/ransomeye-migrate schemas/migrations/releases.toml \
             BUILDINFO SHA256SUMS; do
        [ -e "$PREFIX/current/$p" ] || fail "missing $PREFIX/current/$p"
    done
    [ -x "$PREFIX/current/bin/ransomeye-migrate" ]
    [ -f "$PREFIX/pgdata/PG_VERSION" ]
    [ -S "$PREFIX/run/.s.PGSQL.5432" ]
    [ -f "$PREFIX/log/install.log" ]
    [ -f "$PREFIX/receipt.json" ]
    [ "$(stat -c %a "$PREFIX/etc/db.conf")" = 600 ]
    if is_root; then
        [ "$(stat -c %U "$PREFIX/pgdata")" = postgres ]
        [ "$(stat -c %U "$PREFIX/run")" = postgres ]
    fi
    # no stage or temporary left behind
    run -0 find "$PREFIX" -maxdepth 2 -name '.stage-*' -o -maxdepth 2 -name '*.tmp*'
    assert_output ""

    run -0 cat "$PREFIX/receipt.json"
    assert_output --partial "\"release\": \"$RELEASE\""
    assert_output --partial "\"schema_version\": \"$(release_version_of)\""
    assert_output --partial '"db": "embedded"'

    # socket only, fsync on: ask the server itself
    run -0 env -i "$PREFIX/current/bin/ransomeye-migrate" status --dsn-file "$PREFIX/etc/db.conf" \
        --migrations-dir "$PREFIX/current/schemas/migrations"
    assert_output --partial "schema version: $(release_version_of)"
    local pw
    pw=$(sed -n 's/.*password=\([0-9a-f]*\).*/\1/p' "$PREFIX/etc/db.conf")
    [ -n "$pw" ]
    run -0 env -i PGPASSWORD="$pw" "$PG_BIN/psql" -X -t -A -h "$PREFIX/run" -U ransomeye -d ransomeye \
        -c "SELECT current_setting('listen_addresses') || '|' || current_setting('fsync')"
    assert_output "|on"

    # Core's check on its own, from the installed binary
    run -0 "$PREFIX/current/bin/ransomeye-migrate" check --dsn-file "$PREFIX/etc/db.conf" \
        --migrations-dir "$PREFIX/current/schemas/migrations"

    # the generated password never reaches the log
    run grep -c -- "$pw" "$PREFIX/log/install.log"
    assert_output 0
}

@test "second run of the same release exits 0 and changes nothing" {
    run -0 installer --prefix "$PREFIX"
    local before versions_before pw
    before=$(listing "$PREFIX")
    pw=$(sed -n 's/.*password=\([0-9a-f]*\).*/\1/p' "$PREFIX/etc/db.conf")
    q() { env -i PGPASSWORD="$pw" "$PG_BIN/psql" -X -t -A -h "$PREFIX/run" -U ransomeye -d ransomeye -c "$1"; }
    versions_before=$(q "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY 1")
    [ -n "$versions_before" ]

    run -0 installer --prefix "$PREFIX"
    assert_output --partial "[2/8] database … ok (embedded, reused)"
    assert_output --partial "[3/8] database version … ok (already at release $RELEASE"
    assert_output --partial "[4/8] staging files … ok (release $RELEASE already installed)"
    assert_output --partial "[6/8] applying migrations … ok (nothing to do"
    assert_output --partial "[8/8] switching releases … ok (current -> $RELEASE (unchanged), receipt unchanged)"

    [ "$(listing "$PREFIX")" = "$before" ] || fail "the prefix changed: $(diff <(echo "$before") <(listing "$PREFIX"))"
    [ "$(q "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY 1")" = "$versions_before" ]
}

@test "a damaged installed copy of the release is replaced whole; a stopped cluster is started again" {
    run -0 installer --prefix "$PREFIX"
    echo "tampered" >>"$PREFIX/releases/$RELEASE/schemas/migrations/releases.toml"
    stop_embedded "$PREFIX"

    run -0 installer --prefix "$PREFIX"
    assert_output --partial "replaced a damaged or different copy"
    assert_output --partial "started the existing cluster"
    (cd "$PREFIX/releases/$RELEASE" && sha256sum --quiet -c SHA256SUMS)
    run -0 find "$PREFIX/releases" -mindepth 1 -maxdepth 1 -name '.*'
    assert_output ""
}

@test "as a non-root user the embedded cluster belongs to and runs as that user" {
    is_root || skip "needs root to switch to another user"
    mkdir -p "$BATS_TEST_TMPDIR/nobody"
    chown nobody: "$BATS_TEST_TMPDIR/nobody"
    run -0 runuser -u nobody -- "$BUNDLE/install.sh" --prefix "$BATS_TEST_TMPDIR/nobody/prefix"
    assert_output --partial "[7/8] checking the schema … ok"
    [ "$(stat -c %U "$BATS_TEST_TMPDIR/nobody/prefix/pgdata")" = nobody ]
    [ "$(stat -c %U "$BATS_TEST_TMPDIR/nobody/prefix/etc/db.conf")" = nobody ]
    [ "$(ps -o user= -p "$(head -n 1 "$BATS_TEST_TMPDIR/nobody/prefix/pgdata/postmaster.pid")")" = nobody ]
}
