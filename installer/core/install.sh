#!/usr/bin/env bash
# RansomEye Core installer: installs the release bundle this file ships in, upgrades an installed
# release to it, and returns to the previous release (on its own when an upgrade fails, or on
# purpose with --rollback).
#
#   install.sh [--prefix DIR] [--db-dsn-file FILE] [--no-atomic] [--lock-timeout SECONDS] [--yes]
#   install.sh --rollback [--prefix DIR] [--yes]
#
# One installer at a time per prefix: every run holds flock(1) on PREFIX/.install.lock from
# preflight to its exit (a prefix that does not exist yet: a lock file beside it, see lock_prefix);
# a second run waits up to --lock-timeout, then exits 11 naming the holder's pid. Installers with
# different prefixes on one database are serialized by the runner's advisory lock instead.
#
# Install or upgrade, eight steps, one line each; each fails closed with a one-line reason and the
# shared exit code (docs/INSTALLER.md; common/db/errors.py):
#   [1/8] preflight            tools, space, writable prefix, bundle checksums; nothing changes before it passes
#   [2/8] database             an existing server (--db-dsn-file / RANSOMEYE_DB_DSN / the installed
#                              release's PREFIX/etc/db.conf), or an embedded cluster
#   [3/8] database version     the database is at or behind this release (else 14, nothing changed),
#                              read with the bundle's own binary before any file is copied
#   [4/8] staging files        the bundle copied to PREFIX/releases/.stage-* and verified
#   [5/8] installing files     the stage renamed to PREFIX/releases/<release>, beside the running one
#   [6/8] applying migrations  ransomeye-migrate upgrade --to <release> --atomic
#   [7/8] checking the schema  ransomeye-migrate check (Core's startup gate) of the new release
#   [8/8] switching releases   PREFIX/previous -> the old release, PREFIX/current -> the new one, receipt
# `current` moves only in step 8, after the database is at the new release and Core's check of
# the new release passed. When step 6 or 7 fails over an installed release, the installer restores
# it ([rollback 1/3] reverting migrations with the NEW release's downs, [rollback 2/3] files,
# [rollback 3/3] the previous release's check) and exits 22; if that fails too, 23.
#
# --rollback, six steps: [1/6] preflight (current and previous releases intact), [2/6] database,
# [3/6] reverting migrations (the current release's downs to the previous release's schema
# version), [4/6] switching files (current -> previous, `previous` removed), [5/6] checking the
# schema (the previous release's check), [6/6] receipt. No previous release: 2.
#
# Shaped like rustup-init.sh: helpers, one function per step, and `main` on the last line, so
# nothing runs until the whole file is parsed. Tests source it with RANSOMEYE_INSTALLER_ENV=testing.

set -u

# --- exit codes (the shared table, common/db/errors.py) ---------------------------------------
EX_INTERNAL=1
EX_USAGE=2
EX_CONNECT=10
EX_LOCK_TIMEOUT=11
EX_MIGRATION_FAILED=12
EX_INTEGRITY=13
EX_VERSION_CONFLICT=14
EX_SCHEMA_DRIFT=16
EX_PREREQUISITE=20
EX_PREFIX=21
EX_RESTORED=22
EX_RESTORE_FAILED=23

STEPS=8
RUNNER_NAME=ransomeye-migrate
DB_NAME=ransomeye
DB_USER=ransomeye
LOCK_TIMEOUT_DEFAULT=60 # seconds, the same default as the runner's migration lock

