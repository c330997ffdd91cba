-- luacheck: globals TOP CLOUDSTACK
-- Test estates for the db/inventory specs: one private MariaDB server per spec
-- file, one database per CloudStack release (cloud_4_5_2, ...), loaded with the
-- real schema, the sample estate and tests/db/edge-cases.sql.
--
-- The sample estate exists for 4.5.2 and 4.22.1 (data/cloudstack, tests/fixtures/cloudstack). For
-- 4.19.1 and 4.20.1 it is derived from seed-4.22.1.sql: the details table gets
-- its pre-4.21 name (user_vm_details) and the version rows stop at the release.
-- Every column that seed uses exists in those schemas (4.17+ layout). Their
-- schema files have no template_spool_ref table, so its rows are left out
-- (and the inventory must cope without base copies).
local db = require "salvage.db"
local ephemeral = require "salvage.db.ephemeral"

local M = {}

M.VERSIONS = { "4.5.2", "4.19.1", "4.20.1", "4.22.1" }

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

function M.shared(name) return CLOUDSTACK(name) end

-- the details table of a release
function M.details_table(v)
  local major, minor = v:match("^(%d+)%.(%d+)")
  if tonumber(major) == 4 and tonumber(minor) >= 21 then return "vm_instance_details" end
  return "user_vm_details"
end

--- A private server (the connection owns it). Close it in teardown.
function M.server()
  return db.ephemeral { timeout = 30 }
end

local function tmpdir(conn) return ephemeral.info(conn).dir end

--- The sample estate for release v (a file path).
function M.seed_file(conn, v)
  local ok, own = pcall(M.shared, "seed-" .. v .. ".sql")
  if ok then return own end
  local s = read(M.shared("seed-4.22.1.sql"))
  s = s:gsub("`vm_instance_details`", "`" .. M.details_table(v) .. "`")
  if not read(M.shared("schema-" .. v .. ".sql")):find("CREATE TABLE `template_spool_ref`", 1, true) then
    s = s:gsub("INSERT INTO `template_spool_ref`.-;\n", "")
  end
  local last
  for id, ver in s:gmatch("%((%d+), '([%d%.]+)', '[^']*', 'Complete'%)") do
    if ver == v or ver == v .. ".0" then last = tonumber(id) end
  end
  assert(last, "no version row for " .. v .. " in seed-4.22.1.sql")
  s = s .. ("\nDELETE FROM `version` WHERE `id` > %d;\n"):format(last)
  return write(tmpdir(conn) .. "/seed-" .. v .. ".sql", s)
end

function M.edge_file(conn, v)
  local s = read(TOP .. "/tests/db/edge-cases.sql"):gsub("@DETAILS@", M.details_table(v))
  return write(tmpdir(conn) .. "/edge-" .. v .. ".sql", s)
end

--- Load release v (schema + seed [+ edge cases]) into a fresh database; returns its name.
function M.load(conn, v, opts)
  opts = opts or {}
  local name = "cloud_" .. v:gsub("%.", "_") .. (opts.edge and "_edge" or "")
  local files = { M.shared("schema-" .. v .. ".sql"), M.seed_file(conn, v) }
  if opts.edge then files[#files + 1] = M.edge_file(conn, v) end
  for _, f in ipairs(opts.extra or {}) do files[#files + 1] = f end
  assert(conn:exec("DROP DATABASE IF EXISTS " .. ephemeral.quote_name(name)))
  assert(ephemeral.load(conn, files, name))
  return name
end

return M
