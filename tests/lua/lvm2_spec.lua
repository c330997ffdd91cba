-- LVHD images built here with lvm2's own tools (pvcreate, vgcreate, vgcfgrestore on a loop
-- device; nothing is ever activated, no device-mapper needed): segments out of order and several
-- per LV, VHD chains named the LVHD way, a raw LV. Where the bytes go is asked of lvm2 (`pvs`,
-- `lvs -o seg_pe_ranges`), never computed with salvage's own mapping. Without lvm2 or a loop
-- device these tests FAIL with the reason: they never vanish.
local sys = require "salvage.sys"
local vhd = require "salvage.vhd"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local sh = fx.sh

local dir, conf
local SR = "5d1c7e2a-0b3f-4c8e-9a61-7f2d4b8e1c90"
local VG = "VG_XenStorage-" .. SR
local BASE = "VHD-1a2b3c4d-1111-4222-8333-944455566677"
local LEAF = "VHD-9f8e7d6c-2222-4333-8444-a55566677788"
local RAW = "LV-0badc0de-3333-4444-8555-b66677788899"
local MIB = 1 << 20

local function mapper(lv) return (VG:gsub("%-", "--") .. "-" .. lv:gsub("%-", "--")) end

--- an lvm2 command with the tests' private configuration (no backups in /etc, loop devices only)
local function lvm(cmd)
  local code, out, err = RUN(("LVM_SUPPRESS_FD_WARNINGS=1 LVM_SYSTEM_DIR=%s %s"):format(sh(conf), cmd))
  return code, out, err
end

local function must(cmd)
  local code, out, err = lvm(cmd)
  assert(code == 0, cmd .. " failed: " .. tostring(err))
  return out
end

