-- Our VHD writer: randomized chains against a plain raw file given the same
-- writes; qemu-img reads what we create (fixed, dynamic); coalesce policy.
local vhd = require "salvage.vhd"
local sys = require "salvage.sys"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local sh = fx.sh

local DIR

setup(function() DIR = assert(sys.mkdtemp("/tmp/salvage-vhd-w-")) end)
teardown(function() os.execute("rm -rf " .. sh(DIR)) end)

-- a raw reference image receiving the same writes
local function reference(path, size, keep)
  local f = assert(io.open(path, keep and "r+b" or "w+b"))
  if not keep then
    f:seek("set", size - 1)
    f:write("\0")
  end
  return {
    write = function(_, off, data)
      f:seek("set", off)
      f:write(data)
    end,
    read = function(_, off, len)
      f:seek("set", off)
      return f:read(len) or ""
    end,
    close = function() f:close() end,
  }
end

local function random_bytes(n, zero)
  if zero then return ("\0"):rep(n) end
  local t = {}
  local c = string.char(math.random(1, 255))
  -- runs of one byte with some noise: cheap to make, easy to tell apart
  for i = 1, n, 997 do t[#t + 1] = (c .. string.char(i % 251)):rep(499):sub(1, math.min(997, n - i + 1)) end
  return table.concat(t)
end

local qemu_raw_sha = fx.qemu_raw_sha

describe("vhd writer (randomized property)", function()
  for seed = 1, 8 do
    it("chain of random depth and writes equals the raw reference (seed " .. seed .. ")", function()
      math.randomseed(seed * 7919)
      local dir = DIR .. "/p" .. seed
      assert(sys.mkdir(dir))
      local bs = ({ 512 * 1024, 2 * 1024 * 1024, 1024 * 1024 })[seed % 3 + 1]
      local size = math.random(3, 9) * bs + math.random(0, 40) * 512
      local levels = (seed % 4) + 1
      local ref = reference(dir .. "/ref.raw", size)
      local parent
      for level = 1, levels do
        local path = ("%s/l%d.vhd"):format(dir, level)
        -- levels may use different block sizes (reads are per sector, not per block)
        local lbs = level == 1 and bs or ({ bs, 512 * 1024, 4 * 1024 * 1024 })[math.random(1, 3)]
        local h = assert(vhd.create(path, { size = parent and nil or size, parent = parent, block_size = lbs,
          hidden = level < levels, xenserver = lbs == 2 * 1024 * 1024 }))
        for _ = 1, math.random(5, 25) do
          local kind = math.random(1, 5)
          local off, len
          if kind == 1 then -- crossing a block boundary
            off = math.random(1, size // bs - 1) * bs - math.random(1, 1500)
            len = math.random(1, 4000)
          elseif kind == 2 then -- the last bytes of the disk
            len = math.random(1, 1500)
            off = size - len
          else
            off = math.random(0, size - 2)
            len = math.random(1, math.min(size - off, kind == 3 and 700 or 300000))
          end
          local data = random_bytes(len, math.random(1, 4) == 1)
          assert(h:write(off, data))
          ref:write(off, data)
        end
        -- reading through the open writer sees the writes
        local off = math.random(0, size - 5000)
        assert.are.equal(ref:read(off, 5000), h:read(off, 5000))
        h:close()
        parent = path
      end
      ref:close()
      local leaf = parent
      local c = vhd.check(leaf)
      for _, p in ipairs(c.problems) do assert.are.equal("info", p.severity, p.message) end
      assert.are.equal(levels, #c.chain)
      local r = assert(vhd.flatten(leaf, dir .. "/flat.raw", { format = "raw" }))
      assert.are.equal(size, r.virtual_size)
      assert.are.equal(fx.sha256(dir .. "/ref.raw"), fx.sha256(dir .. "/flat.raw"))
      -- flattened VHD, read by qemu-img
      assert(vhd.flatten(leaf, dir .. "/flat.vhd"))
      assert.are.equal(fx.sha256(dir .. "/ref.raw"), qemu_raw_sha(dir .. "/flat.vhd"))
      -- the base alone (dynamic, ours) is also read right by qemu-img
      local b = assert(vhd.flatten(dir .. "/l1.vhd", dir .. "/l1.raw", { format = "raw" }))
      assert.are.equal(fx.sha256(b.path), qemu_raw_sha(dir .. "/l1.vhd"))
      os.execute("rm -rf " .. sh(dir))
    end)
  end
end)

describe("vhd.create", function()
  it("makes fixed and dynamic disks qemu-img reads at their exact size", function()
    for _, t in ipairs { "fixed", "dynamic" } do
      local path = DIR .. "/c_" .. t .. ".vhd"
      local size = 5 * 1024 * 1024 + 3 * 512
      local h = assert(vhd.create(path, { size = size, type = t }))
      assert(h:write(1000, ("x"):rep(5000)))
      assert(h:write(size - 10, ("y"):rep(10)))
      local info = h:info()
      h:close()
      assert.are.equal(t, info.footer.disk_type)
      local code, out = RUN("qemu-img info -f vpc --output=json " .. sh(path))
      assert.are.equal(0, code)
      assert.are.equal(size, math.tointeger(tonumber(out:match('"virtual%-size":%s*(%d+)'))))
      local ref = reference(DIR .. "/c_ref.raw", size)
      ref:write(1000, ("x"):rep(5000))
      ref:write(size - 10, ("y"):rep(10))
      ref:close()
      assert.are.equal(fx.sha256(DIR .. "/c_ref.raw"), qemu_raw_sha(path))
      assert.is_true(vhd.check(path).ok)
    end
  end)

  it("writes XenServer's relative parent locators and the hidden flag", function()
    assert(sys.mkdir(DIR .. "/sub"))
    local b = assert(vhd.create(DIR .. "/base.vhd", { size = 4 << 20, hidden = true }))
    b:close()
    local c = assert(vhd.create(DIR .. "/sub/child.vhd", { parent = DIR .. "/base.vhd" }))
    local info = c:info()
    c:close()
    assert.are.equal("differencing", info.footer.disk_type)
    assert.are.equal(4 << 20, info.footer.current_size)
    assert.are.equal("base.vhd", info.header.parent_name)
    assert.is_true(info.header.batmap) -- tapdisk expects one in a "tap" 1.3 file
    local got = {}
    for _, l in ipairs(info.header.locators) do got[#got + 1] = l.code .. "=" .. l.path end
    assert.are.same({ "MacX=../base.vhd", "W2ku=../base.vhd", "W2ru=../base.vhd" }, got)
    local h = assert(vhd.open(DIR .. "/base.vhd"))
    assert.is_true(h:info().footer.hidden)
    h:close()
    local s = assert(vhd.create(DIR .. "/sib.vhd", { parent = DIR .. "/base.vhd" }))
    info = s:info()
    s:close()
    assert.are.equal("./base.vhd", info.header.locators[1].path)
  end)

  it("refuses to overwrite and validates its arguments", function()
    local h, _, code = vhd.create(DIR .. "/base.vhd", { size = 1 << 20 })
    assert.is_nil(h)
    assert.are.equal("EEXIST", code)
    h, _, code = vhd.create(DIR .. "/odd.vhd", { size = 1000 })
    assert.is_nil(h)
    assert.are.equal("EINVAL", code)
    assert.has_error(function() vhd.create(DIR .. "/x.vhd", { size = 1 << 20, type = "sparse" }) end)
    -- a misspelt option is named, never ignored (a 'hiden' disk would silently be visible)
    local ok1, e1 = pcall(vhd.create, DIR .. "/y.vhd", { size = 1 << 20, hiden = true })
    assert.is_false(ok1)
    assert.matches("vhd.create: unknown option 'hiden' %(known: size, type, parent, block_size, hidden, strict, "
      .. "xenserver%)", e1)
    local ok2, e2 = pcall(vhd.flatten, DIR .. "/base.vhd", DIR .. "/f.vhd", { overwrit = true })
    assert.is_false(ok2)
    assert.matches("vhd.flatten: unknown option 'overwrit'", e2)
    local ok3, e3 = pcall(vhd.open, DIR .. "/base.vhd", { writable = true })
    assert.is_false(ok3)
    assert.matches("vhd.open: unknown option 'writable' %(known: search, write%)", e3)
    assert.is_nil(sys.stat(DIR .. "/y.vhd"))
    h = assert(vhd.create(DIR .. "/small.vhd", { size = 1 << 20 }))
    local ok, _, wcode = h:write((1 << 20) - 1, "ab")
    assert.is_nil(ok)
    assert.are.equal("EINVAL", wcode)
    h:close()
  end)

  it("opens an existing file for writing and keeps it consistent", function()
    local path = DIR .. "/rw.vhd"
    local h = assert(vhd.create(path, { size = 8 << 20 }))
    assert(h:write(0, ("a"):rep(4096)))
    h:close()
    h = assert(vhd.open(path, { write = true }))
    assert(h:write(6 << 20, ("b"):rep(100)))
    h:close()
    h = assert(vhd.open(path))
    assert.are.equal(("a"):rep(4096), h:read(0, 4096))
    assert.are.equal(("b"):rep(100) .. ("\0"):rep(412), h:read(6 << 20, 512))
    h:close()
    assert.is_true(vhd.check(path).ok)
  end)
end)

describe("vhd writes into XenServer-made files", function()
  it("keeps a vhd-util chain exact when opened for writing", function()
    local FX = fx.unpack()
    local dir = DIR .. "/xs"
    os.execute(("mkdir -p %s && cp %s/chain_d1/*.vhd %s/"):format(sh(dir), sh(FX), sh(dir)))
    assert(vhd.flatten(dir .. "/c1.vhd", dir .. "/ref.raw", { format = "raw" }))
    local ref = reference(dir .. "/ref.raw", 64 << 20, true)
    local h = assert(vhd.open(dir .. "/c1.vhd", { write = true }))
    local writes = {
      { 10 * 512 + 3, ("w"):rep(700) },        -- inside c1's written area, partial sectors
      { (20 << 20) + 100, ("n"):rep(5000) },   -- a block c1 never had
      { (64 << 20) - 3, "end" },               -- last bytes of the disk
      { 4096 * 512 - 10, ("\0"):rep(20) },     -- zeros across a block boundary
    }
    for _, w in ipairs(writes) do
      assert(h:write(w[1], w[2]))
      ref:write(w[1], w[2])
    end
    assert(h:set_hidden(false))
    h:close()
    ref:close()
    local c = vhd.check(dir .. "/c1.vhd")
    for _, p in ipairs(c.problems) do assert.are_not.equal("error", p.severity, p.message) end
    assert(vhd.flatten(dir .. "/c1.vhd", dir .. "/got.raw", { format = "raw" }))
    assert.are.equal(fx.sha256(dir .. "/ref.raw"), fx.sha256(dir .. "/got.raw"))
    fx.cleanup()
  end)
end)

describe("vhd.coalesce", function()
  local function build(dir)
    assert(sys.mkdir(dir))
    local b = assert(vhd.create(dir .. "/base.vhd", { size = 6 << 20, hidden = true }))
    assert(b:write(0, ("B"):rep(3 << 20)))
    b:close()
    local c = assert(vhd.create(dir .. "/c1.vhd", { parent = dir .. "/base.vhd" }))
    assert(c:write(100, ("c"):rep(1000)))
    assert(c:write((2 << 20) - 7, ("\0"):rep(20)))
    assert(c:write(5 << 20, ("z"):rep(513)))
    c:close()
  end

  it("refuses when the parent has other children, unless forced", function()
    local dir = DIR .. "/co1"
    build(dir)
    local s = assert(vhd.create(dir .. "/c2.vhd", { parent = dir .. "/base.vhd" }))
    s:close()
    local before = fx.sha256(dir .. "/base.vhd")
    local ok, msg, code = vhd.coalesce(dir .. "/c1.vhd")
    assert.is_nil(ok)
    assert.are.equal("ECHILDREN", code)
    assert.matches("c2%.vhd", msg)
    assert.are.equal(before, fx.sha256(dir .. "/base.vhd"))
    assert(vhd.flatten(dir .. "/c1.vhd", dir .. "/want.raw", { format = "raw" }))
    assert(vhd.coalesce(dir .. "/c1.vhd", { force = true }))
    assert(vhd.flatten(dir .. "/base.vhd", dir .. "/got.raw", { format = "raw" }))
    assert.are.equal(fx.sha256(dir .. "/want.raw"), fx.sha256(dir .. "/got.raw"))
  end)

  it("writes only bitmap sectors into the parent (a lying batmap changes nothing)", function()
    local FX = fx.unpack()
    local dir = DIR .. "/co2"
    os.execute(("mkdir -p %s && cp %s/chain_d1/*.vhd %s/"):format(sh(dir), sh(FX), sh(dir)))
    local f = assert(io.open(dir .. "/c1.vhd", "r+b"))
    f:seek("set", 2560)
    f:write(("\255"):rep(4))
    f:close()
    assert(vhd.coalesce(dir .. "/c1.vhd"))
    assert(vhd.flatten(dir .. "/base.vhd", dir .. "/got.raw", { format = "raw" }))
    assert.are.equal(fx.expected()["chain_d1/c1.vhd"], fx.sha256(dir .. "/got.raw"))
    fx.cleanup()
  end)

  it("refuses non-differencing disks", function()
    local dir = DIR .. "/co3"
    build(dir)
    local ok, _, code = vhd.coalesce(dir .. "/base.vhd")
    assert.is_nil(ok)
    assert.are.equal("EINVAL", code)
  end)
end)

describe("vhd sizes", function()
  it("handles the largest virtual size (2040 GiB) and refuses more", function()
    local size = 2040 << 30
    local path = DIR .. "/max.vhd"
    local h = assert(vhd.create(path, { size = size }))
    assert(h:write(size - 512, ("E"):rep(512)))
    assert(h:write(0, "start"))
    h:close()
    local r, _, code = vhd.create(DIR .. "/over.vhd", { size = size + 512 })
    assert.is_nil(r)
    assert.are.equal("EINVAL", code)
    r = assert(vhd.flatten(path, DIR .. "/max-flat.vhd"))
    assert.are.equal(size, r.virtual_size)
    assert.are.equal(2, r.blocks_written)
    local code2, out = RUN("qemu-img info -f vpc --output=json " .. sh(DIR .. "/max-flat.vhd"))
    assert.are.equal(0, code2)
    assert.are.equal(size, math.tointeger(tonumber(out:match('"virtual%-size":%s*(%d+)'))))
    local f = assert(vhd.open(DIR .. "/max-flat.vhd"))
    assert.are.equal("EEE", f:read(size - 512, 3))
    assert.are.equal("start", f:read(0, 5))
    f:close()
    os.remove(path)
    os.remove(DIR .. "/max-flat.vhd")
  end)
end)

describe("vhd batmap of our files", function()
  it("marks exactly the blocks whose sectors are all written", function()
    local path = DIR .. "/bm.vhd"
    local h = assert(vhd.create(path, { size = 10 << 20 }))
    assert(h:write(0, ("x"):rep(2 << 20)))            -- block 0: full in one write
    assert(h:write(4 << 20, ("y"):rep(100)))          -- block 2: partial
    assert(h:write(8 << 20, ("z"):rep(1 << 20)))      -- block 4: full in two writes
    assert(h:write((9 << 20), ("z"):rep(1 << 20)))
    h:close()
    local f = assert(io.open(path, "rb"))
    f:seek("set", 2048)
    assert.are.equal("tdbatmap", f:read(8))
    f:seek("set", 2560)
    assert.are.equal(0x88, f:read(1):byte())
    f:close()
    assert.is_true(vhd.check(path).ok)
  end)
end)
