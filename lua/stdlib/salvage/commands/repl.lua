--- salvage repl: the interactive prompt, also what `salvage` alone opens on a terminal.
local host = require "salvage.host"
local args = require "salvage.args"
local cli = require "salvage.cli"

local spec = {
  usage = "salvage repl",
  summary = "interactive Lua prompt with the salvage modules loaded (global 'salvage')",
  description = [[
Expressions print their value; statements may span lines; Tab completes
globals and fields (salvage.v<Tab>); Ctrl-C cancels the line or the running
chunk; Ctrl-D exits. History is kept in ~/.salvage_history.]],
}

local M = { summary = "interactive Lua prompt (readline, completion, history)" }

function M.run(argv)
  local opts, err = args.parse(spec, argv)
  if not opts then cli.usage_error("repl: " .. err) end
  if opts.help then
    io.stdout:write(args.help(spec))
    return 0
  end
  return host.repl()
end

return M
