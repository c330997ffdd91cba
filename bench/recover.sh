#!/bin/sh
# Benchmark (make bench): recover an estate of N VMs (default 200; small disks,
# 2-level chains: a shared hidden base copy per template + a differencing root
# disk per VM, every 10th VM with a data disk) into the API simulator, with
# --workers 1 and --workers 4. Prints wall time of each, the speed-up, and the
# engine's own time per VM (machine steps minus time in API calls, in streamed
# uploads and in flatten), from the report's timing.
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
SALVAGE=${SALVAGE:-$TOP/salvage}
N=${BENCH_VMS:-200}
SIZE=${BENCH_DISK_BYTES:-67108864}
for m in salvage.vhd salvage.cloudstack.api; do
	"$SALVAGE" -e "require '$m'" 2>/dev/null || { echo "bench/recover: skipped, this build lacks $m"; exit 0; }
done
# BENCH_DIR=DIR keeps the estate, plans and reports there (for a closer look).
D=${BENCH_DIR:-$(mktemp -d /tmp/salvage-bench-recover.XXXXXX)}
mkdir -p "$D"
SIM_PID=
cleanup() {
	if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
	[ -n "${BENCH_DIR:-}" ] || rm -rf "$D"
}
trap cleanup EXIT INT TERM

now() { "$SALVAGE" -e 'print(string.format("%.3f", require("salvage.sys").clock()))'; }
sub() { "$SALVAGE" -e "print(string.format('%.3f', $1 - $2))"; }

mkdir -p "$D/primary"
t0=$(now)
"$SALVAGE" bench/estate.lua "$D/primary" "$N" $SIZE "$D/inventory.json"
"$SALVAGE" plan --inventory "$D/inventory.json" --storage "$D/primary" -o "$D/plan.json" --quiet
t1=$(now)
echo "estate: $N VMs, $(ls "$D/primary" | wc -l) VHD files ($(du -sh "$D/primary" | cut -f1) on disk), built and planned in $(sub "$t1" "$t0") s"

run() {
	workers=$1
	rm -f "$D/sim.url"
	python3 tests/cloudstack-sim/simulator.py --port 0 --ready-file "$D/sim.url" --apikey bench --secretkey benchsecret \
		--lifetime 1800 --job-polls 1 --template-polls 1 --discard-uploads >"$D/sim.log" 2>&1 &
	SIM_PID=$!
	while [ ! -s "$D/sim.url" ]; do sleep 0.05; done
	echo "return {}" >"$D/config.lua"
	s=$(now)
	SALVAGE_CONFIG="$D/config.lua" SALVAGE_API_URL="$(cat "$D/sim.url")/client/api" SALVAGE_API_KEY=bench \
		SALVAGE_SECRET_KEY=benchsecret "$SALVAGE" recover "$D/plan.json" --zone Zone1 --workdir "$D/work-$workers" \
		--workers "$workers" --poll-interval 0.02 --format json --quiet >"$D/report-$workers.json"
	e=$(now)
	kill "$SIM_PID" 2>/dev/null || true
	wait "$SIM_PID" 2>/dev/null || true
	SIM_PID=
	sub "$e" "$s"
}

w1=$(run 1)
w4=$(run 4)
"$SALVAGE" -e "
local json = require 'salvage.json'
local function rep(n) return assert(json.decode(assert(io.open('$D/report-' .. n .. '.json')):read('a'))) end
local r1, r4 = rep(1), rep(4)
local w1, w4 = $w1, $w4
print(('recover %d VMs, --workers 1: %.2f s wall (%.1f ms/VM), %d recovered, %d failed'):format($N, w1, w1 / $N * 1000,
  #r1.recovered, #r1.failed))
print(('recover %d VMs, --workers 4: %.2f s wall (%.1f ms/VM), %d recovered, %d failed'):format($N, w4, w4 / $N * 1000,
  #r4.recovered, #r4.failed))
print(('speed-up --workers 4 vs 1: %.2fx'):format(w1 / w4))
for n, r in pairs({ [1] = r1, [4] = r4 }) do
  local t = r.timing
  print(('workers %d: per VM engine %.2f ms mean (max %.2f), journal fsyncs %.1f ms, API calls %.1f ms, '
    .. 'streamed uploads (chain read, built, sent, server ready) %.1f ms, flatten+verify %.1f ms; owners phase %.0f ms total%s')
    :format(n, t.engine_ms_mean, t.engine_ms_max, t.journal_ms_mean or 0, t.api_ms_mean, t.stream_ms_mean or 0,
      t.flatten_ms_mean, t.owners_ms,
      t.worker_process_ms_mean and (', worker process start+exit %.1f ms/VM'):format(t.worker_process_ms_mean) or ''))
end
local own = r1.timing.engine_ms_mean + (r1.timing.journal_ms_mean or 0)
print(('engine overhead per VM (own Lua time + journal fsyncs, --workers 1): %.1f ms; target <= 50 ms: %s'):format(own,
  own <= 50 and 'met' or 'NOT met'))
"
