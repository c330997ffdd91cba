#!/bin/sh
# Benchmark of `salvage inventory`: an estate of 20,000 user VMs and 60,000
# volumes (+ 500 system VMs, 5,000 expunged VMs and 10,000 expunged volumes,
# tests/db/bench-estate.sql) on CloudStack 4.22.1 in a private MariaDB.
# Prints wall time and peak RSS of `salvage inventory --format json > /dev/null`
# against the live server (--db), and of the whole --dump path (server start,
# load of a mariadb-dump of that estate, inventory). Targets: <= 2 s, <= 200 MiB.
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
SALVAGE=${SALVAGE:-$TOP/salvage}
export TOP SALVAGE
work=$(mktemp -d /tmp/salvage-bench-inv.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

cat >"$work/run.lua" <<'LUA'
local db = require "salvage.db"
local ephemeral = require "salvage.db.ephemeral"
local sys = require "salvage.sys"
local work, top, salvage = arg[1], os.getenv("TOP"), os.getenv("SALVAGE")
local t0 = sys.clock()
local conn <close> = assert(db.ephemeral { database = "cloud", buffer_pool = "256M", load = {
  top .. "/tests/fixtures/cloudstack/schema-4.22.1.sql", top .. "/tests/fixtures/cloudstack/seed-4.22.1.sql",
  top .. "/tests/db/bench-estate.sql" } })
local info = ephemeral.info(conn)
local n = assert(conn:query("SELECT (SELECT COUNT(*) FROM vm_instance WHERE type = 'User' AND removed IS NULL) AS vms, "
  .. "(SELECT COUNT(*) FROM volumes) AS vols, (SELECT COUNT(*) FROM vm_instance) AS allvms"))[1]
print(("estate: %d live user VMs, %d VM rows, %d volume rows; generated and loaded in %.2f s"):format(
  n.vms, n.allvms, n.vols, sys.clock() - t0))

local function timed(label, cmd)
  local t = sys.clock()
  local ok = os.execute("/usr/bin/time -f '%U %S %M' -o '" .. work .. "/rss' " .. cmd)
  local wall = sys.clock() - t
  local f = io.open(work .. "/rss")
  local usr, sys_, rss = f:read("a"):match("([%d.]+) ([%d.]+) (%d+)%s*$")
  usr, sys_, rss = tonumber(usr), tonumber(sys_), tonumber(rss)
  f:close()
  assert(ok, label .. " failed")
  print(("%-50s wall %5.2f s  cpu %5.2f s  peak RSS %6.1f MiB"):format(label, wall, usr + sys_, rss / 1024))
end

local url = "'mariadb://root@localhost/cloud?socket=" .. info.socket .. "'"
for i = 1, 3 do
  timed("inventory --db --format json (run " .. i .. ")", salvage .. " inventory -q --db " .. url
    .. " --format json > " .. work .. "/inv.json")
end
timed("inventory --db --format table", salvage .. " inventory -q --db " .. url .. " > /dev/null")
local f = io.open(work .. "/inv.json")
local size = f:seek("end")
f:close()
print(("json output: %.1f MiB"):format(size / 1048576))
assert(os.execute(("mariadb-dump --no-defaults --socket='%s' --user=root cloud | gzip -1 > '%s/estate.sql.gz'")
  :format(info.socket, work)))
timed("inventory --dump estate.sql.gz --format json (all)", salvage .. " inventory -q --dump " .. work
  .. "/estate.sql.gz --format json > /dev/null")
LUA
"$SALVAGE" "$work/run.lua" "$work"
