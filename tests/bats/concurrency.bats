#!/usr/bin/env bats
# Installers started at once. On one prefix they take turns (flock on PREFIX/.install.lock, or on
# a file beside a prefix that does not exist yet): the first installs, the others wait and then find
# nothing to do, or exit 11 naming the holder when their --lock-timeout runs out. With different
# prefixes on one database the runner's advisory lock serializes the migrations instead. Either way
# every migration is applied exactly once and nothing else fails.

N_INSTALLERS=8
GATE_KEY=4242   # an advisory lock (one bigint key) the gated release's last migration waits for

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
    PIDS=()
    export RANSOMEYE_CONNECT_RETRIES=0
}

teardown() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    open_gate
    release_lock
    stop_embedded "$PREFIX"
}

# start_installers BUNDLE ARGS...: N_INSTALLERS runs of BUNDLE/install.sh at once; "%i" in an
# argument becomes the run's number. Output in out<i>, exit code in rc<i>.
start_installers() {
    local b="$1" i
    shift
    for i in $(seq "$N_INSTALLERS"); do
        (set +e; "$b/install.sh" "${@//%i/$i}" >"$BATS_TEST_TMPDIR/out$i" 2>&1; echo $? >"$BATS_TEST_TMPDIR/rc$i") 3>&- &
        PIDS+=("$!")
    done
}

wait_installers() {
    wait "${PIDS[@]}" || true   # their exit codes are in rc<i>
    PIDS=()
}

# count_rc CODE: how many runs exited with CODE.  count_out TEXT: how many outputs contain TEXT.
count_rc() { cat "$BATS_TEST_TMPDIR"/rc* | grep -cx "$1" || true; }
count_out() { grep -lF -- "$1" "$BATS_TEST_TMPDIR"/out* | wc -l; }

# wait_for COUNT TEXT: until COUNT outputs contain TEXT (at most 30 s).
wait_for() {
    for _ in $(seq 300); do
        [ "$(count_out "$2")" -ge "$1" ] && return 0
        sleep 0.1
    done
    fail "only $(count_out "$2") of $1 installers got to '$2'"
}

show_outputs() {
    local i
    for i in $(seq "$N_INSTALLERS"); do
        echo "--- installer $i (exit $(cat "$BATS_TEST_TMPDIR/rc$i" 2>/dev/null))"
        cat "$BATS_TEST_TMPDIR/out$i"
    done
}

# assert_each_migration_once N: N rows in schema_migrations, and one 'up' audit row per migration,
# succeeded: no migration ran twice, none was attempted by a run that lost the race.
assert_each_migration_once() {
    [ "$(sql -c "SELECT count(*) FROM schema_migrations")" = "$1" ] \
        || fail "schema_migrations has $(sql -c "SELECT count(*) FROM schema_migrations") rows, not $1"
    [ "$(sql -c "SELECT count(*) FROM schema_migration_audit WHERE direction = 'up'")" = "$1" ] \
        || fail "audit trail: $(sql -c "SELECT version || ' ' || status FROM schema_migration_audit ORDER BY id")"
    [ "$(sql -c "SELECT count(DISTINCT version) FROM schema_migration_audit
                 WHERE direction = 'up' AND status = 'succeeded'")" = "$1" ]
}

core_check() {  # core_check PREFIX: Core's startup check of the installed release
    run -0 "$1/current/bin/ransomeye-migrate" check --dsn-file "$1/etc/db.conf" \
        --migrations-dir "$1/current/schemas/migrations"
}

# gated_release DIR: a copy of this release plus one last migration that waits for the advisory
# lock GATE_KEY, which hold_gate keeps until open_gate. The run that gets the runner's lock first
# holds it inside that migration while the others arrive.
gated_release() {
    copy_bundle "$1"
    make_next_release "$1" "$(release_version_of)" \
        "SET LOCAL lock_timeout = '60s';
SELECT pg_advisory_xact_lock_shared($GATE_KEY);"
}

hold_gate() {  # hold_gate DB
    GATE_DB=$1
    PGAPPNAME=bats-gate PGPASSWORD='' "$PG_BIN/psql" -X -q -h "$PGT_SOCK" -p "$PGT_PORT" -U postgres -d "$1" \
        -c "SELECT pg_advisory_lock($GATE_KEY)" -c "SELECT pg_sleep(120)" >/dev/null 2>&1 3>&- &
    GATE_PID=$!
    for _ in $(seq 50); do
        [ "$(psql_db "$1" -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                                 AND objid = $GATE_KEY AND objsubid = 1
                                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")" = 1 ] \
            && return 0
        sleep 0.1
    done
    fail "the gate lock was not taken"
}

