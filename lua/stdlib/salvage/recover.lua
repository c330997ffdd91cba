--- Recovery: carry the VMs of a plan into the new cloud, step by step, resumable.
--
--   local recover = require "salvage.recover"
--   local report = recover.run(plan, {
--     client = api_client, zone = "Zone1", workdir = "/var/tmp/rec",
--     workers = 4, dry_run = false, only = {"ppvm2"}, policy = pol,
--     keep_disks = false, switch_cloud = false, scratch = nil | "/big/dir",
--     worker_argv = function(vm_id) return {...} end,   -- how to start a worker process
--   })
--
-- The cloud is the truth, the journal (DIR/journal.jsonl, salvage.journal) a
-- cache of what was done. Per VM, each step recorded once done:
--   flatten:<disk>  with scratch (or a forced disk) only: the chain flattened into
--                   SCRATCH/disks/, checked, virtual size = volumes.size, deleted once uploaded.
--                   By default nothing is flattened to disk: each upload streams the chain's
--                   standalone VHD from C (checked and sized first; the sha256 of the bytes
--                   sent is journaled with the template or volume); keep_disks tees a copy
--                   into (SCRATCH or DIR)/disks/ as it is sent.
--   (estate-wide) cloud (API URL and zone id), domain:<path>, account:<path><name>,
--                 offering:<cpu>/<speed>/<ram>
--   intent:<kind>:<source>  about to create a template, VM or volume (see salvage.recover.cloud)
--   template        the root disk uploaded as a template, ready
--   vm              deployed (stopped) with its plan host name and old display name
--   volume:<disk>   each data disk uploaded as a volume
--   attach:<disk>   attached in device order
--   start           started, when the policy says so
--   done            the VM is recovered
-- On resume every journaled id is checked in the new cloud; a vanished one is
-- made again (with a warning naming it). Templates, VMs and volumes are tagged
-- with their old object's UUID and found again by that tag, whatever the journal
-- says; dead ones (failed uploads, failed deployments) are removed and made again.
-- A workdir made against another cloud (API URL or zone id) is refused unless
-- switch_cloud is set.
--
-- Workers: Lua is single-threaded, so `workers > 1` runs each VM's machine steps in
-- a child process (`worker_argv`) — flatten of one VM overlaps uploads of another.
-- Estate-wide resources (domains, accounts, offerings) are ensured first, in the
-- parent, one at a time: two workers never race to create the same account. A VM
-- is worked on under a lock (flock on DIR/locks/vm-<id>.lock) that dies with its
-- holder: an orphan of a killed run is found by its lock and stopped.
--
-- Stops: SIGINT/SIGTERM raise a cloud.Stop error out of run() after the workers
-- are stopped; the journal stays resumable.
local sys = require "salvage.sys"
local json = require "salvage.json"
local log = require "salvage.log"
local progress = require "salvage.progress"
local journal = require "salvage.journal"
local cloud = require "salvage.recover.cloud"
local pool = require "salvage.recover.pool"
local kvm = require "salvage.recover.kvm"
local reportlib = require "salvage.recover.report"

local M = {}

M.STEPS = { "flatten", "domain", "account", "offering", "template", "vm", "volume", "attach", "start", "done" }

local StepError, step_fail = cloud.StepError, cloud.step_fail

M.errtext = cloud.errtext
M.random_password = cloud.random_password
M.hostname = cloud.hostname
M.TAG = cloud.TAG
M.Stop = cloud.Stop
M.is_stop = cloud.is_stop
M.table = reportlib.table
M.csv = reportlib.csv
M.worker_argv = pool.worker_argv

-- The engine ------------------------------------------------------------------------

local Engine = {}
Engine.__index = Engine

-- The client, with the time spent in it (waiting for the new cloud, uploading)
-- added to timing.api: the engine's own overhead is what remains.
local function timed_client(client, timing)
  if client == nil then return nil end
  return setmetatable({}, { __index = function(_, k)
    local v = client[k]
    if type(v) ~= "function" then return v end
    return function(_, ...)
      local t0 = sys.clock()
      local r = table.pack(v(client, ...))
      timing.api = timing.api + (sys.clock() - t0)
      return table.unpack(r, 1, r.n)
    end
  end })
end

--- new(plan, opts) -> engine (opts as run()).
function M.new(plan, opts)
  local timing = { api = 0, flatten = 0, stream = 0, journal = 0 }
  local self = setmetatable({
    plan = plan, opts = opts, client = timed_client(opts.client, timing), timing = timing, policy = opts.policy or {},
    dry = opts.dry_run and true or false, workdir = opts.workdir, scratch = opts.scratch,
    actions = {}, cache = {}, poll = opts.poll_interval or 0.2,
    wait_timeout = opts.wait_timeout or 3600, warnings = {}, cleaned = {}, locks = {},
  }, Engine)
  if opts.vhd ~= nil then
    self.vhd = opts.vhd or nil
  else
    local ok, mod = pcall(require, "salvage.vhd")
    self.vhd = ok and mod or nil
  end
  return self
