-- Recovery an operator can trust (issue 10): one spec per defect, each against
-- the CloudStack API simulator with the seed estate (real MariaDB, VHD engine),
-- running `salvage recover` as a process. Numbers are the issue's.
-- luacheck: max line length 160
local sys = require "salvage.sys"
local json = require "salvage.json"

local rig = dofile(TOP .. "/tests/lua/recover_rig.lua")
if not rig.needs("recovery an operator can trust") then return end
local SCHEMA, SEED = rig.SCHEMA, rig.SEED

local api = require "salvage.cloudstack.api"
local simulator = require "salvage.cloudstack.simulator"
local plan = require "salvage.plan"
local census = dofile(TOP .. "/tests/lua/recover_census.lua")

local DIR, PRIMARY, PLAN, VMS

local slurp = SLURP

local function spit(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

local function start_sim()
  return assert(simulator.start { lifetime = 240, job_polls = 1, template_polls = 1 })
end

local spawn, run, report_of = rig.spawn, rig.run, rig.report

local function recover_args(work, extra, plan_file)
  local a = rig.recover_args(work, { "--keep-disks" }, { plan = plan_file })
  for _, x in ipairs(extra or {}) do a[#a + 1] = x end
  return a
end

local function client_of(s)
  return api.new { url = s.url, apikey = s.apikey, secretkey = s.secretkey, poll_interval = 0.02, retry_delay = 0.05 }
end

-- No duplicate, no dead leftover, no stray, every upload our bytes, 3 VMs.
local function assert_clean(s, work, p)
  local c = census.count(assert(s:state()), { workdir = work, plan = p or assert(plan.load(PLAN)), vms = 3 })
  assert.same({}, c.problems)
  return c
end

local function lines_of(p)
  local n = 0
  for _ in (slurp(p) or ""):gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

-- Wait until `pred()` or the process ends; true when pred() held.
local function wait_for(pid, pred, seconds)
  local deadline = sys.clock() + (seconds or 60)
  while sys.clock() < deadline do
    if pred() then return true end
    if sys.wait(pid, true) then return false end
    sys.sleep(0.005)
  end
  return false
end

-- Processes whose command line has `needle` (workers of a run).
local function processes_with(needle)
  local out = {}
  for _, n in ipairs(sys.dir("/proc") or {}) do
    if n:match("^%d+$") then
      local cmd = slurp("/proc/" .. n .. "/cmdline") or ""
      if cmd:find(needle, 1, true) then out[#out + 1] = tonumber(n) end
    end
  end
  return out
end

describe("recovery an operator can trust (issue 10)", function()
  setup(function()
    rig.setup("/tmp/salvage-trust-")
    DIR, PRIMARY, PLAN, VMS = rig.dir, rig.primary, rig.plan, rig.vms
  end)
  teardown(rig.teardown)

  it("1: keeps two VMs of one account with host names that normalise alike apart, by name and by tag", function()
    local vms = json.decode(json.encode(VMS))
    for _, vm in ipairs(vms) do
      if vm.name == "ppvm2" then vm.name = "web_1" end
      if vm.name == "ppvm3" then vm.name = "web-1" end
    end
    local p = assert(plan.build(vms, { storage = { PRIMARY }, policy = require("salvage.policy").new() }))
    local hosts, renamed = {}, 0
    for _, vm in ipairs(p.vms) do
      hosts[vm.hostname] = vm.name
      for _, pr in ipairs(vm.problems) do if pr.code == "ENAME" then renamed = renamed + 1 end end
    end
    assert.equal("web_1", hosts["web-1"])
    assert.equal("web-1", hosts["web-1-26"])     -- the old id on the collision, reported in the plan
    assert.is_true(renamed >= 1)
    local pf = DIR .. "/plan-web.json"
    assert(plan.save(p, pf))
    local s = start_sim()
    local work = DIR .. "/work-identity"
    local code, out = run(s, recover_args(work, nil, pf))
    assert.equal(0, code, out)
    local r = report_of(work)
    assert.equal(3, #r.recovered)
    local ids = {}
    for _, x in ipairs(r.recovered) do
      assert.is_nil(ids[x.new_id], "two VMs became one")
      ids[x.new_id] = true
    end
    local st = assert(s:state())
    assert.equal(3, #st.vms)
    for _, v in ipairs(st.vms) do assert.equal(1, #v.tags) end
    assert_clean(s, work, p)
    s:stop()
  end)

  it("1: reports a same-named resource without the tag as a conflict, and adopts it only when the policy says so", function()
    local s = start_sim()
    local work = DIR .. "/work-conflict"
    assert.equal(0, (run(s, recover_args(work))))
    -- someone else's look-alikes: the same names, no tag, and a fresh workdir
    local c = client_of(s)
    for _, kind in ipairs { { "UserVm", "listVirtualMachines" }, { "Template", "listTemplates" }, { "Volume", "listVolumes" } } do
      local params = { listall = true }
      if kind[1] == "Template" then params.templatefilter = "all" end
      for _, r in ipairs(assert(c:list(kind[2], params))) do
        if #r.tags > 0 then
          assert(c:async("deleteTags", { resourcetype = kind[1], resourceids = r.id, tags = { { key = "salvage-source" } } }))
        end
      end
    end
    local work2 = DIR .. "/work-conflict-2"
    local code, out = run(s, recover_args(work2))
    assert.equal(1, code, out)
    local r = report_of(work2)
    assert.equal(0, #r.recovered)
    for _, f in ipairs(r.failed) do assert.truthy(f.error:find("conflict", 1, true), f.error) end
    local st = assert(s:state())
    assert.equal(3, #st.vms)            -- nothing created twice, nothing adopted
    -- the policy allows adoption: the same resources, tagged now, nothing new
    local pol = DIR .. "/adopt.lua"
    spit(pol, "return { adopt_untagged = true }\n")
    local calls = st.calls
    code, out = run(s, recover_args(work2, { "--policy", pol, "--policy-changed" }))
    assert.equal(0, code, out)
    st = assert(s:state())
    assert.equal(calls.deployVirtualMachine, st.calls.deployVirtualMachine)
    assert.equal(calls.getUploadParamsForTemplate, st.calls.getUploadParamsForTemplate)
    assert_clean(s, work)
    s:stop()
  end)

  it("2: refuses a workdir made against another cloud, and with --switch-cloud recreates what is gone", function()
    local a = start_sim()
    local work = DIR .. "/work-other-cloud"
    assert.equal(0, (run(a, recover_args(work))))
    a:stop()
    local b = start_sim()
    local code, out = run(b, recover_args(work))
    assert.equal(1, code)
    assert.truthy(out:find("was used against another cloud", 1, true), out)
    local st = assert(b:state())
    assert.is_nil(st.calls.createDomain)
    assert.equal(0, #st.vms)
    code, out = run(b, recover_args(work, { "--switch-cloud" }))
    assert.equal(0, code, out)
    local r = report_of(work)
    assert.equal(3, #r.recovered)
    assert.is_true(#r.warnings >= 3)
    assert.truthy(table.concat(r.warnings, "\n"):find("is gone from the new cloud", 1, true))
    assert_clean(b, work)
    b:stop()
  end)

  it("2: makes again, with a warning naming it, what the cloud lost; counts unreadable journal lines", function()
    local s = start_sim()
    local work = DIR .. "/work-lost"
    assert.equal(0, (run(s, recover_args(work))))
    local c = client_of(s)
    local r0 = report_of(work)
    local gone = r0.recovered[1]
    assert(c:async("destroyVirtualMachine", { id = gone.new_id, expunge = true }))
    -- damage in the middle of the journal
    local text = slurp(work .. "/journal.jsonl")
    local first = text:find("\n", 1, true)
    spit(work .. "/journal.jsonl", text:sub(1, first) .. "{not json at all\n" .. text:sub(first + 1))
    local code, out = run(s, recover_args(work))
    assert.equal(0, code, out)
    local r = report_of(work)
    assert.equal(1, r.journal_unreadable)
    local w = table.concat(r.warnings, "\n")
    assert.truthy(w:find("VM " .. gone.name .. " " .. gone.new_id .. " (from the journal) is gone", 1, true), w)
    assert.truthy(w:find("unreadable line", 1, true), w)
    assert_clean(s, work)
    s:stop()
  end)

  it("5: never sends a state-changing call twice when its reply is lost; reconciles by tag and name", function()
    local s = start_sim()
    assert(s:faults { lose = { createDomain = 1, createAccount = 1, deployVirtualMachine = 1, attachVolume = 1,
      getUploadParamsForTemplate = 1, getUploadParamsForVolume = 1, createTags = 1 } })
    local work = DIR .. "/work-lost-replies"
    local code, out = run(s, recover_args(work))
    assert.equal(0, code, out)
    local st = assert(s:state())
    assert.equal(1, st.calls.createDomain)
    assert.equal(1, st.calls.createAccount)
    assert.equal(3, st.calls.deployVirtualMachine)
    assert.equal(1, st.calls.attachVolume)
    assert_clean(s, work)
    s:stop()
  end)

  it("6: retries idempotent calls whose answer is truncated", function()
    local s = start_sim()
    assert(s:faults { truncate = { queryAsyncJobResult = 3, listTemplates = 2, listVirtualMachines = 1 } })
    local work = DIR .. "/work-truncated"
    local code, out = run(s, recover_args(work))
    assert.equal(0, code, out)
    assert_clean(s, work)
    s:stop()
  end)

  it("3: stops an orphan worker of a killed run whatever the workdir's spelling (flock per VM)", function()
    local s = start_sim()
    sys.mkdir(DIR .. "/cwd")
    local rel = "../work-orphan"
    local pid = spawn(s, recover_args(rel, { "--workers", "2" }), { cwd = DIR .. "/cwd" })
    -- kill the parent only, once a worker is uploading
    local reached = wait_for(pid, function()
      return (slurp(DIR .. "/work-orphan/journal.jsonl") or ""):find('"intent:volume', 1, true) ~= nil
    end)
    assert.is_true(reached, "no upload started")
    sys.kill(pid, 9)
    sys.wait(pid)
    local orphans = processes_with("--parent-pid\0" .. pid)
    assert.is_true(#orphans >= 1, "no orphan to find")
    local code, out = run(s, recover_args(DIR .. "/./work-orphan", { "--workers", "2" }))
    assert.equal(0, code, out)
    for _, o in ipairs(orphans) do
      local stat = slurp("/proc/" .. o .. "/stat") or ""
      assert.truthy(stat == "" or stat:match("^%d+ %b() Z"), "orphan " .. o .. " still runs")
    end
    assert_clean(s, DIR .. "/work-orphan")
    s:stop()
  end)

  it("4, 11: removes the dead leftovers of earlier runs (found by tag) and makes them again, without a hang", function()
    local s = start_sim()
    local work = DIR .. "/work-leftovers"
    -- a failed deployment leaves rootvm1 in Error; failed POSTs a NotUploaded template (a streamed
    -- upload is tried 3 times, each with a new URL, within the run: all 3 fail here)
    assert(s:faults { job_fail = { deployVirtualMachine = 1 }, upload = { http_5xx = 3 } })
    local code = run(s, recover_args(work))
    assert.equal(1, code)
    -- and a template left NotUploaded by a killed run, tagged as rootvm1's root disk
    local p = assert(plan.load(PLAN))
    local c = client_of(s)
    local rootvm1 = p.vms[1]
    assert.equal("rootvm1", rootvm1.name)
    local zone = assert(c:list("listZones"))[1].id
    local up = assert(c:call("getUploadParamsForTemplate", { name = rootvm1.template.name, format = "VHD",
      hypervisor = "XenServer", zoneid = zone, displaytext = "x" }))
    local left = up.getuploadparams.id
    assert(c:async("createTags", { resourcetype = "Template", resourceids = left,
      tags = { { key = "salvage-source", value = rootvm1.disks[1].uuid } } }))
    local t0 = sys.clock()
    local code2, out2 = run(s, recover_args(work))
    assert.equal(0, code2, out2)
    assert.is_true(sys.clock() - t0 < 60)
    assert_clean(s, work)
    local st = assert(s:state())
    local removed = {}
    for _, t in ipairs(st.removed_templates) do removed[t.id] = true end
    assert.is_true(removed[left], "the leftover template was not removed")
    assert.is_true(#st.removed_vms >= 1, "the VM in Error was not expunged")
    s:stop()
  end)

  it("8: SIGINT and SIGTERM stop the whole run within seconds, one line, exit 130/143, resumable", function()
    local s = start_sim()
    for _, case in ipairs { { sig = 2, code = 130, name = "SIGINT", workers = "1" },
      { sig = 15, code = 143, name = "SIGTERM", workers = "2" } } do
      local work = ("%s/work-stop-%s"):format(DIR, case.name)
      local pid, log = spawn(s, recover_args(work, { "--workers", case.workers }))
      assert.is_true(wait_for(pid, function() return lines_of(work .. "/journal.jsonl") >= 6 end))
      local t0 = sys.clock()
      sys.kill(pid, case.sig)
      local how, code = sys.wait(pid)
      assert.is_true(sys.clock() - t0 < 10)
      assert.equal("exited", how)
      assert.equal(case.code, code)
      local text = slurp(log)
      local _, n = text:gsub("stopped by " .. case.name, "")
      assert.equal(1, n, text)
      assert.same({}, processes_with("--parent-pid\0" .. pid))
      local rc, out = run(s, recover_args(work, { "--workers", case.workers }))
      assert.equal(0, rc, out)
    end
    s:stop()
  end)

  it("10: checks credentials, reachability, the zone and every disk once, before creating anything", function()
    local s = start_sim()
    local work = DIR .. "/work-preflight"
    local code, out = run(s, recover_args(work), { env = { SALVAGE_SECRET_KEY = "wrong" } })
    assert.equal(1, code)
    local _, n = out:gsub("refused the credentials", "")
    assert.equal(1, n, out)
    code, out = run(s, recover_args(work), { env = { SALVAGE_API_URL = "http://127.0.0.1:9/client/api" } })
    assert.equal(1, code)
    assert.truthy(out:find("cannot reach the new cloud at http://127.0.0.1:9/client/api", 1, true), out)
    local args = recover_args(work)
    args[4] = "Zone9"
    code, out = run(s, args)
    assert.equal(1, code)
    assert.truthy(out:find("zone 'Zone9' not found in the new cloud (its zones: Zone1)", 1, true), out)
    -- the storage is gone: nothing is created, one message names the files
    assert(os.execute(("mv %q %q"):format(PRIMARY, PRIMARY .. ".away")))
    code, out = run(s, recover_args(work))
    assert(os.execute(("mv %q %q"):format(PRIMARY .. ".away", PRIMARY)))
    assert.equal(1, code)
    assert.truthy(out:find("planned disk file(s) cannot be read", 1, true), out)
    local st = assert(s:state())
    for cmd in pairs(st.calls) do assert.falsy(cmd:match("^create") or cmd:match("^deploy") or cmd:match("^getUpload"), cmd) end
    s:stop()
  end)

  it("10: --skip-unreadable recovers the VMs it can read and fails the others, each named", function()
    local s = start_sim()
    local work = DIR .. "/work-skip"
    local lost = PRIMARY .. "/b9a51f4a-3eb4-4d17-a36d-5359333a5d71.vhd"   -- ppvm2's data disk only
    assert(os.execute(("mv %q %q"):format(lost, lost .. ".away")))
    local code, out = run(s, recover_args(work))
    assert.equal(1, code)
    assert.truthy(out:find("1 planned disk file(s) cannot be read: " .. lost, 1, true), out)
    assert.truthy(out:find("--skip-unreadable recovers the other VMs", 1, true), out)
    assert.equal(0, #assert(s:state()).vms)
    code, out = run(s, recover_args(work, { "--skip-unreadable" }))
    assert(os.execute(("mv %q %q"):format(lost .. ".away", lost)))
    assert.equal(1, code, out)
    local r = report_of(work)
    assert.equal(2, #r.recovered)
    assert.equal(1, #r.failed)
    assert.same({ "ppvm2", "preflight" }, { r.failed[1].name, r.failed[1].step })
    assert.truthy(r.failed[1].error:find(lost, 1, true), r.failed[1].error)
    assert.truthy(table.concat(r.warnings, "\n"):find("ppvm2: not recovered", 1, true))
    local st = assert(s:state())
    local names = {}
    for _, v in ipairs(st.vms) do names[#names + 1] = v.name end
    table.sort(names)
    assert.same({ "ppvm3", "rootvm1" }, names)
    for _, t in ipairs(st.templates) do assert.not_equal("recovered-ppvm2-root", t.name) end
    -- the disk is back: the next run recovers ppvm2 alone, and nothing twice
    code, out = run(s, recover_args(work))
    assert.equal(0, code, out)
    assert_clean(s, work)
    s:stop()
  end)

  it("10: summarises an HTML error page by its status and title", function()
    local text = api.summarize_body { status = 502, headers = { ["content-type"] = "text/html" },
      body = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>" .. ("x"):rep(5000) }
    assert.equal("HTTP 502, HTML page: 502 Bad Gateway", text)
  end)

  it("9: a dry run creates nothing, writes no journal, never fails on what it would create, says 'would recover N'", function()
    local s = start_sim()
    -- the customer's domain exists, its account does not: the account is one a real run would create
    local c = client_of(s)
    assert(c:call("createDomain", { name = "SPDM Inc" }))
    local work = DIR .. "/work-dry/sub"
    local args = recover_args(work, { "--dry-run" })
    args[#args - 2] = "table"   -- --format table
    local code, out = run(s, args)
    assert.equal(0, code, out)
    assert.truthy(out:find("would recover 3, 0 would fail", 1, true), out)
    assert.is_nil(sys.stat(work))
    local st = assert(s:state())
    for cmd in pairs(st.calls) do
      assert.falsy(cmd:match("^create[^D]") or cmd:match("^deploy") or cmd:match("^getUpload") or cmd:match("^attach"), cmd)
    end
    s:stop()
  end)

  it("7: deletes a flattened disk once its upload is verified, removes stale temporaries, reports the peak", function()
    local s = start_sim()
    local work = DIR .. "/work-scratch"
    sys.mkdir(work)
    sys.mkdir(work .. "/disks")
    spit(work .. "/disks/.24-25.vhd.salvage-AbC123", ("partial"):rep(1000))
    local args = recover_args(work)
    table.remove(args)   -- no --keep-disks
    args[#args + 1] = "--scratch"   -- flatten to files (the default streams: no scratch at all)
    args[#args + 1] = work
    local code, out = run(s, args)
    assert.equal(0, code, out)
    assert.same({}, sys.dir(work .. "/disks"))
    local r = report_of(work)
    assert.is_true(r.scratch_peak_bytes > 0)
    s:stop()
  end)

  it("12: recovers a damaged disk marked force, lists the zero-filled ranges; keeps the plan's policy", function()
    local bad = DIR .. "/primary-forced"
    assert(os.execute(("cp -a %q %q"):format(PRIMARY, bad)))
    -- cut inside the data disk's written data: flatten --force zero-fills the rest of the block
    assert(os.execute(("truncate -s 2118000 %q"):format(bad .. "/b9a51f4a-3eb4-4d17-a36d-5359333a5d71.vhd")))
    local s = start_sim()
    local pol = DIR .. "/forced-policy.lua"
    spit(pol, "return { name_prefix = 'r-' }\n")
    local pf = DIR .. "/plan-forced.json"
    local code, out = run(s, { "plan", "--dump", SCHEMA, "--dump", SEED, "--storage", bad, "--policy", pol,
      "--force-disk", "ppdatavol", "-o", pf })
    assert.equal(0, code, out)
    local p = assert(plan.load(pf))
    assert.is_true(p.vms[2].disks[2].force)
    assert.is_true(p.vms[2].disks[2].recoverable)
    assert.equal(pol, p.policy.file)
    local work = DIR .. "/work-forced"
    code, out = run(s, recover_args(work, nil, pf))
    assert.equal(0, code, out)
    local r = report_of(work)
    local ppvm2
    for _, x in ipairs(r.recovered) do if x.name == "ppvm2" then ppvm2 = x end end
    assert.is_true(#ppvm2.zero_filled >= 1)
    assert.equal("ppdatavol", ppvm2.zero_filled[1].disk)
    -- the policy file changed since the plan: refused unless told
    spit(pol, "return { name_prefix = 'other-' }\n")
    code, out = run(s, recover_args(DIR .. "/work-forced-2", nil, pf))
    assert.equal(1, code)
    assert.truthy(out:find("--policy-changed", 1, true), out)
    -- a misspelled hook is an error, not a silently ignored field
    spit(pol, "return { vm_filtr = function() return true end }\n")
    code, out = run(s, { "plan", "--dump", SCHEMA, "--dump", SEED, "--storage", bad, "--policy", pol, "-o", pf })
    assert.equal(1, code)
    assert.truthy(out:find("unknown policy field 'vm_filtr'", 1, true), out)
    s:stop()
  end)
end)
