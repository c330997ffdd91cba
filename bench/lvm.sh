#!/bin/sh
# Flatten a fully allocated dynamic VHD read from an LV of a LUN image (made with lvm2's own
# tools on a loop device), against the same VHD read as a file: best of N each, alternating.
# Prints both throughputs, their ratio, and the peak RSS of the flatten from the LV.
#   SIZE_MIB=1024 ROUNDS=3 sh bench/lvm.sh        (root, lvm2 and a loop device needed)
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
SALVAGE=${SALVAGE:-$TOP/salvage}
SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-3}
DIR=$(mktemp -d /tmp/salvage-bench-lvm.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
export TOP DIR SIZE_MIB ROUNDS SALVAGE

"$SALVAGE" - <<'LUA'
local TOP, DIR = os.getenv("TOP"), os.getenv("DIR")
local size = tonumber(os.getenv("SIZE_MIB")) << 20
local rounds = tonumber(os.getenv("ROUNDS"))
local SALVAGE = os.getenv("SALVAGE")
local sys = require "salvage.sys"
function RUN(cmd) -- what tests/lua/lvm2_image.lua expects (the specs' helper)
  local p = io.popen(cmd .. " 2>&1", "r")
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out, out
end
local img = dofile(TOP .. "/tests/lua/lvm2_image.lua")
local makevhd = dofile(TOP .. "/tests/cloudstack-sim/makevhd.lua")

local file = DIR .. "/disk.vhd"
local blocks = {}
for i = 0, size // (2 << 20) - 1 do blocks[#blocks + 1] = i end
local block = string.rep("salvage!", (2 << 20) // 8)
local bytes = makevhd.write(file, { virtual_size = size, allocated = blocks, fill = function() return block end })
local VG, LV = "VG_XenStorage-bench", "VHD-00000000-0000-4000-8000-000000000001"
local extents = (bytes + 512 + (4 << 20) - 1) // (4 << 20)
local image = DIR .. "/lun.img"
local view = img.build(DIR, image, (16 << 20) + extents * (4 << 20), VG,
  { { LV, img.lv_id(1), '"READ", "WRITE", "VISIBLE"', { { 0, extents, 0 } } } })
local at = view.pe_start + view.segs[LV][1][3] * view.extent
assert(os.execute(("dd if=%s of=%s bs=4M seek=%d oflag=seek_bytes conv=notrunc,sparse status=none"):format(
  file, image, at)))
assert(os.execute(("tail -c 512 %s | dd of=%s bs=512 seek=%d oflag=seek_bytes conv=notrunc status=none"):format(
  file, image, at + extents * view.extent - 512)))

-- each flatten in a child process, so that its peak RSS is the flatten's alone
local function run(src)
  os.remove(DIR .. "/out.raw")
  local t0 = sys.clock()
  local p = io.popen(("%s -e 'assert(require(\"salvage.vhd\").flatten(%q, %q, {format = \"raw\"})) "
    .. "print(require(\"salvage.sys\").peak_rss())'"):format(SALVAGE, src, DIR .. "/out.raw"))
  local rss = tonumber(p:read("a"):match("(%d+)"))
  assert(p:close(), "flatten " .. src)
  return sys.clock() - t0, rss
end
local best = { file = math.huge, lv = math.huge }
local rss
for _ = 1, rounds do
  best.file = math.min(best.file, (run(file)))
  local t, r = run(("lvm:%s:%s"):format(image, LV))
  best.lv, rss = math.min(best.lv, t), r
end
local mib = size / (1 << 20)
print(("lvm: flatten %d MiB: from a file %.0f MiB/s, from an LV %.0f MiB/s (ratio %.2f); peak RSS %.1f MiB (LV)")
  :format(mib, mib / best.file, mib / best.lv, best.file / best.lv, (rss or 0) / (1 << 20)))
LUA
