#!/usr/bin/env bash
# RansomEye Core installer: installs the release bundle this file ships in.
#
#   install.sh [--prefix DIR] [--db-dsn-file FILE] [--lock-timeout SECONDS] [--yes] [--help]
#
# Six steps, one line each, each failing closed with a one-line reason and the shared exit code
# (docs/INSTALLER.md; common/db/errors.py). The runner's own exit code passes through unchanged.
#   [1/6] preflight            tools, space, writable prefix, bundle checksums; nothing changes before it passes
#   [2/6] installing files     PREFIX/releases/<release> (staged, then renamed), PREFIX/current switched atomically
#   [3/6] database             an existing server (--db-dsn-file / RANSOMEYE_DB_DSN), or an embedded cluster
#   [4/6] applying migrations  ransomeye-migrate upgrade
#   [5/6] checking the schema  ransomeye-migrate check (Core's startup gate)
#   [6/6] receipt              PREFIX/receipt.json, log in PREFIX/log/install.log
#
# Shaped like rustup-init.sh: helpers, one function per step, and `main` on the last line, so
# nothing runs until the whole file is parsed. Tests source it with RANSOMEYE_INSTALLER_ENV=testing.

set -u

# --- exit codes (the shared table, common/db/errors.py) ---------------------------------------
EX_INTERNAL=1
EX_USAGE=2
EX_CONNECT=10
EX_INTEGRITY=13
EX_PREREQUISITE=20
EX_PREFIX=21

STEPS=6
RUNNER_NAME=ransomeye-migrate
DB_NAME=ransomeye
DB_USER=ransomeye

# --- settings (flags and environment) ---------------------------------------------------------
PREFIX=/opt/ransomeye
DSN_FILE=""
ASSUME_YES=no
LOCK_TIMEOUT=${RANSOMEYE_LOCK_TIMEOUT:-}
CONNECT_RETRIES=${RANSOMEYE_CONNECT_RETRIES:-}
PG_BIN=${RANSOMEYE_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${RANSOMEYE_PG_PORT:-5432}

# --- state --------------------------------------------------------------------------------------
BUNDLE_DIR=""
RELEASE=""
DB_KIND=""
SCHEMA_VERSION=""
WORK_DIR=""
STAGE_DIR=""
LOG_FILE=""
CHILD_PID=""
CUR_STEP=""

usage() {
    cat <<EOF
RansomEye Core installer (release ${RELEASE:-from this bundle})

usage: install.sh [options]

  --prefix DIR            install under DIR (default: /opt/ransomeye)
  --db-dsn-file FILE      use an existing PostgreSQL server: FILE (mode 0600) holds a libpq
                          connection string. Or set RANSOMEYE_DB_DSN. PG* variables (PGPASSWORD,
                          PGSSLMODE, ...) apply as usual. Without either, a private PostgreSQL
                          cluster is created under PREFIX/pgdata (socket only, no TCP).
  --lock-timeout SECONDS  wait this long for another migration run's lock (default: the runner's)
  -y, --yes               do not ask for confirmation (never asked without a terminal)
  -h, --help              this text

environment: RANSOMEYE_DB_DSN, RANSOMEYE_PG_BIN (default /usr/lib/postgresql/15/bin),
RANSOMEYE_PG_PORT (socket name of the embedded cluster, default 5432), RANSOMEYE_LOCK_TIMEOUT,
RANSOMEYE_CONNECT_RETRIES.

exit codes: 0 ok, 1 internal, 2 usage, 10 cannot connect, 11 lock timeout, 12 migration failed
and rolled back, 13 integrity (bundle checksum or changed applied migration), 14 version
conflict, 15 invalid migration set, 16 schema drift, 17 read-only database, 20 missing
prerequisite, 21 prefix not writable or no space, 130/143 interrupted.
EOF
}

