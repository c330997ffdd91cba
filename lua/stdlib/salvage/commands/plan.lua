--- salvage plan: read the old cloud's inventory, find and check every disk chain,
-- and write the recovery plan (JSON a person can read and edit).
local args = require "salvage.args"
local cli = require "salvage.cli"
local log = require "salvage.log"
local plan = require "salvage.plan"

local spec = {
  usage = "salvage plan (--db URL | --dump FILE... | --inventory FILE) --storage ROOT... "
    .. "[--policy FILE.lua] [--force-disk NAME]... [-o plan.json] [--format json|table|csv]",
  summary = "build the recovery plan: owners, specs and checked VHD chains of every VM to recover",
  description = [[
ROOT is a directory searched recursively for <volumes.path>.vhd, or POOL_UUID=DIR to say
where the files of one old storage pool are, or POOL_UUID=lvm:IMAGE for a pool on LVM
(XenServer iSCSI/FC/local LVM SR: IscsiLUN, PreSetup, LVM): the LUN's image or block device,
read directly and never written. A VM whose root disk cannot be recovered is
kept in the plan, marked and explained. Without -o the plan is printed (JSON, or a table
with --format table).]],
  options = {
    { "db", value = "URL", help = "the old cloud's database (mariadb://user@host/cloud)" },
    { "dump", value = "FILE", multi = true,
      help = "a mysqldump of it (several: loaded in order), on a private server" },
    { "inventory", value = "FILE", help = "an inventory saved with 'salvage inventory --format json'" },
    { "storage", short = "s", value = "ROOT", multi = true,
      help = "primary storage copy: DIR, POOL_UUID=DIR or POOL_UUID=lvm:IMAGE" },
    { "policy", value = "FILE.lua", help = "policy script (filters, owner mapping, names)" },
    { "force-disk", value = "NAME", multi = true,
      help = "flatten this damaged disk (name, uuid or path) with force: unreadable parts zero-filled" },
    { "output", short = "o", value = "FILE", help = "write the plan here (JSON)" },
    { "format", value = "F", choices = { "json", "table", "csv" },
      help = "what to print (default: json, or nothing with -o)" },
  },
  positionals = { min = 0, max = 0 },
}

local M = { summary = "build a recovery plan from the old database and primary storage", spec = spec }

--- The plan in an output format: json, table or csv.
function M.render(p, format)
  if format == "table" then return plan.table(p) end
  if format == "csv" then return plan.csv(p) end
  return plan.encode(p)
end

function M.run(argv)
  local opts, err = args.parse(spec, argv)
  if not opts then cli.usage_error("plan: " .. err) end
  if opts.help then
    io.stdout:write(args.help(spec))
    return 0
  end
  local sources = (opts.db and 1 or 0) + (#opts.dump > 0 and 1 or 0) + (opts.inventory and 1 or 0)
  if sources ~= 1 then cli.usage_error("plan: give exactly one of --db, --dump or --inventory") end
  if #opts.storage == 0 then cli.usage_error("plan: give at least one --storage ROOT") end
  local policy, perr = plan.load_policy(opts.policy)
  if not policy then cli.fail(1, "policy: " .. tostring(perr)) end
  local roots, rerr = plan.parse_storage(opts.storage)
  if not roots then cli.fail(1, rerr) end
  local vms, meta, source = plan.inventory(opts, policy)
  if not vms then cli.fail(1, meta) end
  local record, rerr2 = plan.policy_record(opts.policy)
  if not record then cli.fail(1, "policy: " .. tostring(rerr2)) end
  local p, berr = plan.build(vms, { storage = roots, policy = policy, meta = meta, source = source,
    force_disks = opts.force_disk, policy_record = record })
  if not p then cli.fail(1, berr) end
  if opts.output then
    local ok, werr = plan.save(p, opts.output)
    if not ok then cli.fail(1, werr) end
    local s = p.summary
    log.info(("plan written to %s: %d VMs (%d recoverable), %d disks, %d problems"):format(
      opts.output, s.vms, s.recoverable, s.disks, s.problems))
    if opts.format then io.stdout:write(M.render(p, opts.format)) end
  else
    io.stdout:write(M.render(p, opts.format or "json"))
  end
  return 0
end

return M
