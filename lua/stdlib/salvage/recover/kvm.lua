--- salvage.recover.kvm: a KVM zone as the target of a recovery, mixed into the
-- engine (salvage.recover) like salvage.recover.cloud.
--
--   for k, f in pairs(require("salvage.recover.kvm").methods) do Engine[k] = f end
--
-- Target by zone: the zone's hypervisor comes from `opts.hypervisor` ("kvm",
-- "xenserver") or from the API (listHypervisors zoneid=); a KVM zone takes
-- disks as QCOW2 (format=QCOW2, hypervisor=KVM), written by the qcow2 writer.
--
-- Zero-copy adoption (`opts.kvm_primary = {pool = ID|NAME, dir = DIR}`, DIR the
-- new cloud's NFS primary pool mounted here): each disk is written as qcow2
-- straight into the pool's root under a name no CloudStack file can have
-- ("salvage-<vm uuid>-<disk id>.qcow2": CloudStack names its files by bare
-- UUID), through a temporary dot-file, fsynced and renamed. Then importVm
-- (importsource=shared) adopts the root disk, importVolume each data disk,
-- attachVolume attaches them in device order. Steps are journaled like the
-- upload path (place:<disk>, prepare, vm, volume:<disk>, attach:<disk>); before
-- creating anything the cloud is asked (a VM by name, a volume by its path in
-- the pool), so a killed run is resumed without importing twice. A VM that
-- fails leaves no file behind: its placed files that no volume uses are
-- removed, and any that cannot be are reported with their path.
--
-- Policy hooks used here: prepare_guest(vm, disk_path) (after the root disk is
-- written, before it is imported), addresses_for(vm) -> {ip =, mac =} | nil.
local sys = require "salvage.sys"
local json = require "salvage.json"
local log = require "salvage.log"
local progress = require "salvage.progress"
local cloud = require "salvage.recover.cloud"

local M = {}
local Engine = {}
M.methods = Engine

local step_fail, must = cloud.step_fail, cloud.must

-- What the salvage-source tag of a new resource names (as salvage.recover's).
local function vm_source(vm) return vm.uuid or ("vm-" .. tostring(vm.id)) end
local function disk_source(d) return d.uuid or ("volume-" .. tostring(d.id)) end

local function zero_filled_of(r)
  local zf = json.array({})
  for _, z in ipairs(type(r.zero_filled) == "table" and r.zero_filled or {}) do
    zf[#zf + 1] = { sector = z.sector, count = z.count, reason = z.reason }
  end
  return zf
end

--- The rest of a flatten to qcow2 in the work directory (for upload): the writer is exact by
-- construction (fuzzed, checked with qemu-img in the tests); the virtual size is what is checked.
function Engine:flattened_qcow2(vm, d, out, r, t0)
  if d.size and r.virtual_size ~= d.size then
    step_fail("flatten", ("qcow2 virtual size %d differs from volumes.size %d"):format(r.virtual_size, d.size))
  end
  self.timing.flatten = self.timing.flatten + (sys.clock() - t0)
  self:note_scratch(vm)
  local zf = zero_filled_of(r)
  if #zf > 0 then log.warn(("%s: %d damaged range(s) zero-filled (forced)"):format(d.name, #zf), { vm = vm.name }) end
  return { file = out, virtual_size = r.virtual_size, bytes = r.bytes_written, zero_filled = zf, format = "qcow2" }
end

-- Target ------------------------------------------------------------------------------

--- "KVM" or "XenServer": --hypervisor, else what the zone's hypervisors are.
function Engine:hypervisor()
  if self.cache.hypervisor then return self.cache.hypervisor end
  local want = self.opts.hypervisor
  local hv
  if want then
    hv = ({ kvm = "KVM", xenserver = "XenServer" })[tostring(want):lower()]
    if not hv then step_fail("zone", ("hypervisor '%s' is not kvm or xenserver"):format(tostring(want))) end
  else
    local list = self:list("listHypervisors", { zoneid = self:zone_id() }, { "hypervisor" })
    local names = {}
    for _, h in ipairs(list or {}) do names[h.name] = true end
    if names.KVM and not names.XenServer then hv = "KVM" else hv = "XenServer" end
    if names.KVM and names.XenServer then
      log.warn("the zone has KVM and XenServer clusters; recovering for XenServer (use --hypervisor kvm)")
    end
  end
  self.cache.hypervisor = hv
  return hv
end

--- The disk format the target takes: "qcow2" (KVM) or "vhd".
function Engine:disk_format()
  return self:hypervisor() == "KVM" and "qcow2" or "vhd"
end

-- The pool of --kvm-primary, checked against the cloud: an NFS pool of the zone.
function Engine:primary_pool()
  if self.cache.pool then return self.cache.pool end
  local kp = self.opts.kvm_primary
  local pools = must("pool", self:list("listStoragePools", { zoneid = self:zone_id() }, { "storagepool" }))
  for _, p in ipairs(pools) do
    if p.id == kp.pool or p.name == kp.pool then
      if p.type ~= "NetworkFilesystem" then
        step_fail("pool", ("storage pool %s is %s; zero-copy import needs an NFS pool"):format(p.name, p.type))
      end
      local st = sys.stat(kp.dir)
      if not st or st.type ~= "directory" then
        step_fail("pool", ("%s (the mounted root of pool %s) is not a directory"):format(kp.dir, p.name))
      end
      self.cache.pool = { id = p.id, name = p.name, dir = kp.dir }
      return self.cache.pool
    end
  end
  step_fail("pool", ("storage pool '%s' not found in zone %s"):format(tostring(kp.pool), tostring(self.opts.zone)))
end

function Engine:kvm_cluster()
  if self.cache.cluster then return self.cache.cluster end
  local list = must("vm", self:list("listClusters", { zoneid = self:zone_id(), hypervisor = "KVM" }, { "cluster" }))
  if not list[1] then step_fail("vm", "no KVM cluster in zone " .. tostring(self.opts.zone)) end
  self.cache.cluster = list[1].id
  return list[1].id
end

-- Which parameters importVm takes on this server (listApis), as a set.
function Engine:importvm_params()
  if self.cache.importvm then return self.cache.importvm end
  local set = {}
  local r = self.client:call("listApis", { name = "importVm" })
  for _, a in ipairs(r and r.api or {}) do
    for _, p in ipairs(a.params or {}) do set[p.name] = true end
  end
  if not set.importsource then step_fail("vm", "this server has no importVm (CloudStack 4.19 or later needed)") end
  self.cache.importvm = set
  return set
end

--- {ip =, mac =} to keep for the VM (policy addresses_for), or nil.
function Engine:addresses(vm)
  local hook = self.policy.addresses_for
  if type(hook) ~= "function" then return nil end
  local a = hook(vm)
  if type(a) ~= "table" or (a.ip == nil and a.mac == nil) then return nil end
  return a
end

-- Zero-copy adoption ---------------------------------------------------------------------

--- The file name of a disk in the pool root: never a bare UUID (CloudStack's own names).
function M.pool_name(vm, d)
  local key = tostring(vm.uuid or vm.id):gsub("[^%w%-]", "_")
  return ("salvage-%s-%s.qcow2"):format(key, tostring(d.id):gsub("[^%w%-]", "_"))
end

-- The cloud's volume using a file of the pool, if any.
function Engine:volume_at(pool, name)
  local list = self:list("listVolumes", { listall = true, storageid = pool.id }, { "volume" })
  for _, v in ipairs(list or {}) do
    if v.path == name and (v.storageid == nil or v.storageid == pool.id) and v.state ~= "Destroy"
        and v.state ~= "Expunged" then
      return v
    end
  end
end

--- Write the disk as qcow2 into the pool root (step place:<disk>).
function Engine:place(vm, d)
  local pool = self:primary_pool()
  local name = M.pool_name(vm, d)
  local path = pool.dir .. "/" .. name
  if self.dry then
    self:act(vm, "write qcow2 into the pool", ("%s -> %s"):format(tostring(d.file), path))
    return { name = name, path = path }
  end
  -- A record whose file is still there (or already the cloud's) is found again; a record
  -- whose file was removed after a failure (unplace) is redone.
  local key = "place:" .. tostring(d.id)
  local rec = self.journal and self.journal:get(vm.id, key)
  if rec and (sys.stat(path) or self:volume_at(pool, name)) then return rec end
  return self:step_again(vm.id, key, function()
    -- imported by a killed run before its record: the file is the cloud's now, leave it
    local used = self:volume_at(pool, name)
    if used then return { name = name, path = path, reused = true } end
    if not self.vhd then step_fail("place", "the VHD engine (salvage.vhd) is not available") end
    if not d.file then step_fail("place", "disk " .. tostring(d.name) .. " has no source file") end
    self:act(vm, "write qcow2 into the pool", ("%s -> %s"):format(d.file, path))
    local p = progress.new { label = ("qcow2 %s %s"):format(vm.name, d.name), total = d.size, unit = "bytes" }
    local t0 = sys.clock()
    -- a file there without a record is ours from a killed run (the name is ours alone): redo it
    local r, err = self.vhd.flatten(d.file, path, { format = "qcow2", progress = p:callback(), overwrite = true,
      force = d.force and true or nil })
    p:finish()
    self.timing.flatten = self.timing.flatten + (sys.clock() - t0)
    if not r then step_fail("place", d.file .. ": " .. tostring(err)) end
    if d.size and r.virtual_size ~= d.size then
      os.remove(path)
      step_fail("place", ("qcow2 virtual size %d differs from volumes.size %d"):format(r.virtual_size, d.size))
    end
    return { name = name, path = path, virtual_size = r.virtual_size, bytes = r.bytes_written,
      zero_filled = zero_filled_of(r) }
  end)
end

-- Run fn and record its data under step even when an older record exists.
function Engine:step_again(vm_id, step, fn)
  local data = fn()
  if data ~= nil and not self.dry and self.journal then self.journal:record(vm_id, step, data) end
  return data
end

-- The policy's prepare_guest on the written root disk, once per written file (a file
-- rewritten after a failure is prepared again: the record names the file's inode).
function Engine:prepare_guest(vm, path)
  local hook = self.policy.prepare_guest
  if type(hook) ~= "function" or (self.policy.defaults and hook == self.policy.defaults.prepare_guest) then
    return nil
  end
  local st = sys.stat(path)
  local rec = self.journal and self.journal:get(vm.id, "prepare")
  if rec and st and rec.ino == st.ino then return rec end
  return self:step_again(vm.id, "prepare", function()
    self:act(vm, "prepare guest", path)
    if self.dry then return nil end
    local ok, res, why = pcall(hook, vm, path)
    if not ok or res == false then step_fail("prepare", tostring(ok and (why or "refused") or res)) end
    return { ino = st and st.ino, changed = (type(res) == "string" or type(res) == "table") and res or json.null }
  end)
end

function Engine:import_vm_params(vm, own, placed, name)
  local pool = self:primary_pool()
  local params = {
    zoneid = self:zone_id(), clusterid = self:kvm_cluster(), hypervisor = "KVM", importsource = "shared",
    storageid = pool.id, diskpath = placed.name, name = name,
    displayname = vm.display_name or vm.name, serviceofferingid = own.offering.id,
    account = own.account.name, domainid = own.domainid,
  }
  local net = vm.network
  if type(self.policy.network_for) == "function" then net = self.policy.network_for(vm, own.account) or net end
  if type(net) == "table" then net = net.id end
  if net == nil then
    local nets = must("vm", self:list("listNetworks", { zoneid = self:zone_id() }, { "network" }))
    net = nets[1] and nets[1].id
  end
  params.networkid = net
  local addr = self:addresses(vm)
  local takes = self:importvm_params()
  if addr and addr.ip and takes.nicipaddresslist then
    params["nicipaddresslist[0].nic"] = "nic0"
    params["nicipaddresslist[0].ip4Address"] = addr.ip
  end
  if addr and addr.mac then
    if takes.nicmacaddresslist then
      params["nicmacaddresslist[0].nic"] = "nic0"
      params["nicmacaddresslist[0].macAddress"] = addr.mac
    else
      log.warn("this server's importVm takes no MAC address; the VM gets a new one", { vm = vm.name, mac = addr.mac })
    end
  end
  return params
end

-- importVm of the placed root disk; the VM is tagged like a deployed one and found again by
-- its tag (or by the journaled intent after a lost reply).
function Engine:import_vm(vm, own, placed)
  local source = vm_source(vm)
  local name = vm.hostname or cloud.hostname(vm.name)
  return self:step(vm.id, "vm", function()
    local existing = self:ours("UserVm", vm, name, source, own)
    if existing then return { id = existing.id, reused = true } end
    self:act(vm, "import VM", ("%s from %s on pool %s"):format(name, placed.name, self:primary_pool().name))
    if self.dry then return nil end
    self:intend(vm, "UserVm", source, name)
    local r, err = self.client:async("importVm", self:import_vm_params(vm, own, placed, name))
    if not r then
      if cloud.ambiguous(err) then
        local again = self:ours("UserVm", vm, name, source, own)
        if again then return { id = again.id } end
      end
      step_fail("vm", cloud.errtext(err))
    end
    local v = r.virtualmachine or r
    local ok, terr = self:tag("UserVm", v.id, source)
    if not ok then step_fail("vm", cloud.errtext(terr)) end
    return { id = v.id }
  end, function(data) return self:alive("UserVm", data.id, own) ~= nil end)
end

function Engine:import_volume(vm, own, d, placed)
  local source = disk_source(d)
  local name = d.upload_name or d.name
  return self:step(vm.id, "volume:" .. tostring(d.id), function()
    local existing = self:ours("Volume", vm, name, source, own)
    if existing then return { id = existing.id, reused = true } end
    self:act(vm, "import volume", ("%s from %s"):format(name, placed.name))
    if self.dry then return nil end
    local pool = self:primary_pool()
    self:intend(vm, "Volume", source, name)
    local r, err = self.client:async("importVolume", { storageid = pool.id, path = placed.name,
      name = name, account = own.account.name, domainid = own.domainid })
    if not r then
      if cloud.ambiguous(err) then
        local again = self:ours("Volume", vm, name, source, own)
        if again then return { id = again.id } end
      end
      step_fail("volume", cloud.errtext(err))
    end
    local id = (r.volume or r).id
    local ok, terr = self:tag("Volume", id, source)
    if not ok then step_fail("volume", cloud.errtext(terr)) end
    return { id = id }
  end, function(data) return self:alive("Volume", data.id, own) ~= nil end)
end

-- A failed VM leaves nothing in the pool: each of its placed files that no volume uses is
-- removed; one that cannot be removed is reported by path.
function Engine:unplace(vm)
  local pool = self.cache.pool
  if not pool or self.dry then return end
  for _, d in ipairs(vm.disks) do
    local name = M.pool_name(vm, d)
    local path = pool.dir .. "/" .. name
    if sys.stat(path) and not self:volume_at(pool, name) then
      local ok, err = os.remove(path)
      if ok then
        log.warn("removed the qcow2 of a failed VM from the pool", { vm = vm.name, path = path })
        if self.journal then self.journal:record(vm.id, "unplace:" .. tostring(d.id), { path = path }) end
      else
        log.error("could not remove the qcow2 of a failed VM: remove it by hand", { vm = vm.name, path = path,
          error = err })
      end
    end
  end
end

--- The machine steps of one VM by zero-copy adoption.
function Engine:machine_adopt(vm, own, data_disks, device_ids)
  local r = table.pack(pcall(function()
    local placed_root = self:place(vm, vm.disks[1])
    local placed = {}
    for _, d in ipairs(data_disks) do
      self:check_parent()
      placed[d] = self:place(vm, d)
    end
    self:prepare_guest(vm, placed_root.path)
    self:check_parent()
    local dep = self:import_vm(vm, own, placed_root)
    local volumes = {}
    for _, d in ipairs(data_disks) do
      self:check_parent()
      local v = self:import_volume(vm, own, d, placed[d])
      if v and dep then self:attach(vm, d, v.id, dep.id, device_ids[d]) end
      volumes[#volumes + 1] = { old_id = d.id, name = d.upload_name or d.name, new_id = v and v.id or json.null,
        deviceid = device_ids[d], size = d.size, pool_path = placed[d].path }
    end
    return dep, volumes
  end))
  if not r[1] then
    self:unplace(vm)
    error(r[2], 0)
  end
  return r[2], r[3]
end

return M
