#!/usr/bin/env bats
# Each way the installer must fail closed: the one-line reason, the shared exit code, and the
# database or prefix left as it was.

setup_file() {
    load test_helper
    extract_bundle
    pg_start
}

teardown_file() {
    pg_stop
}

setup() {
    load test_helper
    make_reachable "$BATS_TEST_TMPDIR"
    PREFIX="$BATS_TEST_TMPDIR/prefix"
    export RANSOMEYE_CONNECT_RETRIES=0
}

teardown() {
    stop_embedded "$PREFIX"
    if [ -n "${LOCK_PID:-}" ]; then kill "$LOCK_PID" 2>/dev/null || true; wait "$LOCK_PID" 2>/dev/null || true; fi
    if [ -n "${IMMUTABLE:-}" ]; then chattr -i "$IMMUTABLE" 2>/dev/null || true; fi
}

@test "a tampered migration file in the bundle: exit 13 before anything changes" {
    local b="$BATS_TEST_TMPDIR/bundle" db
    copy_bundle "$b"
    local victim
    victim=$(find "$b/schemas/migrations" -name 'migration_*_up.sql' | LC_ALL=C sort | tail -n 1)
    echo "DROP TABLE IF EXISTS evil;" >>"$victim"
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db"
    run -13 "$b/install.sh" --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "[1/8] preflight … failed"
    assert_output --partial "fails its checksums"
    assert_output --partial "schemas/migrations/migration_"
    [ ! -e "$PREFIX" ]
    [ "$(schema_version "$db")" = none ]
}

@test "a file added to the bundle that SHA256SUMS does not list: exit 13" {
    local b="$BATS_TEST_TMPDIR/bundle"
    copy_bundle "$b"
    printf 'SELECT 1;\n' >"$b/schemas/migrations/migration_20990101_000000_sneaky_up.sql"
    run -13 "$b/install.sh" --prefix "$PREFIX"
    assert_output --partial "files not in SHA256SUMS: schemas/migrations/migration_20990101_000000_sneaky_up.sql"
    [ ! -e "$PREFIX" ]
}

@test "a bundle missing a file that SHA256SUMS lists: exit 13 naming it, before anything changes" {
    local b="$BATS_TEST_TMPDIR/bundle" db victim lib
    copy_bundle "$b"
    victim=$(newest_up "$b")
    lib=$(find "$b/bin/_internal" -name 'libssl*' | head -n 1)
    rm "$victim" "$lib"
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db"
    run -13 "$b/install.sh" --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "[1/8] preflight … failed"
    assert_output --partial "the bundle fails its checksums (missing: "
    assert_output --partial "${victim#"$b"/}"
    assert_output --partial "${lib#"$b"/}"
    assert_output --partial "nothing was changed"
    [ ! -e "$PREFIX" ]
    [ "$(schema_version "$db")" = none ]
}

@test "a release tarball cut short in transit: tar fails, and whatever it unpacked refuses to install (13)" {
    local tb size cut dir b ran=0
    tb=$(bundle_tarball)
    size=$(stat -c %s "$tb")
    # half of it (the unpacked tree ends inside bin/), and cut near the end (install.sh is there,
    # the last files are missing or short)
    for cut in $((size / 2)) $((size - 20000)) $((size - 4096)); do
        dir="$BATS_TEST_TMPDIR/cut$cut"
        mkdir -p "$dir"
        head -c "$cut" "$tb" >"$dir.tar.gz"
        run -1 gzip -t "$dir.tar.gz"
        run tar -xzf "$dir.tar.gz" -C "$dir"
        [ "$status" -ne 0 ]
        assert_output --partial "Unexpected EOF in archive"
        b=$(echo "$dir"/ransomeye-core-*)
        [ -d "$b" ]
        if [ -e "$b/install.sh" ]; then
            run -13 "$b/install.sh" --prefix "$PREFIX"
            assert_output --partial "[1/8] preflight … failed"
            assert_output --partial "nothing was changed"
            assert_output --partial "gzip -t"
            ran=$((ran + 1))
        fi
        [ ! -e "$PREFIX" ]
    done
    [ "$ran" -ge 1 ]
    # cut between the wrapper and the installer proper: the wrapper refuses too
    b="$BATS_TEST_TMPDIR/bundle"
    copy_bundle "$b"
    rm -r "$b/installer"
    run -13 "$b/install.sh" --prefix "$PREFIX"
    assert_output --partial "not a complete release bundle (missing: installer/core/install.sh); nothing was changed"
    [ ! -e "$PREFIX" ]
}

