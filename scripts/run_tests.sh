#!/bin/sh
# Gets the build dependencies and the benchmark's data sources, then builds and runs every test twice — the optimised build, then the AddressSanitizer +
# UndefinedBehaviorSanitizer build — and ends with the total "N passed, M failed".
# SANITIZE=0 or SANITIZE=1 runs only that one build.
set -u
cd "$(dirname "$0")/.."
sh scripts/ensure_deps.sh || exit 1
# The built-in benchmark's sources (Debian packages + a cached file): tests build a reduced version.
sh scripts/get_data_sources.sh || exit 1
case "${SANITIZE:-both}" in
    0) builds="0" ;;
    1) builds="1" ;;
    *) builds="0 1" ;;
esac
total_passed=0
total_failed=0
for sanitize in $builds; do
    [ "$sanitize" = 1 ] && echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer" || echo "== tests"
    log=$(mktemp)
    if ! make -s -j"$(nproc)" SANITIZE="$sanitize" all >"$log" 2>&1; then
        cat "$log"
        echo "build failed (SANITIZE=$sanitize)"
        total_failed=$((total_failed + 1))
        rm -f "$log"
        continue
    fi
    make -s SANITIZE="$sanitize" test 2>&1 | tee "$log"
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$summary" ]; then
        echo "the test run printed no summary (SANITIZE=$sanitize)"
        total_failed=$((total_failed + 1))
        continue
    fi
    total_passed=$((total_passed + ${summary%% passed*}))
    failed=${summary#*passed, }
    total_failed=$((total_failed + ${failed%% failed}))
done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
