--- salvage api COMMAND key=value ...: a cloudmonkey-like CloudStack API caller.
local api = require "salvage.cloudstack.api"
local args = require "salvage.args"
local cli = require "salvage.cli"
local columns = require "salvage.columns"
local json = require "salvage.json"
local log = require "salvage.log"

local spec = {
  usage = "salvage api COMMAND [key=value ...] [--format json|table|csv] [--filter a,b] [--profile NAME]\n"
    .. "       salvage api --list-commands",
  summary = "call the CloudStack API of the new cloud (signed, v3); async commands wait for their job",
  description = [[
List commands follow every page (pagesize 500) unless page= is given; async
commands (deployVirtualMachine, attachVolume, ...) block until the job ends and
print its result, unmasked (it is what was asked for; logs mask secrets).
Credentials come from a profile (salvage config; ~/.config/salvage/config.lua,
$SALVAGE_CONFIG) or from SALVAGE_API_URL, SALVAGE_API_KEY, SALVAGE_SECRET_KEY.
Map parameters are written details[0].cpuNumber=2; filter=a,b (as in cloudmonkey)
is --filter a,b. A command the server does not know is named, with the closest
known names (from listApis). --log-level debug shows each request URL (signature
and keys masked).]],
  options = {
    { "format", short = "f", value = "FMT", choices = { "json", "table", "csv" }, default = "json",
      help = "output format" },
    { "json", help = "same as --format json" },
    { "filter", value = "FIELDS", help = "comma-separated fields to keep" },
    { "profile", short = "p", value = "NAME", help = "credential profile of the config file" },
    { "timeout", value = "SECONDS", type = "number", help = "HTTP timeout per request (default 60)" },
    { "job-timeout", value = "SECONDS", type = "number", help = "how long to wait for an async job (default 3600)" },
    { "poll-interval", value = "SECONDS", type = "number", help = "first async job poll interval (default 2)" },
    { "cafile", value = "FILE", help = "CA bundle to verify the server's certificate" },
    { "insecure", help = "do not verify the server's TLS certificate" },
    { "no-wait", help = "print an async command's job id instead of waiting" },
    { "list-commands", help = "print the command names the server knows (listApis; cached for completion)" },
  },
  positionals = { min = 0 },
  epilog = "Examples:\n  salvage api listZones --filter id,name --format table\n"
    .. "  salvage api createDomain name='SPDM Inc'\n",
}

local M = { summary = "call the CloudStack API (signed, async jobs awaited, paging followed)" }

-- Offered by --list-commands when the server cannot be asked (completion offline).
local COMMON = {
  "attachVolume", "createAccount", "createDomain", "createServiceOffering", "deleteTemplate", "deleteVolume",
  "deployVirtualMachine", "destroyVirtualMachine", "detachVolume", "getUploadParamsForTemplate",
  "getUploadParamsForVolume", "listAccounts", "listApis", "listAsyncJobs", "listCapabilities",
  "listDiskOfferings", "listDomains", "listHosts", "listNetworks", "listOsTypes", "listServiceOfferings",
  "listStoragePools", "listTemplates", "listUsers", "listVirtualMachines", "listVolumes", "listZones",
  "queryAsyncJobResult", "registerTemplate", "rebootVirtualMachine", "startVirtualMachine",
  "stopVirtualMachine", "updateVirtualMachine", "uploadVolume",
}

