-- Recovers every VM the default policy keeps: plan from the old database and storage, then import into the new cloud.
--
-- usage: salvage recover-all.lua (--db URL | --dump FILE...) --storage ROOT... --workdir DIR [--zone Z] [--workers N]
local script = require "salvage.script"
local plan = require "salvage.plan"
local workflow = require "salvage.recover.workflow"

script.run{
  description = "Plan and recover every VM of the old cloud into the new one",
  usage = "salvage recover-all.lua (--db URL | --dump FILE...) --storage ROOT... --workdir DIR [--workers N]",
  options = workflow.options{ recover = true, extra = {
    { "policy", value = "FILE.lua", help = "policy script" },
  } },
  main = function(opts)
    local pol = assert(plan.load_policy(opts.policy))
    local p = workflow.plan(opts, pol)
    local report = workflow.recover(p, opts, pol)
    return #report.failed == 0 and 0 or 1
  end,
}
