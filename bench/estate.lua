-- bench/estate.lua DIR N SIZE INVENTORY: the bench estate of bench/recover.sh and bench/stream.sh.
-- N VMs in 20 accounts of 4 domains, each with a SIZE-byte differencing root disk on one of 5
-- template base copies, every tenth with a data disk of SIZE/2; the chains are built in DIR
-- (salvage.demo.estate) and the inventory records written to INVENTORY as JSON.
local json = require "salvage.json"
local estate = require "salvage.demo.estate"
local dir, n, size, inventory = arg[1], math.tointeger(tonumber(arg[2])), math.tointeger(tonumber(arg[3])), arg[4]
assert(dir and n and size and inventory, "usage: salvage bench/estate.lua DIR N SIZE INVENTORY")
local vms = {}
for i = 1, n do
  local acct = (i - 1) % 20 + 1
  local vm = { id = 1000 + i, uuid = ("vm-%d"):format(i), name = ("vm%03d"):format(i),
    display_name = ("bench VM %d"):format(i), state = "Stopped", hypervisor = "XenServer",
    account = { id = acct, name = ("acct%02d"):format(acct), type = 0 },
    domain = { id = acct % 4 + 2, name = ("dom%d"):format(acct % 4), path = ("/dom%d/"):format(acct % 4) },
    offering = { name = "Small Instance", cpu = 1, speed = 500, ram = 512 },
    guest_os = "Other Linux (64-bit)", template = { name = "base", requires_hvm = true, password_enabled = false },
    problems = {},
    volumes = { { id = 100000 + i, name = "ROOT-" .. i, type = "ROOT", state = "Ready", size = size, device_id = 0,
      format = "VHD", path = ("root-%04d"):format(i), parent_base = ("base-%d.vhd"):format(i % 5), problems = {} } } }
  if i % 10 == 0 then
    table.insert(vm.volumes, { id = 200000 + i, name = "DATA-" .. i, type = "DATADISK", state = "Ready",
      size = size // 2, device_id = 1, format = "VHD", path = ("data-%04d"):format(i), problems = {} })
  end
  vms[#vms + 1] = vm
end
assert(estate.build(dir, vms))
local f = assert(io.open(inventory, "w"))
f:write(json.encode(vms))
f:close()
