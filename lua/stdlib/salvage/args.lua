--- Command-line options from a declarative spec, and the --help text made from it.
-- Every built-in command and every script with `script.define` uses this, so
-- flags look and fail the same everywhere.
--
--   local spec = {
--     usage = "salvage vhd read FILE [--json]",
--     summary = "Show a VHD's footer and header",
--     options = {
--       { "json", help = "machine-readable output" },                       -- a flag
--       { "output", short = "o", value = "FILE", help = "where to write", required = true },
--       { "workers", value = "N", type = "integer", default = 1 },
--       { "storage", value = "DIR", multi = true },                          -- repeatable
--     },
--     positionals = { min = 1, max = 1 },
--   }
--   local opts, err = args.parse(spec, argv)   -- opts.json, opts.output, opts.workers, opts[1]...
local M = {}

local function find(spec, name)
  for _, o in ipairs(spec.options or {}) do
    if o[1] == name or o.short == name then return o end
  end
  if name == "help" or name == "h" then return { "help", builtin = true } end
end

local function key(o) return (o[1]:gsub("%-", "_")) end

local function convert(o, v)
  if o.type == "integer" then
    local n = math.tointeger(tonumber(v))
    if not n then return nil, ("option --%s expects an integer, got '%s'"):format(o[1], v) end
    return n
  elseif o.type == "number" then
    local n = tonumber(v)
    if not n then return nil, ("option --%s expects a number, got '%s'"):format(o[1], v) end
    return n
  elseif o.choices then
    for _, c in ipairs(o.choices) do if c == v then return v end end
    return nil, ("option --%s expects one of %s, got '%s'"):format(o[1], table.concat(o.choices, ", "), v)
  end
  return v
end

--- parse(spec, argv) -> opts | nil, message
-- Positionals land in opts[1..n]; `--` ends options; `--name=value` and `-o value` both work.
function M.parse(spec, argv)
  local opts = {}
  for _, o in ipairs(spec.options or {}) do
    if o.multi then opts[key(o)] = {} end
    if o.default ~= nil then opts[key(o)] = o.default end
  end
  local i, n = 1, #argv
  local only_positional = false
  while i <= n do
    local a = argv[i]
    if only_positional or a == "-" or a:sub(1, 1) ~= "-" then
      opts[#opts + 1] = a
    elseif a == "--" then
      only_positional = true
    else
      local name, inline = a:match("^%-%-([^=]+)=(.*)$")
      if not name then name = a:match("^%-%-(.+)$") or a:match("^%-(.+)$") end
      local o = find(spec, name)
      if not o then
        return nil, ("unknown option '%s'%s"):format(a, spec.usage and " (see --help)" or "")
      end
      if o.builtin then
        opts.help = true
      elseif o.value then
        local v = inline
        if v == nil then
          i = i + 1
          v = argv[i]
          if v == nil then return nil, ("option --%s needs a value (%s)"):format(o[1], o.value) end
        end
        local cv, err = convert(o, v)
        if cv == nil then return nil, err end
        if o.multi then
          local list = opts[key(o)]
          list[#list + 1] = cv
        else
          opts[key(o)] = cv
        end
      else
        if inline ~= nil then return nil, ("option --%s takes no value"):format(o[1]) end
        opts[key(o)] = true
      end
    end
    i = i + 1
  end
  if opts.help then return opts end
  for _, o in ipairs(spec.options or {}) do
    if o.required and opts[key(o)] == nil then
      return nil, ("missing required option --%s"):format(o[1])
    end
  end
  local p = spec.positionals or { min = 0, max = 0 }
  if #opts < (p.min or 0) then
    return nil, ("missing argument%s: %s"):format((p.min or 0) > 1 and "s" or "", spec.usage or "see --help")
  end
  if p.max and #opts > p.max then
    return nil, ("unexpected argument '%s'"):format(opts[(p.max or 0) + 1])
  end
  return opts
end

--- The options salvage.cli strips before a built-in command sees its argv;
-- listed by help() when `M.command_help` is set (salvage.cli sets it).
M.GLOBAL_OPTIONS = {
  { "--log-level LEVEL", "error, warn, info or debug (default: info)" },
  { "-q, --quiet", "errors only, no progress" },
  { "--log-json", "every stderr line one JSON object (logs, progress, errors)" },
}
M.command_help = false

--- The --help text for a spec. A choice option lists its values; global
-- options are listed for built-in commands (they may also precede the command).
function M.help(spec)
  local out = {}
  if spec.usage then out[#out + 1] = "usage: " .. spec.usage end
  if spec.summary then out[#out + 1] = "\n" .. spec.summary end
  if spec.description then out[#out + 1] = "\n" .. spec.description end
  local rows = {}
  for _, o in ipairs(spec.options or {}) do
    local left = (o.short and ("-" .. o.short .. ", ") or "    ") .. "--" .. o[1]
    if o.value then left = left .. " " .. o.value end
    local help = o.help or ""
    if o.choices then help = help .. (" (one of: %s)"):format(table.concat(o.choices, ", ")) end
    if o.default ~= nil and not o.multi then help = help .. (" (default: %s)"):format(tostring(o.default)) end
    if o.required then help = help .. " (required)" end
    if o.multi then help = help .. " (repeatable)" end
    rows[#rows + 1] = { left, help }
  end
  rows[#rows + 1] = { "-h, --help", "show this help" }
  local width = 0
  for _, r in ipairs(rows) do width = math.max(width, #r[1]) end
  if M.command_help then
    for _, g in ipairs(M.GLOBAL_OPTIONS) do width = math.max(width, #g[1]) end
  end
  out[#out + 1] = "\noptions:"
  for _, r in ipairs(rows) do
    out[#out + 1] = ("  %-" .. width .. "s  %s"):format(r[1], r[2])
  end
  if M.command_help then
    out[#out + 1] = "\nglobal options (before or after the command name):"
    for _, g in ipairs(M.GLOBAL_OPTIONS) do
      out[#out + 1] = ("  %-" .. width .. "s  %s"):format(g[1], g[2])
    end
  end
  if spec.epilog then out[#out + 1] = "\n" .. spec.epilog end
  return table.concat(out, "\n") .. "\n"
end

return M
