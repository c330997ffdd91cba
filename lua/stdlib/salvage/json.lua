--- JSON with deterministic output: keys sorted, arrays kept as arrays.
-- lua-cjson does the decoding; encoding is here because cjson does not sort
-- keys, and reports, plans and --json output must diff cleanly.
local cjson = require "cjson"

local M = {}

M.null = cjson.null
-- Debian's lua-cjson 2.1.0 has no array_mt: arrays are marked with our own.
M.array_mt = cjson.array_mt or { __name = "salvage.json.array" }

--- Mark `t` (default: a new table) as an array, so that empty encodes as [].
function M.array(t)
  return setmetatable(t or {}, M.array_mt)
end

--- decode_fast(text) -> value | nil, message: cjson's speed, but an empty
-- array and an empty object both come back as {} (fine for reading data).
function M.decode_fast(text)
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, "invalid JSON: " .. tostring(v) end
  return v
end

-- A small recursive-descent reader that keeps arrays marked, so documents
-- people edit (plans, reports) survive a decode/encode round trip.
local decode_value

local function decode_error(text, pos, what)
  local line = select(2, text:sub(1, pos):gsub("\n", "")) + 1
  error(("invalid JSON at line %d (byte %d): %s"):format(line, pos, what), 0)
end

local function skip(text, pos)
  return text:find("[^ \t\r\n]", pos) or #text + 1
end

local unescapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function decode_string(text, pos)
  local parts = {}
  local i = pos + 1
  while true do
    local j = text:find('["\\%c]', i)
    if not j then decode_error(text, pos, "unterminated string") end
    parts[#parts + 1] = text:sub(i, j - 1)
    local c = text:sub(j, j)
    if c == '"' then return table.concat(parts), j + 1 end
    if c ~= "\\" then decode_error(text, j, "control character in string") end
    local e = text:sub(j + 1, j + 1)
    if e == "u" then
      local hex = text:match("^%x%x%x%x", j + 2)
      if not hex then decode_error(text, j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      local nexti = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = text:match("^\\u(%x%x%x%x)", nexti)
        lo = lo and tonumber(lo, 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
          nexti = nexti + 6
        end
      end
      parts[#parts + 1] = utf8.char(cp)
      i = nexti
    else
      local u = unescapes[e]
      if not u then decode_error(text, j, "bad escape") end
      parts[#parts + 1] = u
      i = j + 2
    end
  end
end

function decode_value(text, pos)
  pos = skip(text, pos)
  local c = text:sub(pos, pos)
  if c == "{" then
    local obj = {}
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "}" then return obj, pos + 1 end
    while true do
      if text:sub(pos, pos) ~= '"' then decode_error(text, pos, "expected a string key") end
      local k
      k, pos = decode_string(text, pos)
      pos = skip(text, pos)
      if text:sub(pos, pos) ~= ":" then decode_error(text, pos, "expected ':'") end
      local v
      v, pos = decode_value(text, pos + 1)
      obj[k] = v
      pos = skip(text, pos)
      c = text:sub(pos, pos)
      if c == "}" then return obj, pos + 1 end
      if c ~= "," then decode_error(text, pos, "expected ',' or '}'") end
      pos = skip(text, pos + 1)
    end
  elseif c == "[" then
    local arr = setmetatable({}, M.array_mt)
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "]" then return arr, pos + 1 end
    local n = 0
    while true do
      local v
      v, pos = decode_value(text, pos)
      n = n + 1
      arr[n] = v
      pos = skip(text, pos)
      c = text:sub(pos, pos)
      if c == "]" then return arr, pos + 1 end
      if c ~= "," then decode_error(text, pos, "expected ',' or ']'") end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(text, pos)
  elseif text:find("^true", pos) then
    return true, pos + 4
  elseif text:find("^false", pos) then
    return false, pos + 5
  elseif text:find("^null", pos) then
    return M.null, pos + 4
  else
    local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" or num == "-" then decode_error(text, pos, "unexpected character") end
    local v = math.tointeger(tonumber(num)) or tonumber(num)
    if v == nil then decode_error(text, pos, "bad number") end
    return v, pos + #num
  end
end

--- decode(text) -> value | nil, message   (arrays come back marked: json.array)
-- JSON null becomes json.null inside arrays and objects.
function M.decode(text)
  if type(text) ~= "string" then return nil, "invalid JSON: not a string" end
  local ok, v, pos = pcall(decode_value, text, 1)
  if not ok then return nil, v end
  if skip(text, pos) <= #text then return nil, ("invalid JSON: trailing data at byte %d"):format(pos) end
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
  if getmetatable(t) == M.array_mt then return true, #t end
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
