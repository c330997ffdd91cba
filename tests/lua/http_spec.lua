-- salvage.http against a private loopback HTTP server (tests/cloudstack-sim/echo.py).
local http = require "salvage.http"
local json = require "salvage.json"
local crypto = require "salvage.crypto"
local sim = require "salvage.cloudstack.simulator"

local function tmpfile(data)
  local p = os.tmpname()
  local f = assert(io.open(p, "wb"))
  f:write(data)
  f:close()
  return p
end

describe("salvage.http", function()
  local srv, base
  setup(function()
    srv = assert(sim.start_echo { lifetime = 120 })
    base = srv.base
  end)
  teardown(function() srv:stop() end)

  it("GETs and returns status, headers, body; the URL's query goes as given", function()
    local r = assert(http.request { url = base .. "/echo?b=x%20y&a=1" })
    assert.equal(200, r.status)
    assert.equal("application/json", r.headers["content-type"])
    local e = json.decode(r.body)
    assert.equal("GET", e.method)
    assert.equal("b=x%20y&a=1", e.query)
    assert.equal("salvage/1", e.headers["user-agent"])
  end)

  it("refuses unknown options (query= is gone: build the URL with crypto.urlencode)", function()
    local ok, err = pcall(http.request, { url = base .. "/echo", query = { a = "1" } })
    assert.is_false(ok)
    assert.matches("http.request: unknown option 'query'", err, 1, true)
    ok, err = pcall(http.request, { url = base .. "/echo", fresh = "yes" })
    assert.is_false(ok)
    assert.matches("http.request: option 'fresh' must be", err, 1, true)
  end)

  it("sends headers and a string body with Content-Length", function()
    local r = assert(http.request { method = "PUT", url = base .. "/echo", body = "hello",
      headers = { ["X-One"] = "1", "X-Two: 2" } })
    local e = json.decode(r.body)
    assert.equal("PUT", e.method)
    assert.equal("1", e.headers["x-one"])
    assert.equal("2", e.headers["x-two"])
    assert.equal(5, e.length)
    assert.equal(crypto.sha256("hello"), e.sha256)
    assert.is_nil(e.headers.expect)
  end)

  it("streams body_file with a Content-Length, never chunked", function()
    local data = crypto.random_bytes(3 << 20 // 3) .. string.rep("z", 1 << 20)
    local p = tmpfile(data)
    local calls, last = 0, 0
    local r = assert(http.request { method = "POST", url = base .. "/echo", body_file = p,
      progress = function(_, _, ultotal, ulnow)
        calls = calls + 1
        assert.is_true(ulnow >= last)
        last = ulnow
        if ultotal > 0 then assert.equal(#data, ultotal) end
      end })
    local e = json.decode(r.body)
    assert.is_false(e.chunked)
    assert.equal(tostring(#data), e.headers["content-length"])
    assert.equal(crypto.sha256(data), e.sha256)
    assert.equal(#data, last)
    assert.is_true(calls > 0)
    os.remove(p)
  end)

  it("fresh = true opens a new connection and does not keep it", function()
    local c = http.client()
    local a = json.decode(assert(c:request { url = base .. "/echo" }).body)
    local b = json.decode(assert(c:request { url = base .. "/echo", method = "POST", body = "x", fresh = true }).body)
    local d = json.decode(assert(c:request { url = base .. "/echo" }).body)
    assert.are_not.equal(a.conn, b.conn)
    assert.equal(1, b.nth)
    assert.are_not.equal(b.conn, d.conn)
    c:close()
  end)

  describe("with a salvage.stream body", function()
    local vhd = require "salvage.vhd"
    local dir, src
    setup(function()
      dir = assert(require("salvage.sys").mkdtemp("/tmp/salvage-http-stream-"))
      src = dir .. "/d.vhd"
      local h = assert(vhd.create(src, { size = 9 << 20 }))
      for i = 0, 2 do assert(h:write(i << 20, crypto.random_bytes(1 << 20))) end
      assert(h:write(7 << 20, ("s"):rep(4096)))
      h:close()
    end)
    teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

    local function expected()
      local s <close> = assert(vhd.stream(src))
      local out = dir .. "/ref" .. tostring(math.random(1 << 30)) .. ".vhd"
      local r = assert(s:write_to(out))
      return r, out
    end

    it("sends body_stream with its Content-Length and returns the sha256 of the bytes sent", function()
      local s <close> = assert(vhd.stream(src))
      local len = s:length()
      local calls = 0
      local r = assert(http.request { method = "PUT", url = base .. "/echo", body_stream = s,
        progress = function() calls = calls + 1 end })
      local e = json.decode(r.body)
      assert.is_false(e.chunked)
      assert.equal(tostring(len), e.headers["content-length"])
      assert.equal(len, e.length)
      assert.equal(e.sha256, r.sent_sha256)
      assert.equal(len, r.uploaded)
      assert.is_true(calls > 0)
      -- the same bytes as a stream written to a file, but for the footer's identity (new UUID)
      local ref = expected()
      assert.equal(ref.bytes, len)
    end)

    it("sends a stream as a multipart file part, sized up front", function()
      local s <close> = assert(vhd.stream(src, { drop_zero = true }))
      local r = assert(http.request { method = "POST", url = base .. "/echo",
        form = { { name = "file", stream = s, filename = "d.vhd", type = "application/octet-stream" } } })
      local e = json.decode(r.body)
      assert.is_false(e.chunked)
      assert.equal(tostring(e.length), e.headers["content-length"])
      assert.is_true(e.length > s:length())
      assert.matches("^%x+$", r.sent_sha256)
      assert.equal(64, #r.sent_sha256)
    end)

    it("sends a stream once and refuses misuse before anything is sent", function()
      local s <close> = assert(vhd.stream(src))
      assert(http.request { method = "PUT", url = base .. "/echo", body_stream = s })
      assert.has_error(function() http.request { method = "PUT", url = base .. "/echo", body_stream = s } end,
        "salvage.stream already read: a stream is sent once; make a new one")
      local t <close> = assert(vhd.stream(src))
      assert.has_error(function() http.request { url = base .. "/echo", body_stream = t, body = "x" } end,
        "salvage.http: give one of body, body_file, body_stream, form")
      assert.has_error(function() http.request { url = base .. "/echo", body_stream = "x" } end)
      assert.has_error(function()
        http.request { url = base .. "/echo", form = { { name = "f", stream = t, value = "v" } } }
      end, "salvage.http: form part 'f' needs one of value, file, stream")
    end)

    it("gives a refused connection as ECONNREFUSED with no sha256", function()
      local s <close> = assert(vhd.stream(src))
      local r, _, code = http.request { method = "PUT", url = "http://127.0.0.1:1/x", body_stream = s }
      assert.is_nil(r)
      assert.equal("ECONNREFUSED", code)
    end)
  end)

  it("sends multipart forms with file parts from disk, sized up front", function()
    local p = tmpfile(string.rep("v", 100000))
    local r = assert(http.request { method = "POST", url = base .. "/echo",
      form = { { name = "file", file = p, filename = "disk.vhd", type = "application/octet-stream" },
        { name = "note", value = "n" } } })
    local e = json.decode(r.body)
    assert.is_false(e.chunked)
    assert.matches("^multipart/form%-data; boundary=", e.headers["content-type"])
    assert.is_true(e.length > 100000)
    assert.equal(tostring(e.length), e.headers["content-length"])
    os.remove(p)
  end)

  it("downloads to output_file without keeping the body", function()
    local out = os.tmpname()
    local r = assert(http.request { url = base .. "/bytes/3000000", output_file = out })
    assert.is_nil(r.body)
    assert.equal(3000000, r.downloaded)
    local f = io.open(out, "rb")
    local got = f:read("a")
    f:close()
    assert.equal(3000000, #got)
    assert.equal(string.char(0, 1, 2, 3), got:sub(1, 4))
    os.remove(out)
  end)

  it("keeps the connection alive across requests of one client", function()
    local c = http.client()
    local a = json.decode(assert(c:request { url = base .. "/echo" }).body)
    local b = json.decode(assert(c:request { url = base .. "/echo", method = "POST", body = "x" }).body)
    assert.equal(a.conn, b.conn)
    assert.equal(a.nth + 1, b.nth)
    c:close()
    c:close()
    assert.matches("closed", tostring(c))
    assert.has_error(function() c:request { url = base } end)
  end)

  it("returns non-2xx statuses as answers, not errors", function()
    local r = assert(http.request { url = base .. "/status/503" })
    assert.equal(503, r.status)
  end)

  it("times out with ETIMEDOUT", function()
    local r, msg, code = http.request { url = base .. "/slow/3", timeout = 0.3 }
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.matches("^http: ", msg)
  end)

  it("aborts a stalled transfer with stall_timeout", function()
    local t = os.time()
    local r, _, code = http.request { url = base .. "/slow/4", stall_timeout = 1 }
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.is_true(os.time() - t < 4)
  end)

  it("reports refused connections with ECONNREFUSED and no query string", function()
    local r, msg, code = http.request { url = "http://127.0.0.1:1/x?apikey=KEY&signature=SIG" }
    assert.is_nil(r)
    assert.equal("ECONNREFUSED", code)
    assert.not_matches("KEY", msg)
    assert.not_matches("SIG", msg)
  end)

  it("cancels when progress returns false, and re-raises a callback error after curl returns", function()
    local p = tmpfile(string.rep("a", 4 << 20))
    local r, msg, code = http.request { method = "POST", url = base .. "/echo", body_file = p,
      progress = function() return false end }
    assert.is_nil(r)
    assert.equal("ECANCELED", code)
    assert.matches("cancel", msg)
    local ok, err = pcall(http.request, { method = "POST", url = base .. "/echo", body_file = p,
      progress = function() error("boom from progress") end })
    assert.is_false(ok)
    assert.matches("boom from progress", tostring(err))
    -- the module still works afterwards
    assert.equal(200, assert(http.request { url = base .. "/echo" }).status)
    os.remove(p)
  end)

  it("survives a progress callback that rewrites the options while curl runs", function()
    local opts
    local suffix = tostring(os.time())
    opts = { method = "POST", url = base .. "/echo", body = string.rep("q", 1 << 20) .. suffix,
      progress = function()
        opts.body, opts.url = nil, nil
        collectgarbage()
      end }
    local r = assert(http.request(opts))
    assert.equal((1 << 20) + #suffix, json.decode(r.body).length)
  end)

  it("fails cleanly on a missing body_file and on misuse", function()
    local r, msg, code = http.request { method = "POST", url = base .. "/echo", body_file = "/nonexistent/x" }
    assert.is_nil(r)
    assert.equal("ENOENT", code)
    assert.matches("/nonexistent/x", msg)
    assert.has_error(function() http.request {} end)
    assert.has_error(function() http.request { url = base, body = "a", body_file = "b" } end)
    assert.has_error(function() http.request { url = base, progress = 5 } end)
    assert.has_error(function() http.request { url = base, form = "x" } end)
  end)
end)
