-- salvage.cloudstack.inventory on every CloudStack release in data/cloudstack and tests/fixtures/cloudstack,
-- against a real private MariaDB loaded with the schema, the sample estate and
-- tests/db/edge-cases.sql (one database per release, one server for the file).
local inventory = require "salvage.cloudstack.inventory"
local policy = require "salvage.policy"
local json = require "salvage.json"
local estate = dofile(TOP .. "/tests/db/estate.lua")

-- The seed article's columns, read from the records.
local function article_rows(vms)
  local rows = {}
  for _, vm in ipairs(vms) do
    if vm.id < 100 then
      for _, v in ipairs(vm.volumes) do
        rows[#rows + 1] = { vm.id, vm.name, vm.instance_name, vm.display_name, vm.account.id, vm.account.name,
          vm.domain.id, vm.domain.name, vm.offering.id, vm.offering.speed, vm.offering.ram, v.id, v.name, v.size,
          v.path, v.type, v.state }
      end
    end
  end
  return rows
end

-- What the sample estate holds (seed-*.sql): the article's VMs with their disks.
local SEED_ROWS = {
  { 24, "rootvm1", "i-2-24-VM", "rootvm1", 2, "admin", 1, "ROOT", 1, 500, 512, 25, "ROOT-24", 21474836480,
    "34c8b964-4ecb-4463-9535-40afc0bd2117", "ROOT", "Ready" },
  { 25, "ppvm2", "i-5-25-VM", "ppvm2", 5, "peterparker", 2, "SPDM Inc", 1, 500, 512, 26, "ROOT-25", 21474836480,
    "10c12a4f-7bf6-45c4-9a4e-c1806c5dd54a", "ROOT", "Ready" },
  { 25, "ppvm2", "i-5-25-VM", "ppvm2", 5, "peterparker", 2, "SPDM Inc", 1, 500, 512, 28, "ppdatavol", 5368709120,
    "b9a51f4a-3eb4-4d17-a36d-5359333a5d71", "DATADISK", "Ready" },
  { 26, "ppvm3", "i-5-26-VM", "ppvm3", 5, "peterparker", 2, "SPDM Inc", 1, 500, 512, 27, "ROOT-26", 21474836480,
    "7046409c-f1c2-49db-ad33-b2ba03a1c257", "ROOT", "Ready" },
}

local function by_id(vms)
  local t = {}
  for _, vm in ipairs(vms) do t[vm.id] = vm end
  return t
end

