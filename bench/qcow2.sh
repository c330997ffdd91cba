#!/bin/sh
# make bench: a 3-level VHD chain (16 GiB virtual, ~3 GB allocated; bench/chain.lua) to qcow2,
# salvage straight from the chain against `qemu-img convert -O qcow2` from the already
# flattened raw file (which qemu-img needs: it cannot read XenServer chains). Prints wall
# times, their ratio, peak RSS, output sizes, and qemu-img's verdicts (check, compare). Also
# the --drop-zero variant (one more read of the data, shorter image). Figures only.
#   QCOW2_BENCH_GIB=16        virtual size in GiB
#   QCOW2_BENCH_DIR=/path     where to work (default: a temp dir under /tmp; ~13 GB free needed)
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
SALVAGE=${SALVAGE:-$TOP/salvage}
GIB=${QCOW2_BENCH_GIB:-16}
DIR=${QCOW2_BENCH_DIR:-$(mktemp -d /tmp/salvage-bench-qcow2.XXXXXX)}
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT INT TERM
command -v qemu-img >/dev/null || { echo "qcow2 bench: qemu-img missing (make deps)"; exit 1; }

echo "qcow2 bench: ${GIB} GiB virtual chain in $DIR"
"$SALVAGE" bench/chain.lua "$DIR" "$GIB"
"$SALVAGE" vhd flatten -q "$DIR/c2.vhd" -o "$DIR/flat.raw" --format raw
sync
drop() { sync; (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null || true; }
secs() { awk '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.3f", s }' "$1"; }
rss() { awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); printf "%.1f", $2 / 1024 }' "$1"; }

# Alternating rounds from a cold cache; the best of each is compared. qemu-img's output is
# synced (salvage fsyncs its own before renaming it into place).
best_q=""; best_s=""; best_d=""
for round in 1 2; do
	rm -f "$DIR/q.qcow2" "$DIR/s.qcow2" "$DIR/d.qcow2"
	drop
	/usr/bin/time -v -o "$DIR/tq.txt" sh -c "qemu-img convert -f raw -O qcow2 '$DIR/flat.raw' '$DIR/q.qcow2' && sync '$DIR/q.qcow2'"
	drop
	/usr/bin/time -v -o "$DIR/ts.txt" "$SALVAGE" vhd flatten -q "$DIR/c2.vhd" -o "$DIR/s.qcow2" --format qcow2 --json > "$DIR/s.json"
	drop
	/usr/bin/time -v -o "$DIR/td.txt" "$SALVAGE" vhd flatten -q "$DIR/c2.vhd" -o "$DIR/d.qcow2" --format qcow2 --drop-zero --json > "$DIR/d.json"
	q=$(secs "$DIR/tq.txt"); s=$(secs "$DIR/ts.txt"); d=$(secs "$DIR/td.txt")
	echo "  round $round: qemu-img convert (from raw) ${q} s, salvage (from chain) ${s} s, salvage --drop-zero ${d} s"
	best_q=$(awk -v a="$best_q" -v b="$q" 'BEGIN { print (a == "" || b < a) ? b : a }')
	best_s=$(awk -v a="$best_s" -v b="$s" 'BEGIN { print (a == "" || b < a) ? b : a }')
	best_d=$(awk -v a="$best_d" -v b="$d" 'BEGIN { print (a == "" || b < a) ? b : a }')
done
for f in s d; do
	if qemu-img check -q "$DIR/$f.qcow2"; then echo "  $f.qcow2: qemu-img check: clean"; else echo "  $f.qcow2: qemu-img check: ERRORS"; fi
	qemu-img compare -q -f raw -F qcow2 "$DIR/flat.raw" "$DIR/$f.qcow2" && echo "  $f.qcow2: qemu-img compare with the raw flatten: identical"
done
virtual=$(grep '"virtual_size"' "$DIR/s.json" | tr -dc 0-9)
clusters=$(grep '"blocks_written"' "$DIR/s.json" | tr -dc 0-9)
awk -v q="$best_q" -v s="$best_s" -v d="$best_d" -v virt="$virtual" -v cl="$clusters" \
    -v rs="$(rss "$DIR/ts.txt")" -v rd="$(rss "$DIR/td.txt")" -v rq="$(rss "$DIR/tq.txt")" \
    -v ls="$(stat -c %s "$DIR/s.qcow2")" -v ld="$(stat -c %s "$DIR/d.qcow2")" -v lq="$(stat -c %s "$DIR/q.qcow2")" \
    -v us="$(du -B1 "$DIR/s.qcow2" | cut -f1)" -v uq="$(du -B1 "$DIR/q.qcow2" | cut -f1)" 'BEGIN {
  printf "best of 2 rounds, %.1f GiB virtual, %d non-zero 64 KiB clusters (%.2f GB):\n", virt / 1073741824, cl, cl * 65536 / 1e9
  printf "qemu-img convert -O qcow2 from raw: %.2f s, %.0f MB/s of data, RSS %.1f MiB\n", q, cl * 65536 / q / 1e6, rq
  printf "salvage flatten --format qcow2:     %.2f s, %.0f MB/s of data, RSS %.1f MiB (target <= 32 MiB)\n", s, cl * 65536 / s / 1e6, rs
  printf "salvage ... --drop-zero:            %.2f s, %.0f MB/s of data, RSS %.1f MiB\n", d, cl * 65536 / d / 1e6, rd
  printf "speed ratio qemu-img / salvage:     %.2f (>= 1.00 is the target; salvage also reads the chain)\n", q / s
  printf "image length: salvage %d, --drop-zero %d, qemu-img %d bytes; on disk: salvage %d, qemu-img %d\n", ls, ld, lq, us, uq
}'
