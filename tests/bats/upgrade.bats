#!/usr/bin/env bats
# Upgrading a site from the previous release's bundle (BUNDLE_PREV, e.g. 1.0.0) to this one
# (BUNDLE, e.g. 1.1.0), the automatic return to the previous release when the upgrade fails (22),
# what happens when that fails too (23), `install.sh --rollback`, and an older installer over a
# newer database (14). Each test starts with the previous release installed and rows in every table.

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
    PREFIX="$BATS_TEST_TMPDIR/prefix"
    PREV_VERSION=$(release_version_in "$BUNDLE_PREV" "$PREV_RELEASE")
    NEW_VERSION=$(release_version_of)
    N_NEW=$(migrations_between "$BUNDLE" "$PREV_VERSION" "$NEW_VERSION")
    [ "$N_NEW" -gt 0 ] || fail "the bundle has no migrations after $PREV_RELEASE ($PREV_VERSION)"
    export RANSOMEYE_CONNECT_RETRIES=0
}

teardown() {
    stop_embedded "$PREFIX"
}

sql() { psql_db "$DB" "$@"; }

# install_prev: the previous release on a fresh database of the test cluster, with rows in every
# table; records their fingerprints (ROWS_BEFORE) and the applied migrations (APPLIED_BEFORE).
install_prev() {
    DB=$(new_db)
    write_dsn_file "$BATS_TEST_TMPDIR/dsn" "$DB"
    run -0 "$BUNDLE_PREV/install.sh" --prefix "$PREFIX" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    [ "$(db_version)" = "$PREV_VERSION" ]
    load_rows 20 40
    record_columns "$BATS_TEST_TMPDIR/cols"
    ROWS_BEFORE=$(rows_fingerprint "$BATS_TEST_TMPDIR/cols")
    APPLIED_BEFORE=$(migrations_applied)
}

# variant NAME: a private copy of this release's bundle for a test to change (then reseal_bundle).
variant() {
    local b="$BATS_TEST_TMPDIR/$1"
    copy_bundle "$b"
    printf '%s' "$b"
}

# stale_snapshot BUNDLE: the release's expected schema left at the previous release's (a snapshot
# nobody regenerated): Core's check of the new release fails on the upgraded database.
stale_snapshot() {
    cp "$BUNDLE_PREV/schemas/snapshots/$PREV_RELEASE.schema" "$1/schemas/snapshots/$RELEASE.schema"
}

assert_back_at_prev() {  # the database, the files and Core's check at the previous release
    [ "$(db_version)" = "$PREV_VERSION" ] || fail "database at $(db_version), not $PREV_VERSION"
    [ "$(migrations_applied)" = "$APPLIED_BEFORE" ] || fail "schema_migrations differs from before the upgrade"
    [ "$(rows_fingerprint "$BATS_TEST_TMPDIR/cols")" = "$ROWS_BEFORE" ] || fail "rows differ from before the upgrade"
    [ "$(readlink "$PREFIX/current")" = "releases/$PREV_RELEASE" ]
    run -0 "$PREFIX/current/bin/ransomeye-migrate" check --dsn-file "$PREFIX/etc/db.conf" \
        --migrations-dir "$PREFIX/current/schemas/migrations"
    assert_output --partial "release $PREV_RELEASE"
}

@test "the previous release's bundle is a real $PREV_RELEASE: its migrations, releases and snapshots only" {
    [ "$PREV_RELEASE" != "$RELEASE" ]
    run -0 sed -n 's/^"\([0-9.]*\)".*/\1/p' "$BUNDLE_PREV/schemas/migrations/releases.toml"
    refute_output --partial "$RELEASE"
    [ ! -e "$BUNDLE_PREV/schemas/snapshots/$RELEASE.schema" ]
    [ -f "$BUNDLE_PREV/schemas/snapshots/$PREV_RELEASE.schema" ]
    [ "$(migrations_between "$BUNDLE_PREV" "$PREV_VERSION" 99999999_999999)" = 0 ]
    grep -qx "schema_version=$PREV_VERSION" "$BUNDLE_PREV/BUILDINFO"
    # its Core expects its own release
    run -0 "$BUNDLE_PREV/bin/ransomeye-migrate" check --help
    assert_output --partial "--expect-release"
}

