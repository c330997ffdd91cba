-- Lists the user VMs of the old cloud with owner, spec and disks, like the seed article's query (without its bugs).
--
-- usage: salvage inventory.lua (--db URL | --dump FILE... | --inventory FILE) [--policy FILE.lua] [--json]
local script = require "salvage.script"
local json = require "salvage.json"
local plan = require "salvage.plan"
local workflow = require "salvage.recover.workflow"

script.run{
  description = "List the recoverable VMs of the old cloud: owner, CPU/RAM, disks",
  usage = "salvage inventory.lua (--db URL | --dump FILE... | --inventory FILE) [--policy FILE.lua] [--json]",
  options = workflow.options{ storage = false, extra = {
    { "policy", value = "FILE.lua", help = "policy script (filters)" },
    { "json", help = "the VM records as JSON" },
  } },
  main = function(opts)
    local pol = assert(plan.load_policy(opts.policy))
    local vms, meta = workflow.inventory(opts, pol)
    if opts.json then
      io.write(json.pretty(json.array(vms)))
      return 0
    end
    local nvol, bytes = 0, 0
    print(("%-5s %-10s %-12s %-26s %3s %5s %6s  %-10s %-8s %12s  %s"):format(
      "VMID", "VM", "ACCOUNT", "DOMAIN", "CPU", "MHZ", "RAM", "VOLUME", "TYPE", "SIZE", "PATH"))
    for _, vm in ipairs(vms) do
      local of = vm.offering or {}
      for _, v in ipairs(vm.volumes or {}) do
        nvol = nvol + 1
        bytes = bytes + (v.size or 0)
        print(("%-5s %-10s %-12s %-26s %3s %5s %6s  %-10s %-8s %12s  %s"):format(
          vm.id, vm.name, vm.account and vm.account.name or "?", vm.domain and vm.domain.path or "?",
          tostring(of.cpu), tostring(of.speed), tostring(of.ram), v.name, v.type, tostring(v.size), tostring(v.path)))
      end
    end
    print(("%d VMs, %d volumes, %s, %d skipped"):format(#vms, nvol, plan.human(bytes), #((meta or {}).skipped or {})))
    return 0
  end,
}
