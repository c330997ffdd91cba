--- A demo primary storage: VHD chains for the volumes of an inventory, built with
-- the VHD engine the way XenServer lays them out on an NFS SR — a hidden base copy
-- per template (`<install_path>.vhd`), a differencing root disk per VM on top of it
-- with the VM's own data, and dynamic data disks without a parent. Virtual sizes
-- are the real `volumes.size`; only a few blocks hold data, so files stay small.
--
--   local estate = require "salvage.demo.estate"
--   local made = assert(estate.build("/tmp/primary", vms))
--   made.files -> { path, ... }; made.expect[volume.path] -> { {offset, bytes}, ... }
--   -- the bytes a recovered disk must hold at those offsets (child over base)
local M = {}

local KiB, MiB, GiB = 1024, 1 << 20, 1 << 30

--- Deterministic, recognizable content: `len` bytes naming `who` and `k`.
function M.pattern(who, k, len)
  local line = ("%s block %d | "):format(who, k)
  local reps = len // #line + 1
  return line:rep(reps):sub(1, len)
end

-- Offsets inside a disk of `size` bytes, clamped (tiny bench disks stay valid).
local function at(size, off, len)
  if off + len > size then off = math.max(0, size - len) end
  return off - off % 512
end

-- Writes for a base copy, a root delta and a data disk. The root's first write
-- overlaps the base's partly (sector-granular differencing).
local function base_writes(name, size)
  return {
    { at(size, 0, 8 * KiB), M.pattern("base " .. name, 0, 8 * KiB) },
    { at(size, 3 * MiB + 512, 4 * KiB), M.pattern("base " .. name, 1, 4 * KiB) },
    { at(size, size // 2, 64 * KiB), M.pattern("base " .. name, 2, 64 * KiB) },
  }
end

local function root_writes(name, size)
  return {
    { at(size, 2 * KiB, 2 * KiB), M.pattern("root " .. name, 0, 2 * KiB) },
    { at(size, 9 * MiB, 16 * KiB), M.pattern("root " .. name, 1, 16 * KiB) },
    { at(size, size - 4 * KiB, 4 * KiB), M.pattern("root " .. name, 2, 4 * KiB) },
  }
end

local function data_writes(name, size)
  return {
    { at(size, 0, 4 * KiB), M.pattern("data " .. name, 0, 4 * KiB) },
    { at(size, math.min(1 * GiB, size // 2) + 1536, 6 * KiB), M.pattern("data " .. name, 1, 6 * KiB) },
  }
end

-- Apply writes in order to an expected-content list: later writes win byte-wise.
local function overlay(expect, writes)
  for _, w in ipairs(writes) do expect[#expect + 1] = { w[1], w[2] } end
end

--- Expected bytes of [off, off+len) given ordered writes (zeros elsewhere).
function M.expected(writes, off, len)
  local buf = {}
  for i = 1, len do buf[i] = "\0" end
  for _, w in ipairs(writes) do
    local wo, data = w[1], w[2]
    local s, e = math.max(off, wo), math.min(off + len, wo + #data)
    for p = s, e - 1 do buf[p - off + 1] = data:sub(p - wo + 1, p - wo + 1) end
  end
  return table.concat(buf)
end

local function create(vhd, path, opts, writes)
  local h, err, code = vhd.create(path, opts)
  if not h then return nil, ("create %s: %s"):format(path, tostring(err)), code end
  for _, w in ipairs(writes) do
    local ok, werr = h:write(w[1], w[2])
    if not ok then
      h:close()
      return nil, ("write %s at %d: %s"):format(path, w[1], tostring(werr))
    end
  end
  h:close()
  return true
end

local function base_name(b)
  if not b then return nil end
  b = tostring(b):gsub("^.*/", ""):gsub("%.vhd$", "")
  return b
end

--- build(dir, vms [, {vhd = module, block_size = n}]) -> {files, expect} | nil, message
-- vms: inventory records (salvage.cloudstack.inventory.load) or plan-like
-- {name, volumes = {{type, size, path, parent_base, name}}}.
function M.build(dir, vms, opts)
  opts = opts or {}
  local vhd = opts.vhd or require "salvage.vhd"
  local made = { files = {}, expect = {} }
  local bases = {}
  for _, vm in ipairs(vms) do
    for _, vol in ipairs(vm.volumes or vm.disks or {}) do
      if vol.path and vol.size and vol.state ~= "Expunged" then
        local file = ("%s/%s.vhd"):format(dir, vol.path)
        local expect = {}
        local parent = vol.type == "ROOT" and base_name(vol.parent_base) or nil
        if parent then
          local bfile = ("%s/%s.vhd"):format(dir, parent)
          if not bases[parent] then
            local bw = base_writes(parent, vol.size)
            local ok, err = create(vhd, bfile, { size = vol.size, type = "dynamic", hidden = true,
              block_size = opts.block_size }, bw)
            if not ok then return nil, err end
            bases[parent] = { writes = bw, size = vol.size }
            made.files[#made.files + 1] = bfile
          end
          overlay(expect, bases[parent].writes)
          local rw = root_writes(vm.name, vol.size)
          local ok, err = create(vhd, file, { size = vol.size, type = "differencing", parent = bfile,
            block_size = opts.block_size }, rw)
          if not ok then return nil, err end
          overlay(expect, rw)
        else
          local w = vol.type == "ROOT" and root_writes(vm.name, vol.size) or data_writes(vol.name or vol.path, vol.size)
          local ok, err = create(vhd, file, { size = vol.size, type = "dynamic", block_size = opts.block_size }, w)
          if not ok then return nil, err end
          overlay(expect, w)
        end
        made.files[#made.files + 1] = file
        made.expect[vol.path] = expect
      end
    end
  end
  return made
end

--- from_dump(dir, files [, opts]) -> made, vms | nil, message
-- Load the SQL files into a private MariaDB (salvage.db.ephemeral), read the
-- inventory with the default policy, and build the storage for it.
function M.from_dump(dir, files, opts)
  local db = require "salvage.db"
  local inventory = require "salvage.cloudstack.inventory"
  local policy = require "salvage.policy"
  local conn, err = db.ephemeral { load = files }
  if not conn then return nil, "database: " .. tostring(err) end
  local vms, meta = inventory.load(conn, { policy = (opts and opts.policy) or policy.new() })
  conn:close()
  if not vms then return nil, "inventory: " .. tostring(meta) end
  local made, berr = M.build(dir, vms, opts)
  if not made then return nil, berr end
  return made, vms
end

return M