-- Edit distance, case-insensitive (listzone ~ listZones).
local function distance(a, b)
  a, b = a:lower(), b:lower()
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- closest(name, names [, n]) -> up to n (3) names nearest to name.
function M.closest(name, names, n)
  local scored = {}
  for _, k in ipairs(names) do
    local d = distance(name, k)
    if k:lower():find(name:lower(), 1, true) then d = math.min(d, 2) end
    if d <= math.max(2, #name // 3) then scored[#scored + 1] = { k, d } end
  end
  table.sort(scored, function(x, y) if x[2] ~= y[2] then return x[2] < y[2] end return x[1] < y[1] end)
  local out = {}
  for i = 1, math.min(n or 3, #scored) do out[i] = scored[i][1] end
  return out
end

-- The names the server knows (listApis), or nil.
local function server_commands(client)
  local r = client:call("listApis", {})
  if type(r) ~= "table" or type(r.api) ~= "table" then return nil end
  local names = {}
  for _, a in ipairs(r.api) do names[#names + 1] = a.name end
  table.sort(names)
  return names
end

local function cache_path(profile)
  local base = os.getenv("XDG_CACHE_HOME")
  if not base or base == "" then base = (os.getenv("HOME") or "/tmp") .. "/.cache" end
  return base .. "/salvage/api-commands-" .. (profile or "default"):gsub("[^%w_.-]", "_") .. ".txt"
end

local function list_commands(prof)
  local path = cache_path(prof and prof.name)
  local f = io.open(path)
  if f then
    local text = f:read("a")
    f:close()
    io.stdout:write(text)
    return 0
  end
  local names
  if prof then
    local o = {}
    for k, v in pairs(prof) do o[k] = v end
    o.timeout = 10
    local client = api.new(o)
    names = server_commands(client)
    client:close()
  end
  local text = table.concat(names or COMMON, "\n") .. "\n"
  if names then
    local sys = require "salvage.sys"
    local dir = path:match("^(.*)/")
    sys.mkdir(dir:match("^(.*)/") or dir)
    sys.mkdir(dir)
    sys.write_atomic(path, text)
  end
  io.stdout:write(text)
  return 0
end

-- A failed call: name an unknown command (the server answers 401 for those,
-- as for bad credentials), hint at a URL without /client/api.
local function explain(client, command, cerr, url)
  local status = cerr.errorcode or cerr.http_status
  if tonumber(status) == 401 then
    local names = server_commands(client)
    if names then
      local known = false
      for _, n in ipairs(names) do if n == command then known = true end end
      if not known then
        local near = M.closest(command, names)
        return 2, ("api: unknown command '%s'%s (salvage api --list-commands lists them)"):format(command,
          #near > 0 and ("; did you mean " .. table.concat(near, ", ") .. "?") or "")
      end
    end
  end
  local msg = log.scrub(tostring(cerr))
  if type(url) == "string" and not url:find("/client/api", 1, true) then
    msg = msg .. "; hint: the API URL usually ends in /client/api (e.g. http://HOST:8080/client/api)"
  end
  return 1, msg
end

local function fields_of(rows, filter)
  if filter then
    local out = {}
    for f in filter:gmatch("[^,%s]+") do out[#out + 1] = f end
    return out
  end
  local seen, out = {}, {}
  for _, r in ipairs(rows) do
    for k, v in pairs(r) do
      if not seen[k] and type(v) ~= "table" then
        seen[k] = true
        out[#out + 1] = k
      end
    end
  end
  table.sort(out)
  return out
end

local function cell(v)
  if v == nil or v == json.null then return "" end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end

local function csv_cell(v)
  return columns.csv_field(cell(v))
end

-- The rows to tabulate: a list, or the one object inside an answer.
local function as_rows(result)
  if type(result) ~= "table" then return { { value = result } } end
  if result[1] ~= nil or (next(result) == nil) then return result end
  local k, v = next(result)
  if next(result, k) == nil and type(v) == "table" then
    if v[1] ~= nil then return v end
    return { v }
  end
  return { result }
end

-- The cells of rows for a table: one line each, nil as empty.
local function as_rows_cells(rows, cols)
  local out = {}
  for ri, r in ipairs(rows) do
    out[ri] = {}
    for i, c in ipairs(cols) do out[ri][i] = (cell(r[c]):gsub("[\r\n]", " ")) end
  end
  return out
end

local function render(result, opts)
  if opts.format == "json" then
    if opts.filter then
      local keep = fields_of({}, opts.filter)
      local function filter_row(r)
        local o = {}
        for _, f in ipairs(keep) do o[f] = r[f] end
        return o
      end
      local rows = as_rows(result)
      local out = json.array {}
      for i, r in ipairs(rows) do out[i] = filter_row(r) end
      result = out
    end
    return json.pretty(result)
  end
  local r_rows = as_rows(result)
  local cols = fields_of(r_rows, opts.filter)
  local lines = {}
  if opts.format == "csv" then
    local h = {}
    for i, c in ipairs(cols) do h[i] = csv_cell(c) end
    lines[1] = table.concat(h, ",")
    for _, r in ipairs(r_rows) do
      local l = {}
      for i, c in ipairs(cols) do l[i] = csv_cell(r[c]) end
      lines[#lines + 1] = table.concat(l, ",")
    end
    return table.concat(lines, "\n") .. "\n"
  end
  -- the table style of every command (salvage.columns): upper-case headers, aligned, no rule
  local rows = { {} }
  for i, c in ipairs(cols) do rows[1][i] = c:upper() end
  for _, r in ipairs(as_rows_cells(r_rows, cols)) do rows[#rows + 1] = r end
  lines = columns.lines(rows)
  return table.concat(lines, "\n") .. "\n"
end

function M.run(argv)
  local opts, err = args.parse(spec, argv)
  if not opts then cli.usage_error("api: " .. err) end
  if opts.help then
    io.stdout:write(args.help(spec))
    return 0
  end
  if opts.json then opts.format = "json" end
  if opts.list_commands then
    local prof = api.profile(opts.profile)
    return list_commands(prof)
  end
  local command = opts[1]
  if not command then cli.usage_error("api: a command name is required (e.g. listZones)") end
  if not command:match("^%a%w*$") then cli.usage_error("api: bad command name '" .. command .. "'") end
  local params = {}
  for i = 2, #opts do
    local k, v = opts[i]:match("^([^=]+)=(.*)$")
    if not k then cli.usage_error(("api: expected key=value, got '%s'"):format(opts[i])) end
    if k == "filter" then
      -- cloudmonkey's output filter, not an API parameter
      if opts.filter and opts.filter ~= v then cli.usage_error("api: give filter= or --filter, not both") end
      opts.filter = v
    else
      params[k] = v
    end
  end
  local prof, perr = api.profile(opts.profile)
  if not prof then cli.fail(1, perr) end
  local o = {}
  for k, v in pairs(prof) do o[k] = v end
  if opts.timeout then o.timeout = opts.timeout end
  if opts.job_timeout then o.job_timeout = opts.job_timeout end
  if opts.poll_interval then o.poll_interval = opts.poll_interval end
  if opts.cafile then o.cafile = opts.cafile end
  if opts.insecure then o.verify_tls = false end
  local client = api.new(o)
  local result, cerr
  local explicit_page = params.page or params.pagesize
  if command:match("^list") and not explicit_page then
    result, cerr = client:list(command, params)
  elseif api.ASYNC[command] and not opts.no_wait then
    result, cerr = client:async(command, params)
  else
    result, cerr = client:call(command, params)
  end
  if not result then
    log.debug("api failure", { command = command, errorcode = cerr.errorcode })
    local code, msg = explain(client, command, cerr, o.url)
    client:close()
    cli.fail(code, msg)
  end
  client:close()
  -- the answer is what the user asked for (upload signatures, keys): unmasked
  io.stdout:write(render(result, opts))
  return 0
end

return M
