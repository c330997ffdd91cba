-- vhd.flatten{format = "qcow2"} (src/qcow2/ over the VHD chain reader), with
-- qemu-img as the oracle: on every VHD fixture (XenServer-made, expected
-- content known) and on random chains, `qemu-img check` finds nothing,
-- `qemu-img compare` finds the raw flatten identical, the content hashes to
-- the expected value, and `qemu-img info` shows v3 (compat 1.1), 64 KiB
-- clusters, 16-bit refcounts, the exact virtual size and no backing file.
local vhd = require "salvage.vhd"
local sys = require "salvage.sys"
local json = require "salvage.json"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local sh = fx.sh

local FX, DIR

setup(function()
  FX = fx.unpack()
  DIR = assert(sys.mkdtemp("/tmp/salvage-qcow2-"))
end)
teardown(function()
  os.execute("rm -rf " .. sh(DIR))
  fx.cleanup()
end)

local function qemu(cmd)
  local code, out, err = RUN("qemu-img " .. cmd)
  return code, out, err
end

--- qemu-img's view of a qcow2 file: check clean, info as expected, content sha256
local function oracle(path, size)
  local code, out, err = qemu("check -f qcow2 " .. sh(path))
  assert.are.equal(0, code, "qemu-img check " .. path .. ": " .. tostring(out) .. tostring(err))
  assert.matches("No errors were found", out)
  local _, info = qemu("info -f qcow2 --output=json " .. sh(path))
  info = json.decode(info)
  assert.are.equal(size, info["virtual-size"])
  assert.are.equal(65536, info["cluster-size"])
  assert.is_nil(info["backing-filename"])
  assert.are.equal("1.1", info["format-specific"].data.compat)
  assert.are.equal(16, info["format-specific"].data["refcount-bits"])
  local raw = path .. ".qemu.raw"
  code, _, err = qemu(("convert -f qcow2 -O raw %s %s"):format(sh(path), sh(raw)))
  assert.are.equal(0, code, err)
  local h = fx.sha256(raw)
  os.remove(raw)
  return h
end

local function compare(raw, q)
  local fmt = raw:match("%.qcow2$") and "qcow2" or "raw"
  local code, out, err = qemu(("compare -f %s -F qcow2 %s %s"):format(fmt, sh(raw), sh(q)))
  assert.are.equal(0, code, tostring(out) .. tostring(err))
  assert.matches("Images are identical", out)
end

