--- Logging for every command: levels, text or one JSON object a line, to stderr.
-- Results go to stdout; logs never do. Secrets never leave this module:
-- fields named like a credential are masked, and so are `key=value` pairs of
-- them inside messages (URLs, query strings).
local M = {}

local LEVELS = { error = 1, warn = 2, info = 3, debug = 4 }
M.LEVELS = LEVELS

local state = { level = LEVELS.info, json = false, quiet = false, sink = nil }

-- RFC 3339 UTC with milliseconds: records of one second (a retry, its answer) stay in order.
local ok_sys, sys = pcall(require, "salvage.sys")
local function now()
  local t = ok_sys and sys.time() or os.time()
  local sec = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", sec) .. (".%03dZ"):format(math.min(999, math.floor((t - sec) * 1000)))
end

local SECRET_NAMES = {
  "password", "secretkey", "secret_key", "apikey", "api_key", "signature", "passwd", "x-signature",
}
local SECRET = {}
for _, n in ipairs(SECRET_NAMES) do SECRET[n] = true end

--- Is a field of this name a secret? (case-insensitive)
function M.is_secret(name)
  return type(name) == "string" and SECRET[name:lower()] == true
end

--- Mask `name=value` and `"name": "value"` pairs of secret names inside a string.
function M.scrub(s)
  s = tostring(s)
  s = s:gsub("([%w_%-]+)=([^&%s\"']+)", function(k, v)
    if SECRET[k:lower()] then return k .. "=***" end
    return k .. "=" .. v
  end)
  s = s:gsub('"([%w_%-]+)"(%s*:%s*)"([^"]*)"', function(k, sep, v)
    if SECRET[k:lower()] then return '"' .. k .. '"' .. sep .. '"***"' end
    return '"' .. k .. '"' .. sep .. '"' .. v .. '"'
  end)
  return s
end

--- A deep copy of `t` with every secret field replaced by "***".
function M.redact(t, seen)
  if type(t) ~= "table" then return t end
  seen = seen or {}
  if seen[t] then return seen[t] end
  local copy = {}
  seen[t] = copy
  for k, v in pairs(t) do
    if M.is_secret(k) then
      copy[k] = "***"
    elseif type(v) == "table" then
      copy[k] = M.redact(v, seen)
    elseif type(v) == "string" then
      copy[k] = M.scrub(v)
    else
      copy[k] = v
    end
  end
  return setmetatable(copy, getmetatable(t))
end

--- configure{level = "info", json = false, quiet = false, sink = function(line) end}
function M.configure(opts)
  if opts.level ~= nil then
    local l = LEVELS[opts.level]
    if not l then
      error(("unknown log level '%s' (error, warn, info, debug)"):format(tostring(opts.level)), 2)
    end
    state.level = l
  end
  if opts.json ~= nil then state.json = opts.json and true or false end
  if opts.quiet ~= nil then state.quiet = opts.quiet and true or false end
  if opts.sink ~= nil then state.sink = opts.sink or nil end
end

function M.get()
  local name
  for k, v in pairs(LEVELS) do if v == state.level then name = k end end
  return { level = name, json = state.json, quiet = state.quiet }
end

function M.quiet() return state.quiet end
function M.json_mode() return state.json end

function M.enabled(level)
  local l = LEVELS[level]
  if state.quiet and l > LEVELS.error then return false end
  return l <= state.level
end

local function text_fields(fields)
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = fields[k]
    if M.is_secret(k) then v = "***" end
    v = M.scrub(tostring(v))
    if v:find("[%s\"=]") or v == "" then v = ("%q"):format(v):gsub("\\\n", "\\n") end
    parts[#parts + 1] = k .. "=" .. v
  end
  return table.concat(parts, " ")
end

local function emit(line)
  if state.sink then
    state.sink(line)
  else
    io.stderr:write(line, "\n")
    io.stderr:flush()
  end
end

--- log(level, message, fields)
function M.log(level, msg, fields)
  if not LEVELS[level] then error("unknown log level '" .. tostring(level) .. "'", 2) end
  if not M.enabled(level) then return end
  msg = M.scrub(tostring(msg))
  if state.json then
    local json = require "salvage.json"
    local rec = fields and M.redact(fields) or {}
    rec.level = level
    rec.msg = msg
    rec.time = now()
    emit(json.encode(rec))
  else
    local line = level .. ": " .. msg
    if fields and next(fields) then line = line .. " " .. text_fields(fields) end
    emit(line)
  end
end

--- line(text, fields): a status line for people (no "info:" prefix), shown
-- unless --quiet; under --log-json it is a record {msg = text, fields...}
-- (level "info" unless fields.level says otherwise), so stderr stays all JSON.
function M.line(text, fields)
  local level = fields and fields.level or "info"
  if state.quiet and level ~= "error" then return end
  if state.json then
    local json = require "salvage.json"
    local rec = {}
    for k, v in pairs(fields and M.redact(fields) or {}) do rec[k] = v end
    rec.level = level
    rec.msg = M.scrub(tostring(text))
    rec.time = now()
    emit(json.encode(rec))
  else
    emit(M.scrub(tostring(text)))
  end
end

function M.error(msg, fields) M.log("error", msg, fields) end
function M.warn(msg, fields) M.log("warn", msg, fields) end
function M.info(msg, fields) M.log("info", msg, fields) end
function M.debug(msg, fields) M.log("debug", msg, fields) end

return M