# --- helpers ------------------------------------------------------------------------------------
log() {
    local line
    line="$(date -u +%Y-%m-%dT%H:%M:%SZ) $*"
    if [ -n "$LOG_FILE" ]; then
        printf '%s\n' "$line" >>"$LOG_FILE" 2>/dev/null || true
    elif [ -n "$WORK_DIR" ]; then
        printf '%s\n' "$line" >>"$WORK_DIR/log.buf" 2>/dev/null || true
    fi
}

say() {
    printf 'ransomeye-install: %s\n' "$1"
    log "$1"
}

# err CODE MESSAGE [HINT]: the one-line reason (and a hint line), then exit with the shared code.
err() {
    local code="$1" message="$2" hint="${3:-}"
    if [ -n "$CUR_STEP" ]; then
        printf 'failed\n'
        log "$CUR_STEP … failed"
        CUR_STEP=""
    fi
    printf 'ransomeye-install: error: %s\n' "$message" >&2
    [ -n "$hint" ] && printf 'ransomeye-install: %s\n' "$hint" >&2
    log "error (exit $code): $message"
    exit "$code"
}

need_cmd() {
    if ! check_cmd "$1"; then
        err "$EX_PREREQUISITE" "need '$1' (command not found)${2:+; install the $2 package}"
    fi
}

check_cmd() {
    command -v "$1" >/dev/null 2>&1
}

# ensure CODE CMD...: run a command that must succeed, else fail with CODE.
ensure() {
    local code="$1"
    shift
    if ! "$@"; then
        err "$code" "command failed: $*"
    fi
}

# ignore CMD...: run a command whose failure does not matter.
ignore() {
    "$@" 2>/dev/null || true
}

step() {
    CUR_STEP="[$1/$STEPS] $2"
    printf '%s … ' "$CUR_STEP"
}

step_ok() {
    local detail="${1:-}"
    printf 'ok%s\n' "${detail:+ ($detail)}"
    log "$CUR_STEP … ok${detail:+ ($detail)}"
    CUR_STEP=""
}

is_root() {
    [ "$(id -u)" = "0" ]
}

# The OS user that owns and runs the embedded cluster.
pg_os_user() {
    if is_root; then printf 'postgres'; else id -un; fi
}

# as_pg CMD...: run as the cluster's OS user, from a directory that user can enter.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

cleanup() {
    if [ -n "$STAGE_DIR" ] && [ -d "$STAGE_DIR" ]; then
        rm -rf "$STAGE_DIR"
    fi
    if [ -n "$WORK_DIR" ] && [ -d "$WORK_DIR" ]; then
        rm -rf "$WORK_DIR"
    fi
}

on_signal() {
    local sig="$1" code=130
    [ "$sig" = "TERM" ] && code=143
    if [ -n "$CHILD_PID" ]; then
        # Let the runner roll its migration back and record the interruption, then pass its code on.
        ignore kill "-$sig" "$CHILD_PID"
        wait "$CHILD_PID"
        code=$?
        CHILD_PID=""
    fi
    [ -n "$CUR_STEP" ] && printf 'interrupted\n'
    printf 'ransomeye-install: interrupted by SIG%s\n' "$sig" >&2
    log "interrupted by SIG$sig (exit $code)"
    exit "$code"
}

# run_child OUT ERR CMD...: run a child in the background so a signal reaches the trap while it
# runs; returns its exit code.
run_child() {
    local out="$1" err_file="$2" rc
    shift 2
    "$@" >"$out" 2>"$err_file" </dev/null &
    CHILD_PID=$!
    wait "$CHILD_PID"
    rc=$?
    CHILD_PID=""
    return "$rc"
}

