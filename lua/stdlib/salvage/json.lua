--- JSON with deterministic output: keys sorted, arrays kept as arrays.
-- lua-cjson does the decoding; encoding is here because cjson does not sort
-- keys, and reports, plans and --json output must diff cleanly.
local cjson = require "cjson"

local M = {}

M.null = cjson.null
M.array_mt = cjson.array_mt

--- Mark `t` (default: a new table) as an array, so that empty encodes as [].
function M.array(t)
  return setmetatable(t or {}, cjson.array_mt)
end

--- decode(text) -> value | nil, message   (arrays come back marked as arrays)
function M.decode(text)
  local dec = cjson.new()
  dec.decode_array_with_array_mt(true)
  local ok, v = pcall(dec.decode, text)
  if not ok then return nil, "invalid JSON: " .. tostring(v):gsub("^.-: ", "") end
  return v
end

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t', ['\127'] = '\\u007f',
}
local function quote(s)
  return '"' .. s:gsub('[%c"\\\127]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function is_array(t)
  local mt = getmetatable(t)
  if mt == cjson.array_mt then return true, #t end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n, n
end

local function keycmp(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta == "number" end
  return a < b
end

local function encode(v, out, indent, level, seen)
  local tv = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "number" then
    if math.type(v) == "integer" then
      out[#out + 1] = ("%d"):format(v)
    elseif v ~= v or v == math.huge or v == -math.huge then
      error("cannot encode " .. tostring(v) .. " in JSON", 0)
    elseif v == math.floor(v) and math.abs(v) < 2^53 then
      out[#out + 1] = ("%d"):format(math.tointeger(v))
    else
      out[#out + 1] = ("%.17g"):format(v)
    end
  elseif tv == "string" then
    out[#out + 1] = quote(v)
  elseif tv == "table" then
    if seen[v] then error("cannot encode a table with a cycle in JSON", 0) end
    seen[v] = true
    local arr, n = is_array(v)
    local nl, pad, padin = "", "", ""
    if indent then
      nl = "\n"
      pad = indent:rep(level)
      padin = indent:rep(level + 1)
    end
    if arr then
      if n == 0 then
        out[#out + 1] = "[]"
      else
        out[#out + 1] = "[" .. nl
        for i = 1, n do
          out[#out + 1] = padin
          encode(v[i], out, indent, level + 1, seen)
          out[#out + 1] = (i < n and "," or "") .. nl
        end
        out[#out + 1] = pad .. "]"
      end
    else
      local keys = {}
      for k in pairs(v) do
        local tk = type(k)
        if tk ~= "string" and tk ~= "number" then
          error("cannot encode a table key of type " .. tk .. " in JSON", 0)
        end
        keys[#keys + 1] = k
      end
      if #keys == 0 then
        out[#out + 1] = "{}"
      else
        table.sort(keys, keycmp)
        out[#out + 1] = "{" .. nl
        local sep = indent and ": " or ":"
        for i, k in ipairs(keys) do
          out[#out + 1] = padin .. quote(tostring(k)) .. sep
          encode(v[k], out, indent, level + 1, seen)
          out[#out + 1] = (i < #keys and "," or "") .. nl
        end
        out[#out + 1] = pad .. "}"
      end
    end
    seen[v] = nil
  else
    error("cannot encode a " .. tv .. " in JSON", 0)
  end
end

--- encode(value [, {indent = "  "}]) -> string   (raises on cycles, functions, NaN)
function M.encode(v, opts)
  local out = {}
  local indent = opts and opts.indent
  if indent == true then indent = "  " end
  encode(v, out, indent, 0, {})
  return table.concat(out)
end

--- Pretty form for people: two-space indent, trailing newline.
function M.pretty(v)
  return M.encode(v, { indent = "  " }) .. "\n"
end

return M
