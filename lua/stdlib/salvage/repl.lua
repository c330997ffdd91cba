--- The REPL's Lua half: printing results, Tab completion, help() and the
-- masking of history lines.
--   complete(text)  -> candidates; names starting with "_" only when typed
--   help([x])       -> prints an overview, a module's documentation or a table's fields
--   mask(line)      -> the line as stored in ~/.salvage_history (secrets as ***)
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

local function keys_of(v, sep, out, hidden)
  local seen = {}
  local function add(k)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not seen[k] and (hidden or k:sub(1, 1) ~= "_") then
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
    elseif type(v) == "table" then
      for k, f in pairs(v) do if type(f) == "function" then add(k) end end
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
  keys_of(base, sep, names, partial:sub(1, 1) == "_")
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

-- Secret-looking parts of a line: URL passwords (mariadb://u:PASS@h), and the
-- values of fields/parameters named like secrets (password=, secretkey = "...").
local SECRET_NAMES = { "password", "passwd", "pass", "secretkey", "secret_key", "secret", "apikey", "api_key",
  "signature", "token" }

--- mask(line) -> line with secrets replaced by ***
function M.mask(line)
  local log = require "salvage.log"
  local s = log.scrub(line)
  s = s:gsub("(%a[%w+.-]*://[^/:@%s\"']+):([^@%s\"']*)@", "%1:***@")
  for _, n in ipairs(SECRET_NAMES) do
    for _, pat in ipairs { "(" .. n .. "%s*=%s*)(%b\"\")", "(" .. n .. "%s*=%s*)(%b'')",
      "(%[[\"']" .. n .. "[\"']%]%s*=%s*)(%b\"\")", "(" .. n .. "%s*=%s*)(%[%[.-%]%])" } do
      s = s:gsub(pat, function(k, v) return k .. v:sub(1, 1) .. "***" .. v:sub(-1) end)
    end
  end
  -- case-insensitive names (SecretKey = "...", PASSWORD=...)
  s = s:gsub("([%a_]+)(%s*=%s*)(%b\"\")", function(k, eq, v)
    for _, n in ipairs(SECRET_NAMES) do
      if k:lower() == n then return k .. eq .. '"***"' end
    end
    return k .. eq .. v
  end)
  return s
end

-- The header comment of an embedded module (its API documentation).
local function module_doc(name)
  local ok, host = pcall(require, "salvage.host")
  local src = ok and host.source and host.source(name)
  if not src then return nil end
  local lines = {}
  for line in src:gmatch("[^\n]*") do
    if not line:match("^%-%-") then
      if #lines > 0 then break end
    else
      lines[#lines + 1] = (line:gsub("^%-%-%-?%s?", ""))
    end
  end
  return #lines > 0 and table.concat(lines, "\n") or nil
end

local function module_name_of(v)
  for name, mod in pairs(package.loaded) do
    if mod == v and type(name) == "string" and name:match("^salvage") then return name end
  end
end

local OVERVIEW = [[
salvage %s on %s: Lua 5.4 with the salvage library as the global `salvage`.
  salvage.<Tab>           the modules (loaded on first use); x.<Tab> fields, x:<Tab> methods
  help(salvage.vhd)       a module's documentation and functions (or help "vhd")
  help(t)                 the fields of a table
  expressions print their value; a statement may span several lines
  Ctrl-C cancels the line or the running code; Ctrl-D exits
  history: ~/.salvage_history (passwords and keys are stored masked)
modules:
%s
]]

--- help([x]): an overview, a module's header documentation and its
-- functions, or a table's fields. Returns nothing (prints).
function M.help(x)
  local out = io.stdout
  if x == nil then
    local root = require "salvage"
    local lines, line = {}, " "
    for _, m in ipairs(root.modules()) do
      if #line + #m > 76 then lines[#lines + 1], line = line, " " end
      line = line .. " " .. m
    end
    lines[#lines + 1] = line
    out:write(OVERVIEW:format(root.version, root.lua_version, table.concat(lines, "\n")))
    return
  end
  local name
  if type(x) == "string" then
    name = x:match("^salvage%.") and x or ("salvage." .. x)
    local ok, mod = pcall(require, name)
    if not ok then out:write(("no module %s\n"):format(name)) return end
    x = mod
  else
    name = module_name_of(x)
  end
  local doc = name and (module_doc(name) or module_doc(name .. ".init"))
  if doc then out:write(doc, "\n") end
  if type(x) == "table" or type(x) == "userdata" then
    local names = {}
    keys_of(x, ".", names)
    table.sort(names)
    local fns, others = {}, {}
    for _, k in ipairs(names) do
      local ok, v = pcall(function() return x[k] end)
      if ok and type(v) == "function" then fns[#fns + 1] = k else others[#others + 1] = k end
    end
    if #fns > 0 then out:write("functions: ", table.concat(fns, ", "), "\n") end
    if #others > 0 then out:write("fields: ", table.concat(others, ", "), "\n") end
  elseif not doc then
    out:write(("%s: %s\n"):format(type(x), pretty.format(x)))
  end
end

--- setup(): the REPL's globals (help), unless the user defined their own.
function M.setup()
  if rawget(_G, "help") == nil then rawset(_G, "help", M.help) end
end

return M
