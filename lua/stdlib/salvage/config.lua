--- salvage.config: user configuration and API credential profiles.
--
-- ~/.config/salvage/config.lua (or $SALVAGE_CONFIG) is a Lua chunk run in an
-- empty environment that returns a table:
--
--   return {
--     default_profile = "new",
--     profiles = {
--       new = { url = "https://cloud.example:8443/client/api", apikey = "...", secretkey = "...",
--               verify_tls = true, cafile = "/etc/ssl/my-ca.pem", timeout = 60 },
--     },
--   }
--
-- SALVAGE_API_URL, SALVAGE_API_KEY and SALVAGE_SECRET_KEY override (or
-- replace) the profile's url, apikey and secretkey; SALVAGE_PROFILE names the
-- profile when no --profile is given.
--
-- `salvage config set` writes the file through M.set (mode 0600, atomically,
-- values kept, comments not); `salvage config show` prints M.show (secrets masked).
local M = {}

--- The keys a profile may hold, and how `config set` converts their values.
M.KEYS = { url = "string", apikey = "string", secretkey = "string", cafile = "string",
  verify_tls = "boolean", timeout = "number" }
M.SECRET = { secretkey = true, apikey = true }

--- Path of the configuration file.
function M.path()
  local p = os.getenv("SALVAGE_CONFIG")
  if p and p ~= "" then return p end
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if xdg and xdg ~= "" then return xdg .. "/salvage/config.lua" end
  local home = os.getenv("HOME") or ""
  return home .. "/.config/salvage/config.lua"
end

--- Load the configuration: table | nil, err. A missing file is an empty
-- configuration unless `required` (tests point SALVAGE_CONFIG at a missing
-- file to keep the user's own configuration out, and pass credentials in the
-- environment).
function M.load(path, required)
  path = path or M.path()
  local f = io.open(path, "r")
  if not f then
    if required then return nil, ("config: cannot read %s"):format(path) end
    return { profiles = {}, missing = true }
  end
  local text = f:read("a")
  f:close()
  local chunk, err = load(text, "@" .. path, "t", {})
  if not chunk then return nil, "config: " .. err end
  local ok, conf = pcall(chunk)
  if not ok then return nil, "config: " .. tostring(conf) end
  if type(conf) ~= "table" then return nil, ("config: %s must return a table"):format(path) end
  conf.profiles = conf.profiles or {}
  if type(conf.profiles) ~= "table" then return nil, "config: 'profiles' must be a table" end
  return conf
end

--- The credentials of profile `name` (default: default_profile, or the only
-- one, or "default"), with environment overrides: {url, apikey, secretkey, ...}.
function M.profile(name)
  local conf, err = M.load()
  if not conf then return nil, err end
  local chosen = name or os.getenv("SALVAGE_PROFILE") or conf.default_profile
  if not chosen then
    local only, n = nil, 0
    for k in pairs(conf.profiles) do only, n = k, n + 1 end
    chosen = n == 1 and only or "default"
  end
  local prof = {}
  local src = conf.profiles[chosen]
  if name and not src then
    return nil, ("config: no profile named '%s' in %s"):format(name, M.path())
  end
  for k, v in pairs(src or {}) do prof[k] = v end
  prof.name = chosen
  local env = { url = "SALVAGE_API_URL", apikey = "SALVAGE_API_KEY", secretkey = "SALVAGE_SECRET_KEY" }
  for k, var in pairs(env) do
    local v = os.getenv(var)
    if v and v ~= "" then prof[k] = v end
  end
  for _, k in ipairs { "url", "apikey", "secretkey" } do
    if type(prof[k]) ~= "string" or prof[k] == "" then
      return nil, ("config: no %s for profile '%s' (set it in %s or %s)"):format(k, chosen, M.path(), env[k])
    end
  end
  return prof
end