local function lv_section(name, id, status, segs)
  local t = { ("\t\t%s {\n\t\t\tid = %q\n\t\t\tstatus = [%s]\n\t\t\tflags = []\n\t\t\tsegment_count = %d\n"):format(
    name, id, status, #segs) }
  for i, s in ipairs(segs) do
    t[#t + 1] = ("\t\t\tsegment%d {\n\t\t\t\tstart_extent = %d\n\t\t\t\textent_count = %d\n\t\t\t\ttype = \"striped\"\n"
      .. "\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\"pv0\", %d]\n\t\t\t}\n"):format(i, s[1], s[2], s[3])
  end
  t[#t + 1] = "\t\t}\n"
  return table.concat(t)
end

--- LVs (logical start, count, first PE): split, and later extents at lower PEs, as lvextend leaves
-- them (lvm2 wants the segments listed in logical order)
local LAYOUT = {
  { BASE, "AAAAAA-aaaa-bbbb-cccc-dddd-eeee-ffffff", '"READ", "VISIBLE"', { { 0, 2, 7 }, { 2, 1, 1 } } },
  { LEAF, "BBBBBB-aaaa-bbbb-cccc-dddd-eeee-ffffff", '"READ", "WRITE", "VISIBLE"', { { 0, 1, 5 }, { 1, 1, 2 } } },
  { RAW, "CCCCCC-aaaa-bbbb-cccc-dddd-eeee-ffffff", '"READ", "WRITE", "VISIBLE"', { { 0, 1, 9 }, { 1, 1, 3 } } },
}

--- the VG on a loop device; returns the image and lvm2's view {pe_start, extent, segs[lv] = {{le, n, pe}}}
local function build_vg(image)
  assert(RUN("truncate -s 64M " .. sh(image)) == 0)
  local code, out, err = RUN("losetup -f --show " .. sh(image))
  assert(code == 0, "no loop device for the lvm2 image (losetup: " .. tostring(err) .. "); these tests need one")
  local loop = out:match("(%S+)")
  local ok, res = pcall(function()
    must(("pvcreate -ff -y --metadatasize 10M %s"):format(loop))
    must(("vgcreate --metadatasize 10M %s %s"):format(VG, loop))
    local backup = dir .. "/vg.txt"
    must(("vgcfgbackup -f %s %s"):format(sh(backup), VG))
    local f = assert(io.open(backup))
    local text = f:read("a")
    f:close()
    local lvs = {}
    for _, l in ipairs(LAYOUT) do lvs[#lvs + 1] = lv_section(l[1], l[2], l[3], l[4]) end
    local cut = text:match(".*()}")
    text = text:sub(1, cut - 1) .. "\tlogical_volumes {\n" .. table.concat(lvs) .. "\t}\n" .. text:sub(cut)
    text = text:gsub("seqno = (%d+)", function(n) return "seqno = " .. (tonumber(n) + 1) end)
    f = assert(io.open(backup, "w"))
    f:write(text)
    f:close()
    must(("vgcfgrestore -f %s %s"):format(sh(backup), VG))
    local view = { segs = {} }
    view.pe_start = tonumber(must("pvs --noheadings --units b --nosuffix -o pe_start " .. loop):match("(%d+)"))
    view.extent = tonumber(must("vgs --noheadings --units b --nosuffix -o vg_extent_size " .. VG):match("(%d+)"))
    local rows = must("lvs --noheadings --units b --nosuffix -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges " .. VG)
    for name, le, n, pe in rows:gmatch("(%S+)%s+(%d+)%s+(%d+)%s+%S-:(%d+)%-%d+") do
      view.segs[name] = view.segs[name] or {}
      table.insert(view.segs[name], { tonumber(le), tonumber(n), tonumber(pe) })
    end
    return view
  end)
  RUN("losetup -d " .. loop)
  if not ok then error(res, 0) end
  return res
end

--- write data at LV byte off, through the extents lvm2 reported
local function lv_write(image, view, lv, off, data)
  local f = assert(io.open(image, "r+b"))
  local pos = 1
  while pos <= #data do
    local at = off + pos - 1
    local le = at // view.extent
    local phys
    for _, s in ipairs(view.segs[lv]) do
      if le >= s[1] and le < s[1] + s[2] then
        phys = view.pe_start + (s[3] + le - s[1]) * view.extent + at % view.extent
      end
    end
    assert(phys, lv .. ": byte " .. at .. " unmapped")
    local n = math.min(#data - pos + 1, view.extent - at % view.extent)
    f:seek("set", phys)
    f:write(data:sub(pos, pos + n - 1))
    pos = pos + n
  end
  f:close()
end

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- a VHD file laid into an LV as LVHD does: the file at 0, its footer again at LV end - 512
local function place_vhd(image, view, lv, file, lv_size)
  local bytes = slurp(file)
  assert(#bytes <= lv_size - 512, file .. " does not fit its LV")
  lv_write(image, view, lv, 0, bytes)
  lv_write(image, view, lv, lv_size - 512, bytes:sub(-512))
end

local function pattern(seed, n)
  local t = {}
  for i = 1, n // 16 do t[i] = ("%08x%08x"):format(seed, i) end
  return table.concat(t)
end

setup(function()
  dir = assert(sys.mkdtemp("/tmp/salvage-lvm2-"))
  conf = dir .. "/etc"
  assert(sys.mkdir(conf))
  local f = assert(io.open(conf .. "/lvm.conf", "w"))
  f:write('devices { filter = [ "a|^/dev/loop|", "r|.*|" ] obtain_device_list_from_udev = 0 }\n',
    "backup { backup = 0 archive = 0 }\n", "activation { udev_sync = 0 udev_rules = 0 }\n",
    "global { event_activation = 0 }\n")
  f:close()
end)

teardown(function()
  if dir then os.execute("rm -rf " .. sh(dir)) end
end)

describe("LVHD images made with lvm2's tools", function()
  it("have lvm2 installed (tools/deps.sh)", function()
    assert.is_true(fx.have("pvcreate") and fx.have("vgcfgrestore"), "lvm2 is not installed: run tools/deps.sh")
  end)

  it("read through split, out-of-order segments: chain and raw LV match their sources", function()
    local image = dir .. "/lun.img"
    local view = build_vg(image)
    assert.same({ { 0, 2, 7 }, { 2, 1, 1 } }, view.segs[BASE])
    -- the chain, made as files whose names are the device-mapper names LVHD links parents by
    local vdir = dir .. "/vhds"
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
    local h = assert(vhd.open(leaf))
    assert.equal(mapper(BASE), h:info().header.parent_name)
    h:close()
    place_vhd(image, view, BASE, base, 3 * view.extent)
    place_vhd(image, view, LEAF, leaf, 2 * view.extent)
    local raw = pattern(5, 2 * view.extent)
    lv_write(image, view, RAW, 0, raw)

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
    for _, e in ipairs(list) do assert.same({}, e.problems) end
  end)
end)
