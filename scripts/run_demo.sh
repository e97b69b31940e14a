#!/bin/sh
# The main job: builds Tailor and trains a small CNN on a generated shapes task on the CPU,
# printing held-out accuracy; pass extra flags through to `tailor demo` (see --help).
set -eu
cd "$(dirname "$0")/.."
sh scripts/ensure_deps.sh
make -s -j"$(nproc)" all
exec build/tailor demo "$@"
