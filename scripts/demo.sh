#!/bin/sh
# make demo: the whole recovery on the sample estate, start to finish.
#  1. a private MariaDB loaded with data/cloudstack/schema-4.5.2.sql + seed-4.5.2.sql
#     (salvage.db.ephemeral: its own datadir and socket, gone when done);
#  2. a demo primary storage built with the VHD engine: hidden base copies of the
#     templates, differencing root disks with each VM's data on top, the data disk ppdatavol;
#  3. the CloudStack API simulator on a loopback port, standing in for the new cloud;
#  4. salvage plan, then salvage recover (2 workers), the report;
#  5. what the new cloud holds afterwards; then everything started here is stopped.
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
SALVAGE=${SALVAGE:-$TOP/salvage}
SCHEMA=$TOP/data/cloudstack/schema-4.5.2.sql
SEED=$TOP/data/cloudstack/seed-4.5.2.sql
SIM=$TOP/tests/cloudstack-sim/simulator.py
for f in "$SCHEMA" "$SEED" "$SIM"; do
	[ -f "$f" ] || { echo "demo: missing $f" >&2; exit 1; }
done
for m in salvage.vhd salvage.db salvage.cloudstack.api salvage.cloudstack.inventory; do
	"$SALVAGE" -e "require '$m'" 2>/dev/null || { echo "demo: this build lacks $m" >&2; exit 1; }
done

D=$(mktemp -d /tmp/salvage-demo.XXXXXX)
SIM_PID=
cleanup() {
	if [ -n "$SIM_PID" ]; then
		kill "$SIM_PID" 2>/dev/null || true
		wait "$SIM_PID" 2>/dev/null || true
	fi
	rm -rf "$D"
}
trap cleanup EXIT INT TERM

step() { printf '\n== %s\n' "$*"; }

step "demo primary storage in $D/primary (VHD chains for the seed's volumes)"
mkdir -p "$D/primary"
"$SALVAGE" -e "
local made = assert(require('salvage.demo.estate').from_dump('$D/primary', {'$SCHEMA', '$SEED'}))
print(('%d VHD files written'):format(#made.files))"
"$SALVAGE" vhd scan "$D/primary" 2>/dev/null || ls -ls "$D/primary"

step "the new cloud: CloudStack API simulator"
KEY=demo-$(date +%s)-key
SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
python3 "$SIM" --port 0 --ready-file "$D/sim.url" --apikey "$KEY" --secretkey "$SECRET" \
	--lifetime 600 --job-polls 1 --template-polls 2 >"$D/sim.log" 2>&1 &
SIM_PID=$!
i=0
while [ ! -s "$D/sim.url" ]; do
	i=$((i + 1))
	[ $i -lt 300 ] || { echo "demo: simulator did not start" >&2; cat "$D/sim.log" >&2; exit 1; }
	sleep 0.05
done
BASE=$(cat "$D/sim.url")
echo "listening on $BASE"
SALVAGE_API_URL=$BASE/client/api
SALVAGE_API_KEY=$KEY
SALVAGE_SECRET_KEY=$SECRET
export SALVAGE_API_URL SALVAGE_API_KEY SALVAGE_SECRET_KEY

step "salvage plan --dump schema-4.5.2.sql --dump seed-4.5.2.sql --storage $D/primary"
"$SALVAGE" plan --dump "$SCHEMA" --dump "$SEED" --storage "$D/primary" -o "$D/plan.json" --format table

step "salvage recover plan.json --zone Zone1 --workdir $D/work --workers 2"
rc=0
"$SALVAGE" recover "$D/plan.json" --zone Zone1 --workdir "$D/work" --workers 2 --poll-interval 0.1 || rc=$?

step "the new cloud afterwards (simulator state)"
curl -s "$BASE/_sim/state" >"$D/state.json"
"$SALVAGE" -e "io.write(require('salvage.demo.show').state(io.open('$D/state.json'):read('a')))"

step "stopping the simulator"
curl -s -X POST "$BASE/_sim/shutdown" >/dev/null || true
wait "$SIM_PID" 2>/dev/null || true
SIM_PID=
echo "done (recover exit status $rc)"
exit $rc
