-- The census of a recovery in the simulator's state dump: what the issue's "done
-- when" counts. Used by the trust specs and by bench/kill.sh (dofile'd).
--
--   local census = dofile(TOP .. "/tests/lua/recover_census.lua")
--   local c = census.count(sim:state(), { workdir = work, vms = 3 })
--   -- c.duplicates, c.dead, c.strays, c.mismatches, c.missing, c.problems (texts)
local M = {}

local TAG = "salvage-source"

local function tag_of(r)
  for _, t in ipairs(r.tags or {}) do if t.key == TAG then return t.value end end
end

-- Is a resource dead (a leftover that a successful run must not leave)?
local function dead(kind, r)
  local st = tostring(r.state or "")
  if kind == "template" then
    if r.isready then return false end
    return st == "NotUploaded" or st == "UploadError" or st == "UploadAbandoned" or st == "Inactive"
      or tostring(r.status or ""):lower():find("error") ~= nil
  elseif kind == "volume" then
    return st == "NotUploaded" or st == "UploadError" or st == "UploadAbandoned" or st == "Error"
  end
  return st == "Error"
end
M.dead = dead

local function sha256_file(path)
  local ok, crypto = pcall(require, "salvage.crypto")
  if not ok then return nil end
  return crypto.sha256_file(path)
end

--- count(state, opts) -> census. opts.workdir and opts.plan: compare every
-- upload with the flattened disk it came from (the run kept them: --keep-disks),
-- by the journal; opts.vms: the number of VMs expected.
function M.count(st, opts)
  opts = opts or {}
  local c = { duplicates = 0, dead = 0, strays = 0, mismatches = 0, missing = 0, problems = {} }
  local function problem(kind, fmt, ...)
    c[kind] = c[kind] + 1
    c.problems[#c.problems + 1] = kind .. ": " .. fmt:format(...)
  end
  local by_tag = {}
  for kind, list in pairs { template = st.templates, vm = st.vms, volume = st.volumes } do
    for _, r in ipairs(list) do
      local user = kind ~= "volume" or r.type == "DATADISK"
      if user then
        if dead(kind, r) then problem("dead", "%s %s (%s) is %s", kind, r.name, r.id, tostring(r.state)) end
        local t = tag_of(r)
        if not t then
          problem("strays", "%s %s (%s) has no %s tag", kind, r.name, r.id, TAG)
        elseif not dead(kind, r) then
          local k = kind .. ":" .. t
          if by_tag[k] then problem("duplicates", "%s for %s twice (%s, %s)", kind, t, by_tag[k].id, r.id) end
          by_tag[k] = r
        end
      end
    end
  end
  local live_vms = 0
  for _, v in ipairs(st.vms) do if not dead("vm", v) then live_vms = live_vms + 1 end end
  if opts.vms and live_vms ~= opts.vms then
    problem("missing", "%d live VMs, want %d", live_vms, opts.vms)
  end
  if opts.workdir then M.compare(st, opts.workdir, problem, opts.plan) end
  return c
end

-- Each live upload against the flattened file its journal says it came from
-- (the root disk is the plan's first disk of the VM).
function M.compare(st, work, problem, p)
  local json = require "salvage.json"
  local f = io.open(work .. "/journal.jsonl", "rb")
  if not f or not p then
    if f then f:close() end
    return
  end
  local root = {}
  for _, vm in ipairs(p.vms) do root[tostring(vm.id)] = vm.disks[1] and tostring(vm.disks[1].id) end
  local flat, done = {}, {}
  for line in f:lines() do
    local r = json.decode(line)
    if type(r) == "table" and type(r.step) == "string" and type(r.data) == "table" then
      local disk = r.step:match("^flatten:(.+)$")
      if disk then flat[tostring(r.vm) .. ":" .. disk] = r.data.file end
      if r.step == "done" then done[tostring(r.vm)] = r.data end
    end
  end
  f:close()
  local files = {}      -- new id -> flattened file
  for vm, d in pairs(done) do
    if d.template_id then files[d.template_id] = flat[vm .. ":" .. tostring(root[vm])] end
    for _, v in ipairs(d.volumes or {}) do
      if v.new_id then files[v.new_id] = flat[vm .. ":" .. tostring(v.old_id)] end
    end
  end
  for _, list in ipairs { st.templates, st.volumes } do
    for _, x in ipairs(list) do
      local want = files[x.id]
      if want and x.upload and x.upload.sha256 then
        local sum = sha256_file(want)
        if sum and sum ~= x.upload.sha256 then
          problem("mismatches", "%s %s holds other bytes than %s", x.name, x.id, want)
        end
      end
    end
  end
end

return M