# sha256 check of a bundle tree: every listed file matches, and no file is missing from the list.
verify_tree() {
    local dir="$1" listed present bad result rc
    [ -f "$dir/SHA256SUMS" ] || { printf 'SHA256SUMS is missing'; return 1; }
    result=$(cd "$dir" && LC_ALL=C sha256sum --strict -c SHA256SUMS 2>&1)
    rc=$?
    if [ "$rc" -ne 0 ]; then
        bad=$(printf '%s\n' "$result" | grep -v ': OK$' | head -n 3 | tr '\n' ';' | sed 's/;$//')
        printf '%s' "${bad:-SHA256SUMS is malformed}"
        return 1
    fi
    listed=$(sed -e 's/^[0-9a-f]\{64\} [ *]//' "$dir/SHA256SUMS" | LC_ALL=C sort)
    present=$(cd "$dir" && find . \( -type f -o -type l \) ! -path ./SHA256SUMS -printf '%P\n' | LC_ALL=C sort)
    if [ "$listed" != "$present" ]; then
        bad=$(printf '%s\n' "$present" | LC_ALL=C comm -23 - <(printf '%s\n' "$listed") | head -n 3 | tr '\n' ' ')
        printf 'files not in SHA256SUMS: %s' "${bad:-(listing differs)}"
        return 1
    fi
    return 0
}

# The nearest existing ancestor of a path (the path itself when it exists).
existing_ancestor() {
    local p="$1"
    while [ ! -e "$p" ] && [ "$p" != "/" ]; do
        p=$(dirname "$p")
    done
    printf '%s' "$p"
}

# Can we create files in DIR? access(2) notices read-only mounts and immutable directories; with
# "probe" a real file is created and removed too (root-squashed NFS and the like). The probe is
# used only where the installer is about to create things anyway, so a re-run touches nothing.
dir_writable() {
    local d="$1" probe
    [ -d "$d" ] && [ -w "$d" ] || return 1
    [ "${2:-}" = "probe" ] || return 0
    probe=$(mktemp "$d/.ransomeye-probe.XXXXXX" 2>/dev/null) || return 1
    rm -f "$probe"
}

buildinfo() {
    sed -n "s/^$1=//p" "$BUNDLE_DIR/BUILDINFO" | head -n 1
}

runner_accepts() {  # runner_accepts BIN VERB FLAG: does `BIN VERB --help` list FLAG?
    "$1" "$2" --help 2>/dev/null | grep -q -- "$3"
}

