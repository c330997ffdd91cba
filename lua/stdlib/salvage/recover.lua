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
local columns = require "salvage.columns"
local json = require "salvage.json"
local log = require "salvage.log"
local progress = require "salvage.progress"
local journal = require "salvage.journal"
local planlib = require "salvage.plan"

local M = {}

M.STEPS = { "flatten", "domain", "account", "offering", "template", "vm", "volume", "attach", "start", "done" }

-- Errors ----------------------------------------------------------------------

-- A step failure carries the step name and the server's words.
local StepError = {}
StepError.__index = StepError
StepError.__tostring = function(e) return e.step .. ": " .. e.message end

local function step_fail(step, message)
  error(setmetatable({ step = step, message = tostring(message) }, StepError), 0)
end

--- Text of an API error object or message.
function M.errtext(err)
  if type(err) == "table" then
    local t = err.errortext or err.message or err.error or json.encode(err)
    if err.errorcode then t = ("%s (%s)"):format(t, tostring(err.errorcode)) end
    return log.scrub(t)
  end
  return log.scrub(tostring(err))
end

-- Call the API; on failure raise a step error with the server's text.
local function must(step, obj, err)
  if obj == nil then step_fail(step, M.errtext(err)) end
  return obj
end

-- Small helpers ------------------------------------------------------------------

local function lower(s) return s and tostring(s):lower() or nil end

local function first_list(obj, keys)
  if type(obj) ~= "table" then return {} end
  if obj[1] ~= nil then return obj end
  for _, k in ipairs(keys) do
    if type(obj[k]) == "table" then return obj[k] end
  end
  return {}
end

