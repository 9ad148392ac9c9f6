#!/usr/bin/env bats
# No secret in the installer's output, its log, its receipt, or the process list.

PASSWORD='Sup3r-Secret-Pw-4711'

setup_file() {
    load test_helper
    extract_bundle
    pg_start
    psql_db postgres -c "CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD '$PASSWORD'"
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
    if [ -n "${PS_PID:-}" ]; then kill "$PS_PID" 2>/dev/null || true; wait "$PS_PID" 2>/dev/null || true; fi
}

# Sample every process's command line while the installer runs.
start_ps_sampler() {
    (while :; do ps -eo pid,args >>"$BATS_TEST_TMPDIR/ps.log"; sleep 0.02; done) 3>&- &
    PS_PID=$!
}

assert_no_secret_anywhere() {
    local f
    refute_output --partial "$PASSWORD"
    for f in "$PREFIX/log/install.log" "$PREFIX/receipt.json" "$BATS_TEST_TMPDIR/ps.log"; do
        [ -f "$f" ] || fail "missing $f"
        if grep -q -- "$PASSWORD" "$f"; then fail "the password is in $f"; fi
    done
    # the sampler did see the installer and the runner at work
    grep -q 'install.sh' "$BATS_TEST_TMPDIR/ps.log"
}

@test "password via PGPASSWORD and a DSN file: install works, the password appears nowhere" {
    local db
    db=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$db" pwuser
    start_ps_sampler
    PGPASSWORD="$PASSWORD" run -0 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    kill "$PS_PID"; wait "$PS_PID" 2>/dev/null || true; PS_PID=""
    assert_output --partial "[7/8] checking the schema … ok"
    assert_no_secret_anywhere
    run -1 grep -q -- "$PASSWORD" "$PREFIX/etc/db.conf"
    grep -q 'ransomeye-migrate' "$BATS_TEST_TMPDIR/ps.log"
}

@test "password inside the 0600 DSN file: kept in the 0600 db.conf only" {
    local db
    db=$(new_db)
    (umask 077 && printf '%s password=%s\n' "$(dsn_for "$db" pwuser)" "$PASSWORD" >"$BATS_TEST_TMPDIR/dsn")
    start_ps_sampler
    run -0 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    kill "$PS_PID"; wait "$PS_PID" 2>/dev/null || true; PS_PID=""
    assert_no_secret_anywhere
    [ "$(stat -c %a "$PREFIX/etc/db.conf")" = 600 ]
}

@test "a wrong password: exit 10, and neither password is echoed" {
    local db
    db=$(new_db)
    (umask 077 && printf '%s password=%s\n' "$(dsn_for "$db" pwuser)" "wrong-$PASSWORD" >"$BATS_TEST_TMPDIR/dsn")
    start_ps_sampler
    run -10 installer --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    kill "$PS_PID"; wait "$PS_PID" 2>/dev/null || true; PS_PID=""
    assert_output --partial "cannot connect"
    refute_output --partial "$PASSWORD"
    run -1 grep -q -- "$PASSWORD" "$PREFIX/log/install.log"
    run -1 grep -q -- "$PASSWORD" "$BATS_TEST_TMPDIR/ps.log"
}
