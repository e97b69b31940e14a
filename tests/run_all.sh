#!/bin/sh
# Runs every test program given as an argument, shows their failures, and ends with the total
# "N passed, M failed" line; exits non-zero if any test failed or any program crashed.
total_passed=0
total_failed=0
for program in "$@"; do
    name=$(basename "$program")
    output=$("$program" 2>&1)
    status=$?
    summary=$(printf '%s\n' "$output" | tail -n 1)
    passed=$(printf '%s\n' "$summary" | sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1/p')
    failed=$(printf '%s\n' "$summary" | sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\2/p')
    if [ -z "$passed" ]; then
        # The program died before its summary (crash, sanitizer report): count it as one failure.
        printf '%s\n' "$output" | tail -n 30
        echo "CRASH $name (exit $status)"
        passed=0
        failed=1
    elif [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
        printf '%s\n' "$output" | grep -v '^ok ' | sed '$d'
        [ "$failed" -eq 0 ] && failed=1
    fi
    [ "$passed" -ne 0 ] || [ "$failed" -ne 0 ] || echo "  $name ran no test"
    # Reports the programs want shown (which ops were gradient-checked, kernels used).
    printf '%s\n' "$output" | grep '^report: ' | sed "s/^report: /  $name: /"
    printf '%-28s %4d passed, %d failed\n' "$name" "$passed" "$failed"
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
