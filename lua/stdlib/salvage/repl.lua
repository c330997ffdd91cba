--- The REPL's Lua half: printing results and Tab completion.
local pretty = require "salvage.pretty"

local M = {}

--- Print every value of an evaluated expression, tab-separated like lua.c.
function M.print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = pretty.format((select(i, ...)))
  end
  io.stdout:write(table.concat(parts, "\t"), "\n")
  io.stdout:flush()
end

local function keys_of(v, sep, out)
  local seen = {}
  local function add(k)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not seen[k] then
      seen[k] = true
      out[#out + 1] = k
    end
  end
  local depth = 0
  while v ~= nil and depth < 5 do
    if type(v) == "table" and sep ~= ":" then
      for k in pairs(v) do add(k) end
      if rawget(v, "modules") and type(v.modules) == "function" and v == rawget(_G, "salvage") then
        for _, m in ipairs(v.modules()) do add(m) end
      end
    end
    local mt = getmetatable(v)
    local index = type(mt) == "table" and rawget(mt, "__index")
    if type(index) ~= "table" then break end
    if sep == ":" then
      for k, f in pairs(index) do if type(f) == "function" then add(k) end end
    else
      for k in pairs(index) do add(k) end
    end
    v = index
    depth = depth + 1
  end
end

--- complete("salvage.v") -> {"salvage.version", "salvage.vhd", ...}
function M.complete(text)
  local prefix, sep, partial = text:match("^(.*)([%.:])([%w_]*)$")
  local base
  if prefix then
    base = _G
    for part in prefix:gmatch("[^%.]+") do
      if type(base) ~= "table" and type(base) ~= "userdata" then return {} end
      local ok, v = pcall(function() return base[part] end)
      if not ok then return {} end
      base = v
    end
  else
    partial, prefix, sep, base = text, "", "", _G
  end
  if base == nil then return {} end
  local names = {}
  keys_of(base, sep, names)
  if sep == "" then
    for _, kw in ipairs({ "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
      "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }) do
      names[#names + 1] = kw
    end
  end
  local out = {}
  for _, k in ipairs(names) do
    if k:sub(1, #partial) == partial then out[#out + 1] = prefix .. sep .. k end
  end
  table.sort(out)
  return out
end

return M
