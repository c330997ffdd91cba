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
-- replace) the profile's url, apikey and secretkey.
local M = {}

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

return M
