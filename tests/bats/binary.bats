#!/usr/bin/env bats
# The shipped artefact itself: bin/ransomeye-migrate from the built bundle, its BUILDINFO and
# SHA256SUMS, and how it behaves without Python, without network, and when killed.

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
}

@test "the bundle holds what a release needs, and SHA256SUMS covers every other file" {
    for p in install.sh installer/core/install.sh bin/ransomeye-migrate schemas/migrations/releases.toml \
             schemas/00_core_identity.sql schemas/06_indexes.sql BUILDINFO SHA256SUMS; do
        [ -e "$BUNDLE/$p" ] || fail "missing $p"
    done
    (cd "$BUNDLE" && sha256sum --quiet --strict -c SHA256SUMS)
    local listed present
    listed=$(sed 's/^[0-9a-f]*  //' "$BUNDLE/SHA256SUMS" | LC_ALL=C sort)
    present=$(cd "$BUNDLE" && find . \( -type f -o -type l \) ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort)
    [ "$listed" = "$present" ]
    for key in release git_commit build_time python pyinstaller psycopg libpq pglast rich glibc_floor; do
        grep -q "^$key=." "$BUNDLE/BUILDINFO" || fail "BUILDINFO lacks $key"
    done
    run -0 grep -q "^\"$RELEASE\"" "$BUNDLE/schemas/migrations/releases.toml"
}

@test "the binary's glibc floor is the one BUILDINFO records, and no newer than 2.35" {
    local floor recorded
    recorded=$(sed -n 's/^glibc_floor=//p' "$BUNDLE/BUILDINFO")
    floor=$(find "$BUNDLE/bin" -type f \( -name '*.so*' -o -name ransomeye-migrate \) -print0 \
        | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
    [ "$floor" = "$recorded" ]
    [ "$(printf '%s\n2.35\n' "$floor" | sort -V | tail -n1)" = 2.35 ]
}

@test "runs under env -i with no Python on PATH: help, upgrade, status, check" {
    run -127 env -i PATH=/nonexistent /bin/sh -c 'command -v python3 || command -v python'
    run -0 env -i "$BIN" --help
    assert_output --partial "usage: ransomeye-migrate"
    run -0 env -i "$BIN" check --help
    local db
    db=$(new_db)
    run -0 env -i COLUMNS=200 RANSOMEYE_DB_DSN="$(dsn_for "$db")" "$BIN" upgrade --to "$RELEASE" \
        --migrations-dir "$BUNDLE/schemas/migrations"
    run -0 env -i COLUMNS=200 RANSOMEYE_DB_DSN="$(dsn_for "$db")" "$BIN" status \
        --migrations-dir "$BUNDLE/schemas/migrations"
    assert_output --partial "schema version: $(release_version_of)"
    run -0 env -i RANSOMEYE_DB_DSN="$(dsn_for "$db")" "$BIN" check --migrations-dir "$BUNDLE/schemas/migrations"
}

@test "runs with no network at all (unshare -n), over the unix socket" {
    if ! unshare -n true 2>"$BATS_TEST_TMPDIR/unshare.err"; then
        skip "unshare -n refused here: $(head -n1 "$BATS_TEST_TMPDIR/unshare.err")"
    fi
    local db
    db=$(new_db)
    run -0 unshare -n -- env -i RANSOMEYE_DB_DSN="$(dsn_for "$db")" "$BIN" upgrade --to "$RELEASE" \
        --migrations-dir "$BUNDLE/schemas/migrations"
    [ "$(schema_version "$db")" = "$(release_version_of)" ]
}

# A migration that takes 3 s, to kill the runner in the middle of it.
slow_migrations() {
    local dir="$BATS_TEST_TMPDIR/slow/migrations"
    mkdir -p "$dir"
    printf 'SELECT pg_sleep(3);\nCREATE TABLE committed_after_kill (x int);\n' \
        >"$dir/migration_20250101_000000_slow_up.sql"
    printf 'DROP TABLE committed_after_kill;\n' >"$dir/migration_20250101_000000_slow_down.sql"
    printf '%s' "$dir"
}

# Start the shipped binary on the slow migration in the background (its pid in PID) and return
# once the migration is running on the server.
start_slow_upgrade() {  # start_slow_upgrade DB DIR
    env -i RANSOMEYE_DB_DSN="$(dsn_for "$1")" "$BIN" upgrade --migrations-dir "$2" \
        >"$BATS_TEST_TMPDIR/out" 2>&1 3>&- &
    PID=$!
    for _ in $(seq 50); do
        [ "$(psql_db "$1" -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()")" = 1 ] && return 0
        sleep 0.1
    done
}

# Send SIGNAL during the migration: exit CODE, nothing kept, the attempt audited as interrupted.
assert_signal_rolls_back() {  # assert_signal_rolls_back SIGNAL CODE
    local db dir rc=0
    db=$(new_db)
    dir=$(slow_migrations)
    start_slow_upgrade "$db" "$dir"
    kill -"$1" "$PID"   # the runner installs its own handlers, so a background job's ignored SIGINT does not matter
    wait "$PID" || rc=$?
    [ "$rc" = "$2" ] || fail "exit $rc: $(cat "$BATS_TEST_TMPDIR/out")"
    [ "$(psql_db "$db" -c "SELECT to_regclass('committed_after_kill') IS NULL")" = t ]
    [ "$(psql_db "$db" -c "SELECT count(*) FROM schema_migrations")" = 0 ]
    run -0 psql_db "$db" -c "SELECT version || ' ' || direction || ' ' || status || ' ' || coalesce(error_message, '')
                               FROM schema_migration_audit ORDER BY id"
    assert_output "20250101_000000 up interrupted interrupted by SIG$1"
    run -0 cat "$BATS_TEST_TMPDIR/out"
    assert_output --partial "interrupted by SIG$1"
}

@test "SIGKILL of the shipped binary leaves no process behind and nothing committed (onedir)" {
    local db dir
    db=$(new_db)
    dir=$(slow_migrations)
    start_slow_upgrade "$db" "$dir"
    run -1 pgrep -P "$PID"   # onedir: no child process that could be orphaned
    kill -KILL "$PID"
    wait "$PID" || true
    sleep 4.5
    [ "$(psql_db "$db" -c "SELECT to_regclass('committed_after_kill') IS NULL")" = t ]
    [ "$(psql_db "$db" -c "SELECT count(*) FROM schema_migrations")" = 0 ]
}

@test "SIGTERM of the shipped binary rolls the migration back, records it as interrupted and exits 143" {
    assert_signal_rolls_back TERM 143
}

@test "SIGINT of the shipped binary rolls the migration back, records it as interrupted and exits 130" {
    assert_signal_rolls_back INT 130
}
