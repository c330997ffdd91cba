--- salvage demo: the whole recovery on the built-in sample estate (salvage.demo).
local args = require "salvage.args"
local cli = require "salvage.cli"
local demo = require "salvage.demo"

local spec = {
  usage = "salvage demo [--keep] [--kvm]",
  summary = "Recover the sample estate into a simulated new cloud, start to finish",
  description = [[
Starts a private MariaDB loaded with the sample CloudStack 4.5.2 database
(rootvm1, ppvm2 with its data disk ppdatavol, ppvm3), builds a primary storage
of VHD chains for it, starts the CloudStack API simulator on a loopback port,
then runs `salvage plan` and `salvage recover` against them and shows what the
new cloud holds. Nothing outside a temporary directory is touched; every
process started is stopped. Needs mariadbd (mariadb-server-core) and python3.
The data is found in $SALVAGE_DATA_DIR, PREFIX/share/salvage beside the binary,
or the source tree.]],
  options = {
    { "keep", help = "keep the temporary directory (plan, journal, report) and print its name" },
    { "kvm", help = "recover into a KVM zone, by QCOW2 upload and by zero-copy import, side by side" },
  },
  positionals = { min = 0, max = 0 },
  epilog = [[
Exit status: that of the recover step (0 when every VM was recovered).]],
}

local M = { summary = "recover the built-in sample estate into a simulated cloud (a tour)" }

function M.run(argv)
  local opts, err = args.parse(spec, argv)
  if not opts then cli.usage_error("demo: " .. err) end
  if opts.help then
    io.stdout:write(args.help(spec))
    return 0
  end
  local rc, derr = demo.run { keep = opts.keep, kvm = opts.kvm }
  if not rc then cli.fail(1, derr) end
  return rc
end

return M
