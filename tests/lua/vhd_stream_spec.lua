-- vhd.stream: the flattened standalone VHD as a salvage.stream of known length.
-- Checked against the XenServer-made fixtures' expected virtual hashes (through
-- qemu-img, an independent reader of standalone VHDs) and against vhd.flatten.
local vhd = require "salvage.vhd"
local stream = require "salvage.stream"
local sys = require "salvage.sys"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local sh = fx.sh

local FX, OUT
local EXPECTED = fx.expected()

local qemu_raw_sha = fx.qemu_raw_sha

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- the bytes of a VHD with the footer's timestamp, checksum and UUID masked (they differ per file)
local function masked(s)
  local function mask(foot)
    return foot:sub(1, 24) .. ("\0"):rep(4) .. foot:sub(29, 64) .. ("\0"):rep(20) .. foot:sub(85)
  end
  return mask(s:sub(1, 512)) .. s:sub(513, -513) .. mask(s:sub(-512))
end

setup(function()
  FX = fx.unpack()
  OUT = assert(sys.mkdtemp("/tmp/salvage-vhd-stream-"))
end)
teardown(function()
  fx.cleanup()
  if OUT then os.execute("rm -rf " .. sh(OUT)) end
end)

describe("vhd.stream", function()
  local names = { "chain_d1/c1.vhd", "chain_d2/c2.vhd", "dynamic/dyn_tap_prealloc.vhd", "fixed/fixed_qem2.vhd" }
  for _, name in ipairs(names) do
    it("streams " .. name .. " as a VHD of the promised length with the expected virtual hash", function()
      assert.is_truthy(EXPECTED[name], "no expected hash for " .. name)
      local s <close> = assert(vhd.stream(FX .. "/" .. name))
      assert.are.equal("stream", stream.type(s))
      assert.are.equal("vhd", s:format())
      local len = s:length()
      local out = OUT .. "/" .. name:gsub("/", "_")
      local r = assert(s:write_to(out))
      assert.are.equal(len, r.bytes)
      assert.are.equal(len, sys.stat(out).size)
      assert.are.equal(fx.sha256(out), r.sha256)
      assert.are.equal(EXPECTED[name], qemu_raw_sha(out))
    end)
  end

  it("with drop_zero is byte for byte vhd.flatten's output (footer identity aside)", function()
    local name = FX .. "/chain_d2/c2.vhd"
    local s <close> = assert(vhd.stream(name, { drop_zero = true }))
    local a, b = OUT .. "/dz.vhd", OUT .. "/flat.vhd"
    assert(s:write_to(a))
    local r = assert(vhd.flatten(name, b))
    local sa, sb = slurp(a), slurp(b)
    assert.are.equal(#sb, #sa)
    assert.is_true(masked(sa) == masked(sb), "stream and flatten differ beyond the footer identity")
    assert.are_not.equal(r.uuid, s:id())
  end)

  it("without drop_zero keeps allocated zero blocks: never shorter, same content", function()
    local name = FX .. "/dynamic/dyn_tap_prealloc.vhd"
    local a <close> = assert(vhd.stream(name))
    local b <close> = assert(vhd.stream(name, { drop_zero = true }))
    assert.is_true(a:length() >= b:length())
    assert(a:write_to(OUT .. "/a.vhd"))
    assert(b:write_to(OUT .. "/b.vhd"))
    assert.are.equal(qemu_raw_sha(OUT .. "/a.vhd"), qemu_raw_sha(OUT .. "/b.vhd"))
  end)

  it("reads in pieces the same bytes write_to writes", function()
    local name = FX .. "/chain_d1/c1.vhd"
    local s <close> = assert(vhd.stream(name, { drop_zero = true }))
    local parts, n = {}, 0
    while true do
      local p = s:read(1000003)
      if not p then break end
      parts[#parts + 1] = p
      n = n + #p
    end
    assert.are.equal(s:length(), n)
    local whole = table.concat(parts)
    assert(vhd.flatten(name, OUT .. "/c1.flat.vhd"))
    assert.is_true(masked(whole) == masked(slurp(OUT .. "/c1.flat.vhd")))
  end)

  it("is read once: a second consumer is refused, and a closed stream raises", function()
    local s = assert(vhd.stream(FX .. "/chain_d1/c1.vhd"))
    assert(s:write_to(OUT .. "/once.vhd"))
    assert.has_error(function() s:write_to(OUT .. "/twice.vhd") end,
      "salvage.stream already read: a stream is sent once; make a new one")
    s:close()
    s:close()
    assert.are.equal("closed stream", stream.type(s))
    assert.has_error(function() s:length() end)
  end)

  it("refuses a damaged or broken chain before the first byte, with the flatten codes", function()
    local s, msg, code = vhd.stream(FX .. "/damaged/parent_missing/c1.vhd")
    assert.is_nil(s)
    assert.are.equal("EPARENT", code)
    assert.is_truthy(msg:find("c1.vhd", 1, true))
    local _
    s, _, code = vhd.stream(OUT .. "/nope.vhd")
    assert.is_nil(s)
    assert.are.equal("ENOENT", code)
  end)

  it("tees a copy that exists (fsynced, renamed) once the last byte is read, and not before", function()
    local name = FX .. "/chain_d1/c1.vhd"
    local s <close> = assert(vhd.stream(name))
    assert.are.equal(s, s:tee(OUT .. "/copy.vhd"))
    local parts = { assert(s:read(4096)) }
    assert.is_nil(sys.stat(OUT .. "/copy.vhd"))
    for p in function() return s:read(3 << 20) end do parts[#parts + 1] = p end
    local sent = table.concat(parts)
    assert.are.equal(s:length(), #sent)
    assert.is_true(slurp(OUT .. "/copy.vhd") == sent)
    -- a stream closed half-way leaves no copy and no temporary
    local t = assert(vhd.stream(name))
    assert(t:tee(OUT .. "/half.vhd"))
    assert(t:read(100000))
    t:close()
    assert.is_nil(sys.stat(OUT .. "/half.vhd"))
    for _, n in ipairs(sys.dir(OUT)) do assert.is_nil(n:find("salvage%-"), n) end
  end)

  it("reports a chain that fails under it part-way as an error, never a short or zero-filled output", function()
    local dir = OUT .. "/shrunk"
    assert(sys.mkdir(dir))
    local b = assert(vhd.create(dir .. "/base.vhd", { size = 64 << 20 }))
    for i = 0, 31 do assert(b:write(i * (2 << 20), ("b"):rep(1 << 20))) end
    b:close()
    local c = assert(vhd.create(dir .. "/c.vhd", { parent = dir .. "/base.vhd" }))
    assert(c:write(0, ("c"):rep(4096)))
    c:close()
    local s <close> = assert(vhd.stream(dir .. "/c.vhd"))
    -- the parent loses its data blocks after the stream was opened and checked
    assert(os.execute(("truncate -s %d %s"):format(8 << 20, sh(dir .. "/base.vhd"))))
    local r, msg, code = s:write_to(dir .. "/out.vhd")
    assert.is_nil(r)
    assert.is_string(msg)
    assert.is_string(code)
    assert.is_nil(sys.stat(dir .. "/out.vhd"))
  end)

  it("leaves nothing behind when write_to cannot finish", function()
    local s <close> = assert(vhd.stream(FX .. "/chain_d1/c1.vhd"))
    local r, _, code = s:write_to(OUT .. "/no/such/dir/x.vhd")
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
  end)
end)