@test "upgrade on the embedded default: every row kept, risk scores backfilled, $PREV_RELEASE kept on disk, receipt and check at the new release" {
    sql() { psql_embedded "$PREFIX" "$@"; }
    run -0 "$BUNDLE_PREV/install.sh" --prefix "$PREFIX"
    assert_output --partial "[2/8] database … ok (embedded, new cluster"
    load_rows 20 40
    record_columns "$BATS_TEST_TMPDIR/cols"
    ROWS_BEFORE=$(rows_fingerprint "$BATS_TEST_TMPDIR/cols")

    run -0 "$BUNDLE/install.sh" --prefix "$PREFIX"
    assert_output --partial "[1/8] preflight … ok (release $RELEASE over installed $PREV_RELEASE, embedded database, atomic)"
    assert_output --partial "[2/8] database … ok (embedded, reused)"
    assert_output --partial "[3/8] database version … ok (at schema $PREV_VERSION, release $PREV_RELEASE; upgrading to $RELEASE"
    assert_output --partial "[5/8] installing files … ok (releases/$RELEASE, beside releases/$PREV_RELEASE; current still -> $PREV_RELEASE)"
    assert_output --partial "[6/8] applying migrations … ok ($N_NEW applied in one transaction; schema $NEW_VERSION, release $RELEASE)"
    assert_output --partial "[7/8] checking the schema … ok (release $RELEASE"
    assert_output --partial "[8/8] switching releases … ok (previous -> $PREV_RELEASE, current -> $RELEASE, receipt written)"

    [ "$(db_version)" = "$NEW_VERSION" ]
    [ "$(rows_fingerprint "$BATS_TEST_TMPDIR/cols")" = "$ROWS_BEFORE" ] || fail "rows changed by the upgrade"
    # the backfill: one risk score per machine, computed from its open incidents and detections
    [ "$(sql -c "SELECT count(*) FROM machines m JOIN machine_risk_scores r USING (machine_id)")" = 20 ]
    [ "$(sql -c "SELECT count(*) FROM machine_risk_scores")" = 20 ]
    [ "$(sql -c "SELECT sum(score) || '/' || sum(open_incidents) || '/' || sum(unresolved_detections) FROM machine_risk_scores")" = "700/12/40" ]
    [ "$(sql -c "SELECT count(*) FROM raw_events WHERE ingest_source <> 'agent'")" = 0 ]
    [ "$(audit_count up succeeded)" = $((1 + N_NEW)) ]
    [ "$(sql -c "SELECT count(*) FROM schema_migration_audit WHERE mode = 'atomic' AND version > '$PREV_VERSION'")" = "$N_NEW" ]

    # both releases on disk, intact; current and previous links; Core's check of the new release
    (cd "$PREFIX/releases/$PREV_RELEASE" && sha256sum --quiet --strict -c SHA256SUMS)
    (cd "$PREFIX/releases/$RELEASE" && sha256sum --quiet --strict -c SHA256SUMS)
    [ "$(readlink "$PREFIX/current")" = "releases/$RELEASE" ]
    [ "$(readlink "$PREFIX/previous")" = "releases/$PREV_RELEASE" ]
    run -0 "$PREFIX/current/bin/ransomeye-migrate" check --expect-release "$RELEASE" --dsn-file "$PREFIX/etc/db.conf" \
        --migrations-dir "$PREFIX/current/schemas/migrations"
    run -0 cat "$PREFIX/receipt.json"
    assert_output --partial "\"release\": \"$RELEASE\""
    assert_output --partial "\"schema_version\": \"$NEW_VERSION\""
    assert_output --partial "\"previous_release\": \"$PREV_RELEASE\""
    assert_output --partial '"db": "embedded"'
    run -0 find "$PREFIX" -maxdepth 2 -name '.stage-*' -o -maxdepth 2 -name '.*.tmp'
    assert_output ""
}

