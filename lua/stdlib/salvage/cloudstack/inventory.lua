--- The inventory of a dead CloudStack: every user VM, its owner, its spec and
-- its disks, read from the old `cloud` database (live, or an ephemeral server
-- loaded from a dump) on any release 4.2 .. 4.22.
--
--   local vms, meta = inventory.load(conn, { policy = policy.new(), database = "cloud" })
--
-- vms: array of records, by VM id:
--   {id, uuid, name, instance_name, display_name, state, hypervisor, removed,
--    account = {id, uuid, name, type, state, removed},
--    domain = {id, uuid, name, path, parent, removed},
--    offering = {id, uuid, name, cpu, speed, ram, custom, removed},
--    guest_os = "<guest_os.display_name>", guest_os_id,
--    nics = {{mac, ip, network_id, device_id, default}} (the old nics table, not removed),
--    template = {id, uuid, name, removed, requires_hvm, password_enabled, format},
--    volumes = { ROOT first, then data disks by device_id:
--      {id, uuid, name, type, state, size, path, device_id, format, template_id,
--       pool = {id, uuid, name, host, path, type, removed},
--       parent_base = "<base copy>.vhd" (ROOT disks made from a template) or nil,
--       recoverable, problems = {...}} },
--    problems = { {code, severity = "error"|"warning", message}, ... }}
-- account, domain, offering (unless custom), template and pool tables are
-- shared by the records pointing at the same row: treat them as read-only.
-- meta: {version = "4.5.2", database, schema = {details_table, offering_names},
--   skipped = { {id, name, kind = "vm"|"volume", vm_id, reason}, ... },
--   detached = { volume records with account and domain } (policy.include_detached),
--   counts = {vms, volumes, bytes, problems}}
--
-- What it fixes in the seed article's query (doc/cloudstack-facts.md):
-- columns are read by unique names; VMs without volumes are kept, with a
-- problem; `removed` is honoured (through the policy); a stale ROOT in
-- Destroy/Destroying/Expunging never counts as a second root disk; Allocated
-- volumes without a path and volumes on removed or unknown pools are not
-- recoverable, with the reason; the CPU count is read and custom offerings
-- take CPU/speed/RAM from the VM's details; domains carry their path; order is
-- deterministic; detached volumes appear when the policy asks.
-- It reads each table once (no query per VM), streaming the two big ones.
local json = require "salvage.json"
local policy_mod = require "salvage.policy"

local M = {}

local function q(name) return "`" .. tostring(name):gsub("`", "``") .. "`" end

local ARRAY = json.array_mt
local setmetatable = setmetatable

local function problem(code, severity, message)
  return { code = code, severity = severity, message = message }
end
M.problem = problem

local function fail(msg, code) return nil, "inventory: " .. tostring(msg), code end

--- Detect the release and the columns that moved between releases.
-- schema(conn, database) -> {version, tables = {t = {col = true}}, details_table, offering_names} | nil, msg, code
function M.schema(conn, database)
  local cols, err, code = conn:query(
    "SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?", database)
  if not cols then return fail(err, code) end
  local tables = {}
  for _, r in ipairs(cols) do
    local t = tables[r.t:lower()] or {}
    tables[r.t:lower()] = t
    t[r.c:lower()] = true
  end
  for _, need in ipairs { "vm_instance", "volumes", "account", "domain", "service_offering" } do
    if not tables[need] then
      return fail(("database %s has no table %s: not a CloudStack database"):format(database, need), "ESCHEMA")
    end
  end
  local s = { tables = tables }
  if tables.version then
    local v, verr, vcode = conn:query("SELECT version FROM " .. q(database) .. ".version ORDER BY id DESC LIMIT 1")
    if not v then return fail(verr, vcode) end
    s.version = v[1] and v[1].version
  end
  -- 4.21 renamed user_vm_details to vm_instance_details
  s.details_table = tables.vm_instance_details and "vm_instance_details"
    or tables.user_vm_details and "user_vm_details" or nil
  -- up to 4.16 a service offering's name lives in disk_offering (same id)
  s.offering_names = tables.service_offering.name and "service_offering" or "disk_offering"
  return s
end

local function has(s, t, c) return s.tables[t] ~= nil and s.tables[t][c] == true end

