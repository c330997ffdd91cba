--- Recovery: carry the VMs of a plan into the new cloud, step by step, resumable.
--
--   local recover = require "salvage.recover"
--   local report = recover.run(plan, {
--     client = api_client, zone = "Zone1", workdir = "/var/tmp/rec",
--     workers = 4, dry_run = false, only = {"ppvm2"}, policy = pol,
--     worker_argv = function(vm_id) return {...} end,   -- how to start a worker process
--   })
--
-- Per VM, each step recorded in DIR/journal.jsonl once done (salvage.journal):
--   flatten:<disk>  the chain flattened into DIR/disks/, checked, virtual size = volumes.size
--   (estate-wide) domain:<path>, account:<path><name>, offering:<cpu>/<speed>/<ram>
--   template        the root disk uploaded as a template, ready
--   vm              deployed (stopped) with its old name and display name
--   volume:<disk>   each data disk uploaded as a volume
--   attach:<disk>   attached in device order
--   start           started, when the policy says so
--   done            the VM is recovered
-- Before creating anything the engine looks it up in the new cloud, so a step that
-- was done but not recorded (kill -9 between the two) is found, not repeated.
--
-- Workers: Lua is single-threaded, so `workers > 1` runs each VM's machine steps in
-- a child process (`worker_argv`) — flatten of one VM overlaps uploads of another.
-- Estate-wide resources (domains, accounts, offerings) are ensured first, in the
-- parent, one at a time: two workers never race to create the same account.
local sys = require "salvage.sys"
local json = require "salvage.json"
local log = require "salvage.log"
local progress = require "salvage.progress"
local journal = require "salvage.journal"

local M = {}

M.STEPS = { "flatten", "domain", "account", "offering", "template", "vm", "volume", "attach", "start", "done" }

local cloud = require "salvage.recover.cloud"
local pool = require "salvage.recover.pool"
local kvm = require "salvage.recover.kvm"
local reportlib = require "salvage.recover.report"

local StepError, step_fail = cloud.StepError, cloud.step_fail
local sleep = cloud.sleep
local BROKEN = cloud.BROKEN_STATES

