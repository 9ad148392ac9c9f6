# shellcheck shell=bash
# Shared by every tests/bats/*.bats file. The suite runs against the BUILT release bundle
# (RANSOMEYE_BUNDLE, else the newest dist/ransomeye-core-*.tar.gz), never the source tree.
#
# PostgreSQL: each file that needs a server starts its own throwaway cluster (pg_start in
# setup_file): initdb --no-sync, socket only (listen_addresses=''), fsync off, stopped by its data
# directory in teardown_file. As root the server runs as `postgres` through runuser.

bats_require_minimum_version 1.5.0
bats_load_library bats-support
bats_load_library bats-assert

export COLUMNS=200
REPO_ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
PG_BIN=${RANSOMEYE_PG_BIN:-/usr/lib/postgresql/15/bin}
# The two advisory-lock keys of the runner (common/db/lock.py): "RNSM" / "SCHM".
# (0x524E534D is 1380864845 and 0x5343484D is 1396918349 in decimal.)
export LOCK_KEY1=$((0x524E534D))
export LOCK_KEY2=$((0x5343484D))

is_root() { [ "$(id -u)" = 0 ]; }

as_pg() {
    if is_root; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

# bats makes its run directory 0700; the postgres user (which runs the clusters when we are root)
# must be able to pass through it. Open the search bit of DIR and its parents inside that tree.
make_reachable() {
    local d
    d=$(cd "$1" && pwd)
    while [ "$d" != "/" ] && [ "${#d}" -ge "${#BATS_RUN_TMPDIR}" ]; do
        chmod o+x "$d"
        d=$(dirname "$d")
    done
}

bundle_tarball() {
    local tb="${RANSOMEYE_BUNDLE:-}"
    if [ -z "$tb" ]; then
        tb=$(find "$REPO_ROOT/dist" -maxdepth 1 -name 'ransomeye-core-*.tar.gz' -printf '%T@ %p\n' 2>/dev/null \
            | sort -rn | head -n 1 | cut -d' ' -f2-)
    fi
    if [ -z "$tb" ] || [ ! -f "$tb" ]; then
        echo "no release bundle: run build/build.sh first (or set RANSOMEYE_BUNDLE)" >&2
        return 1
    fi
    printf '%s' "$tb"
}

# extract_bundle (in setup_file): unpack the bundle once per file; exports BUNDLE, BIN, RELEASE.
extract_bundle() {
    local tb
    tb=$(bundle_tarball) || return 1
    mkdir -p "$BATS_FILE_TMPDIR/dist"
    tar -xzf "$tb" -C "$BATS_FILE_TMPDIR/dist"
    BUNDLE=$(echo "$BATS_FILE_TMPDIR"/dist/ransomeye-core-*)
    make_reachable "$BUNDLE"
    BIN="$BUNDLE/bin/ransomeye-migrate"
    RELEASE=$(sed -n 's/^release=//p' "$BUNDLE/BUILDINFO")
    export BUNDLE BIN RELEASE
}

release_version_of() {  # the schema version the bundle's release names in releases.toml
    sed -n "s/^\"$RELEASE\" *= *\"\(.*\)\"/\1/p" "$BUNDLE/schemas/migrations/releases.toml"
}

# copy_bundle DEST: a private copy of the bundle a test may change.
copy_bundle() {
    cp -a "$BUNDLE" "$1"
}

# reseal_bundle DIR: rewrite SHA256SUMS after a deliberate change (a "release" with new files).
reseal_bundle() {
    (cd "$1" && find . \( -type f -o -type l \) ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort \
        | xargs -d '\n' sha256sum >"$BATS_TEST_TMPDIR/sums" && mv "$BATS_TEST_TMPDIR/sums" SHA256SUMS)
}

# set_bundle_release DIR X.Y.Z: the bundle claims another release (for a second release).
set_bundle_release() {
    sed -i "s/^release=.*/release=$2/" "$1/BUILDINFO"
}

# make_next_release DIR GOOD UP_SQL: turn the bundle copy DIR into a "release 9.9.9" that is this
# release (migrations up to schema version GOOD) plus one migration 20990101_000000 running UP_SQL.
make_next_release() {
    local b="$1" good="$2" up="$3" f v line toml="$1/schemas/migrations/releases.toml"
    for f in "$b"/schemas/migrations/migration_*.sql; do
        v=$(basename "$f" | cut -d_ -f2,3)
        if [[ "$v" > "$good" ]]; then rm "$f"; fi
    done
    while IFS= read -r line; do
        v=$(printf '%s' "$line" | sed -n 's/^"[0-9.]*" *= *"\([0-9_]*\)".*/\1/p')
        if [ -z "$v" ] || ! [[ "$v" > "$good" ]]; then printf '%s\n' "$line"; fi
    done <"$toml" >"$BATS_TEST_TMPDIR/releases.toml"
    printf '"9.9.9" = "20990101_000000"\n' >>"$BATS_TEST_TMPDIR/releases.toml"
    mv "$BATS_TEST_TMPDIR/releases.toml" "$toml"
    printf '%s\n' "$up" >"$b/schemas/migrations/migration_20990101_000000_next_up.sql"
    printf 'SELECT 1;\n' >"$b/schemas/migrations/migration_20990101_000000_next_down.sql"
    if [ -f "$b/schemas/snapshots/$RELEASE.schema" ]; then  # an expected schema for the new release
        cp "$b/schemas/snapshots/$RELEASE.schema" "$b/schemas/snapshots/9.9.9.schema"
    fi
    set_bundle_release "$b" 9.9.9
    reseal_bundle "$b"
}

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        if ! (ss -Hltn "sport = :$p" 2>/dev/null | grep -q .); then
            printf '%s' "$p"
            return 0
        fi
    done
}