# --- arguments ----------------------------------------------------------------------------------
parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --prefix) [ $# -ge 2 ] || err "$EX_USAGE" "--prefix needs a directory"; PREFIX="$2"; shift 2 ;;
            --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
            --db-dsn-file) [ $# -ge 2 ] || err "$EX_USAGE" "--db-dsn-file needs a file"; DSN_FILE="$2"; shift 2 ;;
            --db-dsn-file=*) DSN_FILE="${1#--db-dsn-file=}"; shift ;;
            --lock-timeout) [ $# -ge 2 ] || err "$EX_USAGE" "--lock-timeout needs seconds"; LOCK_TIMEOUT="$2"; shift 2 ;;
            --lock-timeout=*) LOCK_TIMEOUT="${1#--lock-timeout=}"; shift ;;
            -y|--yes) ASSUME_YES=yes; shift ;;
            -h|--help) usage; exit 0 ;;
            *) err "$EX_USAGE" "unknown option '$1' (see --help)" ;;
        esac
    done
    [ -n "$PREFIX" ] || err "$EX_USAGE" "--prefix is empty"
    case "$PREFIX" in
        /*) ;;
        *) PREFIX="$(pwd)/$PREFIX" ;;
    esac
    PREFIX="${PREFIX%/}"
    case "$PREFIX" in
        *[[:space:]\'\"\\]*) err "$EX_USAGE" "--prefix must not contain spaces, quotes or backslashes: $PREFIX" ;;
    esac
    if [ -n "$LOCK_TIMEOUT" ]; then
        printf '%s' "$LOCK_TIMEOUT" | grep -Eq '^[0-9]+(\.[0-9]+)?$' \
            || err "$EX_USAGE" "--lock-timeout must be a number of seconds, not '$LOCK_TIMEOUT'"
    fi
    if [ -n "$CONNECT_RETRIES" ]; then
        printf '%s' "$CONNECT_RETRIES" | grep -Eq '^[0-9]+$' \
            || err "$EX_USAGE" "RANSOMEYE_CONNECT_RETRIES must be a whole number"
    fi
    printf '%s' "$PG_PORT" | grep -Eq '^[0-9]+$' || err "$EX_USAGE" "RANSOMEYE_PG_PORT must be a port number"
}

confirm() {
    local answer=""
    [ "$ASSUME_YES" = "yes" ] && return 0
    # Never wait for input without a terminal: no prompt, just proceed.
    if [ -t 0 ] && [ -t 1 ]; then
        printf 'Install RansomEye Core %s into %s? [y/N] ' "$RELEASE" "$PREFIX"
        read -r answer || answer=""
        case "$answer" in
            y|Y|yes|YES) return 0 ;;
            *) say "not installing (answer was not yes); run with --yes to skip this question"; exit 0 ;;
        esac
    fi
}

# --- step 1: preflight --------------------------------------------------------------------------
preflight() {
    local cmd anc need_kb avail_kb why sock opts d mode
    step 1 "preflight"
    for cmd in sha256sum mkdir cp mv ln rm chmod df du date sed grep sort comm find mktemp readlink cmp tr head id dirname; do
        need_cmd "$cmd" coreutils
    done

    # the bundle, before anything else is looked at
    if [ ! -f "$BUNDLE_DIR/BUILDINFO" ] || [ ! -f "$BUNDLE_DIR/SHA256SUMS" ] \
        || [ ! -x "$BUNDLE_DIR/bin/$RUNNER_NAME" ] || [ ! -d "$BUNDLE_DIR/schemas/migrations" ]; then
        err "$EX_INTEGRITY" "$BUNDLE_DIR is not a complete release bundle (BUILDINFO, SHA256SUMS, bin/$RUNNER_NAME, schemas/migrations); build one with build/build.sh"
    fi
    if ! why=$(verify_tree "$BUNDLE_DIR"); then
        err "$EX_INTEGRITY" "the bundle fails its checksums: $why; nothing was changed. Use an intact copy of the release."
    fi
    RELEASE=$(buildinfo release)
    printf '%s' "$RELEASE" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' \
        || err "$EX_INTEGRITY" "BUILDINFO names no valid release ('$RELEASE')"

    # the database source
    if [ -n "$DSN_FILE" ]; then
        if [ ! -f "$DSN_FILE" ] || [ ! -r "$DSN_FILE" ]; then
            err "$EX_USAGE" "cannot read the connection file $DSN_FILE"
        fi
        if [ -n "$(find "$DSN_FILE" -maxdepth 0 -perm /077 2>/dev/null)" ]; then
            err "$EX_USAGE" "connection file $DSN_FILE is readable by others; run: chmod 600 $DSN_FILE"
        fi
        DB_KIND=external
    elif [ -n "${RANSOMEYE_DB_DSN:-}" ]; then
        DB_KIND=external
    else
        DB_KIND=embedded
        for cmd in initdb pg_ctl psql; do
            [ -x "$PG_BIN/$cmd" ] || err "$EX_PREREQUISITE" "the embedded database needs PostgreSQL's server binaries ($PG_BIN/$cmd is missing): install the postgresql-15 package, set RANSOMEYE_PG_BIN, or give an existing server with --db-dsn-file"
        done
        if is_root; then
            need_cmd runuser util-linux
            id postgres >/dev/null 2>&1 \
                || err "$EX_PREREQUISITE" "the embedded database runs as the 'postgres' OS user, which does not exist: install the postgresql-15 package"
        fi
        sock="$PREFIX/run/.s.PGSQL.$PG_PORT"
        [ "${#sock}" -le 107 ] || err "$EX_PREFIX" "the prefix is too long for the embedded database's unix socket ($sock is ${#sock} bytes, the limit is 107); choose a shorter --prefix"
    fi

    # the prefix: writable, executable, enough space
    if [ -e "$PREFIX" ] && [ ! -d "$PREFIX" ]; then
        err "$EX_PREFIX" "$PREFIX exists and is not a directory; remove it or choose another --prefix"
    fi
    anc=$(existing_ancestor "$PREFIX")
    if [ "$anc" = "$PREFIX" ]; then mode=""; else mode=probe; fi
    dir_writable "$anc" "$mode" || err "$EX_PREFIX" "cannot write to $anc (read-only, immutable or not ours); nothing was changed. Choose a writable --prefix or fix the permissions."
    for d in releases etc log run; do
        if [ -e "$PREFIX/$d" ]; then
            dir_writable "$PREFIX/$d" || err "$EX_PREFIX" "cannot write to $PREFIX/$d; nothing was changed"
        fi
    done
    if check_cmd findmnt; then
        opts=$(findmnt -n -o OPTIONS -T "$anc" 2>/dev/null || true)
        case ",$opts," in
            *,noexec,*) err "$EX_PREFIX" "$anc is on a filesystem mounted noexec, so the installed binary could not run; choose another --prefix" ;;
        esac
    fi
    if [ "$DB_KIND" = "embedded" ] && is_root; then
        as_pg test -x "$anc" \
            || err "$EX_PREFIX" "the postgres OS user cannot reach $anc (a parent directory is not searchable by others); choose another --prefix or chmod o+x the parents"
    fi
    need_kb=$(du -sk "$BUNDLE_DIR" | cut -f1)
    [ -d "$PREFIX/releases/$RELEASE" ] && need_kb=0
    if [ "$DB_KIND" = "embedded" ] && [ ! -f "$PREFIX/pgdata/PG_VERSION" ]; then
        need_kb=$((need_kb + 100 * 1024))
    fi
    need_kb=$((need_kb + 10 * 1024))
    avail_kb=$(df -Pk "$anc" | sed -n '2p' | tr -s ' ' | cut -d' ' -f4)
    case "$avail_kb" in ''|*[!0-9]*) avail_kb=0 ;; esac
    [ "$avail_kb" -ge "$need_kb" ] \
        || err "$EX_PREFIX" "not enough space under $anc: ${avail_kb} KiB free, ${need_kb} KiB needed"
    step_ok "release $RELEASE, $DB_KIND database"
}

# --- step 2: files ------------------------------------------------------------------------------
install_files() {
    local rel="$PREFIX/releases/$RELEASE" why old="" detail="already installed"
    step 2 "installing files"
    ensure "$EX_PREFIX" mkdir -p "$PREFIX/releases" "$PREFIX/etc" "$PREFIX/log"
    ensure "$EX_PREFIX" chmod 0700 "$PREFIX/etc"
    LOG_FILE="$PREFIX/log/install.log"
    if [ -f "$WORK_DIR/log.buf" ]; then
        cat "$WORK_DIR/log.buf" >>"$LOG_FILE" 2>/dev/null || err "$EX_PREFIX" "cannot write $LOG_FILE"
        rm -f "$WORK_DIR/log.buf"
    fi
    log "installing release $RELEASE from $BUNDLE_DIR into $PREFIX (user $(id -un))"

    if [ -d "$rel" ] && cmp -s "$rel/SHA256SUMS" "$BUNDLE_DIR/SHA256SUMS" && verify_tree "$rel" >/dev/null; then
        : # the same release, intact: nothing to copy
    else
        detail="copied"
        STAGE_DIR=$(mktemp -d "$PREFIX/releases/.stage-$RELEASE.XXXXXX") \
            || err "$EX_PREFIX" "cannot create a staging directory in $PREFIX/releases"
        if ! cp -a "$BUNDLE_DIR/." "$STAGE_DIR/" 2>"$WORK_DIR/cp.err"; then
            err "$EX_PREFIX" "copying the release failed ($(head -n 1 "$WORK_DIR/cp.err")); nothing was installed"
        fi
        if ! why=$(verify_tree "$STAGE_DIR"); then
            err "$EX_INTEGRITY" "the copied release fails its checksums ($why); nothing was installed"
        fi
        ensure "$EX_PREFIX" chmod 0755 "$STAGE_DIR"
        if [ -e "$rel" ]; then  # a damaged copy of the same release: replace it whole
            old=$(mktemp -d "$PREFIX/releases/.old-$RELEASE.XXXXXX") || err "$EX_PREFIX" "cannot stage the old copy"
            ensure "$EX_PREFIX" mv -T "$rel" "$old/tree"
            detail="replaced a damaged copy"
        fi
        ensure "$EX_PREFIX" mv -T "$STAGE_DIR" "$rel"
        STAGE_DIR=""
        [ -n "$old" ] && rm -rf "$old"
    fi

    if [ "$(readlink "$PREFIX/current" 2>/dev/null)" != "releases/$RELEASE" ]; then
        ensure "$EX_PREFIX" ln -sfn "releases/$RELEASE" "$PREFIX/.current.tmp"
        ensure "$EX_PREFIX" mv -T "$PREFIX/.current.tmp" "$PREFIX/current"
        detail="$detail, current -> $RELEASE"
    fi
    step_ok "$detail"
}

# --- step 3: database ---------------------------------------------------------------------------
# write_private FILE: stdin into FILE (mode 0600), unless FILE already holds exactly that.
write_private() {
    local target="$1" tmp
    (umask 077 && cat >"$WORK_DIR/private") || err "$EX_INTERNAL" "cannot write to $WORK_DIR"
    if [ -f "$target" ] && cmp -s "$WORK_DIR/private" "$target" \
        && [ -z "$(find "$target" -maxdepth 0 -perm /077 2>/dev/null)" ]; then
        rm -f "$WORK_DIR/private"
        return 0
    fi
    tmp=$(umask 077 && mktemp "$target.tmp.XXXXXX") || err "$EX_PREFIX" "cannot write $target"
    if ! cat "$WORK_DIR/private" >"$tmp" || ! mv -f "$tmp" "$target"; then
        rm -f "$tmp" "$WORK_DIR/private"
        err "$EX_PREFIX" "cannot write $target"
    fi
    rm -f "$WORK_DIR/private"
}

setup_database() {
    step 3 "database"
    if [ "$DB_KIND" = "external" ]; then
        if [ -n "$DSN_FILE" ]; then
            write_private "$PREFIX/etc/db.conf" <"$DSN_FILE"
            step_ok "existing server from $DSN_FILE"
        else
            printf '%s\n' "$RANSOMEYE_DB_DSN" | write_private "$PREFIX/etc/db.conf"
            step_ok "existing server from RANSOMEYE_DB_DSN"
        fi
        return 0
    fi
    embedded_cluster
}

embedded_cluster() {
    local pgdata="$PREFIX/pgdata" run="$PREFIX/run" owner password="" detail="reused" created=no
    local serverlog="$PREFIX/log/postgresql.log" exists
    owner=$(pg_os_user)

    if [ ! -f "$pgdata/PG_VERSION" ]; then
        if [ -d "$pgdata" ] && [ -n "$(ls -A "$pgdata" 2>/dev/null)" ]; then
            err "$EX_INTERNAL" "$pgdata exists but is not a PostgreSQL cluster; move it away and run again"
        fi
        password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
        [ "${#password}" -eq 48 ] || err "$EX_INTERNAL" "could not generate a password from /dev/urandom"
        ensure "$EX_PREFIX" mkdir -p "$pgdata" "$run"
        ensure "$EX_PREFIX" chmod 0700 "$pgdata" "$run"
        if is_root; then
            ensure "$EX_PREFIX" chown postgres: "$pgdata" "$run"
        fi
        (umask 077 && printf '%s\n' "$password" >"$run/.pwfile") || err "$EX_PREFIX" "cannot write $run/.pwfile"
        is_root && chown postgres: "$run/.pwfile"
        if ! as_pg "$PG_BIN/initdb" -D "$pgdata" -U "$DB_USER" --pwfile="$run/.pwfile" \
                -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$WORK_DIR/initdb.log" 2>&1; then
            rm -f "$run/.pwfile"
            cat "$WORK_DIR/initdb.log" >>"$LOG_FILE" 2>/dev/null
            err "$EX_INTERNAL" "initdb failed: $(grep -m1 -i 'error\|fatal' "$WORK_DIR/initdb.log" || tail -n 1 "$WORK_DIR/initdb.log")"
        fi
        rm -f "$run/.pwfile"
        cat >>"$pgdata/postgresql.conf" <<EOF

# --- RansomEye installer: a private cluster, reachable only through its unix socket ---
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$run'
unix_socket_permissions = 0700
fsync = on
EOF
        printf 'host=%s port=%s user=%s dbname=%s password=%s\n' "$run" "$PG_PORT" "$DB_USER" "$DB_NAME" "$password" \
            | write_private "$PREFIX/etc/db.conf"
        created=yes
        detail="new cluster in $pgdata"
    fi
    [ -f "$PREFIX/etc/db.conf" ] \
        || err "$EX_INTERNAL" "$pgdata exists but $PREFIX/etc/db.conf (its connection file) is missing; restore it from a backup"
    password=$(sed -n 's/.*password=\([0-9a-f]*\).*/\1/p' "$PREFIX/etc/db.conf" | head -n 1)

    if ! as_pg "$PG_BIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        if [ ! -e "$serverlog" ]; then
            (umask 077 && : >"$serverlog")
        fi
        is_root && chown postgres: "$serverlog"
        # Close every inherited descriptor beyond stderr: the server outlives us and must not hold
        # a pipe of whoever started the installer open.
        if ! as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -l "$serverlog" -w -t 60 start \
                </dev/null >"$WORK_DIR/pg_ctl.log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-; then
            err "$EX_CONNECT" "the embedded PostgreSQL did not start: $(tail -n 1 "$WORK_DIR/pg_ctl.log"); see $serverlog"
        fi
        [ "$created" = yes ] || detail="started the existing cluster"
    fi

    exists=$(PGHOST="$run" PGPORT="$PG_PORT" PGUSER="$DB_USER" PGPASSWORD="$password" PGDATABASE=postgres \
        PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -t -A -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" \
        2>"$WORK_DIR/psql.err") \
        || err "$EX_CONNECT" "cannot connect to the embedded PostgreSQL: $(head -n 1 "$WORK_DIR/psql.err")"
    if [ "$exists" != "1" ]; then
        PGHOST="$run" PGPORT="$PG_PORT" PGUSER="$DB_USER" PGPASSWORD="$password" PGDATABASE=postgres \
            "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB_NAME" >/dev/null 2>"$WORK_DIR/psql.err" \
            || err "$EX_CONNECT" "cannot create database $DB_NAME: $(head -n 1 "$WORK_DIR/psql.err")"
        detail="$detail, database $DB_NAME created"
    fi
    log "embedded cluster: data $pgdata, socket $run port $PG_PORT, OS user $owner"
    step_ok "embedded, $detail"
}