local function random_password()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(18) or tostring(sys.clock()) .. tostring(sys.getpid())
  if f then f:close() end
  local alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
  local out = {}
  for i = 1, 18 do
    local b = bytes:byte((i - 1) % #bytes + 1)
    local k = b % #alphabet + 1
    out[i] = alphabet:sub(k, k)
  end
  return table.concat(out)
end
M.random_password = random_password

local function sleep(s) if s > 0 then sys.sleep(s) end end

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

-- Lookups in the new cloud --------------------------------------------------------

function Engine:list(cmd, params, keys)
  local r, err = self.client:list(cmd, params)
  if r == nil then return nil, err end
  return first_list(r, keys or {})
end

function Engine:zone_id()
  if self.cache.zone then return self.cache.zone end
  local z = self.opts.zone
  if z == nil then step_fail("zone", "no zone given (--zone)") end
  local zones = must("zone", self:list("listZones", {}, { "zone" }))
  for _, zone in ipairs(zones) do
    if zone.id == z or zone.name == z then
      self.cache.zone = zone.id
      return zone.id
    end
  end
  step_fail("zone", ("zone '%s' not found in the new cloud"):format(z))
end

function Engine:os_type_id(vm)
  local want = vm.os_type
  if not self.cache.ostypes then
    self.cache.ostypes = must("template", self:list("listOsTypes", {}, { "ostype" }))
  end
  local fallback
  for _, o in ipairs(self.cache.ostypes) do
    if want and lower(o.description) == lower(want) then return o.id, o.description end
    local d = lower(o.description) or ""
    if not fallback and d:find("^other") then fallback = o end
  end
  if fallback then
    log.warn("OS type not found in the new cloud; using " .. fallback.description, { vm = vm.name, os_type = want })
    return fallback.id, fallback.description
  end
  step_fail("template", ("OS type '%s' not found in the new cloud"):format(tostring(want)))
end

-- Domains: one level at a time from ROOT; names are unique per parent.
function Engine:ensure_domain(vm)
  local path = vm.owner.domain_path
  local levels = planlib.domain_levels(path)
  local key = "domain:" .. path
  local known = self.cache[key] or (self.journal and self.journal:get(nil, key))
  if known then self.cache[key] = known; return known.id end
  local domains = must("domain", self:list("listDomains", { listall = true }, { "domain" }))
  local root
  for _, d in ipairs(domains) do
    if d.level == 0 or d.parentdomainid == nil and (d.name == "ROOT" or d.path == "ROOT") then root = d end
  end
  if not root then step_fail("domain", "the new cloud has no ROOT domain visible to these credentials") end
  local parent = root
  local prefix = "/"
  for _, name in ipairs(levels) do
    prefix = prefix .. name .. "/"
    local found
    for _, d in ipairs(domains) do
      if d.name == name and d.parentdomainid == parent.id then found = d end
    end
    if not found then
      self:act(vm, "create domain", prefix)
      if self.dry then
        found = { id = "(new domain " .. prefix .. ")", name = name, parentdomainid = parent.id }
      else
        found = must("domain", self.client:call("createDomain", { name = name, parentdomainid = parent.id }))
        found = found.domain or found
        found.parentdomainid = found.parentdomainid or parent.id
        self.journal:record(nil, "domain:" .. prefix, { id = found.id })
      end
      domains[#domains + 1] = found
    end
    parent = found
  end
  local data = { id = parent.id }
  self.cache[key] = data
  if not self.dry and not self.journal:get(nil, key) then self.journal:record(nil, key, data) end
  return parent.id
end

function Engine:ensure_account(vm, domainid)
  local o = vm.owner
  local key = "account:" .. o.domain_path .. o.account
  local known = self.cache[key] or (self.journal and self.journal:get(nil, key))
  if known then self.cache[key] = known; return known end
  local params = { name = o.account, listall = true }
  if not tostring(domainid):find("^%(new") then params.domainid = domainid end
  local found
  if params.domainid then
    local accounts = must("account", self:list("listAccounts", params, { "account" }))
    for _, a in ipairs(accounts) do
      if a.name == o.account and (a.domainid == nil or a.domainid == domainid) then found = a end
    end
  end
  local data
  if found then
    data = { id = found.id, name = found.name, created = false }
  else
    local hook = self.policy.password_for
    local password = type(hook) == "function" and hook(o) or nil
    local generated = password == nil
    password = password or random_password()
    self:act(vm, "create account", o.domain_path .. o.account)
    if self.dry then
      data = { id = "(new account " .. o.account .. ")", name = o.account, created = true }
    else
      local r = must("account", self.client:call("createAccount", {
        username = o.account, account = o.account, password = password,
        email = o.email or (o.account .. "@recovered.invalid"),
        firstname = o.firstname or o.account, lastname = o.lastname or "recovered",
        accounttype = o.type or 0, domainid = domainid,
      }))
      local acc = r.account or r
      data = { id = acc.id, name = o.account, created = true, password = generated and password or nil,
        password_from_policy = not generated or nil }
    end
  end
  data.domainid = domainid
  self.cache[key] = data
  if not self.dry then self.journal:record(nil, key, data) end
  return data
end

function Engine:ensure_offering(vm)
  local s = vm.spec
  local key = ("offering:%s/%s/%s"):format(tostring(s.cpu), tostring(s.speed), tostring(s.ram))
  local known = self.cache[key] or (self.journal and self.journal:get(nil, key))
  if known then self.cache[key] = known; return known end
  local offerings = self.cache.offerings
  if not offerings then
    offerings = must("offering", self:list("listServiceOfferings", { listall = true }, { "serviceoffering" }))
    self.cache.offerings = offerings
  end
  local hook = self.policy.offering_for
  if type(hook) == "function" then
    -- Policies see the VM as the inventory shaped it (vm.offering = {cpu, speed, ram, name}).
    local view = setmetatable({ offering = { cpu = s.cpu, speed = s.speed, ram = s.ram, name = s.offering } },
      { __index = vm })
    local choice = hook(view, offerings)
    if type(choice) == "table" and choice.id then
      local data = { id = choice.id, name = choice.name }
      self.cache[key] = data
      if not self.dry then self.journal:record(nil, key, data) end
      return data
    elseif type(choice) == "string" then
      for _, of in ipairs(offerings) do
        if of.id == choice or of.name == choice then
          local data = { id = of.id, name = of.name }
          self.cache[key] = data
          return data
        end
      end
      step_fail("offering", ("policy chose offering '%s', which the new cloud does not have"):format(choice))
    end
  end
  for _, of in ipairs(offerings) do
    if of.cpunumber == s.cpu and of.cpuspeed == s.speed and of.memory == s.ram and not of.iscustomized then
      local data = { id = of.id, name = of.name }
      self.cache[key] = data
      if not self.dry then self.journal:record(nil, key, data) end
      return data
    end
  end
  local name = s.offering or ("recovered-%dcpu-%dmhz-%dmb"):format(s.cpu, s.speed, s.ram)
  self:act(vm, "create service offering", ("%s (%d CPU, %d MHz, %d MB)"):format(name, s.cpu, s.speed, s.ram))
  local data
  if self.dry then
    data = { id = "(new offering " .. name .. ")", name = name }
  else
    local r = must("offering", self.client:call("createServiceOffering", {
      name = name, displaytext = ("%s, %d CPU, %d MHz, %d MB (recovered)"):format(name, s.cpu, s.speed, s.ram),
      cpunumber = s.cpu, cpuspeed = s.speed, memory = s.ram,
    }))
    local of = r.serviceoffering or r
    data = { id = of.id, name = of.name or name }
    offerings[#offerings + 1] = { id = of.id, name = data.name, cpunumber = s.cpu, cpuspeed = s.speed, memory = s.ram }
    self.journal:record(nil, key, data)
  end
  self.cache[key] = data
  return data
end

--- Estate-wide owner resources for one VM: {domainid, account, offering}.
function Engine:owners(vm)
  local domainid = self:ensure_domain(vm)
  local account = self:ensure_account(vm, domainid)
  local offering = self:ensure_offering(vm)
  return { domainid = domainid, account = account, offering = offering }
end

-- Machine steps (per VM) -------------------------------------------------------------------

function Engine:disk_file(vm, d)
  return ("%s/disks/%s-%s.vhd"):format(self.workdir, tostring(vm.id), tostring(d.id))
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
    local r, err = vhd.flatten(d.file, out, { format = "vhd", progress = p:callback(), overwrite = true })
    p:finish()
    if not r then step_fail("flatten", d.file .. ": " .. tostring(err)) end
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

-- Find a template of ours by name; returns the entry or nil.
function Engine:find_template(name, own)
  local params = { templatefilter = "self", name = name, listall = true, zoneid = self:zone_id() }
  if not tostring(own.domainid):find("^%(new") then
    params.account = own.account.name
    params.domainid = own.domainid
  else
    return nil
  end
  local list, err = self:list("listTemplates", params, { "template" })
  if not list then step_fail("template", M.errtext(err)) end
  local best
  for _, t in ipairs(list) do
    if t.name == name then
      if t.isready then return t end
      best = best or t
    end
  end
  return best
end

local BROKEN = { UploadError = true, UploadAbandoned = true, NotUploaded = true, Error = true }
M.BROKEN_STATES = BROKEN

-- Wait for a template found half-way (a killed run had uploaded it): ready, or broken.
function Engine:wait_template(id, own)
  local deadline = sys.clock() + self.wait_timeout
  while true do
    local list = self:list("listTemplates", { templatefilter = "self", id = id, listall = true,
      account = own.account.name, domainid = own.domainid }, { "template" }) or {}
    local t = list[1]
    if not t then return nil, "template vanished" end
    if t.isready then return t end
    local status = tostring(t.status or t.state or "")
    if BROKEN[t.state] or BROKEN[status] or status:find("[Ee]rror") or status:find("[Ff]ailed") then
      return nil, status
    end
    if sys.clock() > deadline then return nil, "timed out waiting for template " .. id end
    sleep(self.poll)
  end
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
      format = "VHD", hypervisor = "XenServer", zoneid = self:zone_id(), ostypeid = ostypeid,
      account = own.account.name, domainid = own.domainid,
      requireshvm = vm.template.requires_hvm ~= false, passwordenabled = vm.template.password_enabled == true,
    }, { progress = p:callback(), overwrite = true })
    p:finish()
    if not t then step_fail("template", M.errtext(err)) end
    return { id = t.id }
  end)
