--- The command line's Lua half: built-in commands, global options, usage.
-- A command is the module `salvage.commands.<name>` returning
--   { summary = "...", run = function(argv) ... return exit_code end }
-- Commands raise `cli.fail(code, message)` for expected failures (no traceback);
-- any other error is a bug and gets the traceback.
local host = require "salvage.host"
local log = require "salvage.log"

local M = {}

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.message end

--- Raise an expected failure: `salvage: <message>` on stderr, exit `code`.
function M.fail(code, message)
  error(setmetatable({ exit_code = code, message = message }, Failure), 0)
end

--- Usage error (exit 2).
function M.usage_error(message) M.fail(2, message) end

--- Sorted list of {name, summary, module} for every built-in command.
function M.commands()
  local names = {}
  for mod in pairs(host.embedded()) do
    local n = mod:match("^salvage%.commands%.([%w_]+)$")
    if n then names[n] = true end
  end
  local dir = os.getenv("SALVAGE_STDLIB_DIR")
  if dir and dir ~= "" then
    local sys = require "salvage.sys"
    for _, f in ipairs(sys.dir(dir .. "/salvage/commands") or {}) do
      local n = f:match("^([%w_]+)%.lua$")
      if n then names[n] = true end
    end
  end
  local list = {}
  for n in pairs(names) do
    local ok, cmd = pcall(require, "salvage.commands." .. n)
    list[#list + 1] = {
      name = n:gsub("_", "-"),
      summary = ok and type(cmd) == "table" and cmd.summary or "(failed to load)",
    }
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

local function command_list()
  local lines = {}
  for _, c in ipairs(M.commands()) do
    lines[#lines + 1] = ("  %-12s %s"):format(c.name, c.summary)
  end
  return table.concat(lines, "\n")
end

--- Strip the options every command accepts (--log-level, --quiet, --log-json).
function M.global_options(argv)
  local rest, settings = {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i, #argv do rest[#rest + 1] = argv[j] end
      break
    elseif a == "--quiet" or a == "-q" then
      settings.quiet = true
    elseif a == "--log-json" then
      settings.json = true
    elseif a == "--log-level" then
      i = i + 1
      settings.level = argv[i]
      if not settings.level then return nil, "option --log-level needs a value (error, warn, info, debug)" end
    elseif a:match("^%-%-log%-level=") then
      settings.level = a:match("=(.*)")
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  if settings.level and not log.LEVELS[settings.level] then
    return nil, ("unknown log level '%s' (error, warn, info, debug)"):format(settings.level)
  end
  return rest, settings
end

-- The one line a failed command leaves on stderr: text, or a JSON record
-- under --log-json (so that every stderr line is then one JSON object).
local function report_failure(err)
  io.stdout:flush()
  if log.json_mode() then
    log.line("salvage: " .. tostring(err.message), { level = "error", exit = err.exit_code })
  else
    io.stderr:write("salvage: ", tostring(err.message), "\n")
  end
  io.stderr:flush()
end

-- The stop the host saw (Ctrl-C: exit 130; SIGTERM: exit 143), as a failure, or nil.
local function interrupted()
  if not (host.interrupted and host.interrupted()) then return nil end
  local sys = require "salvage.sys"
  local sig = sys.interrupted and sys.interrupted() or "SIGINT"
  return setmetatable({ exit_code = sig == "SIGTERM" and 143 or 130,
    message = sig == "SIGTERM" and "stopped (SIGTERM)" or "interrupted" }, Failure)
end

-- The error handler of a command: expected failures pass through, Ctrl-C
-- becomes one line and exit 130 (wherever the hook raised), anything else is
-- a bug and gets the traceback.
local function on_error(e)
  if getmetatable(e) == Failure then return e end
  return interrupted() or debug.traceback(tostring(e), 2)
end

--- run_command{"vhd", "read", "x.vhd"} -> exit status
function M.run_command(argv)
  local name = argv[1]
  -- global options first: under --log-json even "unknown command" is a JSON line
  local rest, settings = M.global_options({ table.unpack(argv, 2) })
  if not rest then
    report_failure({ exit_code = 2, message = name .. ": " .. settings })
    return 2
  end
  log.configure(settings)
  local modname = "salvage.commands." .. name:gsub("%-", "_")
  local ok, cmd = pcall(require, modname)
  if not ok then
    if not tostring(cmd):find("module '" .. modname .. "' not found", 1, true) then error(cmd, 0) end
    local known = {}
    for _, c in ipairs(M.commands()) do known[#known + 1] = c.name end
    report_failure({ exit_code = 2, message = ("unknown command '%s'; commands are: %s (see 'salvage help')")
      :format(name, table.concat(known, ", ")) })
    return 2
  end
  require("salvage.args").command_help = true
  local result
  local okr, err = xpcall(function() result = cmd.run(rest) end, on_error)
  -- a library that caught the interruption and returned must not hide it; a
  -- command that reported the stop itself returns its 128+signal status
  if okr and not (math.tointeger(result) and result >= 128) then
    local stop = interrupted()
    if stop then okr, err = false, stop end
  end
  if not okr then
    if getmetatable(err) == Failure then
      report_failure(err)
      return err.exit_code
    end
    error(err, 0)
  end
  if result == true or result == nil then return 0 end
  if result == false then return 1 end
  return math.tointeger(result) or 1
end

--- salvage --help
function M.usage()
  io.stdout:write(([==[
usage: salvage [options] [script [args]]    run a Lua script (like lua5.4)
       salvage <command> [args]             run a built-in command
       salvage                              interactive REPL (on a terminal)

Salvage brings user VMs of a dead CloudStack (XenServer, VHD disks) into a new one.

options (as lua5.4):
  -e stat   execute string 'stat'
  -i        enter the REPL after running script
  -l mod    require library 'mod' into global 'mod' (-l g=mod: into global 'g')
  -v        show version information (also --version)
  -E        ignore SALVAGE_INIT
  -W        turn warnings on
  --        stop handling options
  -         run stdin and stop handling options

commands (salvage <command> --help for each):
%s

options of every command (before or after the command name):
  --log-level LEVEL   error, warn, info (default) or debug
  --quiet, -q         errors only, no progress
  --log-json          every stderr line one JSON object (logs, progress, errors)
  --format F          table, json or csv, for commands that print records

environment:
  SALVAGE_INIT         Lua code (or @file) run before a script or the REPL
  SALVAGE_STDLIB_DIR   load lua/stdlib modules from this directory first (development)
  SALVAGE_EXAMPLES_DIR where the example scripts are

salvage %s (%s)
]==]):format(command_list(), host.version, host.lua_version))
  return 0
end

return M
