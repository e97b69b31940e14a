#!/bin/sh
# One command from a fresh Debian machine to the built-in benchmark (docs/DATA.md): the build
# dependencies and the data sources (installed when run as root, otherwise the apt-get line to
# run is printed), the build, then `tailor data build` with any flags given here
# (default output data/benchmark; e.g. --reduced --out /tmp/bench).
set -eu
cd "$(dirname "$0")/.."
sh scripts/ensure_deps.sh
sh scripts/get_data_sources.sh
make -s -j"$(nproc)" build/tailor
exec build/tailor data build "$@"
