-- LVM-based SRs (LVHD) read straight from a LUN image: the example image made by lvm2
-- (tests/fixtures/lvhd, with its manifest of expected figures), damaged copies of it, and
-- images built here with lvm2's own tools on a loop device.
local json = require "salvage.json"
local lvm = require "salvage.lvm"
local sys = require "salvage.sys"
local vhd = require "salvage.vhd"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local sh = fx.sh

local dir, image, manifest

local function read_manifest()
  local f = assert(io.open(INPUT(FIXTURES .. "/lvhd/lvhd-public.manifest.json"), "rb"))
  local m = json.decode(f:read("a"))
  f:close()
  return m
end

--- json null as nil
local function nz(v) if v == json.null then return nil end return v end

local function by_name(list, key)
  local t = {}
  for _, e in ipairs(list) do t[e[key]] = e end
  return t
end

--- a sparse copy of the example image, to damage
local function copy_image(name)
  local p = dir .. "/" .. name
  assert(RUN(("cp --sparse=always %s %s"):format(sh(image), sh(p))) == 0)
  return p
end

local function patch(path, off, bytes)
  local f = assert(io.open(path, "r+b"))
  f:seek("set", off)
  f:write(bytes)
  f:close()
end

local function peek(path, off, len)
  local f = assert(io.open(path, "rb"))
  f:seek("set", off)
  local s = f:read(len)
  f:close()
  return s
end

--- where the current metadata text is: the mda_header's raw_locn[0]
local function metadata_text_offset(path)
  local mda = 4096 -- lvm2's first metadata area (the label says so; checked below)
  local hdr = peek(path, mda, 512)
  assert(hdr:sub(5, 20) == " LVM2 x[5A%r0N*>", "no mda_header at 4096")
  local off = string.unpack("<I8", hdr, 41)
  return mda + off
end

setup(function()
  dir = assert(sys.mkdtemp("/tmp/salvage-lvm-"))
  image = dir .. "/lvhd.img"
  local code, _, err = RUN(("xz -dc %s | cp --sparse=always /dev/stdin %s"):format(
    sh(INPUT(FIXTURES .. "/lvhd/lvhd-public.img.xz")), sh(image)))
  assert(code == 0, "unpacking the LVHD example: " .. tostring(err))
  manifest = read_manifest()
end)

teardown(function()
  if dir then os.execute("rm -rf " .. sh(dir)) end
end)

