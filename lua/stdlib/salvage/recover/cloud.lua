--- salvage.recover.cloud: lookups and ensures in the new cloud, for the recovery
-- engine (salvage.recover). Each method is mixed into the engine and reads
-- self.client, self.journal, self.cache, self.policy and self.dry.
--
--   local cloud = require "salvage.recover.cloud"
--   cloud.step_fail("vm", "message")       -- raise a step error (cloud.StepError)
--   cloud.errtext(err)                    -- the text of an API error, scrubbed
--   cloud.hostname("web_1")               -- "web-1": a CloudStack host name
--   for k, f in pairs(cloud.methods) do Engine[k] = f end
--
-- Methods: list, zone_id, os_type_id, ensure_domain, ensure_account,
-- ensure_offering, owners (the three ensures for one VM), find_template,
-- wait_template, settle, find_vm, find_volume.
local sys = require "salvage.sys"
local json = require "salvage.json"
local log = require "salvage.log"
local planlib = require "salvage.plan"

local M = {}

-- Errors ----------------------------------------------------------------------

-- A step failure carries the step name and the server's words.
local StepError = {}
M.StepError = StepError
StepError.__index = StepError
StepError.__tostring = function(e) return e.step .. ": " .. e.message end

local function step_fail(step, message)
  error(setmetatable({ step = step, message = tostring(message) }, StepError), 0)
end
M.step_fail = step_fail

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
M.must = must

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
M.sleep = sleep

local Engine = {}
M.methods = Engine

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

-- Templates, VMs, volumes -------------------------------------------------------------

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

return M
