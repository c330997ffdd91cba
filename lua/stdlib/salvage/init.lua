--- The `salvage` table: every stdlib module one index away.
-- `salvage.vhd`, `salvage.log`, ... are loaded on first use, so the REPL and
-- scripts can explore without a list of requires.
local host = require "salvage.host"

local M = {
  version = host.version,
  lua_version = host.lua_version,
}

--- Names of the stdlib modules directly below `salvage.` (for completion and help).
function M.modules()
  local names, seen = {}, {}
  local function add(name)
    local first = name:match("^salvage%.([%w_]+)")
    if first and not seen[first] then
      seen[first] = true
      names[#names + 1] = first
    end
  end
  for name in pairs(host.embedded()) do add(name) end
  for name in pairs(package.preload) do add(name) end
  table.sort(names)
  return names
end

return setmetatable(M, {
  __index = function(t, key)
    if type(key) ~= "string" or not key:match("^[%w_]+$") then return nil end
    local ok, mod = pcall(require, "salvage." .. key)
    if not ok then
      if tostring(mod):find("module 'salvage." .. key .. "' not found", 1, true) then return nil end
      error(mod, 2)
    end
    rawset(t, key, mod)
    return mod
  end,
})
