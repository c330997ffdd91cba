--- The simulator's state dump (salvage.cloudstack.simulator s:state(), or GET
-- /_sim/state) as a few tables for people: what the recovery created.
local json = require "salvage.json"
local columns = require "salvage.columns"
local plan = require "salvage.plan"

local M = {}

local function table_text(rows)
  return columns.text(rows, { indent = "  " })
end

local function s(v)
  if v == nil or v == json.null then return "-" end
  return tostring(v)
end

--- state(dump | json text) -> text
function M.state(st)
  if type(st) == "string" then st = assert(json.decode(st)) end
  local out = {}
  local rows = { { "DOMAIN", "PATH" } }
  for _, d in ipairs(st.domains or {}) do rows[#rows + 1] = { s(d.name), s(d.path) } end
  out[#out + 1] = "domains:\n" .. table_text(rows)
  rows = { { "ACCOUNT", "DOMAIN", "TYPE" } }
  for _, a in ipairs(st.accounts or {}) do
    rows[#rows + 1] = { s(a.name), s(a.domainpath or a.domain), s(a.accounttype) }
  end
  out[#out + 1] = "accounts:\n" .. table_text(rows)
  rows = { { "TEMPLATE", "OWNER", "READY", "OS TYPE", "HVM", "PASSWORD", "VIRTUAL SIZE", "UPLOADED SHA-256" } }
  for _, t in ipairs(st.templates or {}) do
    local up = type(t.upload) == "table" and t.upload or {}
    rows[#rows + 1] = { s(t.name), s(t.domainpath or t.domain) .. "/" .. s(t.account), s(t.isready), s(t.ostypename),
      s(t.requireshvm), s(t.passwordenabled), s(up.virtualsize), up.sha256 and up.sha256:sub(1, 16) .. "..." or "-" }
  end
  out[#out + 1] = "templates:\n" .. table_text(rows)
  rows = { { "VM", "DISPLAY NAME", "OWNER", "OFFERING", "CPU", "MHZ", "RAM", "STATE", "TEMPLATE" } }
  for _, v in ipairs(st.vms or {}) do
    rows[#rows + 1] = { s(v.name), s(v.displayname), s(v.domainpath or v.domain) .. "/" .. s(v.account),
      s(v.serviceofferingname), s(v.cpunumber), s(v.cpuspeed), s(v.memory), s(v.state), s(v.templatename) }
  end
  out[#out + 1] = "virtual machines:\n" .. table_text(rows)
  rows = { { "VOLUME", "TYPE", "OWNER", "VM", "DEVICE", "SIZE", "STATE", "UPLOADED SHA-256" } }
  for _, v in ipairs(st.volumes or {}) do
    local up = type(v.upload) == "table" and v.upload or {}
    rows[#rows + 1] = { s(v.name), s(v.type), s(v.domainpath or v.domain) .. "/" .. s(v.account), s(v.vmname),
      s(v.deviceid),
      v.size and plan.human(v.size) or "-", s(v.state), up.sha256 and up.sha256:sub(1, 16) .. "..." or "-" }
  end
  out[#out + 1] = "volumes:\n" .. table_text(rows)
  local calls = {}
  for k, n in pairs(st.calls or {}) do calls[#calls + 1] = ("%s=%s"):format(k, tostring(n)) end
  table.sort(calls)
  out[#out + 1] = "API calls: " .. table.concat(calls, " ")
  return table.concat(out, "\n\n") .. "\n"
end

return M