@test "database server down: exit 10 with the reason" {
    mkdir -p "$BATS_TEST_TMPDIR/nosock"
    (umask 077 && printf 'host=%s port=5999 user=postgres dbname=x\n' "$BATS_TEST_TMPDIR/nosock" >"$BATS_TEST_TMPDIR/dsn")
    run -10 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "[3/8] database version … failed"
    assert_output --partial "cannot connect"
    [ ! -e "$PREFIX/releases/$RELEASE" ]
    [ ! -e "$PREFIX/current" ]
}

@test "the migration lock held by another session: exit 11 after --lock-timeout" {
    local db
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db"
    psql_db "$db" -c "SELECT pg_advisory_lock($LOCK_KEY1, $LOCK_KEY2)" -c "SELECT pg_sleep(60)" \
        >/dev/null 2>&1 3>&- &
    LOCK_PID=$!
    for _ in $(seq 50); do
        [ "$(psql_db "$db" -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                                  AND classid = $LOCK_KEY1 AND objid = $LOCK_KEY2")" = 1 ] && break
        sleep 0.1
    done
    run -11 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn" --lock-timeout 1
    assert_output --partial "[6/8] applying migrations … failed"
    assert_output --partial "lock"
    # the environment variable works the same way
    run -11 env RANSOMEYE_LOCK_TIMEOUT=0.5 "$BUNDLE/install.sh" --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    [ "$(schema_version "$db")" != "$(release_version_of)" ]
}

@test "a failing migration on a fresh install: exit 12, nothing applied, no current release" {
    local db b="$BATS_TEST_TMPDIR/bundle" last
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db"
    copy_bundle "$b"
    last=$(find "$b/schemas/migrations" -name 'migration_*_up.sql' | LC_ALL=C sort | tail -n 1)
    printf 'SELECT 1/0;\n' >>"$last"
    reseal_bundle "$b"
    run -12 "$b/install.sh" --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "[6/8] applying migrations … failed"
    assert_output --partial "division by zero"
    refute_output --partial "[rollback"
    [ "$(schema_version "$db")" = "" ]
    [ ! -e "$PREFIX/current" ]
    [ ! -e "$PREFIX/receipt.json" ]
}

@test "a failing migration over an installed release: exit 22, the database at the last good version, current unchanged" {
    local db good b="$BATS_TEST_TMPDIR/bundle"
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db"
    run -0 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    good=$(schema_version "$db")
    [ "$good" = "$(release_version_of)" ]

    # a next release: this one plus one migration that breaks on this database
    copy_bundle "$b"
    make_next_release "$b" "$good" $'CREATE TABLE half_done (x int);\nSELECT 1/0;'

    run -22 "$b/install.sh" --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "[6/8] applying migrations … failed"
    assert_output --partial "division by zero"
    assert_output --partial "[rollback 1/3] reverting migrations … ok (nothing to revert"
    assert_output --partial "previous release $RELEASE restored"
    [ "$(schema_version "$db")" = "$good" ]
    [ "$(psql_db "$db" -c "SELECT to_regclass('half_done') IS NULL")" = t ]
    [ "$(readlink "$PREFIX/current")" = "releases/$RELEASE" ]
}