M.errtext = cloud.errtext
M.random_password = cloud.random_password
M.hostname = cloud.hostname
M.BROKEN_STATES = cloud.BROKEN_STATES
M.table = reportlib.table
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
  local timing = { api = 0, flatten = 0, journal = 0 }
  local self = setmetatable({
    plan = plan, opts = opts, client = timed_client(opts.client, timing), timing = timing, policy = opts.policy or {},
    dry = opts.dry_run and true or false, workdir = opts.workdir,
    actions = {}, cache = {}, poll = opts.poll_interval or 0.2,
    wait_timeout = opts.wait_timeout or 3600,
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
  local j, err = journal.open(self.workdir .. "/journal.jsonl")
  if not j then error("recover: " .. err, 0) end
  sys.chmod(self.workdir .. "/journal.jsonl", tonumber("600", 8))
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

-- Either the step's journal record, or run fn() -> data and record it. In a dry run
-- nothing is recorded (and fn is expected to create nothing).
function Engine:step(vm_id, step, fn)
  local j = self.journal
  local done = j and j:get(vm_id, step)
  if done then return done, true end
  local data = fn()
  if data == nil then return nil end
  if not self.dry and j then j:record(vm_id, step, data) end
  return data, false
end

function Engine:check_parent()
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

-- Machine steps (per VM) -------------------------------------------------------------------

function Engine:disk_file(vm, d)
  return ("%s/disks/%s-%s.%s"):format(self.workdir, tostring(vm.id), tostring(d.id), self:disk_format())
end

function Engine:flatten(vm, d)
  local out = self:disk_file(vm, d)
  local vhd = self.vhd
  if self.dry then
    if not vhd then step_fail("flatten", "the VHD engine (salvage.vhd) is not available") end
    if not d.file then step_fail("flatten", "disk " .. tostring(d.name) .. " has no source file") end
    local r = vhd.check(d.file)
    for _, p in ipairs(r and r.problems or {}) do
      if type(p) == "table" and (p.blocks_flatten or (p.blocks_flatten == nil and p.severity == "error")) then
        step_fail("flatten", (p.file or d.file) .. ": " .. tostring(p.message or p.code))
      end
    end
    self:act(vm, "flatten", ("%s -> %s"):format(d.file, out))
    return { file = out }
  end
  return self:step(vm.id, "flatten:" .. tostring(d.id), function()
    if not vhd then step_fail("flatten", "the VHD engine (salvage.vhd) is not available") end
    if not d.file then step_fail("flatten", "disk " .. tostring(d.name) .. " has no source file") end
    sys.mkdir(self.workdir .. "/disks")
    local p = progress.new { label = ("flatten %s %s"):format(vm.name, d.name), total = d.size, unit = "bytes" }
    local t0 = sys.clock()
    -- A file already under `out` with no journal record is the work of a run
    -- killed between rename and record: it is ours, in our workdir, and unproven,
    -- so it is redone (flatten still never replaces a file of the chain).
    local fmt = self:disk_format()
    local r, err = vhd.flatten(d.file, out, { format = fmt, progress = p:callback(), overwrite = true })
    p:finish()
    if not r then step_fail("flatten", d.file .. ": " .. tostring(err)) end
    if fmt == "qcow2" then
      -- the writer is exact by construction (fuzzed, qemu-img-checked); the size is what is left to check
      if d.size and r.virtual_size ~= d.size then
        step_fail("flatten", ("qcow2 virtual size %d differs from volumes.size %d"):format(r.virtual_size, d.size))
      end
      self.timing.flatten = self.timing.flatten + (sys.clock() - t0)
      return { file = out, virtual_size = r.virtual_size, bytes = r.bytes_written, format = fmt }
    end
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
    return { file = out, virtual_size = vsize, bytes = st and st.size }
  end)
end

function Engine:template(vm, own, file)
  return self:step(vm.id, "template", function()
    local name = vm.template.name
    local existing = self:find_template(name, own)
    if existing then
      if existing.isready then return { id = existing.id, reused = true } end
      if not BROKEN[existing.status] and not BROKEN[existing.state] then
        local t = self:wait_template(existing.id, own)
        if t then return { id = t.id, reused = true } end
      end
      -- A dead upload from a killed run: remove it so the name stays unique.
      if not self.dry then
        log.warn("removing a failed upload left by an earlier run", { template = existing.id, vm = vm.name })
        self.client:call("deleteTemplate", { id = existing.id, zoneid = self:zone_id() })
      end
    end
    local ostypeid = self:os_type_id(vm)
    self:act(vm, "upload template", ("%s (%s)"):format(name, file or "?"))
    if self.dry then return nil end
    local p = progress.new { label = ("upload %s template"):format(vm.name), unit = "bytes" }
    local t, err = self.client:upload_template(file, {
      name = name, displaytext = ("%s (recovered root disk of %s)"):format(name, vm.name),
      format = self:disk_format():upper(), hypervisor = self:hypervisor(), zoneid = self:zone_id(), ostypeid = ostypeid,
      account = own.account.name, domainid = own.domainid,
      requireshvm = vm.template.requires_hvm ~= false, passwordenabled = vm.template.password_enabled == true,
    }, { progress = p:callback(), overwrite = true })
    p:finish()
    if not t then step_fail("template", M.errtext(err)) end
    return { id = t.id }
  end)
end

function Engine:deploy(vm, own, template_id)
  return self:step(vm.id, "vm", function()
    if not self.dry then
      local existing = self:find_vm(vm, own)
      if existing then return { id = existing.id, reused = true } end
    end
    self:act(vm, "deploy VM", ("%s (%s) offering %s, stopped"):format(vm.name, vm.display_name, own.offering.name))
    if self.dry then return nil end
    local params = {
      serviceofferingid = own.offering.id, zoneid = self:zone_id(), templateid = template_id,
      account = own.account.name, domainid = own.domainid, name = M.hostname(vm.name),
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
    local r, err = self.client:async("deployVirtualMachine", params)
    if not r then step_fail("vm", M.errtext(err)) end
    local v = r.virtualmachine or r
    return { id = v.id }
  end)
end

function Engine:volume(vm, own, d, file, vm_new_id)
  return self:step(vm.id, "volume:" .. tostring(d.id), function()
    local name = d.upload_name or d.name
    if not self.dry then
      local existing = self:find_volume(name, own, vm_new_id, tostring(vm.id) .. ":" .. tostring(d.id))
      local deadline = sys.clock() + self.wait_timeout
      -- An upload a killed run finished sending is still being installed: wait for it.
      while existing and (existing.state == "UploadInProgress" or existing.state == "Uploading"
          or existing.state == "UploadOp") and sys.clock() < deadline do
        sleep(self.poll)
        local l = self:list("listVolumes", { id = existing.id, listall = true }, { "volume" })
        existing = l and l[1]
      end
      if existing and (existing.state == "Uploaded" or existing.state == "Ready") then
        return { id = existing.id, reused = true }
      end
    end
    self:act(vm, "upload volume", ("%s (%s)"):format(name, file or "?"))
    if self.dry then return nil end
    self.journal:record(vm.id, "volume-intent:" .. tostring(d.id),
      { name = name, owner = own.domainid .. "/" .. own.account.name })
    local p = progress.new { label = ("upload %s %s"):format(vm.name, name), unit = "bytes" }
    local v, err = self.client:upload_volume(file, {
      name = name, format = self:disk_format():upper(), zoneid = self:zone_id(), account = own.account.name,
      domainid = own.domainid,
    }, { progress = p:callback(), overwrite = true })
    p:finish()
    if not v then step_fail("volume", M.errtext(err)) end
    return { id = v.id }
  end)
end

function Engine:attach(vm, d, vol_id, vm_id, deviceid)
  return self:step(vm.id, "attach:" .. tostring(d.id), function()
    if not self.dry then
      self:settle(vol_id)
      local list = self:list("listVolumes", { id = vol_id, listall = true }, { "volume" })
      local v = list and list[1]
      if v and v.virtualmachineid == vm_id then return { deviceid = v.deviceid or deviceid, reused = true } end
    end
    self:act(vm, "attach volume", ("%s as device %d"):format(d.upload_name or d.name, deviceid))
    if self.dry then return nil end
    local r, err = self.client:async("attachVolume", { id = vol_id, virtualmachineid = vm_id, deviceid = deviceid })
    if not r then step_fail("attach", M.errtext(err)) end
    return { deviceid = deviceid }
  end)
end

function Engine:start(vm, vm_id)
  return self:step(vm.id, "start", function()
    self:act(vm, "start VM", vm.name)
    if self.dry then return nil end
    local r, err = self.client:async("startVirtualMachine", { id = vm_id })
    if not r then step_fail("start", M.errtext(err)) end
    return { state = "Running" }
  end)
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

--- Everything after the owners for one VM. own: result of owners().
function Engine:machine(vm, own)
  local t_start, api0, flat0, jr0 = sys.clock(), self.timing.api, self.timing.flatten, self.timing.journal
  local root = vm.disks[1]
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
  self:check_parent()
  local ids = device_ids(data_disks)
  local tpl, dep
  local volumes, flats = {}, {}
  if self.opts.kvm_primary then
    dep, volumes = self:machine_adopt(vm, own, data_disks, ids)
    data_disks = {}
  else
    local flat_root = self:flatten(vm, root)
    for _, d in ipairs(data_disks) do
      self:check_parent()
      flats[d] = self:flatten(vm, d)
    end
    self:check_parent()
    tpl = self:template(vm, own, flat_root.file)
    self:check_parent()
    dep = self:deploy(vm, own, tpl and tpl.id)
  end
  for _, d in ipairs(data_disks) do
    self:check_parent()
    local v = self:volume(vm, own, d, flats[d].file, dep and dep.id)
    self:check_parent()
    if v and dep then self:attach(vm, d, v.id, dep.id, ids[d]) end
    if self.dry then self:act(vm, "attach volume", ("%s as device %d"):format(d.upload_name or d.name, ids[d])) end
    volumes[#volumes + 1] = { old_id = d.id, name = d.upload_name or d.name, new_id = v and v.id or json.null,
      deviceid = ids[d], size = d.size }
  end
  if vm.start then
    self:check_parent()
    self:start(vm, dep and dep.id)
  end
  local result = {
    new_id = dep and dep.id or json.null, template_id = tpl and tpl.id or json.null,
    volumes = json.array(volumes), left_out = left_out, offering = own.offering.name, offering_id = own.offering.id,
    account_id = own.account.id, domainid = own.domainid,
  }
  local total = sys.clock() - t_start
  local api, flat, jr = self.timing.api - api0, self.timing.flatten - flat0, self.timing.journal - jr0
  -- the "done" record's own fsync is not counted (it is written after this)
  result.timing = { total = total, api = api, flatten = flat, journal = jr,
    engine = math.max(0, total - api - flat - jr) }
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
local function attempt(default_step, fn)
  local ok, err = xpcall(fn, function(e)
    if getmetatable(e) == StepError then return e end
    return setmetatable({ step = default_step, message = tostring(e), traceback = debug.traceback(tostring(e), 2) },
      StepError)
  end)
  if ok then return true end
  return false, err
end

function Engine:fail(vm, err)
  if err.traceback then log.debug("unexpected error", { vm = vm.name, traceback = err.traceback }) end
  log.error("recovery failed", { vm = vm.name, step = err.step, error = err.message })
  if not self.dry and self.journal then self.journal:fail(vm.id, err.step, err.message) end
end

--- One VM inside a worker process: owners come from the journal (the parent
-- ensured them), the rest is done here.
function Engine:run_worker(vm_id)
  self:open_journal()
  local vm
  for _, v in ipairs(self.plan.vms) do
    if tostring(v.id) == tostring(vm_id) then vm = v end
  end
  if not vm then error("recover: VM " .. tostring(vm_id) .. " is not in the plan", 0) end
  local ok, err = attempt("owners", function()
    local own = self:owners(vm)
    self:machine(vm, own)
  end)
  if not ok then
    self:fail(vm, err)
    return false
  end
  return true
end

--- run(plan, opts) -> report. See the module header for opts.
function M.run(plan, opts)
  local self = M.new(plan, opts)
  if not self.workdir then error("recover: a work directory is needed", 0) end
  sys.mkdir(self.workdir)
  local st = sys.stat(self.workdir)
  if not st or st.type ~= "directory" then error("recover: cannot use " .. self.workdir .. " as work directory", 0) end
  if opts.worker_vm then
    return self:run_worker(opts.worker_vm)
  end
  local started = sys.clock()
  if not self.dry then
    self:lock()
    self:reap_orphans()
  end
  self:open_journal()
  if self.dry then
    -- A dry run reads the journal (what is done) but never writes it.
    self.journal.record = function(_, _, _, data) return data end
    self.journal.fail = function() end
  end
  local vms = selected(plan, opts.only)
  local status = {}     -- vm.id -> {step, error} for failures of this run
  local todo = {}
  local owners = {}
  local overall = progress.new { label = "recover", total = #vms, unit = "items" }
  local finished = 0
  local function tick(vm, what)
    finished = finished + 1
    if not log.quiet() then
      io.stderr:write(("[%d/%d] %s: %s\n"):format(finished, #vms, vm.name, what))
    end
    overall:update(finished)
  end
  for _, vm in ipairs(vms) do
    if not vm.recoverable then
      local why = {}
      for _, p in ipairs(vm.problems or {}) do if p.severity == "error" then why[#why + 1] = p.message end end
      status[vm.id] = { step = "plan", error = table.concat(why, "; ") }
      tick(vm, "not recoverable")
    elseif not self.dry and self.journal:get(vm.id, "done") then
      tick(vm, "already recovered")
    else
      local t0 = sys.clock()
      local ok, err = attempt("owners", function()
        self:zone_id()
        owners[vm.id] = self:owners(vm)
      end)
      self.owners_time = (self.owners_time or 0) + (sys.clock() - t0)
      if ok then
        todo[#todo + 1] = vm
      else
        self:fail(vm, err)
        status[vm.id] = { step = err.step, error = err.message }
        tick(vm, "FAILED at " .. err.step)
      end
    end
  end
  local workers = opts.workers or 1
  if workers > 1 and not self.dry and opts.worker_argv and #todo > 1 then
    local names = {}
    for _, vm in ipairs(todo) do names[tostring(vm.id)] = vm.name end
    -- Per-VM progress from the workers' journal records, as they land.
    local function follow()
      for _, r in ipairs(self.journal:tail()) do
        if r.vm ~= nil and r.step ~= "done" and names[tostring(r.vm)] then
          if r.failed then
            log.warn("step failed", { vm = names[tostring(r.vm)], step = r.step, error = r.failed })
          elseif not r.step:match("^volume%-intent") then
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
  else
    for _, vm in ipairs(todo) do
      local ok, err = attempt("vm", function() self.machine(self, vm, owners[vm.id]) end)
      if ok then
        tick(vm, self.dry and "would be recovered" or "recovered")
      else
        self:fail(vm, err)
        status[vm.id] = { step = err.step, error = err.message }
        tick(vm, "FAILED at " .. err.step)
      end
    end
  end
  overall:finish()
  local report = self:report(vms, status, sys.clock() - started)
  if not self.dry then
    sys.write_atomic(self.workdir .. "/report.json", json.pretty(report))
    sys.chmod(self.workdir .. "/report.json", tonumber("600", 8))
    self:unlock()
  end
  return report
end

return M