describe("vhd.flatten to qcow2 on every fixture", function()
  local expected = fx.expected()
  local names = {}
  for name in pairs(expected) do names[#names + 1] = name end
  table.sort(names)
  assert.is_true(#names >= 9, "fixture list missing")
  for _, name in ipairs(names) do
    for _, drop in ipairs { false, true } do
      it(name .. (drop and " (drop_zero)" or ""), function()
        local out = ("%s/%s%s.qcow2"):format(DIR, name:gsub("/", "_"), drop and "-dz" or "")
        local r = assert(vhd.flatten(FX .. "/" .. name, out, { format = "qcow2", drop_zero = drop }))
        assert.are.equal("qcow2", r.format)
        assert.are.equal(out, r.path)
        assert.are.equal(expected[name], oracle(out, r.virtual_size))
        local raw = out .. ".raw"
        assert(vhd.flatten(FX .. "/" .. name, raw, { format = "raw" }))
        compare(raw, out)
        -- data clusters kept: exactly the non-zero 64 KiB clusters when drop_zero ran, at most
        -- the map's when not; the saved file holds data and metadata only (holes elsewhere)
        local f = assert(io.open(raw, "rb"))
        local nonzero = 0
        while true do
          local c = f:read(65536)
          if not c then break end
          if c:find("[^\0]") then nonzero = nonzero + 1 end
        end
        f:close()
        assert.are.equal(nonzero, r.blocks_written)
        os.remove(raw)
      end)
    end
  end
end)

describe("vhd.flatten to qcow2 refuses what flatten refuses", function()
  it("damaged chains: same codes as the VHD output, nothing left under OUT", function()
    for _, case in ipairs { "parent_missing", "bat_past_eof" } do
      local leaf = FX .. "/damaged/" .. case .. "/c1.vhd"
      local _, _, vcode = vhd.flatten(leaf, DIR .. "/d.vhd")
      local r, msg, code = vhd.flatten(leaf, DIR .. "/d.qcow2", { format = "qcow2" })
      assert.is_nil(r)
      assert.are.equal(vcode, code, msg)
      assert.is_nil(sys.stat(DIR .. "/d.qcow2"))
    end
  end)

  it("forced past a bad BAT entry: the same content as the forced raw, the same ranges", function()
    local leaf = FX .. "/damaged/bat_past_eof/c1.vhd"
    local raw = assert(vhd.flatten(leaf, DIR .. "/f.raw", { format = "raw", force = true }))
    local q = assert(vhd.flatten(leaf, DIR .. "/f.qcow2", { format = "qcow2", force = true }))
    assert.are.same(raw.assumed_unallocated, q.assumed_unallocated)
    assert.is_true(#q.assumed_unallocated > 0)
    oracle(DIR .. "/f.qcow2", q.virtual_size)
    compare(DIR .. "/f.raw", DIR .. "/f.qcow2")
  end)

  it("an existing OUT, a file of the chain, a cancel", function()
    local leaf = FX .. "/chain_d2/c2.vhd"
    local out = DIR .. "/exists.qcow2"
    assert(io.open(out, "w")):close()
    local r, _, code = vhd.flatten(leaf, out, { format = "qcow2" })
    assert.is_nil(r)
    assert.are.equal("EEXIST", code)
    assert.are.equal(0, sys.stat(out).size)
    r, _, code = vhd.flatten(leaf, FX .. "/chain_d2/c1.vhd", { format = "qcow2", overwrite = true })
    assert.is_nil(r)
    assert.are.equal("EINVAL", code)
    r, _, code = vhd.flatten(leaf, DIR .. "/cancel.qcow2", { format = "qcow2", progress = function() return false end })
    assert.is_nil(r)
    assert.are.equal("ECANCELED", code)
    assert.is_nil(sys.stat(DIR .. "/cancel.qcow2"))
    for _, e in ipairs(sys.dir(DIR)) do assert.is_nil(e:match("salvage%-"), "temporary file left: " .. e) end
  end)
end)

describe("vhd.stream{format = \"qcow2\"}", function()
  it("yields exactly the bytes of the file (free clusters read as zeros), length known first", function()
    local leaf = FX .. "/chain_d2/c2.vhd"
    local file = DIR .. "/file.qcow2"
    assert(vhd.flatten(leaf, file, { format = "qcow2" }))
    local s = assert(vhd.stream(leaf, { format = "qcow2" }))
    local len = s:length()
    assert.are.equal(sys.stat(file).size, len)
    local r = assert(s:write_to(DIR .. "/stream.qcow2"))
    s:close()
    assert.are.equal(len, r.bytes)
    assert.are.equal(fx.sha256(file), fx.sha256(DIR .. "/stream.qcow2"))
    -- drop_zero: shorter or equal, same content
    s = assert(vhd.stream(leaf, { format = "qcow2", drop_zero = true }))
    assert.is_true(s:length() <= len)
    assert(s:write_to(DIR .. "/dz-stream.qcow2"))
    s:close()
    compare(DIR .. "/stream.qcow2", DIR .. "/dz-stream.qcow2")
  end)
end)

-- random chains, as in vhd_write_spec: different block sizes per level, zeros written over data
local function random_bytes(n, zero)
  if zero then return ("\0"):rep(n) end
  local c = string.char(math.random(1, 255))
  local t = {}
  for i = 1, n, 997 do t[#t + 1] = (c .. string.char(i % 251)):rep(499):sub(1, math.min(997, n - i + 1)) end
  return table.concat(t)
end

describe("vhd.flatten to qcow2 (randomized chains)", function()
  for seed = 1, 8 do
    it("equals the raw reference, qemu-img check clean (seed " .. seed .. ")", function()
      math.randomseed(seed * 104729)
      local dir = DIR .. "/r" .. seed
      assert(sys.mkdir(dir))
      local bs = ({ 512 * 1024, 2 * 1024 * 1024, 1024 * 1024 })[seed % 3 + 1]
      local size = math.random(3, 40) * bs + math.random(0, 40) * 512
      local ref = assert(io.open(dir .. "/ref.raw", "w+b"))
      ref:seek("set", size - 1)
      ref:write("\0")
      local parent
      for level = 1, seed % 4 + 1 do
        local path = ("%s/l%d.vhd"):format(dir, level)
        local lbs = level == 1 and bs or ({ bs, 512 * 1024, 4 * 1024 * 1024 })[math.random(1, 3)]
        local h = assert(vhd.create(path, { size = parent and nil or size, parent = parent, block_size = lbs,
          xenserver = lbs == 2 * 1024 * 1024 }))
        for _ = 1, math.random(5, 30) do
          local off = math.random(0, size - 2)
          local len = math.random(1, math.min(size - off, math.random(1, 3) == 1 and 700 or 400000))
          local data = random_bytes(len, math.random(1, 3) == 1)
          assert(h:write(off, data))
          ref:seek("set", off)
          ref:write(data)
        end
        h:close()
        parent = path
      end
      ref:close()
      for _, drop in ipairs { false, true } do
        local out = dir .. (drop and "/dz.qcow2" or "/flat.qcow2")
        local r = assert(vhd.flatten(parent, out, { format = "qcow2", drop_zero = drop }))
        assert.are.equal(size, r.virtual_size)
        assert.are.equal(fx.sha256(dir .. "/ref.raw"), oracle(out, size))
        compare(dir .. "/ref.raw", out)
      end
      -- both layouts keep the same data clusters; drop_zero only shortens the file
      assert.is_true(sys.stat(dir .. "/dz.qcow2").size <= sys.stat(dir .. "/flat.qcow2").size)
      os.execute("rm -rf " .. sh(dir))
    end)
  end
end)
