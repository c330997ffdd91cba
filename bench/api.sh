#!/bin/sh
# Upload a 2 GiB dynamic VHD to the CloudStack simulator over loopback with
# salvage (client:upload_volume's POST) and with curl the same way (multipart
# from disk, Content-Length, no Expect), alternating, best of N each.
# Prints throughputs, their ratio and the salvage client's peak RSS.
#   SIZE_MIB=2048 ROUNDS=5 sh bench/api.sh
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
SALVAGE=${SALVAGE:-$TOP/salvage}
SIZE_MIB=${SIZE_MIB:-2048}
ROUNDS=${ROUNDS:-5}
DIR=$(mktemp -d /tmp/salvage-bench-api.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
export TOP DIR SIZE_MIB ROUNDS SALVAGE

"$SALVAGE" - <<'LUA'
local TOP, DIR = os.getenv("TOP"), os.getenv("DIR")
local size = tonumber(os.getenv("SIZE_MIB")) << 20
local rounds = tonumber(os.getenv("ROUNDS"))
local makevhd = dofile(TOP .. "/tests/cloudstack-sim/makevhd.lua")
local sim = require "salvage.cloudstack.simulator"
local api = require "salvage.cloudstack.api"
local sys = require "salvage.sys"
local json = require "salvage.json"

local file = DIR .. "/disk.vhd"
local blocks = {}
for i = 0, size // (2 << 20) - 1 do blocks[#blocks + 1] = i end
local block = string.rep("salvage!", (2 << 20) // 8)
local t0 = sys.clock()
local bytes = makevhd.write(file, { virtual_size = size, allocated = blocks, fill = function() return block end })
io.stderr:write(("bench: wrote %s (%d bytes) in %.1fs\n"):format(file, bytes, sys.clock() - t0))

local s = assert(sim.start { apikey = "k", secretkey = "s", discard_uploads = true, lifetime = 1800 })
local c = api.new { url = s.url, apikey = "k", secretkey = "s", poll_interval = 0.05 }
local zone = assert(c:list("listZones"))[1]

local function params(name)
  return assert(c:call("getUploadParamsForVolume", { name = name, zoneid = zone.id, format = "VHD" })).getuploadparams
end

-- salvage's upload in a child process, so that its peak RSS is the client's alone
local child = DIR .. "/child.lua"
local f = assert(io.open(child, "w"))
f:write([[
local api = require "salvage.cloudstack.api"
local sys = require "salvage.sys"
local json = require "salvage.json"
local up = json.decode(arg[2])
local c = api.new { url = arg[3], apikey = "k", secretkey = "s" }
local calls = 0
local t0 = sys.clock()
local res = assert(c:post_upload("bench", arg[1], up, { progress = function() calls = calls + 1 end,
  upload_buffer = tonumber(os.getenv("UPLOAD_BUFFER")) }))
local dt = sys.clock() - t0
io.stdout:write(json.encode { seconds = dt, rss = sys.peak_rss(), status = res.status, calls = calls,
  cpu = os.clock() })
]])
f:close()

local function run_salvage(i)
  local up = params("salvage" .. i)
  local out = DIR .. "/salvage.out"
  os.remove(out)
  local pid = assert(sys.spawn { os.getenv("SALVAGE"), child, file, json.encode(up), s.url, stdout = out })
  sys.wait(pid)
  local h = assert(io.open(out))
  local r = json.decode(h:read("a"))
  h:close()
  assert(r.status == 200, "salvage upload failed")
  return r.seconds, r.rss, r.cpu
end

local function run_curl(i)
  local up = params("curl" .. i)
  local cmd = ("curl -sS -o /dev/null -w '%%{http_code}' -H 'Expect:' -H 'X-signature: %s' -H 'X-metadata: %s' "
    .. "-H 'X-expires: %s' -F 'file=@%s;filename=disk.vhd;type=application/octet-stream' '%s'"):format(
    up.signature, up.metadata, up.expires, file, up.postURL)
  local t = sys.clock()
  local p = io.popen(cmd)
  local code = p:read("a")
  p:close()
  local dt = sys.clock() - t
  assert(code == "200", "curl upload failed: " .. code)
  return dt
end

local best_s, best_c, rss, cpu = math.huge, math.huge, 0, math.huge
local ratios = {}
for i = 1, rounds do
  local dc = run_curl(i)
  local ds, r, cp = run_salvage(i)
  cpu = math.min(cpu, cp)
  ratios[#ratios + 1] = dc / ds
  best_c, best_s = math.min(best_c, dc), math.min(best_s, ds)
  rss = math.max(rss, r)
  io.stderr:write(("bench: round %d: curl %.2fs, salvage %.2fs\n"):format(i, dc, ds))
end
local st = s:state()
local n = 0
for _, v in ipairs(st.volumes) do if v.upload and v.upload.bytes == bytes then n = n + 1 end end
assert(n == 2 * rounds, "the simulator did not receive every upload whole")
local sim_rss = 0
local ps = io.open("/proc/" .. s.pid .. "/status")
if ps then
  sim_rss = tonumber(ps:read("a"):match("VmHWM:%s*(%d+)")) or 0
  ps:close()
end
s:stop()
local mib = bytes / (1 << 20)
print(("upload %.0f MiB VHD over loopback (best of %d):"):format(mib, rounds))
print(("  curl     %7.1f MiB/s (%.2f s)"):format(mib / best_c, best_c))
print(("  salvage  %7.1f MiB/s (%.2f s)"):format(mib / best_s, best_s))
table.sort(ratios)
local median = #ratios % 2 == 1 and ratios[(#ratios + 1) // 2] or (ratios[#ratios // 2] + ratios[#ratios // 2 + 1]) / 2
print(("  ratio salvage/curl = %.3f best-of, %.3f median of per-round ratios (target >= 0.95)")
  :format(best_c / best_s, median))
print(("  salvage client peak RSS = %.1f MiB (target <= 32)"):format(rss / (1 << 20)))
print(("  salvage client CPU = %.2f s for the whole upload process"):format(cpu))
print(("  simulator peak RSS = %.1f MiB (uploads streamed, never held)"):format(sim_rss / 1024))
LUA