# pg_start (in setup_file): a throwaway cluster; exports PGT_DATA, PGT_SOCK, PGT_PORT.
# Role `pwuser` must give a password (scram); everyone else is trusted on the socket.
pg_start() {
    local base="$BATS_FILE_TMPDIR/pg"
    mkdir -p "$base/sock"
    make_reachable "$base"
    is_root && chown -R postgres: "$base"
    PGT_DATA="$base/data"
    PGT_SOCK="$base/sock"
    PGT_PORT=$(free_port)
    as_pg "$PG_BIN/initdb" --no-sync -A trust -U postgres -E UTF8 --locale=C.UTF-8 -D "$PGT_DATA" >/dev/null \
        || return 1
    printf 'local all pwuser scram-sha-256\nlocal all all trust\n' >"$PGT_DATA/pg_hba.conf"
    as_pg "$PG_BIN/pg_ctl" -D "$PGT_DATA" -l "$base/server.log" -w -t 60 \
        -o "-p $PGT_PORT -k $PGT_SOCK -c listen_addresses='' -c fsync=off" start \
        </dev/null >/dev/null 2>&1 3>&- || { cat "$base/server.log" >&2; return 1; }
    export PGT_DATA PGT_SOCK PGT_PORT
}

pg_stop() {
    [ -n "${PGT_DATA:-}" ] && [ -d "$PGT_DATA" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$PGT_DATA" -m immediate -w stop >/dev/null 2>&1 3>&- || true
}

pg_is_up() {
    as_pg "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

# psql_db DB [psql args...]: a superuser query on the test cluster, unaligned, tuples only.
psql_db() {
    local db="$1"
    shift
    PGPASSWORD='' "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h "$PGT_SOCK" -p "$PGT_PORT" -U postgres -d "$db" "$@"
}

# new_db: a fresh database named after the test; prints its name.
new_db() {
    local name="t${BATS_TEST_NUMBER}_${RANDOM}"
    psql_db postgres -c "CREATE DATABASE $name" >/dev/null
    printf '%s' "$name"
}

dsn_for() {  # dsn_for DB [USER]
    printf 'host=%s port=%s user=%s dbname=%s' "$PGT_SOCK" "$PGT_PORT" "${2:-postgres}" "$1"
}

# write_dsn_file FILE DB [USER]: a 0600 connection file (no password inside).
write_dsn_file() {
    (umask 077 && dsn_for "$2" "${3:-}" >"$1")
}

schema_version() {  # schema_version DB: max(version) of schema_migrations, '' if none, 'none' if no table
    if [ "$(psql_db "$1" -c "SELECT to_regclass('schema_migrations') IS NULL")" = t ]; then
        printf 'none'
    else
        psql_db "$1" -c "SELECT coalesce(max(version), '') FROM schema_migrations"
    fi
}

# Stop an embedded cluster a test's installer started (by data directory).
stop_embedded() {
    local pgdata="$1/pgdata"
    if [ -f "$pgdata/PG_VERSION" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 3>&- || true
    fi
}

# install_bundle [DIR] ARGS...: run a bundle's install.sh with the given args (DIR defaults to BUNDLE).
installer() {
    "$BUNDLE/install.sh" "$@"
}

# listing DIR: path, mode, size, mtime and link target of everything, for before/after comparisons.
# Like the log, .install.lock changes on every run (it names the installer holding the prefix).
listing() {
    (cd "$1" && find . -path ./pgdata -prune -o -path ./log -prune -o -path ./.install.lock -prune \
        -o -printf '%p %M %s %T@ %l\n' | LC_ALL=C sort)
}

# --- upgrades: the previous release's bundle, rows in every table, their fingerprints -------------

# extract_prev_bundle (in setup_file): the previous release's bundle (RANSOMEYE_BUNDLE_PREV, built
# once per run by setup_suite.bash unless given); exports BUNDLE_PREV, PREV_RELEASE.
extract_prev_bundle() {
    local tb="${RANSOMEYE_BUNDLE_PREV:-}"
    if [ -z "$tb" ] || [ ! -f "$tb" ]; then
        echo "no previous-release bundle: set RANSOMEYE_BUNDLE_PREV (build/build.sh --release-version X.Y.Z)" >&2
        return 1
    fi
    mkdir -p "$BATS_FILE_TMPDIR/prev"
    tar -xzf "$tb" -C "$BATS_FILE_TMPDIR/prev"
    BUNDLE_PREV=$(echo "$BATS_FILE_TMPDIR"/prev/ransomeye-core-*)
    make_reachable "$BUNDLE_PREV"
    PREV_RELEASE=$(sed -n 's/^release=//p' "$BUNDLE_PREV/BUILDINFO")
    export BUNDLE_PREV PREV_RELEASE
}

# release_version_in BUNDLE RELEASE: RELEASE's schema version in BUNDLE's releases.toml.
release_version_in() {
    sed -n "s/^\"${2//./\\.}\" *= *\"\(.*\)\"/\1/p" "$1/schemas/migrations/releases.toml"
}

# newest_up BUNDLE: the bundle's newest up migration file.
newest_up() {
    find "$1/schemas/migrations" -name 'migration_*_up.sql' | LC_ALL=C sort | tail -n 1
}

# psql_embedded PREFIX [psql args...]: a query on an installer's embedded cluster, as its role.
psql_embedded() {
    local p="$1" pw
    shift
    pw=$(sed -n 's/.*password=\([0-9a-f]*\).*/\1/p' "$p/etc/db.conf")
    env -i PATH="$PATH" PGPASSWORD="$pw" "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h "$p/run" -U ransomeye \
        -d ransomeye "$@"
}

# The helpers below talk to the database through `sql` [psql args...], which each test defines
# (psql_db "$DB" "$@", or psql_embedded "$PREFIX" "$@").
V1_TABLES="machines agents raw_events process_events file_events detection_rules detections incidents"
V1_TABLES="$V1_TABLES incident_detections incident_notes policies policy_assignments response_actions"

# load_rows [MACHINES] [EVENTS]: rows in every table of the v1.0.0 schema (fixtures/upgrade/rows.sql).
load_rows() {
    sql -v machines="${1:-20}" -v events="${2:-40}" -f "$REPO_ROOT/tests/bats/fixtures/upgrade/rows.sql" >/dev/null
}

# record_columns FILE: "table col,col,..." of the v1.0.0 tables as they are now, so a later
# fingerprint reads only these columns (a release may add columns).
record_columns() {
    sql -c "SELECT table_name || ' ' || string_agg(quote_ident(column_name), ',' ORDER BY ordinal_position)
              FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = ANY (string_to_array('$V1_TABLES', ' '))
             GROUP BY table_name ORDER BY table_name" >"$1"
}

# rows_fingerprint COLUMNS_FILE: "table rows md5" per table, over the recorded columns.
rows_fingerprint() {
    local t cols q=""
    while read -r t cols; do
        [ -n "$q" ] && q="$q UNION ALL "
        q="$q(SELECT '$t' AS t, count(*) AS n, md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS h
                FROM (SELECT md5(ROW($cols)::text) AS h FROM $t) x)"
    done <"$1"
    sql -c "SET TimeZone = 'UTC'" -c "$q ORDER BY 1"
}

migrations_applied() {  # version,checksum,applied_at of every applied migration
    sql -c "SELECT version || ',' || checksum || ',' || applied_at FROM schema_migrations ORDER BY version"
}

db_version() {
    sql -c "SELECT coalesce(max(version), '') FROM schema_migrations"
}

audit_count() {  # audit_count DIRECTION [STATUS]
    local status_is=""
    [ -n "${2:-}" ] && status_is="AND status = '$2'"
    sql -c "SELECT count(*) FROM schema_migration_audit WHERE direction = '$1' $status_is"
}

# migrations_between BUNDLE OLD NEW: how many migrations take OLD to NEW.
migrations_between() {
    local n=0 f v
    for f in "$1"/schemas/migrations/migration_*_up.sql; do
        v=$(basename "$f" | cut -d_ -f2,3)
        if [[ "$v" > "$2" ]] && ! [[ "$v" > "$3" ]]; then n=$((n + 1)); fi
    done
    printf '%s' "$n"
}
