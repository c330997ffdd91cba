--- salvage examples [NAME]: the shipped example scripts and where they are.
local args = require "salvage.args"
local cli = require "salvage.cli"
local examples = require "salvage.examples"

local spec = {
  usage = "salvage examples [NAME] [--json]",
  summary = "list the shipped example scripts, or print the path of one",
  options = { { "json", help = "machine-readable list" } },
  positionals = { min = 0, max = 1 },
  epilog = "Run one with: salvage \"$(salvage examples NAME)\" [args]",
}

local M = { summary = "list the shipped example scripts (run them with salvage FILE)" }

function M.run(argv)
  local opts, err = args.parse(spec, argv)
  if not opts then cli.usage_error("examples: " .. err) end
  if opts.help then
    io.stdout:write(args.help(spec))
    return 0
  end
  local list, lerr = examples.list()
  if not list then cli.fail(1, lerr) end
  if opts[1] then
    for _, e in ipairs(list) do
      if e.name == opts[1] or e.name == opts[1] .. ".lua" then
        io.stdout:write(e.path, "\n")
        return 0
      end
    end
    cli.fail(1, ("no example named '%s' in %s"):format(opts[1], examples.dir()))
  end
  if opts.json then
    io.stdout:write(require("salvage.json").pretty(list))
    return 0
  end
  for _, e in ipairs(list) do
    io.stdout:write(("%-26s %s\n"):format(e.name, e.description))
  end
  return 0
end

return M
