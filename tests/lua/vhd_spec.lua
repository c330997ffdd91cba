-- salvage.vhd against XenServer-made fixtures (tests/fixtures/vhd), qemu-img
-- as an independent reader of our fixed/dynamic output, and our own writer.
local vhd = require "salvage.vhd"
local sys = require "salvage.sys"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local sh = fx.sh

local FX, OUT
local EXPECTED = fx.expected()
local C1 = EXPECTED["chain_d1/c1.vhd"]

local function leftovers(dir)
  local names = sys.dir(dir) or {}
  local tmp = {}
  for _, n in ipairs(names) do if n:find("salvage%-") then tmp[#tmp + 1] = n end end
  return tmp
end

local function exists(p) return sys.stat(p) ~= nil end

local qemu_raw_sha = fx.qemu_raw_sha

local function qemu_size(path)
  local code, out = RUN(("qemu-img info -f vpc --output=json %s"):format(sh(path)))
  assert(code == 0)
  return math.tointeger(tonumber(out:match('"virtual%-size":%s*(%d+)')))
end

setup(function()
  FX = fx.unpack()
  OUT = assert(sys.mkdtemp("/tmp/salvage-vhd-out-"))
end)

teardown(function()
  os.execute("rm -rf " .. sh(OUT))
  fx.cleanup()
end)

describe("vhd fixtures made by XenServer's vhd-util", function()
  local names = {}
  for n in pairs(EXPECTED) do names[#names + 1] = n end
  table.sort(names)

  for _, name in ipairs(names) do
    it("flattens " .. name .. " to raw with the expected virtual hash", function()
      local out = OUT .. "/" .. name:gsub("/", "_") .. ".raw"
      local r = assert(vhd.flatten(FX .. "/" .. name, out, { format = "raw" }))
      assert.are.equal(out, r.path)
      assert.are.equal(EXPECTED[name], fx.sha256(out))
      assert.are.equal(r.virtual_size, sys.stat(out).size)
      os.remove(out)
    end)

    it("flattens " .. name .. " to a dynamic VHD that qemu-img reads back exactly", function()
      local out = OUT .. "/" .. name:gsub("/", "_")
      local r = assert(vhd.flatten(FX .. "/" .. name, out))
      assert.are.equal(EXPECTED[name], qemu_raw_sha(out))
      assert.are.equal(r.virtual_size, qemu_size(out))
      local h = assert(vhd.open(out))
      local info = h:info()
      h:close()
      assert.are.equal("dynamic", info.footer.disk_type)
      assert.is_true(info.header.batmap)
      assert.is_false(info.footer.hidden)
      assert.are.equal(r.virtual_size, info.footer.current_size)
      assert.is_true(vhd.check(out).ok)
      -- all-zero blocks are not allocated: output <= non-zero data + 1 % metadata
      local st = sys.stat(out)
      assert.is_true(st.size <= r.blocks_written * (2 * 1024 * 1024) * 1.01 + 65536)
      os.remove(out)
    end)
  end

  it("reads byte ranges through the chain like the flattened image", function()
    local raw = OUT .. "/d2.raw"
    assert(vhd.flatten(FX .. "/chain_d2/c2.vhd", raw, { format = "raw" }))
    local f = assert(io.open(raw, "rb"))
    local h <close> = assert(vhd.open(FX .. "/chain_d2/c2.vhd"))
    local size = h:info().footer.current_size
    math.randomseed(42)
    for _ = 1, 40 do
      local off = math.random(0, size - 1)
      local len = math.random(1, 300000)
      f:seek("set", off)
      local want = f:read(math.min(len, size - off))
      assert.are.equal(want, h:read(off, len))
    end
    f:close()
    assert.are.equal("", h:read(size, 10))
    os.remove(raw)
  end)

  it("never changes the sources (FILES.sha256 still holds)", function()
    local code = RUN(("cd %s && sha256sum --quiet -c FILES.sha256"):format(sh(FX)))
    assert.are.equal(0, code)
  end)
end)

describe("vhd handles", function()
  it("describe footer, header, locators and chain", function()
    local h = assert(vhd.open(FX .. "/chain_d2/c2.vhd"))
    local info = h:info()
    assert.are.equal("differencing", info.footer.disk_type)
    assert.are.equal(100663296, info.footer.current_size)
    assert.are.equal("tap", info.footer.creator_app)
    assert.is_true(info.footer.checksum_ok)
    assert.are.equal(2097152, info.header.block_size)
    assert.are.equal("c1.vhd", info.header.parent_name)
    assert.is_true(info.header.checksum_ok)
    local codes = {}
    for _, l in ipairs(info.header.locators) do
      codes[#codes + 1] = l.code
      assert.are.equal("./c1.vhd", l.path)
    end
    assert.are.same({ "MacX", "W2ku", "W2ru" }, codes)
    assert.is_true(info.allocated_blocks > 0)
    local chain = assert(h:chain())
    assert.are.equal(3, #chain)
    assert.matches("c2%.vhd$", chain[1])
    assert.matches("base%.vhd$", chain[3])
    local p = assert(h:parent())
    assert.are.equal(info.header.parent_uuid, p:info().footer.uuid)
    h:close()
    -- the parent handle stays usable after the child is closed
    assert.are.equal(4096, #p:read(0, 4096))
    local blocks, bs = p:blocks()
    assert.are.equal(2097152, bs)
    assert.is_true(#blocks > 0)
    assert.matches("closed", tostring(h))
    h:close()
    p:close()
    assert.has_error(function() h:info() end)
  end)

  it("supports <close> and is read-only unless asked", function()
    local name
    do
      local h <close> = assert(vhd.open(FX .. "/fixed/fixed_tap.vhd"))
      name = h
      assert.is_nil(h:info().header)
      assert.is_nil(h:parent())
      assert.has_error(function() h:write(0, "x") end)
    end
    assert.matches("closed", tostring(name))
  end)

  it("returns nil, message, code for failures of the world", function()
    local h, msg, code = vhd.open(OUT .. "/nope.vhd")
    assert.is_nil(h)
    assert.matches("nope%.vhd", msg)
    assert.are.equal("ENOENT", code)
    local f = io.open(OUT .. "/junk.vhd", "wb")
    f:write(("x"):rep(4096))
    f:close()
    h, msg, code = vhd.open(OUT .. "/junk.vhd")
    assert.is_nil(h)
    assert.matches("no valid footer", msg)
    assert.are.equal("ECHECKSUM", code)
    local p
    h = assert(vhd.open(FX .. "/damaged/parent_missing/c1.vhd"))
    p, msg, code = h:parent()
    assert.is_nil(p)
    assert.are.equal("EPARENT", code)
    assert.matches("base%.vhd", msg)
    assert.is_nil((h:read(0, 512)))
    h:close()
  end)
end)

describe("vhd damage handling", function()
  local function flat(case, opts)
    local out = OUT .. "/" .. case .. ".raw"
    os.remove(out)
    opts = opts or {}
    opts.format = "raw"
    local r, msg, code = vhd.flatten(FX .. "/damaged/" .. case .. "/c1.vhd", out, opts)
    return r, msg, code, out
  end
  local function has(problems, code, sev)
    for _, p in ipairs(problems) do if p.code == code and (not sev or p.severity == sev) then return p end end
  end

  it("reads through the intact footer copy when the end footer is bad or gone", function()
    for _, case in ipairs { "bad_footer_checksum", "eof_footer_missing" } do
      local r, msg, _, out = flat(case)
      assert(r, msg)
      assert.are.equal(C1, fx.sha256(out))
      assert.truthy(has(r.problems, "FOOTER_EOF_BAD"))
      local c = vhd.check(FX .. "/damaged/" .. case .. "/c1.vhd")
      assert.is_false(c.ok)
      assert.truthy(has(c.problems, "FOOTER_EOF_BAD", "error"))
    end
  end)

  it("finds a renamed parent by UUID, with a warning", function()
    local r, msg, _, out = flat("parent_renamed")
    assert(r, msg)
    assert.are.equal(C1, fx.sha256(out))
    assert.truthy(has(r.problems, "PARENT_FOUND_BY_UUID", "warning"))
  end)

  it("ignores bytes in sectors whose bitmap bit is clear", function()
    local r, msg, _, out = flat("stale_data_bitmap_clear")
    assert(r, msg)
    assert.are.equal(C1, fx.sha256(out))
    assert.is_true(vhd.check(FX .. "/damaged/stale_data_bitmap_clear/c1.vhd").ok)
  end)

  it("refuses a missing parent, naming file and reason, leaving nothing", function()
    local r, msg, code, out = flat("parent_missing")
    assert.is_nil(r)
    assert.are.equal("EPARENT", code)
    assert.matches("c1%.vhd", msg)
    assert.matches("base%.vhd", msg)
    assert.is_false(exists(out))
    assert.are.same({}, leftovers(OUT))
    local c = vhd.check(FX .. "/damaged/parent_missing/c1.vhd")
    assert.truthy(has(c.problems, "PARENT_MISSING", "error"))
    -- force cannot invent the parent's data
    r = flat("parent_missing", { force = true })
    assert.is_nil(r)
  end)

  it("uses a parent found by UUID in a --search directory", function()
    local r, msg, _, out = flat("parent_missing", { search = { FX .. "/chain_d1" } })
    assert(r, msg)
    assert.are.equal(C1, fx.sha256(out))
    assert.truthy(has(r.problems, "PARENT_FOUND_BY_UUID", "warning"))
  end)

  it("refuses a BAT entry past EOF unless forced, then states the block exactly", function()
    local r, msg, code, out = flat("bat_past_eof")
    assert.is_nil(r)
    assert.are.equal("EDAMAGED", code)
    assert.matches("block 20", msg)
    assert.matches("c1%.vhd", msg)
    assert.is_false(exists(out))
    assert.are.same({}, leftovers(OUT))
    r, msg = flat("bat_past_eof", { force = true })
    assert(r, msg)
    assert.are.equal(C1, fx.sha256(out))
    assert.are.same({ { sector = 20 * 4096, count = 4096,
      reason = "c1.vhd: block 20: invalid BAT entry treated as unallocated" } }, r.assumed_unallocated)
    assert.are.same({}, r.zero_filled)
    local c = vhd.check(FX .. "/damaged/bat_past_eof/c1.vhd")
    local p = has(c.problems, "BAT_PAST_EOF", "error")
    assert.truthy(p)
    assert.are.equal(20, p.block)
  end)

  it("refuses a bad header checksum and a parent UUID mismatch", function()
    local dir = OUT .. "/hdr"
    os.execute(("mkdir -p %s && cp %s/chain_d1/*.vhd %s/"):format(sh(dir), sh(FX), sh(dir)))
    -- corrupt one byte of c1's header (parent timestamp), checksum not fixed
    local f = assert(io.open(dir .. "/c1.vhd", "r+b"))
    f:seek("set", 512 + 56)
    f:write("\1")
    f:close()
    local r, msg, code = vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw", force = true })
    assert.is_nil(r)
    assert.are.equal("ECHECKSUM", code)
    assert.matches("header checksum", msg)
    assert.is_false(exists(dir .. "/o.raw"))
    assert.truthy(has(vhd.check(dir .. "/c1.vhd").problems, "HEADER_CHECKSUM", "error"))
    -- a parent with another UUID under the expected name
    os.execute(("cp %s/chain_d1/*.vhd %s/ && cp %s/chain_d2/base.vhd %s/base.vhd"):format(sh(FX), sh(dir), sh(FX),
      sh(dir)))
    r, msg, code = vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw" })
    assert.is_nil(r)
    assert.are.equal("EPARENT", code)
    assert.matches("UUID", msg)
    local c = vhd.check(dir .. "/c1.vhd")
    assert.truthy(has(c.problems, "PARENT_UUID_MISMATCH", "error"))
  end)

  it("zero-fills exactly the lost sectors of a truncated block when forced", function()
    local dir = OUT .. "/trunc"
    os.execute(("mkdir -p %s && cp %s/chain_d1/*.vhd %s/"):format(sh(dir), sh(FX), sh(dir)))
    local h = assert(vhd.open(dir .. "/c1.vhd"))
    local blocks = h:blocks()
    h:close()
    local last = blocks[1]
    for _, b in ipairs(blocks) do if b.offset > last.offset then last = b end end
    -- keep the bitmap and 10 sectors of the last block's data; lose the rest and the footer
    local keep = last.offset + 512 + 10 * 512
    assert(os.execute(("truncate -s %d %s"):format(keep, sh(dir .. "/c1.vhd"))))
    local t = has(vhd.check(dir .. "/c1.vhd").problems, "BLOCK_TRUNCATED", "error")
    assert.truthy(t)
    assert.are.equal(last.index, t.block)
    local r, msg, code = vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw" })
    assert.is_nil(r)
    assert.are.equal("ETRUNCATED", code)
    assert.matches("block " .. last.index, msg)
    r, msg = vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw", force = true })
    assert(r, msg)
    assert.is_true(#r.zero_filled >= 1)
    for _, z in ipairs(r.zero_filled) do
      assert.is_true(z.sector >= last.index * 4096 + 10)
      assert.is_true(z.sector + z.count <= (last.index + 1) * 4096)
    end
  end)
end)

describe("vhd damage made here", function()
  local dir
  before_each(function()
    dir = OUT .. "/dmg"
    os.execute(("rm -rf %s && mkdir -p %s && cp %s/chain_d1/*.vhd %s/"):format(sh(dir), sh(dir), sh(FX), sh(dir)))
  end)
  local function poke(file, off, bytes)
    local f = assert(io.open(dir .. "/" .. file, "r+b"))
    f:seek("set", off)
    f:write(bytes)
    f:close()
  end
  local function codes(r)
    local t = {}
    for _, p in ipairs(r.problems) do t[p.code] = p.severity end
    return t
  end
  local BAT = 1536

  it("reports a damaged footer copy as an error and still reads exactly", function()
    poke("c1.vhd", 100, "\1")
    local c = vhd.check(dir .. "/c1.vhd")
    assert.are.equal("error", codes(c).FOOTER_COPY_BAD)
    local r = assert(vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw" }))
    assert.are.equal(C1, fx.sha256(r.path))
  end)

  it("refuses a BAT entry into metadata; forced, treats the block as unallocated", function()
    poke("c1.vhd", BAT + 4 * 21, "\0\0\0\1") -- block 21 (unused) -> sector 1: the header
    local c = vhd.check(dir .. "/c1.vhd")
    assert.are.equal("error", codes(c).BAT_INTO_METADATA)
    local r, msg, code = vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw" })
    assert.is_nil(r)
    assert.are.equal("EDAMAGED", code)
    assert.matches("block 21", msg)
    r = assert(vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw", force = true }))
    assert.are.equal(C1, fx.sha256(r.path))
    assert.are.equal(21 * 4096, r.assumed_unallocated[1].sector)
  end)

  it("refuses blocks that overlap each other", function()
    local h = assert(vhd.open(dir .. "/c1.vhd"))
    local b = h:blocks()[1]
    h:close()
    local s = b.offset // 512
    poke("c1.vhd", BAT + 4 * 22, string.char(s >> 24, (s >> 16) & 255, (s >> 8) & 255, s & 255))
    local c = vhd.check(dir .. "/c1.vhd")
    assert.are.equal("error", codes(c).BLOCK_OVERLAP)
    local r, msg = vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw" })
    assert.is_nil(r)
    assert.matches("overlaps", msg)
  end)

  it("names an unusable batmap (a hint only) and still reads exactly", function()
    poke("c1.vhd", 2048 + 16, "\0\0\0\0")   -- the batmap header's size in sectors: 0
    local c = vhd.check(dir .. "/c1.vhd")
    assert.are.equal("warning", codes(c).BATMAP_INVALID)
    local r = assert(vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw" }))
    assert.are.equal(C1, fx.sha256(r.path))
  end)

  it("refuses a last block whose data the footer at the end of the file overwrote", function()
    -- the file loses its last data sector and keeps its footer: the footer sits on the block's end
    local h = assert(vhd.open(dir .. "/c1.vhd"))
    local last
    for _, b in ipairs(h:blocks()) do if not last or b.offset > last.offset then last = b end end
    h:close()
    local path = dir .. "/c1.vhd"
    local f = assert(io.open(path, "rb"))
    local body = f:read("a")
    f:close()
    assert.are.equal(#body - 512, last.offset + 512 + (2 << 20), "the last block ends at the footer")
    f = assert(io.open(path, "wb"))
    f:write(body:sub(1, #body - 1024), body:sub(-512))
    f:close()
    local c = vhd.check(path)
    assert.are.equal("error", codes(c).BLOCK_CLOBBERS_FOOTER)
    local r, msg, code = vhd.flatten(path, dir .. "/o.raw", { format = "raw" })
    assert.is_nil(r)
    assert.are.equal("ETRUNCATED", code, msg)
    assert.matches("block " .. last.index, msg)
  end)

  it("refuses a parent whose footers are both unreadable", function()
    poke("base.vhd", 100, "\1")
    local st = sys.stat(dir .. "/base.vhd")
    poke("base.vhd", st.size - 400, "\1")
    local c = vhd.check(dir .. "/c1.vhd")
    assert.are.equal("error", codes(c).PARENT_UNREADABLE)
    local r, msg, code = vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw", force = true })
    assert.is_nil(r)
    assert.are.equal("EPARENT", code)
    assert.matches("no valid footer", msg)
  end)
end)

describe("vhd.check findings tell a planner what flatten will do", function()
  local function find(path, code)
    for _, p in ipairs(vhd.check(path).problems) do if p.code == code then return p end end
  end
  it("marks recoverable, forceable and fatal findings", function()
    local p = find(FX .. "/damaged/bad_footer_checksum/c1.vhd", "FOOTER_EOF_BAD")
    assert.are.equal("error", p.severity)
    assert.is_false(p.blocks_flatten)
    p = find(FX .. "/damaged/bat_past_eof/c1.vhd", "BAT_PAST_EOF")
    assert.is_true(p.blocks_flatten)
    assert.is_true(p.force_allows)
    p = find(FX .. "/damaged/parent_missing/c1.vhd", "PARENT_MISSING")
    assert.is_true(p.blocks_flatten)
    assert.is_false(p.force_allows)
    assert.matches("c1%.vhd$", p.file)
  end)
end)

describe("vhd.check and vhd.scan", function()
  it("passes XenServer's clean chains, mtime differences are info only", function()
    local c = vhd.check(FX .. "/chain_d2/c2.vhd")
    assert.is_true(c.ok)
    assert.are.equal(3, #c.chain)
    for _, p in ipairs(c.problems) do assert.are.equal("info", p.severity) end
  end)

  it("warns when the batmap claims a partly written block is full", function()
    local dir = OUT .. "/batmap"
    os.execute(("mkdir -p %s && cp %s/chain_d1/*.vhd %s/"):format(sh(dir), sh(FX), sh(dir)))
    -- set every batmap bit of c1 (batmap at byte 2560 in XenServer's layout); data still follows bitmaps
    local f = assert(io.open(dir .. "/c1.vhd", "r+b"))
    f:seek("set", 2048)
    assert.are.equal("tdbatmap", f:read(8))
    f:seek("set", 2560)
    f:write(("\255"):rep(4))
    f:close()
    local c = vhd.check(dir .. "/c1.vhd")
    assert.is_false(c.ok)
    local found
    for _, p in ipairs(c.problems) do
      if p.code == "BATMAP_MISMATCH" then found = p end
      assert.are_not.equal("error", p.severity)
    end
    assert.truthy(found)
    assert.are.equal("warning", found.severity)
    local sum
    for _, p in ipairs(c.problems) do if p.code == "BATMAP_CHECKSUM" then sum = p.severity end end
    assert.are.equal("warning", sum)
    local r = assert(vhd.flatten(dir .. "/c1.vhd", dir .. "/o.raw", { format = "raw" }))
    assert.are.equal(C1, fx.sha256(r.path))
  end)

  it("scans chain trees and resolves parents by name and UUID", function()
    local list = vhd.scan({ FX .. "/chain_d2", FX .. "/damaged/parent_renamed" })
    local by = {}
    for _, e in ipairs(list) do by[e.path:match("[^/]+/[^/]+$")] = e end
    assert.are.equal(5, #list)
    assert.is_nil(by["chain_d2/base.vhd"].parent)
    assert.is_true(by["chain_d2/base.vhd"].hidden)
    assert.are.equal(FX .. "/chain_d2/c1.vhd", by["chain_d2/c2.vhd"].parent)
    assert.are.equal(100663296, by["chain_d2/c2.vhd"].capacity)
    assert.are.equal(10510848, by["chain_d2/c2.vhd"].size)
    local c1 = by["parent_renamed/c1.vhd"]
    assert.are.equal(FX .. "/damaged/parent_renamed/renamed-parent.vhd", c1.parent)
    assert.are.equal("PARENT_FOUND_BY_UUID", c1.problems[1].code)
    local only = vhd.scan({ FX .. "/chain_d2" }, { match = "c*.vhd" })
    assert.are.equal(2, #only)
  end)
end)

describe("vhd.flatten safety", function()
  it("refuses to replace an existing file unless asked, and never a chain file", function()
    local out = OUT .. "/exists.vhd"
    local f = io.open(out, "wb")
    f:write("keep")
    f:close()
    local r, _, code = vhd.flatten(FX .. "/chain_d1/c1.vhd", out)
    assert.is_nil(r)
    assert.are.equal("EEXIST", code)
    assert.are.equal(4, sys.stat(out).size)
    assert(vhd.flatten(FX .. "/chain_d1/c1.vhd", out, { overwrite = true }))
    assert.are.equal(C1, qemu_raw_sha(out))
    r, _, code = vhd.flatten(FX .. "/chain_d1/c1.vhd", FX .. "/chain_d1/base.vhd", { overwrite = true })
    assert.is_nil(r)
    assert.are.equal("EINVAL", code)
    os.remove(out)
  end)

  it("reports progress and cancels cleanly when the callback returns false", function()
    local calls, last = 0, 0
    local out = OUT .. "/p.vhd"
    local r = assert(vhd.flatten(FX .. "/chain_d1/c1.vhd", out, { progress = function(done, total)
      calls = calls + 1
      assert.are.equal(67108864, total)
      assert.is_true(done >= last)
      last = done
      return true
    end }))
    assert.is_true(calls >= 32)
    assert.are.equal(67108864, last)
    os.remove(r.path)
    local _, code
    r, _, code = vhd.flatten(FX .. "/chain_d1/c1.vhd", out, { progress = function(done) return done < 8 << 20 end })
    assert.is_nil(r)
    assert.are.equal("ECANCELED", code)
    assert.is_false(exists(out))
    assert.are.same({}, leftovers(OUT))
    -- an error in the callback propagates, after cleanup
    assert.has_error(function()
      vhd.flatten(FX .. "/chain_d1/c1.vhd", out, { progress = function() error("boom") end })
    end, "boom")
    assert.is_false(exists(out))
    assert.are.same({}, leftovers(OUT))
  end)
end)
