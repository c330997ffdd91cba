--- salvage.recover.cloud: lookups and ensures in the new cloud, for the recovery
-- engine (salvage.recover). Each method is mixed into the engine and reads
-- self.client, self.journal, self.cache, self.policy and self.dry.
--
--   local cloud = require "salvage.recover.cloud"
--   cloud.step_fail("vm", "message")       -- raise a step error (cloud.StepError)
--   cloud.errtext(err)                    -- the text of an API error, scrubbed
--   cloud.ambiguous(err)                  -- true: a state change may or may not have happened
--   cloud.hostname("web_1")               -- "web-1": a CloudStack host name
--   for k, f in pairs(cloud.methods) do Engine[k] = f end
--
-- Identity: every template, VM and volume salvage makes carries the tag
-- `salvage-source` = the old object's UUID (cloud.TAG; createTags on Template,
-- UserVm, Volume), and is found again by that tag (`ours`), never by the journal
-- alone. A resource with our name but without the tag is someone else's: a
-- conflict, unless this run journaled the intent to create it (a reply that was
-- lost, a kill between create and tag) or the policy sets adopt_untagged.
--
-- Methods: list, zone_id, os_type_id, ensure_domain, ensure_account,
-- ensure_offering, owners (the three ensures for one VM), alive, ours, tag,
-- condition, remove, settle, preflight.
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

--- Did a state-changing call end without telling what happened (no server
-- verdict: transport failure, lost or truncated reply, job result unknown)?
function M.ambiguous(err)
  if type(err) ~= "table" then return false end
  if err.code == "EJOB" or err.code == "EUPLOAD" or err.code == "EAPI" then return false end
  if err.errorcode ~= nil and err.code ~= "ETIMEDOUT" then return false end
  return err.code ~= nil and err.code ~= "ENOENT"
end

-- A stop (SIGINT, SIGTERM): not a step failure; it ends the whole run.
local Stop = {}
Stop.__index = Stop
Stop.__tostring = function(e) return "stopped by " .. e.signal end
M.Stop = Stop
function M.is_stop(e) return getmetatable(e) == Stop end
function M.stop_of(e)
  if getmetatable(e) == Stop then return e end
  local sig = sys.interrupted and sys.interrupted()
  if sig or (type(e) == "string" and e:find("interrupted!", 1, true)) then
    return setmetatable({ signal = sig or "SIGINT" }, Stop)
  end
end