open_gate() {  # end the gate's session (a killed psql leaves it sleeping on the server)
    [ -n "${GATE_PID:-}" ] || return 0
    psql_db "$GATE_DB" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bats-gate'" \
        >/dev/null
    wait "$GATE_PID" 2>/dev/null || true
    GATE_PID=""
}

# hold_lock FILE: a stand-in for an installer at work, holding FILE with flock(1) the way the
# installer does and naming itself in it; exports HOLDER_PID.
hold_lock() {
    flock "$1" sh -c 'printf "pid %s, install by test with the 0.0.0 installer, since now\n" "$$" >"$1"; exec sleep 120' \
        _ "$1" 3>&- &
    LOCK_PID=$!
    for _ in $(seq 50); do
        HOLDER_PID=$(sed -n 's/^pid \([0-9]*\),.*/\1/p' "$1" 2>/dev/null)
        [ -n "$HOLDER_PID" ] && return 0
        sleep 0.1
    done
    fail "the stand-in did not take $1"
}

release_lock() {
    [ -n "${HOLDER_PID:-}" ] && kill "$HOLDER_PID" 2>/dev/null
    if [ -n "${LOCK_PID:-}" ]; then kill "$LOCK_PID" 2>/dev/null || true; wait "$LOCK_PID" 2>/dev/null || true; fi
    HOLDER_PID="" LOCK_PID=""
}

