-- What the recovery specs share (e2e, trust, KVM, LVM): the modules they need,
-- a private directory with the seed estate and its plan, and `salvage` run as a
-- process against a simulator. dofile gives each spec file its own rig.
--
--   local rig = dofile(TOP .. "/tests/lua/recover_rig.lua")
--   if not rig.needs("recovery end to end") then return end   -- a failing spec names the module
--   setup(function() rig.setup("/tmp/salvage-e2e-") end)        -- rig.dir, rig.primary, rig.plan,
--   teardown(rig.teardown)                                        -- rig.made, rig.vms
--   local code, log = rig.run(sim, rig.recover_args(work, { "--workers", "2" }))
--   local pid, logfile = rig.spawn(sim, args, { env =, cwd =, setsid = })
local sys = require "salvage.sys"

local rig = {
  -- what `salvage recover` needs in this build, besides the simulator's Python
  MODULES = { "salvage.vhd", "salvage.db", "salvage.cloudstack.inventory", "salvage.policy",
    "salvage.cloudstack.api", "salvage.cloudstack.simulator", "salvage.crypto" },
  SCHEMA = CLOUDSTACK("schema-4.5.2.sql"),
  SEED = CLOUDSTACK("seed-4.5.2.sql"),
}

--- needs(title [, modules]) -> true, or false after declaring a spec `title` that fails
-- naming the first module this build lacks (a missing input fails, never vanishes).
function rig.needs(title, modules)
  for _, m in ipairs(modules or rig.MODULES) do
    if not pcall(require, m) then
      describe(title, function()
        it("has every module it needs", function() error("this build lacks " .. m) end)
      end)
      return false
    end
  end
  return true
end

--- setup(prefix [, {estate = false}]): a private directory (rig.dir) with an empty config
-- file, and unless told otherwise the seed estate's chains in rig.primary (rig.made, rig.vms)
-- and its plan in rig.plan.
function rig.setup(prefix, opts)
  rig.dir = assert(sys.mkdtemp(prefix))
  rig.config = rig.dir .. "/no-config.lua"
  local f = assert(io.open(rig.config, "w"))
  f:write("return {}\n")
  f:close()
  if opts and opts.estate == false then return end
  local estate, plan = require "salvage.demo.estate", require "salvage.plan"
  rig.primary = rig.dir .. "/primary"
  assert(sys.mkdir(rig.primary))
  local made, vms = estate.from_dump(rig.primary, { rig.SCHEMA, rig.SEED })
  assert(made, vms)
  rig.made, rig.vms = made, vms
  local p = assert(plan.build(vms, { storage = { rig.primary }, policy = require("salvage.policy").new() }))
  rig.plan = rig.dir .. "/plan.json"
  assert(plan.save(p, rig.plan))
end

function rig.teardown()
  if rig.dir then os.execute("rm -rf '" .. rig.dir .. "'") end
end

--- The environment of a run against simulator s (API URL and keys, no config file), with
-- `over` on top.
function rig.env(s, over)
  local e = { SALVAGE_API_URL = s.url, SALVAGE_API_KEY = s.apikey, SALVAGE_SECRET_KEY = s.secretkey,
    SALVAGE_CONFIG = rig.config }
  for k, v in pairs(over or {}) do e[k] = v end
  return e
end

local n_runs = 0

--- Start `salvage ARGS...` in the background against simulator s; opts: env (added),
-- cwd, setsid. -> pid, log path (stdout and stderr).
function rig.spawn(s, args, opts)
  opts = opts or {}
  n_runs = n_runs + 1
  local log = ("%s/run-%d.log"):format(rig.dir, n_runs)
  local argv = { SALVAGE }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = rig.env(s, opts.env)
  argv.cwd = opts.cwd
  argv.setsid = opts.setsid
  argv.stdout, argv.stderr, argv.stdin = log, log, "/dev/null"
  return assert(sys.spawn(argv)), log
end

--- Run it to the end: exit code (minus the signal number when killed), and its output.
function rig.run(s, args, opts)
  local pid, log = rig.spawn(s, args, opts)
  local how, code = sys.wait(pid)
  return how == "exited" and code or -code, SLURP(log)
end

--- The arguments of `salvage recover` of the plan (o.plan, default rig.plan) into zone
-- o.zone (default Zone1) with work directory `work`, JSON report, fast polling; then extra.
function rig.recover_args(work, extra, o)
  o = o or {}
  local a = { "recover", o.plan or rig.plan, "--zone", o.zone or "Zone1", "--workdir", work,
    "--poll-interval", "0.02", "--format", "json" }
  for _, x in ipairs(extra or {}) do a[#a + 1] = x end
  return a
end

--- The report a run left in its work directory.
function rig.report(work)
  return assert(require("salvage.json").decode(assert(SLURP(work .. "/report.json"))))
end

return rig