describe("salvage.lvm on the lvm2-made example", function()
  it("reads the VG, the PV and every LV with its segments as the manifest says", function()
    local vg = assert(lvm.read(image))
    assert.equal(manifest.vg_name, vg.name)
    assert.equal(manifest.pv_uuid, vg.pv_id)
    assert.equal(manifest.extent_size, vg.extent_size)
    assert.equal(manifest.pe_start, vg.pvs[1].pe_start)
    assert.equal(manifest.pe_count, vg.pvs[1].pe_count)
    assert.is_true(vg.pvs[1].present)
    assert.is_false(vg.from_old_copy)
    assert.equal(#manifest.lvs, #vg.lvs)
    local lvs = by_name(vg.lvs, "name")
    for _, m in ipairs(manifest.lvs) do
      local lv = assert(lvs[m.name], m.name)
      assert.equal(m.lv_size, lv.size)
      assert.equal(m.extents, lv.extents)
      assert.equal(m.lvm_id, lv.id)
      assert.equal(#m.segments, #lv.segments)
      for i, s in ipairs(m.segments) do
        assert.equal(s.start_extent, lv.segments[i].start_extent)
        assert.equal(s.extent_count, lv.segments[i].extent_count)
        assert.equal(s.pe, lv.segments[i].pe)
      end
      local writable = false
      for _, st in ipairs(m.lvm_status) do writable = writable or st == "WRITE" end
      assert.equal(not writable, lv.read_only)
      assert.is_nil(lv.problem)
    end
  end)

  it("refuses what is not a PV, by reason", function()
    local p = dir .. "/zeros.img"
    assert(RUN("truncate -s 1M " .. sh(p)) == 0)
    local vg, msg, code = lvm.read(p)
    assert.is_nil(vg)
    assert.equal("ENOLABEL", code)
    assert.matches("no LVM label", msg)
    local _, _, c2 = lvm.read(dir .. "/missing.img")
    assert.equal("ENOENT", c2)
  end)
end)

describe("vhd scan / flatten of lvm: sources", function()
  it("scan lists every LV: VHD chains with LVHD parents, the raw LV, MGT", function()
    local list, vgs = vhd.scan({ "lvm:" .. image })
    assert.equal(1, #vgs)
    assert.equal(manifest.vg_name, vgs[1].name)
    local got = by_name(list, "lv")
    for _, m in ipairs(manifest.lvs) do
      local e = assert(got[m.name], m.name)
      assert.same({}, e.problems)
      assert.equal(m.lv_size, e.size)
      if m.type == "vhd" then
        assert.equal("vhd", e.kind)
        assert.equal(m.virtual_size, e.capacity)
        assert.equal(m.hidden == 1, e.hidden)
        assert.equal(m.vhd_footer_uuid, e.uuid)
        assert.equal(nz(m.parent_lv) and ("lvm:" .. image .. ":" .. m.parent_lv) or nil, e.parent)
      elseif m.type == "raw" then
        assert.equal("raw", e.kind)
        assert.equal(m.lv_size, e.capacity)
      else
        assert.equal("mgt", e.kind)
      end
    end
  end)

  it("scan reads the SR's MGT volume: the SR and the VDIs' names XenServer kept", function()
    local list, vgs = vhd.scan({ "lvm:" .. image })
    local md = assert(vgs[1].sr_metadata)
    assert.equal(manifest.sr_uuid, md.sr.uuid)
    local by_uuid = {}
    for _, m in ipairs(manifest.lvs) do if nz(m.uuid) then by_uuid[m.uuid] = m end end
    local n = 0
    for uuid, v in pairs(md.vdis) do
      n = n + 1
      assert.truthy(by_uuid[uuid], uuid .. " in MGT but not in the VG")
      assert.truthy(v.name_label ~= "", uuid)
    end
    assert.is_true(n > 0)
    for _, e in ipairs(list) do
      local uuid = e.lv:match("^%u+%-(.+)$")
      if uuid and md.vdis[uuid] then assert.equal(md.vdis[uuid].name_label, e.name_label) end
    end
  end)

  it("the command prints vhd-util scan -l lines", function()
    local code, out = RUN(("%s vhd scan lvm:%s"):format(sh(SALVAGE), sh(image)))
    assert.equal(0, code)
    assert.matches("vg=" .. manifest.vg_name:gsub("%-", "%%-") .. " pv=" .. manifest.pv_uuid:gsub("%-", "%%-"), out)
    for _, m in ipairs(manifest.lvs) do
      local name = m.name:gsub("%-", "%%-")
      if m.type == "vhd" then
        local line = ("vhd=%s capacity=%d size=%d hidden=%d parent=%s"):format(name, m.virtual_size, m.lv_size,
          m.hidden, nz(m.parent_lv) and m.parent_lv:gsub("%-", "%%-") or "none")
        assert.matches(line, out)
      elseif m.type == "raw" then
        assert.matches(("raw=%s capacity=%d size=%d"):format(name, m.lv_size, m.lv_size), out)
      end
    end
  end)

  it("flatten reproduces the manifest's sha256 of every leaf and raw LV (raw and VHD output)", function()
    local n = 0
    for _, m in ipairs(manifest.lvs) do
      if m.sha256 then
        n = n + 1
        local src = "lvm:" .. image .. ":" .. m.name
        local raw = dir .. "/" .. m.name .. ".raw"
        local r = assert(vhd.flatten(src, raw, { format = "raw" }))
        assert.equal(m.virtual_size, r.virtual_size)
        assert.equal(m.sha256, fx.sha256(raw))
        -- a standalone VHD of it reads back the same, through salvage and through qemu-img
        local out = dir .. "/" .. m.name .. ".vhd"
        assert(vhd.flatten(src, out))
        local back = dir .. "/" .. m.name .. ".back"
        assert(vhd.flatten(out, back, { format = "raw" }))
        assert.equal(m.sha256, fx.sha256(back))
        local qraw = dir .. "/" .. m.name .. ".qemu"
        assert.equal(0, (RUN(("qemu-img convert -f vpc -O raw %s %s"):format(sh(out), sh(qraw)))))
        assert.equal(m.sha256, fx.sha256(qraw))
        assert(vhd.check(out).ok)
      end
    end
    assert.equal(3, n)
  end)

  it("vhd read and check work on an LV; a raw LV and unknown names are refused by name", function()
    local leaf
    for _, m in ipairs(manifest.lvs) do if m.role == "leaf" then leaf = m end end
    local h = assert(vhd.open("lvm:" .. image .. ":" .. leaf.name))
    local info = h:info()
    assert.equal(leaf.lv_size, info.file_size)
    assert.equal("end", info.footer.source) -- the primary footer at LV end - 512
    assert.equal(leaf.vhd_parent_name, info.header.parent_name)
    assert.equal(3, #assert(h:chain()))
    h:close()
    assert.is_true(vhd.check("lvm:" .. image .. ":" .. leaf.name).ok)
    local _, msg, code = vhd.open("lvm:" .. image .. ":VHD-nope")
    assert.equal("ENOENT", code)
    assert.matches("has no LV VHD%-nope", msg)
    local _, _, c2 = vhd.open("lvm:" .. image .. ":" .. leaf.name, { write = true })
    assert.equal("EROFS", c2)
  end)
end)

describe("damaged LVM metadata", function()
  it("a bad checksum on the current copy falls back to the older copy, with a warning", function()
    local p = copy_image("badtext.img")
    local at = metadata_text_offset(p)
    local c = peek(p, at + 40, 1)
    patch(p, at + 40, c == "x" and "y" or "x")
    local vg = assert(lvm.read(p))
    assert.is_true(vg.from_old_copy)
    assert.is_true(vg.seqno < 2)
    assert.equal(1, #vg.warnings)
    assert.matches("bad checksum", vg.warnings[1])
    assert.matches("older metadata copy", vg.warnings[1])
  end)

  it("no copy that parses: refused with the reason", function()
    local p = copy_image("nometa.img")
    -- wipe the whole metadata area past its header: no text left anywhere
    assert(RUN(("dd if=/dev/zero of=%s bs=512 seek=9 count=20000 conv=notrunc status=none"):format(sh(p))) == 0)
    local vg, msg, code = lvm.read(p)
    assert.is_nil(vg)
    assert.equal("ECHECKSUM", code)
    assert.matches("refusing to guess", msg)
  end)

  it("a bad label checksum is refused precisely", function()
    local p = copy_image("badlabel.img")
    patch(p, 512 + 40, "Z")
    local vg, msg, code = lvm.read(p)
    assert.is_nil(vg)
    assert.equal("ECHECKSUM", code)
    assert.matches("label in sector 1 has a bad checksum", msg)
  end)

  it("LVs whose extents lie past the end of a truncated device are refused by name", function()
    local p = copy_image("short.img")
    assert(RUN("truncate -s 100M " .. sh(p)) == 0)
    local vg = assert(lvm.read(p))
    local lvs = by_name(vg.lvs, "name")
    for _, m in ipairs(manifest.lvs) do
      local last = m.segments[#m.segments]
      local fits = manifest.pe_start + (last.pe + last.extent_count) * manifest.extent_size <= 100 * (1 << 20)
      if fits then
        assert.is_nil(lvs[m.name].problem, m.name)
      else
        assert.equal("ERANGE", lvs[m.name].problem_code, m.name)
        assert.matches("past the end of", lvs[m.name].problem)
        local r, msg, code = vhd.flatten("lvm:" .. p .. ":" .. m.name, dir .. "/never.raw", { format = "raw" })
        assert.is_nil(r)
        assert.equal("ERANGE", code)
        assert.matches(m.name:gsub("%-", "%%-"), msg)
        assert.is_nil(sys.stat(dir .. "/never.raw"))
      end
    end
  end)
end)
