--- salvage help [COMMAND]
local cli = require "salvage.cli"

local M = { summary = "list the commands, or show one command's help" }

function M.run(argv)
  if argv[1] == "--help" or argv[1] == "-h" then
    io.stdout:write("usage: salvage help [COMMAND]\n\n", M.summary, "\n")
    return 0
  end
  if argv[1] then
    return cli.run_command({ argv[1], "--help" })
  end
  return cli.usage()
end

return M