end

-- Wait for the new cloud's pending jobs on one resource (a killed run may have
-- submitted a deploy or attach and never seen it end).
function Engine:settle(instance_id)
  local jobs = self:list("listAsyncJobs", { listall = true }, { "asyncjobs" })
  for _, job in ipairs(jobs or {}) do
    if job.jobinstanceid == instance_id and job.jobstatus == 0 then
      local deadline = sys.clock() + self.wait_timeout
      while true do
        local r = self.client:call("queryAsyncJobResult", { jobid = job.jobid })
        if not r or r.jobstatus ~= 0 or sys.clock() > deadline then break end
        sleep(self.poll)
      end
    end
  end
end

function Engine:find_vm(vm, own)
  local list, err = self:list("listVirtualMachines", { name = M.hostname(vm.name), account = own.account.name,
    domainid = own.domainid, listall = true }, { "virtualmachine" })
  if not list then
    -- A cloud without listVirtualMachines leaves the journal as the only guard.
    log.debug("listVirtualMachines failed", { error = M.errtext(err) })
    return nil
  end
  for _, v in ipairs(list) do
    if v.name == M.hostname(vm.name) and v.state ~= "Destroyed" and v.state ~= "Expunging" then
      if v.state == "Starting" or v.state == "Creating" then
        self:settle(v.id)
        local again = self:list("listVirtualMachines", { id = v.id, listall = true }, { "virtualmachine" })
        v = again and again[1] or v
      end
      if v.state == "Error" then
        step_fail("vm", ("a VM named %s (id %s) is in state Error in the new cloud (a failed deployment); "
          .. "destroy it and run again"):format(vm.name, tostring(v.id)))
      end
      return v
    end
  end
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
    local r, err = self.client:async("deployVirtualMachine", params)
    if not r then step_fail("vm", M.errtext(err)) end
    local v = r.virtualmachine or r
    return { id = v.id }
  end)
