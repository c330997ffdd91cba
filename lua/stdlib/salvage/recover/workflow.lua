--- The plan-then-recover workflow for scripts: common options, inventory from any
-- source, plan, recover with workers, report. The example scripts in
-- scripts/examples/ are a few lines each on top of this.
--
--   local workflow = require "salvage.recover.workflow"
--   script.run{ options = workflow.options{ recover = true }, main = function(opts)
--     local pol = policy.new{ accounts = {"peterparker"} }
--     local p = workflow.plan(opts, pol)
--     local report = workflow.recover(p, opts, pol)
--     return #report.failed == 0 and 0 or 1
--   end }
local sys = require "salvage.sys"
local cli = require "salvage.cli"
local json = require "salvage.json"
local plan = require "salvage.plan"
local recover = require "salvage.recover"

local M = {}

--- Option specs: the inventory source and storage roots, plus (recover = true)
-- what `salvage recover` takes.
function M.options(what)
  what = what or {}
  local o = {
    { "db", value = "URL", help = "the old cloud's database" },
    { "dump", value = "FILE", multi = true, help = "a mysqldump of it (several: loaded in order)" },
    { "inventory", value = "FILE", help = "an inventory saved with 'salvage inventory --format json'" },
  }
  if what.storage ~= false then
    o[#o + 1] = { "storage", short = "s", value = "ROOT", multi = true, help = "primary storage: DIR or POOL_UUID=DIR" }
  end
  if what.recover then
    o[#o + 1] = { "profile", value = "NAME", help = "API credentials profile (salvage config; default: environment)" }
    o[#o + 1] = { "api-profile", value = "NAME", help = "old name of --profile" }
    o[#o + 1] = { "zone", value = "ZONE", default = "Zone1", help = "zone in the new cloud" }
    o[#o + 1] = { "workdir", value = "DIR", required = true, help = "flattened disks, journal, report" }
    o[#o + 1] = { "workers", short = "j", value = "N", type = "integer", default = 1, help = "VMs at a time" }
    o[#o + 1] = { "dry-run", short = "n", help = "create nothing; print what would be done" }
    o[#o + 1] = { "json", help = "print the report as JSON" }
    o[#o + 1] = { "poll-interval", value = "S", type = "number", help = "seconds between polls" }
  end
  for _, extra in ipairs(what.extra or {}) do o[#o + 1] = extra end
  return o
end

--- Inventory VMs (and meta) from --db, --dump or --inventory, filtered by the policy.
function M.inventory(opts, policy)
  local sources = (opts.db and 1 or 0) + (#(opts.dump or {}) > 0 and 1 or 0) + (opts.inventory and 1 or 0)
  if sources ~= 1 then cli.usage_error("give exactly one of --db, --dump or --inventory") end
  local vms, meta, source = plan.inventory(opts, policy)
  if not vms then cli.fail(1, meta) end
  return vms, meta, source
end

--- The plan for opts' sources and storage under `policy`.
function M.plan(opts, policy)
  if #(opts.storage or {}) == 0 then cli.usage_error("give at least one --storage ROOT") end
  local roots, rerr = plan.parse_storage(opts.storage)
  if not roots then cli.fail(1, rerr) end
  local vms, meta, source = M.inventory(opts, policy)
  local p, err = plan.build(vms, { storage = roots, policy = policy, meta = meta, source = source })
  if not p then cli.fail(1, err) end
  return p
end

--- client(opts) -> a client of the new cloud for opts.api_profile (fails the script on error).
function M.client(opts)
  opts.api_profile = opts.profile or opts.api_profile
  local client, err = require("salvage.cloudstack.api").from_profile(opts.api_profile,
    { poll_interval = opts.poll_interval })
  if not client then cli.fail(1, "api: " .. tostring(err)) end
  return client
end

--- Recover `p` as `salvage recover` would (workers run `salvage recover` on the
-- plan saved in the work directory, with opts.policy when it names a file);
-- prints the report; returns it.
function M.recover(p, opts, policy)
  local workdir = opts.workdir:gsub("/+$", "")
  if not opts.dry_run then sys.mkdir(workdir) end   -- a dry run writes nothing
  workdir = sys.realpath(workdir) or workdir
  local plan_file = workdir .. "/plan.json"
  if not opts.dry_run then assert(plan.save(p, plan_file)) end
  local client = M.client(opts)
  local report = recover.run(p, {
    client = client, zone = opts.zone, workdir = workdir, workers = opts.workers or 1,
    dry_run = opts.dry_run, policy = policy, only = opts.only, poll_interval = opts.poll_interval,
    worker_argv = recover.worker_argv { plan = plan_file, zone = opts.zone, workdir = workdir,
      policy = type(opts.policy) == "string" and (sys.realpath(opts.policy) or opts.policy) or nil,
      api_profile = opts.api_profile, poll_interval = opts.poll_interval },
  })
  if opts.json then io.stdout:write(json.pretty(report)) else io.stdout:write(recover.table(report)) end
  return report
end

return M
