#!/bin/sh
# Builds and runs every test; the last line is "N passed, M failed". Set SANITIZE=1 for the
# AddressSanitizer + UndefinedBehaviorSanitizer build.
set -eu
cd "$(dirname "$0")/.."
sh scripts/ensure_deps.sh
make -s -j"$(nproc)" SANITIZE="${SANITIZE:-0}" all
exec make -s SANITIZE="${SANITIZE:-0}" test