end

-- Volume names need not be unique in an account, so a volume found by name is
-- taken as ours only when it cannot be another's: attached to this VM; or
-- unattached, not journaled for another disk, this disk's upload was started
-- before (its intent is journaled) and no other disk's upload of the same name
-- and owner is pending. Anything ambiguous is uploaded again (a leftover stays).
function Engine:find_volume(name, own, vm_new_id, disk_key)
  local list = self:list("listVolumes", { name = name, account = own.account.name, domainid = own.domainid,
    listall = true }, { "volume" })
  local claimed, intents, done = {}, {}, {}
  local owner_key = own.domainid .. "/" .. own.account.name
  for _, e in ipairs(self.journal and self.journal:entries() or {}) do
    local dk = e.step:match("^volume:(.*)$")
    if dk and type(e.data) == "table" and e.data.id then
      claimed[e.data.id] = true
      done[tostring(e.vm) .. ":" .. dk] = true
    end
    local ik = e.step:match("^volume%-intent:(.*)$")
    if ik and type(e.data) == "table" and e.data.name == name and e.data.owner == owner_key then
      intents[tostring(e.vm) .. ":" .. ik] = true
    end
  end
  local others_pending = false
  for k in pairs(intents) do
    if k ~= disk_key and not done[k] then others_pending = true end
  end
  for _, v in ipairs(list or {}) do
    local attached = v.virtualmachineid and v.virtualmachineid ~= json.null
    if v.name == name and not BROKEN[v.state] and not claimed[v.id] then
      if attached and v.virtualmachineid == vm_new_id then return v end
      if not attached and intents[disk_key] and not others_pending then return v end
    end
  end
end

--- A CloudStack host name for a VM name: letters, digits and hyphens, starting
-- with a letter, at most 63 characters (the old name stays the display name).
function M.hostname(name)
  local h = tostring(name):gsub("[^%w%-]+", "-"):gsub("%-+", "-"):gsub("^[^%a]+", ""):gsub("%-+$", "")
  if h == "" then h = "vm" end
  h = h:sub(1, 63):gsub("%-+$", "")
  return h
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
      name = name, format = "VHD", zoneid = self:zone_id(), account = own.account.name, domainid = own.domainid,
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
  local flat_root = self:flatten(vm, root)
  local flats = {}
  for _, d in ipairs(data_disks) do
    self:check_parent()
    flats[d] = self:flatten(vm, d)
  end
  self:check_parent()
  local tpl = self:template(vm, own, flat_root.file)
  self:check_parent()
  local dep = self:deploy(vm, own, tpl and tpl.id)
  local ids = device_ids(data_disks)
  local volumes = {}
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

-- Kill workers orphaned by a killed parent (they would race with this run).
function Engine:reap_orphans()
  local dir = self.workdir .. "/workers"
  for _, n in ipairs(sys.dir(dir) or {}) do
    local pid = math.tointeger(tonumber(n))
    if pid then
      local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
      local cmd = f and f:read("a") or ""
      if f then f:close() end
      if cmd:find("--worker-vm", 1, true) and cmd:find(self.workdir, 1, true) then
        log.warn("stopping a worker left by an earlier run", { pid = pid })
        sys.kill(pid, 9)
        for _ = 1, 50 do
          if not sys.kill(pid, 0) then break end
          sleep(0.05)
        end
      end
      sys.unlink(dir .. "/" .. n)
    end
  end
