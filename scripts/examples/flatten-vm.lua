-- Flattens every disk chain of one VM of a plan into standalone VHDs (sources untouched) and verifies them.
--
-- usage: salvage flatten-vm.lua PLAN.json --vm NAME -o DIR
local script = require "salvage.script"
local plan = require "salvage.plan"
local progress = require "salvage.progress"

script.run{
  description = "Flatten one VM's disks from a plan into DIR and check them",
  usage = "salvage flatten-vm.lua PLAN.json --vm NAME -o DIR",
  options = {
    { "vm", value = "NAME", required = true, help = "VM name or id" },
    { "output", short = "o", value = "DIR", required = true, help = "where the flattened VHDs go" },
  },
  positionals = { min = 1, max = 1 },
  main = function(opts)
    local vhd = require "salvage.vhd"
    local sys = require "salvage.sys"
    local p = assert(plan.load(opts[1]))
    local vm
    for _, v in ipairs(p.vms) do
      if v.name == opts.vm or tostring(v.id) == opts.vm then vm = v end
    end
    if not vm then
      io.stderr:write("flatten-vm: no VM ", opts.vm, " in ", opts[1], "\n")
      return 1
    end
    sys.mkdir(opts.output)
    local failed = 0
    for _, d in ipairs(vm.disks) do
      local out = ("%s/%s-%s.vhd"):format(opts.output, vm.name, d.name)
      if not d.file then
        print(("%s %s: no source file (%s)"):format(vm.name, d.name, d.problems[1] and d.problems[1].message or "?"))
        failed = failed + 1
      else
        local bar = progress.new{ label = "flatten " .. d.name, total = d.size }
        local r, err = vhd.flatten(d.file, out, { format = "vhd", progress = bar:callback() })
        bar:finish()
        if not r then
          print(("%s %s: %s"):format(vm.name, d.name, err))
          failed = failed + 1
        else
          local c = vhd.check(out)
          local h = assert(vhd.open(out))
          local size = h:info().footer.current_size
          h:close()
          local ok = c.ok and size == d.size
          if not ok then failed = failed + 1 end
          print(("%s %s: %s chain of %d -> %s, virtual size %d (%s), check %s"):format(vm.name, d.name, d.type,
            #(d.chain or {}), out, size, size == d.size and "= volumes.size" or "DIFFERS from " .. tostring(d.size),
            c.ok and "ok" or "FAILED"))
        end
      end
    end
    return failed == 0 and 0 or 1
  end,
}
