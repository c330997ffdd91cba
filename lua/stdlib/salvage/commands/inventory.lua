--- salvage inventory: the VMs of a dead CloudStack, their owners, specs and disks.
local args = require "salvage.args"
local cli = require "salvage.cli"
local db = require "salvage.db"
local inventory = require "salvage.cloudstack.inventory"
local log = require "salvage.log"
local policy = require "salvage.policy"

local spec = {
  usage = "salvage inventory (--db URL | --dump FILE) [--policy FILE.lua] [--format table|json|csv]",
  summary = "List the recoverable user VMs of a CloudStack database, with owners, specs and disks",
  description = [[
Reads the old cloud's database (CloudStack 4.2 to 4.22) and prints one line per
VM and volume, like the seed article's query but without its defects, then a
summary. --dump starts a private, throwaway MariaDB server loaded with a
mysqldump/mariadb-dump file (plain, gzip, xz, bzip2 or zstd) and stops it after.
The password of --db comes from the URL, $SALVAGE_DB_PASSWORD or an option file
(mariadb://user@host/cloud?option_file=/root/.my.cnf).]],
  options = {
    { "db", value = "URL", help = "mariadb://user[:pass]@host[:port]/cloud[?socket=PATH&option_file=FILE]" },
    { "dump", value = "FILE", help = "a SQL dump of the cloud database (plain or compressed)" },
    { "database", value = "NAME", help = "the cloud database's name (default: the URL's, else cloud)" },
    { "policy", value = "FILE.lua", help = "a policy script (salvage.policy overrides)" },
    { "include-destroyed", help = "keep VMs in state Destroyed that are not removed yet" },
    { "include-detached", help = "list data volumes attached to no VM" },
    { "format", value = "F", choices = { "table", "json", "csv" }, default = "table", help = "output format" },
  },
  positionals = { min = 0, max = 0 },
  epilog = [[
Examples:
  salvage inventory --db 'mariadb://cloud@db1/cloud'
  salvage inventory --dump cloud-2015-11-17.sql.gz --format json > inventory.json
  salvage inventory --dump cloud.sql --policy customer.lua --format csv]],
}

local M = { summary = "list the recoverable VMs of an old CloudStack database (--db URL or --dump FILE)" }

-- One line stays one line: control characters are shown escaped (and so is
-- the backslash, so that a name containing "\n" stays distinguishable).
local function clean(v)
  if v == nil then return "-" end
  local s = tostring(v)
  return (s:gsub("[%c\127\\]", function(c)
    if c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" elseif c == "\t" then return "\\t" elseif c == "\r" then return "\\r" end
    return ("\\x%02x"):format(c:byte())
  end))
end

local function width(s)
  return utf8.len(s) or #s
end

local COLUMNS = { "vmid", "vmname", "instance", "account", "domain", "cpu", "speed", "ram", "volid", "volname",
  "size", "path", "type", "state", "problems" }

local function problem_codes(list)
  local c = {}
  for _, p in ipairs(list or {}) do c[#c + 1] = p.code end
  return table.concat(c, ",")
end

-- Call fn(row) for each output line (one per VM and volume, then detached
-- volumes); rows are built one at a time so an estate is never held twice.
local function each_line(vms, meta, fn)
  local function add(vm, vol)
    local probs = {}
    if vm and #vm.problems > 0 then probs[#probs + 1] = problem_codes(vm.problems) end
    if vol and #vol.problems > 0 then probs[#probs + 1] = problem_codes(vol.problems) end
    local owner = vm or vol
    fn {
      vmid = vm and vm.id, vmname = vm and vm.name, instance = vm and vm.instance_name,
      account = owner.account and owner.account.name, domain = owner.domain and owner.domain.path,
      cpu = vm and vm.offering and vm.offering.cpu, speed = vm and vm.offering and vm.offering.speed,
      ram = vm and vm.offering and vm.offering.ram,
      volid = vol and vol.id, volname = vol and vol.name, size = vol and vol.size, path = vol and vol.path,
      type = vol and vol.type, state = vol and vol.state,
      problems = #probs > 0 and table.concat(probs, ",") or nil,
    }
  end
  for _, vm in ipairs(vms) do
    if #vm.volumes == 0 then add(vm, nil) end
    for _, vol in ipairs(vm.volumes) do add(vm, vol) end
  end
  for _, vol in ipairs(meta.detached or {}) do add(nil, vol) end
end

local function summary(meta)
  local c = meta.counts
  return ("%d VMs, %d volumes, %d bytes, %d problems, %d skipped, %d detached volumes (CloudStack %s)"):format(
    c.vms, c.volumes, c.bytes, c.problems, #meta.skipped, #(meta.detached or {}), tostring(meta.version))
end

-- Two passes (widths, then lines) instead of holding every cell: the table of
-- 20,000 VMs then needs no more memory than their records.
local function write_table(write, vms, meta)
  local widths = {}
  for i, c in ipairs(COLUMNS) do widths[i] = #c end
  each_line(vms, meta, function(row)
    for i, c in ipairs(COLUMNS) do
      local w = width(clean(row[c]))
      if w > widths[i] then widths[i] = w end
    end
  end)
  local n = #COLUMNS
  local function line(get)
    local parts = {}
    for i = 1, n do
      local v = get(i)
      parts[i] = i == n and v or v .. string.rep(" ", widths[i] - width(v))
    end
    write(table.concat(parts, "  ") .. "\n")
  end
  line(function(i) return COLUMNS[i] end)
  each_line(vms, meta, function(row)
    line(function(i) return clean(row[COLUMNS[i]]) end)
  end)
  write(summary(meta) .. "\n")
  for _, sk in ipairs(meta.skipped) do
    write(("skipped %s %s %s: %s\n"):format(sk.kind, tostring(sk.id), clean(sk.name), clean(sk.reason)))
  end
end

local csv_field = require("salvage.columns").csv_field

local function write_csv(write, vms, meta)
  local hdr = {}
  for i, c in ipairs(COLUMNS) do hdr[i] = csv_field(c) end
  write(table.concat(hdr, ",") .. "\n")
  each_line(vms, meta, function(row)
    local f = {}
    for i, c in ipairs(COLUMNS) do f[i] = csv_field(row[c]) end
    write(table.concat(f, ",") .. "\n")
  end)
end

--- Open the database the options name: conn, database | raises cli.fail.
function M.open(opts)
  if opts.db and opts.dump then cli.usage_error("inventory: give --db or --dump, not both") end
  if not opts.db and not opts.dump then cli.usage_error("inventory: give --db URL or --dump FILE (see --help)") end
  if opts.dump then
    if not require("salvage.sys").stat(opts.dump) then cli.fail(1, "inventory: " .. opts.dump .. ": no such file") end
    log.info("starting a private MariaDB server for the dump", { dump = opts.dump })
    local conn, err = db.ephemeral { dump = opts.dump, database = opts.database or "cloud" }
    if not conn then cli.fail(1, "inventory: " .. tostring(err)) end
    return conn, require("salvage.db.ephemeral").info(conn).database
  end
  local parsed, perr = db.parse_url(opts.db)
  if not parsed then cli.fail(2, "inventory: " .. tostring(perr)) end
  local conn, err = db.connect(opts.db)
  if not conn then cli.fail(1, "inventory: " .. log.scrub(tostring(err))) end
  return conn, opts.database or parsed.database or "cloud"
end

function M.run(argv)
  local opts, err = args.parse(spec, argv)
  if not opts then cli.usage_error("inventory: " .. err) end
  if opts.help then
    io.stdout:write(args.help(spec))
    return 0
  end
  local pol
  if opts.policy then
    local perr
    pol, perr = policy.load(opts.policy)
    if not pol then cli.fail(2, "inventory: " .. tostring(perr)) end
  else
    pol = policy.new()
  end
  if opts.include_destroyed then pol.include_destroyed = true end
  if opts.include_detached then pol.include_detached = true end

  local conn <close>, database = M.open(opts)
  local vms, meta = inventory.load(conn, { policy = pol, database = database })
  if not vms then cli.fail(1, tostring(meta)) end
  for _, s in ipairs(meta.skipped) do
    log.debug("skipped", { kind = s.kind, id = s.id, name = s.name, reason = s.reason })
  end

  if opts.format == "json" then
    -- streamed: an estate of 20,000 VMs would be ~60 MB as one string
    local stdout = io.stdout
    inventory.write_json(vms, function(x) stdout:write(x) end)
    return 0
  end
  local stdout = io.stdout
  local function write(x) stdout:write(x) end
  if opts.format == "csv" then
    write_csv(write, vms, meta)
  else
    write_table(write, vms, meta)
  end
  return 0
end

return M
