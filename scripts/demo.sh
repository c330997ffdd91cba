#!/bin/sh
# make demo: `salvage demo` (lua/stdlib/salvage/demo/init.lua) from this source
# tree: the whole recovery on the sample estate, start to finish.
set -eu
cd "$(dirname "$0")/.."
exec "${SALVAGE:-./salvage}" demo "$@"
