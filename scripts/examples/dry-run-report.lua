-- Shows, VM by VM, what a recovery would create in the new cloud — and why a VM cannot be recovered — creating nothing.
--
-- usage: salvage dry-run-report.lua (--db URL | --dump FILE... | --inventory FILE) --storage ROOT... --workdir DIR
local script = require "salvage.script"
local json = require "salvage.json"
local plan = require "salvage.plan"
local recover = require "salvage.recover"
local workflow = require "salvage.recover.workflow"

script.run{
  description = "What a recovery would do, per VM, without creating anything",
  usage = "salvage dry-run-report.lua (--db URL | --dump FILE... | --inventory FILE) --storage ROOT... --workdir DIR",
  options = workflow.options{ recover = true, extra = {
    { "policy", value = "FILE.lua", help = "policy script" },
  } },
  main = function(opts)
    local pol = assert(plan.load_policy(opts.policy))
    local p = workflow.plan(opts, pol)
    local client = workflow.client(opts)
    local report = recover.run(p, { client = client, zone = opts.zone, workdir = opts.workdir, dry_run = true,
      policy = pol })
    if opts.json then
      io.write(json.pretty(report))
      return 0
    end
    local by_vm = {}
    for _, a in ipairs(report.actions) do
      local k = a.vm ~= json.null and a.vm or "(estate)"
      by_vm[k] = by_vm[k] or {}
      table.insert(by_vm[k], a)
    end
    for _, vm in ipairs(p.vms) do
      print(("%s (%s%s, %s CPU %s MHz %s MB)"):format(vm.name, vm.owner.domain_path, vm.owner.account,
        tostring(vm.spec.cpu), tostring(vm.spec.speed), tostring(vm.spec.ram)))
      if not vm.recoverable then
        for _, pr in ipairs(vm.problems) do print("  cannot recover: " .. pr.message) end
      end
      for _, a in ipairs(by_vm[vm.name] or {}) do print(("  would %s: %s"):format(a.action, a.what)) end
      for _, f in ipairs(report.failed) do
        if f.name == vm.name and f.step ~= "plan" then print(("  would fail at %s: %s"):format(f.step, f.error)) end
      end
    end
    for _, s in ipairs(report.skipped) do print(("%s skipped: %s"):format(tostring(s.name), tostring(s.reason))) end
    print(("%d actions; nothing was created"):format(#report.actions))
    return 0
  end,
}