local function codes(list)
  local c = {}
  for _, p in ipairs(list) do c[#c + 1] = p.code end
  table.sort(c)
  return table.concat(c, ",")
end

local function skipped(meta, kind, id)
  for _, s in ipairs(meta.skipped) do
    if s.kind == kind and s.id == id then return s end
  end
end

describe("inventory", function()
  local conn
  setup(function() conn = assert(estate.server()) end)
  teardown(function() if conn then conn:close() end end)

  for _, version in ipairs(estate.VERSIONS) do
    describe("on CloudStack " .. version, function()
      local dbname, vms, meta, vm

      setup(function()
        dbname = estate.load(conn, version, { edge = true })
        vms, meta = assert(inventory.load(conn, { database = dbname }))
        vm = by_id(vms)
      end)

      it("detects the release and the moved columns", function()
        assert.matches("^" .. version:gsub("%.", "%%.") , meta.version)
        assert.equal(estate.details_table(version), meta.schema.details_table)
        local v = tonumber(version:match("^4%.(%d+)"))
        assert.equal(v >= 17 and "service_offering" or "disk_offering", meta.schema.offering_names)
      end)

      it("gives the seed article's four rows", function()
        assert.same(SEED_ROWS, article_rows(vms))
      end)

      it("fills the records recovery needs", function()
        local r = vm[25]
        assert.equal("b7e0c2d1-0025-4e5f-8a9b-0c1d2e3f0025", r.uuid)
        assert.equal("Running", r.state)
        assert.equal("XenServer", r.hypervisor)
        assert.same({ id = 2, name = "SPDM Inc", path = "/SPDM Inc/", parent = 1,
          uuid = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c02" }, r.domain)
        assert.equal(0, r.account.type)
        assert.equal(1, r.offering.cpu)
        assert.equal("Small Instance", r.offering.name)
        assert.equal("Windows Server 2012 (64-bit)", r.guest_os)
        assert.equal("win2012-spdm", r.template.name)
        assert.is_true(r.template.requires_hvm)
        assert.is_true(r.template.password_enabled)
        local root = r.volumes[1]
        assert.equal("ROOT", root.type)
        assert.is_true(root.recoverable)
        assert.same({}, root.problems)
        assert.equal("VHD", root.format)
        assert.same({ id = 1, name = "PS-NFS-1", host = "10.1.1.10", path = "/export/primary",
          type = "NetworkFilesystem", uuid = "c6d4b1c2-5bd3-3a4e-8a5c-7e0f3f1c9a10" }, root.pool)
        if meta.version:match("^4%.19") or meta.version:match("^4%.20") then
          assert.is_nil(root.parent_base) -- these schema files carry no template_spool_ref
        else
          assert.equal("9b0c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7202.vhd", root.parent_base)
        end
        assert.is_nil(r.volumes[2].parent_base)
        -- ppvm3's template was deleted by its owner: reported, not fatal
        assert.equal("2015-04-01 10:00:00", vm[26].template.removed)
        assert.same({}, vm[26].problems)
      end)

      it("never lists system VMs, even with user-like names", function()
        for _, r in ipairs(vms) do assert.equal("User", r.type) end
        assert.is_nil(vm[112])
        assert.is_nil(vm[1])
      end)

      it("skips what the default policy excludes, with reasons", function()
        assert.matches("removed", skipped(meta, "vm", 20).reason)
        assert.matches("Destroyed", skipped(meta, "vm", 21).reason)
        assert.matches("Error", skipped(meta, "vm", 22).reason)
        assert.matches("removed", skipped(meta, "vm", 102).reason) -- Stopped but removed
        assert.matches("removed", skipped(meta, "volume", 124).reason) -- Ready but removed
        assert.is_nil(vm[102])
      end)

      it("keeps a VM without volumes, with a problem", function()
        assert.same({}, vm[101].volumes)
        assert.equal("ENOVOLUMES", codes(vm[101].problems))
      end)

      it("never counts a stale Destroy ROOT as a second root disk", function()
        assert.equal(1, #vm[103].volumes)
        assert.equal(104, vm[103].volumes[1].id)
        assert.matches("Destroy", skipped(meta, "volume", 103).reason)
        assert.same({}, vm[103].problems)
      end)

      it("marks an Allocated volume without a path not recoverable", function()
        local data = vm[104].volumes[2]
        assert.equal(106, data.id)
        assert.is_false(data.recoverable)
        assert.equal("ENOPATH", codes(data.problems))
        assert.is_true(vm[104].volumes[1].recoverable)
      end)

      it("marks a volume on a removed pool not recoverable, and its VM", function()
        local root = vm[105].volumes[1]
        assert.is_false(root.recoverable)
        assert.equal("EPOOLREMOVED", codes(root.problems))
        assert.equal("2014-06-01 12:00:00", root.pool.removed)
        assert.equal("EROOT", codes(vm[105].problems))
      end)

      it("reads CPU count, speed and RAM, from the details for custom offerings", function()
        assert.same({ 4, 2000, 8192, true }, { vm[106].offering.cpu, vm[106].offering.speed, vm[106].offering.ram,
          vm[106].offering.custom })
        assert.equal("Custom Compute", vm[106].offering.name)
        assert.equal("ESPEC", codes(vm[107].problems))
        assert.same({ 1, 1000, 1024, false }, { vm[108].offering.cpu, vm[108].offering.speed, vm[108].offering.ram,
          vm[108].offering.custom })
      end)

      it("tells domains apart by path", function()
        assert.equal("/SPDM Inc/Dev/", vm[108].domain.path)
        assert.equal("/Dev/", vm[109].domain.path)
        assert.equal(vm[108].account.name, vm[109].account.name)
        assert.are_not.equal(vm[108].account.id, vm[109].account.id)
      end)

      it("orders VMs by id, disks ROOT first then by device id", function()
        for i = 2, #vms do assert.is_true(vms[i - 1].id < vms[i].id) end
        local ids = {}
        for _, v in ipairs(vm[110].volumes) do ids[#ids + 1] = v.id end
        assert.same({ 123, 120, 122, 121 }, ids)
        local again = assert(inventory.load(conn, { database = dbname }))
        assert.equal(json.encode(vms), json.encode(again))
      end)

      it("reads hostile strings byte for byte", function()
        assert.equal("it's \"q\" \\ back\nslash", vm[111].name)
        assert.equal("tab\there, comma, €uro; DROP TABLE vm_instance; --", vm[111].display_name)
        assert.equal("ROOT 'x' \\ \"y\"\nz", vm[111].volumes[1].name)
      end)

      it("writes JSON exactly as the generic encoder would, one VM a line", function()
        local parts = {}
        inventory.write_json(vms, function(x) parts[#parts + 1] = x end)
        assert.equal("[\n", parts[1])
        assert.equal("]\n", parts[#parts])
        for i, r in ipairs(vms) do
          assert.equal(json.encode(r), (parts[i + 1]:gsub(",?\n$", "")))
        end
        local back = assert(json.decode(table.concat(parts)))
        assert.equal(#vms, #back)
        assert.equal(vms[#vms].volumes[1].name, back[#back].volumes[1].name)
      end)

      it("lists detached volumes only when the policy asks", function()
        assert.same({}, meta.detached)
        local p = policy.new { include_detached = true }
        local _, m = assert(inventory.load(conn, { database = dbname, policy = p }))
        assert.equal(1, #m.detached)
        assert.equal("pplogs", m.detached[1].name)
        assert.equal("peterparker", m.detached[1].account.name)
        assert.equal("/SPDM Inc/", m.detached[1].domain.path)
        assert.matches("removed", skipped(m, "volume", 30).reason) -- ppoldvol: expunged
      end)

      it("follows policy options and hooks", function()
        local p = policy.new { include_destroyed = true, accounts = { "peterparker" } }
        local list = assert(inventory.load(conn, { database = dbname, policy = p }))
        local ids = {}
        for _, r in ipairs(list) do ids[r.id] = true end
        assert.is_true(ids[21]) -- Destroyed, not removed
        assert.is_nil(ids[24]) -- admin's
        assert.is_nil(ids[20]) -- removed
        -- a policy that keeps every volume still sees one live ROOT for the reinstalled VM
        local keep_all = policy.new { volume_filter = function() return true end }
        local l2 = assert(inventory.load(conn, { database = dbname, policy = keep_all }))
        local r = by_id(l2)[103]
        assert.equal(2, #r.volumes)
        assert.same({}, r.problems)
        assert.equal("ESTALE", codes(r.volumes[2].problems))
      end)
    end)
  end

  it("stores 4-byte UTF-8 where the schema allows it (4.20+ utf8mb4 columns)", function()
    local dbname = estate.load(conn, "4.22.1")
    local q = "`" .. dbname .. "`"
    assert(conn:exec("UPDATE " .. q .. ".vm_instance SET display_name = ? WHERE id = 24", "🦀 crab's VM\\"))
    assert(conn:exec("UPDATE " .. q .. ".account SET account_name = ? WHERE id = 5", "péter🕷"))
    assert(conn:exec("UPDATE " .. q .. ".volumes SET name = ? WHERE id = 28", "data\n🕸"))
    local vms = by_id(assert(inventory.load(conn, { database = dbname })))
    assert.equal("🦀 crab's VM\\", vms[24].display_name)
    assert.equal("péter🕷", vms[25].account.name)
    assert.equal("data\n🕸", vms[25].volumes[2].name)
  end)

  it("salvage inventory --db reads a live server, same records as in-process", function()
    local ephemeral = require "salvage.db.ephemeral"
    local dbname = estate.load(conn, "4.5.2", { edge = true })
    local url = ("mariadb://root@localhost/%s?socket=%s"):format(dbname, ephemeral.info(conn).socket)
    local code, out, err = RUN(("%q inventory -q --db %q --format json"):format(SALVAGE, url))
    assert.equal(0, code, err)
    local want = {}
    inventory.write_json(assert(inventory.load(conn, { database = dbname })), function(x) want[#want + 1] = x end)
    assert.equal(table.concat(want), out)
    -- the connection's database is the default
    local c2 <close> = assert(ephemeral.connect(conn, dbname))
    local vms = assert(inventory.load(c2))
    assert.equal(13, #vms)
  end)

  it("loads xz-compressed dumps too", function()
    local ephemeral = require "salvage.db.ephemeral"
    local dir = ephemeral.info(conn).dir
    local f = assert(io.open(dir .. "/small.sql", "w"))
    f:write("CREATE TABLE z (v VARCHAR(10));\nINSERT INTO z VALUES ('xz ok');\n")
    f:close()
    assert(os.execute("xz -k '" .. dir .. "/small.sql'"))
    local c <close> = assert(require("salvage.db").ephemeral { dump = dir .. "/small.sql.xz" })
    assert.equal("xz ok", assert(c:query("SELECT v FROM z"))[1].v)
  end)

  it("fails clearly on a database that is not CloudStack's", function()
    assert(conn:exec("CREATE DATABASE IF NOT EXISTS notcloud"))
    local vms, err, code = inventory.load(conn, { database = "notcloud" })
    assert.is_nil(vms)
    assert.equal("ESCHEMA", code)
    assert.matches("not a CloudStack database", err)
  end)
end)
