#!/usr/bin/env bash
# Runs every test binary in BUILD/tests, adds up the cmocka test counts and
# prints one closing line "tests: N passed, N failed". Exits non-zero if any
# binary failed (a crash counts even when cmocka printed nothing).
set -u
build=${1:-build}
export GMSERVE_BIN="$build/gmserve"   # the daemon the integration tests start
passed=0 failed=0 bad=()
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    out=$(timeout 600 "$t" 2>&1); rc=$?   # a hung binary fails instead of stalling CI
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p)); failed=$((failed + f))
    if [ $rc -ne 0 ]; then
        bad+=("$(basename "$t")")
        [ "$f" -eq 0 ] && failed=$((failed + 1))  # crashed or exited early
    fi
done
echo
[ ${#bad[@]} -eq 0 ] || echo "failing binaries: ${bad[*]}"
echo "tests: $passed passed, $failed failed"
[ ${#bad[@]} -eq 0 ]