--- The tag key that ties a resource in the new cloud to its old object.
M.TAG = "salvage-source"

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
  local names = {}
  for _, zone in ipairs(zones) do
    if zone.id == z or zone.name == z then
      self.cache.zone = zone.id
      return zone.id
    end
    names[#names + 1] = tostring(zone.name)
  end
  table.sort(names)
  step_fail("zone", ("zone '%s' not found in the new cloud (its zones: %s)"):format(z,
    #names > 0 and table.concat(names, ", ") or "none"))
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

-- A journaled id that the new cloud no longer has: warn once, count, make again.
function Engine:vanished(what, id)
  local w = ("%s %s (from the journal) is gone from the new cloud; making it again"):format(what, tostring(id))
  log.warn(w)
  self.warnings[#self.warnings + 1] = w
end

-- Does the new cloud still have the estate-wide resource `cmd` id (cached per run)?
function Engine:still_there(cmd, key, id)
  local ck = "seen:" .. cmd .. ":" .. tostring(id)
  if self.cache[ck] ~= nil or self.dry then return true end
  local rows, err = self:list(cmd, { id = id, listall = true }, { key })
  if not rows then
    -- 431 "unable to find" for an unknown id on some commands: the id is gone
    if type(err) == "table" and tonumber(err.errorcode) == 431 then rows = {} else step_fail(key, M.errtext(err)) end
  end
  local found = false
  for _, r in ipairs(rows) do if r.id == id then found = true end end
  self.cache[ck] = found
  return found
end

-- The domain `name` under `parent` in the new cloud, or nil.
local function child_domain(domains, name, parent)
  for _, d in ipairs(domains) do
    if d.name == name and d.parentdomainid == parent.id then return d end
  end
end

-- Create one domain level; a lost reply is reconciled by listing again.
function Engine:create_domain(vm, prefix, name, parent, domains)
  self:act(vm, "create domain", prefix)
  if self.dry then return { id = "(new domain " .. prefix .. ")", name = name, parentdomainid = parent.id } end
  local r, err = self.client:call("createDomain", { name = name, parentdomainid = parent.id })
  if not r then
    if not M.ambiguous(err) then step_fail("domain", M.errtext(err)) end
    local again = must("domain", self:list("listDomains", { listall = true }, { "domain" }))
    local found = child_domain(again, name, parent)
    if not found then step_fail("domain", M.errtext(err)) end
    log.warn("the reply to createDomain was lost; the domain exists", { domain = prefix })
    r = found
  end
  local d = r.domain or r
  d.parentdomainid = d.parentdomainid or parent.id
  domains[#domains + 1] = d
  self.journal:record(nil, "domain:" .. prefix, { id = d.id })
  return d
end

-- Domains: one level at a time from ROOT; names are unique per parent.
function Engine:ensure_domain(vm)
  local path = vm.owner.domain_path
  local levels = planlib.domain_levels(path)
  local key = "domain:" .. path
  local known = self.cache[key] or (self.journal and self.journal:get(nil, key))
  if known and not self:still_there("listDomains", "domain", known.id) then
    self:vanished("domain " .. path, known.id)
    known = nil
  end
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
    parent = child_domain(domains, name, parent) or self:create_domain(vm, prefix, name, parent, domains)
  end
  local data = { id = parent.id }
  self.cache[key] = data
  local rec = not self.dry and self.journal:get(nil, key)
  if not self.dry and (not rec or rec.id ~= data.id) then self.journal:record(nil, key, data) end
  return parent.id
end

-- The account `name` in domain `domainid`, or nil.
function Engine:find_account(name, domainid)
  local accounts = must("account", self:list("listAccounts", { name = name, domainid = domainid, listall = true },
    { "account" }))
  for _, a in ipairs(accounts) do
    if a.name == name and (a.domainid == nil or a.domainid == domainid) then return a end
  end
end

function Engine:create_account(vm, o, domainid)
  local hook = self.policy.password_for
  local password = type(hook) == "function" and hook(o) or nil
  local generated = password == nil
  password = password or random_password()
  self:act(vm, "create account", o.domain_path .. o.account)
  if self.dry then return { id = "(new account " .. o.account .. ")", name = o.account, created = true } end
  local r, err = self.client:call("createAccount", {
    username = o.account, account = o.account, password = password,
    email = o.email or (o.account .. "@recovered.invalid"),
    firstname = o.firstname or o.account, lastname = o.lastname or "recovered",
    accounttype = o.type or 0, domainid = domainid,
  })
  if not r then
    if not M.ambiguous(err) then step_fail("account", M.errtext(err)) end
    r = self:find_account(o.account, domainid)
    if not r then step_fail("account", M.errtext(err)) end
    log.warn("the reply to createAccount was lost; the account exists", { account = o.account })
  end
  local acc = r.account or r
  return { id = acc.id, name = o.account, created = true, password = generated and password or nil,
    password_from_policy = not generated or nil }
end

function Engine:ensure_account(vm, domainid)
  local o = vm.owner
  local key = "account:" .. o.domain_path .. o.account
  local known = self.cache[key] or (self.journal and self.journal:get(nil, key))
  if known and known.domainid == domainid and self:still_there("listAccounts", "account", known.id) then
    self.cache[key] = known
    return known
  end
  if known then self:vanished("account " .. o.domain_path .. o.account, known.id) end
  local found = not tostring(domainid):find("^%(new") and self:find_account(o.account, domainid)
  local data = found and { id = found.id, name = found.name, created = false }
    or self:create_account(vm, o, domainid)
  data.domainid = domainid
  self.cache[key] = data
  if not self.dry then self.journal:record(nil, key, data) end
  return data
end

-- An offering chosen by the policy hook, or nil (raises when it names none).
function Engine:policy_offering(vm, offerings)
  local s = vm.spec
  local hook = self.policy.offering_for
  if type(hook) ~= "function" then return nil end
  -- Policies see the VM as the inventory shaped it (vm.offering = {cpu, speed, ram, name}).
  local view = setmetatable({ offering = { cpu = s.cpu, speed = s.speed, ram = s.ram, name = s.offering } },
    { __index = vm })
  local choice = hook(view, offerings)
  if type(choice) == "table" and choice.id then return { id = choice.id, name = choice.name } end
  if type(choice) == "string" then
    for _, of in ipairs(offerings) do
      if of.id == choice or of.name == choice then return { id = of.id, name = of.name } end
    end
    step_fail("offering", ("policy chose offering '%s', which the new cloud does not have"):format(choice))
  end
end

local function same_spec(of, s)
  return of.cpunumber == s.cpu and of.cpuspeed == s.speed and of.memory == s.ram and not of.iscustomized
end

function Engine:create_offering(vm, offerings)
  local s = vm.spec
  local name = s.offering or ("recovered-%dcpu-%dmhz-%dmb"):format(s.cpu, s.speed, s.ram)
  self:act(vm, "create service offering", ("%s (%d CPU, %d MHz, %d MB)"):format(name, s.cpu, s.speed, s.ram))
  if self.dry then return { id = "(new offering " .. name .. ")", name = name } end
  local r, err = self.client:call("createServiceOffering", {
    name = name, displaytext = ("%s, %d CPU, %d MHz, %d MB (recovered)"):format(name, s.cpu, s.speed, s.ram),
    cpunumber = s.cpu, cpuspeed = s.speed, memory = s.ram,
  })
  if not r then
    if not M.ambiguous(err) then step_fail("offering", M.errtext(err)) end
    for _, of in ipairs(must("offering", self:list("listServiceOfferings", { listall = true },
        { "serviceoffering" }))) do
      if same_spec(of, s) then r = of end
    end
    if not r then step_fail("offering", M.errtext(err)) end
  end
  local of = r.serviceoffering or r
  offerings[#offerings + 1] = { id = of.id, name = of.name or name, cpunumber = s.cpu, cpuspeed = s.speed,
    memory = s.ram }
  return { id = of.id, name = of.name or name }
end

function Engine:ensure_offering(vm)
  local s = vm.spec
  local key = ("offering:%s/%s/%s"):format(tostring(s.cpu), tostring(s.speed), tostring(s.ram))
  local known = self.cache[key] or (self.journal and self.journal:get(nil, key))
  if known and self:still_there("listServiceOfferings", "serviceoffering", known.id) then
    self.cache[key] = known
    return known
  end
  if known then self:vanished("service offering " .. tostring(known.name), known.id) end
  local offerings = self.cache.offerings
  if not offerings then
    offerings = must("offering", self:list("listServiceOfferings", { listall = true }, { "serviceoffering" }))
    self.cache.offerings = offerings
  end
  local data = self:policy_offering(vm, offerings)
  if not data then
    for _, of in ipairs(offerings) do
      if not data and same_spec(of, s) then data = { id = of.id, name = of.name } end
    end
  end
  data = data or self:create_offering(vm, offerings)
  self.cache[key] = data
  if not self.dry then self.journal:record(nil, key, data) end
  return data
end

--- Estate-wide owner resources for one VM: {domainid, account, offering}.
function Engine:owners(vm)
  local domainid = self:ensure_domain(vm)
  local account = self:ensure_account(vm, domainid)
  local offering = self:ensure_offering(vm)
  return { domainid = domainid, account = account, offering = offering }
end

--- Is the owner one a dry run would create (so nothing of it can be looked up)?
function M.owner_is_new(own)
  return tostring(own.domainid):find("^%(new") ~= nil or tostring(own.account.id):find("^%(new") ~= nil
end

-- Templates, VMs, volumes: identity by tag ------------------------------------------

local KINDS = {
  Template = { list = "listTemplates", key = "template", step = "template" },
  UserVm = { list = "listVirtualMachines", key = "virtualmachine", step = "vm" },
  Volume = { list = "listVolumes", key = "volume", step = "volume" },
}
M.KINDS = KINDS

local function owner_params(kind, own, extra)
  local p = { listall = true, account = own.account.name, domainid = own.domainid }
  if kind == "Template" then p.templatefilter = "self" end
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

-- The value of our tag on a listed resource, or nil.
local function tag_of(r)
  for _, t in ipairs(type(r.tags) == "table" and r.tags or {}) do
    if t.key == M.TAG then return t.value end
  end
end
M.tag_of = tag_of

--- condition(kind, r) -> "ready" | "busy" | "dead" | "gone". A resource of ours
-- that is dead (a failed or abandoned upload, a failed deployment) is removed and
-- made again; "busy" is waited for. A template NotUploaded with no upload status
-- is dead: nobody uploads it (the VM's lock is held by this process).
function M.condition(kind, r)
  local state, status = tostring(r.state or ""), tostring(r.status or ""):lower()
  if kind == "Template" then
    if r.isready then return "ready" end
    if state == "UploadError" or state == "UploadAbandoned" or state == "Inactive" or state == "Error"
        or status:find("error") or status:find("fail") or status:find("abandon") then return "dead" end
    if state == "NotUploaded" and status == "" then return "dead" end
    return "busy"
  elseif kind == "Volume" then
    if state == "Uploaded" or state == "Ready" or state == "Allocated" then return "ready" end
    if state == "Destroy" or state == "Expunging" or state == "Expunged" then return "gone" end
    if state == "UploadError" or state == "UploadAbandoned" or state == "Error" or state == "NotUploaded" then
      return "dead"
    end
    return "busy"
  end
  if state == "Error" then return "dead" end
  if state == "Destroyed" or state == "Expunging" or state == "Expunged" then return "gone" end
  if state == "Starting" or state == "Creating" then return "busy" end
  return "ready"
end

--- tag(kind, id, source) -> true | nil, err: mark a resource as the new copy of
-- old object `source`. A failed or unanswered createTags is checked by looking.
function Engine:tag(kind, id, source)
  local err
  for _ = 1, 3 do
    local r
    r, err = self.client:async("createTags", { resourcetype = kind, resourceids = id,
      tags = { { key = M.TAG, value = source } } })
    if r then return true end
    local p = { id = id, listall = true }
    if kind == "Template" then p.templatefilter = "all" end
    for _, x in ipairs(self:list(KINDS[kind].list, p, { KINDS[kind].key }) or {}) do
      if x.id == id and tag_of(x) == source then return true end
    end
    if not M.ambiguous(err) then return nil, err end
  end
  return nil, err
end

--- remove(kind, r): delete (expunge) a dead resource of ours.
function Engine:remove(kind, r, vm)
  local w = ("removing %s %s (%s) left %s by an earlier attempt"):format(kind, tostring(r.id), tostring(r.name),
    r.state or r.status or "dead")
  log.warn(w, { vm = vm and vm.name })
  self.cleaned[#self.cleaned + 1] = { kind = kind, id = r.id, name = r.name, state = r.state }
  local ok, err
  if kind == "Template" then
    ok, err = self.client:async("deleteTemplate", { id = r.id, zoneid = self:zone_id(), forced = true })
  elseif kind == "Volume" then
    ok, err = self.client:call("deleteVolume", { id = r.id })
  else
    ok, err = self.client:async("destroyVirtualMachine", { id = r.id, expunge = true })
  end
  if not ok then step_fail(KINDS[kind].step, ("cannot remove dead %s %s: %s"):format(kind, r.id, M.errtext(err))) end
end

-- Rows of `kind` for an owner matching `extra` (exact checks are the caller's).
function Engine:rows(kind, own, extra)
  local k = KINDS[kind]
  return must(k.step, self:list(k.list, owner_params(kind, own, extra), { k.key }))
end

--- alive(kind, id, own) -> the resource if the new cloud has it in a usable state.
function Engine:alive(kind, id, own)
  if self.dry or id == nil then return true end
  local rows = self:rows(kind, own, { id = id })
  for _, r in ipairs(rows) do
    if r.id == id then
      local c = M.condition(kind, r)
      if c == "ready" or c == "busy" then return r end
    end
  end
  return nil
end

-- Wait for a busy resource (an upload being installed, a deployment in its job).
function Engine:wait_busy(kind, r, own)
  local deadline = sys.clock() + self.wait_timeout
  while M.condition(kind, r) == "busy" do
    if kind ~= "Template" then self:settle(r.id) end
    if sys.clock() > deadline then
      step_fail(KINDS[kind].step, ("%s %s still %s after %ds"):format(kind, r.id, r.state or r.status,
        self.wait_timeout))
    end
    sleep(self.poll)
    local again = self:rows(kind, own, { id = r.id })
    if not again[1] then return nil end
    r = again[1]
  end
  return r
end

--- ours(kind, vm, name, source, own) -> the usable resource of ours, or nil.
-- By tag first; then by name: an untagged one is adopted (and tagged) only when
-- this workdir journaled the intent to create it or the policy allows adoption;
-- anything else with our name is a conflict. Dead ones are removed on the way.
function Engine:ours(kind, vm, name, source, own)
  if self.dry and M.owner_is_new(own) then return nil end
  local found
  for _, r in ipairs(self:rows(kind, own, { tags = { { key = M.TAG, value = source } } })) do
    if tag_of(r) == source then
      local c = M.condition(kind, r)
      if c == "dead" and not self.dry then self:remove(kind, r, vm)
      elseif c ~= "gone" and c ~= "dead" and not found then found = r end
    end
  end
  if not found then found = self:adopt(kind, vm, name, source, own) end
  if found and M.condition(kind, found) == "busy" and not self.dry then
    found = self:wait_busy(kind, found, own)
    if found and M.condition(kind, found) == "dead" then
      self:remove(kind, found, vm)
      found = nil
    end
  end
  return found
end

--- still_ours(kind, vm, name, source, own, id) -> is the journaled resource `id` still
-- the usable one of ours? Looked up by tag, so that dead ones of the same source (a failed
-- attempt of an earlier run, a killed upload) are removed even when this step is done.
function Engine:still_ours(kind, vm, name, source, own, id)
  local r = self:ours(kind, vm, name, source, own)
  return r ~= nil and r.id == id
end

-- A same-named resource without our tag: adopt it or report the conflict.
function Engine:adopt(kind, vm, name, source, own)
  local intent = self.journal and self.journal:get(vm.id, "intent:" .. KINDS[kind].step .. ":" .. source)
  for _, r in ipairs(self:rows(kind, own, { name = name })) do
    local c = M.condition(kind, r)
    if r.name == name and c ~= "gone" then
      local t = tag_of(r)
      if t ~= nil and t ~= source then
        step_fail(KINDS[kind].step, ("conflict: %s %s (id %s) in the new cloud is the copy of another old object "
          .. "(%s=%s)"):format(kind, name, r.id, M.TAG, t))
      end
      if t == nil and not intent and not self.policy.adopt_untagged then
        step_fail(KINDS[kind].step, ("conflict: a %s named %s (id %s) exists in the new cloud without the %s tag; "
          .. "it is not adopted (rename it, or set adopt_untagged = true in the policy)"):format(kind, name, r.id,
          M.TAG))
      end
      if self.dry then return r end
      log.warn(("adopting %s %s (id %s): %s"):format(kind, name, r.id, intent
        and "created by an earlier attempt whose reply was lost" or "the policy allows adopting untagged resources"),
        { vm = vm.name })
      local ok, err = self:tag(kind, r.id, source)
      if not ok then step_fail(KINDS[kind].step, M.errtext(err)) end
      if c == "dead" then
        self:remove(kind, r, vm)
      else
        return r
      end
    end
  end
end

--- Journal the intent to create (before the call): a resource with our name
-- that appears without its tag after a lost reply or a kill is then ours.
function Engine:intend(vm, kind, source, name)
  self.journal:record(vm.id, "intent:" .. KINDS[kind].step .. ":" .. source, { name = name })
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

--- A CloudStack host name for a VM name: letters, digits and hyphens, starting
-- with a letter, at most 63 characters (the old name stays the display name).
M.hostname = planlib.hostname

-- Preflight ----------------------------------------------------------------------------

--- unreadable(source [, vgs]) -> nil | why: can this disk source be opened for reading?
-- A file path, or lvm:IMAGE[,IMAGE...]:LV: the VG's metadata is read (once per
-- image list when a cache table vgs is given) and the LV must be there and readable.
function M.unreadable(f, vgs)
  local images, lv = tostring(f):match("^lvm:(.+):([^:]+)$")
  if not images then
    local fh, err = io.open(f, "rb")
    if not fh then return err or "cannot open" end
    fh:close()
    return nil
  end
  vgs = vgs or {}
  if vgs[images] == nil then vgs[images] = { require("salvage.lvm").read(images) } end
  local vg, err = vgs[images][1], vgs[images][2]
  if not vg then return err or "cannot read the LVM metadata" end
  for _, l in ipairs(vg.lvs) do
    if l.name == lv then return l.problem end
  end
  return ("no LV %s in VG %s"):format(lv, vg.name)
end

-- One sentence for a failure to talk to the new cloud at all.
local function unreachable(client, err)
  local url = client.url or "the API URL"
  local status = type(err) == "table" and (tonumber(err.http_status) or tonumber(err.errorcode))
  if status == 401 or status == 432 then
    return ("the new cloud at %s refused the credentials (%s): check the API key and secret"):format(url,
      M.errtext(err))
  end
  if type(err) == "table" and err.errorcode == nil then
    return ("cannot reach the new cloud at %s: %s"):format(url, M.errtext(err))
  end
  return ("the new cloud at %s: %s"):format(url, M.errtext(err))
end

--- preflight(vms) -> nil | message [, unreadable]: what concerns every VM, checked
-- before anything is created: the API answers with these credentials, the zone exists,
-- every planned disk file is readable. unreadable (only when that is all that is wrong):
-- vm.id -> "FILE (why); ..." for each VM with a disk file that cannot be read.
function Engine:preflight(vms)
  local zones, err = self.client:list("listZones", {}, { retries = 1 })
  if not zones then return unreachable(self.client, err) end
  local ok, zerr = pcall(self.zone_id, self)
  if not ok then return type(zerr) == "table" and zerr.message or tostring(zerr) end
  local bad, by_vm, vgs = {}, {}, {}
  for _, vm in ipairs(vms) do
    local mine = {}
    for _, d in ipairs(vm.disks or {}) do
      if d.recoverable ~= false then
        for _, f in ipairs((d.chain and #d.chain > 0) and d.chain or { d.file }) do
          local why = M.unreadable(f, vgs)
          if why then mine[#mine + 1] = ("%s (%s)"):format(tostring(f), why) end
        end
      end
    end
    if #mine > 0 then
      by_vm[vm.id] = table.concat(mine, "; ")
      table.move(mine, 1, #mine, #bad + 1, bad)
    end
  end
  if #bad > 0 then
    local more = #bad > 5 and (" and %d more"):format(#bad - 5) or ""
    return ("%d planned disk file(s) cannot be read: %s%s"):format(#bad, table.concat(bad, "; ", 1,
      math.min(5, #bad)), more), by_vm
  end
end

return M
