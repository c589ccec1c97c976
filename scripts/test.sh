#!/usr/bin/env bash
# Runs every test (unit and end-to-end on the netns testbed; needs root) and ends
# with the plain count "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
log=build/test-output.tap
files=$(find . -name '*.test.ts' -not -path './node_modules/*' -not -path './build/*' -not -path './third_party/*' -printf '%P\n' | sort)
node --import tsx scripts/testbed-clean.ts || true
# shellcheck disable=SC2086
node_modules/.bin/tap --reporter=tap $files 2>&1 | tee "$log"
code=${PIPESTATUS[0]}
node --import tsx scripts/testbed-clean.ts || true
summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -1)
pass=$(echo "$summary" | sed -nE 's/.*pass: ([0-9]+).*/\1/p')
fail=$(echo "$summary" | sed -nE 's/.*fail: ([0-9]+).*/\1/p')
pass=${pass:-0}
fail=${fail:-0}
# A file that crashed before reporting a failing assertion still fails the run.
if [ "$code" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
echo "${pass} passed, ${fail} failed"
[ "$code" -eq 0 ] && [ "$fail" -eq 0 ]
