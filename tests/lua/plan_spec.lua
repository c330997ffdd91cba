-- salvage.plan: owners, specs, disk files under storage roots, chain checks, the document.
-- luacheck: max line length 200
package.path = TOP .. "/tests/lua/?.lua;" .. package.path
local plan = require "salvage.plan"
local sys = require "salvage.sys"
local fake = require "recover_fake"

describe("salvage.plan", function()
  local dir
  before_each(function()
    dir = assert(sys.mkdtemp("/tmp/salvage-plan-"))
    fake.storage(dir)
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  local function build(extra)
    local opts = { storage = { dir }, vhd = fake.vhd() }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(plan.build(fake.inventory(), opts))
  end

  it("maps every VM to its owner and spec, ROOT first then data disks by device id", function()
    local p = build()
    assert.equal(3, #p.vms)
    local ppvm2 = p.vms[2]
    assert.equal("ppvm2", ppvm2.name)
    assert.same({ domain_path = "/SPDM Inc/", account = "peterparker", type = 0,
      old_domain_path = "/SPDM Inc/", old_account = "peterparker" }, ppvm2.owner)
    assert.same({ cpu = 1, speed = 500, ram = 512, offering = "Small Instance" }, ppvm2.spec)
    assert.equal("Windows Server 2012 (64-bit)", ppvm2.os_type)
    assert.equal("ROOT", ppvm2.disks[1].type)
    assert.equal("ppdatavol", ppvm2.disks[2].name)
    assert.is_true(ppvm2.recoverable)
    assert.is_false(ppvm2.start)            -- salvage.policy's default: recovered VMs stay stopped
    assert.equal("recovered-ppvm2-root", ppvm2.template.name)   -- and its template name
    assert.equal(dir .. "/sub/deeper/root26.vhd", p.vms[3].disks[1].file)  -- found recursively
    assert.same({ vms = 3, recoverable = 3, disks = 4, bytes = 3500, problems = 0, skipped = 0 }, p.summary)
  end)

  it("names every VM, template and volume uniquely in its account, the old id appended on a collision", function()
    local inv = fake.inventory()
    inv[2].name, inv[3].name = "web_1", "web-1"           -- both in peterparker; they normalise alike
    local p = assert(plan.build(inv, { storage = { dir }, vhd = fake.vhd() }))
    assert.equal("web-1", p.vms[2].hostname)
    assert.equal("web-1-" .. p.vms[3].id, p.vms[3].hostname)
    assert.equal("ENAME", p.vms[3].problems[#p.vms[3].problems].code)
    assert.are_not.equal(p.vms[2].template.name, p.vms[3].template.name)
    -- stable: a saved plan keeps its names
    assert(plan.save(p, dir .. "/p.json"))
    local again = assert(plan.load(dir .. "/p.json"))
    assert.equal(p.vms[3].hostname, again.vms[3].hostname)
    assert.equal(p.vms[3].template.name, again.vms[3].template.name)
  end)

  it("keeps host names unique in a network the policy maps VMs of several accounts to", function()
    local inv = fake.inventory()
    inv[1].name, inv[2].name, inv[3].name = "web", "web", "db"   -- rootvm1 (admin), ppvm2 (peterparker)
    local policy = require("salvage.policy").new()
    policy.network_for = function(vm) return vm.name == "db" and "net-private" or "net-shared" end
    local p = assert(plan.build(inv, { storage = { dir }, vhd = fake.vhd(), policy = policy }))
    assert.equal("web", p.vms[1].hostname)
    assert.equal("web-" .. p.vms[2].id, p.vms[2].hostname)
    local last = p.vms[2].problems[#p.vms[2].problems]
    assert.equal("ENAME", last.code)
    assert.matches("host name 'web' is also another's in network net%-shared", last.message)
    assert.equal("db", p.vms[3].hostname)
    -- without a network in common (each account's own default network) both keep 'web'
    local q = assert(plan.build(inv, { storage = { dir }, vhd = fake.vhd() }))
    assert.same({ "web", "web" }, { q.vms[1].hostname, q.vms[2].hostname })
  end)

  it("uses POOL_UUID=DIR mappings before plain roots", function()
    local other = assert(sys.mkdtemp("/tmp/salvage-plan-pool-"))
    fake.write_disk(other .. "/root24.vhd", 1000, "from the mapped pool")
    local p = build({ storage = { dir, "c6d4b1c2-5bd3-3a4e-8a5c-7e0f3f1c9a10=" .. other } })
    assert.equal(sys.realpath(other) .. "/root24.vhd", p.vms[1].disks[1].file)
    os.execute("rm -rf '" .. other .. "'")
  end)

  it("marks and explains a VM whose root disk is missing, damaged or the wrong size, and keeps it", function()
    os.remove(dir .. "/root24.vhd")
    fake.write_disk(dir .. "/root25.vhd", 1000, "BAD footer")
    fake.write_disk(dir .. "/sub/deeper/root26.vhd", 999, "short")
    local p = build()
    assert.equal(3, #p.vms)
    for _, vm in ipairs(p.vms) do assert.is_false(vm.recoverable) end
    assert.equal("ENOENT", p.vms[1].disks[1].problems[1].code)
    assert.truthy(p.vms[1].problems[1].message:find("root24.vhd not found", 1, true))
    assert.equal("ECHECKSUM", p.vms[2].disks[1].problems[1].code)
    assert.equal("ESIZE", p.vms[3].disks[1].problems[1].code)
    assert.truthy(p.vms[3].disks[1].problems[1].message:find("999", 1, true))
    local text = plan.table(p)
    assert.truthy(text:find("3 VMs (0 recoverable)", 1, true))
    assert.truthy(text:find("NOT RECOVERABLE", 1, true) or text:find("ERROR", 1, true))
  end)

  it("blocks a disk only on what blocks flatten (a damaged footer copy is a warning)", function()
    fake.write_disk(dir .. "/root24.vhd", 1000, "FOOTERCOPY")
    local p = build()
    assert.is_true(p.vms[1].recoverable)
    assert.same({ code = "FOOTER_COPY_BAD", severity = "warning", message = "the footer copy at offset 0 is damaged" },
      p.vms[1].disks[1].problems[1])
  end)

  it("lets a lost data disk leave its VM recoverable, with a warning", function()
    os.remove(dir .. "/data28.vhd")
    local p = build()
    assert.is_true(p.vms[2].recoverable)
    assert.is_false(p.vms[2].disks[2].recoverable)
    assert.equal("EDATADISK", p.vms[2].problems[1].code)
  end)

  it("applies the policy's account mapping and names", function()
    local p = build({ policy = {
      account_map = function(acc, dom)
        if dom.path == "/SPDM Inc/" then return { domain_path = "/Spider Industries/", account = acc.name .. "-spdm", type = acc.type } end
        return { domain_path = dom.path, account = acc.name, type = acc.type }
      end,
      template_name = function(vm) return "tpl-" .. vm.name end,
      volume_name = function(vol, vm) return vm.name .. "-" .. vol.name end,
    } })
    assert.equal("/Spider Industries/", p.vms[2].owner.domain_path)
    assert.equal("peterparker-spdm", p.vms[2].owner.account)
    assert.equal("tpl-ppvm2", p.vms[2].template.name)
    assert.equal("ppvm2-ppdatavol", p.vms[2].disks[2].upload_name)
    assert.equal("/", p.vms[1].owner.domain_path)
  end)

  it("round-trips through JSON, and rejects documents that are not plans", function()
    local p = build()
    local file = dir .. "/plan.json"
    assert(plan.save(p, file))
    local back = assert(plan.load(file))
    assert.same(plan.encode(p), plan.encode(back))
    assert.is_nil((plan.decode("[]")))
    local bad = plan.encode(p):gsub('"account": "peterparker"', '"account": 5', 1)
    local r, err = plan.decode(bad)
    assert.is_nil(r)
    assert.truthy(err:find("owner.account", 1, true))
  end)

  it("normalizes domain paths", function()
    assert.equal("/", plan.domain_path("ROOT"))
    assert.equal("/SPDM Inc/", plan.domain_path("ROOT/SPDM Inc"))
    assert.equal("/A/B/", plan.domain_path("/A/B"))
    assert.same({ "A", "B" }, plan.domain_levels("/A/B/"))
  end)

  it("refuses storage roots that are not directories", function()
    local r, err = plan.parse_storage({ dir .. "/nope" })
    assert.is_nil(r)
    assert.truthy(err:find("not a directory", 1, true))
  end)
end)
