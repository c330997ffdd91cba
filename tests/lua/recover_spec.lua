-- salvage.recover: the step machine against an in-memory cloud (recover_fake):
-- luacheck: max line length 200
-- idempotent steps, resume after a crash at any state change, failures isolated,
-- dry run, --only. The same engine runs against the simulator in recover_e2e_spec.
package.path = TOP .. "/tests/lua/?.lua;" .. package.path
local plan = require "salvage.plan"
local recover = require "salvage.recover"
local sys = require "salvage.sys"
local json = require "salvage.json"
local log = require "salvage.log"
local fake = require "recover_fake"

log.configure { quiet = true, sink = function() end }

-- What a cloud holds, in a comparable form (no generated ids).
local function shape(cloud)
  local out = { domains = {}, accounts = {}, templates = {}, vms = {}, volumes = {}, offerings = #cloud.offerings }
  local dname = {}
  for _, d in ipairs(cloud.domains) do dname[d.id] = d.name end
  for _, d in ipairs(cloud.domains) do out.domains[#out.domains + 1] = d.name end
  for _, a in ipairs(cloud.accounts) do out.accounts[#out.accounts + 1] = dname[a.domainid] .. "/" .. a.name end
  local tname = {}
  for _, t in ipairs(cloud.templates) do
    tname[t.id] = t.name
    out.templates[#out.templates + 1] = t.name .. "@" .. t.account .. ":" .. t.content:match("\n(.*)")
  end
  local vmname = {}
  for _, v in ipairs(cloud.vms) do
    vmname[v.id] = v.name
    out.vms[#out.vms + 1] = ("%s %s %s %s %s"):format(v.name, v.account, dname[v.domainid], tname[v.templateid], v.state)
  end
  for _, v in ipairs(cloud.volumes) do
    out.volumes[#out.volumes + 1] = ("%s %s %s dev%s"):format(v.name, v.state, tostring(vmname[v.virtualmachineid]),
      tostring(v.deviceid))
  end
  for _, k in ipairs({ "domains", "accounts", "templates", "vms", "volumes" }) do table.sort(out[k]) end
  return out
end

-- Running VMs are started again (salvage.policy's default keeps every VM stopped).
local STARTS = require("salvage.policy").new { start_after_import = function(vm) return vm.state == "Running" end }

describe("salvage.recover (in-memory cloud)", function()
  local dir, p
  before_each(function()
    dir = assert(sys.mkdtemp("/tmp/salvage-recover-"))
    sys.mkdir(dir .. "/storage")
    fake.storage(dir .. "/storage")
    p = assert(plan.build(fake.inventory(), { storage = { dir .. "/storage" }, vhd = fake.vhd(), policy = STARTS }))
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  local function run(cloud, extra, workdir)
    -- the fake VHD engine flattens (no streams): these specs run the --scratch path
    local opts = { client = cloud, zone = "Zone1", workdir = workdir or (dir .. "/work"), vhd = fake.vhd(), poll_interval = 0 }
    opts.scratch = opts.workdir
    for k, v in pairs(extra or {}) do opts[k] = v end
    return recover.run(p, opts)
  end

  it("recovers every VM into the right owner, with its disks, and writes the report", function()
    local cloud = fake.cloud()
    local report = run(cloud)
    assert.equal(3, #report.recovered)
    assert.equal(0, #report.failed)
    assert.same({
      domains = { "ROOT", "SPDM Inc" },
      accounts = { "ROOT/admin", "SPDM Inc/peterparker" },
      templates = { "recovered-ppvm2-root@peterparker:ppvm2 root", "recovered-ppvm3-root@peterparker:ppvm3 root",
        "recovered-rootvm1-root@admin:rootvm1 root" },
      vms = { "ppvm2 peterparker SPDM Inc recovered-ppvm2-root Running",
        "ppvm3 peterparker SPDM Inc recovered-ppvm3-root Stopped", "rootvm1 admin ROOT recovered-rootvm1-root Running" },
      volumes = { "ppdatavol Ready ppvm2 dev1" },
      offerings = 1,   -- Small Instance (1 CPU, 500 MHz, 512 MB) already existed
    }, shape(cloud))
    -- template flags from the old template, OS type by name
    for _, t in ipairs(cloud.templates) do
      if t.name == "recovered-ppvm2-root" then
        assert.equal("os-2", t.ostypeid)
        assert.is_true(t.passwordenabled)
      end
    end
    local saved = assert(json.decode(assert(io.open(dir .. "/work/report.json")):read("a")))
    assert.equal(3, #saved.recovered)
    assert.equal(1, #saved.accounts)        -- admin existed; peterparker was created
    assert.equal("peterparker", saved.accounts[1].account)
    assert.truthy(#saved.accounts[1].password >= 12)
    for _, a in ipairs(saved.accounts) do
      for _, acc in ipairs(cloud.accounts) do
        if acc.name == a.account then assert.equal(acc.password, a.password) end
      end
    end
    local ppvm2
    for _, r in ipairs(saved.recovered) do if r.name == "ppvm2" then ppvm2 = r end end
    assert.equal(28, ppvm2.volumes[1].old_id)
    assert.equal(1, ppvm2.volumes[1].deviceid)
    assert.truthy(recover.table(report):find("3 recovered, 0 failed, 0 skipped", 1, true))
    -- flattened copies are deleted once the new cloud has them (scratch does not grow with the estate)
    assert.is_nil(sys.stat(dir .. "/work/disks/25-28.vhd"))
    assert.is_true(saved.scratch_peak_bytes > 0)
  end)

  it("creates nothing the second time", function()
    local cloud = fake.cloud()
    run(cloud)
    local before = cloud.creates
    local report = run(cloud)
    assert.equal(before, cloud.creates)
    assert.equal(3, #report.recovered)
  end)

  it("finds what a crashed run created but did not journal, at every state change", function()
    local reference = fake.cloud()
    run(reference)
    local want = shape(reference)
    local total = reference.creates
    assert.is_true(total >= 10)
    for n = 1, total do
      local cloud = fake.cloud()
      cloud.crash_after = n
      local work = ("%s/work-%d"):format(dir, n)
      local first = run(cloud, nil, work)
      assert.is_true(#first.failed >= 1, "crash " .. n .. " left no failure")
      local second = run(cloud, nil, work)
      assert.equal(3, #second.recovered, "after crash " .. n)
      assert.same(want, shape(cloud), "after crash " .. n)
    end
  end)

  it("reports a failed VM with the step and the server's text, and recovers the others", function()
    local cloud = fake.cloud()
    cloud.faults.deployVirtualMachine = { errorcode = 533, errortext = "Insufficient capacity" }
    local report = run(cloud)
    assert.equal(2, #report.recovered)
    assert.equal(1, #report.failed)
    assert.equal("rootvm1", report.failed[1].name)
    assert.equal("vm", report.failed[1].step)
    assert.equal("Insufficient capacity (533)", report.failed[1].error)
    -- and a later run finishes it
    local again = run(cloud)
    assert.equal(3, #again.recovered)
    assert.equal(0, #again.failed)
  end)

  it("fails VMs of an account that cannot be created, and only those", function()
    local cloud = fake.cloud()
    cloud.faults.createAccount = { errorcode = 530, errortext = "LDAP says no", always = true }
    local report = run(cloud)
    assert.equal(1, #report.recovered)
    assert.equal("rootvm1", report.recovered[1].name)
    assert.equal(2, #report.failed)
    for _, f in ipairs(report.failed) do
      assert.equal("account", f.step)
      assert.equal("LDAP says no (530)", f.error)
    end
  end)

  it("creates nothing in a dry run and says what it would do", function()
    local cloud = fake.cloud()
    local report = run(cloud, { dry_run = true })
    assert.equal(0, cloud.creates)
    assert.is_true(report.dry_run)
    assert.equal(3, #report.recovered)
    local kinds = {}
    for _, a in ipairs(report.actions) do kinds[a.action] = (kinds[a.action] or 0) + 1 end
    assert.same({ ["create domain"] = 1, ["create account"] = 1, ["flatten"] = 4, ["upload template"] = 3,
      ["deploy VM"] = 3, ["upload volume"] = 1, ["attach volume"] = 1, ["start VM"] = 2 }, kinds)
    assert.is_nil(sys.stat(dir .. "/work/report.json"))
    assert.is_nil(sys.stat(dir .. "/work/disks"))
    local f = io.open(dir .. "/work/journal.jsonl")
    assert.equal("", f and f:read("a") or "")
    if f then f:close() end
    assert.truthy(recover.table(report):find("nothing was created", 1, true))
  end)

  it("recovers only the VMs named with --only", function()
    local cloud = fake.cloud()
    local report = run(cloud, { only = { "ppvm3" } })
    assert.equal(1, #report.recovered)
    assert.equal("ppvm3", report.recovered[1].name)
    assert.equal(1, #cloud.vms)
  end)

  it("reports a VM the plan marked unrecoverable, and touches nothing for it", function()
    p.vms[1].recoverable = false
    p.vms[1].problems = { { code = "EROOT", severity = "error", message = "root disk cannot be recovered: gone" } }
    local cloud = fake.cloud()
    local report = run(cloud)
    assert.equal(2, #report.recovered)
    assert.equal("plan", report.failed[1].step)
    assert.truthy(report.failed[1].error:find("gone", 1, true))
    for _, v in ipairs(cloud.vms) do assert.not_equal("rootvm1", v.name) end
  end)

  it("keeps two data volumes of the same name in one account apart, also across a crash", function()
    fake.write_disk(dir .. "/storage/data99.vhd", 500, "ppvm3 data")
    local inv = fake.inventory()
    local extra = {}
    for k, v in pairs(inv[2].volumes[1]) do extra[k] = v end
    extra.id, extra.path, extra.uuid = 99, "data99", "u-99"
    table.insert(inv[3].volumes, extra)          -- ppvm3 gets a data disk also named ppdatavol
    p = assert(plan.build(inv, { storage = { dir .. "/storage" }, vhd = fake.vhd(), policy = STARTS }))
    for n = 0, 14 do
      local cloud = fake.cloud()
      local work = ("%s/work-dup-%d"):format(dir, n)
      if n > 0 then
        cloud.crash_after = n
        run(cloud, nil, work)
      end
      local report = run(cloud, nil, work)
      assert.equal(3, #report.recovered, "crash " .. n)
      local by_vm = {}
      for _, v in ipairs(cloud.volumes) do
        local owner
        for _, vm in ipairs(cloud.vms) do if vm.id == v.virtualmachineid then owner = vm.name end end
        by_vm[#by_vm + 1] = ("%s %s %s"):format(v.name, tostring(owner), v.content:match("\n(.*)"))
      end
      table.sort(by_vm)
      -- names are unique in the account: the second takes its old id (the plan says so)
      assert.same({ "ppdatavol ppvm2 ppvm2 data", "ppdatavol-99 ppvm3 ppvm3 data" }, by_vm, "crash " .. n)
    end
  end)

  it("deploys under a valid host name, keeping the old name as display name", function()
    assert.equal("web-01-old", recover.hostname("web_01 (old)"))
    assert.equal("a2", recover.hostname("2a2"))
    assert.equal("vm", recover.hostname("___"))
    assert.equal(63, #recover.hostname(("x"):rep(80)))
    p.vms[1].name = "rootvm_1"
    p.vms[1].hostname = nil
    plan.assign_names(p)
    local cloud = fake.cloud()
    run(cloud)
    local names = {}
    for _, v in ipairs(cloud.vms) do names[v.name] = v.displayname end
    assert.equal("rootvm1", names["rootvm-1"])
  end)

  it("recovers a VM whose data disk is lost without it, and says so", function()
    os.remove(dir .. "/storage/data28.vhd")
    p = assert(plan.build(fake.inventory(), { storage = { dir .. "/storage" }, vhd = fake.vhd(), policy = STARTS }))
    local cloud = fake.cloud()
    local report = run(cloud)
    assert.equal(3, #report.recovered)
    assert.equal(0, #cloud.volumes)
    local ppvm2
    for _, r in ipairs(report.recovered) do if r.name == "ppvm2" then ppvm2 = r end end
    assert.equal("ppdatavol", ppvm2.left_out[1].name)
    assert.truthy(ppvm2.left_out[1].reason:find("data28.vhd not found", 1, true))
    assert.truthy(recover.table(report):find("LEFT OUT ppdatavol", 1, true))
  end)

  it("creates a service offering when none matches, once", function()
    local cloud = fake.cloud()
    cloud.offerings = {}
    run(cloud)
    assert.equal(1, #cloud.offerings)
    assert.same({ 1, 500, 512 }, { cloud.offerings[1].cpunumber, cloud.offerings[1].cpuspeed, cloud.offerings[1].memory })
    assert.equal(1, cloud:count("createServiceOffering"))
  end)
end)
