-- Recovers the VMs of one account only (a customer at a time), leaving every other VM alone.
--
-- usage: salvage recover-one-account.lua --account NAME (--db URL | --dump FILE...) --storage ROOT... --workdir DIR
local script = require "salvage.script"
local plan = require "salvage.plan"
local workflow = require "salvage.recover.workflow"

script.run{
  description = "Plan and recover the VMs of one account",
  usage = "salvage recover-one-account.lua --account NAME (--db URL | --dump FILE...) --storage ROOT... --workdir DIR",
  options = workflow.options{ recover = true, extra = {
    { "account", value = "NAME", required = true, help = "the old account's name" },
  } },
  main = function(opts)
    local pol = assert(plan.load_policy())
    pol.accounts = { opts.account }     -- salvage.policy's vm_filter honours this option
    local base = pol.vm_filter or function() return true end
    pol.vm_filter = function(vm)
      local keep, why = base(vm)
      if keep and vm.account and vm.account.name ~= opts.account then
        return false, "account " .. tostring(vm.account.name) .. " not selected"
      end
      return keep, why
    end
    local p = workflow.plan(opts, pol)
    local report = workflow.recover(p, opts, pol)
    return #report.failed == 0 and 0 or 1
  end,
}
