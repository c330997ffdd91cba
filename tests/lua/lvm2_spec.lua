-- LVHD images built here with lvm2's own tools (pvcreate, vgcreate, vgcfgrestore on a loop
-- device; nothing is ever activated, no device-mapper needed): segments out of order and several
-- per LV, VHD chains named the LVHD way, a raw LV. Where the bytes go is asked of lvm2 (`pvs`,
-- `lvs -o seg_pe_ranges`), never computed with salvage's own mapping. Without lvm2 or a loop
-- device these tests FAIL with the reason: they never vanish.
local lvm = require "salvage.lvm"
local sys = require "salvage.sys"
local vhd = require "salvage.vhd"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local img = dofile(TOP .. "/tests/lua/lvm2_image.lua")
local sh = fx.sh

local dir
local SR = "5d1c7e2a-0b3f-4c8e-9a61-7f2d4b8e1c90"
local VG = "VG_XenStorage-" .. SR
local BASE = "VHD-1a2b3c4d-1111-4222-8333-944455566677"
local LEAF = "VHD-9f8e7d6c-2222-4333-8444-a55566677788"
local RAW = "LV-0badc0de-3333-4444-8555-b66677788899"
local JOURNAL = "inflate_9f8e7d6c-2222-4333-8444-a55566677788_4194304"
local MIB = 1 << 20

local function mapper(lv) return img.mapper(VG, lv) end

--- LVs (logical start, count, first PE): split, and later extents at lower PEs, as lvextend leaves
-- them (lvm2 wants the segments listed in logical order)
local LAYOUT = {
  { BASE, "AAAAAA-aaaa-bbbb-cccc-dddd-eeee-ffffff", '"READ", "VISIBLE"', { { 0, 2, 7 }, { 2, 1, 1 } } },
  { LEAF, "BBBBBB-aaaa-bbbb-cccc-dddd-eeee-ffffff", '"READ", "WRITE", "VISIBLE"', { { 0, 1, 5 }, { 1, 1, 2 } } },
  { RAW, "CCCCCC-aaaa-bbbb-cccc-dddd-eeee-ffffff", '"READ", "WRITE", "VISIBLE"', { { 0, 1, 9 }, { 1, 1, 3 } } },
  { JOURNAL, "DDDDDD-aaaa-bbbb-cccc-dddd-eeee-ffffff", '"READ", "WRITE", "VISIBLE"', { { 0, 1, 10 } } },
}

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function pattern(seed, n)
  local t = {}
  for i = 1, n // 16 do t[i] = ("%08x%08x"):format(seed, i) end
  return table.concat(t)
end

--- the chain as files named by their device-mapper names, laid into the image's LVs
local function lay_chain(image, view, vdir)
  assert(sys.mkdir(vdir))
  local base, leaf = vdir .. "/" .. mapper(BASE), vdir .. "/" .. mapper(LEAF)
  local b = assert(vhd.create(base, { size = 10 * MIB }))
  assert(b:write(0, pattern(1, 1 * MIB)))
  assert(b:write(5 * MIB, pattern(2, 2 * MIB)))
  b:close()
  local l = assert(vhd.create(leaf, { parent = base }))
  assert(l:write(512 * 1024, pattern(3, 64 * 1024)))
  assert(l:write(9 * MIB, pattern(4, 4096)))
  l:close()
  img.place_vhd(image, view, BASE, base, 3 * view.extent)
  img.place_vhd(image, view, LEAF, leaf, 2 * view.extent)
  return base, leaf
end

setup(function()
  dir = assert(sys.mkdtemp("/tmp/salvage-lvm2-"))
end)

teardown(function()
  if dir then os.execute("rm -rf " .. sh(dir)) end
end)