end

function Engine:lock()
  local path = self.workdir .. "/lock"
  local f = io.open(path, "r")
  if f then
    local pid = math.tointeger(tonumber(f:read("l") or ""))
    f:close()
    if pid and pid ~= sys.getpid() and sys.kill(pid, 0) then
      local cf = io.open("/proc/" .. pid .. "/cmdline", "rb")
      local cmd = cf and cf:read("a") or ""
      if cf then cf:close() end
      if cmd:find("salvage", 1, true) or cmd:find("busted", 1, true) then
        error(("recover: another recovery (pid %d) is using %s"):format(pid, self.workdir), 0)
      end
    end
  end
  sys.write_atomic(path, tostring(sys.getpid()) .. "\n")
end

function Engine:unlock()
  sys.unlink(self.workdir .. "/lock")
end

-- Run VMs' machine steps on up to `workers` child processes.
function Engine:run_pool(queue, status, on_done)
  local n = self.opts.workers or 1
  local running = {}
  local count = 0
  local i = 1
  sys.mkdir(self.workdir .. "/workers")
  sys.mkdir(self.workdir .. "/logs")
  while i <= #queue or count > 0 do
    while count < n and i <= #queue do
      local vm = queue[i]
      i = i + 1
      local argv = self.opts.worker_argv(vm.id)
      argv.stdout = ("%s/logs/vm-%s.log"):format(self.workdir, tostring(vm.id))
      argv.stderr = argv.stdout
      local pid, err = sys.spawn(argv)
      if not pid then
        status[vm.id] = { step = "worker", error = tostring(err) }
        on_done(vm)
      else
        sys.write_atomic(("%s/workers/%d"):format(self.workdir, pid), tostring(vm.id))
        self.spawned = self.spawned or {}
        self.spawned[vm.id] = sys.clock()
        running[pid] = vm
        count = count + 1
      end
    end
    local reaped = false
    for pid, vm in pairs(running) do
      local how, code = sys.wait(pid, true)
      if how then
        running[pid] = nil
        count = count - 1
        reaped = true
        sys.unlink(("%s/workers/%d"):format(self.workdir, pid))
        self.worker_wall = self.worker_wall or {}
        self.worker_wall[vm.id] = sys.clock() - self.spawned[vm.id]
        if not (how == "exited" and (code == 0 or code == 1)) then
          status[vm.id] = { step = "worker", error = ("worker %s %d (log: %s/logs/vm-%s.log)"):format(how, code,
            self.workdir, tostring(vm.id)) }
        end
        on_done(vm)
      end
    end
    if not reaped and count > 0 then
      local now = sys.clock()
      if self.follow and now - (self.followed or 0) > 0.25 then
        self.followed = now
        self.follow()
      end
      sleep(0.01)
    end
  end
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

-- The report ----------------------------------------------------------------------------

