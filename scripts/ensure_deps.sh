#!/bin/sh
# Makes sure the Debian packages Tailor builds with are installed: installs the missing ones when
# run as root, otherwise prints the one apt-get line to run and fails.
set -eu
# openmpi-bin + libopenmpi-dev: data-parallel runs under mpirun (the build works without them,
# single-process; tests/test_dist.c needs them).
packages="gcc make libc6-dev zlib1g-dev libstb-dev openmpi-bin libopenmpi-dev"
missing=""
for package in $packages; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "installing missing Debian packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq $missing >&2
else
    echo "error: missing Debian packages; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