describe("LVHD images made with lvm2's tools", function()
  it("have lvm2 installed (tools/deps.sh)", function()
    assert.is_true(img.have_lvm2(), "lvm2 is not installed: run tools/deps.sh")
  end)

  it("read through split, out-of-order segments: chain and raw LV match their sources", function()
    local image = dir .. "/lun.img"
    local view = img.build(dir, image, 64 * MIB, VG, LAYOUT)
    assert.same({ { 0, 2, 7, image }, { 2, 1, 1, image } }, view.segs[BASE])
    -- the chain, made as files whose names are the device-mapper names LVHD links parents by
    local _, leaf = lay_chain(image, view, dir .. "/vhds")
    local h = assert(vhd.open(leaf))
    assert.equal(mapper(BASE), h:info().header.parent_name)
    h:close()
    local raw = pattern(5, 2 * view.extent)
    img.lv_write(image, view, RAW, 0, raw)

    local want = dir .. "/want.raw"
    assert(vhd.flatten(leaf, want, { format = "raw" }))
    local got = dir .. "/got.raw"
    assert(vhd.flatten("lvm:" .. image .. ":" .. LEAF, got, { format = "raw" }))
    assert.equal(fx.sha256(want), fx.sha256(got))
    local rawout = dir .. "/rawlv.raw"
    assert(vhd.flatten("lvm:" .. image .. ":" .. RAW, rawout, { format = "raw" }))
    assert.equal(fx.sha256_string(raw), fx.sha256(rawout))

    local list = vhd.scan({ "lvm:" .. image })
    local by = {}
    for _, e in ipairs(list) do by[e.lv] = e end
    assert.equal("lvm:" .. image .. ":" .. BASE, by[LEAF].parent)
    assert.equal("raw", by[RAW].kind)
    assert.is_true(by[BASE].read_only)
    assert.equal("journal", by[JOURNAL].kind)
    assert.equal("SM_JOURNAL", by[JOURNAL].problems[1].code)
    for _, e in ipairs(list) do
      if e ~= by[JOURNAL] then assert.same({}, e.problems) end
    end
  end)

  it("a damaged current metadata copy: the older copy lvm2 left is used, and every volume says so", function()
    local image = dir .. "/lun2.img"
    -- a second commit by lvm2 itself (a tag), so the buffer holds two copies with the LVs
    local view = img.build(dir, image, 64 * MIB, VG, LAYOUT, function(run)
      run(("lvchange --addtag salvage-test %s/%s"):format(VG, RAW))
    end)
    local _, leaf = lay_chain(image, view, dir .. "/vhds2")
    local hdr = slurp(image):sub(4096 + 1, 4096 + 512)
    assert.equal(" LVM2 x[5A%r0N*>", hdr:sub(5, 20))
    local at = 4096 + string.unpack("<I8", hdr, 41)
    local f = assert(io.open(image, "r+b"))
    f:seek("set", at + 20)
    f:write("#")
    f:close()
    local vg = assert(lvm.read(image))
    assert.is_true(vg.from_old_copy)
    assert.matches("bad checksum", vg.warnings[1])
    local raw_lv
    for _, lv in ipairs(vg.lvs) do if lv.name == RAW then raw_lv = lv end end
    assert.same({}, raw_lv.tags) -- the tag came with the damaged copy
    local want, got = dir .. "/want2.raw", dir .. "/got2.raw"
    assert(vhd.flatten(leaf, want, { format = "raw" }))
    local r = assert(vhd.flatten("lvm:" .. image .. ":" .. LEAF, got, { format = "raw" }))
    assert.equal(fx.sha256(want), fx.sha256(got))
    local warned = false
    for _, p in ipairs(r.problems) do warned = warned or p.code == "LVM_OLD_METADATA" end
    assert.is_true(warned)
    local c = vhd.check("lvm:" .. image .. ":" .. LEAF)
    assert.is_false(c.ok)
    assert.equal("LVM_OLD_METADATA", c.problems[1].code)
  end)

  it("an older copy that wraps around the end of the metadata buffer is found and used", function()
    local image = dir .. "/lun-wrap.img"
    -- 150 more LVs make a text of ~40 KiB: lvm2's own commits (VG tags) fill the 1 MiB buffer
    -- until the current copy wraps; one more commit, then that copy is the newest older one
    local layout = { LAYOUT[1], LAYOUT[2], LAYOUT[3], LAYOUT[4] }
    for i = 1, 150 do
      layout[#layout + 1] = { ("LV-filler-%03d"):format(i), img.lv_id(1000 + i), '"READ"', { { 0, 1, 10 + i } } }
    end
    local function mda()
      local fh = assert(io.open(image, "rb"))
      fh:seek("set", 4096)
      local hdr = fh:read(512)
      fh:close()
      local size, off, len = string.unpack("<I8", hdr, 33), string.unpack("<I8", hdr, 41), string.unpack("<I8", hdr, 49)
      return size, off, len
    end
    local commits, wrapped = 0, false
    img.build(dir, image, 1024 * MIB, VG, layout, function(run)
      while commits < 200 do
        commits = commits + 1
        run(("vgchange --addtag w%d %s"):format(commits, VG))
        if wrapped then break end
        local size, off, len = mda()
        wrapped = off + len > size
      end
    end, "1M")
    assert.is_true(wrapped, "lvm2 never wrapped its metadata after " .. commits .. " commits")
    local size, off = mda()
    assert.is_true(off < size // 2, "the current copy starts again near the buffer's start")
    local seqno = assert(lvm.read(image)).seqno
    local f = assert(io.open(image, "r+b"))
    f:seek("set", 4096 + off + 20)
    f:write("#")
    f:close()
    local vg = assert(lvm.read(image))
    assert.is_true(vg.from_old_copy)
    assert.equal(seqno - 1, vg.seqno)
    assert.matches("bad checksum", vg.warnings[1])
    assert.equal(154, #vg.lvs)
  end)

  it("a VG on two LUNs: LVs across both read with both; with one, the others are refused by name", function()
    local a, b = dir .. "/lun-a.img", dir .. "/lun-b.img"
    local SPAN, ONB = "LV-5a5a5a5a-4444-4555-8666-c77788899900", "LV-6b6b6b6b-5555-4666-8777-d88899900011"
    local layout = {
      { SPAN, img.lv_id(1), '"READ", "WRITE", "VISIBLE"', { { 0, 1, 2, "pv1" }, { 1, 1, 4, "pv0" } } },
      { RAW, img.lv_id(2), '"READ", "WRITE", "VISIBLE"', { { 0, 2, 1, "pv0" } } },
      { ONB, img.lv_id(3), '"READ", "WRITE", "VISIBLE"', { { 0, 1, 5, "pv1" } } },
    }
    local view = img.build(dir, { a, b }, 48 * MIB, VG, layout)
    assert.equal(b, view.segs[SPAN][1][4])
    assert.equal(a, view.segs[SPAN][2][4])
    local raw, span = pattern(7, 2 * view.extent), pattern(8, 2 * view.extent)
    img.lv_write(a, view, RAW, 0, raw)
    img.lv_write(a, view, SPAN, 0, span) -- through both images, where lvm2 says
    local vg = assert(lvm.read(a .. "," .. b))
    assert.equal(2, #vg.devices)
    assert.is_true(vg.pvs[1].present and vg.pvs[2].present)
    for _, lv in ipairs(vg.lvs) do assert.is_nil(lv.problem, lv.name) end
    assert.equal(3, #vhd.scan({ ("lvm:%s,%s"):format(a, b) }))
    assert(vhd.flatten(("lvm:%s,%s:%s"):format(a, b, SPAN), dir .. "/span.raw", { format = "raw" }))
    assert.equal(fx.sha256_string(span), fx.sha256(dir .. "/span.raw"))
    -- only the first LUN: what lies on the second is missing, said per volume
    local one = assert(lvm.read(a))
    local by = {}
    for _, lv in ipairs(one.lvs) do by[lv.name] = lv end
    assert.is_nil(by[RAW].problem)
    assert.equal("EMISSINGPV", by[SPAN].problem_code)
    assert.equal("EMISSINGPV", by[ONB].problem_code)
    assert.matches("pv1", by[ONB].problem)
    local _, msg, code = vhd.open(("lvm:%s:%s"):format(a, SPAN))
    assert.equal("EMISSINGPV", code)
    assert.matches("that PV is missing", msg)
    assert(vhd.flatten(("lvm:%s:%s"):format(a, RAW), dir .. "/raw1.raw", { format = "raw" }))
    assert.equal(fx.sha256_string(raw), fx.sha256(dir .. "/raw1.raw"))
    -- a PV of another VG (the first test's LUN) is refused
    local _, m2, c2 = lvm.read(a .. "," .. INPUT(dir .. "/lun.img"))
    assert.equal("EMETADATA", c2)
    assert.matches("does not list", m2)
  end)

  it("a VHD child of a raw LV- parent: the parent is used by its name, with a warning", function()
    local image = dir .. "/lun3.img"
    local RAWP, KID = "LV-7c7c7c7c-6666-4777-8888-e99900011122", "VHD-8d8d8d8d-7777-4888-8999-f00011122233"
    local view = img.build(dir, image, 48 * MIB, VG, {
      { RAWP, img.lv_id(1), '"READ", "VISIBLE"', { { 0, 3, 1 } } },
      { KID, img.lv_id(2), '"READ", "WRITE", "VISIBLE"', { { 0, 2, 4 } } },
    })
    local vdir = dir .. "/vhds3"
    assert(sys.mkdir(vdir))
    -- the child is made over a VHD named like the raw LV; the LV then gets that VHD's content
    local base, kid = vdir .. "/" .. mapper(RAWP), vdir .. "/" .. mapper(KID)
    local b = assert(vhd.create(base, { size = 12 * MIB }))
    assert(b:write(MIB, pattern(9, MIB)))
    b:close()
    local k = assert(vhd.create(kid, { parent = base }))
    assert(k:write(MIB + 4096, pattern(10, 8192)))
    k:close()
    local want = dir .. "/want3.raw"
    assert(vhd.flatten(kid, want, { format = "raw" }))
    local braw = dir .. "/base3.raw"
    assert(vhd.flatten(base, braw, { format = "raw" }))
    img.lv_write(image, view, RAWP, 0, slurp(braw))
    img.place_vhd(image, view, KID, kid, 2 * view.extent)
    local got = dir .. "/got3.raw"
    assert(vhd.flatten("lvm:" .. image .. ":" .. KID, got, { format = "raw" }))
    assert.equal(fx.sha256(want), fx.sha256(got))
    local c = vhd.check("lvm:" .. image .. ":" .. KID)
    assert.equal("PARENT_RAW", c.problems[1].code)
    assert.equal("warning", c.problems[1].severity)
    assert.equal(2, #c.chain)
  end)
end)
