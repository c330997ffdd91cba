local progress = require "salvage.progress"

-- a fake clock and an in-memory stream make the output exact
local function rig(opts)
  local now = 0
  local buf = {}
  local out = {
    write = function(_, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = s end end,
    flush = function() end,
  }
  opts.clock = function() return now end
  opts.out = out
  opts.quiet = opts.quiet or false
  local p = progress.new(opts)
  return p, function(t) now = t end, function() return table.concat(buf) end
end

describe("salvage.progress", function()
  it("formats sizes and durations", function()
    assert.are.equal("512 B", progress.bytes(512))
    assert.are.equal("1.5 KiB", progress.bytes(1536))
    assert.are.equal("2.0 GiB", progress.bytes(2 << 30))
    assert.are.equal("1:15", progress.duration(75))
    assert.are.equal("1:02:05", progress.duration(3725))
    assert.are.equal("?", progress.duration(nil))
  end)

  it("computes rate and ETA", function()
    local p, at = rig({ total = 1000, unit = "bytes", tty = false, interval = 5 })
    at(10)
    p:update(250)
    assert.are.equal(25, p:rate())
    assert.are.equal(30, p:eta())
  end)

  it("prints a plain line at most every interval when not on a terminal", function()
    local p, at, text = rig({ label = "flatten", total = 100, unit = "items", tty = false, interval = 5 })
    at(1) p:update(10)
    at(2) p:update(20)  -- too soon: no line
    at(7) p:update(70)
    p:finish()
    local out = text()
    local n = select(2, out:gsub("\n", "\n"))
    assert.are.equal(3, n)
    assert.matches("flatten  10%% 10/100", out)
    assert.matches("flatten 100%% 100/100", out)
    assert.is_nil(out:find("\r", 1, true))
  end)

  it("redraws one line with a bar on a terminal", function()
    local p, at, text = rig({ label = "upload", total = 4 << 20, unit = "bytes", tty = true, interval = 0 })
    at(1) p:update(1 << 20)
    at(2) p:update(2 << 20)
    p:finish()
    local out = text()
    assert.matches("\r", out, 1, true)
    assert.matches("%[======", out)
    assert.matches("\n$", out)
    assert.matches("1.0 MiB/4.0 MiB", out, 1, true)
  end)

  it("is silent under --quiet", function()
    local p, at, text = rig({ total = 10, tty = false, interval = 0, quiet = true })
    at(1) p:update(5)
    p:finish()
    assert.are.equal("", text())
  end)

  it("writes bytes, rate and ETA in each --log-json record", function()
    local log, json = require "salvage.log", require "salvage.json"
    local lines, saved = {}, log.get()
    log.configure { json = true, quiet = false, sink = function(line) lines[#lines + 1] = line end }
    local ok, err = pcall(function()
      local p, at = rig({ label = "upload vm-1", total = 1000, unit = "bytes", tty = false, interval = 5 })
      at(10) p:update(250)
      at(20) p:finish()
    end)
    log.configure(saved)
    log.configure { sink = false }
    assert(ok, err)
    assert.are.equal(2, #lines)
    local first, last = json.decode(lines[1]), json.decode(lines[2])
    assert.are.same({ "upload vm-1", 250, 1000, "bytes", 25, 30 },
      { first.label, first.done, first.total, first.unit, first.rate, first.eta_s })
    assert.are.same({ 1000, 50, 0, true }, { last.done, last.rate, last.eta_s, last.final })
  end)

  it("gives C code a callback that answers true", function()
    local p, at = rig({ total = 10, tty = false, interval = 100 })
    local cb = p:callback()
    at(1)
    assert.is_true(cb(4, 10))
    assert.are.equal(4, p.done)
  end)
end)
