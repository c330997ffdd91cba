--- Scripts declare themselves: description, parameters (turned into --flags
-- and --help) and an entry point, like NSE scripts declare their metadata.
--
--   local script = require "salvage.script"
--   script.run{
--     description = "List the VMs of one account",
--     usage = "salvage list-account.lua --dump FILE --account NAME",
--     options = { { "dump", value = "FILE", required = true }, { "account", value = "NAME" } },
--     main = function(opts) ... return 0 end,
--   }
--
-- The script's own arguments come from the global `arg`; usage errors exit 2,
-- `cli.fail` exits with its code, main's return value is the exit status.
-- main runs with strict globals: reading or writing an undeclared global raises.
local args = require "salvage.args"

local M = {}

--- Make reads and writes of undeclared globals raise (declare with rawset or `M.global`).
function M.strict(env)
  env = env or _G
  local declared = {}
  for k in pairs(env) do declared[k] = true end
  local mt = getmetatable(env) or {}
  mt.__newindex = function(t, k, v)
    if not declared[k] then
      error(("assignment to undeclared global '%s'"):format(tostring(k)), 2)
    end
    rawset(t, k, v)
  end
  mt.__index = function(_, k)
    if not declared[k] then error(("undeclared global '%s'"):format(tostring(k)), 2) end
  end
  setmetatable(env, mt)
  return function(name) declared[name] = true end
end

--- Parse `argv` (default: the global arg) against the declaration; nil, message on misuse.
function M.parse(decl, argv)
  argv = argv or _G.arg or {}
  local list = {}
  for i = 1, #argv do list[i] = argv[i] end
  return args.parse(decl, list)
end

--- Run a declared script: parse, --help, strict globals, main(opts) → exit status.
function M.run(decl)
  assert(type(decl.main) == "function", "script.run needs a main function")
  local spec = {
    usage = decl.usage or ("salvage " .. tostring(_G.arg and _G.arg[0] or "SCRIPT") .. " [options]"),
    summary = decl.description,
    description = decl.details,
    options = decl.options,
    positionals = decl.positionals or { min = 0, max = 0 },
    epilog = decl.epilog,
  }
  local opts, err = M.parse(spec)
  if not opts then
    io.stderr:write("salvage: ", err, "\n")
    os.exit(2)
  end
  if opts.help then
    io.stdout:write(args.help(spec))
    os.exit(0)
  end
  if decl.strict ~= false then M.strict() end
  local Failure
  local ok, result = xpcall(decl.main, function(e)
    if type(e) == "table" and e.exit_code then
      Failure = e
      return e
    end
    return debug.traceback(tostring(e), 2)
  end, opts)
  if not ok then
    if Failure then
      io.stdout:flush()
      io.stderr:write("salvage: ", tostring(Failure.message), "\n")
      os.exit(Failure.exit_code)
    end
    error(result, 0)
  end
  io.stdout:flush()
  if result == nil or result == true or result == 0 then return 0 end
  os.exit(math.tointeger(result) or 1)
end

return M
