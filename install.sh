#!/usr/bin/env bash
# RansomEye Core: install this release bundle. A thin wrapper: the installer proper is
# installer/core/install.sh (see docs/INSTALLER.md, or run with --help).
set -u
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/installer/core/install.sh" "$@"
