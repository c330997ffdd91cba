-- Recovery end to end from an LVM-based SR: the demo estate (the seed database in a real
-- MariaDB) laid out the LVHD way on a LUN image made with lvm2's own tools — VHD-<uuid> LVs
-- with device-mapper parent names, footers at LV end - 512, the data disk as a raw LV-<uuid> —
-- then `salvage plan --storage POOL_UUID=lvm:IMAGE` and `salvage recover` against the API
-- simulator; every recovered disk holds the bytes the estate wrote. Without MariaDB, lvm2 or a
-- loop device this FAILS with the reason.
-- luacheck: max line length 140
local sys = require "salvage.sys"
local json = require "salvage.json"
local crypto = require "salvage.crypto"
local vhd = require "salvage.vhd"
local estate = require "salvage.demo.estate"
local plan = require "salvage.plan"
local simulator = require "salvage.cloudstack.simulator"
local img = dofile(TOP .. "/tests/lua/lvm2_image.lua")

local rig = dofile(TOP .. "/tests/lua/recover_rig.lua")
local SCHEMA, SEED = rig.SCHEMA, rig.SEED
local MIB = 1 << 20
local SR = "3e8a1f20-5c6d-4b7e-8f90-a1b2c3d4e5f6"
local VG = "VG_XenStorage-" .. SR

local DIR, IMAGE, PLAN, MADE, VMS, POOL, LVS

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- the VHD engine, but files named as LVHD's device-mapper names (so parents are linked that way)
local function lvhd_names(dir)
  local function lvhd(path)
    local uuid = path:match("([^/]+)%.vhd$")
    return dir .. "/" .. img.mapper(VG, "VHD-" .. uuid)
  end
  return setmetatable({
    create = function(path, o)
      local c = {}
      for k, v in pairs(o) do c[k] = v end
      if c.parent then c.parent = lvhd(c.parent) end
      return vhd.create(lvhd(path), c)
    end,
  }, { __index = vhd })
end

local function roundup(n, a) return (n + a - 1) // a * a end

