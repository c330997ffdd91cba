#!/bin/sh
# make demo: run the shipped example scripts on built-in sample data.
set -eu
cd "$(dirname "$0")/.."
for s in scripts/examples/*.lua; do
	echo "== salvage $s"
	./salvage "$s"
done
