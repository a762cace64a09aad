#!/usr/bin/env bash
# Every benchmark at small sizes (seconds each). Asserts nothing about timings: it fails
# only when a benchmark crashes or a migration it runs does not complete. Used by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_QUICK=1
start=$(date +%s)
npx tsx bench/monitor-roundtrip.ts --quick
npx tsx bench/setup.ts --quick
npx tsx bench/setup-floor.ts 3
npx tsx bench/setup-wire.ts 3
npx tsx bench/migration.ts --quick
npx tsx bench/evacuation.ts --quick
npx tsx bench/accel.ts --quick
npx tsx bench/completion-latency.ts 1
echo "bench:quick done in $(( $(date +%s) - start )) s"