@test "eight installers on one new prefix at once: one initdb, one install, seven wait and find nothing to do" {
    sql() { psql_embedded "$PREFIX" "$@"; }
    start_installers "$BUNDLE" --prefix "$PREFIX"
    wait_installers
    [ "$(count_rc 0)" = "$N_INSTALLERS" ] || fail "$(show_outputs)"

    [ "$(count_out "[2/8] database … ok (embedded, new cluster in $PREFIX/pgdata")" = 1 ] || fail "$(show_outputs)"
    [ "$(grep -c "new cluster in" "$PREFIX/log/install.log")" = 1 ]
    [ "$(count_out "applied in one transaction; schema $(release_version_of), release $RELEASE")" = 1 ]
    [ "$(count_out "[6/8] applying migrations … ok (nothing to do")" = $((N_INSTALLERS - 1)) ]
    # they did queue on the prefix, each naming the installer ahead of it
    [ "$(count_out "[1/8] preflight … waiting up to 60 s for another installer (pid ")" -ge 1 ] || fail "$(show_outputs)"

    assert_each_migration_once "$(migrations_between "$BUNDLE" 00000000_000000 "$(release_version_of)")"
    core_check "$PREFIX"
    [ "$(readlink "$PREFIX/current")" = "releases/$RELEASE" ]
    # no stage, temporary prefix or lock file beside the prefix left behind
    run -0 find "$BATS_TEST_TMPDIR" -maxdepth 1 -name '.*'
    assert_output ""
    run -0 find "$PREFIX/releases" -mindepth 1 -maxdepth 1 -name '.*'
    assert_output ""
}

@test "an installer at work on the prefix: the next one waits --lock-timeout, then exits 11 naming its pid; nothing changed" {
    local pid rc=0
    # a prefix that does not exist yet: the lock is a file beside it
    hold_lock "$BATS_TEST_TMPDIR/.prefix.install.lock"
    run -11 "$BUNDLE/install.sh" --prefix "$PREFIX" --lock-timeout 0.5
    assert_output --partial "[1/8] preflight … waiting up to 0.5 s for another installer (pid $HOLDER_PID, install by test"
    assert_output --partial "error: another installer is working on $PREFIX (pid $HOLDER_PID, "
    assert_output --partial "gave up waiting after 0.5 s. Nothing was changed."
    [ ! -e "$PREFIX" ]
    release_lock

    # an existing prefix: PREFIX/.install.lock; RANSOMEYE_LOCK_TIMEOUT works the same way
    mkdir "$PREFIX"
    hold_lock "$PREFIX/.install.lock"
    run -11 env RANSOMEYE_LOCK_TIMEOUT=0 "$BUNDLE/install.sh" --prefix "$PREFIX"
    assert_output --partial "another installer is working on $PREFIX (pid $HOLDER_PID, "
    run -0 ls -A "$PREFIX"
    assert_output ".install.lock"

    # a signal ends the wait at once (flock waits in the background, so the trap runs)
    "$BUNDLE/install.sh" --prefix "$PREFIX" --lock-timeout 60 >"$BATS_TEST_TMPDIR/out" 2>&1 3>&- &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        grep -q "waiting up to 60 s" "$BATS_TEST_TMPDIR/out" && break
        sleep 0.1
    done
    kill -TERM "$pid"
    SECONDS=0
    wait "$pid" || rc=$?
    [ "$rc" = 143 ] || fail "exit $rc: $(cat "$BATS_TEST_TMPDIR/out")"
    [ "$SECONDS" -le 2 ]
    run -0 cat "$BATS_TEST_TMPDIR/out"
    assert_output --partial "interrupted by SIGTERM while waiting for another installer on $PREFIX; nothing was changed"
    run -1 pgrep -f "flock -w 60"
    run -0 ls -A "$PREFIX"
    assert_output ".install.lock"
}

@test "eight installers, eight prefixes, one existing database: the runner's lock serializes them, all exit 0" {
    local b="$BATS_TEST_TMPDIR/gated" i
    DB=$(new_db)
    sql() { psql_db "$DB" "$@"; }
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$DB"
    gated_release "$b"
    hold_gate "$DB"
    start_installers "$b" --prefix "$BATS_TEST_TMPDIR/p%i" --db-dsn-file "$BATS_TEST_TMPDIR/dsn" --lock-timeout 60
    # all eight in step 6: one holds the runner's lock inside the gated migration, seven wait for it
    wait_for "$N_INSTALLERS" "[6/8] applying migrations … "
    sleep 0.5
    open_gate
    wait_installers
    [ "$(count_rc 0)" = "$N_INSTALLERS" ] || fail "$(show_outputs)"
    [ "$(count_out "applied in one transaction; schema 20990101_000000, release 9.9.9")" = 1 ] || fail "$(show_outputs)"
    [ "$(count_out "[6/8] applying migrations … ok (nothing to do, schema 20990101_000000)")" = $((N_INSTALLERS - 1)) ]

    assert_each_migration_once "$(migrations_between "$b" 00000000_000000 20990101_000000)"
    for i in $(seq "$N_INSTALLERS"); do
        [ "$(readlink "$BATS_TEST_TMPDIR/p$i/current")" = releases/9.9.9 ]
        core_check "$BATS_TEST_TMPDIR/p$i"
    done
}

@test "eight installers, eight prefixes, one database, a tiny --lock-timeout: the seven losers exit 11, nothing else fails" {
    local b="$BATS_TEST_TMPDIR/gated" i winner=""
    DB=$(new_db)
    sql() { psql_db "$DB" "$@"; }
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$DB"
    gated_release "$b"
    hold_gate "$DB"
    start_installers "$b" --prefix "$BATS_TEST_TMPDIR/p%i" --db-dsn-file "$BATS_TEST_TMPDIR/dsn" --lock-timeout 0.2
    # the first to take the runner's lock holds it in the gated migration; the others give up
    for _ in $(seq 300); do
        [ "$(find "$BATS_TEST_TMPDIR" -maxdepth 1 -name 'rc*' | wc -l)" -ge $((N_INSTALLERS - 1)) ] && break
        sleep 0.1
    done
    open_gate
    wait_installers
    [ "$(count_rc 0)" = 1 ] || fail "$(show_outputs)"
    [ "$(count_rc 11)" = $((N_INSTALLERS - 1)) ] || fail "$(show_outputs)"
    [ "$(count_out "[6/8] applying migrations … failed")" = $((N_INSTALLERS - 1)) ]
    [ "$(count_out "error: applying migrations failed (exit 11): another migration run holds the schema lock (pid ")" = $((N_INSTALLERS - 1)) ]
    [ "$(count_out "gave up after 0.2 s. Nothing was changed")" = $((N_INSTALLERS - 1)) ]
    assert_each_migration_once "$(migrations_between "$b" 00000000_000000 20990101_000000)"

    for i in $(seq "$N_INSTALLERS"); do
        if [ "$(cat "$BATS_TEST_TMPDIR/rc$i")" = 0 ]; then
            winner=$i
            [ "$(readlink "$BATS_TEST_TMPDIR/p$i/current")" = releases/9.9.9 ]
            core_check "$BATS_TEST_TMPDIR/p$i"
        else
            # a loser switched nothing; its files wait beside, for the next run
            [ ! -e "$BATS_TEST_TMPDIR/p$i/current" ]
            [ ! -e "$BATS_TEST_TMPDIR/p$i/receipt.json" ]
        fi
    done
    [ -n "$winner" ]
    # a loser run again finds the database where the winner left it
    i=$((winner % N_INSTALLERS + 1))
    run -0 "$b/install.sh" --prefix "$BATS_TEST_TMPDIR/p$i" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    assert_output --partial "[6/8] applying migrations … ok (nothing to do, schema 20990101_000000)"
    core_check "$BATS_TEST_TMPDIR/p$i"
    assert_each_migration_once "$(migrations_between "$b" 00000000_000000 20990101_000000)"
}
