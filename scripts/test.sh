#!/usr/bin/env bash
# Runs every test (unit and end-to-end on the netns testbed; needs root) and ends
# with the plain count "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
log=build/test-output.tap
files=$(find . -name '*.test.ts' -not -path './node_modules/*' -not -path './build/*' -not -path './third_party/*' -printf '%P\n' | sort)
node --import tsx scripts/testbed-clean.ts || true
# The end-to-end tests that run ztunnels run a second time on the reference HBONE
# engine (Node's TLS and HTTP/2; ztunnel reads AMBIENT_HBONE_ENGINE), the first run
# having used the default, native one.
engine_files="test/e2e/mesh.test.ts test/e2e/policy.test.ts test/e2e/rotation.test.ts test/e2e/agent.test.ts"
pass=0
fail=0
code=0
run() {
  local log=$1
  shift
  # shellcheck disable=SC2068
  $@ 2>&1 | tee "$log"
  local c=${PIPESTATUS[0]}
  node --import tsx scripts/testbed-clean.ts || true
  local summary p f
  summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -1)
  p=$(echo "$summary" | sed -nE 's/.*pass: ([0-9]+).*/\1/p')
  f=$(echo "$summary" | sed -nE 's/.*fail: ([0-9]+).*/\1/p')
  p=${p:-0}
  f=${f:-0}
  # A file that crashed before reporting a failing assertion still fails the run.
  if [ "$c" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  pass=$((pass + p))
  fail=$((fail + f))
  if [ "$c" -ne 0 ]; then code=$c; fi
}
# shellcheck disable=SC2086
run "$log" node_modules/.bin/tap --reporter=tap $files
# shellcheck disable=SC2086
run build/test-output-node-engine.tap env AMBIENT_HBONE_ENGINE=node node_modules/.bin/tap --reporter=tap $engine_files
echo "${pass} passed, ${fail} failed"
[ "$code" -eq 0 ] && [ "$fail" -eq 0 ]
