--- salvage.cloudstack.simulator: start and drive the CloudStack API
-- simulator (tests/cloudstack-sim/simulator.py) from Lua.
--
--   local sim = require "salvage.cloudstack.simulator"
--   local s <close> = assert(sim.start{apikey = "k", secretkey = "s", lifetime = 60})
--   local c = require("salvage.cloudstack.api").new{url = s.url, apikey = s.apikey, secretkey = s.secretkey}
--   s:faults{http_5xx = {listZones = 2}}
--   local dump = s:state()
--   s:stop()
--
-- The simulator listens on a private loopback port and exits by itself after
-- `lifetime` seconds, so a crashed test never leaves it behind.
local crypto = require "salvage.crypto"
local http = require "salvage.http"
local json = require "salvage.json"
local sys = require "salvage.sys"

local M = {}

local function exists(p) return p and sys.stat(p) ~= nil end

--- Where simulator.py is: $SALVAGE_SIMULATOR, $TOP/tests/cloudstack-sim, or
-- the source tree this module or the binary comes from.
function M.script()
  local env = os.getenv("SALVAGE_SIMULATOR")
  if exists(env) then return env end
  local rel = "tests/cloudstack-sim/simulator.py"
  local candidates = {}
  local top = os.getenv("TOP")
  if top then candidates[#candidates + 1] = top .. "/" .. rel end
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/lua/stdlib/salvage/cloudstack/simulator%.lua$")
  if dir then candidates[#candidates + 1] = dir .. "/" .. rel end
  local exe = arg and arg[-1] or (arg and arg[0])
  if exe then
    local real = sys.realpath(exe)
    if real then
      local d = real:match("^(.*)/[^/]+$")
      for _ = 1, 3 do
        if not d then break end
        candidates[#candidates + 1] = d .. "/" .. rel
        d = d:match("^(.*)/[^/]+$")
      end
    end
  end
  candidates[#candidates + 1] = sys.realpath(".") and (sys.realpath(".") .. "/" .. rel)
  for _, c in ipairs(candidates) do
    if exists(c) then return sys.realpath(c) end
  end
  return nil, "simulator.py not found (set TOP or SALVAGE_SIMULATOR)"
end

local function python()
  for _, p in ipairs { "/usr/bin/python3", "/bin/python3" } do
    if exists(p) then return p end
  end
  return "python3"
end

local Sim = {}

-- The private directory of a server (its ready file and log), removed when it stops.
local function remove_dir(dir)
  if not dir then return end
  for _, n in ipairs(sys.dir(dir) or {}) do os.remove(dir .. "/" .. n) end
  os.remove(dir)
end
Sim.__index = Sim
Sim.__name = "salvage.cloudstack.simulator"

function Sim:__tostring()
  return ("salvage.cloudstack.simulator (%s)"):format(self.pid and self.base or "stopped")
end

local function read_file(p)
  local f = io.open(p)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- start{apikey=, secretkey=, enforce_post=, lifetime=60, script=, state_file=,
--   job_polls=, template_polls=, discard_uploads=, allow_loopback_urls=,
--   tls_cert=, tls_key=, upload_timeout=, args = {extra argv}} -> handle | nil, err
function M.start(opts)
  opts = opts or {}
  local script, serr = opts.script, nil
  if not script then script, serr = M.script() end
  if not script then return nil, serr end
  local apikey = opts.apikey or crypto.hex(crypto.random_bytes(16))
  local secretkey = opts.secretkey or crypto.hex(crypto.random_bytes(24))
  local dir = assert(sys.mkdtemp("/tmp/salvage-sim-"))
  local ready = dir .. "/ready"
  local argv = { python(), script, "--port", tostring(opts.port or 0), "--ready-file", ready,
    "--apikey", apikey, "--secretkey", secretkey, "--lifetime", tostring(opts.lifetime or 60) }
  local function add(...) for _, a in ipairs { ... } do argv[#argv + 1] = a end end
  if opts.enforce_post then add("--enforce-post") end
  if opts.state_file then add("--state-file", opts.state_file) end
  if opts.job_polls then add("--job-polls", tostring(opts.job_polls)) end
  if opts.template_polls then add("--template-polls", tostring(opts.template_polls)) end
  if opts.upload_timeout then add("--upload-timeout", tostring(opts.upload_timeout)) end
  if opts.discard_uploads then add("--discard-uploads") end
  if opts.upload_host then add("--upload-host", opts.upload_host) end
  if opts.allow_loopback_urls then add("--allow-loopback-urls") end
  if opts.tls_cert then add("--tls-cert", opts.tls_cert, "--tls-key", opts.tls_key) end
  for _, a in ipairs(opts.args or {}) do add(a) end
  local log = opts.log or (dir .. "/simulator.log")
  argv.stdout, argv.stderr, argv.stdin = log, log, "/dev/null"
  local pid, perr = sys.spawn(argv)
  if not pid then remove_dir(dir); return nil, perr end
  local deadline = sys.clock() + (opts.start_timeout or 15)
  local base
  while sys.clock() < deadline do
    base = read_file(ready)
    if base then break end
    local status = sys.wait(pid, true)
    if status then
      local tail = (read_file(log) or ""):sub(-400)
      remove_dir(dir)
      return nil, ("simulator exited at start: %s"):format(tail)
    end
    sys.sleep(0.02)
  end
  if not base then
    sys.kill(pid, 15)
    sys.wait(pid)
    remove_dir(dir)
    return nil, "simulator did not start within the timeout"
  end
  base = base:gsub("%s+$", "")
  local self = setmetatable({
    pid = pid, base = base, url = base .. "/client/api", apikey = apikey, secretkey = secretkey,
    dir = dir, log = log, cafile = opts.cafile, http = http.client(),
  }, Sim)
  return self
end

function Sim:_req(method, path, body)
  if not self.pid then error("salvage.cloudstack.simulator: stopped", 3) end
  local res, msg, code = self.http:request {
    method = method, url = self.base .. path, body = body, timeout = 30,
    headers = body and { ["Content-Type"] = "application/json" } or nil,
    verify_tls = false,  -- the control channel of a private test server
  }
  if not res then return nil, msg, code end
  if res.status ~= 200 then return nil, ("simulator %s: HTTP %d %s"):format(path, res.status, res.body) end
  return json.decode(res.body)
end

--- The simulator's whole state, decoded.
function Sim:state()
  return self:_req("GET", "/_sim/state")
end

--- Switch fault injection (see tests/cloudstack-sim/README.md).
function Sim:faults(spec)
  return self:_req("POST", "/_sim/faults", json.encode(spec))
end

--- start_echo{lifetime=, tls_cert=, tls_key=} -> handle with .base, :stop():
-- tests/cloudstack-sim/echo.py, a small HTTP server for salvage.http tests.
function M.start_echo(opts)
  opts = opts or {}
  local script, serr = M.script()
  if not script then return nil, serr end
  script = script:gsub("simulator%.py$", "echo.py")
  local dir = assert(sys.mkdtemp("/tmp/salvage-echo-"))
  local ready = dir .. "/ready"
  local argv = { python(), script, "--ready-file", ready, "--lifetime", tostring(opts.lifetime or 60) }
  if opts.tls_cert then
    argv[#argv + 1] = "--tls-cert"; argv[#argv + 1] = opts.tls_cert
    argv[#argv + 1] = "--tls-key"; argv[#argv + 1] = opts.tls_key
  end
  local log = dir .. "/echo.log"
  argv.stdout, argv.stderr, argv.stdin = log, log, "/dev/null"
  local pid, perr = sys.spawn(argv)
  if not pid then return nil, perr end
  local deadline = sys.clock() + 15
  while sys.clock() < deadline do
    local base = read_file(ready)
    if base then
      return setmetatable({ pid = pid, base = base:gsub("%s+$", ""), dir = dir, log = log,
        http = http.client(), cafile = opts.cafile, shutdown_path = "/shutdown" }, Sim)
    end
    if sys.wait(pid, true) then
      local text = read_file(log) or ""
      remove_dir(dir)
      return nil, "echo server exited at start: " .. text
    end
    sys.sleep(0.02)
  end
  sys.kill(pid, 9)
  sys.wait(pid)
  remove_dir(dir)
  return nil, "echo server did not start"
end

--- Bulk fixtures: {accounts = n, domains = n, prefix = "x"}.
function Sim:populate(spec)
  return self:_req("POST", "/_sim/populate", json.encode(spec))
end

--- Ask the simulator to exit and reap it (idempotent).
function Sim:stop()
  if not self.pid then return true end
  local pid = self.pid
  self.pid = nil
  pcall(self.http.request, self.http, { method = "POST", body = "",
    url = self.base .. (self.shutdown_path or "/_sim/shutdown"), timeout = 5, verify_tls = false })
  local deadline = sys.clock() + 5
  local gone = false
  while not gone and sys.clock() < deadline do
    gone = sys.wait(pid, true) ~= nil
    if not gone then sys.sleep(0.02) end
  end
  if not gone then
    sys.kill(pid, 9)
    sys.wait(pid)
  end
  self.http:close()
  remove_dir(self.dir)
  return true
end
Sim.__close = Sim.stop
Sim.__gc = Sim.stop

return M
