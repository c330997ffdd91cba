--- Values as Lua literals for people: sorted keys, nested, depth- and
-- width-limited, cycles marked. The REPL prints with it.
local M = {}

local function is_ident(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function keycmp(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    if ta == "number" then return true end
    if tb == "number" then return false end
    return ta < tb
  end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function scalar(v)
  local t = type(v)
  if t == "string" then
    return (("%q"):format(v):gsub("\\\n", "\\n"))
  elseif t == "number" then
    if math.type(v) == "float" and v == math.floor(v) and v > -1e16 and v < 1e16 then
      return ("%.1f"):format(v)
    end
    return tostring(v)
  end
  return tostring(v)
end

local function format(v, opts, level, path)
  if type(v) ~= "table" then return scalar(v) end
  if path[v] then return "<cycle>" end
  if level >= opts.depth then return "{...}" end
  local mt = getmetatable(v)
  if mt and mt.__tostring and not opts.raw then return tostring(v) end
  path[v] = true
  local n = #v
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, keycmp)
  local items = {}
  local limit = opts.max_items
  for i = 1, n do
    if #items >= limit then break end
    items[#items + 1] = format(v[i], opts, level + 1, path)
  end
  for _, k in ipairs(keys) do
    if #items >= limit then break end
    local ks = is_ident(k) and k or ("[" .. scalar(k) .. "]")
    items[#items + 1] = ks .. " = " .. format(v[k], opts, level + 1, path)
  end
  local total = n + #keys
  if total > #items then items[#items + 1] = ("... (%d more)"):format(total - #items) end
  path[v] = nil
  if #items == 0 then return "{}" end
  local inline = "{" .. table.concat(items, ", ") .. "}"
  local indent = ("  "):rep(level)
  if #inline + #indent <= opts.width and not inline:find("\n") then return inline end
  local inner = ("  "):rep(level + 1)
  return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. ",\n" .. indent .. "}"
end

--- format(value [, {depth = 6, width = 78, max_items = 100, raw = false}]) -> string
function M.format(v, opts)
  opts = opts or {}
  return format(v, {
    depth = opts.depth or 6,
    width = opts.width or 78,
    max_items = opts.max_items or 100,
    raw = opts.raw,
  }, 0, {})
end

return M
