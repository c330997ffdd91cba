-- Where salvage's VHD outputs disagreed with XenServer's blktap (issue 13 part 2): coalescing a
-- child larger than its parent, block sizes other than 2 MiB, parent names outside ASCII, and what
-- check says about a child larger than its parent. Each of these failed before the fix.
local sys = require "salvage.sys"
local vhd = require "salvage.vhd"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local sh = fx.sh

local DIR
local MIB = 1 << 20

setup(function() DIR = assert(sys.mkdtemp("/tmp/salvage-vhdxs-")) end)
teardown(function() os.execute("rm -rf " .. sh(DIR)) end)

local function write(path, off, data)
  local h = assert(vhd.open(path, { write = true }))
  assert(h:write(off, data))
  h:close()
end

local function read(path, off, len)
  local h = assert(vhd.open(path))
  local s = assert(h:read(off, len))
  h:close()
  return s
end

local function run(args)
  return RUN(sh(SALVAGE) .. " " .. args)
end

describe("coalesce of a child larger than its parent", function()
  it("grows the parent first when its BAT can hold the child, and keeps every byte", function()
    local d = DIR .. "/grow"
    assert(sys.mkdir(d))
    -- 3 MiB in 2 MiB blocks: the BAT has 2 entries, room for 4 MiB
    assert(vhd.create(d .. "/p.vhd", { size = 3 * MIB })):close()
    write(d .. "/p.vhd", MIB, ("p"):rep(4096))
    assert(vhd.create(d .. "/c.vhd", { parent = d .. "/p.vhd", size = 4 * MIB })):close()
    write(d .. "/c.vhd", 3 * MIB + 512, ("z"):rep(8192))
    local want = d .. "/want.raw"
    assert(vhd.flatten(d .. "/c.vhd", want, { format = "raw" }))
    local code, out = run("vhd coalesce " .. sh(d .. "/c.vhd"))
    assert.equal(0, code, out)
    local h = assert(vhd.open(d .. "/p.vhd"))
    assert.equal(4 * MIB, h:info().footer.current_size)
    h:close()
    assert.equal(("z"):rep(8192), read(d .. "/p.vhd", 3 * MIB + 512, 8192))
    assert.equal(("p"):rep(4096), read(d .. "/p.vhd", MIB, 4096))
    local got = d .. "/got.raw"
    assert(vhd.flatten(d .. "/p.vhd", got, { format = "raw" }))
    assert.equal(fx.sha256(want), fx.sha256(got))
    assert.is_true(vhd.check(d .. "/p.vhd").ok)
    -- and qemu-img reads the grown parent the same
    local q = d .. "/q.raw"
    assert.equal(0, (RUN(("qemu-img convert -f vpc -O raw %s %s"):format(sh(d .. "/p.vhd"), sh(q)))))
    assert.equal(fx.sha256(want), fx.sha256(q))
  end)

  it("refuses precisely when the parent's BAT cannot hold the child; nothing is written", function()
    local d = DIR .. "/refuse"
    assert(sys.mkdir(d))
    assert(vhd.create(d .. "/p.vhd", { size = 3 * MIB })):close()
    assert(vhd.create(d .. "/c.vhd", { parent = d .. "/p.vhd", size = 8 * MIB })):close()
    write(d .. "/c.vhd", 4 * MIB, ("z"):rep(4096))
    local before = fx.sha256(d .. "/p.vhd")
    local code, _, err = run("vhd coalesce " .. sh(d .. "/c.vhd"))
    assert.equal(1, code)
    assert.matches("larger %(8388608 bytes%) than its parent %(3145728 bytes%)", err)
    assert.matches("holds at most 4194304 bytes", err)
    assert.matches("%(EFBIG%)", err)
    assert.equal(before, fx.sha256(d .. "/p.vhd"))
    assert.equal(("z"):rep(4096), read(d .. "/c.vhd", 4 * MIB, 4096))
  end)

  it("check names what coalesce would do, as a warning", function()
    local d = DIR .. "/check"
    assert(sys.mkdir(d))
    assert(vhd.create(d .. "/p.vhd", { size = 3 * MIB })):close()
    assert(vhd.create(d .. "/c.vhd", { parent = d .. "/p.vhd", size = 4 * MIB })):close()
    assert(vhd.create(d .. "/big.vhd", { parent = d .. "/p.vhd", size = 8 * MIB })):close()
    local r = vhd.check(d .. "/c.vhd")
    assert.is_false(r.ok)
    assert.equal("PARENT_SMALLER", r.problems[1].code)
    assert.equal("warning", r.problems[1].severity)
    assert.matches("coalesce would first grow p.vhd to 4194304 bytes", r.problems[1].message)
    r = vhd.check(d .. "/big.vhd")
    assert.matches("coalesce would refuse: p.vhd can only grow to 4194304 bytes", r.problems[1].message)
    -- a child smaller than its parent stays information
    assert(vhd.create(d .. "/p8.vhd", { size = 8 * MIB })):close()
    assert(vhd.create(d .. "/small.vhd", { parent = d .. "/p8.vhd", size = 4 * MIB })):close()
    r = vhd.check(d .. "/small.vhd")
    assert.is_true(r.ok)
    assert.equal("info", r.problems[1].severity)
  end)
end)

describe("vhd create for XenServer", function()
  it("refuses block sizes other than 2 MiB unless a non-XenServer file is asked for", function()
    for _, bs in ipairs({ "512K", "1M", "4M" }) do
      local p = DIR .. "/bs" .. bs .. ".vhd"
      local code, _, err = run(("vhd create %s --size 8M --block-size %s"):format(sh(p), bs))
      assert.equal(1, code)
      assert.matches("XenServer uses 2 MiB blocks only", err)
      assert.is_nil(sys.stat(p))
      code = run(("vhd create %s --size 8M --block-size %s --non-xenserver"):format(sh(p), bs))
      assert.equal(0, code)
      local info = assert(vhd.open(p)):info()
      assert.equal("qem2", info.footer.creator_app)
      assert.is_false(info.header.batmap)
    end
    local p = DIR .. "/bs2.vhd"
    assert.equal(0, (run(("vhd create %s --size 8M --block-size 2M"):format(sh(p)))))
    local info = assert(vhd.open(p)):info()
    assert.equal("tap", info.footer.creator_app)
    assert.is_true(info.header.batmap)
  end)

  it("warns about a parent name outside ASCII, and refuses it under --strict", function()
    local parent = DIR .. "/pé.vhd"
    assert(vhd.create(parent, { size = 4 * MIB })):close()
    local c1 = DIR .. "/k1.vhd"
    local code, _, err = run(("vhd create %s --parent %s"):format(sh(c1), sh(parent)))
    assert.equal(0, code)
    assert.matches("PARENT_NAME_NOT_ASCII", err)
    assert.matches("invalid parent name", err)
    local c2 = DIR .. "/k2.vhd"
    code, _, err = run(("vhd create %s --parent %s --strict"):format(sh(c2), sh(parent)))
    assert.equal(1, code)
    assert.matches("not ASCII", err)
    assert.is_nil(sys.stat(c2))
    local h, _, c = vhd.create(c2, { parent = parent, strict = true })
    assert.is_nil(h)
    assert.equal("EINVAL", c)
  end)
end)