-- A Lua literal for a config value or key, deterministic (sorted keys).
local function literal(v, indent)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local inner = indent .. "  "
  local out = { "{" }
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. literal(k, inner) .. "]")
    out[#out + 1] = ("%s%s = %s,"):format(inner, key, literal(v[k], inner))
  end
  out[#out + 1] = indent .. "}"
  return table.concat(out, "\n")
end

--- render(conf) -> the text of a config file holding conf.
function M.render(conf)
  local c = {}
  for k, v in pairs(conf) do if k ~= "missing" then c[k] = v end end
  return "-- salvage configuration: a Lua chunk returning a table (see `man salvage`, FILES).\n"
    .. "-- Written by `salvage config set`; keep it private (mode 0600).\n"
    .. "return " .. literal(c, "") .. "\n"
end

--- set(profile, key, value) -> path | nil, err: store one value of a profile
-- (profile nil: the default profile, "default" if none) in the config file.
function M.set(profile, key, value)
  local kind = M.KEYS[key]
  if not kind then
    local names = {}
    for k in pairs(M.KEYS) do names[#names + 1] = k end
    table.sort(names)
    return nil, ("config: unknown key '%s' (%s)"):format(tostring(key), table.concat(names, ", "))
  end
  if kind == "boolean" then
    if value == "true" or value == "yes" or value == "1" then value = true
    elseif value == "false" or value == "no" or value == "0" then value = false
    else return nil, ("config: %s must be true or false"):format(key) end
  elseif kind == "number" then
    local n = tonumber(value)
    if not n then return nil, ("config: %s must be a number"):format(key) end
    value = n
  end
  local path = M.path()
  local conf, err = M.load(path)
  if not conf then return nil, err end
  profile = profile or conf.default_profile or "default"
  conf.profiles[profile] = conf.profiles[profile] or {}
  conf.profiles[profile][key] = value
  local sys = require "salvage.sys"
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" and not sys.stat(dir) then
    local parent = dir:match("^(.*)/[^/]*$")
    if parent and parent ~= "" and not sys.stat(parent) then sys.mkdir(parent, tonumber("700", 8)) end
    sys.mkdir(dir, tonumber("700", 8))
  end
  local ok, werr = sys.write_atomic(path, M.render(conf), tonumber("600", 8))
  if not ok then return nil, "config: " .. tostring(werr) end
  return path, profile
end

--- mask(key, value) -> what `config show` prints: secrets as "***" (an API
-- key keeps its first 4 characters, to tell keys apart).
function M.mask(key, value)
  if key == "secretkey" then return "***" end
  if key == "apikey" and type(value) == "string" then return value:sub(1, 4) .. "***" end
  return tostring(value)
end

--- show([profile]) -> lines: the file, each profile's values (secrets masked)
-- and the environment variables that override them.
function M.show(only)
  local path = M.path()
  local conf, err = M.load(path)
  if not conf then return nil, err end
  local lines = { ("# %s%s"):format(path, conf.missing and " (does not exist)" or "") }
  if conf.default_profile then lines[#lines + 1] = "default_profile = " .. tostring(conf.default_profile) end
  local names = {}
  for n in pairs(conf.profiles) do names[#names + 1] = n end
  table.sort(names)
  if only and not conf.profiles[only] then return nil, ("config: no profile named '%s' in %s"):format(only, path) end
  for _, n in ipairs(names) do
    if not only or n == only then
      lines[#lines + 1] = ("[%s]"):format(n)
      local keys = {}
      for k in pairs(conf.profiles[n]) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        lines[#lines + 1] = ("  %s = %s"):format(k, M.mask(k, conf.profiles[n][k]))
      end
    end
  end
  for _, e in ipairs { { "SALVAGE_API_URL", "url" }, { "SALVAGE_API_KEY", "apikey" },
    { "SALVAGE_SECRET_KEY", "secretkey" }, { "SALVAGE_PROFILE", "profile" } } do
    local v = os.getenv(e[1])
    if v and v ~= "" then lines[#lines + 1] = ("# %s = %s (overrides every profile)"):format(e[1], M.mask(e[2], v)) end
  end
  return lines
end

return M