--- every volume's LV on one VG: MGT first, then VHD-<path> (or LV-<path> for the raw data disk)
local function lay_out(vdir, raw_path)
  local layout, sizes, pe = {}, {}, 1
  layout[1] = { "MGT", img.lv_id(1), '"READ", "WRITE", "VISIBLE"', { { 0, 1, 0 } } }
  local names = {}
  for _, f in ipairs(MADE.files) do names[#names + 1] = f:match("([^/]+)%.vhd$") end
  table.sort(names)
  for i, uuid in ipairs(names) do
    local lv, bytes
    if uuid == raw_path then
      lv, bytes = "LV-" .. uuid, nil
      for _, vm in ipairs(VMS) do
        for _, vol in ipairs(vm.volumes) do if vol.path == uuid then bytes = vol.size end end
      end
    else
      lv = "VHD-" .. uuid
      bytes = assert(sys.stat(vdir .. "/" .. img.mapper(VG, lv))).size + 512
    end
    local n = roundup(bytes, 4 * MIB) // (4 * MIB)
    sizes[lv] = n * 4 * MIB
    layout[#layout + 1] = { lv, img.lv_id(100 + i), '"READ", "WRITE", "VISIBLE"', { { 0, n, pe } } }
    pe = pe + n
  end
  return layout, sizes, pe
end

setup(function()
  rig.setup("/tmp/salvage-lvme2e-", { estate = false })   -- the estate goes into LVs below
  DIR = rig.dir
  local vdir = DIR .. "/vhds"
  assert(sys.mkdir(vdir))
  MADE, VMS = estate.from_dump(vdir, { SCHEMA, SEED }, { vhd = lvhd_names(vdir) })
  assert(MADE, VMS)
  -- one pool holds every disk: it becomes an iSCSI SR (pool type IscsiLUN) on a LUN image
  local raw_path
  for _, vm in ipairs(VMS) do
    for _, vol in ipairs(vm.volumes) do
      if MADE.expect[vol.path] then
        POOL = POOL or vol.pool.uuid
        assert.equal(POOL, vol.pool.uuid)
        vol.pool.type = "IscsiLUN"
        if vol.type == "DATADISK" then raw_path = vol.path end
      end
    end
  end
  assert(raw_path, "the seed has a data disk")
  local layout, sizes, extents = lay_out(vdir, raw_path)
  IMAGE = DIR .. "/lun.img"
  local view = img.build(DIR, IMAGE, 12 * MIB + extents * 4 * MIB + MIB, VG, layout)
  LVS = {}
  for lv, size in pairs(sizes) do
    local uuid = lv:match("^%u+%-(.+)$")
    LVS[uuid] = lv
    if lv:match("^VHD%-") then
      img.place_vhd(IMAGE, view, lv, vdir .. "/" .. img.mapper(VG, lv), size)
    else
      for _, w in ipairs(MADE.expect[uuid]) do img.lv_write(IMAGE, view, lv, w[1], w[2]) end
    end
  end
end)

teardown(rig.teardown)

describe("recovery from an LVM-based SR (lvm2 image, MariaDB, simulator)", function()
  it("plans every disk from the LUN image", function()
    local code, out = RUN(("%s plan --dump %s --dump %s --storage %s -o %s"):format(sh(SALVAGE), sh(SCHEMA), sh(SEED),
      sh(POOL .. "=lvm:" .. IMAGE), sh(DIR .. "/plan-cli.json")))
    assert.equal(0, code, out)
    local p = assert(plan.build(VMS, { storage = { POOL .. "=lvm:" .. IMAGE }, policy = require("salvage.policy").new() }))
    assert.equal(3, #p.vms)
    local n = 0
    for _, vm in ipairs(p.vms) do
      assert.is_true(vm.recoverable, vm.name .. ": " .. json.encode(vm.problems or {}))
      for _, d in ipairs(vm.disks) do
        n = n + 1
        assert.equal(("lvm:%s:%s"):format(sys.realpath(IMAGE), LVS[d.path]), d.file)
        for _, pr in ipairs(d.problems) do assert.equal("info", pr.severity, pr.message) end
        if d.type == "ROOT" then assert.equal(2, #d.chain) end
      end
    end
    assert.equal(4, n)
    PLAN = DIR .. "/plan.json"
    assert(plan.save(p, PLAN))
  end)

  it("recovers every VM with the bytes the estate wrote", function()
    assert(PLAN, "the plan was built")
    local s = assert(simulator.start { lifetime = 180, job_polls = 1, template_polls = 1 })
    local work = DIR .. "/work"
    -- --keep-disks: the flattened disks are compared with the uploads below
    local code, out = rig.run(s, rig.recover_args(work, { "--keep-disks" }, { plan = PLAN }))
    assert.equal(0, code, out)
    local st = assert(s:state())
    s:stop()
    local names = {}
    for _, v in ipairs(st.vms) do names[#names + 1] = v.name end
    table.sort(names)
    assert.same({ "ppvm2", "ppvm3", "rootvm1" }, names)
    -- what the cloud received is what was flattened from the LUN
    local uploaded = {}
    for _, t in ipairs(st.templates) do if t.upload then uploaded[t.upload.sha256] = true end end
    for _, v in ipairs(st.volumes) do if v.upload then uploaded[v.upload.sha256] = true end end
    local p = assert(plan.load(PLAN))
    local checked = 0
    for _, vm in ipairs(p.vms) do
      for _, d in ipairs(vm.disks) do
        local flat = ("%s/disks/%s-%s.vhd"):format(work, vm.id, d.id)
        assert.is_true(uploaded[crypto.sha256_file(flat)], flat .. " was not what the cloud received")
        local h = assert(vhd.open(flat))
        assert.equal(d.size, h:info().footer.current_size)
        for _, w in ipairs(MADE.expect[d.path]) do
          assert.is_true(h:read(w[1], #w[2]) == estate.expected(MADE.expect[d.path], w[1], #w[2]),
            ("%s %s at %d"):format(vm.name, d.name, w[1]))
        end
        h:close()
        checked = checked + 1
      end
    end
    assert.equal(4, checked)
  end)
end)
