-- Recovery end to end: the seed estate from a real MariaDB (salvage.db.ephemeral),
-- VHD chains built with the VHD engine, `salvage recover` against the CloudStack
-- API simulator; every resource checked in the simulator's state dump. Also:
-- kill -9 at many points then resume, injected API failures, --dry-run, a policy
-- script. Fails, naming it, when this build lacks one of the modules.
-- luacheck: max line length 160
local sys = require "salvage.sys"
local json = require "salvage.json"

local rig = dofile(TOP .. "/tests/lua/recover_rig.lua")
if not rig.needs("recovery end to end") then return end
local SCHEMA, SEED = rig.SCHEMA, rig.SEED

local crypto = require "salvage.crypto"
local vhd = require "salvage.vhd"
local simulator = require "salvage.cloudstack.simulator"
local estate = require "salvage.demo.estate"
local plan = require "salvage.plan"

local slurp = SLURP

local function lines(p)
  local n = 0
  for _ in (slurp(p) or ""):gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

-- The old estate, built once: storage, inventory, plan file.
local DIR, PRIMARY, PLAN, MADE, SOURCES

local function start_sim()
  return assert(simulator.start { lifetime = 180, job_polls = 1, template_polls = 1 })
end

-- each upload is compared with the chain in the simulator's stored copy (check_state)
local spawn, run, recover_args, report_of = rig.spawn, rig.run, rig.recover_args, rig.report


local DEAD = { NotUploaded = true, UploadError = true, UploadAbandoned = true, Inactive = true }

-- vm-disk ids of the seed estate -> the chain's leaf (MADE.expect's key)
local CHAIN_OF = { ["24-25"] = "34c8b964-4ecb-4463-9535-40afc0bd2117", ["25-26"] = "10c12a4f-7bf6-45c4-9a4e-c1806c5dd54a",
  ["26-27"] = "7046409c-f1c2-49db-ad33-b2ba03a1c257", ["25-28"] = "b9a51f4a-3eb4-4d17-a36d-5359333a5d71" }