# --- step 4: migrations -------------------------------------------------------------------------
runner_bin() {
    printf '%s' "$PREFIX/current/bin/$RUNNER_NAME"
}

migrations_dir() {
    printf '%s' "$PREFIX/current/schemas/migrations"
}

report_child_failure() {  # report_child_failure STDERR_FILE CODE WHAT
    local errfile="$1" code="$2" what="$3" reason hint
    reason=$(grep -m1 '^error: ' "$errfile" | sed 's/^error: //')
    [ -n "$reason" ] || reason=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1)
    [ -n "$reason" ] || reason="exit code $code"
    hint=$(grep -m1 '^hint: ' "$errfile")
    err "$code" "$what (exit $code): $reason" "$hint"
}

apply_migrations() {
    local bin mig rc applied
    local -a args
    bin=$(runner_bin)
    mig=$(migrations_dir)
    step 4 "applying migrations"
    # Exactly this release's schema version: a bundle may carry newer migrations than its release.
    args=(upgrade --migrations-dir "$mig" --dsn-file "$PREFIX/etc/db.conf" --to "$RELEASE" --json)
    runner_accepts "$bin" upgrade --atomic && args+=(--atomic)
    [ -n "$LOCK_TIMEOUT" ] && args+=(--lock-timeout "$LOCK_TIMEOUT")
    [ -n "$CONNECT_RETRIES" ] && args+=(--connect-retries "$CONNECT_RETRIES")
    log "running: $RUNNER_NAME ${args[*]}"
    run_child "$WORK_DIR/upgrade.json" "$WORK_DIR/upgrade.err" "$bin" "${args[@]}"
    rc=$?
    cat "$WORK_DIR/upgrade.err" >>"$LOG_FILE" 2>/dev/null
    if [ "$rc" -ne 0 ]; then
        report_child_failure "$WORK_DIR/upgrade.err" "$rc" "applying migrations failed"
    fi
    SCHEMA_VERSION=$(sed -n 's/^  "version_after": "\([0-9_]*\)".*/\1/p' "$WORK_DIR/upgrade.json" | head -n 1)
    SCHEMA_VERSION=${SCHEMA_VERSION:-base}
    applied=$(grep -c '"status": "succeeded"' "$WORK_DIR/upgrade.json")
    log "schema at $SCHEMA_VERSION, $applied migration(s) applied"
    if [ "$applied" -eq 0 ]; then
        step_ok "nothing to do, schema $SCHEMA_VERSION"
    else
        step_ok "$applied applied, schema $SCHEMA_VERSION"
    fi
}

