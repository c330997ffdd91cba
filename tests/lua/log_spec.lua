local log = require "salvage.log"
local json = require "salvage.json"

describe("salvage.log", function()
  local lines
  before_each(function()
    lines = {}
    log.configure({ level = "info", json = false, quiet = false, sink = function(l) lines[#lines + 1] = l end })
  end)
  after_each(function() log.configure({ level = "info", json = false, quiet = false, sink = false }) end)

  it("filters by level", function()
    log.debug("hidden")
    log.info("shown")
    log.configure({ level = "debug" })
    log.debug("now shown")
    assert.are.same({ "info: shown", "debug: now shown" }, lines)
  end)

  it("keeps only errors under --quiet", function()
    log.configure({ quiet = true })
    log.warn("w")
    log.info("i")
    log.error("e")
    assert.are.same({ "error: e" }, lines)
  end)

  it("prints fields sorted, quoting values with spaces", function()
    log.info("uploaded", { vm = "ppvm2", size = 10, note = "two words" })
    assert.are.same({ 'info: uploaded note="two words" size=10 vm=ppvm2' }, lines)
  end)

  it("never prints secrets in fields or messages", function()
    log.info("calling https://h/client/api?command=x&apikey=AKEY&signature=SIG%3D",
      { password = "hunter2", secretkey = "S", nested = "secretkey=S2" })
    local l = lines[1]
    assert.is_nil(l:find("AKEY", 1, true))
    assert.is_nil(l:find("SIG", 1, true))
    assert.is_nil(l:find("hunter2", 1, true))
    assert.is_nil(l:find("S2", 1, true))
    assert.matches("apikey=***", l, 1, true)
    assert.matches("password=***", l, 1, true)
  end)

  it("writes one JSON object a line with --log-json, redacted", function()
    log.configure({ json = true })
    log.warn("disk missing", { volume = 7, apikey = "K", deep = { password = "p" } })
    local rec = assert(json.decode(lines[1]))
    assert.are.equal("warn", rec.level)
    assert.are.equal("disk missing", rec.msg)
    assert.are.equal(7, rec.volume)
    assert.are.equal("***", rec.apikey)
    assert.are.equal("***", rec.deep.password)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", rec.time)
  end)

  it("redacts JSON-looking text and leaves other keys alone", function()
    assert.are.equal('{"secretkey": "***", "name": "x"}', log.scrub('{"secretkey": "abc", "name": "x"}'))
    assert.are.equal("name=x", log.scrub("name=x"))
  end)

  it("rejects unknown levels", function()
    assert.has_error(function() log.configure({ level = "loud" }) end)
  end)
end)
