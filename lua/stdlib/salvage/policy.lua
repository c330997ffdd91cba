--- The recovery policy: every decision about WHAT is recovered and HOW it is
-- named and owned, as Lua hooks with defaults that behave like the seed article
-- (user VMs only; not Expunging, Expunged, Destroyed or Error VMs; not Expunged,
-- Expunging, Destroy or Destroying volumes). The inventory, the plan and the
-- recovery call these hooks and nothing else decides.
--
--   local policy = require "salvage.policy"
--   local p = policy.new{ include_destroyed = true, accounts = {"peterparker"} }
--   local p = assert(policy.load("customer.lua"))   -- file returns overrides or function(p)
--
-- Options (plain fields):
--   include_destroyed  keep VMs in state Destroyed that are not removed (default false)
--   include_detached   report data volumes attached to no VM (default false)
--   accounts           list of account names to select (default: all)
--   domains            list of domain paths ("/SPDM Inc/", a subtree) or names to select
--   name_prefix        prefix for generated template names (default "recovered-")
--   adopt_untagged     adopt a same-named resource without the salvage-source tag
--                      in the new cloud (default false: reported as a conflict)
-- Any other field is an error (a misspelled hook must not be ignored).
-- Hooks (plain functions, called without self; an override can call the
-- default it replaces as `p.defaults.<hook>(...)`, which honours p's options):
--   vm_filter(vm)                 -> keep, reason
--   volume_filter(vol, vm)        -> keep, reason   (vm is nil for a detached volume)
--   account_map(account, domain)  -> {domain_path, account, type}
--   template_name(vm)             -> name of the template made from the ROOT disk
--   volume_name(vol, vm)          -> name of the uploaded data volume
--   offering_for(vm, offerings)   -> an existing offering (same cpu/speed/ram) or nil = create
--   network_for(vm, account)      -> network id or nil = the account's default network
--   password_for(account)         -> clear-text password or nil = generate one
--   start_after_import(vm)        -> boolean
--   addresses_for(vm)             -> {ip =, mac =} to keep (deployVirtualMachine ipaddress/macaddress,
--                                    importVm where listApis shows it takes them) or nil; default: the
--                                    old default NIC's, when network_for mapped the VM's network
--   prepare_guest(vm, disk_path)  -> nil | text of what changed | false, why (refuse the import);
--                                    runs on the written root qcow2 before a zero-copy KVM import
--   force_disk(vol, vm)           -> boolean: flatten a damaged disk with force (zero-fill)
local M = {}

local VM_STATES_EXCLUDED = { Expunging = true, Expunged = true, Destroyed = true, Error = true }
local VOLUME_STATES_EXCLUDED = { Expunged = true, Expunging = true, Destroy = true, Destroying = true }
M.VM_STATES_EXCLUDED = VM_STATES_EXCLUDED
M.VOLUME_STATES_EXCLUDED = VOLUME_STATES_EXCLUDED

local function listed(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

local function domain_selected(list, domain)
  if not domain then return false end
  for _, d in ipairs(list) do
    if d == domain.name or d == domain.path then return true end
    -- a path selects its whole subtree ("/SPDM Inc/" keeps "/SPDM Inc/Dev/")
    if type(domain.path) == "string" and d:sub(-1) == "/" and domain.path:sub(1, #d) == d then return true end
  end
  return false
end

-- The defaults close over the policy they belong to, so options set on it
-- (include_destroyed, accounts, ...) steer them, and an override can call
-- `p.defaults.vm_filter(vm)` and then add its own rule.
local function make_defaults(p)
  local d = {}

  function d.vm_filter(vm)
    if vm.type and vm.type ~= "User" then return false, "not a user VM (type " .. tostring(vm.type) .. ")" end
    if vm.removed then return false, "removed on " .. tostring(vm.removed) end
    if VM_STATES_EXCLUDED[vm.state] and not (vm.state == "Destroyed" and p.include_destroyed) then
      return false, "state " .. tostring(vm.state)
    end
    if p.accounts and not listed(p.accounts, vm.account and vm.account.name) then
      return false, "account " .. tostring(vm.account and vm.account.name) .. " not selected"
    end
    if p.domains and not domain_selected(p.domains, vm.domain) then
      return false, "domain " .. tostring(vm.domain and vm.domain.path) .. " not selected"
    end
    return true
  end

  function d.volume_filter(vol, vm)
    if vm == nil and not p.include_detached then return false, "detached (attached to no VM)" end
    if vol.removed then return false, "removed on " .. tostring(vol.removed) end
    if VOLUME_STATES_EXCLUDED[vol.state] then return false, "state " .. tostring(vol.state) end
    if vm == nil then
      if p.accounts and not listed(p.accounts, vol.account and vol.account.name) then
        return false, "account " .. tostring(vol.account and vol.account.name) .. " not selected"
      end
      if p.domains and not domain_selected(p.domains, vol.domain) then
        return false, "domain " .. tostring(vol.domain and vol.domain.path) .. " not selected"
      end
    end
    return true
  end

  function d.account_map(account, domain)
    return { domain_path = domain and domain.path or "/", account = account.name, type = account.type }
  end

  function d.template_name(vm)
    return (p.name_prefix or "recovered-") .. tostring(vm.name) .. "-root"
  end

  function d.volume_name(vol)
    return vol.name
  end

  function d.offering_for(vm, offerings)
    local want = vm.offering or {}
    for _, o in ipairs(offerings or {}) do
      local cpu = o.cpu or o.cpunumber
      local speed = o.speed or o.cpuspeed
      local ram = o.ram or o.memory
      if cpu == want.cpu and speed == want.speed and ram == want.ram then return o end
    end
    return nil
  end

  function d.network_for() return nil end
  function d.password_for() return nil end
  function d.start_after_import() return false end

  -- Keep the old default NIC's MAC and IPv4 only when the VM goes to a network mapped for it
  -- (network_for gave one: the plan's vm.network); in any other network they mean nothing.
  function d.addresses_for(vm)
    if vm.network == nil or type(vm.nics) ~= "table" then return nil end
    local nic = vm.nics[1]
    for _, n in ipairs(vm.nics) do if n.default then nic = n break end end
    if not nic or (nic.ip == nil and nic.mac == nil) then return nil end
    return { ip = nic.ip, mac = nic.mac }
  end

  -- Runs on the written root disk before a zero-copy import; the default changes nothing
  -- (scripts/examples/kvm-prepare-guest.lua runs virt-v2v-in-place).
  function d.prepare_guest() return nil end
  function d.force_disk() return false end
  return d
end

M.HOOKS = {
  "vm_filter", "volume_filter", "account_map", "template_name", "volume_name",
  "offering_for", "network_for", "password_for", "start_after_import", "force_disk", "addresses_for",
  "prepare_guest",
}

M.OPTIONS = { "include_destroyed", "include_detached", "accounts", "domains", "name_prefix", "adopt_untagged" }

local KNOWN = { defaults = true }
for _, n in ipairs(M.HOOKS) do KNOWN[n] = true end
for _, n in ipairs(M.OPTIONS) do KNOWN[n] = true end

local function check(p)
  for k in pairs(p) do
    if not KNOWN[k] then
      return nil, ("unknown policy field '%s' (hooks: %s; options: %s)"):format(tostring(k),
        table.concat(M.HOOKS, ", "), table.concat(M.OPTIONS, ", "))
    end
  end
  for _, name in ipairs(M.HOOKS) do
    if type(p[name]) ~= "function" then
      return nil, ("policy hook %s must be a function, got %s"):format(name, type(p[name]))
    end
  end
  return p
end

--- new(overrides) -> policy with every hook; overrides may set options and replace hooks.
-- Raises when an override of a hook is not a function (a programming error).
function M.new(overrides)
  local p = { include_destroyed = false, include_detached = false }
  for k, v in pairs(overrides or {}) do p[k] = v end
  p.defaults = make_defaults(p)
  for _, name in ipairs(M.HOOKS) do
    if p[name] == nil then p[name] = p.defaults[name] end
  end
  local ok, err = check(p)
  if not ok then error(err, 2) end
  return p
end

--- keep_vm(policy, vm) -> keep, reason: the one place a policy's vm_filter is
-- applied (inventory from a database or a file, plan.build with filter_vms).
function M.keep_vm(p, vm)
  local f = type(p) == "table" and p.vm_filter or M.default.vm_filter
  local keep, reason = f(vm)
  if keep then return true end
  return false, reason or "excluded by the policy's vm_filter"
end

--- The default policy (what the seed article does).
M.default = M.new()

--- load(file) -> policy | nil, message
-- The file returns a table of overrides, or a function(policy) that edits the
-- defaults in place (its return value, when a table, replaces the policy).
function M.load(file)
  local chunk, err = loadfile(file, "t")
  if not chunk then return nil, "policy: " .. tostring(err) end
  local ok, r = pcall(chunk)
  if not ok then return nil, ("policy %s: %s"):format(file, tostring(r)) end
  if type(r) == "table" then
    local okn, p = pcall(M.new, r)
    if not okn then return nil, ("policy %s: %s"):format(file, tostring(p)) end
    return p
  elseif type(r) == "function" then
    local p = M.new()
    local okf, r2 = pcall(r, p)
    if not okf then return nil, ("policy %s: %s"):format(file, tostring(r2)) end
    if type(r2) == "table" and r2 ~= p then
      local okn, p2 = pcall(M.new, r2)
      if not okn then return nil, ("policy %s: %s"):format(file, tostring(p2)) end
      return p2
    end
    local okc, cerr = check(p)
    if not okc then return nil, ("policy %s: %s"):format(file, cerr) end
    return p
  end
  return nil, ("policy %s: must return a table of overrides or a function(policy), got %s"):format(file, type(r))
end

return M
