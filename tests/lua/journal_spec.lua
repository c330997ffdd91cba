-- salvage.journal: append-only, fsynced, replayed; survives a torn last line and
-- concurrent writers.
local journal = require "salvage.journal"
local sys = require "salvage.sys"

local function tmpdir()
  return assert(sys.mkdtemp("/tmp/salvage-journal-"))
end

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("salvage.journal", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("records steps keyed by VM and step, and replays them", function()
    local p = dir .. "/j.jsonl"
    local j = assert(journal.open(p))
    assert.is_nil(j:get(24, "template"))
    j:record(24, "template", { id = "t-1" })
    j:record(25, "template", { id = "t-2" })
    j:record(nil, "domain:/SPDM Inc/", { id = "d-1" })
    j:record(24, "vm", { id = "v-1" })
    assert.same({ id = "t-1" }, j:get(24, "template"))
    local again = assert(journal.open(p))
    assert.same({ id = "t-1" }, again:get(24, "template"))
    assert.same({ id = "t-2" }, again:get(25, "template"))
    assert.same({ id = "d-1" }, again:get(nil, "domain:/SPDM Inc/"))
    assert.same({ template = { id = "t-1" }, vm = { id = "v-1" } }, again:steps(24))
    assert.equal(4, #again:entries())
    -- one line per record, each a JSON object
    local n = 0
    for line in slurp(p):gmatch("[^\n]+") do
      n = n + 1
      assert.truthy(line:match("^{.*}$"))
    end
    assert.equal(4, n)
  end)

  it("keeps failures apart from completions, and a later completion clears them", function()
    local p = dir .. "/j.jsonl"
    local j = assert(journal.open(p))
    j:fail(26, "deploy", "Insufficient capacity (533)")
    assert.is_nil(j:get(26, "deploy"))
    local again = assert(journal.open(p))
    assert.is_nil(again:get(26, "deploy"))
    assert.equal("Insufficient capacity (533)", again:failure(26, "deploy").error)
    assert.equal(1, #again:failures_of(26))
    again:record(26, "deploy", { id = "x" })
    local third = assert(journal.open(p))
    assert.is_nil(third:failure(26, "deploy"))
    assert.equal(0, #third:failures_of(26))
  end)

  it("ignores a torn last line (kill -9 mid-write) and appends cleanly after it", function()
    local p = dir .. "/j.jsonl"
    local j = assert(journal.open(p))
    j:record(1, "a", { id = 1 })
    local f = assert(io.open(p, "ab"))
    f:write('{"step":"b","vm":1,"data":{"id"')   -- no newline: the write was cut
    f:close()
    local again = assert(journal.open(p))
    assert.equal(1, again.torn)
    assert.same({ id = 1 }, again:get(1, "a"))
    assert.is_nil(again:get(1, "b"))
    again:record(1, "b", { id = 2 })
    local third = assert(journal.open(p))
    assert.same({ id = 2 }, third:get(1, "b"))
    assert.equal(0, third.torn)
    assert.same({ 2 }, third.bad)   -- the old torn line, now terminated, is reported by number
  end)

  it("takes records from several processes at once without losing or mixing any", function()
    local p = dir .. "/j.jsonl"
    assert(journal.open(p))
    local pids = {}
    for w = 1, 4 do
      local code = ([[local j = assert(require("salvage.journal").open(%q))
        for i = 1, 100 do j:record(%d * 1000 + i, "step", { worker = %d, i = i, pad = string.rep("x", 300) }) end]])
        :format(p, w, w)
      pids[#pids + 1] = assert(sys.spawn { SALVAGE, "-e", code })
    end
    for _, pid in ipairs(pids) do
      local how, code = sys.wait(pid)
      assert.equal("exited", how)
      assert.equal(0, code)
    end
    local j = assert(journal.open(p))
    assert.equal(0, j.torn)
    assert.equal(0, #j.bad)
    assert.equal(400, #j:entries())
    assert.equal(73, j:get(3073, "step").i)
  end)

  it("tails records appended by another process, whole lines only", function()
    local p = dir .. "/j.jsonl"
    local reader = assert(journal.open(p))
    assert.same({}, reader:tail())
    local writer = assert(journal.open(p))
    writer:record(7, "template", { id = "t-7" })
    writer:fail(8, "vm", "no capacity")
    local f = assert(io.open(p, "ab"))
    f:write('{"step":"vm","vm":7,"data":{"id":"v')   -- being written
    f:close()
    local new = reader:tail()
    assert.equal(2, #new)
    assert.same({ vm = 7, step = "template", data = { id = "t-7" } }, new[1])
    assert.equal("no capacity", new[2].failed)
    assert.same({ id = "t-7" }, reader:get(7, "template"))
    f = assert(io.open(p, "ab"))
    f:write('-7"}}\n')
    f:close()
    new = reader:tail()
    assert.equal(1, #new)
    assert.same({ id = "v-7" }, reader:get(7, "vm"))
    assert.same({}, reader:tail())
  end)

  it("refuses a directory", function()
    local j, err, code = journal.open(dir)
    assert.is_nil(j)
    assert.truthy(err:find("not a regular file"))
    assert.equal("EISDIR", code)
  end)
end)