@test "SIGTERM to the installer during a migration: exit 143, rolled back, no process left" {
    local db good b="$BATS_TEST_TMPDIR/bundle" pid rc=0
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db"
    run -0 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    good=$(schema_version "$db")
    copy_bundle "$b"
    make_next_release "$b" "$good" $'SELECT pg_sleep(3);\nCREATE TABLE slow_done (x int);'

    "$b/install.sh" --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn" >"$BATS_TEST_TMPDIR/out" 2>&1 3>&- &
    pid=$!
    for _ in $(seq 100); do
        [ "$(psql_db "$db" -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()")" = 1 ] && break
        sleep 0.1
    done
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    [ "$rc" = 143 ] || fail "exit $rc: $(cat "$BATS_TEST_TMPDIR/out")"
    run -0 cat "$BATS_TEST_TMPDIR/out"
    assert_output --partial "interrupted"
    run -1 pgrep -f "$PREFIX/releases/.*/bin/ransomeye-migrate"
    [ "$(schema_version "$db")" = "$good" ]
    [ "$(readlink "$PREFIX/current")" = "releases/$RELEASE" ]
    [ "$(psql_db "$db" -c "SELECT to_regclass('slow_done') IS NULL")" = t ]
}

@test "a database newer than the release: exit 14, nothing changed" {
    local db
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db"
    run -0 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    psql_db "$db" -c "INSERT INTO schema_migrations (version, description, checksum, execution_ms, runner_version)
                      VALUES ('20990101_000000', 'from_the_future', repeat('0', 64), 0, '9.9.9')"
    run -14 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "[3/8] database version … failed"
    assert_output --partial "20990101_000000"
    [ "$(schema_version "$db")" = 20990101_000000 ]
}

@test "prefix not writable: a file in the way -> 21" {
    touch "$PREFIX"
    run -21 installer --prefix "$PREFIX"
    assert_output --partial "[1/8] preflight … failed"
    assert_output --partial "is not a directory"
}

@test "prefix not writable: a read-only bind mount -> 21, nothing written" {
    mkdir -p "$BATS_TEST_TMPDIR/ro"
    if ! unshare -m true 2>/dev/null; then
        skip "unshare -m refused here, cannot make a private read-only mount"
    fi
    run -21 unshare -m -- bash -c 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && exec "$2" --prefix "$1/ransomeye"' \
        _ "$BATS_TEST_TMPDIR/ro" "$BUNDLE/install.sh"
    assert_output --partial "cannot write to $BATS_TEST_TMPDIR/ro"
    [ -z "$(ls -A "$BATS_TEST_TMPDIR/ro")" ]
}

@test "prefix not writable: an immutable directory (chattr +i) -> 21" {
    mkdir -p "$BATS_TEST_TMPDIR/imm"
    if ! chattr +i "$BATS_TEST_TMPDIR/imm" 2>/dev/null; then
        skip "chattr +i is not supported on this filesystem"
    fi
    IMMUTABLE="$BATS_TEST_TMPDIR/imm"
    run -21 installer --prefix "$BATS_TEST_TMPDIR/imm/ransomeye"
    assert_output --partial "cannot write to $BATS_TEST_TMPDIR/imm"
}

@test "prefix not writable: a non-root user on a directory it does not own -> 21" {
    is_root || skip "needs root to run the installer as another user"
    mkdir -p "$BATS_TEST_TMPDIR/rootonly"
    chmod 0755 "$BATS_TEST_TMPDIR/rootonly"
    run -21 runuser -u nobody -- "$BUNDLE/install.sh" --prefix "$BATS_TEST_TMPDIR/rootonly/ransomeye"
    assert_output --partial "cannot write to $BATS_TEST_TMPDIR/rootonly"
}

@test "missing PostgreSQL server binaries for the embedded default: exit 20 naming the package" {
    run -20 env RANSOMEYE_PG_BIN=/nonexistent/bin "$BUNDLE/install.sh" --prefix "$PREFIX"
    assert_output --partial "install the postgresql-15 package"
    [ ! -e "$PREFIX" ]
}

@test "usage errors: unknown option, and a connection file readable by others -> 2" {
    run -2 installer --bogus
    assert_output --partial "unknown option '--bogus'"
    printf 'host=/x dbname=y\n' >"$BATS_TEST_TMPDIR/dsn"
    chmod 0644 "$BATS_TEST_TMPDIR/dsn"
    run -2 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "chmod 600"
    run -0 installer --help
    assert_output --partial "--db-dsn-file"
}
