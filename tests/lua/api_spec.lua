-- salvage.cloudstack.api against the strict simulator over real loopback HTTP.
local api = require "salvage.cloudstack.api"
local crypto = require "salvage.crypto"
local http = require "salvage.http"
local json = require "salvage.json"
local sim = require "salvage.cloudstack.simulator"
local sys = require "salvage.sys"
local log = require "salvage.log"
local makevhd = dofile(TOP .. "/tests/cloudstack-sim/makevhd.lua")

local APIKEY = "AK-~ key*é"
local SECRET = "sk-very-secret-0123456789"

-- The server's algorithm, written independently in Python (the simulator's java_urlencode).
local function python_signature(params, secret)
  local q = {}
  for k, v in pairs(params) do q[#q + 1] = { k, v } end
  local py = [[
import sys, json, hmac, hashlib, base64
sys.path.insert(0, sys.argv[1])
from simulator import java_urlencode
d = json.load(sys.stdin)
s = "&".join("%s=%s" % (k, java_urlencode(v)) for k, v in sorted(d["params"])).lower()
print(base64.b64encode(hmac.new(d["secret"].encode(), s.encode(), hashlib.sha1).digest()).decode())
]]
  local tmp = os.tmpname()
  local f = io.open(tmp, "w")
  f:write(json.encode { params = q, secret = secret })
  f:close()
  local code, out = RUN(("/usr/bin/python3 -c '%s' %s/tests/cloudstack-sim < %s"):format(py, TOP, tmp))
  os.remove(tmp)
  assert(code == 0, "python failed")
  return (out:gsub("%s+$", ""))
end

local function state_of(s, kind, id)
  for _, x in ipairs(s:state()[kind]) do
    if x.id == id then return x end
  end
end

describe("salvage.cloudstack.api", function()
  local s, c, zone
  local dir = assert(sys.mkdtemp("/tmp/salvage-api-spec-XXXXXX"))
  local small = dir .. "/small.vhd"
  local saved_level
  setup(function()
    saved_level = log.get().level
    log.configure { level = "error" }  -- retries warn on stderr
    s = assert(sim.start { apikey = APIKEY, secretkey = SECRET, enforce_post = true, lifetime = 300,
      job_polls = 2, template_polls = 2 })
    c = api.new { url = s.url, apikey = s.apikey, secretkey = s.secretkey, poll_interval = 0.02,
      max_poll_interval = 0.05, retry_delay = 0.01, job_timeout = 20 }
    zone = assert(c:list("listZones"))[1]
    makevhd.write(small, { virtual_size = 24 << 20, allocated = { 0, 2, 5 } })
  end)
  teardown(function()
    log.configure { level = saved_level }
    s:stop()
    RUN("rm -rf " .. dir)
  end)
  before_each(function() assert(s:faults { reset = true }) end)

  describe("signing", function()
    it("matches the server's algorithm on awkward values", function()
      local cases = {
        { command = "listZones", apikey = "k", response = "json" },
        { name = "a b~c*d", apikey = "x~y", description = "é ü 中文", command = "createDomain" },
        { q = "+/=&?%#", z = "", a = "A*-._~", signatureversion = "3", expires = "2030-01-01T00:00:00+0000" },
      }
      for _, p in ipairs(cases) do
        assert.equal(python_signature(p, SECRET), api.sign(p, SECRET))
      end
      -- signature is never part of what is signed
      local p = { command = "listZones", apikey = "k" }
      local sig = api.sign(p, "s")
      p.signature = "whatever"
      assert.equal(sig, api.sign(p, "s"))
    end)

    it("flattens parameters: lower-case names, booleans, lists, maps", function()
      local f = api.flatten { Name = "x", listAll = true, ids = { "a", "b" }, details = { { cpuNumber = 2 } },
        size = 10.0, ["details[1].memory"] = 512 }
      assert.same({ name = "x", listall = "true", ids = "a,b", ["details[0].cpuNumber"] = "2", size = "10",
        ["details[1].memory"] = "512" }, f)
    end)

    it("is accepted by the server with ~, spaces, UTF-8 and * in values and keys", function()
      local r, err = c:call("createDomain", { name = "Dom ~*é 中 x" })
      assert.is_nil(err)
      assert.equal("ROOT/Dom ~*é 中 x", r.domain.path)
      local rows = assert(c:list("listDomains", { listall = true, name = "Dom ~*é 中 x" }))
      assert.equal(1, #rows)
    end)

    it("agrees with python3-cs (independent client) on values without ~", function()
      local p = { command = "listZones", apikey = "key-1", response = "json", name = "a b*é/+=",
        signatureversion = "3", expires = "2030-01-01T00:00:00+0000" }
      local py = [[
import json, sys
from cs.client import CloudStack
d = json.loads(sys.argv[1])
c = CloudStack(endpoint="http://127.0.0.1:1/client/api", key="key-1", secret="s3cr3t")
c._sign(d)
print(d["signature"])
]]
      local code, out = RUN(("/usr/bin/python3 -c '%s' '%s'"):format(py, json.encode(p)))
      assert.equal(0, code)
      assert.equal(api.sign(p, "s3cr3t"), (out:gsub("%s+$", "")))
    end)

    it("is refused with 401 and the server's envelope for a wrong secret", function()
      local bad = api.new { url = s.url, apikey = s.apikey, secretkey = "wrong", retries = 0 }
      local r, err = bad:call("listZones")
      assert.is_nil(r)
      assert.equal(401, err.errorcode)
      assert.equal(401, err.http_status)
      assert.is_nil(err.cserrorcode)
      assert.matches("unable to verify user credentials", err.errortext)
      assert.not_matches(SECRET, tostring(err))
    end)

    it("refuses an expired v3 request and a state-changing GET (enforce POST)", function()
      local p = { command = "listZones", response = "json", apikey = APIKEY, signatureversion = "3",
        expires = "2001-01-01T00:00:00+0000" }
      p.signature = api.sign(p, SECRET)
      local q = {}
      for k, v in pairs(p) do q[#q + 1] = k .. "=" .. crypto.urlencode(v) end
      local res = assert(http.request { url = s.url .. "?" .. table.concat(q, "&") })
      assert.equal(401, res.status)
      assert.truthy(json.decode(res.body).listzonesresponse)
      local r, err = c:call("createDomain", { name = "by-get" }, { method = "GET" })
      assert.is_nil(r)
      assert.equal(400, err.http_status)
      assert.matches("State changing command createDomain needs to be sent using POST request", err.errortext)
    end)
  end)

  describe("errors", function()
    it("missing parameter: 431 / 9999 with the server's text", function()
      local r, err = c:call("createAccount", { username = "u" })
      assert.is_nil(r)
      assert.equal(431, err.errorcode)
      assert.equal(9999, err.cserrorcode)
      assert.equal(431, err.http_status)
      assert.matches("Unable to execute API command createaccount due to missing parameter ", err.errortext)
    end)

    it("invalid value: 431 / 4350; unknown command: 401 errorresponse", function()
      local _, err = c:call("createDomain", { name = "x", parentdomainid = "no-such-id" })
      assert.equal(4350, err.cserrorcode)
      assert.matches("Invalid parameter parentdomainid value=no%-such%-id", err.errortext)
      local _, e2 = c:call("listzones")
      assert.equal(401, e2.errorcode)
    end)

    it("unique names: domain per parent, account per domain", function()
      local d1 = assert(c:call("createDomain", { name = "Twice" })).domain
      local _, err = c:call("createDomain", { name = "Twice" })
      assert.equal(431, err.errorcode)
      assert.matches("already exists", err.errortext)
      -- same name under another parent is fine
      assert(c:call("createDomain", { name = "Twice", parentdomainid = d1.id }))
      local acct = { username = "pp", password = "pw", email = "p@x", firstname = "P", lastname = "P",
        accounttype = 0, domainid = d1.id, account = "peterparker" }
      assert(c:call("createAccount", acct))
      local _, e2 = c:call("createAccount", acct)
      assert.equal(431, e2.errorcode)
      assert.matches("already exists", e2.errortext)
    end)

    it("malformed map parameter: 430; permission: 531 / 4365", function()
      local so = assert(c:list("listServiceOfferings", { name = "Custom Compute" }))[1]
      local _, err = c:call("deployVirtualMachine", { serviceofferingid = so.id, zoneid = zone.id,
        templateid = "x", details = "oops" })
      assert.equal(431, err.errorcode) -- templateid checked first
      local tpl = assert(c:upload_template(small, { name = "private-one", zoneid = zone.id }))
      local _, e430 = c:call("deployVirtualMachine", { serviceofferingid = so.id, zoneid = zone.id,
        templateid = tpl.id, details = "oops" })
      assert.equal(430, e430.errorcode)
      local d = assert(c:call("createDomain", { name = "Other" })).domain
      assert(c:call("createAccount", { username = "o", password = "pw", email = "o@x", firstname = "O",
        lastname = "O", accounttype = 0, domainid = d.id, account = "other" }))
      local _, e531 = c:call("deployVirtualMachine", { serviceofferingid = so.id, zoneid = zone.id,
        templateid = tpl.id, account = "other", domainid = d.id, details = { { cpuNumber = 1, memory = 512 } } })
      assert.equal(531, e531.errorcode)
      assert.equal(4365, e531.cserrorcode)
    end)

    it("injected server errors (530) come back as they are, state changes never retried", function()
      s:faults { fail_commands = { createDomain = { count = 1, errorcode = 530, errortext = "db down" } } }
      local _, err = c:call("createDomain", { name = "n530" })
      assert.equal(530, err.errorcode)
      assert.equal("db down", err.errortext)
      s:faults { http_5xx = { createDomain = 1 } }
      local before = s:state().calls.createDomain
      local _, e5 = c:call("createDomain", { name = "n503" })
      assert.equal(503, e5.http_status)
      assert.equal(before + 1, s:state().calls.createDomain)
    end)
  end)

  describe("retries", function()
    it("retries idempotent calls on 5xx without envelope and on dropped connections", function()
      s:faults { http_5xx = { listZones = 2 }, drop = { listOsTypes = 1 } }
      local before = s:state().calls.listZones or 0
      local z = assert(c:list("listZones"))
      assert.equal("Zone1", z[1].name)
      assert.equal(before + 3, s:state().calls.listZones)
      assert.is_true(#assert(c:list("listOsTypes")) >= 4)
    end)

    it("retries a 429 rate limit on lookups; other server verdicts come back at once", function()
      s:faults { fail_commands = { listZones = { count = 1, errorcode = 429, cserrorcode = 9999,
        errortext = "There are too many api calls" } } }
      assert.equal("Zone1", assert(c:list("listZones"))[1].name)
      for _, code in ipairs { 432, 534, 535 } do
        s:faults { fail_commands = { listNetworks = { count = 1, errorcode = code, errortext = "e" .. code } } }
        local before = s:state().calls.listNetworks or 0
        local _, err = c:call("listNetworks")
        assert.equal(code, err.errorcode)
        assert.equal(code, err.http_status)
        assert.equal("e" .. code, err.errortext)
        assert.equal(before + 1, s:state().calls.listNetworks)
      end
    end)

    it("gives up after the retry budget", function()
      s:faults { http_5xx = { listZones = 10 } }
      local r, err = c:call("listZones", nil, { retries = 2 })
      assert.is_nil(r)
      assert.equal(503, err.http_status)
    end)

    it("times out a slow answer", function()
      s:faults { slow = { listNetworks = { count = 1, seconds = 1.5 } } }
      local r, err = c:call("listNetworks", nil, { timeout = 0.3, retries = 0 })
      assert.is_nil(r)
      assert.equal("ETIMEDOUT", err.code)
    end)
  end)

  describe("lists", function()
    it("follows pages over 1,234 rows", function()
      assert(s:populate { accounts = 1234, prefix = "pg" })
      local rows = assert(c:list("listAccounts", { listall = true }))
      local n, seen = 0, {}
      for _, a in ipairs(rows) do
        if a.name:match("^pg%d%d%d%d$") then
          n = n + 1
          assert.is_nil(seen[a.id])
          seen[a.id] = true
        end
      end
      assert.equal(1234, n)
      -- one page without paging is 500 rows with count = total
      local page1 = assert(c:call("listAccounts", { listall = true }))
      assert.equal(500, #page1.account)
      assert.equal(#rows, page1.count)
      local _, err = c:call("listAccounts", { pagesize = 501 })
      assert.equal(431, err.errorcode)
    end)

    it("finds exact rows where the server filters with LIKE", function()
      local rows = assert(c:list("listOsTypes", { description = "Other Linux" }))
      assert.is_true(#rows >= 2)
      local o = assert(c:find_one("listOsTypes", { description = "Other Linux (64-bit)" },
        { description = "Other Linux (64-bit)" }))
      assert.equal("Other Linux (64-bit)", o.description)
      local _, err = c:find_one("listOsTypes", { description = "Other Linux" }, { description = "Other Linux" })
      assert.equal("ENOENT", err.code)
      local _, e2 = c:find_one("listOsTypes", { description = "Other Linux" }, {})
      assert.equal("EAMBIGUOUS", e2.code)
    end)

    it("maps an empty list {} to an empty array", function()
      local rows = assert(c:list("listVirtualMachines", { name = "nothing-here" }))
      assert.equal(0, #rows)
      assert.equal("[]", json.encode(rows))
      assert.same({}, assert(c:call("listVirtualMachines", { name = "nothing-here" })))
    end)
  end)

  describe("uploads and async jobs", function()
    local tpl, vol
    it("uploads a template with progress and waits until it is ready", function()
      local seen, last = 0, 0
      local os_ = assert(c:list("listOsTypes", { description = "Debian GNU/Linux 7(64-bit)" }))[1]
      tpl = assert(c:upload_template(small, { name = "debian7", zoneid = zone.id, ostypeid = os_.id },
        { progress = function(done, total)
          seen = seen + 1
          assert.is_true(done >= last)
          last = done
          assert.is_true(total == 0 or done <= total)
        end }))
      assert.is_true(tpl.isready)
      assert.equal("Download Complete", tpl.status)
      assert.is_true(seen > 0)
      assert.is_true(last >= sys.stat(small).size)
      local st = state_of(s, "templates", tpl.id)
      assert.equal(crypto.sha256_file(small), st.upload.sha256)
      assert.equal(sys.stat(small).size, st.upload.bytes)
      assert.equal(24 << 20, st.upload.virtualsize)
      assert.equal(os_.id, st.ostypeid)
    end)

    it("uploads dynamic VHDs written by qemu-img; the virtual size comes from the footer", function()
      local rawf, vhdf = dir .. "/q.raw", dir .. "/q.vhd"
      assert.equal(0, (RUN(("head -c 3000000 /dev/urandom > %s && truncate -s 20M %s"):format(rawf, rawf))))
      for _, force in ipairs { "off", "on" } do
        assert.equal(0, (RUN(("qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=%s %s %s")
          :format(force, rawf, vhdf))))
        local _, info = RUN("qemu-img info --output=json " .. vhdf)
        local vsize = json.decode(info)["virtual-size"]
        local v = assert(c:upload_volume(vhdf, { name = "qemu-" .. force, zoneid = zone.id }))
        local st = state_of(s, "volumes", v.id).upload
        assert.equal(vsize, st.virtualsize)
        assert.equal(crypto.sha256_file(vhdf), st.sha256)
        if force == "on" then assert.equal(20 << 20, vsize) else assert.is_true(vsize > 20 << 20) end
      end
    end)

    it("uploads a data volume and waits for Uploaded", function()
      vol = assert(c:upload_volume(small, { name = "data1", zoneid = zone.id }))
      assert.equal("Uploaded", vol.state)
      assert.equal(crypto.sha256_file(small), state_of(s, "volumes", vol.id).upload.sha256)
    end)

    it("deploys a VM (async, pending polls) and attaches the volume at device 1", function()
      local so = assert(c:list("listServiceOfferings", { name = "Small Instance" }))[1]
      local before = s:state().calls.queryAsyncJobResult or 0
      local r = assert(c:async("deployVirtualMachine", { serviceofferingid = so.id, zoneid = zone.id,
        templateid = tpl.id, name = "rootvm1", displayname = "Root VM 1" }))
      assert.equal("Running", r.virtualmachine.state)
      assert.is_true(s:state().calls.queryAsyncJobResult - before >= 3)
      local a = assert(c:async("attachVolume", { id = vol.id, virtualmachineid = r.virtualmachine.id }))
      assert.equal(1, a.volume.deviceid)
      local v = state_of(s, "volumes", vol.id)
      assert.equal("Ready", v.state)
      assert.equal(r.virtualmachine.id, v.virtualmachineid)
      local vm = state_of(s, "vms", r.virtualmachine.id)
      assert.equal("Root VM 1", vm.displayname)
      assert.equal(so.id, vm.serviceofferingid)
    end)

    it("returns the job's error on failure and times out a job that never ends", function()
      local so = assert(c:list("listServiceOfferings", { name = "Small Instance" }))[1]
      s:faults { job_fail = { deployVirtualMachine = { count = 1, errorcode = 533, errortext = "no capacity" } } }
      local r, err = c:async("deployVirtualMachine", { serviceofferingid = so.id, zoneid = zone.id,
        templateid = tpl.id })
      assert.is_nil(r)
      assert.equal(533, err.errorcode)
      assert.equal("no capacity", err.errortext)
      assert.equal("EJOB", err.code)
      assert.truthy(err.jobid)
      s:faults { job_pending = { startVirtualMachine = true } }
      local vm = s:state().vms[1]
      local r2, e2 = c:async("startVirtualMachine", { id = vm.id }, { job_timeout = 0.3 })
      assert.is_nil(r2)
      assert.equal("ETIMEDOUT", e2.code)
    end)

    it("a template that is not ready makes the deploy job fail", function()
      local so = assert(c:list("listServiceOfferings", { name = "Small Instance" }))[1]
      local up = assert(c:call("getUploadParamsForTemplate", { name = "never", zoneid = zone.id,
        format = "VHD", hypervisor = "XenServer" })).getuploadparams
      local r, err = c:async("deployVirtualMachine", { serviceofferingid = so.id, zoneid = zone.id,
        templateid = up.id })
      assert.is_nil(r)
      assert.matches("has not been completely downloaded", err.errortext)
    end)

    it("sends checksums the server verifies", function()
      local v = assert(c:upload_volume(small, { name = "sum-ok", zoneid = zone.id }, { checksum = true }))
      assert.equal("{SHA-256}" .. crypto.sha256_file(small), state_of(s, "volumes", v.id).checksum)
      local t = assert(c:upload_template(small, { name = "md5-ok", zoneid = zone.id }, { checksum = "md5" }))
      assert.is_true(t.isready)
      local r, err = c:upload_volume(small, { name = "sum-bad", zoneid = zone.id,
        checksum = "{MD5}" .. crypto.md5("something else") })
      assert.is_nil(r)
      assert.matches("checksum mismatch", err.errortext)
      assert.equal("UploadError", state_of(s, "volumes", err.id).state)
    end)

    it("refuses a fixed VHD with the server's status text (UploadError)", function()
      local fixed = dir .. "/fixed.vhd"
      makevhd.write(fixed, { virtual_size = 1 << 20, type = "fixed" })
      local r, err = c:upload_volume(fixed, { name = "fixed", zoneid = zone.id })
      assert.is_nil(r)
      assert.equal(400, err.http_status)
      assert.matches("data", err.errortext)
      assert.equal("UploadError", state_of(s, "volumes", err.id).state)
    end)

    it("checks Host, headers, file name, file part; upload URLs are single-use", function()
      local function params(name)
        return assert(c:call("getUploadParamsForVolume", { name = name, zoneid = zone.id, format = "VHD" }))
          .getuploadparams
      end
      local function post(up, o)
        o = o or {}
        local h = { ["X-signature"] = up.signature, ["X-metadata"] = up.metadata, ["X-expires"] = up.expires }
        for k, v in pairs(o.headers or {}) do h[k] = v end
        return assert(http.request { method = "POST", url = up.postURL, headers = h,
          form = o.form or { { name = "file", file = small, filename = o.filename or "d.vhd" } } })
      end
      local up = params("host")
      assert.equal(400, post(up, { headers = { Host = "example.com" } }).status)
      assert.equal("UploadError", state_of(s, "volumes", up.id).state)
      assert.equal(400, post(up).status) -- spent
      up = params("sig")
      assert.equal(400, post(up, { headers = { ["X-signature"] = "AAAA" } }).status)
      up = params("name")
      local res = post(up, { filename = "d.raw" })
      assert.equal(400, res.status)
      assert.matches("%.vhd", state_of(s, "volumes", up.id).status)
      up = params("nofile")
      assert.equal(422, post(up, { form = { { name = "x", value = "y" } } }).status)
      up = params("ok")
      assert.equal(200, post(up).status)
      assert.equal(400, post(up).status)
      local d = dir .. "/diff.vhd"
      makevhd.write(d, { virtual_size = 4 << 20, type = "differencing", allocated = { 0 } })
      local t = assert(c:upload_template(d, { name = "diff", zoneid = zone.id }))
      local so = assert(c:list("listServiceOfferings", { name = "Small Instance" }))[1]
      local _, e = c:async("deployVirtualMachine", { serviceofferingid = so.id, zoneid = zone.id, templateid = t.id })
      assert.matches("differencing", e.errortext)
    end)

    it("deletes a template (async, gone from lists at once) and a volume", function()
      local t = assert(c:upload_template(small, { name = "to-delete", zoneid = zone.id }))
      local so = assert(c:list("listServiceOfferings", { name = "Small Instance" }))[1]
      assert(c:async("deployVirtualMachine", { serviceofferingid = so.id, zoneid = zone.id, templateid = t.id }))
      local _, err = c:async("deleteTemplate", { id = t.id })
      assert.equal(431, err.errorcode)
      assert.matches("used by VMs", err.errortext)
      local up = assert(c:call("getUploadParamsForTemplate", { name = "dead", zoneid = zone.id, format = "VHD",
        hypervisor = "XenServer" })).getuploadparams
      local sub = assert(c:call("deleteTemplate", { id = up.id, zoneid = zone.id }))
      assert.truthy(sub.jobid)
      assert.equal(0, #assert(c:list("listTemplates", { templatefilter = "all", id = up.id })))
      local v = assert(c:upload_volume(small, { name = "vol-delete", zoneid = zone.id }))
      assert.equal("true", assert(c:call("deleteVolume", { id = v.id })).success)
      local st = s:state()
      assert.equal(up.id, st.removed_templates[#st.removed_templates].id)
      assert.equal(v.id, st.removed_volumes[#st.removed_volumes].id)
    end)

    it("registers a template by URL (served on loopback) and refuses loopback by default", function()
      local _, err = c:call("registerTemplate", { name = "byurl", url = "http://127.0.0.1:9/x.vhd",
        format = "VHD", hypervisor = "XenServer", zoneid = zone.id })
      assert.equal(431, err.errorcode)
      local _, e2 = c:call("registerTemplate", { name = "byurl", url = "http://files.example/x.qcow2",
        format = "VHD", hypervisor = "XenServer", zoneid = zone.id })
      assert.equal(431, e2.errorcode)
      local s2 = assert(sim.start { apikey = "k", secretkey = "s", allow_loopback_urls = true, lifetime = 60 })
      local c2 = api.new { url = s2.url, apikey = "k", secretkey = "s", poll_interval = 0.05, job_timeout = 20 }
      -- the simulator itself serves nothing: use a throwaway python file server on the spec's dir
      local port_file = dir .. "/port"
      local pid = sys.spawn { "/usr/bin/python3", "-c", ([[
import http.server, functools, threading, os
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=%q)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
open(%q + ".tmp", "w").write(str(s.server_address[1])); os.rename(%q + ".tmp", %q)
threading.Timer(30, s.shutdown).start()
s.serve_forever()
]]):format(dir, port_file, port_file, port_file), stdout = "/dev/null", stderr = "/dev/null" }
      local port
      for _ = 1, 500 do
        local f = io.open(port_file)
        if f then port = f:read("a"); f:close(); break end
        sys.sleep(0.01)
      end
      local z2 = assert(c2:list("listZones"))[1]
      local t = assert(c2:register_template { name = "byurl", url = ("http://127.0.0.1:%s/small.vhd"):format(port),
        zoneid = z2.id })
      assert.is_true(t.isready)
      local st = s2:state()
      assert.equal(crypto.sha256_file(small), st.templates[1].upload.sha256)
      local v = assert(c2:upload_volume_url { name = "vurl", url = ("http://127.0.0.1:%s/small.vhd"):format(port),
        zoneid = z2.id })
      assert.equal("Uploaded", v.state)
      sys.kill(pid, 15)
      sys.wait(pid)
      s2:stop()
    end)
  end)

  describe("TLS", function()
    it("verifies certificates by default: refused unless cafile is given", function()
      local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
      local code = RUN(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
        .. "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null"):format(key, cert))
      assert.equal(0, code)
      local s3 = assert(sim.start { apikey = "k", secretkey = "s", tls_cert = cert, tls_key = key, lifetime = 60 })
      assert.matches("^https://", s3.url)
      local plain = api.new { url = s3.url, apikey = "k", secretkey = "s", retries = 0 }
      local r, err = plain:call("listZones")
      assert.is_nil(r)
      assert.equal("ETLS", err.code)
      local trusted = api.new { url = s3.url, apikey = "k", secretkey = "s", cafile = cert }
      assert.equal("Zone1", assert(trusted:list("listZones"))[1].name)
      local insecure = api.new { url = s3.url, apikey = "k", secretkey = "s", verify_tls = false }
      assert.equal("Zone1", assert(insecure:list("listZones"))[1].name)
      s3:stop()
    end)
  end)

  describe("secrets", function()
    it("never appear in errors or in the client's fields", function()
      local bad = api.new { url = s.url .. "?apikey=" .. APIKEY, apikey = APIKEY, secretkey = SECRET, retries = 0 }
      local _, err = bad:call("createDomain", { name = "x", parentdomainid = "nope" })
      local text = tostring(err) .. json.encode(err)
      assert.not_matches(SECRET, text, 1, true)
      for k, v in pairs(c) do
        assert.not_equal(SECRET, v, k)
        assert.not_equal(APIKEY, v, k)
      end
      local down = api.new { url = "http://127.0.0.1:1/client/api", apikey = APIKEY, secretkey = SECRET, retries = 0 }
      local _, e2 = down:call("listZones")
      assert.equal("ECONNREFUSED", e2.code)
      assert.is_nil(tostring(e2):find(SECRET, 1, true))
      assert.is_nil(tostring(e2):find("signature=", 1, true))
    end)
  end)
end)