@test "install.sh --rollback: back at $PREV_RELEASE with the new release's downs, rows kept, check of $PREV_RELEASE passes; the log names every step" {
    install_prev
    run -0 "$BUNDLE/install.sh" --prefix "$PREFIX"   # the server recorded in PREFIX/etc/db.conf
    assert_output --partial "[2/8] database … ok (existing server from $PREFIX/etc/db.conf)"

    run -0 "$PREFIX/current/install.sh" --prefix "$PREFIX" --rollback
    assert_output --partial "[1/6] preflight … ok (from $RELEASE back to $PREV_RELEASE, schema $PREV_VERSION; external database)"
    assert_output --partial "[3/6] reverting migrations … ok ($N_NEW down migration(s) of release $RELEASE; schema $PREV_VERSION, release $PREV_RELEASE)"
    assert_output --partial "[4/6] switching files … ok (current -> $PREV_RELEASE, previous removed; releases/$RELEASE stays on disk)"
    assert_output --partial "[5/6] checking the schema … ok (release $PREV_RELEASE"
    assert_output --partial "[6/6] receipt … ok (receipt written)"
    assert_output --partial "back at release $PREV_RELEASE"

    [ "$(migrations_applied)" = "$APPLIED_BEFORE" ]
    assert_back_at_prev
    [ "$(audit_count down succeeded)" = "$N_NEW" ]
    [ "$(sql -c "SELECT to_regclass('machine_risk_scores') IS NULL")" = t ]
    [ ! -e "$PREFIX/previous" ]
    [ -d "$PREFIX/releases/$RELEASE" ]
    run -0 cat "$PREFIX/receipt.json"
    assert_output --partial "\"release\": \"$PREV_RELEASE\""
    assert_output --partial "\"schema_version\": \"$PREV_VERSION\""
    assert_output --partial "\"rolled_back_from\": \"$RELEASE\""

    # the log: every step of both runs, the runner commands with the releases, the migrations
    # that ran, and where the audit trail is
    local log="$PREFIX/log/install.log" s
    for s in "[1/8] preflight … ok" "[4/8] staging files … ok" "[2/8] database … ok" "[3/8] database version … ok" \
             "[5/8] installing files … ok" "[6/8] applying migrations … ok" "[7/8] checking the schema … ok" \
             "[8/8] switching releases … ok" "[1/6] preflight … ok" "[2/6] database … ok" \
             "[3/6] reverting migrations … ok" "[4/6] switching files … ok" "[5/6] checking the schema … ok" \
             "[6/6] receipt … ok" \
             "running: releases/$RELEASE/bin/ransomeye-migrate upgrade --to $RELEASE --json --atomic" \
             "running: releases/$RELEASE/bin/ransomeye-migrate downgrade --to $PREV_VERSION" \
             "running: releases/$PREV_RELEASE/bin/ransomeye-migrate check --expect-release $PREV_RELEASE" \
             "=== rollback in $PREFIX" "release $RELEASE over installed $PREV_RELEASE" \
             "audit trail: $PREFIX/current/bin/ransomeye-migrate history"; do
        grep -qF -- "$s" "$log" || fail "the log lacks: $s"
    done
    [ "$(grep -Ec "^[0-9TZ:-]+   up [0-9_]+ .*: succeeded" "$log")" = $((1 + N_NEW)) ]
    [ "$(grep -Ec "^[0-9TZ:-]+   down [0-9_]+ .*: succeeded" "$log")" = "$N_NEW" ]
    # the command the log names works and shows the downs
    run -0 "$PREFIX/current/bin/ransomeye-migrate" history --dsn-file "$PREFIX/etc/db.conf" \
        --migrations-dir "$PREFIX/current/schemas/migrations"
    assert_output --partial "down"

    # a second rollback has nothing to return to
    run -2 "$PREFIX/current/install.sh" --prefix "$PREFIX" --rollback
    assert_output --partial "no previous release to return to"
}

@test "install.sh --rollback on a fresh install: exit 2, nothing changed" {
    install_prev
    local before
    before=$(listing "$PREFIX")
    run -2 "$PREFIX/current/install.sh" --prefix "$PREFIX" --rollback
    assert_output --partial "[1/6] preflight … failed"
    assert_output --partial "no previous release to return to: $PREFIX/previous does not exist"
    [ "$(listing "$PREFIX")" = "$before" ]
    [ "$(migrations_applied)" = "$APPLIED_BEFORE" ]
    run -2 "$BUNDLE/install.sh" --prefix "$PREFIX" --rollback --no-atomic
    assert_output --partial "--no-atomic applies to an upgrade"
}

