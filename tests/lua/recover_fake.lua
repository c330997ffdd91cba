-- An in-memory stand-in for the new cloud's API client and for the VHD engine, so
-- luacheck: max line length 200
-- the step machine (idempotence, failures, dry run, policies) is tested without
-- the simulator. The end-to-end specs run the real client against the simulator.
local M = {}

local Cloud = {}
Cloud.__index = Cloud

function M.cloud()
  local self = setmetatable({
    seq = 0, calls = {}, creates = 0,
    zones = { { id = "z1", name = "Zone1" } },
    domains = { { id = "d-root", name = "ROOT", level = 0, path = "ROOT" } },
    accounts = { { id = "acc-admin", name = "admin", domainid = "d-root", accounttype = 1 } }, offerings = { { id = "so-1", name = "Small Instance", cpunumber = 1, cpuspeed = 500, memory = 512 } },
    ostypes = { { id = "os-1", description = "Other Linux (64-bit)" }, { id = "os-2", description = "Windows Server 2012 (64-bit)" },
      { id = "os-3", description = "Debian GNU/Linux 7(64-bit)" } },
    templates = {}, vms = {}, volumes = {}, url = "http://fake/client/api",
    faults = {},          -- command -> {errorcode, errortext} (once unless .always)
    crash_after = nil,    -- raise after this many state changes (simulated kill)
  }, Cloud)
  return self
end

function Cloud:id(prefix)
  self.seq = self.seq + 1
  return ("%s-%d"):format(prefix, self.seq)
end

local function err(code, text) return nil, { errorcode = code, errortext = text } end

function Cloud:fault(cmd)
  local f = self.faults[cmd]
  if f then
    if not f.always then self.faults[cmd] = nil end
    return f
  end
end

function Cloud:changed()
  self.creates = self.creates + 1
  if self.crash_after and self.creates >= self.crash_after then
    self.crash_after = nil
    error("simulated crash after a state change", 0)
  end
end

local function match(item, params, keys)
  for _, k in ipairs(keys) do
    if params[k] ~= nil and item[k] ~= params[k] then return false end
  end
  -- the tags filter, as CloudStack takes it: tags[0].key / tags[0].value (or a table, before flattening)
  local tk, tv = params["tags[0].key"], params["tags[0].value"]
  if type(params.tags) == "table" and params.tags[1] then tk, tv = params.tags[1].key, params.tags[1].value end
  if tk then
    local hit = false
    for _, t in ipairs(item.tags or {}) do if t.key == tk and (tv == nil or t.value == tv) then hit = true end end
    if not hit then return false end
  end
  return true
end

-- Every taggable resource, by id.
function Cloud:resource(kind, id)
  local list = kind == "Template" and self.templates or kind == "UserVm" and self.vms or self.volumes
  for _, r in ipairs(list) do if r.id == id then return r end end
end