-- The VHD the server stored holds the chain's content (child over base) wherever the estate wrote.
local function same_content(key, path)
  local writes = assert(MADE.expect[CHAIN_OF[key]], "no expected writes for " .. key)
  local h = assert(vhd.open(path))
  assert.equal("dynamic", h:info().footer.disk_type)
  local size = h:info().footer.current_size
  for _, w in ipairs(writes) do
    local off = math.max(0, w[1] - 512)
    local len = math.min(#w[2] + 1024, size - off)
    local want, got = estate.expected(writes, off, len), h:read(off, len)
    assert.is_true(want == got, ("%s: %d bytes at %d differ from the chain's content"):format(key, len, off))
  end
  h:close()
end

-- The simulator's state after a complete recovery of the seed estate, checked
-- resource by resource; `names` maps the expected owners (policy tests change them).
local function check_state(st, work, want)
  want = want or {}
  local owner = want.owner or { rootvm1 = "ROOT/admin", ppvm2 = "ROOT/SPDM Inc/peterparker", ppvm3 = "ROOT/SPDM Inc/peterparker" }
  local tname = want.template or function(n) return "recovered-" .. n .. "-root" end
  -- VMs: exactly one each, right owner, name, display name, CPU/speed/RAM, stopped
  local vms = {}
  for _, v in ipairs(st.vms) do
    assert.is_nil(vms[v.name], "duplicate VM " .. v.name)
    vms[v.name] = v
  end
  local n = 0
  for _ in pairs(vms) do n = n + 1 end
  assert.equal(3, n)
  for name, path in pairs(owner) do
    local v = assert(vms[name], "VM " .. name .. " missing")
    assert.equal(path, v.domainpath .. "/" .. v.account)
    assert.equal(name, v.displayname)
    assert.same({ 1, 500, 512 }, { v.cpunumber, v.cpuspeed, v.memory })
    assert.equal(tname(name), v.templatename)
    assert.equal((want.running or {})[name] and "Running" or "Stopped", v.state)
  end
  -- templates: one live per VM, ready, OS type by name, content = our flattened root
  local live = {}
  for _, t in ipairs(st.templates) do
    if t.isready or not DEAD[t.state] then
      assert.is_nil(live[t.name], "duplicate template " .. t.name)
      live[t.name] = t
    end
  end
  local disks = report_of(work)
  local recovered = {}
  for _, r in ipairs(disks.recovered) do recovered[r.name] = r end
  local os_of = { rootvm1 = "Other Linux (64-bit)", ppvm2 = "Windows Server 2012 (64-bit)", ppvm3 = "Debian GNU/Linux 7(64-bit)" }
  local root_disk = { rootvm1 = "24-25", ppvm2 = "25-26", ppvm3 = "26-27" }
  for name in pairs(owner) do
    local t = assert(live[tname(name)], "template for " .. name)
    assert.is_true(t.isready)
    assert.equal(os_of[name], t.ostypename)
    assert.equal(name == "ppvm2", t.passwordenabled)   -- win2012-spdm had enable_password = 1
    assert.equal(21474836480, t.upload.virtualsize)
    same_content(root_disk[name], t.upload.path)
    if want.scratch then
      assert.equal(crypto.sha256_file(("%s/disks/%s.vhd"):format(want.scratch, root_disk[name])), t.upload.sha256)
    end
    assert.equal(recovered[name].new_id, vms[name].id)
  end
  -- the data disk: one live ppdatavol, attached to ppvm2 as device 1, full size, our bytes
  local datas = {}
  for _, v in ipairs(st.volumes) do
    if v.type == "DATADISK" and not DEAD[v.state] then datas[#datas + 1] = v end
  end
  assert.equal(1, #datas)
  local d = datas[1]
  assert.equal(want.volume or "ppdatavol", d.name)
  assert.equal("ppvm2", d.vmname)
  assert.equal(1, d.deviceid)
  assert.equal(5368709120, d.size)
  assert.equal(5368709120, d.upload.virtualsize)
  same_content("25-28", d.upload.path)
  if want.scratch then assert.equal(crypto.sha256_file(want.scratch .. "/disks/25-28.vhd"), d.upload.sha256) end
  -- exactly the domains and accounts needed
  local domains, accounts = {}, {}
  for _, x in ipairs(st.domains) do
    assert.is_nil(domains[x.path], "duplicate domain " .. x.path)
    domains[x.path] = true
  end
  for _, a in ipairs(st.accounts) do
    local k = a.domain .. "/" .. a.name
    assert.is_nil(accounts[k], "duplicate account " .. k)
    accounts[k] = true
  end
  return vms, live
end

describe("recovery end to end (MariaDB + VHD engine + simulator)", function()
  setup(function()
    rig.setup("/tmp/salvage-e2e-")   -- no profiles: credentials from the environment
    DIR, PRIMARY, PLAN, MADE = rig.dir, rig.primary, rig.plan, rig.made
    SOURCES = {}
    for _, f in ipairs(MADE.files) do SOURCES[f] = crypto.sha256_file(f) end
  end)
  teardown(rig.teardown)

  it("builds the demo storage as XenServer lays it out: base copies, deltas, the data disk", function()
    assert.equal(7, #MADE.files)
    local h = assert(vhd.open(PRIMARY .. "/7046409c-f1c2-49db-ad33-b2ba03a1c257.vhd"))
    local chain = h:chain()
    assert.equal(2, #chain)
    assert.truthy(chain[2]:find("9b0c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7203.vhd", 1, true))
    assert.equal("differencing", h:info().footer.disk_type)
    h:close()
    local p = assert(plan.load(PLAN))
    assert.equal(3, #p.vms)
    for _, vm in ipairs(p.vms) do assert.is_true(vm.recoverable, vm.name) end
    assert.equal("ppdatavol", p.vms[2].disks[2].name)   -- the seed attaches ppdatavol to ppvm2 (instance 25)
  end)

  it("explains damaged and broken chains in the plan, and recovers what flatten can read", function()
    local bad = DIR .. "/primary-damaged"
    assert(os.execute(("cp -a %q %q"):format(PRIMARY, bad)))
    -- ppvm3: one byte of the footer copy at offset 0 (the footer at the end is intact)
    local f = assert(io.open(bad .. "/7046409c-f1c2-49db-ad33-b2ba03a1c257.vhd", "r+b"))
    f:seek("set", 100)
    f:write("X")
    f:close()
    -- ppvm2: its template's base copy is gone, and its data disk is truncated
    assert(os.remove(bad .. "/9b0c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7202.vhd"))
    assert(os.execute(("truncate -s 3000000 %q"):format(bad .. "/b9a51f4a-3eb4-4d17-a36d-5359333a5d71.vhd")))
    local s = start_sim()
    local plan3 = DIR .. "/plan-damaged.json"
    local code, out = run(s, { "plan", "--dump", SCHEMA, "--dump", SEED, "--storage", bad, "-o", plan3, "--format", "table" })
    assert.equal(0, code, out)
    assert.truthy(out:find("3 VMs (2 recoverable)", 1, true), out)
    assert.truthy(out:find("ppvm2: error EROOT: root disk cannot be recovered: [^\n]*9b0c8d7e%-6f5a%-4b3c%-8d2e%-1f0a9b8c7202%.vhd[^\n]*missing"), out)
    local p = assert(plan.load(plan3))
    local by = {}
    for _, vm in ipairs(p.vms) do by[vm.name] = vm end
    assert.is_false(by.ppvm2.recoverable)
    assert.is_false(by.ppvm2.disks[2].recoverable)     -- the truncated data disk
    assert.is_true(by.ppvm3.recoverable)
    assert.equal("warning", by.ppvm3.disks[1].problems[1].severity)
    local work = DIR .. "/work-damaged"
    local args = recover_args(work)
    args[2] = plan3
    local rc = run(s, args)
    assert.equal(1, rc)
    local r = report_of(work)
    local names = {}
    for _, x in ipairs(r.recovered) do names[#names + 1] = x.name end
    table.sort(names)
    assert.same({ "ppvm3", "rootvm1" }, names)
    assert.equal("ppvm2", r.failed[1].name)
    assert.equal("plan", r.failed[1].step)
    -- ppvm3 came through the good footer with its content intact (in the bytes the server stored)
    local stored
    for _, t in ipairs(assert(s:state()).templates) do
      if t.name == "recovered-ppvm3-root" and t.isready then stored = t.upload.path end
    end
    same_content("26-27", assert(stored, "no ready template for ppvm3"))
    s:stop()
  end)

  it("plans from a live database (--db URL) as from a dump", function()
    local db = require "salvage.db"
    local eph = require "salvage.db.ephemeral"
    local conn = assert(db.ephemeral { load = { SCHEMA, SEED } })
    local url = ("mariadb://root@localhost/cloud?socket=%s"):format(eph.info(conn).socket)
    local code, out = RUN(("%q plan --db %q --storage %q --format table"):format(SALVAGE, url, PRIMARY))
    conn:close()
    assert.equal(0, code, out)
    assert.truthy(out:find("3 VMs (3 recoverable), 4 disks, 65G, 0 problems, 3 skipped", 1, true))
    assert.truthy(out:find("ppdatavol  DATADISK  5G", 1, true))
  end)

  it("recovers the seed estate into the simulator, every resource right, sources untouched", function()
    local s = start_sim()
    local work = DIR .. "/work-clean"
    local code, out = run(s, recover_args(work, { "--workers", "2" }))
    assert.equal(0, code, out)
    local st = assert(s:state())
    check_state(st, work)
    -- the generated password of the new account is in report.json (mode 0600), masked on stdout
    local rep = report_of(work)
    assert.equal(1, #rep.accounts)
    assert.equal("peterparker", rep.accounts[1].account)
    assert.is_true(#rep.accounts[1].password >= 12)
    for _, a in ipairs(st.accounts) do
      if a.name == "peterparker" and a.has_password ~= nil then assert.is_true(a.has_password) end
    end
    assert.truthy(out:find('"password": "***"', 1, true))
    assert.falsy(out:find(rep.accounts[1].password, 1, true))
    assert.equal(tonumber("600", 8), sys.stat(work .. "/report.json").mode & tonumber("777", 8))
    -- streamed: the workdir holds only journal, report and locks (and the workers' pids and logs);
    -- the sha256 the client computed of what it sent is what the server received
    for _, n in ipairs(sys.dir(work)) do
      assert.is_truthy(({ ["journal.jsonl"] = true, ["report.json"] = true, lock = true, locks = true,
        workers = true, logs = true })[n], n)
    end
    -- where each VM's time went: a streamed upload is its own category, nothing counted twice
    local timed = 0
    for line in io.lines(work .. "/journal.jsonl") do
      local e = json.decode(line)
      if e.step == "done" then
        local t = e.data.timing
        assert.is_true(t.stream > 0, line)
        assert.are.equal(0, t.flatten)
        assert.is_true(t.api + t.stream + t.journal <= t.total + 1e-6, line)
        timed = timed + 1
      end
    end
    assert.equal(3, timed)
    assert.is_true(rep.timing.stream_ms_mean > 0)
    local tpl_of = {}
    for _, t in ipairs(st.templates) do if t.isready then tpl_of[t.id] = t end end
    for _, r in ipairs(rep.recovered) do
      assert.matches("^%x+$", r.template_sha256)
      assert.equal(tpl_of[r.template_id].upload.sha256, r.template_sha256)
      assert.equal(tpl_of[r.template_id].upload.bytes, r.template_bytes)
      for _, v in ipairs(r.volumes) do
        for _, sv in ipairs(st.volumes) do
          if sv.id == v.new_id then assert.equal(sv.upload.sha256, v.sha256) end
        end
        assert.matches("^%x+$", v.sha256)
      end
    end
    for f, sum in pairs(SOURCES) do assert.equal(sum, crypto.sha256_file(f), f .. " changed") end
    -- a second run creates nothing
    local before = st.calls
    local code2 = run(s, recover_args(work))
    assert.equal(0, code2)
    local after = assert(s:state()).calls
    for _, cmd in ipairs({ "createDomain", "createAccount", "createServiceOffering", "getUploadParamsForTemplate",
      "getUploadParamsForVolume", "deployVirtualMachine", "attachVolume" }) do
      assert.equal(before[cmd], after[cmd], cmd .. " called again")
    end
    s:stop()
  end)

  it("ends in the same state with no duplicates after kill -9 at many points and a resume", function()
    -- kill when the journal has k records, a little later for some (mid-step)
    local points = { { 1, 0 }, { 3, 0.01 }, { 5, 0 }, { 7, 0.02 }, { 9, 0 }, { 11, 0.01 }, { 14, 0 }, { 16, 0.03 } }
    local killed = 0
    for i, pt in ipairs(points) do
      local s = start_sim()
      local work = ("%s/work-kill-%d"):format(DIR, i)
      sys.mkdir(work)
      local workers = (i % 3 == 0) and "2" or "1"
      local pid = spawn(s, recover_args(work, { "--workers", workers }))
      local journal = work .. "/journal.jsonl"
      local deadline = sys.clock() + 60
      local state = "running"
      while sys.clock() < deadline do
        if sys.wait(pid, true) then state = "exited"; break end
        if lines(journal) >= pt[1] then
          if pt[2] > 0 then sys.sleep(pt[2]) end
          sys.kill(pid, 9)
          sys.wait(pid)
          state = "killed"
          break
        end
        sys.sleep(0.002)
      end
      assert.equal("killed", state, "point " .. i .. " was not reached")
      killed = killed + 1
      local code, out = run(s, recover_args(work, { "--workers", workers }))
      assert.equal(0, code, "resume after kill point " .. i .. ":\n" .. tostring(out))
      check_state(assert(s:state()), work)
      s:stop()
    end
    assert.is_true(killed >= 5)
  end)

  it("with --scratch, redoes a flattened disk left without its journal record (killed between rename and record)", function()
    local s = start_sim()
    local work, scratch = DIR .. "/work-stale-output", DIR .. "/scratch-stale-output"
    sys.mkdir(work)
    sys.mkdir(scratch)
    sys.mkdir(scratch .. "/disks")
    -- what a run killed right after flatten's rename leaves: a file under the final name, no record
    local f = assert(io.open(scratch .. "/disks/26-27.vhd", "w"))
    f:write("stale, unverified output of a killed run")
    f:close()
    local code, out = run(s, recover_args(work, { "--scratch", scratch, "--keep-disks" }))
    assert.equal(0, code, out)
    check_state(assert(s:state()), work, { scratch = scratch })
    local h = assert(vhd.open(scratch .. "/disks/26-27.vhd"))
    assert.equal("dynamic", h:info().footer.disk_type)
    h:close()
    s:stop()
  end)

  it("reports the VMs hit by API failures with the step and the server's text, and recovers the rest", function()
    local s = start_sim()
    assert(s:faults {
      fail_commands = { deployVirtualMachine = { count = 1, errorcode = 533, cserrorcode = 4250,
        errortext = "Insufficient capacity to deploy rootvm1" } },
      job_fail = { attachVolume = { count = 1, errorcode = 530, errortext = "Failed to attach volume: SR full" } },
      http_5xx = { listTemplates = 2 },
    })
    local work = DIR .. "/work-faults"
    local code = run(s, recover_args(work))
    assert.equal(1, code)
    local r = report_of(work)
    assert.equal(1, #r.recovered)
    assert.equal("ppvm3", r.recovered[1].name)
    local failed = {}
    for _, f in ipairs(r.failed) do failed[f.name] = f end
    assert.equal("vm", failed.rootvm1.step)
    assert.truthy(failed.rootvm1.error:find("Insufficient capacity to deploy rootvm1", 1, true))
    assert.equal("attach", failed.ppvm2.step)
    assert.truthy(failed.ppvm2.error:find("SR full", 1, true))
    -- faults gone: the same command finishes the job without duplicates
    local code2, out2 = run(s, recover_args(work))
    assert.equal(0, code2, out2)
    check_state(assert(s:state()), work)
    s:stop()
  end)

  it("creates nothing with --dry-run and lists what it would create", function()
    local s = start_sim()
    local work = DIR .. "/work-dry"
    local code, out = run(s, recover_args(work, { "--dry-run" }))
    assert.equal(0, code, out)
    local r = assert(json.decode(out:match("(%b{})%s*$")))
    assert.is_true(r.dry_run)
    local kinds = {}
    for _, a in ipairs(r.actions) do kinds[a.action] = (kinds[a.action] or 0) + 1 end
    assert.same({ ["create domain"] = 1, ["create account"] = 1, ["stream"] = 4, ["upload template"] = 3,
      ["deploy VM"] = 3, ["upload volume"] = 1, ["attach volume"] = 1 }, kinds)
    local st = assert(s:state())
    for cmd in pairs(st.calls) do
      assert.falsy(cmd:match("^create") or cmd:match("^deploy") or cmd:match("^getUpload") or cmd:match("^attach")
        or cmd:match("^start"), cmd .. " called in a dry run")
    end
    assert.equal(0, #st.vms)
    assert.equal(0, #st.templates)
    assert.is_nil(sys.stat(work .. "/disks"))
    s:stop()
  end)

  it("follows a policy script that renames the customer's domain and accounts", function()
    local pol = DIR .. "/spider.lua"
    local f = assert(io.open(pol, "w"))
    f:write([[
return function(p)
  local map = p.account_map
  p.account_map = function(account, domain)
    local m = map(account, domain)
    if domain.path == "/SPDM Inc/" then
      m.domain_path = "/Spider Industries/Recovered/"
      m.account = account.name .. "-spider"
    end
    return m
  end
  p.template_name = function(vm) return "spider-" .. vm.name end
  p.volume_name = function(vol, vm) return vm.name .. "-" .. vol.name end
  p.start_after_import = function(vm) return vm.name == "ppvm2" end
end
]])
    f:close()
    local s = start_sim()
    local plan2 = DIR .. "/plan-spider.json"
    local code, out = run(s, { "plan", "--dump", SCHEMA, "--dump", SEED, "--storage", PRIMARY, "--policy", pol, "-o", plan2 })
    assert.equal(0, code, out)
    local work = DIR .. "/work-spider"
    local args = recover_args(work)
    args[2] = plan2
    local rc, rout = run(s, args)
    assert.equal(0, rc, rout)
    check_state(assert(s:state()), work, {
      owner = { rootvm1 = "ROOT/admin", ppvm2 = "ROOT/Spider Industries/Recovered/peterparker-spider",
        ppvm3 = "ROOT/Spider Industries/Recovered/peterparker-spider" },
      template = function(n) return "spider-" .. n end,
      volume = "ppvm2-ppdatavol",
      running = { ppvm2 = true },
    })
    local st = assert(s:state())
    local paths = {}
    for _, d in ipairs(st.domains) do paths[#paths + 1] = d.path end
    table.sort(paths)
    assert.same({ "ROOT", "ROOT/Spider Industries", "ROOT/Spider Industries/Recovered" }, paths)
    s:stop()
  end)

  it("streams: a workdir too small for any one disk (a 1 MiB tmpfs) still recovers everything exactly", function()
    -- the test mounts the filesystem itself; no mount, no pass
    local mnt = DIR .. "/tiny"
    assert(sys.mkdir(mnt))
    local code, _, err = RUN(("mount -t tmpfs -o size=1m,mode=0700 salvage-tiny '%s'"):format(mnt))
    assert(code == 0, "this test needs to mount a size-limited tmpfs (run as root): " .. tostring(err))
    local ok, e = pcall(function()
      local s = start_sim()
      -- every disk's stream is larger than the whole filesystem
      for _, key in ipairs { "24-25", "25-26", "26-27", "25-28" } do
        local leaf
        for _, f in ipairs(MADE.files) do if f:find(CHAIN_OF[key], 1, true) then leaf = f end end
        assert(leaf, key)
        local st <close> = assert(vhd.stream(leaf))
        assert.is_true(st:length() > (1 << 20), key .. " fits in the tmpfs")
      end
      local work = mnt .. "/work"
      local rc, out = run(s, recover_args(work, { "--workers", "2" }))
      assert.equal(0, rc, out)
      check_state(assert(s:state()), work)
      s:stop()
    end)
    RUN(("umount '%s'"):format(mnt))
    assert(ok, e)
  end)

  it("starts a failed transfer again from the first byte with a new upload URL", function()
    local s = start_sim()
    assert(s:faults { upload = { cut = { count = 2, after = 65536 } } })
    local work = DIR .. "/work-cut"
    local code, out = run(s, recover_args(work))
    assert.equal(0, code, out)
    local st = assert(s:state())
    check_state(st, work)
    -- two URLs spent and their entities removed; every upload of this run was complete
    assert.equal(4 + 2, st.calls.getUploadParamsForTemplate + st.calls.getUploadParamsForVolume)
    assert.equal(2, #st.removed_templates + #st.removed_volumes)
    assert.truthy(out:find("starting again from the first byte", 1, true))
    s:stop()
  end)

  it("with --scratch flattens into a scratch directory it makes, uploads the files, then deletes them", function()
    local s = start_sim()
    local work, scratch = DIR .. "/work-scratch", DIR .. "/scratch-new"
    local code, out = run(s, recover_args(work, { "--scratch", scratch }))
    assert.equal(0, code, out)
    check_state(assert(s:state()), work)
    assert.same({}, sys.dir(scratch .. "/disks"))
    assert.is_true(report_of(work).scratch_peak_bytes > 0)
    -- with --keep-disks the files stay, and they are what the server received
    local s2 = start_sim()
    local work2, scratch2 = DIR .. "/work-scratch-keep", DIR .. "/scratch-keep"
    code, out = run(s2, recover_args(work2, { "--scratch", scratch2, "--keep-disks" }))
    assert.equal(0, code, out)
    check_state(assert(s2:state()), work2, { scratch = scratch2 })
    s:stop()
    s2:stop()
  end)

  it("with --keep-disks keeps a copy of exactly what was sent", function()
    local s = start_sim()
    local work = DIR .. "/work-keep"
    local code, out = run(s, recover_args(work, { "--keep-disks" }))
    assert.equal(0, code, out)
    local st = assert(s:state())
    check_state(st, work, { scratch = work })
    s:stop()
  end)
end)