@test "a migration of the new release fails (atomic): exit 22, nothing committed, no down run, $PREV_RELEASE current and checked" {
    install_prev
    local b receipt
    receipt=$(cat "$PREFIX/receipt.json")
    b=$(variant failing)
    printf 'SELECT 1/0;\n' >>"$(newest_up "$b")"
    reseal_bundle "$b"

    run -22 "$b/install.sh" --prefix "$PREFIX"
    assert_output --partial "[5/8] installing files … ok (releases/$RELEASE, beside releases/$PREV_RELEASE; current still -> $PREV_RELEASE)"
    assert_output --partial "[6/8] applying migrations … failed"
    assert_output --partial "division by zero"
    assert_output --partial "[rollback 1/3] reverting migrations … ok (nothing to revert: the atomic upgrade committed nothing, schema $PREV_VERSION)"
    assert_output --partial "[rollback 2/3] switching files … ok (current -> $PREV_RELEASE (never switched))"
    assert_output --partial "[rollback 3/3] checking the schema … ok (release $PREV_RELEASE"
    assert_output --partial "upgrade to $RELEASE failed, previous release $PREV_RELEASE restored"
    assert_output --partial "Log: $PREFIX/log/install.log"
    assert_output --partial "history --dsn-file"

    assert_back_at_prev
    [ "$(audit_count down)" = 0 ]
    [ "$(audit_count up failed)" = 1 ]
    [ "$(audit_count up rolled_back)" = $((N_NEW - 1)) ]
    [ ! -e "$PREFIX/previous" ]
    [ "$(cat "$PREFIX/receipt.json")" = "$receipt" ]
    grep -qF "[rollback 3/3] checking the schema … ok" "$PREFIX/log/install.log"

    # fixed: the real release installs over it (its different copy of releases/$RELEASE replaced)
    run -0 "$BUNDLE/install.sh" --prefix "$PREFIX"
    assert_output --partial "replaced a damaged or different copy"
    [ "$(db_version)" = "$NEW_VERSION" ]
    [ "$(readlink "$PREFIX/current")" = "releases/$RELEASE" ]
}

@test "Core's check fails after a --no-atomic upgrade: the new release's downs run, exit 22, $PREV_RELEASE current and checked" {
    install_prev
    local b
    b=$(variant stale)
    stale_snapshot "$b"
    reseal_bundle "$b"

    run -22 "$b/install.sh" --prefix "$PREFIX" --no-atomic
    assert_output --partial "[1/8] preflight … ok (release $RELEASE over installed $PREV_RELEASE, external database, per-migration)"
    assert_output --partial "[6/8] applying migrations … ok ($N_NEW applied one transaction each"
    assert_output --partial "[7/8] checking the schema … failed"
    assert_output --partial "Core's check of release $RELEASE failed after the upgrade (exit 16)"
    assert_output --partial "[rollback 1/3] reverting migrations … ok ($N_NEW down migration(s) of release $RELEASE, schema $PREV_VERSION)"
    assert_output --partial "[rollback 3/3] checking the schema … ok (release $PREV_RELEASE"
    assert_output --partial "previous release $PREV_RELEASE restored"

    assert_back_at_prev
    [ "$(audit_count up succeeded)" = $((1 + N_NEW)) ]
    [ "$(audit_count down succeeded)" = "$N_NEW" ]
    [ "$(sql -c "SELECT count(*) FROM schema_migration_audit WHERE version > '$PREV_VERSION' AND mode = 'per-migration'")" = $((2 * N_NEW)) ]
}

@test "the same stale snapshot in atomic mode is refused before COMMIT: exit 22, no down migration needed" {
    install_prev
    local b
    b=$(variant stale)
    stale_snapshot "$b"
    reseal_bundle "$b"
    run -22 "$b/install.sh" --prefix "$PREFIX"
    assert_output --partial "[6/8] applying migrations … failed"
    assert_output --partial "(exit 16)"
    assert_output --partial "nothing to revert: the atomic upgrade committed nothing"
    assert_back_at_prev
    [ "$(audit_count down)" = 0 ]
}