local function copy(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  return out
end

function Cloud:call(cmd, p)
  self.calls[#self.calls + 1] = cmd
  local f = self:fault(cmd)
  if f then return err(f.errorcode or 530, f.errortext or "injected failure") end
  p = p or {}
  if cmd == "listZones" then return { zone = copy(self.zones), count = #copy(self.zones) }
  elseif cmd == "listDomains" then return { domain = copy(self.domains) }
  elseif cmd == "listOsTypes" then return { ostype = copy(self.ostypes) }
  elseif cmd == "listServiceOfferings" then return { serviceoffering = copy(self.offerings) }
  elseif cmd == "listAccounts" then
    local out = {}
    for _, a in ipairs(self.accounts) do
      if (not p.name or a.name == p.name) and (not p.domainid or a.domainid == p.domainid) then out[#out + 1] = a end
    end
    return { account = out }
  elseif cmd == "listTemplates" then
    local out = {}
    for _, t in ipairs(self.templates) do
      if match(t, p, { "id", "name", "account", "domainid" }) then out[#out + 1] = t end
    end
    return { template = out }
  elseif cmd == "listVirtualMachines" then
    local out = {}
    for _, v in ipairs(self.vms) do if match(v, p, { "id", "name", "account", "domainid" }) then out[#out + 1] = v end end
    return { virtualmachine = out }
  elseif cmd == "listVolumes" then
    local out = {}
    for _, v in ipairs(self.volumes) do if match(v, p, { "id", "name", "account", "domainid" }) then out[#out + 1] = v end end
    return { volume = out }
  elseif cmd == "createDomain" then
    for _, d in ipairs(self.domains) do
      if d.name == p.name and d.parentdomainid == p.parentdomainid then return err(431, "Domain with name " .. p.name .. " already exists") end
    end
    local d = { id = self:id("dom"), name = p.name, parentdomainid = p.parentdomainid, level = 1 }
    self.domains[#self.domains + 1] = d
    self:changed()
    return { domain = d }
  elseif cmd == "createAccount" then
    for _, a in ipairs(self.accounts) do
      if a.name == p.account and a.domainid == p.domainid then return err(431, "account exists") end
    end
    local a = { id = self:id("acc"), name = p.account or p.username, domainid = p.domainid, accounttype = p.accounttype,
      password = p.password }
    self.accounts[#self.accounts + 1] = a
    self:changed()
    return { account = a }
  elseif cmd == "createServiceOffering" then
    local o = { id = self:id("so"), name = p.name, cpunumber = p.cpunumber, cpuspeed = p.cpuspeed, memory = p.memory }
    self.offerings[#self.offerings + 1] = o
    self:changed()
    return { serviceoffering = o }
  elseif cmd == "deleteTemplate" then
    for i, t in ipairs(self.templates) do if t.id == p.id then table.remove(self.templates, i) break end end
    return { success = true }
  elseif cmd == "deleteVolume" then
    for i, v in ipairs(self.volumes) do if v.id == p.id then table.remove(self.volumes, i) break end end
    return { success = true }
  end
  return err(401, "unknown command " .. cmd)
end

function Cloud:list(cmd, p)
  local r, e = self:call(cmd, p)
  if not r then return nil, e end
  for k, v in pairs(r) do if type(v) == "table" and k ~= "count" then return v end end
  return {}
end

function Cloud:async(cmd, p)
  self.calls[#self.calls + 1] = cmd
  local f = self:fault(cmd)
  if f then return err(f.errorcode or 530, f.errortext or "injected failure") end
  if cmd == "createTags" then
    local r = self:resource(p.resourcetype, p.resourceids)
    if not r then return err(431, "no such resource " .. tostring(p.resourceids)) end
    r.tags = r.tags or {}
    for _, t in ipairs(p.tags) do r.tags[#r.tags + 1] = { key = t.key, value = t.value } end
    return { success = true }
  elseif cmd == "deleteTemplate" or cmd == "deleteVolume" then
    return self:call(cmd, p)
  elseif cmd == "destroyVirtualMachine" then
    for i, v in ipairs(self.vms) do if v.id == p.id then table.remove(self.vms, i) break end end
    return { success = true }
  elseif cmd == "deployVirtualMachine" then
    local tpl
    for _, t in ipairs(self.templates) do if t.id == p.templateid then tpl = t end end
    if not tpl or not tpl.isready then return err(530, "template not ready") end
    local v = { id = self:id("vm"), name = p.name, displayname = p.displayname, account = p.account,
      domainid = p.domainid, serviceofferingid = p.serviceofferingid, templateid = p.templateid,
      state = "Stopped", networkids = p.networkids }
    self.vms[#self.vms + 1] = v
    self:changed()
    return { virtualmachine = v }
  elseif cmd == "attachVolume" then
    for _, v in ipairs(self.volumes) do
      if v.id == p.id then
        v.virtualmachineid = p.virtualmachineid
        v.deviceid = p.deviceid
        v.state = "Ready"
        self:changed()
        return { volume = v }
      end
    end
    return err(431, "no such volume")
  elseif cmd == "startVirtualMachine" then
    for _, v in ipairs(self.vms) do
      if v.id == p.id then v.state = "Running"; self:changed(); return { virtualmachine = v } end
    end
    return err(431, "no such vm")
  end
  return err(401, "unknown command " .. cmd)
end

local function content(file)
  local f = assert(io.open(file, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function Cloud:upload_template(file, p, opts)
  self.calls[#self.calls + 1] = "upload_template"
  local f = self:fault("upload_template")
  if f then return err(f.errorcode or 530, f.errortext or "injected failure") end
  local t = { id = self:id("tpl"), name = p.name, account = p.account, domainid = p.domainid, ostypeid = p.ostypeid,
    requireshvm = p.requireshvm, passwordenabled = p.passwordenabled, isready = true, status = "Download Complete",
    content = content(file) }
  self.templates[#self.templates + 1] = t
  self:changed()
  if opts and opts.on_created then
    local ok, e = opts.on_created(t.id)
    if not ok then return nil, e end
  end
  return t
end

function Cloud:upload_volume(file, p, opts)
  self.calls[#self.calls + 1] = "upload_volume"
  local f = self:fault("upload_volume")
  if f then return err(f.errorcode or 530, f.errortext or "injected failure") end
  local v = { id = self:id("vol"), name = p.name, account = p.account, domainid = p.domainid, state = "Uploaded",
    content = content(file) }
  self.volumes[#self.volumes + 1] = v
  self:changed()
  if opts and opts.on_created then
    local ok, e = opts.on_created(v.id)
    if not ok then return nil, e end
  end
  return v
end

--- Count of calls of one command.
function Cloud:count(cmd)
  local n = 0
  for _, c in ipairs(self.calls) do if c == cmd then n = n + 1 end end
  return n
end

-- The fake VHD engine: a "disk" is a text file "virtual=<bytes>\n<data>".
function M.vhd()
  local V = {}
  local function parse(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    local size = tonumber(s:match("^virtual=(%d+)"))
    return size, s
  end
  function V.open(path)
    local size = parse(path)
    if not size then return nil, path .. ": not a disk", "ENOENT" end
    return {
      info = function() return { path = path, footer = { current_size = math.tointeger(size), disk_type = "dynamic" } } end,
      chain = function() return { path } end,
      close = function() end,
    }
  end
  function V.check(path)
    local _, s = parse(path)
    if not s then return { path = path, ok = false, problems = { { code = "ENOENT", severity = "error", message = "missing" } } } end
    if s:find("FOOTERCOPY") then
      return { path = path, ok = false, problems = { { code = "FOOTER_COPY_BAD", severity = "error", blocks_flatten = false,
        message = "the footer copy at offset 0 is damaged" } } }
    end
    if s:find("BAD") then
      return { path = path, ok = false, problems = { { code = "ECHECKSUM", severity = "error", message = "bad footer checksum" } } }
    end
    return { path = path, ok = true, problems = {} }
  end
  function V.flatten(leaf, out)
    local size, s = parse(leaf)
    if not size then return nil, "cannot read " .. leaf, "ENOENT" end
    local f = assert(io.open(out, "wb"))
    f:write(s)
    f:close()
    return { path = out, virtual_size = size, bytes_written = #s }
  end
  return V
end

function M.write_disk(path, size, data)
  local f = assert(io.open(path, "wb"))
  f:write(("virtual=%d\n%s"):format(size, data or ""))
  f:close()
end

--- A small estate of inventory records (shaped like salvage.cloudstack.inventory's).
function M.inventory()
  local spdm = { id = 2, name = "SPDM Inc", path = "/SPDM Inc/" }
  local root = { id = 1, name = "ROOT", path = "/" }
  local admin = { id = 2, name = "admin", type = 1 }
  local peter = { id = 5, name = "peterparker", type = 0 }
  local small = { id = 1, name = "Small Instance", cpu = 1, speed = 500, ram = 512 }
  local pool = { id = 1, name = "PS-NFS-1", uuid = "c6d4b1c2-5bd3-3a4e-8a5c-7e0f3f1c9a10", path = "/export/primary" }
  local function vol(id, name, typ, size, path, dev)
    return { id = id, uuid = "u-" .. id, name = name, type = typ, state = "Ready", size = size, path = path,
      device_id = dev, format = "VHD", pool = pool, recoverable = true, problems = {} }
  end
  return {
    { id = 24, uuid = "vm-24", name = "rootvm1", display_name = "rootvm1", instance_name = "i-2-24-VM", state = "Running",
      hypervisor = "XenServer", account = admin, domain = root, offering = small, guest_os = "Other Linux (64-bit)",
      template = { id = 201, name = "centos65-base", requires_hvm = true, password_enabled = false },
      volumes = { vol(25, "ROOT-24", "ROOT", 1000, "root24", 0) }, problems = {} },
    { id = 25, uuid = "vm-25", name = "ppvm2", display_name = "ppvm2", instance_name = "i-5-25-VM", state = "Running",
      hypervisor = "XenServer", account = peter, domain = spdm, offering = small, guest_os = "Windows Server 2012 (64-bit)",
      template = { id = 202, name = "win2012-spdm", requires_hvm = true, password_enabled = true },
      volumes = { vol(28, "ppdatavol", "DATADISK", 500, "data28", 1), vol(26, "ROOT-25", "ROOT", 1000, "root25", 0) },
      problems = {} },
    { id = 26, uuid = "vm-26", name = "ppvm3", display_name = "ppvm3", instance_name = "i-5-26-VM", state = "Stopped",
      hypervisor = "XenServer", account = peter, domain = spdm, offering = small, guest_os = "Debian GNU/Linux 7(64-bit)",
      template = { id = 203, name = "debian7-old", removed = true, requires_hvm = true, password_enabled = false },
      volumes = { vol(27, "ROOT-26", "ROOT", 1000, "root26", 0) }, problems = {} },
  }
end

--- Write the disks of M.inventory() under dir.
function M.storage(dir)
  M.write_disk(dir .. "/root24.vhd", 1000, "rootvm1 root")
  M.write_disk(dir .. "/root25.vhd", 1000, "ppvm2 root")
  M.write_disk(dir .. "/data28.vhd", 500, "ppvm2 data")
  os.execute("mkdir -p '" .. dir .. "/sub/deeper'")
  M.write_disk(dir .. "/sub/deeper/root26.vhd", 1000, "ppvm3 root")
end

return M