end

function Engine:open_journal()
  if self.journal then return self.journal end
  local path = self.workdir .. "/journal.jsonl"
  local j, err = journal.open(path, { readonly = self.dry })
  if not j then error("recover: " .. err, 0) end
  if self.dry then
    -- A dry run reads the journal (what is done) but never writes it.
    j.record = function(_, _, _, data) return data end
    j.fail = function() end
    self.journal = j
    return j
  end
  sys.chmod(path, tonumber("600", 8))
  -- time spent appending + fsyncing records, reported apart from the engine's own time
  local record, timing = j.record, self.timing
  j.record = function(jj, ...)
    local t0 = sys.clock()
    local r = record(jj, ...)
    timing.journal = timing.journal + (sys.clock() - t0)
    return r
  end
  self.journal = j
  return j
end

-- Record what a dry run would do (or log what a real run does).
function Engine:act(vm, action, what)
  self.actions[#self.actions + 1] = { vm = vm and vm.name or json.null, vm_id = vm and vm.id or json.null,
    action = action, what = what }
  if not self.dry then log.info(action, { vm = vm and vm.name, what = what }) end
end

-- Either the step's journal record (still true in the new cloud: `verify(data)`),
-- or run fn() -> data and record it. In a dry run nothing is recorded (and fn is
-- expected to create nothing).
function Engine:step(vm_id, step, fn, verify)
  local j = self.journal
  local done = j and j:get(vm_id, step)
  if done and (self.dry or not verify or verify(done)) then return done, true end
  if done then self:vanished(("%s of VM %s"):format(step, tostring(vm_id)), done.id or done.vm) end
  local data = fn()
  if data == nil then return nil end
  if not self.dry and j then j:record(vm_id, step, data) end
  return data, false
end

function Engine:check_parent()
  local stop = cloud.stop_of(nil)
  if stop then error(stop, 0) end
  local ppid = self.opts.parent_pid
  if ppid and not sys.kill(ppid, 0) then
    log.warn("parent recover process is gone; worker stops", { parent = ppid })
    os.exit(3)
  end
end

for k, f in pairs(cloud.methods) do Engine[k] = f end
for k, f in pairs(pool.methods) do Engine[k] = f end
for k, f in pairs(kvm.methods) do Engine[k] = f end

function Engine:report(vms, status, elapsed) return reportlib.build(self, vms, status, elapsed) end

-- Sources: what the tag of each new resource names ------------------------------------

local function vm_source(vm) return vm.uuid or ("vm-" .. tostring(vm.id)) end
local function disk_source(d) return d.uuid or ("volume-" .. tostring(d.id)) end
M.vm_source, M.disk_source = vm_source, disk_source

-- Scratch: flattened disks ------------------------------------------------------------------

-- Where flattened disks (--scratch) and --keep-disks copies go.
function Engine:disks_dir() return (self.scratch or self.workdir) .. "/disks" end

function Engine:disk_file(vm, d)
  return ("%s/%s-%s.%s"):format(self:disks_dir(), tostring(vm.id), tostring(d.id), self:disk_format())
end

-- Bytes of everything under the disks directory (finished and temporary files).
function Engine:scratch_bytes()
  local dir, total = self:disks_dir(), 0
  for _, n in ipairs(sys.dir(dir) or {}) do
    local st = sys.stat(dir .. "/" .. n)
    if st and st.type == "file" then total = total + st.size end
  end
  return total
end