function Engine:report(vms, status, elapsed)
  local j = self.journal
  local r = {
    dry_run = self.dry, zone = self.opts.zone, workdir = self.workdir, elapsed = elapsed,
    recovered = json.array({}), failed = json.array({}), skipped = json.array({}),
    accounts = json.array({}),
  }
  for _, s in ipairs(self.plan.skipped or {}) do
    r.skipped[#r.skipped + 1] = { id = s.id, name = s.name, reason = s.reason }
  end
  local accounts_seen = {}
  for _, vm in ipairs(vms) do
    local done = not self.dry and j:get(vm.id, "done")
    local key = "account:" .. vm.owner.domain_path .. vm.owner.account
    if done then
      r.recovered[#r.recovered + 1] = {
        id = vm.id, name = vm.name, new_id = done.new_id, template_id = done.template_id,
        domain_path = vm.owner.domain_path, account = vm.owner.account,
        old_domain_path = vm.owner.old_domain_path, old_account = vm.owner.old_account,
        cpu = vm.spec.cpu, speed = vm.spec.speed, ram = vm.spec.ram, offering = done.offering,
        volumes = json.array(done.volumes or {}), left_out = json.array(done.left_out or {}),
      }
    elseif self.dry and not status[vm.id] then
      r.recovered[#r.recovered + 1] = { id = vm.id, name = vm.name, domain_path = vm.owner.domain_path,
        account = vm.owner.account, cpu = vm.spec.cpu, speed = vm.spec.speed, ram = vm.spec.ram, would = true }
    else
      local f = status[vm.id]
      if not f then
        local fl = j:failures_of(vm.id)
        f = fl[#fl] or { step = "unknown", error = "not finished (see the logs)" }
        for _, x in ipairs(fl) do if x.time and (not f.time or x.time > f.time) then f = x end end
      end
      r.failed[#r.failed + 1] = { id = vm.id, name = vm.name, step = f.step, error = f.error }
    end
    local acc = j:get(nil, key)
    if acc and not accounts_seen[key] and acc.created then
      accounts_seen[key] = true
      r.accounts[#r.accounts + 1] = { domain_path = vm.owner.domain_path, account = vm.owner.account,
        id = acc.id, password = acc.password, password_from_policy = acc.password_from_policy }
    end
  end
  if self.dry then r.actions = json.array(self.actions) end
  r.summary = { recovered = #r.recovered, failed = #r.failed, skipped = #r.skipped }
  -- Where the time went, per VM recovered in this run (machine steps; owners are estate-wide).
  local n, sum, maxe, api, flat, proc, nproc, jr = 0, 0, 0, 0, 0, 0, 0, 0
  for _, vm in ipairs(vms) do
    local done = not self.dry and j:get(vm.id, "done")
    local t = done and done.timing
    if t and t.engine then
      n = n + 1
      sum = sum + t.engine
      maxe = math.max(maxe, t.engine)
      api = api + (t.api or 0)
      flat = flat + (t.flatten or 0)
      jr = jr + (t.journal or 0)
      local wall = self.worker_wall and self.worker_wall[vm.id]
      if wall then
        proc = proc + math.max(0, wall - t.total)
        nproc = nproc + 1
      end
    end
  end
  if n > 0 then
    r.timing = { vms = n, engine_ms_mean = sum / n * 1000, engine_ms_max = maxe * 1000,
      api_ms_mean = api / n * 1000, flatten_ms_mean = flat / n * 1000, journal_ms_mean = jr / n * 1000,
      owners_ms = (self.owners_time or 0) * 1000,
      worker_process_ms_mean = nproc > 0 and proc / nproc * 1000 or nil }
  end
  return r
end

--- The report as a table for people.
function M.table(report)
  local rows = { { "STATUS", "VMID", "VM", "OWNER", "NEW ID", "DETAIL" } }
  for _, v in ipairs(report.recovered) do
    local vols = {}
    for _, x in ipairs(v.volumes or {}) do vols[#vols + 1] = x.name end
    local detail = ("%s CPU %s MHz %s MB"):format(tostring(v.cpu), tostring(v.speed), tostring(v.ram))
    if #vols > 0 then detail = detail .. "; data: " .. table.concat(vols, ", ") end
    for _, x in ipairs(v.left_out or {}) do detail = detail .. "; LEFT OUT " .. tostring(x.name) .. ": " .. x.reason end
    rows[#rows + 1] = { report.dry_run and "would" or "ok", tostring(v.id), v.name,
      planlib.owner_text({ domain_path = v.domain_path, account = v.account }),
      v.new_id ~= json.null and tostring(v.new_id or "-") or "-", detail }
  end
  for _, v in ipairs(report.failed) do
    rows[#rows + 1] = { "FAILED", tostring(v.id), v.name, "", "-", ("at %s: %s"):format(v.step, v.error) }
  end
  for _, v in ipairs(report.skipped) do
    rows[#rows + 1] = { "skipped", tostring(v.id), tostring(v.name), "", "-", tostring(v.reason) }
  end
  local out = columns.lines(rows)
  if report.dry_run and report.actions then
    out[#out + 1] = ""
    out[#out + 1] = ("dry run: %d actions would be taken, nothing was created"):format(#report.actions)
    for _, a in ipairs(report.actions) do
      local who = a.vm ~= json.null and a.vm or "-"
      out[#out + 1] = ("  %-10s %-24s %s"):format(who, a.action, a.what)
    end
  end
  for _, a in ipairs(report.accounts or {}) do
    if a.password then
      out[#out + 1] = ("account %s created; password in %s/report.json"):format(
        planlib.owner_text({ domain_path = a.domain_path, account = a.account }), report.workdir or ".")
    end
  end
  out[#out + 1] = ("%d recovered, %d failed, %d skipped"):format(#report.recovered, #report.failed, #report.skipped)
  return table.concat(out, "\n") .. "\n"
end

return M