@test "the way back fails too (a 'snapshot_volume' row the down refuses): exit 23 with what to do; --rollback finishes after the fix" {
    install_prev
    local b
    b=$(variant blocked)
    stale_snapshot "$b"
    # Stands in for Core 1.1.0 queueing a volume snapshot between the upgrade and the way back:
    # in per-migration mode the enum value is committed, so the last migration can use it.
    printf "INSERT INTO response_actions (machine_id, action_type, requested_by)\n  SELECT machine_id, 'snapshot_volume', 'core' FROM machines ORDER BY 1 LIMIT 1;\n" \
        >>"$(newest_up "$b")"
    reseal_bundle "$b"

    run -23 "$b/install.sh" --prefix "$PREFIX" --no-atomic
    assert_output --partial "[7/8] checking the schema … failed"
    assert_output --partial "[rollback 1/3] reverting migrations … failed"
    assert_output --partial "upgrade to $RELEASE failed and restoring release $PREV_RELEASE failed too"
    assert_output --partial "snapshot_volume"
    assert_output --partial "$PREFIX/current -> releases/$RELEASE, $PREFIX/previous -> releases/$PREV_RELEASE"
    assert_output --partial "run '$PREFIX/current/install.sh --prefix $PREFIX --rollback'"
    assert_output --partial "restore the database from the backup"
    assert_output --partial "Log: $PREFIX/log/install.log"
    local stuck
    stuck=$(db_version)
    [ "$stuck" != "$PREV_VERSION" ]
    [ "$stuck" != "$NEW_VERSION" ]
    assert_output --partial "The database is at schema $stuck"
    # `current` names the release whose downs can finish the way back
    [ "$(readlink "$PREFIX/current")" = "releases/$RELEASE" ]
    [ "$(readlink "$PREFIX/previous")" = "releases/$PREV_RELEASE" ]
    [ "$(audit_count down failed)" = 1 ]

    # the operator's fix, then the rollback the message names
    sql -c "DELETE FROM response_actions WHERE action_type::text = 'snapshot_volume'"
    run -0 "$PREFIX/current/install.sh" --prefix "$PREFIX" --rollback
    assert_back_at_prev
}

@test "install.sh --rollback whose down is refused: exit 23, the database where the downs stopped, current unchanged" {
    install_prev
    run -0 "$BUNDLE/install.sh" --prefix "$PREFIX"
    # Core 1.1.0 at work: a response action only 1.1.0 knows
    sql -c "INSERT INTO response_actions (machine_id, action_type, requested_by)
            SELECT machine_id, 'snapshot_volume', 'core' FROM machines ORDER BY 1 LIMIT 1"
    run -23 "$PREFIX/current/install.sh" --prefix "$PREFIX" --rollback
    assert_output --partial "[3/6] reverting migrations … failed"
    assert_output --partial "rollback from $RELEASE to $PREV_RELEASE failed"
    assert_output --partial "snapshot_volume"
    assert_output --partial "$PREFIX/current -> releases/$RELEASE (unchanged)"
    assert_output --partial "--rollback' again, or restore the database from backup"
    [ "$(readlink "$PREFIX/current")" = "releases/$RELEASE" ]
    [ "$(readlink "$PREFIX/previous")" = "releases/$PREV_RELEASE" ]
    [ "$(db_version)" != "$PREV_VERSION" ]
    assert_output --partial "The database is at schema $(db_version)"
}

@test "the $PREV_RELEASE installer over a $RELEASE database: exit 14, no file, link, receipt or database row changed" {
    install_prev
    run -0 "$BUNDLE/install.sh" --prefix "$PREFIX"
    local before receipt applied audit
    before=$(listing "$PREFIX")
    receipt=$(cat "$PREFIX/receipt.json")
    applied=$(migrations_applied)
    audit=$(sql -c "SELECT count(*) || '/' || max(id) FROM schema_migration_audit")

    run -14 "$BUNDLE_PREV/install.sh" --prefix "$PREFIX"
    assert_output --partial "[3/8] database version … failed"
    assert_output --partial "newer than release $PREV_RELEASE"
    assert_output --partial "Nothing was changed"
    refute_output --partial "[4/8]"
    [ "$(listing "$PREFIX")" = "$before" ] || fail "the prefix changed: $(diff <(echo "$before") <(listing "$PREFIX"))"
    [ "$(cat "$PREFIX/receipt.json")" = "$receipt" ]
    [ "$(migrations_applied)" = "$applied" ]
    [ "$(sql -c "SELECT count(*) || '/' || max(id) FROM schema_migration_audit")" = "$audit" ]

    # a prefix that never had the old release: its staged copy is removed again
    local p2="$BATS_TEST_TMPDIR/p2"
    run -0 "$BUNDLE/install.sh" --prefix "$p2" --db-dsn-file "$BATS_TEST_TMPDIR/dsn"
    before=$(listing "$p2")
    run -14 "$BUNDLE_PREV/install.sh" --prefix "$p2"
    [ "$(listing "$p2")" = "$before" ] || fail "the prefix changed: $(diff <(echo "$before") <(listing "$p2"))"
    [ ! -e "$p2/releases/$PREV_RELEASE" ]
}