# --- step 5: Core's check -----------------------------------------------------------------------
check_schema() {
    local bin rc
    local -a args
    bin=$(runner_bin)
    step 5 "checking the schema"
    args=(check --migrations-dir "$(migrations_dir)" --dsn-file "$PREFIX/etc/db.conf")
    [ -n "$CONNECT_RETRIES" ] && args+=(--connect-retries "$CONNECT_RETRIES")
    run_child "$WORK_DIR/check.out" "$WORK_DIR/check.err" "$bin" "${args[@]}"
    rc=$?
    cat "$WORK_DIR/check.out" "$WORK_DIR/check.err" >>"$LOG_FILE" 2>/dev/null
    if [ "$rc" -ne 0 ]; then
        report_child_failure "$WORK_DIR/check.err" "$rc" "Core's schema check failed"
    fi
    step_ok
}

# --- step 6: receipt ----------------------------------------------------------------------------
write_receipt() {
    local receipt="$PREFIX/receipt.json" new="$WORK_DIR/receipt.json" tmp
    step 6 "receipt"
    cat >"$new" <<EOF
{
  "release": "$RELEASE",
  "schema_version": "$SCHEMA_VERSION",
  "db": "$DB_KIND",
  "prefix": "$PREFIX",
  "git_commit": "$(buildinfo git_commit)",
  "installed_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
    # Same release, schema and database as recorded: keep the old receipt (and its time).
    if [ -f "$receipt" ] && cmp -s <(grep -v '"installed_at"' "$receipt") <(grep -v '"installed_at"' "$new"); then
        step_ok "unchanged"
        return 0
    fi
    tmp=$(mktemp "$receipt.tmp.XXXXXX") || err "$EX_PREFIX" "cannot write $receipt"
    if ! cat "$new" >"$tmp" || ! chmod 0644 "$tmp" || ! mv -f "$tmp" "$receipt"; then
        rm -f "$tmp"
        err "$EX_PREFIX" "cannot write $receipt"
    fi
    step_ok "$receipt"
}

# --- main ---------------------------------------------------------------------------------------
main() {
    BUNDLE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
    [ -f "$BUNDLE_DIR/BUILDINFO" ] && RELEASE=$(buildinfo release)
    parse_args "$@"
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ransomeye-install.XXXXXX") \
        || err "$EX_INTERNAL" "cannot create a temporary directory in ${TMPDIR:-/tmp}"
    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM

    preflight
    confirm
    install_files
    setup_database
    apply_migrations
    check_schema
    write_receipt
    say "RansomEye Core $RELEASE is installed in $PREFIX (schema $SCHEMA_VERSION, $DB_KIND database)"
}

[ "_${RANSOMEYE_INSTALLER_ENV:-}" = "_testing" ] || main "$@" || exit 1
