#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (PostgreSQL 15 server binaries
# if missing, a virtualenv with the pinned Python packages, bats-core from npm), builds the release
# bundle, then runs pytest and the bats suite against real PostgreSQL servers it starts itself.
#   usage: tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
say() { printf '[tests] %s\n' "$*"; }

PG_BIN=${RANSOMEYE_PG_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$PG_BIN/initdb" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing postgresql-15 (server binaries missing)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    else
        echo "PostgreSQL 15 server binaries not found in $PG_BIN: install postgresql-15" >&2; exit 20
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
    say "creating .venv"
    "$PY" -m venv .venv
fi
if ! cmp -s requirements-dev.txt .venv/.installed-requirements 2>/dev/null \
   || ! cmp -s requirements.txt .venv/.installed-runtime 2>/dev/null; then
    say "installing Python dependencies (pinned)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt .venv/.installed-requirements
    cp requirements.txt .venv/.installed-runtime
fi

say "pytest"
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests 2>&1 | tee "$LOGS/pytest.log"
PYTEST_RC=${PIPESTATUS[0]}
set -e

# --- the release bundle and the bats suite against it (build/, installer/, tests/bats/) ----------
# Counts for the closing "N passed, N failed" line: pytest's summary plus bats' TAP lines.
count() { { grep -Eo "[0-9]+ $1" "$LOGS/pytest.log" || true; } | tail -n 1 | cut -d' ' -f1; }
PY_PASSED=$(count passed); PY_FAILED=$(count failed); PY_ERRORS=$(count 'errors?'); PY_SKIPPED=$(count skipped)
PY_FAILED=$(( ${PY_FAILED:-0} + ${PY_ERRORS:-0} ))
BATS_PASSED=0; BATS_FAILED=0; BATS_SKIPPED=0; BATS_RC=0

say "building the release bundle"
set +e
BUNDLE=$(bash build/build.sh --out dist)
BUILD_RC=$?
set -e
if [ "$BUILD_RC" -ne 0 ] || [ ! -f "$BUNDLE" ]; then
    echo "build/build.sh failed (exit $BUILD_RC): the bats suite cannot run" >&2
    BATS_RC=1; BATS_FAILED=1
else
    need_bats=no
    for pkg in bats bats-support bats-assert; do
        want=$(sed -n "s/.*\"$pkg\": *\"\([0-9.]*\)\".*/\1/p" package.json)
        have=$(sed -n 's/^  "version": *"\([0-9.]*\)".*/\1/p' "node_modules/$pkg/package.json" 2>/dev/null || true)
        [ "$want" = "$have" ] || need_bats=yes
    done
    if [ "$need_bats" = yes ]; then
        if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            say "installing npm (to fetch bats-core)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
        fi
        say "installing bats-core from npm (package-lock.json)"
        if [ -f package-lock.json ]; then
            npm ci --no-audit --no-fund --loglevel=error >/dev/null
        else
            npm install --no-audit --no-fund --loglevel=error >/dev/null
        fi
    fi
    say "bats (against $BUNDLE)"
    set +e
    RANSOMEYE_BUNDLE="$BUNDLE" BATS_LIB_PATH="$REPO/node_modules" COLUMNS=200 \
        node_modules/bats/bin/bats --formatter tap tests/bats 2>&1 | tee "$LOGS/bats.log"
    BATS_RC=${PIPESTATUS[0]}
    set -e
    BATS_SKIPPED=$(grep -Ec '^ok [0-9]+ .*# skip' "$LOGS/bats.log" || true)
    BATS_PASSED=$(( $(grep -Ec '^ok [0-9]+' "$LOGS/bats.log" || true) - BATS_SKIPPED ))
    BATS_FAILED=$(grep -Ec '^not ok [0-9]+' "$LOGS/bats.log" || true)
    if [ "$BATS_RC" -ne 0 ] && [ "$BATS_FAILED" -eq 0 ]; then BATS_FAILED=1; fi
fi

echo "pytest: ${PY_PASSED:-0} passed, ${PY_FAILED} failed; bats: $BATS_PASSED passed, $BATS_FAILED failed, $BATS_SKIPPED skipped"
echo "$(( ${PY_PASSED:-0} + BATS_PASSED )) passed, $(( PY_FAILED + BATS_FAILED )) failed, $(( ${PY_SKIPPED:-0} + BATS_SKIPPED )) skipped"
if [ "$PYTEST_RC" -ne 0 ]; then
    exit "$PYTEST_RC"
fi
[ "$BATS_RC" -eq 0 ] || exit 1
exit 0