-- A column if the table has it, else NULL under the same alias.
local function col(s, t, alias, c, as)
  if has(s, t, c) then return alias .. "." .. c .. " AS " .. (as or c) end
  return "NULL AS " .. (as or c)
end

local function all(conn, sql, ...)
  local rows, err, code = conn:query(sql, ...)
  if not rows then return nil, err, code end
  return rows
end

local function by_id(rows)
  local t = {}
  for _, r in ipairs(rows) do t[r.id] = r end
  return t
end

local function is_true(v) return v ~= nil and v ~= 0 and v ~= "0" and v ~= "" end

local STALE_ROOT = { Destroy = true, Destroying = true, Expunging = true, Expunged = true }

-- A volume's own problems: can its disk be found and read at all?
local function check_volume(vol)
  local problems = setmetatable({}, ARRAY)
  if vol.state == "Allocated" or not vol.path then
    problems[#problems + 1] = problem("ENOPATH", "error", vol.state == "Allocated"
      and "volume was never created (state Allocated, no path)" or "volume has no path")
  end
  if not vol.pool then
    if vol.pool_id then
      problems[#problems + 1] = problem("ENOPOOL", "error", ("storage pool %s does not exist"):format(vol.pool_id))
    elseif vol.path then
      problems[#problems + 1] = problem("ENOPOOL", "error", "volume is on no storage pool")
    end
  elseif vol.pool.removed then
    problems[#problems + 1] = problem("EPOOLREMOVED", "error",
      ("storage pool %s was removed on %s"):format(vol.pool.name, vol.pool.removed))
  end
  if STALE_ROOT[vol.state] then
    problems[#problems + 1] = problem("ESTALE", "error", "volume state " .. vol.state .. " (being deleted)")
  end
  if vol.format and vol.format ~= "VHD" then
    problems[#problems + 1] = problem("EFORMAT", "warning", "volume format " .. vol.format .. ", not VHD")
  end
  vol.problems = problems
  local recoverable = true
  for _, p in ipairs(problems) do
    if p.severity == "error" then recoverable = false end
  end
  vol.recoverable = recoverable
end

local TYPE_ORDER = { ROOT = 0, DATADISK = 1 }

local function volume_order(a, b)
  local ta, tb = TYPE_ORDER[a.type] or 2, TYPE_ORDER[b.type] or 2
  if ta ~= tb then return ta < tb end
  -- the live ROOT before an old one being deleted (kept only by a permissive policy)
  local sa, sb = STALE_ROOT[a.state] and 1 or 0, STALE_ROOT[b.state] and 1 or 0
  if sa ~= sb then return sa < sb end
  local da, db = a.device_id or math.maxinteger, b.device_id or math.maxinteger
  if da ~= db then return da < db end
  return a.id < b.id
end

--- load(conn, {policy =, database =}) -> vms, meta | nil, msg, code
-- database: default the connection's current database, else "cloud". The
-- policy's vm_filter sees a VM before its volumes are attached (vm.volumes is
-- empty then); volume_filter sees each volume with its VM.
function M.load(conn, opts)
  opts = opts or {}
  local pol = opts.policy or policy_mod.new()
  local database = opts.database
  if not database then
    -- the connection's own database (a URL's /db, an ephemeral server's dump), else "cloud"
    local cur = conn:query("SELECT DATABASE() AS db")
    database = cur and cur[1] and cur[1].db or "cloud"
  end
  local s, err, code = M.schema(conn, database)
  if not s then return nil, err, code end
  local D = q(database) .. "."

  -- small tables, whole
  local domains, accounts, offerings
  local templates, oses, pools, spool = {}, {}, {}, {}
  local rows
  rows, err, code = all(conn, "SELECT id, parent, name, path, " .. col(s, "domain", "d", "uuid") .. ", removed FROM "
    .. D .. "domain d ORDER BY id")
  if not rows then return fail(err, code) end
  domains = by_id(rows)
  rows, err, code = all(conn, "SELECT id, account_name, " .. col(s, "account", "a", "uuid") .. ", type, domain_id, "
    .. "state, removed FROM " .. D .. "account a ORDER BY id")
  if not rows then return fail(err, code) end
  accounts = by_id(rows)
  if s.offering_names == "service_offering" then
    rows, err, code = all(conn, "SELECT so.id, so.name, so.uuid, so.cpu, so.speed, so.ram_size, so.removed, "
      .. col(s, "service_offering", "so", "customized") .. " FROM " .. D .. "service_offering so")
  else
    rows, err, code = all(conn, "SELECT so.id, d.name, d.uuid, so.cpu, so.speed, so.ram_size, d.removed, "
      .. col(s, "disk_offering", "d", "customized") .. " FROM " .. D .. "service_offering so LEFT JOIN " .. D
      .. "disk_offering d ON d.id = so.id")
  end
  if not rows then return fail(err, code) end
  offerings = by_id(rows)
  if s.tables.vm_template then
    rows, err, code = all(conn, "SELECT id, name, uuid, removed, hvm, enable_password, format FROM " .. D
      .. "vm_template")
    if not rows then return fail(err, code) end
    templates = by_id(rows)
  end
  if s.tables.guest_os then
    rows, err, code = all(conn, "SELECT id, display_name FROM " .. D .. "guest_os")
    if not rows then return fail(err, code) end
    oses = by_id(rows)
  end
  if s.tables.storage_pool then
    rows, err, code = all(conn, "SELECT id, name, uuid, pool_type, host_address, path, removed FROM " .. D
      .. "storage_pool")
    if not rows then return fail(err, code) end
    for _, r in ipairs(rows) do
      pools[r.id] = { id = r.id, name = r.name, uuid = r.uuid, host = r.host_address, path = r.path,
        type = r.pool_type, removed = r.removed }
    end
  end
  if s.tables.template_spool_ref then
    rows, err, code = all(conn, "SELECT pool_id, template_id, install_path FROM " .. D .. "template_spool_ref "
      .. "WHERE install_path IS NOT NULL ORDER BY id")
    if not rows then return fail(err, code) end
    for _, r in ipairs(rows) do
      spool[r.pool_id] = spool[r.pool_id] or {}
      spool[r.pool_id][r.template_id] = r.install_path
    end
  end
  -- the real size of VMs on custom offerings
  local details = {}
  if s.details_table then
    rows, err, code = all(conn, "SELECT vm_id, name, value FROM " .. D .. q(s.details_table)
      .. " WHERE name IN ('cpuNumber', 'cpuSpeed', 'memory')")
    if not rows then return fail(err, code) end
    for _, r in ipairs(rows) do
      local d = details[r.vm_id] or {}
      details[r.vm_id] = d
      d[r.name] = math.tointeger(tonumber(r.value))
    end
  end

  -- One table per database row, shared by every record that points at it
  -- (20,000 VMs of one account hold one account table): read-only for callers.
  local domain_recs, account_recs, offering_recs, template_recs = {}, {}, {}, {}
  local function domain_rec(id)
    local r = domain_recs[id]
    if r then return r end
    local d = domains[id]
    if not d then return nil end
    r = { id = d.id, uuid = d.uuid, name = d.name, path = d.path, parent = d.parent, removed = d.removed }
    domain_recs[id] = r
    return r
  end
  local function account_rec(id)
    local r = account_recs[id]
    if r then return r end
    local a = accounts[id]
    if not a then return nil end
    r = { id = a.id, uuid = a.uuid, name = a.account_name, type = a.type, state = a.state, removed = a.removed }
    account_recs[id] = r
    return r
  end

  local meta = { version = s.version, database = database, skipped = json.array {}, detached = json.array {},
    schema = { details_table = s.details_table, offering_names = s.offering_names } }
  local skipped = meta.skipped

  -- VMs (user VMs only: system VMs are never recovered) -------------------
  local display = has(s, "vm_instance", "display_name") and "v.display_name"
    or (s.tables.user_vm and "u.display_name") or "NULL"
  local join_user_vm = display == "u.display_name" and (" LEFT JOIN " .. D .. "user_vm u ON u.id = v.id") or ""
  local vm_sql = "SELECT v.id, v.uuid, v.name, v.instance_name, " .. display .. " AS display_name, v.state, "
    .. "v.type, v.hypervisor_type AS hypervisor, v.removed, v.account_id, v.domain_id, v.service_offering_id, "
    .. "v.vm_template_id, v.guest_os_id FROM " .. D .. "vm_instance v" .. join_user_vm
    .. " WHERE v.type = 'User' ORDER BY v.id"
  local vms, kept = {}, {}
  local ok, iter_err = pcall(function()
    local it, st, init, closer = conn:rows(vm_sql)
    if not it then error({ msg = st, code = init }) end
    local _ <close> = closer
    for r in it, st, init do
      local off = offerings[r.service_offering_id]
      local det = details[r.id]
      local tmpl = templates[r.vm_template_id]
      local vm = r -- the row is the record (its columns are named as the record's fields)
      vm.account = account_rec(r.account_id)
      vm.domain = domain_rec(r.domain_id)
      vm.guest_os = oses[r.guest_os_id] and oses[r.guest_os_id].display_name
      vm.volumes = setmetatable({}, ARRAY)
      vm.problems = setmetatable({}, ARRAY)
      if off then
        local custom = off.cpu == nil or off.speed == nil or off.ram_size == nil or is_true(off.customized)
        local o = not det and offering_recs[off.id]
        if not o then
          det = det or {}
          o = { id = off.id, uuid = off.uuid, name = off.name, removed = off.removed, custom = custom,
            cpu = det.cpuNumber or off.cpu, speed = det.cpuSpeed or off.speed, ram = det.memory or off.ram_size }
          if not details[r.id] then offering_recs[off.id] = o end
        end
        vm.offering = o
      else
        det = det or {}
        vm.offering = { id = r.service_offering_id, cpu = det.cpuNumber, speed = det.cpuSpeed, ram = det.memory }
        vm.problems[#vm.problems + 1] = problem("ENOOFFERING", "warning",
          ("service offering %s does not exist"):format(tostring(r.service_offering_id)))
      end
      if not (vm.offering.cpu and vm.offering.speed and vm.offering.ram) then
        vm.problems[#vm.problems + 1] = problem("ESPEC", "error", "CPU count, speed or RAM unknown (custom offering "
          .. "without cpuNumber/cpuSpeed/memory details)")
      end
      if tmpl then
        local t = template_recs[tmpl.id]
        if not t then
          t = { id = tmpl.id, uuid = tmpl.uuid, name = tmpl.name, removed = tmpl.removed,
            requires_hvm = is_true(tmpl.hvm), password_enabled = is_true(tmpl.enable_password), format = tmpl.format }
          template_recs[tmpl.id] = t
        end
        vm.template = t
      elseif r.vm_template_id then
        vm.template = { id = r.vm_template_id }
      end
      if not vm.account then
        vm.problems[#vm.problems + 1] = problem("ENOACCOUNT", "error", ("account %s does not exist"):format(
          tostring(r.account_id)))
        vm.account = { id = r.account_id }
      end
      if not vm.domain then
        vm.problems[#vm.problems + 1] = problem("ENODOMAIN", "error", ("domain %s does not exist"):format(
          tostring(r.domain_id)))
        vm.domain = { id = r.domain_id }
      end
      -- the raw ids are in the nested records now (and would cost 20% of the JSON time)
      r.account_id, r.domain_id, r.service_offering_id, r.vm_template_id = nil, nil, nil, nil
      local keep, why = policy_mod.keep_vm(pol, vm)
      if keep then
        vms[#vms + 1] = vm
        kept[vm.id] = vm
      else
        skipped[#skipped + 1] = { kind = "vm", id = vm.id, name = vm.name, state = vm.state,
          reason = why or "excluded by the policy" }
      end
    end
  end)
  if not ok then
    if type(iter_err) == "table" then return fail(iter_err.msg, iter_err.code) end
    return fail(iter_err, "EQUERY")
  end

  -- NICs of kept VMs (the old MAC and IPv4 a KVM import or a deployment may keep)
  if s.tables.nics then
    rows, err, code = all(conn, "SELECT instance_id, mac_address, ip4_address, network_id, device_id, default_nic FROM "
      .. D .. "nics WHERE removed IS NULL ORDER BY instance_id, device_id, id")
    if not rows then return fail(err, code) end
    for _, r in ipairs(rows) do
      local vm = kept[r.instance_id]
      if vm then
        vm.nics = vm.nics or setmetatable({}, ARRAY)
        vm.nics[#vm.nics + 1] = { mac = r.mac_address, ip = r.ip4_address, network_id = r.network_id,
          device_id = r.device_id, default = is_true(r.default_nic) }
      end
    end
  end

  -- volumes: those of kept VMs, and detached ones when the policy wants them
  local vol_sql = "SELECT id, uuid, name, volume_type AS type, state, size, path, device_id, pool_id, template_id, "
    .. "instance_id, account_id, domain_id, removed, " .. col(s, "volumes", "vo", "format") .. " FROM "
    .. D .. "volumes vo" .. (pol.include_detached and "" or " WHERE instance_id IS NOT NULL") .. " ORDER BY id"
  ok, iter_err = pcall(function()
    local it, st, init, closer = conn:rows(vol_sql)
    if not it then error({ msg = st, code = init }) end
    local _ <close> = closer
    for r in it, st, init do
      local vm = r.instance_id and kept[r.instance_id]
      if vm or r.instance_id == nil then
        -- the row is the record (its columns are named as the record's fields)
        local vol = r
        vol.pool = pools[r.pool_id]
        if not vm then
          vol.account = account_rec(r.account_id)
          vol.domain = domain_rec(r.domain_id)
        end
        local vm_id = r.instance_id
        r.account_id, r.domain_id, r.instance_id = nil, nil, nil
        local keep, why = pol.volume_filter(vol, vm or nil)
        if keep then
          check_volume(vol)
          if vol.type == "ROOT" and vol.pool_id and vol.template_id then
            local base = spool[vol.pool_id]
            base = base and base[vol.template_id]
            if base then vol.parent_base = base .. ".vhd" end
          end
          if vm then
            vm.volumes[#vm.volumes + 1] = vol
          else
            meta.detached[#meta.detached + 1] = vol
          end
        else
          skipped[#skipped + 1] = { kind = "volume", id = vol.id, name = vol.name, vm_id = vm_id,
            state = vol.state, reason = why or "excluded by the policy" }
        end
      end
    end
  end)
  if not ok then
    if type(iter_err) == "table" then return fail(iter_err.msg, iter_err.code) end
    return fail(iter_err, "EQUERY")
  end

  -- per-VM checks once all disks are known
  local counts = { vms = #vms, volumes = 0, bytes = 0, problems = 0 }
  for _, vm in ipairs(vms) do
    local vols = vm.volumes
    for i = 2, #vols do
      if volume_order(vols[i], vols[i - 1]) then
        table.sort(vols, volume_order)
        break
      end
    end
    local roots, live_roots = 0, 0
    for _, v in ipairs(vm.volumes) do
      if v.type == "ROOT" then
        roots = roots + 1
        if not STALE_ROOT[v.state] then live_roots = live_roots + 1 end
      end
      counts.volumes = counts.volumes + 1
      counts.bytes = counts.bytes + (v.size or 0)
      counts.problems = counts.problems + #v.problems
    end
    if #vm.volumes == 0 then
      vm.problems[#vm.problems + 1] = problem("ENOVOLUMES", "error", "VM has no volumes")
    elseif live_roots == 0 then
      vm.problems[#vm.problems + 1] = problem("ENOROOT", "error", roots > 0
        and "VM has only a stale ROOT volume (being deleted)" or "VM has no ROOT volume")
    elseif live_roots > 1 then
      vm.problems[#vm.problems + 1] = problem("EMULTIROOT", "error", ("VM has %d live ROOT volumes"):format(live_roots))
    else
      for _, v in ipairs(vm.volumes) do
        if v.type == "ROOT" and not STALE_ROOT[v.state] and not v.recoverable then
          vm.problems[#vm.problems + 1] = problem("EROOT", "error", "ROOT volume " .. tostring(v.name)
            .. " is not recoverable")
        end
      end
    end
    counts.problems = counts.problems + #vm.problems
  end
  table.sort(meta.detached, function(a, b) return a.id < b.id end)
  for _, v in ipairs(meta.detached) do
    counts.problems = counts.problems + #v.problems
  end
  table.sort(skipped, function(a, b)
    if a.kind ~= b.kind then return a.kind == "vm" end
    return a.id < b.id
  end)
  meta.counts = counts
  return vms, meta
end

-- JSON of the records, fast: an estate of 20,000 VMs is ~2.5 million values,
-- too many for the generic encoder (which sorts the keys of every table). The
-- key lists below are sorted once; the output is byte for byte what
-- json.encode would write (compact form), one VM at a time.
local KEYS = {
  vm = { "account", "display_name", "domain", "guest_os", "guest_os_id", "hypervisor", "id", "instance_name", "name",
    "nics", "offering", "problems", "removed", "state", "template", "type", "uuid", "volumes" },
  account = { "id", "name", "removed", "state", "type", "uuid" },
  domain = { "id", "name", "parent", "path", "removed", "uuid" },
  offering = { "cpu", "custom", "id", "name", "ram", "removed", "speed", "uuid" },
  template = { "format", "id", "name", "password_enabled", "removed", "requires_hvm", "uuid" },
  volume = { "account", "device_id", "domain", "format", "id", "name", "parent_base", "path", "pool", "pool_id",
    "problems", "recoverable", "removed", "size", "state", "template_id", "type", "uuid" },
  pool = { "host", "id", "name", "path", "removed", "type", "uuid" },
  problem = { "code", "message", "severity" },
}
local NESTED = { account = "account", domain = "domain", offering = "offering", template = "template", pool = "pool" }
M.JSON_KEYS = KEYS

local find, format, mtype = string.find, string.format, math.type
-- cjson quotes in C exactly like salvage.json, except that it writes "/" as
-- "\/": undo that (a plain find is cheap; Lua patterns over every byte are not)
local cjson_encode = require("cjson").encode
local function jstr(v)
  local r = cjson_encode(v)
  if find(r, "\\/", 1, true) then r = r:gsub("\\/", "/") end
  return r
end

local function jscalar(v)
  local t = type(v)
  if t == "string" then return jstr(v) end
  if t == "number" then
    if mtype(v) == "integer" then return format("%d", v) end
    return json.encode(v)
  end
  if t == "boolean" then return v and "true" or "false" end
  return json.encode(v)
end

-- '"key":' and ',"key":' made once
local PFX1, PFX = {}, {}
for _, list in pairs(KEYS) do
  for _, k in ipairs(list) do
    PFX1[k] = '"' .. k .. '":'
    PFX[k] = ',"' .. k .. '":'
  end
end

local encode_obj
local memo
local function encode_list(list, kind, out, n)
  local len = #list
  if len == 0 then
    n = n + 1
    out[n] = "[]"
    return n
  end
  n = n + 1
  out[n] = "["
  for i = 1, len do
    if i > 1 then
      n = n + 1
      out[n] = ","
    end
    n = encode_obj(list[i], kind, out, n)
  end
  n = n + 1
  out[n] = "]"
  return n
end

function encode_obj(t, kind, out, n)
  if type(t) ~= "table" then
    n = n + 1
    out[n] = jscalar(t)
    return n
  end
  local keys = KEYS[kind]
  local pfx = PFX1
  n = n + 1
  out[n] = "{"
  for i = 1, #keys do
    local k = keys[i]
    local v = t[k]
    if v ~= nil then
      n = n + 1
      out[n] = pfx[k]
      pfx = PFX
      local tv = type(v)
      if tv == "string" then
        n = n + 1
        out[n] = jstr(v)
      elseif tv == "number" and mtype(v) == "integer" then
        n = n + 1
        out[n] = tostring(v)
      elseif tv ~= "table" then
        n = n + 1
        out[n] = jscalar(v)
      elseif k == "problems" then
        n = encode_list(v, "problem", out, n)
      elseif k == "volumes" then
        n = encode_list(v, "volume", out, n)
      elseif NESTED[k] then
        -- shared tables (one per row) are encoded once
        local done = memo[v]
        if not done then
          local sub = {}
          done = table.concat(sub, "", 1, encode_obj(v, NESTED[k], sub, 0))
          memo[v] = done
        end
        n = n + 1
        out[n] = done
      else
        n = n + 1
        out[n] = json.encode(v)
      end
    end
  end
  n = n + 1
  out[n] = "}"
  return n
end

--- write_json(vms, write): the records as a JSON array (sorted keys, one VM a
-- line), through write(string) one VM at a time so memory stays flat.
function M.write_json(vms, write, kind)
  kind = kind or "vm"
  memo = setmetatable({}, { __mode = "k" })
  if #vms == 0 then write("[]\n") return end
  write("[\n")
  local out = {}
  for i, vm in ipairs(vms) do
    local n = encode_obj(vm, kind, out, 0)
    out[n + 1] = i < #vms and ",\n" or "\n"
    write(table.concat(out, "", 1, n + 1))
  end
  write("]\n")
end

return M
