-- Recovers customer "SPDM Inc" renamed: domain /SPDM Inc/ becomes /Spider Industries/, accounts get a suffix.
--
-- usage: salvage rename-customer.lua (--db URL | --dump FILE...) --storage ROOT... --workdir DIR [--suffix -spider]
local script = require "salvage.script"
local plan = require "salvage.plan"
local workflow = require "salvage.recover.workflow"

local FROM, TO = "/SPDM Inc/", "/Spider Industries/"

script.run{
  description = "Recover with domain SPDM Inc renamed Spider Industries and account names suffixed",
  usage = "salvage rename-customer.lua (--db URL | --dump FILE...) --storage ROOT... --workdir DIR [--suffix S]",
  options = workflow.options{ recover = true, extra = {
    { "suffix", value = "S", default = "-spider", help = "appended to the customer's account names" },
    { "plan-only", help = "print the plan as a table and stop" },
  } },
  main = function(opts)
    local pol = assert(plan.load_policy())
    local default_map = pol.account_map
    pol.account_map = function(account, domain)
      local m = default_map(account, domain)
      -- the customer's domain and everything below it move; their accounts are renamed
      if domain and domain.path and domain.path:sub(1, #FROM) == FROM then
        m.domain_path = TO .. domain.path:sub(#FROM + 1)
        m.account = account.name .. opts.suffix
      end
      return m
    end
    local p = workflow.plan(opts, pol)
    if opts.plan_only then
      io.write(plan.table(p))
      return 0
    end
    local report = workflow.recover(p, opts, pol)
    return #report.failed == 0 and 0 or 1
  end,
}
