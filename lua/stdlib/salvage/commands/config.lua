--- salvage config: the API credential profiles of the configuration file.
local args = require "salvage.args"
local cli = require "salvage.cli"
local config = require "salvage.config"
local log = require "salvage.log"

local spec = {
  usage = "salvage config set [--profile P] url|apikey|secretkey|cafile|verify_tls|timeout VALUE\n"
    .. "       salvage config show [--profile P]\n"
    .. "       salvage config path",
  summary = "Store, show and locate the new cloud's API credentials (profiles)",
  description = [[
The configuration file ($SALVAGE_CONFIG, else $XDG_CONFIG_HOME/salvage/config.lua,
else ~/.config/salvage/config.lua) is a Lua chunk returning
  { default_profile = "new", profiles = { new = { url = ..., apikey = ..., secretkey = ... } } }
`set` writes it atomically with mode 0600 (values are kept, comments are not);
`show` masks the secret key and most of the API key. `salvage api` and
`salvage recover` take --profile P; SALVAGE_API_URL, SALVAGE_API_KEY and
SALVAGE_SECRET_KEY override the profile's values.]],
  options = {
    { "profile", short = "p", value = "NAME", help = "the profile (default: default_profile, else 'default')" },
  },
  positionals = { min = 1, max = 3 },
  epilog = [[
Examples:
  salvage config set url https://cloud.example:8443/client/api
  salvage config set --profile new apikey AbC...
  salvage config show]],
}

local M = { summary = "store, show and locate the API credential profiles (set, show, path)" }

function M.run(argv)
  local opts, err = args.parse(spec, argv)
  if not opts then cli.usage_error("config: " .. err) end
  if opts.help then
    io.stdout:write(args.help(spec))
    return 0
  end
  local verb = opts[1]
  if verb == "path" then
    if #opts > 1 then cli.usage_error("config path: takes no argument") end
    io.stdout:write(config.path(), "\n")
  elseif verb == "show" then
    if #opts > 1 then cli.usage_error("config show: takes no argument (use --profile P)") end
    local lines, serr = config.show(opts.profile)
    if not lines then cli.fail(1, serr) end
    io.stdout:write(table.concat(lines, "\n"), "\n")
  elseif verb == "set" then
    if #opts ~= 3 then cli.usage_error("config set: give KEY VALUE (url, apikey, secretkey, ...)") end
    local path, prof = config.set(opts.profile, opts[2], opts[3])
    if not path then cli.usage_error(prof) end
    log.line(("config: %s of profile '%s' saved in %s"):format(opts[2], prof, path),
      { key = opts[2], profile = prof, path = path })
  else
    cli.usage_error(("config: unknown action '%s' (set, show, path)"):format(tostring(verb)))
  end
  return 0
end

return M
