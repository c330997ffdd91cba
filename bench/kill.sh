#!/bin/sh
# Benchmark (make bench): >= 30 kill -9 trials of `salvage recover` at random
# moments (mid-flatten, mid-upload, mid-deploy, any time; the parent only or the
# whole process group; 1 and 2 workers), each followed by a resume; prints per
# trial and in total the duplicates, dead leftovers, stray resources, content
# mismatches and orphans found in the simulator (all must be 0).
# BENCH_KILL_TRIALS=N (default 32), BENCH_DIR=DIR keeps the workdirs, BENCH_SEED.
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
SALVAGE=${SALVAGE:-$TOP/salvage}
export TOP SALVAGE
for m in salvage.vhd salvage.cloudstack.api salvage.cloudstack.simulator; do
	"$SALVAGE" -e "require '$m'" 2>/dev/null || { echo "bench/kill: skipped, this build lacks $m"; exit 0; }
done
D=${BENCH_DIR:-$(mktemp -d /tmp/salvage-bench-kill.XXXXXX)}
mkdir -p "$D"
cleanup() { [ -n "${BENCH_DIR:-}" ] || rm -rf "$D"; }
trap cleanup EXIT INT TERM
"$SALVAGE" bench/kill.lua "$D" "${BENCH_KILL_TRIALS:-32}"