# --- settings (flags and environment) ---------------------------------------------------------
PREFIX=/opt/ransomeye
DSN_FILE=""
ASSUME_YES=no
MODE=install            # install | rollback
ATOMIC=yes
LOCK_TIMEOUT=${RANSOMEYE_LOCK_TIMEOUT:-}
CONNECT_RETRIES=${RANSOMEYE_CONNECT_RETRIES:-}
PG_BIN=${RANSOMEYE_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${RANSOMEYE_PG_PORT:-5432}

# --- state --------------------------------------------------------------------------------------
BUNDLE_DIR=""
RELEASE=""              # the release this run ends at (the bundle's; with --rollback the previous one)
TARGET_VERSION=""       # RELEASE's schema version
PREV_RELEASE=""         # install: the release `current` named before this run (when another one)
PREV_VERSION=""         # its schema version
FROM_RELEASE=""         # rollback: the release being left
DB_KIND=""              # embedded | external
DB_SOURCE=""            # file | env | db.conf | "" (embedded)
DB_VERSION_BEFORE=""
SCHEMA_VERSION=""
WORK_DIR=""
STAGE_DIR=""
INSTALLED_INTACT=""
VERSION_DEFERRED=no
VERSION_DETAIL=""
LOG_FILE=""
CHILD_PID=""
CHILD_IS_LOCK=no        # the child is flock(1) waiting for the prefix's lock (told with TERM)
CUR_STEP=""
ANCESTOR_LOCK=""        # the lock file held on fd 8 while the prefix did not exist yet
PREFIX_LOCKED=no        # fd 9 holds PREFIX/.install.lock

usage() {
    cat <<EOF
RansomEye Core installer (release ${RELEASE:-from this bundle})

usage: install.sh [options]             install, or upgrade the release installed under the prefix
       install.sh --rollback [options]  return to the previous release (PREFIX/previous)

  --prefix DIR            install under DIR (default: /opt/ransomeye)
  --db-dsn-file FILE      use an existing PostgreSQL server: FILE (mode 0600) holds a libpq
                          connection string. Or set RANSOMEYE_DB_DSN. PG* variables (PGPASSWORD,
                          PGSSLMODE, ...) apply as usual. Without either, an upgrade keeps the
                          server of the installed release (PREFIX/etc/db.conf), and a fresh install
                          creates a private PostgreSQL cluster under PREFIX/pgdata (socket only).
  --no-atomic             apply the release's migrations one transaction each instead of all in
                          one (the default, --atomic); for very large data changes. A failure then
                          keeps the migrations before it, and the installer reverts them with their
                          down migrations.
  --rollback              downgrade the database to the previous release with the current
                          release's down migrations, switch PREFIX/current back, run its check
  --lock-timeout SECONDS  wait this long for another installer on the same prefix, and for
                          another migration run's lock on the database (each; default: 60)
  -y, --yes               do not ask for confirmation (never asked without a terminal)
  -h, --help              this text

environment: RANSOMEYE_DB_DSN, RANSOMEYE_PG_BIN (default /usr/lib/postgresql/15/bin),
RANSOMEYE_PG_PORT (socket name of the embedded cluster, default 5432), RANSOMEYE_LOCK_TIMEOUT,
RANSOMEYE_CONNECT_RETRIES.

exit codes: 0 ok, 1 internal, 2 usage (also: --rollback with no previous release), 10 cannot
connect, 11 lock timeout (another installer on the prefix, or another migration run on the
database), 12 migration failed and rolled back, 13 integrity (bundle checksum or changed applied
migration), 14 version conflict (e.g. the database is newer than this release; nothing changed),
15 invalid migration set, 16 schema drift, 17 read-only database, 20 missing prerequisite, 21
prefix not writable or no space, 22 upgrade failed and the previous release was restored, 23
upgrade (or rollback) failed and restoring the previous release failed too, 130/143 interrupted.
Log: PREFIX/log/install.log.
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
    step_failed
    printf 'ransomeye-install: error: %s\n' "$message" >&2
    [ -n "$hint" ] && printf 'ransomeye-install: %s\n' "$hint" >&2
    log "error (exit $code): $message${hint:+ | $hint}"
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

# rstep N TEXT: a step of the automatic return to the previous release.
rstep() {
    CUR_STEP="[rollback $1/3] $2"
    printf '%s … ' "$CUR_STEP"
}

step_ok() {
    local detail="${1:-}"
    printf 'ok%s\n' "${detail:+ ($detail)}"
    log "$CUR_STEP … ok${detail:+ ($detail)}"
    CUR_STEP=""
}

step_failed() {
    [ -n "$CUR_STEP" ] || return 0
    printf 'failed\n'
    log "$CUR_STEP … failed"
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
    local sig="$1" code=130 note
    [ "$sig" = "TERM" ] && code=143
    note=$(state_note)
    if [ -n "$CHILD_PID" ] && [ "$CHILD_IS_LOCK" = yes ]; then
        # flock(1) waiting for the prefix: a background child ignores SIGINT, so TERM it either way.
        ignore kill -TERM "$CHILD_PID"
        wait "$CHILD_PID"
        CHILD_PID=""
        note=" while waiting for another installer on $PREFIX; nothing was changed"
    elif [ -n "$CHILD_PID" ]; then
        # Let the runner roll its migration back and record the interruption, then pass its code on.
        ignore kill "-$sig" "$CHILD_PID"
        wait "$CHILD_PID"
        code=$?
        CHILD_PID=""
    fi
    [ -n "$CUR_STEP" ] && printf 'interrupted\n'
    printf 'ransomeye-install: interrupted by SIG%s%s\n' "$sig" "$note" >&2
    log "interrupted by SIG$sig (exit $code)$note"
    exit "$code"
}

# What an interruption leaves, for its message: which release `current` names.
state_note() {
    local cur
    cur=$(readlink "$PREFIX/current" 2>/dev/null) || return 0
    printf '; %s/current -> %s; the in-flight migration was rolled back (see %s/log/install.log)' "$PREFIX" "$cur" "$PREFIX"
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
# On failure prints what differs: "changed: FILE …; missing: FILE …" (three of each at most).
verify_tree() {
    local dir="$1" listed present bad result rc changed missing
    [ -f "$dir/SHA256SUMS" ] || { printf 'SHA256SUMS is missing'; return 1; }
    result=$(cd "$dir" && LC_ALL=C sha256sum --strict -c SHA256SUMS 2>/dev/null)
    rc=$?
    if [ "$rc" -ne 0 ]; then
        changed=$(printf '%s\n' "$result" | sed -n 's/: FAILED$//p' | head -n 3 | tr '\n' ' ' | sed 's/ $//')
        missing=$(printf '%s\n' "$result" | sed -n 's/: FAILED open or read$//p' | head -n 3 | tr '\n' ' ' | sed 's/ $//')
        bad="${changed:+changed: $changed}${changed:+${missing:+; }}${missing:+missing: $missing}"
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

# --- one installer at a time per prefix -----------------------------------------------------------
# Runs on the same prefix take turns: each holds flock(1) on PREFIX/.install.lock (fd 9) from
# preflight until it exits, and the kernel drops the lock with the last process holding the file
# open, so nothing goes stale (a migration runner still finishing after its installer was killed
# keeps the prefix until it is done). A prefix that does not exist yet has no lock file: until it
# exists the lock is a file in its nearest existing ancestor named after it (fd 8, e.g.
# /opt/.ransomeye.install.lock for /opt/ransomeye). The run that holds it creates the prefix with
# PREFIX/.install.lock inside already locked (built under a temporary name, then renamed), so a
# run that finds the prefix a moment later queues behind that same run. The lock file says who
# holds it, for the one-line reason of a run that gives up waiting (exit 11).

# open_lock FD FILE: open FILE (created 0600) read-write on FD 8 or 9.
open_lock() {
    local um rc
    um=$(umask)
    umask 077
    case "$1" in
        8) exec 8<>"$2" ;;
        9) exec 9<>"$2" ;;
    esac 2>/dev/null
    rc=$?
    umask "$um"
    return "$rc"
}

# lock_holder FD: the holder of the lock open on FD, as it wrote itself into the file.
lock_holder() {
    local line="" pid _
    for _ in 1 2 3 4 5; do  # a holder that has just taken the lock writes itself a moment later
        line=$(head -n 1 "/proc/$$/fd/$1" 2>/dev/null)
        [ -z "$line" ] || break
        sleep 0.1
    done
    pid=$(printf '%s' "$line" | sed -n 's/^pid \([0-9][0-9]*\).*/\1/p')
    if [ -z "$pid" ]; then
        printf 'holder unknown'
    elif [ -d "/proc/$pid" ]; then
        printf '%s' "$line"
    else
        printf '%s; it has exited, a process it started (its migration runner?) still holds the lock' "$line"
    fi
}

# take_lock FD FILE: flock FILE on FD, waiting up to the lock timeout (the wait noted on the step's
# line); exit 11 naming the holder when it runs out. flock waits in the background, so a signal
# reaches on_signal at once.
take_lock() {
    local fd="$1" file="$2" timeout="${LOCK_TIMEOUT:-$LOCK_TIMEOUT_DEFAULT}" holder rc
    open_lock "$fd" "$file" || err "$EX_PREFIX" "cannot create the lock file $file; nothing was changed"
    if ! flock -n "$fd"; then
        holder=$(lock_holder "$fd")
        printf 'waiting up to %s s for another installer (%s) … ' "$timeout" "$holder"
        log "waiting up to $timeout s for $file, held by another installer ($holder)"
        CHILD_IS_LOCK=yes
        flock -w "$timeout" "$fd" &
        CHILD_PID=$!
        wait "$CHILD_PID"
        rc=$?
        CHILD_PID="" CHILD_IS_LOCK=no
        if [ "$rc" -ne 0 ]; then
            holder=$(lock_holder "$fd")
            err "$EX_LOCK_TIMEOUT" "another installer is working on $PREFIX ($holder); gave up waiting after $timeout s. Nothing was changed." \
                "Wait for it to finish (its progress: $PREFIX/log/install.log), or raise --lock-timeout."
        fi
    fi
    printf 'pid %s, %s by %s with the %s installer, since %s\n' "$$" "$MODE" "$(id -un)" "${RELEASE:-?}" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$file" 2>/dev/null || true
    log "holding $file"
}

# ancestor_lock: the lock file of a prefix that does not exist yet, in its nearest existing ancestor.
ancestor_lock() {
    local anc rel
    anc=$(existing_ancestor "$PREFIX")
    anc=${anc%/}
    rel=${PREFIX#"$anc"/}
    printf '%s/.%s.install.lock' "$anc" "${rel//\//_}"
}

# lock_prefix: wait for our turn on the prefix (in preflight, before the prefix's state is read).
lock_prefix() {
    local file
    while [ ! -d "$PREFIX" ]; do
        file=$(ancestor_lock)
        # Holding the lock for the nearest ancestor as it is now: the prefix is still missing and
        # no run can create it behind our back. (A directory on the way appearing while we waited
        # changes the nearest ancestor: then queue on that one's lock.)
        [ "$file" = "$ANCESTOR_LOCK" ] && return 0
        take_lock 8 "$file"
        ANCESTOR_LOCK=$file
    done
    take_lock 9 "$PREFIX/.install.lock"
    PREFIX_LOCKED=yes
    # The run before us created the prefix: the file beside it has served its turn.
    [ -z "$ANCESTOR_LOCK" ] || ignore rm -f "$ANCESTOR_LOCK"
}

# claim_prefix: create the prefix (and missing parents) in one rename, with its lock file inside
# already held by this run; a no-op when it exists.
claim_prefix() {
    local anc rel top tmp inner
    [ "$PREFIX_LOCKED" = no ] || return 0
    [ ! -d "$PREFIX" ] || { take_lock 9 "$PREFIX/.install.lock"; PREFIX_LOCKED=yes; return 0; }
    anc=$(existing_ancestor "$PREFIX")
    anc=${anc%/}
    rel=${PREFIX#"$anc"/}
    top=${rel%%/*}
    tmp=$(mktemp -d "$anc/.$top.new.XXXXXX") || err "$EX_PREFIX" "cannot create $PREFIX (in ${anc:-/})"
    inner=$tmp
    [ "$rel" = "$top" ] || inner="$tmp/${rel#*/}"
    if ! chmod "$(printf '%o' $((0777 & ~0$(umask))))" "$tmp" || ! mkdir -p "$inner"; then
        rm -rf "$tmp"
        err "$EX_PREFIX" "cannot create $PREFIX"
    fi
    take_lock 9 "$inner/.install.lock"
    if ! mv -T "$tmp" "$anc/$top" 2>"$WORK_DIR/mv.err"; then
        rm -rf "$tmp"
        err "$EX_PREFIX" "cannot create $PREFIX: $(head -n 1 "$WORK_DIR/mv.err")"
    fi
    PREFIX_LOCKED=yes
    [ -z "$ANCESTOR_LOCK" ] || ignore rm -f "$ANCESTOR_LOCK"
}

buildinfo() {
    sed -n "s/^$1=//p" "$BUNDLE_DIR/BUILDINFO" | head -n 1
}

runner_accepts() {  # runner_accepts BIN VERB FLAG: does `BIN VERB --help` list FLAG?
    "$1" "$2" --help 2>/dev/null | grep -q -- "$3"
}

# release_version DIR RELEASE: the schema version RELEASE has in DIR's releases.toml ('' if none).
release_version() {
    local toml="$1/schemas/migrations/releases.toml" rel="${2//./\\.}"
    [ -f "$toml" ] || return 0
    sed -n "s/^[[:space:]]*\"$rel\"[[:space:]]*=[[:space:]]*\"\([0-9_]*\)\".*/\1/p" "$toml" | head -n 1
}

# linked_release NAME: the release PREFIX/NAME (current, previous) points at, '' if none.
linked_release() {
    local t
    t=$(readlink "$PREFIX/$1" 2>/dev/null) || return 0
    case "$t" in
        releases/*) printf '%s' "${t#releases/}" ;;
    esac
}

# json_str KEY FILE: a top-level string of the runner's --json document ('' for null or absent).
json_str() {
    sed -n "s/^  \"$1\": \"\([^\"]*\)\",\{0,1\}\$/\1/p" "$2" | head -n 1
}

# json_versions STATE FILE: versions of the migrations `status --json` reports in STATE.
json_versions() {
    awk -v want="$1" '
        /^      "version": /   { v = $2; gsub(/[",]/, "", v) }
        /^      "state": /     { s = $2; gsub(/[",]/, "", s); if (s == want) print v }' "$2"
}

# log_steps FILE: one log line per migration an upgrade/downgrade --json document lists.
log_steps() {
    awk '
        /^      "version": /     { v = $2; gsub(/[",]/, "", v) }
        /^      "description": / { d = $2; gsub(/[",]/, "", d) }
        /^      "direction": /   { r = $2; gsub(/[",]/, "", r) }
        /^      "status": /      { s = $0; sub(/^ *"status": "/, "", s); sub(/",?$/, "", s) }
        /^      "duration_ms": / { m = $2; gsub(/[",]/, "", m); printf "  %s %s %s: %s (%s ms)\n", r, v, d, s, m }' "$1" \
    | while IFS= read -r line; do log "$line"; done
}

audit_hint() {
    printf 'audit trail: %s/current/bin/%s history --dsn-file %s/etc/db.conf --migrations-dir %s/current/schemas/migrations' \
        "$PREFIX" "$RUNNER_NAME" "$PREFIX" "$PREFIX"
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
            --atomic) ATOMIC=yes; shift ;;
            --no-atomic) ATOMIC=no; shift ;;
            --rollback) MODE=rollback; shift ;;
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
    if [ "$MODE" = rollback ]; then
        STEPS=6
        [ "$ATOMIC" = yes ] || err "$EX_USAGE" "--no-atomic applies to an upgrade, not to --rollback"
    fi
}

confirm() {
    local answer="" question
    [ "$ASSUME_YES" = "yes" ] && return 0
    # Never wait for input without a terminal: no prompt, just proceed.
    if [ -t 0 ] && [ -t 1 ]; then
        if [ "$MODE" = rollback ]; then
            question="Roll RansomEye Core in $PREFIX back from $FROM_RELEASE to $RELEASE?"
        elif [ -n "$PREV_RELEASE" ]; then
            question="Upgrade RansomEye Core in $PREFIX from $PREV_RELEASE to $RELEASE?"
        else
            question="Install RansomEye Core $RELEASE into $PREFIX?"
        fi
        printf '%s [y/N] ' "$question"
        read -r answer || answer=""
        case "$answer" in
            y|Y|yes|YES) return 0 ;;
            *) say "stopped (answer was not yes); run with --yes to skip this question"; exit 0 ;;
        esac
    fi
}

# --- preflight (both modes) ---------------------------------------------------------------------
preflight_tools() {
    local cmd
    for cmd in sha256sum mkdir cp mv ln rm chmod df du date sed grep sort comm find mktemp readlink cmp tr head id dirname awk; do
        need_cmd "$cmd" coreutils
    done
    need_cmd flock util-linux
}

# Where the database is: --db-dsn-file, RANSOMEYE_DB_DSN, the installed release's server
# (PREFIX/etc/db.conf of an install whose receipt says "external"), or the embedded cluster.
preflight_database_source() {
    local cmd sock
    if [ -n "$DSN_FILE" ]; then
        if [ ! -f "$DSN_FILE" ] || [ ! -r "$DSN_FILE" ]; then
            err "$EX_USAGE" "cannot read the connection file $DSN_FILE"
        fi
        if [ -n "$(find "$DSN_FILE" -maxdepth 0 -perm /077 2>/dev/null)" ]; then
            err "$EX_USAGE" "connection file $DSN_FILE is readable by others; run: chmod 600 $DSN_FILE"
        fi
        DB_KIND=external DB_SOURCE=file
    elif [ -n "${RANSOMEYE_DB_DSN:-}" ]; then
        DB_KIND=external DB_SOURCE=env
    elif [ -f "$PREFIX/etc/db.conf" ] && [ ! -f "$PREFIX/pgdata/PG_VERSION" ] \
        && grep -q '"db": "external"' "$PREFIX/receipt.json" 2>/dev/null; then
        DB_KIND=external DB_SOURCE=db.conf
    else
        DB_KIND=embedded DB_SOURCE=""
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
}

# --- step 1: preflight --------------------------------------------------------------------------
preflight() {
    local anc need_kb avail_kb why opts d mode prev p missing
    step 1 "preflight"
    preflight_tools

    # the bundle, before anything else is looked at
    missing=""
    for p in BUILDINFO SHA256SUMS "bin/$RUNNER_NAME" schemas/migrations/releases.toml; do
        [ -f "$BUNDLE_DIR/$p" ] || missing="$missing $p"
    done
    if [ -z "$missing" ] && [ -z "$(find "$BUNDLE_DIR/bin/$RUNNER_NAME" -maxdepth 0 -perm -u+x 2>/dev/null)" ]; then
        missing=" bin/$RUNNER_NAME (not executable)"
    fi
    if [ -n "$missing" ]; then
        err "$EX_INTEGRITY" "$BUNDLE_DIR is not a complete release bundle (missing:$missing); nothing was changed" \
            "Was the tarball cut short? 'gzip -t' on it tells; unpack an intact copy (or build one with build/build.sh)."
    fi
    if ! why=$(verify_tree "$BUNDLE_DIR"); then
        err "$EX_INTEGRITY" "the bundle fails its checksums ($why); nothing was changed" \
            "Use an intact copy of the release (a download cut short shows up here too: 'gzip -t' on the tarball tells)."
    fi
    RELEASE=$(buildinfo release)
    printf '%s' "$RELEASE" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' \
        || err "$EX_INTEGRITY" "BUILDINFO names no valid release ('$RELEASE')"
    TARGET_VERSION=$(release_version "$BUNDLE_DIR" "$RELEASE")
    [ -n "$TARGET_VERSION" ] \
        || err "$EX_INTEGRITY" "the bundle's schemas/migrations/releases.toml does not name its own release $RELEASE; rebuild it with build/build.sh"

    # the prefix: writable, then our turn on it (another installer on it finishes first), then
    # everything about what is installed there
    if [ -e "$PREFIX" ] && [ ! -d "$PREFIX" ]; then
        err "$EX_PREFIX" "$PREFIX exists and is not a directory; remove it or choose another --prefix"
    fi
    anc=$(existing_ancestor "$PREFIX")
    if [ "$anc" = "$PREFIX" ]; then mode=""; else mode=probe; fi
    dir_writable "$anc" "$mode" || err "$EX_PREFIX" "cannot write to $anc (read-only, immutable or not ours); nothing was changed. Choose a writable --prefix or fix the permissions."
    lock_prefix
    anc=$(existing_ancestor "$PREFIX")

    preflight_database_source

    # executable, enough space
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

    # the installed release this run upgrades from, which a failure falls back to
    prev=$(linked_release current)
    if [ -n "$prev" ] && [ "$prev" != "$RELEASE" ]; then
        [ -d "$PREFIX/releases/$prev" ] \
            || err "$EX_INTEGRITY" "$PREFIX/current names release $prev, but $PREFIX/releases/$prev is missing, so a failed upgrade could not fall back to it; nothing was changed" \
                   "Reinstall release $prev with its own bundle first, or restore $PREFIX/releases/$prev."
        if ! why=$(verify_tree "$PREFIX/releases/$prev"); then
            err "$EX_INTEGRITY" "the installed release $prev fails its checksums ($why), so a failed upgrade could not fall back to it; nothing was changed" \
                "Reinstall release $prev with its own bundle first (install.sh --prefix $PREFIX), then upgrade."
        fi
        PREV_RELEASE=$prev
        PREV_VERSION=$(release_version "$PREFIX/releases/$prev" "$prev")
        [ -n "$PREV_VERSION" ] || PREV_VERSION=$(release_version "$BUNDLE_DIR" "$prev")
        [ -n "$PREV_VERSION" ] \
            || err "$EX_INTEGRITY" "neither release $prev nor $RELEASE names release $prev's schema version in releases.toml; nothing was changed"
    fi
    log "release $RELEASE${PREV_RELEASE:+ over installed $PREV_RELEASE}, $([ "$ATOMIC" = yes ] && echo atomic || echo per-migration) migrations, $DB_KIND database"
    if [ -n "$PREV_RELEASE" ]; then
        step_ok "release $RELEASE over installed $PREV_RELEASE, $DB_KIND database, $([ "$ATOMIC" = yes ] && echo atomic || echo per-migration)"
    else
        step_ok "release $RELEASE, $DB_KIND database"
    fi
}

# --- the log ------------------------------------------------------------------------------------
open_log() {
    [ -z "$LOG_FILE" ] || return 0
    claim_prefix
    ensure "$EX_PREFIX" mkdir -p "$PREFIX/releases" "$PREFIX/etc" "$PREFIX/log"
    ensure "$EX_PREFIX" chmod 0700 "$PREFIX/etc"
    LOG_FILE="$PREFIX/log/install.log"
    if [ -f "$WORK_DIR/log.buf" ]; then
        cat "$WORK_DIR/log.buf" >>"$LOG_FILE" 2>/dev/null || err "$EX_PREFIX" "cannot write $LOG_FILE"
        rm -f "$WORK_DIR/log.buf"
    fi
}

# --- step 4: staging files ----------------------------------------------------------------------
# installed_intact: PREFIX/releases/<release> is this very build, intact (computed once).
installed_intact() {
    local rel="$PREFIX/releases/$RELEASE"
    if [ -z "$INSTALLED_INTACT" ]; then
        INSTALLED_INTACT=no
        if [ -d "$rel" ] && cmp -s "$rel/SHA256SUMS" "$BUNDLE_DIR/SHA256SUMS" && verify_tree "$rel" >/dev/null; then
            INSTALLED_INTACT=yes
        fi
    fi
    [ "$INSTALLED_INTACT" = yes ]
}

stage_files() {
    local why
    step 4 "staging files"
    if installed_intact; then
        step_ok "release $RELEASE already installed"
        return 0
    fi
    STAGE_DIR=$(mktemp -d "$PREFIX/releases/.stage-$RELEASE.XXXXXX") \
        || err "$EX_PREFIX" "cannot create a staging directory in $PREFIX/releases"
    if ! cp -a "$BUNDLE_DIR/." "$STAGE_DIR/" 2>"$WORK_DIR/cp.err"; then
        err "$EX_PREFIX" "copying the release failed ($(head -n 1 "$WORK_DIR/cp.err")); nothing was installed"
    fi
    if ! why=$(verify_tree "$STAGE_DIR"); then
        err "$EX_INTEGRITY" "the copied release fails its checksums ($why); nothing was installed"
    fi
    ensure "$EX_PREFIX" chmod 0755 "$STAGE_DIR"
    step_ok "copied to $STAGE_DIR"
}

# --- step 2: database ---------------------------------------------------------------------------
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
    step 2 "database"
    open_log
    case "$DB_SOURCE" in
        file)
            write_private "$PREFIX/etc/db.conf" <"$DSN_FILE"
            step_ok "existing server from $DSN_FILE" ;;
        env)
            printf '%s\n' "$RANSOMEYE_DB_DSN" | write_private "$PREFIX/etc/db.conf"
            step_ok "existing server from RANSOMEYE_DB_DSN" ;;
        db.conf)
            step_ok "existing server from $PREFIX/etc/db.conf" ;;
        *)
            embedded_cluster ;;
    esac
}

embedded_cluster() {
    local pgdata="$PREFIX/pgdata" run="$PREFIX/run" owner password="" detail="reused" created=no
    local serverlog="$PREFIX/log/postgresql.log" exists
    owner=$(pg_os_user)

    if [ ! -f "$pgdata/PG_VERSION" ]; then
        [ "$MODE" = install ] || err "$EX_INTERNAL" "$pgdata holds no PostgreSQL cluster, so there is no database to roll back"
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
        [ "$MODE" = install ] || err "$EX_INTERNAL" "the embedded cluster has no database $DB_NAME, so there is nothing to roll back"
        PGHOST="$run" PGPORT="$PG_PORT" PGUSER="$DB_USER" PGPASSWORD="$password" PGDATABASE=postgres \
            "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB_NAME" >/dev/null 2>"$WORK_DIR/psql.err" \
            || err "$EX_CONNECT" "cannot create database $DB_NAME: $(head -n 1 "$WORK_DIR/psql.err")"
        detail="$detail, database $DB_NAME created"
    fi
    log "embedded cluster: data $pgdata, socket $run port $PG_PORT, OS user $owner"
    step_ok "embedded, $detail"
}

# --- running the runner -------------------------------------------------------------------------
# common_args: connection and timeouts for every runner call.
common_args() {
    RARGS=(--dsn-file "$PREFIX/etc/db.conf")
    [ -n "$CONNECT_RETRIES" ] && RARGS+=(--connect-retries "$CONNECT_RETRIES")
    return 0
}

# runner DIR NAME VERB ARGS...: DIR's binary with DIR's migrations; output in WORK_DIR/NAME.{out,err}.
runner() {
    local dir="$1" name="$2" verb="$3" rc
    shift 3
    common_args
    [ -n "$LOCK_TIMEOUT" ] && [ "$verb" != check ] && RARGS+=(--lock-timeout "$LOCK_TIMEOUT")
    log "running: ${dir#"$PREFIX"/}/bin/$RUNNER_NAME $verb $* --migrations-dir …/schemas/migrations ${RARGS[*]}"
    run_child "$WORK_DIR/$name.out" "$WORK_DIR/$name.err" \
        "$dir/bin/$RUNNER_NAME" "$verb" --migrations-dir "$dir/schemas/migrations" "${RARGS[@]}" "$@"
    rc=$?
    [ -s "$WORK_DIR/$name.err" ] && sed 's/^/  /' "$WORK_DIR/$name.err" >>"$LOG_FILE" 2>/dev/null
    return "$rc"
}

# child_reason NAME CODE: the runner's one-line reason (its "error:" line), for a message.
child_reason() {
    local reason
    reason=$(grep -m1 '^error: ' "$WORK_DIR/$1.err" 2>/dev/null | sed 's/^error: //')
    [ -n "$reason" ] || reason=$(grep -v '^[[:space:]]*$' "$WORK_DIR/$1.err" 2>/dev/null | tail -n 1)
    reason=${reason:-exit code $2}
    printf '%s' "${reason%.}"
}

child_hint() {
    grep -m1 '^hint: ' "$WORK_DIR/$1.err" 2>/dev/null
}

report_child_failure() {  # report_child_failure NAME CODE WHAT: pass the runner's code on
    local name="$1" code="$2" what="$3"
    err "$code" "$what (exit $code): $(child_reason "$name" "$code")" "$(child_hint "$name")"
}

# read_db_version DIR: the database's schema version, read with DIR's runner, into DB_NOW ('base'
# for an empty database, 'unknown' when it cannot be read); returns the runner's exit code.
read_db_version() {
    DB_NOW=unknown
    runner "$1" status status --json || return $?
    DB_NOW=$(json_str schema_version "$WORK_DIR/status.out")
    DB_NOW=${DB_NOW:-base}
}

# check_release DIR RELEASE NAME: Core's check of DIR's release.
check_release() {
    local dir="$1" rel="$2"
    local -a extra=()
    runner_accepts "$dir/bin/$RUNNER_NAME" check --expect-release && extra=(--expect-release "$rel")
    runner "$dir" "$3" check "${extra[@]}"
    local rc=$?
    [ -s "$WORK_DIR/$3.out" ] && sed 's/^/  /' "$WORK_DIR/$3.out" >>"$LOG_FILE" 2>/dev/null
    return "$rc"
}

# --- step 3: database version -------------------------------------------------------------------
# Read with this release's binary where it is (the installed copy when it is this very build, else
# the bundle), so a refusal leaves the prefix exactly as it was. A bundle on a noexec mount cannot
# run there (126/127): then the check runs from the staged copy, before it is installed (step 5).
check_db_version() {
    local dir="$BUNDLE_DIR" rc
    step 3 "database version"
    installed_intact && dir="$PREFIX/releases/$RELEASE"
    runner "$dir" status status --json
    rc=$?
    if [ "$rc" -eq 126 ] || [ "$rc" -eq 127 ]; then
        VERSION_DEFERRED=yes
        step_ok "deferred: $dir/bin/$RUNNER_NAME cannot run there (exit $rc, a noexec mount?); checked from the staged copy"
        return 0
    fi
    judge_db_version "$rc"
    step_ok "$VERSION_DETAIL"
}

# judge_db_version RC: refuse a database this release cannot upgrade (14, 13), or set
# DB_VERSION_BEFORE and VERSION_DETAIL.
judge_db_version() {
    local rc="$1" unknown changed v rel
    if [ "$rc" -eq 126 ] || [ "$rc" -eq 127 ]; then
        err "$EX_PREREQUISITE" "this release's $RUNNER_NAME cannot run on this host (exit $rc: $(child_reason status "$rc")); nothing was changed" \
            "It needs glibc $(buildinfo glibc_floor) or newer and a filesystem mounted with exec."
    fi
    [ "$rc" -eq 0 ] || report_child_failure status "$rc" "reading the database's schema version failed; nothing was changed"
    v=$(json_str schema_version "$WORK_DIR/status.out")
    unknown=$(json_versions unknown "$WORK_DIR/status.out" | tr '\n' ' ' | sed 's/ $//')
    changed=$(json_versions changed "$WORK_DIR/status.out" | tr '\n' ' ' | sed 's/ $//')
    if [ -n "$unknown" ] || { [ -n "$v" ] && [[ "$v" > "$TARGET_VERSION" ]]; }; then
        err "$EX_VERSION_CONFLICT" "the database is at schema version $v, newer than release $RELEASE (schema $TARGET_VERSION)${unknown:+; release $RELEASE does not ship $unknown}. Nothing was changed: no files switched, the receipt and the database are as they were." \
            "Use the installer of the release the database is at, or return to an older release with install.sh --rollback."
    fi
    if [ -n "$changed" ]; then
        err "$EX_INTEGRITY" "applied migration(s) $changed differ from release $RELEASE's files; nothing was changed" \
            "Run '$RUNNER_NAME verify' with the release that applied them to see what changed."
    fi
    DB_VERSION_BEFORE=${v:-base}
    if [ -n "$PREV_RELEASE" ] && [ "$DB_VERSION_BEFORE" != "$PREV_VERSION" ]; then
        log "note: the database is at $DB_VERSION_BEFORE, not at release $PREV_RELEASE's $PREV_VERSION"
    fi
    rel=$(json_str release "$WORK_DIR/status.out")
    if [ -z "$v" ]; then
        VERSION_DETAIL="new database, will be created at release $RELEASE"
    elif [ "$v" = "$TARGET_VERSION" ]; then
        VERSION_DETAIL="already at release $RELEASE (schema $v)"
    else
        VERSION_DETAIL="at schema $v${rel:+, release $rel}; upgrading to $RELEASE, schema $TARGET_VERSION"
    fi
}

# --- step 5: installing files -------------------------------------------------------------------
install_files() {
    local rel="$PREFIX/releases/$RELEASE" old="" detail
    step 5 "installing files"
    if [ -z "$STAGE_DIR" ]; then
        step_ok "releases/$RELEASE already installed${PREV_RELEASE:+; current still -> $PREV_RELEASE}"
        return 0
    fi
    detail="releases/$RELEASE"
    if [ "$VERSION_DEFERRED" = yes ]; then
        runner "$STAGE_DIR" status status --json
        judge_db_version $?
        detail="$detail, database $VERSION_DETAIL"
    fi
    if [ -e "$rel" ]; then  # a damaged copy of the same release, or another build of it: replace it whole
        old=$(mktemp -d "$PREFIX/releases/.old-$RELEASE.XXXXXX") || err "$EX_PREFIX" "cannot stage the old copy"
        ensure "$EX_PREFIX" mv -T "$rel" "$old/tree"
        detail="$detail, replaced a damaged or different copy"
    fi
    ensure "$EX_PREFIX" mv -T "$STAGE_DIR" "$rel"
    STAGE_DIR=""
    [ -n "$old" ] && rm -rf "$old"
    step_ok "$detail${PREV_RELEASE:+, beside releases/$PREV_RELEASE; current still -> $PREV_RELEASE}"
}

# --- step 6: migrations -------------------------------------------------------------------------
apply_migrations() {
    local dir="$PREFIX/releases/$RELEASE" rc applied
    local -a args
    step 6 "applying migrations"
    # Exactly this release's schema version: a bundle may carry newer migrations than its release.
    args=(--to "$RELEASE" --json)
    if runner_accepts "$dir/bin/$RUNNER_NAME" upgrade --atomic; then
        if [ "$ATOMIC" = yes ]; then args+=(--atomic); else args+=(--no-atomic); fi
    fi
    runner "$dir" upgrade upgrade "${args[@]}"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        upgrade_failed "$rc" "applying migrations failed (exit $rc): $(child_reason upgrade "$rc")" upgrade
    fi
    log_steps "$WORK_DIR/upgrade.out"
    SCHEMA_VERSION=$(json_str version_after "$WORK_DIR/upgrade.out")
    SCHEMA_VERSION=${SCHEMA_VERSION:-base}
    applied=$(grep -c '"status": "succeeded"' "$WORK_DIR/upgrade.out")
    if [ "$applied" -eq 0 ]; then
        step_ok "nothing to do, schema $SCHEMA_VERSION"
    else
        step_ok "$applied applied $(grep -q '"mode": "atomic"' "$WORK_DIR/upgrade.out" && echo "in one transaction" || echo "one transaction each"); schema $SCHEMA_VERSION, release $RELEASE"
    fi
}

# upgrade_failed CODE REASON NAME: after step 6 or 7 failed. Over an installed release the previous
# release is restored (exit 22/23) when the database may have moved; otherwise the code passes on.
upgrade_failed() {
    local code="$1" reason="$2" name="$3"
    step_failed
    case "$code" in 130|143) err "$code" "$reason$(state_note)" ;; esac
    if [ -z "$PREV_RELEASE" ]; then
        err "$code" "$reason" "$(child_hint "$name")"
    fi
    if [ "$name" = upgrade ] && [ "$code" != "$EX_MIGRATION_FAILED" ] && [ "$code" != "$EX_SCHEMA_DRIFT" ]; then
        # Refused before it started (lock, checksums, …)? Then nothing needs undoing.
        read_db_version "$PREFIX/releases/$RELEASE"
        if [ "$DB_NOW" = "$DB_VERSION_BEFORE" ]; then
            err "$code" "$reason; nothing was changed: the database is still at $DB_NOW and $PREFIX/current -> releases/$PREV_RELEASE" \
                "$(child_hint "$name")"
        fi
        if [ "$DB_NOW" = unknown ] && [ "$code" = "$EX_CONNECT" ]; then
            err "$code" "$reason; $PREFIX/current -> releases/$PREV_RELEASE (unchanged). Run the installer again when the server is reachable: it finds the database where this run left it" \
                "$(child_hint "$name")"
        fi
    fi
    restore_previous "$reason"
}

# --- step 7: Core's check -----------------------------------------------------------------------
check_schema() {
    local rc
    step 7 "checking the schema"
    check_release "$PREFIX/releases/$RELEASE" "$RELEASE" check
    rc=$?
    if [ "$rc" -ne 0 ]; then
        upgrade_failed "$rc" "Core's check of release $RELEASE failed after the upgrade (exit $rc): $(child_reason check "$rc")" check
    fi
    step_ok "release $RELEASE, schema $SCHEMA_VERSION"
}

# --- the automatic return to the previous release -----------------------------------------------
# restore_previous REASON: revert with the NEW release's downs (unless the database never moved),
# keep `current` on the previous release, run the previous release's check; exit 22, or 23.
restore_previous() {
    local why="$1" new="$PREFIX/releases/$RELEASE" prev="$PREFIX/releases/$PREV_RELEASE" rc reverted
    say "upgrade to $RELEASE failed: $why"
    say "restoring release $PREV_RELEASE (schema $PREV_VERSION)"

    rstep 1 "reverting migrations"
    if ! read_db_version "$new"; then
        restore_failed "cannot read the database's schema version ($(child_reason status 1))" unknown
    fi
    if [ "$DB_NOW" = "$PREV_VERSION" ]; then
        if [ "$ATOMIC" = yes ]; then
            step_ok "nothing to revert: the atomic upgrade committed nothing, schema $DB_NOW"
        else
            step_ok "nothing to revert: schema $DB_NOW"
        fi
    else
        runner "$new" downgrade downgrade --to "$PREV_VERSION" --json
        rc=$?
        if [ "$rc" -ne 0 ]; then
            local why_down
            why_down="the down migrations of release $RELEASE failed (exit $rc): $(child_reason downgrade "$rc")"
            read_db_version "$new"
            restore_failed "$why_down" "$DB_NOW" downgrade
        fi
        log_steps "$WORK_DIR/downgrade.out"
        reverted=$(grep -c '"status": "succeeded"' "$WORK_DIR/downgrade.out")
        step_ok "$reverted down migration(s) of release $RELEASE, schema $PREV_VERSION"
    fi

    rstep 2 "switching files"
    if [ "$(readlink "$PREFIX/current" 2>/dev/null)" = "releases/$PREV_RELEASE" ]; then
        step_ok "current -> $PREV_RELEASE (never switched)"
    else
        switch_link current "releases/$PREV_RELEASE" \
            || restore_failed "cannot point $PREFIX/current at releases/$PREV_RELEASE" "$PREV_VERSION"
        step_ok "current -> $PREV_RELEASE"
    fi

    rstep 3 "checking the schema"
    check_release "$prev" "$PREV_RELEASE" prevcheck
    rc=$?
    if [ "$rc" -ne 0 ]; then
        restore_failed "Core's check of release $PREV_RELEASE failed (exit $rc): $(child_reason prevcheck "$rc")" "$PREV_VERSION" prevcheck
    fi
    step_ok "release $PREV_RELEASE, schema $PREV_VERSION"
    log "$(audit_hint)"
    err "$EX_RESTORED" "upgrade to $RELEASE failed, previous release $PREV_RELEASE restored (database at $PREV_VERSION, $PREFIX/current -> releases/$PREV_RELEASE, Core's check passes). Cause: $why" \
        "Log: $LOG_FILE; $(audit_hint). releases/$RELEASE stays on disk; fix the cause and run the installer of $RELEASE again."
}

# restore_failed REASON DB_VERSION [RUNNER-NAME]: leave `current` on the release that can finish
# the job, say so (with the runner's hint), exit 23.
restore_failed() {
    local why="$1" now="$2" what at hint
    hint=$(child_hint "${3:-none}" | sed 's/^hint: //')
    step_failed
    at="at schema $now"
    [ "$now" = unknown ] && at="at a schema version that could not be read"
    if [ "$now" = "$PREV_VERSION" ]; then
        # The database is back at the previous release; its files or its check are the problem.
        ignore switch_link current "releases/$PREV_RELEASE"
        what="The database is at release $PREV_RELEASE's schema $now and $PREFIX/current -> releases/$PREV_RELEASE, but Core will not start. Reinstall release $PREV_RELEASE with its own bundle (install.sh --prefix $PREFIX), or restore the database from the backup taken before the upgrade."
    else
        # The database is (partly) at the new release: `current` names the release whose down
        # migrations can finish the way back, and `previous` the release to return to.
        ignore switch_link previous "releases/$PREV_RELEASE"
        ignore switch_link current "releases/$RELEASE"
        what="The database is $at (not release $PREV_RELEASE's $PREV_VERSION); $PREFIX/current -> releases/$RELEASE, $PREFIX/previous -> releases/$PREV_RELEASE; Core will not start. Fix the cause, then run '$PREFIX/current/install.sh --prefix $PREFIX --rollback' to finish returning to $PREV_RELEASE, or restore the database from the backup taken before the upgrade."
    fi
    log "$(audit_hint)"
    err "$EX_RESTORE_FAILED" "upgrade to $RELEASE failed and restoring release $PREV_RELEASE failed too: $why. $what" \
        "${hint:+$hint }Log: $LOG_FILE; $(audit_hint)."
}

# switch_link NAME TARGET: PREFIX/NAME -> TARGET, atomically (ln -sfn + mv -T).
switch_link() {
    ln -sfn "$2" "$PREFIX/.$1.tmp" && mv -T "$PREFIX/.$1.tmp" "$PREFIX/$1"
}

# --- step 8: switching releases, receipt --------------------------------------------------------
write_receipt() {
    local receipt="$PREFIX/receipt.json" new="$WORK_DIR/receipt.json" tmp rolled=""
    [ "$MODE" = rollback ] && rolled=$(printf '\n  "rolled_back_from": "%s",' "$FROM_RELEASE")
    cat >"$new" <<EOF
{
  "release": "$RELEASE",
  "schema_version": "$SCHEMA_VERSION",
  "previous_release": "$(linked_release previous)",$rolled
  "db": "$DB_KIND",
  "prefix": "$PREFIX",
  "git_commit": "$(sed -n 's/^git_commit=//p' "$PREFIX/releases/$RELEASE/BUILDINFO" | head -n 1)",
  "installed_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
    # Same release, schema and database as recorded: keep the old receipt (and its time).
    if [ -f "$receipt" ] && cmp -s <(grep -v '"installed_at"' "$receipt") <(grep -v '"installed_at"' "$new"); then
        RECEIPT_DETAIL="receipt unchanged"
        return 0
    fi
    tmp=$(mktemp "$receipt.tmp.XXXXXX") || err "$EX_PREFIX" "cannot write $receipt"
    if ! cat "$new" >"$tmp" || ! chmod 0644 "$tmp" || ! mv -f "$tmp" "$receipt"; then
        rm -f "$tmp"
        err "$EX_PREFIX" "cannot write $receipt"
    fi
    RECEIPT_DETAIL="receipt written"
}

switch_releases() {
    local detail=""
    step 8 "switching releases"
    if [ -n "$PREV_RELEASE" ]; then
        switch_link previous "releases/$PREV_RELEASE" || err "$EX_PREFIX" "cannot write $PREFIX/previous"
        detail="previous -> $PREV_RELEASE, "
    fi
    if [ "$(readlink "$PREFIX/current" 2>/dev/null)" != "releases/$RELEASE" ]; then
        switch_link current "releases/$RELEASE" || err "$EX_PREFIX" "cannot write $PREFIX/current"
        detail="${detail}current -> $RELEASE"
    else
        detail="${detail}current -> $RELEASE (unchanged)"
    fi
    write_receipt
    step_ok "$detail, $RECEIPT_DETAIL"
}

# --- --rollback ---------------------------------------------------------------------------------
rollback_preflight() {
    local why cur prev r
    step 1 "preflight"
    preflight_tools
    [ -d "$PREFIX" ] || err "$EX_USAGE" "nothing is installed in $PREFIX, so there is no release to roll back"
    dir_writable "$PREFIX" || err "$EX_PREFIX" "cannot write to $PREFIX; nothing was changed"
    lock_prefix
    cur=$(linked_release current)
    [ -n "$cur" ] || err "$EX_USAGE" "$PREFIX/current does not name an installed release; nothing to roll back"
    prev=$(linked_release previous)
    if [ -z "$prev" ]; then
        err "$EX_USAGE" "no previous release to return to: $PREFIX/previous does not exist (release $cur was installed fresh, or was already rolled back); nothing was changed"
    fi
    [ "$prev" != "$cur" ] || err "$EX_USAGE" "$PREFIX/previous and $PREFIX/current both name release $cur; nothing to roll back"
    for r in "$cur" "$prev"; do
        [ -d "$PREFIX/releases/$r" ] || err "$EX_INTEGRITY" "$PREFIX/releases/$r is missing; nothing was changed"
        if ! why=$(verify_tree "$PREFIX/releases/$r"); then
            err "$EX_INTEGRITY" "the installed release $r fails its checksums ($why); nothing was changed" \
                "Reinstall release $r with its own bundle first."
        fi
    done
    FROM_RELEASE=$cur
    RELEASE=$prev
    TARGET_VERSION=$(release_version "$PREFIX/releases/$prev" "$prev")
    [ -n "$TARGET_VERSION" ] || TARGET_VERSION=$(release_version "$PREFIX/releases/$cur" "$prev")
    [ -n "$TARGET_VERSION" ] || err "$EX_INTEGRITY" "no releases.toml names release $prev's schema version; nothing was changed"
    preflight_database_source
    for r in "$PREFIX" "$PREFIX/log" "$PREFIX/etc"; do
        dir_writable "$r" || err "$EX_PREFIX" "cannot write to $r; nothing was changed"
    done
    if [ "$DB_KIND" = embedded ] && [ ! -f "$PREFIX/pgdata/PG_VERSION" ]; then
        err "$EX_USAGE" "$PREFIX has no embedded database (pgdata) and no record of an existing server; give the database with --db-dsn-file; nothing was changed"
    fi
    step_ok "from $FROM_RELEASE back to $RELEASE, schema $TARGET_VERSION; $DB_KIND database"
}

rollback_migrations() {
    local cur="$PREFIX/releases/$FROM_RELEASE" rc reverted why before hint
    step 3 "reverting migrations"
    read_db_version "$cur"
    rc=$?
    [ "$rc" -eq 0 ] || report_child_failure status "$rc" "reading the database's schema version failed; nothing was changed"
    before=$DB_NOW
    if [ "$DB_NOW" = "$TARGET_VERSION" ]; then
        SCHEMA_VERSION=$DB_NOW
        step_ok "nothing to revert: the database is at release $RELEASE's schema $DB_NOW"
        return 0
    fi
    runner "$cur" downgrade downgrade --to "$TARGET_VERSION" --json
    rc=$?
    if [ "$rc" -ne 0 ]; then
        why="$(child_reason downgrade "$rc")"
        read_db_version "$cur"
        if [ "$DB_NOW" = "$before" ] && [ "$rc" != "$EX_MIGRATION_FAILED" ]; then
            # refused before it started (lock, connection, version conflict): nothing to repair
            err "$rc" "rollback from $FROM_RELEASE to $RELEASE refused (exit $rc): $why; nothing was changed: the database is still at $before and $PREFIX/current -> releases/$FROM_RELEASE" \
                "$(child_hint downgrade)"
        fi
        local core="neither Core $FROM_RELEASE nor $RELEASE will start on it"
        [ "$DB_NOW" = "$(release_version "$cur" "$FROM_RELEASE")" ] && core="that is release $FROM_RELEASE's, so Core $FROM_RELEASE can still start"
        hint=$(child_hint downgrade | sed 's/^hint: //')
        log "$(audit_hint)"
        err "$EX_RESTORE_FAILED" "rollback from $FROM_RELEASE to $RELEASE failed: the down migrations of release $FROM_RELEASE failed (exit $rc): $why. The database is at schema $DB_NOW; $PREFIX/current -> releases/$FROM_RELEASE (unchanged); $core. Fix the cause and run '$PREFIX/current/install.sh --prefix $PREFIX --rollback' again, or restore the database from backup." \
            "${hint:+$hint }Log: $LOG_FILE; $(audit_hint)."
    fi
    log_steps "$WORK_DIR/downgrade.out"
    reverted=$(grep -c '"status": "succeeded"' "$WORK_DIR/downgrade.out")
    SCHEMA_VERSION=$TARGET_VERSION
    step_ok "$reverted down migration(s) of release $FROM_RELEASE; schema $TARGET_VERSION, release $RELEASE"
}

rollback_switch() {
    step 4 "switching files"
    switch_link current "releases/$RELEASE" || err "$EX_RESTORE_FAILED" "the database is at release $RELEASE's schema $TARGET_VERSION but $PREFIX/current cannot be pointed at releases/$RELEASE; do it by hand: ln -sfn releases/$RELEASE $PREFIX/current"
    rm -f "$PREFIX/previous"
    step_ok "current -> $RELEASE, previous removed; releases/$FROM_RELEASE stays on disk"
}

rollback_check() {
    local rc
    step 5 "checking the schema"
    check_release "$PREFIX/releases/$RELEASE" "$RELEASE" check
    rc=$?
    if [ "$rc" -ne 0 ]; then
        log "$(audit_hint)"
        err "$EX_RESTORE_FAILED" "rollback to $RELEASE: Core's check of release $RELEASE failed (exit $rc): $(child_reason check "$rc"). The database is at schema $TARGET_VERSION and $PREFIX/current -> releases/$RELEASE, but Core will not start. Reinstall release $RELEASE with its own bundle, or restore the database from backup." \
            "Log: $LOG_FILE; $(audit_hint)."
    fi
    step_ok "release $RELEASE, schema $TARGET_VERSION"
}

rollback_receipt() {
    step 6 "receipt"
    write_receipt
    step_ok "$RECEIPT_DETAIL"
}

# --- main ---------------------------------------------------------------------------------------
main_install() {
    preflight
    confirm
    setup_database
    check_db_version
    stage_files
    install_files
    apply_migrations
    check_schema
    switch_releases
    log "$(audit_hint)"
    if [ -n "$PREV_RELEASE" ]; then
        say "RansomEye Core upgraded from $PREV_RELEASE to $RELEASE in $PREFIX (schema $SCHEMA_VERSION, $DB_KIND database); install.sh --rollback returns to $PREV_RELEASE"
    else
        say "RansomEye Core $RELEASE is installed in $PREFIX (schema $SCHEMA_VERSION, $DB_KIND database)"
    fi
}

main_rollback() {
    rollback_preflight
    confirm
    setup_database
    rollback_migrations
    rollback_switch
    rollback_check
    rollback_receipt
    log "$(audit_hint)"
    say "RansomEye Core in $PREFIX is back at release $RELEASE (schema $TARGET_VERSION, $DB_KIND database); releases/$FROM_RELEASE stays on disk"
}

main() {
    BUNDLE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
    [ -f "$BUNDLE_DIR/BUILDINFO" ] && RELEASE=$(buildinfo release)
    parse_args "$@"
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ransomeye-install.XXXXXX") \
        || err "$EX_INTERNAL" "cannot create a temporary directory in ${TMPDIR:-/tmp}"
    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM
    log "=== $([ "$MODE" = rollback ] && echo "rollback" || echo "install/upgrade") in $PREFIX by $(id -un), with $BUNDLE_DIR/install.sh"
    if [ "$MODE" = rollback ]; then main_rollback; else main_install; fi
}

[ "_${RANSOMEYE_INSTALLER_ENV:-}" = "_testing" ] || main "$@" || exit 1