-- Note the scratch use now (the report gives the peak over the run's processes).
function Engine:note_scratch(vm)
  local now = self:scratch_bytes()
  if now > (self.scratch_peak or 0) then
    self.scratch_peak = now
    if not self.dry then self.journal:record(vm.id, "scratch", { bytes = now }) end
  end
end

-- Temporaries of a killed flatten of this VM's disks (held under the VM's lock).
function Engine:remove_stale(vm)
  local dir = self:disks_dir()
  local prefix = "." .. tostring(vm.id) .. "-"
  for _, n in ipairs(sys.dir(dir) or {}) do
    if n:sub(1, #prefix) == prefix and n:find("%.salvage%-") then
      log.warn("removing a partial flatten left by a killed run", { file = dir .. "/" .. n })
      sys.unlink(dir .. "/" .. n)
    end
  end
end

-- A flattened disk is deleted once the new cloud has verified its upload.
function Engine:drop_disk(file)
  if self.opts.keep_disks or self.dry or not file then return end
  if sys.stat(file) then sys.unlink(file) end
end

local function blocking(p, forced)
  if type(p) ~= "table" then return false end
  if forced then return false end
  return p.blocks_flatten or (p.blocks_flatten == nil and p.severity == "error")
end

function Engine:flatten_checks(d)
  local vhd = self.vhd
  if not vhd then step_fail("flatten", "the VHD engine (salvage.vhd) is not available") end
  if not d.file then step_fail("flatten", "disk " .. tostring(d.name) .. " has no source file") end
  return vhd
end

-- Flatten one disk into DIR/disks (or say so in a dry run): {file, zero_filled}.
function Engine:flatten(vm, d)
  local out = self:disk_file(vm, d)
  if self.dry then
    local vhd = self:flatten_checks(d)
    local r = vhd.check(d.file)
    for _, p in ipairs(r and r.problems or {}) do
      if blocking(p, d.force) then step_fail("flatten", (p.file or d.file) .. ": " .. tostring(p.message or p.code)) end
    end
    self:act(vm, "flatten", ("%s -> %s%s"):format(d.file, out,
      d.force and " (forced: unreadable parts zero-filled)" or ""))
    return { file = out }
  end
  return self:step(vm.id, "flatten:" .. tostring(d.id), function()
    return self:flatten_now(vm, d, out)
  end, function(data) return sys.stat(data.file or out) ~= nil end)
end

function Engine:flatten_now(vm, d, out)
  local vhd = self:flatten_checks(d)
  sys.mkdir(self:disks_dir())
  local p = progress.new { label = ("flatten %s %s"):format(vm.name, d.name), total = d.size, unit = "bytes" }
  local t0 = sys.clock()
  -- A file already under `out` with no journal record is the work of a run
  -- killed between rename and record: it is ours, in our workdir, and unproven,
  -- so it is redone (flatten still never replaces a file of the chain).
  local fmt = self:disk_format()
  local r, err = vhd.flatten(d.file, out, { format = fmt, progress = p:callback(), overwrite = true,
    force = d.force and true or nil })
  p:finish()
  if not r then step_fail("flatten", d.file .. ": " .. tostring(err)) end
  if fmt == "qcow2" then return self:flattened_qcow2(vm, d, out, r, t0) end
  local c = vhd.check(out)
  for _, pr in ipairs(c and c.problems or {}) do
    if type(pr) == "table" and pr.severity == "error" then
      step_fail("flatten", out .. ": check failed: " .. tostring(pr.message or pr.code))
    end
  end
  local h, herr = vhd.open(out)
  if not h then step_fail("flatten", herr) end
  local info = h:info()
  h:close()
  local vsize = info.footer and info.footer.current_size
  if d.size and vsize ~= d.size then
    step_fail("flatten", ("flattened virtual size %s differs from volumes.size %d"):format(tostring(vsize), d.size))
  end
  local st = sys.stat(out)
  self.timing.flatten = self.timing.flatten + (sys.clock() - t0)   -- flatten and its verification
  self:note_scratch(vm)
  local zf = json.array({})
  for _, z in ipairs(type(r.zero_filled) == "table" and r.zero_filled or {}) do
    zf[#zf + 1] = { sector = z.sector, count = z.count, reason = z.reason }
  end
  for _, z in ipairs(type(r.assumed_unallocated) == "table" and r.assumed_unallocated or {}) do
    zf[#zf + 1] = { sector = z.sector, count = z.count, reason = "assumed unallocated: " .. tostring(z.reason) }
  end
  if #zf > 0 then
    log.warn(("%s: %d damaged range(s) zero-filled (forced)"):format(d.name, #zf), { vm = vm.name })
  end
  return { file = out, virtual_size = vsize, bytes = st and st.size, zero_filled = zf }
end

-- Streams: each disk sent from its chain -------------------------------------------------------

--- What an upload reads for disk d: {file = path, zero_filled} flattened into --scratch (and
-- for a forced disk, whose zero-filled sectors must be listed before anything is sent), or
-- (the default) {open = fn -> salvage.stream, length = bytes, file = the --keep-disks copy}.
function Engine:source(vm, d)
  if self.scratch or d.force then return self:flatten(vm, d) end
  return self:stream_source(vm, d)
end

-- The chain is checked, and its output's exact length known, before anything is created:
-- vhd.stream refuses what flatten refuses. Each attempt of an upload opens a new stream.
function Engine:stream_source(vm, d)
  local vhd = self:flatten_checks(d)
  local fmt = { format = self:disk_format() }   -- qcow2 for a KVM zone
  local s, err = vhd.stream(d.file, fmt)
  if not s then step_fail("flatten", d.file .. ": " .. tostring(err)) end
  local length = s:length()
  s:close()
  local h, herr = vhd.open(d.file)
  if not h then step_fail("flatten", herr) end
  local vsize = h:info().footer.current_size
  h:close()
  if d.size and vsize ~= d.size then
    step_fail("flatten", ("virtual size %s of %s differs from volumes.size %d"):format(tostring(vsize), d.file, d.size))
  end
  local keep = self.opts.keep_disks and self:disk_file(vm, d) or nil
  if self.dry then
    self:act(vm, "stream", ("%s (%d bytes)%s"):format(d.file, length, keep and (" copy " .. keep) or ""))
  end
  local function open()
    local st, serr, scode = vhd.stream(d.file, fmt)
    if not st then return nil, d.file .. ": " .. tostring(serr), scode end
    if keep then
      sys.mkdir(self:disks_dir())
      local ok, terr, tcode = st:tee(keep)
      if not ok then
        st:close()
        return nil, terr, tcode
      end
    end
    return st
  end
  return { open = open, length = length, file = keep, chain = d.file }
end

-- The step's record of a finished upload; for a stream, what was sent.
local function uploaded(r, flat, sent)
  local rec = { id = r.id, zero_filled = flat.zero_filled }
  if type(sent) == "table" then rec.sha256, rec.bytes, rec.attempts = sent.sha256, sent.bytes, sent.attempts end
  return rec
end

-- Uploads: templates and volumes --------------------------------------------------------------

local ATTEMPTS = 3

-- Upload disk d (streamed, or its flattened file) as `kind` (Template or Volume) with
-- `params`; tagged as soon as the server made it. Returns the ready resource, the source and
-- what was sent (a stream: {sha256, bytes, attempts}), or nil after an ambiguous failure (the
-- caller looks it up again), or raises.
function Engine:upload(kind, vm, own, d, name, source, params)
  local flat = self:source(vm, d)
  self:check_parent()
  self:intend(vm, kind, source, name)
  local label = ("upload %s %s"):format(vm.name, kind == "Template" and "template" or name)
  local p = progress.new { label = label, total = flat.length, unit = "bytes" }
  -- timed here, not by the timed client: on_created's tagging and journaling count once, as
  -- themselves; a streamed upload (the chain read as it is sent) is its own category
  local raw = self.opts.client
  local fn = kind == "Template" and raw.upload_template or raw.upload_volume
  local t0, api0, jr0 = sys.clock(), self.timing.api, self.timing.journal
  local r, err = fn(raw, flat.open or flat.file, params, { progress = p:callback(), overwrite = true,
    filename = name .. "." .. self:disk_format(), on_created = function(id) return self:tag(kind, id, source) end })
  local spent = (sys.clock() - t0) - (self.timing.api - api0) - (self.timing.journal - jr0)
  if flat.open then self.timing.stream = self.timing.stream + spent else self.timing.api = self.timing.api + spent end
  p:finish()
  if r then
    if not flat.open then self:drop_disk(flat.file) end   -- a --keep-disks copy of a stream stays
    return r, flat, err
  end
  if cloud.ambiguous(err) then
    log.warn(("%s of %s ended without a clear answer (%s); looking it up by its tag"):format(label, name,
      cloud.errtext(err)), { vm = vm.name })
    return nil, flat
  end
  -- a refused upload leaves a dead entity behind: remove it now (or the next run does)
  pcall(self.ours, self, kind, vm, name, source, own)
  step_fail(cloud.KINDS[kind].step, cloud.errtext(err))
end

function Engine:template(vm, own)
  local root = vm.disks[1]
  local source = disk_source(root)
  return self:step(vm.id, "template", function()
    local name = vm.template.name
    for _ = 1, ATTEMPTS do
      local t = self:ours("Template", vm, name, source, own)
      if t and t.isready then
        self:drop_disk(self:disk_file(vm, root))
        return { id = t.id, reused = true }
      end
      local ostypeid = self:os_type_id(vm)
      self:act(vm, "upload template", ("%s (root disk %s)"):format(name, tostring(root.name)))
      if self.dry then
        self:source(vm, root)
        return nil
      end
      local r, flat, sent = self:upload("Template", vm, own, root, name, source, {
        name = name, displaytext = ("%s (recovered root disk of %s)"):format(name, vm.name),
        format = self:disk_format():upper(), hypervisor = self:hypervisor(), zoneid = self:zone_id(),
        ostypeid = ostypeid,
        account = own.account.name, domainid = own.domainid,
        requireshvm = vm.template.requires_hvm ~= false, passwordenabled = vm.template.password_enabled == true,
      })
      if r then return uploaded(r, flat, sent) end
    end
    step_fail("template", "no clear answer from the new cloud after " .. ATTEMPTS .. " attempts")
  end, function(data) return self:still_ours("Template", vm, vm.template.name, source, own, data.id) end)
end

function Engine:volume(vm, own, d)
  local source = disk_source(d)
  return self:step(vm.id, "volume:" .. tostring(d.id), function()
    local name = d.upload_name or d.name
    for _ = 1, ATTEMPTS do
      local v = self:ours("Volume", vm, name, source, own)
      if v and cloud.condition("Volume", v) == "ready" then
        self:drop_disk(self:disk_file(vm, d))
        return { id = v.id, reused = true }
      end
      self:act(vm, "upload volume", ("%s (disk %s)"):format(name, tostring(d.name)))
      if self.dry then
        self:source(vm, d)
        return nil
      end
      local r, flat, sent = self:upload("Volume", vm, own, d, name, source, {
        name = name, format = self:disk_format():upper(), zoneid = self:zone_id(), account = own.account.name,
        domainid = own.domainid,
      })
      if r then return uploaded(r, flat, sent) end
    end
    step_fail("volume", "no clear answer from the new cloud after " .. ATTEMPTS .. " attempts")
  end, function(data) return self:still_ours("Volume", vm, d.upload_name or d.name, source, own, data.id) end)
end

-- VMs -------------------------------------------------------------------------------

function Engine:deploy_params(vm, own, template_id)
  local params = {
    serviceofferingid = own.offering.id, zoneid = self:zone_id(), templateid = template_id,
    account = own.account.name, domainid = own.domainid, name = vm.hostname or M.hostname(vm.name),
    displayname = vm.display_name or vm.name,
    startvm = false,
  }
  local hook = self.policy.network_for
  local net = vm.network
  if type(hook) == "function" then net = hook(vm, own.account) or net end
  if type(net) == "table" then net = net.id end
  if net then params.networkids = net end
  local addr = self:addresses(vm)
  if addr then params.ipaddress, params.macaddress = addr.ip, addr.mac end
  return params
end

function Engine:deploy(vm, own, template_id)
  local source = vm_source(vm)
  local name = vm.hostname or M.hostname(vm.name)
  return self:step(vm.id, "vm", function()
    for _ = 1, ATTEMPTS do
      local existing = self:ours("UserVm", vm, name, source, own)
      if existing then return { id = existing.id, reused = true } end
      self:act(vm, "deploy VM", ("%s (%s) offering %s, stopped"):format(name, vm.display_name, own.offering.name))
      if self.dry then return nil end
      self:intend(vm, "UserVm", source, name)
      local r, err = self.client:async("deployVirtualMachine", self:deploy_params(vm, own, template_id))
      if r then
        local v = r.virtualmachine or r
        local ok, terr = self:tag("UserVm", v.id, source)
        if not ok and not cloud.ambiguous(terr) then step_fail("vm", cloud.errtext(terr)) end
        if ok then return { id = v.id } end
      elseif not cloud.ambiguous(err) then
        -- a failed deployment may leave a VM in Error: it is removed now (or by the next run)
        pcall(self.ours, self, "UserVm", vm, name, source, own)
        step_fail("vm", cloud.errtext(err))
      else
        log.warn(("deploying %s ended without a clear answer (%s); looking it up"):format(name,
          cloud.errtext(err)), { vm = vm.name })
      end
    end
    step_fail("vm", "no clear answer from the new cloud after " .. ATTEMPTS .. " attempts")
  end, function(data) return self:alive("UserVm", data.id, own) ~= nil end)
end

-- The volume `vol_id` as the new cloud lists it now (after its pending jobs).
function Engine:volume_now(vol_id)
  self:settle(vol_id)
  local list = self:list("listVolumes", { id = vol_id, listall = true }, { "volume" })
  return list and list[1]
end

function Engine:attach(vm, d, vol_id, vm_id, deviceid)
  return self:step(vm.id, "attach:" .. tostring(d.id), function()
    for _ = 1, ATTEMPTS do
      if not self.dry then
        local v = self:volume_now(vol_id)
        if v and v.virtualmachineid == vm_id then
          return { deviceid = v.deviceid or deviceid, vm = vm_id, reused = true }
        end
      end
      self:act(vm, "attach volume", ("%s as device %d"):format(d.upload_name or d.name, deviceid))
      if self.dry then return nil end
      local r, err = self.client:async("attachVolume", { id = vol_id, virtualmachineid = vm_id, deviceid = deviceid })
      if r then return { deviceid = deviceid, vm = vm_id } end
      if not cloud.ambiguous(err) then step_fail("attach", cloud.errtext(err)) end
    end
    step_fail("attach", "no clear answer from the new cloud after " .. ATTEMPTS .. " attempts")
  end, function(data)
    local v = self:volume_now(vol_id)
    return v ~= nil and v.virtualmachineid == vm_id and (data.vm == nil or data.vm == vm_id)
  end)
end

function Engine:start(vm, vm_id)
  return self:step(vm.id, "start", function()
    self:act(vm, "start VM", vm.name)
    if self.dry then return nil end
    for _ = 1, ATTEMPTS do
      local r, err = self.client:async("startVirtualMachine", { id = vm_id })
      if r then return { state = "Running", vm = vm_id } end
      if not cloud.ambiguous(err) then step_fail("start", cloud.errtext(err)) end
      self:settle(vm_id)
      local l = self:list("listVirtualMachines", { id = vm_id, listall = true }, { "virtualmachine" })
      if l and l[1] and l[1].state == "Running" then return { state = "Running", vm = vm_id } end
    end
    step_fail("start", "no clear answer from the new cloud after " .. ATTEMPTS .. " attempts")
  end, function(data) return data.vm == nil or data.vm == vm_id end)
end

-- Device ids for data disks: the old one when usable, else 1, 2, 4, 5, ... (3 is the CD-ROM).
local function device_ids(disks)
  local used, out = {}, {}
  for _, d in ipairs(disks) do
    local id = d.device_id
    if math.type(id) == "integer" and id >= 1 and id ~= 3 and not used[id] then
      used[id] = true
      out[d] = id
    end
  end
  local next_id = 1
  for _, d in ipairs(disks) do
    if not out[d] then
      while used[next_id] or next_id == 3 do next_id = next_id + 1 end
      used[next_id] = true
      out[d] = next_id
    end
  end
  return out
end

local function split_disks(vm)
  local data_disks, left_out = {}, json.array({})
  for i = 2, #vm.disks do
    local d = vm.disks[i]
    if d.recoverable ~= false then
      data_disks[#data_disks + 1] = d
    else
      local why = {}
      for _, p in ipairs(d.problems or {}) do if p.severity == "error" then why[#why + 1] = p.message end end
      left_out[#left_out + 1] = { old_id = d.id, name = d.name, reason = table.concat(why, "; ") }
    end
  end
  return data_disks, left_out
end

-- Zero-filled ranges of forced disks, for the report.
local function zero_filled(into, d, rec)
  for _, z in ipairs(rec and rec.zero_filled or {}) do
    into[#into + 1] = { disk = d.name, sector = z.sector, count = z.count, reason = z.reason }
  end
end

--- Everything after the owners for one VM. own: result of owners().
function Engine:machine(vm, own)
  local t_start, api0, flat0, jr0 = sys.clock(), self.timing.api, self.timing.flatten, self.timing.journal
  local str0 = self.timing.stream
  local data_disks, left_out = split_disks(vm)
  local zf = json.array({})
  if not self.dry then self:remove_stale(vm) end
  self:check_parent()
  local ids = device_ids(data_disks)
  local tpl, dep
  local volumes = {}
  if self.opts.kvm_primary then
    -- zero-copy: the disks are written into the pool and adopted there (salvage.recover.kvm)
    dep, volumes = self:machine_adopt(vm, own, data_disks, ids)
    data_disks = {}
  else
    tpl = self:template(vm, own)
    zero_filled(zf, vm.disks[1], tpl)
    self:check_parent()
    dep = self:deploy(vm, own, tpl and tpl.id)
  end
  for _, d in ipairs(data_disks) do
    self:check_parent()
    local v = self:volume(vm, own, d)
    zero_filled(zf, d, v)
    self:check_parent()
    if v and dep then self:attach(vm, d, v.id, dep.id, ids[d]) end
    if self.dry and not (v and dep) then
      self:act(vm, "attach volume", ("%s as device %d"):format(d.upload_name or d.name, ids[d]))
    end
    volumes[#volumes + 1] = { old_id = d.id, name = d.upload_name or d.name, new_id = v and v.id or json.null,
      deviceid = ids[d], size = d.size, sha256 = v and v.sha256, bytes = v and v.bytes }
  end
  if vm.start then
    self:check_parent()
    self:start(vm, dep and dep.id)
  end
  local result = {
    new_id = dep and dep.id or json.null, template_id = tpl and tpl.id or json.null,
    template_sha256 = tpl and tpl.sha256, template_bytes = tpl and tpl.bytes,
    volumes = json.array(volumes), left_out = left_out, offering = own.offering.name, offering_id = own.offering.id,
    account_id = own.account.id, domainid = own.domainid, zero_filled = zf, hostname = vm.hostname,
  }
  local total = sys.clock() - t_start
  local api, flat, jr = self.timing.api - api0, self.timing.flatten - flat0, self.timing.journal - jr0
  local str = self.timing.stream - str0
  -- the "done" record's own fsync is not counted (it is written after this)
  result.timing = { total = total, api = api, flatten = flat, stream = str, journal = jr,
    engine = math.max(0, total - api - flat - str - jr) }
  if not self.dry then self.journal:record(vm.id, "done", result) end
  return result
end

-- Selection, owners, workers ----------------------------------------------------------------

local function selected(plan, only)
  if not only or #only == 0 then return plan.vms end
  local want = {}
  for _, o in ipairs(only) do want[tostring(o)] = true end
  local out = {}
  for _, vm in ipairs(plan.vms) do
    if want[tostring(vm.id)] or want[vm.name] or (vm.uuid and want[vm.uuid]) then out[#out + 1] = vm end
  end
  return out
end
M.selected = selected

-- Run fn(), turning step errors (and unexpected errors) into a failure record.
-- A stop (SIGINT/SIGTERM) is not a failure: it goes on up.
local function attempt(default_step, fn)
  local ok, err = xpcall(fn, function(e)
    local stop = cloud.stop_of(e)
    if stop then return stop end
    if getmetatable(e) == StepError then return e end
    return setmetatable({ step = default_step, message = tostring(e), traceback = debug.traceback(tostring(e), 2) },
      StepError)
  end)
  if ok then return true end
  if cloud.is_stop(err) then error(err, 0) end
  return false, err
end

--- A VM's failure: logged and journaled; with the run's status and tick, recorded and counted too.
function Engine:fail(vm, err, status, tick)
  if err.traceback then log.debug("unexpected error", { vm = vm.name, traceback = err.traceback }) end
  log.error("recovery failed", { vm = vm.name, step = err.step, error = err.message })
  if not self.dry and self.journal then self.journal:fail(vm.id, err.step, err.message) end
  if status then
    status[vm.id] = { step = err.step, error = err.message }
    tick(vm, "FAILED at " .. err.step)
  end
end

--- One VM inside a worker process: owners come from the journal (the parent
-- ensured them), the rest is done here, under the VM's lock.
function Engine:run_worker(vm_id)
  self:open_journal()
  local vm
  for _, v in ipairs(self.plan.vms) do
    if tostring(v.id) == tostring(vm_id) then vm = v end
  end
  if not vm then error("recover: VM " .. tostring(vm_id) .. " is not in the plan", 0) end
  local ok, err = attempt("owners", function()
    self:lock_vm(vm)
    local own = self:owners(vm)
    self:machine(vm, own)
  end)
  self:unlock_vm(vm)
  if not ok then
    self:fail(vm, err)
    return false
  end
  return true
end

-- The cloud this workdir belongs to: recorded on first use, refused when another.
function Engine:check_cloud()
  local here = { url = self.client.url, zoneid = self:zone_id(), zone = self.opts.zone }
  local rec = self.journal:get(nil, "cloud")
  if rec and (rec.zoneid ~= here.zoneid or (rec.url and here.url and rec.url ~= here.url)) then
    if not self.opts.switch_cloud then
      return ("%s was used against another cloud (API %s, zone id %s); this run talks to API %s, zone id %s. "
        .. "Use another --workdir, or --switch-cloud to check every journaled id in this cloud"):format(
        self.workdir, tostring(rec.url), tostring(rec.zoneid), tostring(here.url), tostring(here.zoneid))
    end
    log.warn("the workdir was used against another cloud; every journaled id is checked in this one")
  end
  if not self.dry and (not rec or rec.zoneid ~= here.zoneid or rec.url ~= here.url) then
    self.journal:record(nil, "cloud", here)
  end
end

-- Is the VM recovered, and is its VM still in the new cloud?
function Engine:still_done(vm)
  local done = self.journal:get(vm.id, "done")
  if not done then return false end
  if self.dry then return true end
  local rows = self:list("listVirtualMachines", { id = done.new_id, listall = true }, { "virtualmachine" })
  for _, r in ipairs(rows or {}) do
    if r.id == done.new_id and cloud.condition("UserVm", r) == "ready" then return true end
  end
  if rows then
    self:vanished("VM " .. vm.name, done.new_id)
    return false
  end
  return true   -- the cloud cannot tell now: the next run checks again
end

-- Before anything: journal damage, the cloud, preflight. Returns an error message or nil.
function Engine:prepare(vms)
  local bad, lines = self.journal:unreadable()
  self.journal_unreadable = bad
  if bad > 0 then
    local w = ("journal: %d unreadable line(s) ignored (line %s)"):format(bad, table.concat(lines, ", ", 1,
      math.min(#lines, 10)))
    log.warn(w)
    self.warnings[#self.warnings + 1] = w
  end
  local todo = {}
  for _, vm in ipairs(vms) do
    if vm.recoverable and not self.journal:get(vm.id, "done") then todo[#todo + 1] = vm end
  end
  local done = false
  for _, vm in ipairs(vms) do done = done or (vm.recoverable and self.journal:get(vm.id, "done") ~= nil) end
  -- nothing to do and nothing to check in the new cloud: no need to reach it
  if #todo == 0 and not done then return nil end
  local perr, unreadable = self:preflight(todo)
  if perr and not (unreadable and self.opts.skip_unreadable) then
    return perr .. (unreadable and "; --skip-unreadable recovers the other VMs" or "")
  end
  -- asked for: the VMs with a disk that cannot be read fail, each by name, before anything is made
  self.unreadable = unreadable or {}
  for _, vm in ipairs(todo) do
    if self.unreadable[vm.id] then
      local w = ("%s: not recovered, disk file(s) cannot be read: %s"):format(vm.name, self.unreadable[vm.id])
      log.warn(w, { vm = vm.name })
      self.warnings[#self.warnings + 1] = w
    end
  end
  return self:check_cloud()
end

--- run(plan, opts) -> report. See the module header for opts. Raises
-- "recover: ..." for what concerns every VM (preflight), a cloud.Stop on SIGINT/SIGTERM.
function M.run(plan, opts)
  local self = M.new(plan, opts)
  if not self.workdir then error("recover: a work directory is needed", 0) end
  if not self.dry then sys.mkdir(self.workdir) end
  local st = sys.stat(self.workdir)
  if not self.dry and (not st or st.type ~= "directory") then
    error("recover: cannot use " .. self.workdir .. " as work directory", 0)
  end
  if opts.worker_vm then
    return self:run_worker(opts.worker_vm)
  end
  if not self.dry then self:lock() end
  local ok, r = xpcall(function() return self:run_all(plan, opts) end, function(e)
    return cloud.stop_of(e) or e
  end)
  if not ok then self:stop_workers() end   -- a stop, or a failure of the run itself: no worker goes on
  if not self.dry then self:unlock() end
  if not ok then error(r, 0) end
  return r
end

-- The owners of every VM to do, in this process: {todo, owners}.
function Engine:ensure_all(vms, status, tick)
  local todo, owners = {}, {}
  for _, vm in ipairs(vms) do
    if not vm.recoverable then
      local why = {}
      for _, p in ipairs(vm.problems or {}) do if p.severity == "error" then why[#why + 1] = p.message end end
      status[vm.id] = { step = "plan", error = table.concat(why, "; ") }
      tick(vm, "not recoverable")
    elseif not self.dry and self:still_done(vm) then
      tick(vm, "already recovered")
    elseif self.unreadable and self.unreadable[vm.id] then
      status[vm.id] = { step = "preflight", error = "disk file(s) cannot be read: " .. self.unreadable[vm.id] }
      tick(vm, "FAILED at preflight")
    else
      local t0 = sys.clock()
      local ok, err = attempt("owners", function() owners[vm.id] = self:owners(vm) end)
      self.owners_time = (self.owners_time or 0) + (sys.clock() - t0)
      if ok then
        todo[#todo + 1] = vm
      else
        self:fail(vm, err, status, tick)
      end
    end
  end
  return todo, owners
end

function Engine:run_here(todo, owners, status, tick)
  for _, vm in ipairs(todo) do
    local ok, err = attempt("vm", function()
      if not self.dry then self:lock_vm(vm) end
      self.machine(self, vm, owners[vm.id])
    end)
    if not self.dry then self:unlock_vm(vm) end
    if ok then
      tick(vm, self.dry and "would be recovered" or "recovered")
    else
      self:fail(vm, err, status, tick)
    end
  end
end

function Engine:run_workers(todo, status, tick)
  local names = {}
  for _, vm in ipairs(todo) do names[tostring(vm.id)] = vm.name end
  -- Per-VM progress from the workers' journal records, as they land.
  local function follow()
    for _, r in ipairs(self.journal:tail()) do
      if r.vm ~= nil and r.step ~= "done" and names[tostring(r.vm)] then
        if r.failed then
          log.warn("step failed", { vm = names[tostring(r.vm)], step = r.step, error = r.failed })
        elseif not r.step:match("^intent:") and r.step ~= "scratch" then
          local id = type(r.data) == "table" and r.data.id or nil
          log.info("step done", { vm = names[tostring(r.vm)], step = r.step, id = id })
        end
      end
    end
  end
  self.follow = follow
  self:run_pool(todo, status, function(vm)
    follow()
    if self.journal:get(vm.id, "done") then tick(vm, "recovered") else tick(vm, "FAILED") end
  end)
  self.follow = nil
  self.journal:reload()
end

function Engine:run_all(plan, opts)
  local started = sys.clock()
  self:open_journal()
  local vms = selected(plan, opts.only)
  local perr = self:prepare(vms)
  if perr then error("recover: " .. perr, 0) end
  local status = {}     -- vm.id -> {step, error} for failures of this run
  local overall = progress.new { label = "recover", total = #vms, unit = "items" }
  local finished = 0
  local function tick(vm, what)
    finished = finished + 1
    log.line(("[%d/%d] %s: %s"):format(finished, #vms, vm.name, what),
      { vm = vm.name, done = finished, total = #vms, status = what })
    overall:update(finished)
  end
  local todo, owners = self:ensure_all(vms, status, tick)
  local workers = opts.workers or 1
  if workers > 1 and not self.dry and opts.worker_argv and #todo > 1 then
    self:run_workers(todo, status, tick)
  else
    self:run_here(todo, owners, status, tick)
  end
  overall:finish()
  local report = self:report(vms, status, sys.clock() - started)
  if not self.dry then
    sys.write_atomic(self.workdir .. "/report.json", json.pretty(report))
    sys.chmod(self.workdir .. "/report.json", tonumber("600", 8))
  end
  return report
end

return M
