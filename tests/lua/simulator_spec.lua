-- The CloudStack simulator itself: lifecycle, envelopes, strictness, and an
-- independent client (python3-cs) accepted by its signature check.
local api = require "salvage.cloudstack.api"
local crypto = require "salvage.crypto"
local http = require "salvage.http"
local json = require "salvage.json"
local sim = require "salvage.cloudstack.simulator"
local sys = require "salvage.sys"

local function raw(s, params, method)
  local p = { response = "json", apikey = s.apikey, signatureversion = "3",
    expires = os.date("!%Y-%m-%dT%H:%M:%S+0000", os.time() + 300) }
  for k, v in pairs(params) do p[k] = v end
  for k, v in pairs(p) do if v == false then p[k] = nil end end
  p.signature = api.sign(p, s.secretkey)
  local q = {}
  for k, v in pairs(p) do q[#q + 1] = k .. "=" .. crypto.urlencode(v) end
  local body = table.concat(q, "&")
  if method == "POST" then
    return assert(http.request { method = "POST", url = s.url, body = body,
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
  end
  return assert(http.request { url = s.url .. "?" .. body })
end

describe("cloudstack simulator", function()
  local s
  setup(function()
    s = assert(sim.start { apikey = "key", secretkey = "secret", lifetime = 120, enforce_post = true })
  end)
  teardown(function() s:stop() end)

  it("leaves nothing behind: its private directory goes when it stops", function()
    local t = assert(sim.start { lifetime = 30 })
    assert.equal("directory", assert(sys.stat(t.dir)).type)
    assert.is_true(t.dir:match("^/tmp/salvage%-sim%-%w+$") ~= nil, t.dir)
    t:stop()
    assert.is_nil(sys.stat(t.dir))
  end)

  it("starts with Zone1, ROOT, admin, offerings, the seed's OS types and a network", function()
    local st = assert(s:state())
    assert.equal("Zone1", st.zones[1].name)
    assert.equal("ROOT", st.domains[1].path)
    assert.equal("admin", st.accounts[1].name)
    assert.equal(1, st.accounts[1].accounttype)
    local os_names = {}
    for _, o in ipairs(st.os_types) do os_names[o.description] = true end
    -- every guest_os.display_name of the sample seed
    local f = assert(io.open(CLOUDSTACK("seed-4.5.2.sql")))
    local sql = f:read("a")
    f:close()
    local block = sql:match("INSERT INTO `guest_os`.-;\n")
    local n = 0
    for name in block:gmatch("'[%x%-]+', '([^']+)'%)") do
      n = n + 1
      assert.is_true(os_names[name], name)
    end
    assert.is_true(n >= 4)
    assert.is_true(#st.service_offerings >= 3)
    assert.is_true(#st.disk_offerings >= 3)
    assert.equal(1, #st.networks)
    assert.is_nil(json.encode(st):find("secret", 1, true))
  end)

  it("answers real envelopes: lists with count, empty {}, registerTemplate as a list", function()
    local r = raw(s, { command = "listZones" })
    local d = json.decode(r.body)
    assert.equal(1, d.listzonesresponse.count)
    assert.equal("Zone1", d.listzonesresponse.zone[1].name)
    r = raw(s, { command = "listVirtualMachines" })
    assert.equal('{"listvirtualmachinesresponse": {}}', r.body)
    r = raw(s, { command = "registerTemplate", name = "t", url = "http://files.example/x.vhd.bz2",
      format = "VHD", hypervisor = "XenServer", zoneid = d.listzonesresponse.zone[1].id }, "POST")
    local t = json.decode(r.body).registertemplateresponse
    assert.equal(1, t.count)
    assert.equal("t", t.template[1].name)
    assert.is_false(t.template[1].isready)
    r = raw(s, { command = "getUploadParamsForVolume", name = "v", format = "VHD",
      zoneid = d.listzonesresponse.zone[1].id }, "POST")
    local up = json.decode(r.body).postuploadvolumeresponse.getuploadparams
    for _, k in ipairs { "id", "postURL", "metadata", "expires", "signature" } do assert.truthy(up[k], k) end
  end)

  it("is strict about names, methods, versions and response=json", function()
    local r = raw(s, { command = "listzones" })
    assert.equal(401, r.status)
    assert.truthy(json.decode(r.body).errorresponse)
    r = raw(s, { command = "createDomain", name = "g" })
    assert.equal(400, r.status)
    assert.matches("needs to be sent using POST", r.body)
    r = raw(s, { command = "listZones", response = false })
    assert.matches("^<%?xml", r.body)
    -- enforce POST also demands v3 with expires at most 15 minutes ahead
    r = raw(s, { command = "listZones", expires = os.date("!%Y-%m-%dT%H:%M:%S+0000", os.time() + 3600) })
    assert.equal(401, r.status)
    r = raw(s, { command = "listZones", signatureversion = false })
    assert.equal(401, r.status)
    -- parameter names are case-insensitive, the signature covers them as sent
    r = raw(s, { command = "listDomains", ListAll = "true" })
    assert.equal(200, r.status)
  end)

  it("accepts python3-cs, an independent client, on values without ~", function()
    local py = [[
import sys
from cs import CloudStack
c = CloudStack(endpoint=sys.argv[1], key="key", secret="secret", method="post")
print(c.listZones()["zone"][0]["name"])
print(c.createDomain(name="From cs é*")["domain"]["path"])
]]
    local code, out, err = RUN(("/usr/bin/python3 -c '%s' '%s'"):format(py, s.url))
    assert.equal(0, code, err)
    assert.equal("Zone1\nROOT/From cs é*\n", out)
  end)

  it("switches faults per test and reports them in the state", function()
    local f = assert(s:faults { http_5xx = { listZones = 1 }, job_polls = 0 })
    assert.equal(1, f.faults.http_5xx.listZones)
    assert.equal(503, raw(s, { command = "listZones" }).status)
    assert.equal(200, raw(s, { command = "listZones" }).status)
    assert.is_nil(s:faults { bogus = 1 })
    assert(s:faults { reset = true })
  end)

  it("walks an uploaded template through N% Downloaded to Download Complete", function()
    local dir = assert(sys.mkdtemp("/tmp/salvage-sim-spec-XXXXXX"))
    local makevhd = dofile(TOP .. "/tests/cloudstack-sim/makevhd.lua")
    makevhd.write(dir .. "/t.vhd", { virtual_size = 6 << 20, allocated = { 1 } })
    local s2 = assert(sim.start { apikey = "k", secretkey = "s", template_polls = 4, upload_timeout = -5,
      lifetime = 60 })
    local c = api.new { url = s2.url, apikey = "k", secretkey = "s" }
    local zone = assert(c:list("listZones"))[1]
    local function params(kind, name)
      local r = assert(c:call("getUploadParamsFor" .. kind, { name = name, zoneid = zone.id, format = "VHD",
        hypervisor = "XenServer" }))
      return r.getuploadparams
    end
    local function post(up, extra)
      local h = { ["X-signature"] = up.signature, ["X-metadata"] = up.metadata, ["X-expires"] = up.expires }
      for k, v in pairs(extra or {}) do h[k] = v end
      return assert(http.request { method = "POST", url = up.postURL, headers = h,
        form = { { name = "file", file = dir .. "/t.vhd", filename = "t.vhd" } } })
    end
    -- upload URLs of this simulator expire at once
    local up = params("Template", "expired")
    local r = post(up)
    assert.equal(400, r.status)
    assert.matches("expired", r.body)
    s2:stop()
    s2 = assert(sim.start { apikey = "k", secretkey = "s", template_polls = 4, lifetime = 60 })
    c = api.new { url = s2.url, apikey = "k", secretkey = "s" }
    zone = assert(c:list("listZones"))[1]
    up = params("Volume", "chunked")
    assert.equal(400, post(up, { ["Transfer-Encoding"] = "chunked" }).status)
    up = params("Template", "walk")
    assert.equal(200, post(up).status)
    local seen = {}
    for _ = 1, 6 do
      local t = assert(c:list("listTemplates", { templatefilter = "self", id = up.id }))[1]
      seen[#seen + 1] = t.status .. (t.isready and "+ready" or "")
    end
    assert.same({ "25% Downloaded", "50% Downloaded", "75% Downloaded", "Installing Template",
      "Download Complete+ready", "Download Complete+ready" }, seen)
    s2:stop()
    RUN("rm -rf " .. dir)
  end)

  it("can hand out postURLs on another host name; the client follows them exactly", function()
    local dir = assert(sys.mkdtemp("/tmp/salvage-sim-spec-XXXXXX"))
    local makevhd = dofile(TOP .. "/tests/cloudstack-sim/makevhd.lua")
    makevhd.write(dir .. "/t.vhd", { virtual_size = 4 << 20, allocated = { 0 } })
    local s2 = assert(sim.start { apikey = "k", secretkey = "s", upload_host = "localhost", lifetime = 60 })
    local c = api.new { url = s2.url, apikey = "k", secretkey = "s", poll_interval = 0.05 }
    local zone = assert(c:list("listZones"))[1]
    local up = assert(c:call("getUploadParamsForVolume", { name = "h", zoneid = zone.id, format = "VHD" }))
      .getuploadparams
    assert.matches("^http://localhost:%d+/upload/", up.postURL)
    -- the API's own address is not the upload host: refused, and the URL is spent
    local wrong = up.postURL:gsub("localhost", "127.0.0.1")
    local r = assert(http.request { method = "POST", url = wrong, headers = { ["X-signature"] = up.signature,
      ["X-metadata"] = up.metadata, ["X-expires"] = up.expires },
      form = { { name = "file", file = dir .. "/t.vhd", filename = "t.vhd" } } })
    assert.equal(400, r.status)
    local v = assert(c:upload_volume(dir .. "/t.vhd", { name = "h2", zoneid = zone.id }))
    assert.equal("Uploaded", v.state)
    s2:stop()
    RUN("rm -rf " .. dir)
  end)

  it("refuses hostile upload bodies cleanly and stays up", function()
    local c = api.new { url = s.url, apikey = "key", secretkey = "secret" }
    local zone = assert(c:list("listZones"))[1]
    local bodies = {
      { "multipart/form-data; boundary=XYZ", "no boundary at all" },
      { "multipart/form-data; boundary=XYZ",
        "--XYZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.vhd\"\r\n\r\ntruncated" },
      { "multipart/form-data; boundary=XYZ", "--XYZ\r\n" .. string.rep("h", 70000) },
      { "text/plain", "conectix" },
      { "multipart/form-data; boundary=XYZ", "--XYZ\r\nContent-Disposition: form-data; name=\"f\"; "
        .. "filename=\"a.vhd\"\r\n\r\n" .. string.rep("\0", 1024) .. "\r\n--XYZ--\r\n" },
    }
    for i, b in ipairs(bodies) do
      local up = assert(c:call("getUploadParamsForVolume", { name = "hostile" .. i, zoneid = zone.id,
        format = "VHD" })).getuploadparams
      local r = assert(http.request { method = "POST", url = up.postURL, body = b[2],
        headers = { ["Content-Type"] = b[1], ["X-signature"] = up.signature, ["X-metadata"] = up.metadata,
          ["X-expires"] = up.expires } })
      assert.equal(400, r.status, b[2]:sub(1, 40))
      local st = s:state()
      for _, v in ipairs(st.volumes) do
        if v.id == up.id then assert.equal("UploadError", v.state) end
      end
    end
    assert.equal(200, raw(s, { command = "listZones" }).status)
  end)

  it("exits by itself after its lifetime and writes the state file", function()
    local dir = assert(sys.mkdtemp("/tmp/salvage-sim-spec-XXXXXX"))
    local s2 = assert(sim.start { lifetime = 0.5, state_file = dir .. "/state.json" })
    local pid = s2.pid
    local deadline = sys.clock() + 10
    local exited
    while sys.clock() < deadline do
      exited = sys.wait(pid, true)
      if exited then break end
      sys.sleep(0.05)
    end
    assert.equal("exited", exited)
    s2.pid = nil
    local f = assert(io.open(dir .. "/state.json"))
    local st = json.decode(f:read("a"))
    f:close()
    assert.equal("Zone1", st.zones[1].name)
    RUN("rm -rf " .. dir)
  end)

  it("exits cleanly on SIGTERM, writing the state file", function()
    local dir = assert(sys.mkdtemp("/tmp/salvage-sim-spec-XXXXXX"))
    local s2 = assert(sim.start { lifetime = 60, state_file = dir .. "/state.json" })
    sys.kill(s2.pid, 15)
    local exited
    local deadline = sys.clock() + 10
    while sys.clock() < deadline do
      exited = sys.wait(s2.pid, true)
      if exited then break end
      sys.sleep(0.05)
    end
    s2.pid = nil
    assert.equal("exited", exited)
    assert.truthy(sys.stat(dir .. "/state.json"))
    RUN("rm -rf " .. dir)
  end)

  it("stop() is idempotent and __close works", function()
    do
      local s3 <close> = assert(sim.start { lifetime = 30 })
      assert.matches("^http://127%.0%.0%.1:%d+$", s3.base)
    end
    local s4 = assert(sim.start { lifetime = 30 })
    assert.is_true(s4:stop())
    assert.is_true(s4:stop())
    assert.matches("stopped", tostring(s4))
  end)
end)
