-- bench/kill.sh's body (run by salvage): kill -9 trials at random moments of
-- `salvage recover` against the API simulator, each followed by a resume, then
-- the census of the new cloud: duplicates, dead leftovers, stray resources,
-- content mismatches, orphans. All must be 0. Figures, not a pass/fail test.
local sys = require "salvage.sys"
local json = require "salvage.json"
local simulator = require "salvage.cloudstack.simulator"
local estate = require "salvage.demo.estate"

local TOP = assert(os.getenv("TOP"), "TOP")
local SALVAGE = os.getenv("SALVAGE") or (TOP .. "/salvage")
local D = assert(arg[1], "usage: kill.lua DIR [TRIALS]")
local TRIALS = tonumber(arg[2] or "32")
local SIZE = tonumber(os.getenv("BENCH_DISK_BYTES") or "") or 48 * 1024 * 1024
local census = dofile(TOP .. "/tests/lua/recover_census.lua")
local plan = require "salvage.plan"

local function slurp(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The estate: 4 VMs in 2 accounts, two whose names normalise alike, two data disks.
local function build_estate()
  local vms = {}
  local names = { "web_1", "web-1", "db", "cache" }
  for i = 1, 4 do
    local acct = (i - 1) // 2 + 1
    local vm = { id = 500 + i, uuid = ("kill-vm-%d"):format(i), name = names[i], display_name = names[i],
      state = "Stopped", hypervisor = "XenServer",
      account = { id = acct, name = ("cust%d"):format(acct), type = 0 },
      domain = { id = 2, name = "Customers", path = "/Customers/" },
      offering = { name = "Small Instance", cpu = 1, speed = 500, ram = 512 },
      guest_os = "Other Linux (64-bit)", template = { name = "base", requires_hvm = true, password_enabled = false },
      problems = {},
      volumes = { { id = 5000 + i, uuid = ("kill-root-%d"):format(i), name = "ROOT-" .. i, type = "ROOT",
        state = "Ready", size = SIZE, device_id = 0, format = "VHD", path = ("root-%d"):format(i),
        parent_base = ("base-%d.vhd"):format(i % 2), problems = {} } } }
    if i % 2 == 1 then
      table.insert(vm.volumes, { id = 6000 + i, uuid = ("kill-data-%d"):format(i), name = "data", type = "DATADISK",
        state = "Ready", size = SIZE // 2, device_id = 1, format = "VHD", path = ("data-%d"):format(i), problems = {} })
    end
    vms[#vms + 1] = vm
  end
  sys.mkdir(D .. "/primary")
  assert(estate.build(D .. "/primary", vms))
  local f = assert(io.open(D .. "/inventory.json", "w"))
  f:write(json.encode(vms))
  f:close()
  local ok = os.execute(("%q plan --inventory %q --storage %q -o %q --quiet"):format(SALVAGE, D .. "/inventory.json",
    D .. "/primary", D .. "/plan.json"))
  assert(ok, "plan failed")
  return assert(plan.load(D .. "/plan.json"))
end

local function recover_argv(s, work, workers)
  local argv = { SALVAGE, "recover", D .. "/plan.json", "--zone", "Zone1", "--workdir", work, "--workers", workers,
    "--poll-interval", "0.02", "--format", "json", "--keep-disks", "--quiet" }
  argv.env = { SALVAGE_API_URL = s.url, SALVAGE_API_KEY = s.apikey, SALVAGE_SECRET_KEY = s.secretkey,
    SALVAGE_CONFIG = D .. "/no-config.lua" }
  return argv
end

-- The moment to kill at: a predicate on the workdir.
local MOMENTS = {
  flatten = function(work)
    for _, n in ipairs(sys.dir(work .. "/disks") or {}) do if n:find("%.salvage%-") then return true end end
  end,
  upload = function(work)
    local j = slurp(work .. "/journal.jsonl") or ""
    return j:find('"intent:template', 1, true) or j:find('"intent:volume', 1, true)
  end,
  deploy = function(work) return (slurp(work .. "/journal.jsonl") or ""):find('"intent:vm', 1, true) end,
  random = function(_, t0, at) return sys.clock() - t0 >= at end,
}
local MOMENT_NAMES = { "flatten", "upload", "deploy", "random" }

local function alive(pid)
  local st = slurp("/proc/" .. pid .. "/stat")
  return st ~= nil and not st:match("^%d+ %b() Z")
end

local function orphans_of(pid)
  local out = {}
  for _, n in ipairs(sys.dir("/proc") or {}) do
    if n:match("^%d+$") then
      local cmd = slurp("/proc/" .. n .. "/cmdline") or ""
      if cmd:find("--parent-pid\0" .. pid .. "\0", 1, true) and alive(n) then out[#out + 1] = n end
    end
  end
  return out
end

local p = build_estate()
local f = assert(io.open(D .. "/no-config.lua", "w"))
f:write("return {}\n")
f:close()
math.randomseed(tonumber(os.getenv("BENCH_SEED") or "") or os.time())
local totals = { duplicates = 0, dead = 0, strays = 0, mismatches = 0, missing = 0, orphans = 0, resume_failed = 0,
  not_reached = 0 }
local t_all = sys.clock()
for i = 1, TRIALS do
  local group = i % 2 == 0
  local workers = ((i - 1) // 2) % 2 == 0 and "1" or "2"
  local moment = MOMENT_NAMES[((i - 1) // 4) % #MOMENT_NAMES + 1]
  local delay = math.random() * 0.3
  local s = assert(simulator.start { lifetime = 600, job_polls = 1, template_polls = 1 })
  local work = ("%s/work-%02d"):format(D, i)
  sys.mkdir(work)
  local argv = recover_argv(s, work, workers)
  argv.setsid = true
  argv.stdout, argv.stderr, argv.stdin = work .. ".log", work .. ".log", "/dev/null"
  local pid = assert(sys.spawn(argv))
  local t0 = sys.clock()
  local at = math.random() * 2.5   -- within a typical run (4 VMs of 48 MiB)
  local reached = false
  while sys.clock() - t0 < 120 do
    if sys.wait(pid, true) then break end
    if MOMENTS[moment](work, t0, at) then
      reached = true
      break
    end
    sys.sleep(0.002)
  end
  local orphans_before = {}
  if reached then
    sys.sleep(delay)
    orphans_before = orphans_of(pid)
    sys.kill(group and -pid or pid, 9)
    sys.wait(pid)
  else
    totals.not_reached = totals.not_reached + 1
  end
  local rargv = recover_argv(s, work, workers)
  rargv.stdout, rargv.stderr, rargv.stdin = work .. "-resume.log", work .. "-resume.log", "/dev/null"
  local rpid = assert(sys.spawn(rargv))
  local how, code = sys.wait(rpid)
  if not (how == "exited" and code == 0) then totals.resume_failed = totals.resume_failed + 1 end
  local orphans = #orphans_of(pid)
  local c = census.count(assert(s:state()), { workdir = work, plan = p, vms = 4 })
  for _, k in ipairs { "duplicates", "dead", "strays", "mismatches", "missing" } do totals[k] = totals[k] + c[k] end
  totals.orphans = totals.orphans + orphans
  print(("trial %2d: kill -9 %-7s workers %s at %-7s%s +%3.0f ms (%d workers alive then): resume %s; duplicates %d, "
    .. "dead %d, strays %d, mismatches %d, missing %d, orphans %d"):format(i, group and "group" or "parent", workers,
    moment, reached and "" or " (ended first)", delay * 1000, #orphans_before,
    (how == "exited" and code == 0) and "ok" or ("exit " .. tostring(code)), c.duplicates, c.dead, c.strays,
    c.mismatches, c.missing, orphans))
  for _, pr in ipairs(c.problems) do print("    " .. pr) end
  s:stop()
  if not os.getenv("BENCH_DIR") then os.execute(("rm -rf %q %q.log %q-resume.log"):format(work, work, work)) end
end
print(("kill -9 bench: %d trials in %.0f s (%d ended before the kill moment): duplicates %d, dead leftovers %d, "
  .. "stray resources %d, content mismatches %d, orphans %d, missing VMs %d, failed resumes %d"):format(TRIALS,
  sys.clock() - t_all, totals.not_reached, totals.duplicates, totals.dead, totals.strays, totals.mismatches,
  totals.orphans, totals.missing, totals.resume_failed))
