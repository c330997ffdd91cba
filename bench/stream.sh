#!/bin/sh
# Benchmark (make bench): streaming recovery against the flatten-to-file path.
# One VM whose root disk is a 3-level chain (STREAM_BENCH_GIB=16 GiB virtual,
# ~3.5 GB of files) recovered into the API simulator (uploads hashed, not
# stored). Prints, from the same run:
#   stream   salvage recover (default: each disk streamed from its chain)
#   flatten  salvage vhd flatten LEAF -o FILE (the old first half)
#   upload   the upload of that file alone (api client upload_template)
#   null     the stream written to /dev/null (reading, building and the sha256
#            that every upload computes), without and with the zero-block
#            pre-pass (drop_zero)
#   scratch  salvage recover --scratch (flatten + check + upload of the file)
# the ratios (flatten + upload) / stream (target >= 1.5) and
# stream / max(null, upload) (target <= 1.15), the client's peak RSS while
# streaming, and the peak size of the work directory over a whole-estate
# streaming recovery of BENCH_VMS=200 VMs (target <= 64 MiB). Figures only.
# The chain is read from the page cache when it fits in memory; say so when
# quoting the figures.
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
SALVAGE=${SALVAGE:-$TOP/salvage}
GIB=${STREAM_BENCH_GIB:-16}
N=${BENCH_VMS:-200}
for m in salvage.vhd salvage.cloudstack.api; do
	"$SALVAGE" -e "require '$m'" 2>/dev/null || { echo "bench/stream: this build lacks $m"; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench/stream: /usr/bin/time (package time) is needed for RSS"; exit 1; }
D=${STREAM_BENCH_DIR:-$(mktemp -d /tmp/salvage-bench-stream.XXXXXX)}
mkdir -p "$D/primary"
SIM_PID=
DU_PID=
cleanup() {
	if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
	if [ -n "$DU_PID" ]; then kill "$DU_PID" 2>/dev/null || true; wait "$DU_PID" 2>/dev/null || true; fi
	[ -n "${STREAM_BENCH_DIR:-}" ] || rm -rf "$D"
}
trap cleanup EXIT INT TERM

now() { "$SALVAGE" -e 'print(string.format("%.3f", require("salvage.sys").clock()))'; }
sub() { "$SALVAGE" -e "print(string.format('%.3f', $1 - $2))"; }

sim_start() {
	rm -f "$D/sim.url"
	python3 tests/cloudstack-sim/simulator.py --port 0 --ready-file "$D/sim.url" --apikey bench --secretkey benchsecret \
		--lifetime 3600 --job-polls 1 --template-polls 1 --discard-uploads >"$D/sim.log" 2>&1 &
	SIM_PID=$!
	while [ ! -s "$D/sim.url" ]; do sleep 0.05; done
	echo "return {}" >"$D/config.lua"
}
sim_stop() {
	kill "$SIM_PID" 2>/dev/null || true
	wait "$SIM_PID" 2>/dev/null || true
	SIM_PID=
}
with_api() {
	SALVAGE_CONFIG="$D/config.lua" SALVAGE_API_URL="$(cat "$D/sim.url")/client/api" SALVAGE_API_KEY=bench \
		SALVAGE_SECRET_KEY=benchsecret "$@"
}

echo "stream bench: one VM, root disk a 3-level chain of ${GIB} GiB virtual, in $D"

# The chain of bench/vhd.sh and bench/qcow2.sh (bench/chain.lua), without the zeroed blocks:
# base.vhd <- c1.vhd <- c2.vhd, the VM's root volume path "c2".
"$SALVAGE" bench/chain.lua "$D/primary" "$GIB" none >/dev/null
LEAF="$D/primary/c2.vhd"
echo "chain files: $(du -cb "$D"/primary/*.vhd | tail -1 | cut -f1) bytes"

"$SALVAGE" -e "
local json = require 'salvage.json'
local vm = { id = 1, uuid = 'vm-1', name = 'bigvm', display_name = 'bench big VM', state = 'Stopped',
  hypervisor = 'XenServer', account = { id = 1, name = 'acct01', type = 0 },
  domain = { id = 2, name = 'dom', path = '/dom/' }, offering = { name = 'Small Instance', cpu = 1, speed = 500, ram = 512 },
  guest_os = 'Other Linux (64-bit)', template = { name = 'base', requires_hvm = true, password_enabled = false },
  problems = {}, volumes = { { id = 10, name = 'ROOT-1', type = 'ROOT', state = 'Ready', size = $GIB << 30,
    device_id = 0, format = 'VHD', path = 'c2', problems = {} } } }
local f = assert(io.open('$D/inventory.json', 'w'))
f:write(json.encode({ vm }))
f:close()
"
"$SALVAGE" plan --inventory "$D/inventory.json" --storage "$D/primary" -o "$D/plan.json" --quiet

# warm the page cache the same way for every measurement
cat "$D"/primary/*.vhd >/dev/null

sim_start
s=$(now)
with_api /usr/bin/time -f "%M" -o "$D/rss-stream" "$SALVAGE" recover "$D/plan.json" --zone Zone1 \
	--workdir "$D/w-stream" --poll-interval 0.02 --format json --quiet >"$D/report-stream.json"
e=$(now)
t_stream=$(sub "$e" "$s")
sim_stop

s=$(now)
"$SALVAGE" vhd flatten -q "$LEAF" -o "$D/flat.vhd" >/dev/null
e=$(now)
t_flat=$(sub "$e" "$s")
FLAT_BYTES=$(stat -c %s "$D/flat.vhd")

# the upload alone from the page cache, as the stream reads its chain (flatten drops what it
# wrote from the cache; recover --scratch below reads its file back the way it really does)
cat "$D/flat.vhd" >/dev/null
sim_start
t_up=$(with_api "$SALVAGE" - "$D/flat.vhd" <<'LUA'
local api = require "salvage.cloudstack.api"
local sys = require "salvage.sys"
local c = assert(api.from_profile(nil, { poll_interval = 0.02 }))
local zone = assert(c:list("listZones"))[1].id
local os = assert(c:list("listOsTypes"))[1].id
local t0 = sys.clock()
assert(c:upload_template(arg[1], { name = "bench-file", zoneid = zone, ostypeid = os }))
print(string.format("%.3f", sys.clock() - t0))
LUA
)
sim_stop
rm -f "$D/flat.vhd"

null_run() {
	s=$(now)
	"$SALVAGE" - "$1" "$2" >/dev/null 2>"$D/null-len" <<'LUA'
local s = assert(require("salvage.vhd").stream(arg[1], { drop_zero = arg[2] == "true" }))
io.stderr:write(s:length(), "\n")
assert(s:write_to("-"))
LUA
	e=$(now)
	sub "$e" "$s"
}
t_null=$(null_run "$LEAF" false)
len_stream=$(cat "$D/null-len")
t_null_dz=$(null_run "$LEAF" true)
len_dz=$(cat "$D/null-len")

sim_start
mkdir -p "$D/scratch"
s=$(now)
with_api "$SALVAGE" recover "$D/plan.json" --zone Zone1 --workdir "$D/w-scratch" --scratch "$D/scratch" \
	--poll-interval 0.02 --format json --quiet >/dev/null
e=$(now)
t_scratch=$(sub "$e" "$s")
sim_stop
rm -rf "$D/scratch"

"$SALVAGE" -e "
local ts, tf, tu, tn, tnz, tsc = $t_stream, $t_flat, $t_up, $t_null, $t_null_dz, $t_scratch
local len, lenz, flat = $len_stream, $len_dz, $FLAT_BYTES
local rss = tonumber(io.open('$D/rss-stream'):read('l')) / 1024
local MB = 1e6
print(('stream   salvage recover (streaming): %.2f s, %d bytes sent, %.0f MB/s; client peak RSS %.1f MiB (target <= 64: %s)')
  :format(ts, len, len / ts / MB, rss, rss <= 64 and 'met' or 'NOT met'))
print(('flatten  vhd flatten to a file:        %.2f s, %d bytes, %.0f MB/s'):format(tf, flat, flat / tf / MB))
print(('upload   that file alone:              %.2f s, %.0f MB/s'):format(tu, flat / tu / MB))
print(('null     stream to /dev/null (+sha256): %.2f s, %.0f MB/s'):format(tn, len / tn / MB))
print(('null+dz  with the zero-block pre-pass: %.2f s (%d bytes: %d fewer, %.1f%%)')
  :format(tnz, lenz, len - lenz, (len - lenz) * 100 / len))
print(('scratch  recover --scratch (flatten, check, upload): %.2f s'):format(tsc))
local r1 = (tf + tu) / ts
local r2 = ts / math.max(tn, tu)
print(('(flatten + upload) / stream = %.2fx (target >= 1.5: %s); recover --scratch / stream = %.2fx')
  :format(r1, r1 >= 1.5 and 'met' or 'NOT met', tsc / ts))
print(('stream / max(null, upload) = %.2f (target <= 1.15: %s)'):format(r2, r2 <= 1.15 and 'met' or 'NOT met'))
-- The pre-pass reads every allocated block once more; it saves sending the all-zero ones.
-- It pays when the zero fraction f of the bytes exceeds (time of one more read) / (time to send).
local extra, send = len / (len / tn), len / (flat / tu)
local saved = (len - lenz) / (flat / tu)
print(('zero-block pre-pass: one more read of %.2f s (stream to /dev/null) to save %.2f s of sending %d bytes '
  .. '(%.1f%% of this chain is allocated all-zero); it pays only when more than %.0f%% of the bytes are all-zero '
  .. 'blocks: %s'):format(extra, saved, len - lenz, (len - lenz) * 100 / len, extra / send * 100,
  saved > extra and 'pays here' or 'does not pay here, so recover streams without it'))
"

# Peak work directory over a whole-estate streaming recovery (N VMs, 4 workers).
rm -rf "$D/primary" "$D"/w-* && mkdir -p "$D/estate"
"$SALVAGE" bench/estate.lua "$D/estate" "$N" 67108864 "$D/inventory.json"
"$SALVAGE" plan --inventory "$D/inventory.json" --storage "$D/estate" -o "$D/plan.json" --quiet
mkdir -p "$D/w-estate"
( peak=0; while :; do
	n=$(du -sb "$D/w-estate" 2>/dev/null | cut -f1); n=${n:-0}
	[ "$n" -gt "$peak" ] && peak=$n && echo "$peak" >"$D/peak"
	sleep 0.1
done ) &
DU_PID=$!
sim_start
s=$(now)
with_api "$SALVAGE" recover "$D/plan.json" --zone Zone1 --workdir "$D/w-estate" --workers 4 --poll-interval 0.02 \
	--format json --quiet >"$D/report-estate.json"
e=$(now)
sim_stop
sleep 0.2
kill "$DU_PID" 2>/dev/null || true; wait "$DU_PID" 2>/dev/null || true; DU_PID=
"$SALVAGE" -e "
local json = require 'salvage.json'
local r = assert(json.decode(assert(io.open('$D/report-estate.json')):read('a')))
local peak = tonumber(io.open('$D/peak'):read('l')) / 1048576
print(('estate   %d VMs streamed (--workers 4) in %.2f s: %d recovered, %d failed; peak work directory %.2f MiB '
  .. '(target <= 64: %s); disks on the source storage: %s')
  :format($N, $(sub "$e" "$s"), #r.recovered, #r.failed, peak, peak <= 64 and 'met' or 'NOT met', '$(du -sh "$D/estate" | cut -f1)'))
"
echo "demo estate: tests/lua/recover_e2e_spec.lua recovers it with the work directory on a 1 MiB tmpfs"
