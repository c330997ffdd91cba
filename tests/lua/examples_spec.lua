-- The shipped example scripts (scripts/examples/): each says what it does in its
-- header, answers --help, and does its job. Parts needing the VHD engine, the
-- database or the API client fail, naming the module, when the build lacks them.
-- luacheck: max line length 200
package.path = TOP .. "/tests/lua/?.lua;" .. package.path
local sys = require "salvage.sys"
local json = require "salvage.json"
local examples = require "salvage.examples"
local fake = require "recover_fake"

local EX = TOP .. "/scripts/examples"
local SCRIPTS = { "inventory.lua", "scan-storage.lua", "flatten-vm.lua", "recover-all.lua",
  "recover-one-account.lua", "rename-customer.lua", "dry-run-report.lua" }

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function have(...)
  for _, m in ipairs({ ... }) do
    if not pcall(require, m) then return false, m end
  end
  return true
end

local function script(name, args, env)
  local cmd = (env or "") .. " " .. q(SALVAGE) .. " " .. q(EX .. "/" .. name)
  for _, a in ipairs(args) do cmd = cmd .. " " .. q(a) end
  return RUN(cmd)
end

describe("example scripts", function()
  local dir
  setup(function()
    dir = assert(sys.mkdtemp("/tmp/salvage-examples-"))
    sys.mkdir(dir .. "/st")
    fake.storage(dir .. "/st")
    local f = assert(io.open(dir .. "/inv.json", "w"))
    f:write(json.pretty(fake.inventory()))
    f:close()
  end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  it("are all there, each with a header comment saying what it does, each answering --help", function()
    for _, name in ipairs(SCRIPTS) do
      local path = EX .. "/" .. name
      assert.truthy(sys.stat(path), name .. " missing")
      local what = examples.describe(path)
      assert.is_true(#what > 20, name .. " has no header comment")
      local code, out = script(name, { "--help" })
      assert.equal(0, code, name .. " --help")
      assert.truthy(out:find("usage: salvage " .. name, 1, true), name .. " --help shows its usage")
    end
  end)

  it("inventory.lua lists VMs and disks with owners and specs", function()
    local code, out, err = script("inventory.lua", { "--inventory", dir .. "/inv.json" })
    assert.equal(0, code, err)
    assert.truthy(out:find("ppvm2%s+peterparker%s+/SPDM Inc/%s+1%s+500%s+512%s+ppdatavol%s+DATADISK"))
    assert.truthy(out:find("3 VMs, 4 volumes", 1, true))
    local code2, js = script("inventory.lua", { "--inventory", dir .. "/inv.json", "--json" })
    assert.equal(0, code2)
    assert.equal(3, #assert(json.decode(js)))
  end)

  it("rename-customer.lua moves SPDM Inc to Spider Industries and suffixes the accounts", function()
    local code, out, err = script("rename-customer.lua", { "--inventory", dir .. "/inv.json", "--storage", dir .. "/st",
      "--workdir", dir .. "/w", "--plan-only" })
    assert.equal(0, code, err)
    assert.truthy(out:find("ppvm2%s+ROOT/Spider Industries/peterparker%-spider"))
    assert.truthy(out:find("ppvm3%s+ROOT/Spider Industries/peterparker%-spider"))
    assert.truthy(out:find("rootvm1%s+ROOT/admin%s"))
    local code2, out2 = script("rename-customer.lua", { "--inventory", dir .. "/inv.json", "--storage", dir .. "/st",
      "--workdir", dir .. "/w", "--plan-only", "--suffix", "-si" })
    assert.equal(0, code2)
    assert.truthy(out2:find("peterparker-si", 1, true))
  end)

  describe("with the VHD engine, the database and the simulator", function()
    local ok, lacking = have("salvage.vhd", "salvage.db", "salvage.cloudstack.inventory", "salvage.policy",
      "salvage.cloudstack.api", "salvage.cloudstack.simulator", "salvage.crypto")
    local SCHEMA, SEED = CLOUDSTACK("schema-4.5.2.sql"), CLOUDSTACK("seed-4.5.2.sql")
    if not ok then
      it("has every module the recovery scripts need", function()
        error("this build lacks " .. lacking)
      end)
      return
    end
    local simulator = require "salvage.cloudstack.simulator"
    local primary, s, env

    setup(function()
      primary = dir .. "/primary"
      sys.mkdir(primary)
      assert(require("salvage.demo.estate").from_dump(primary, { SCHEMA, SEED }))
      local cf = assert(io.open(dir .. "/config.lua", "w"))
      cf:write("return {}\n")
      cf:close()
    end)
    before_each(function()
      s = assert(simulator.start { lifetime = 120, job_polls = 1, template_polls = 1 })
      env = ("SALVAGE_CONFIG=%s SALVAGE_API_URL=%s SALVAGE_API_KEY=%s SALVAGE_SECRET_KEY=%s"):format(
        q(dir .. "/config.lua"), q(s.url), q(s.apikey), q(s.secretkey))
    end)
    after_each(function() s:stop() end)

    local function source() return { "--dump", SCHEMA, "--dump", SEED, "--storage", primary } end
    local function with(list, more)
      local out = {}
      for _, x in ipairs(list) do out[#out + 1] = x end
      for _, x in ipairs(more) do out[#out + 1] = x end
      return out
    end

    it("scan-storage.lua shows each root disk under its base copy", function()
      local code, out, err = script("scan-storage.lua", { primary })
      assert.equal(0, code, err .. out)
      assert.truthy(out:find("vhd=9b0c8d7e%-6f5a%-4b3c%-8d2e%-1f0a9b8c7203%.vhd[^\n]*hidden=1 parent=none\n%s+vhd=7046409c"))
      assert.truthy(out:find("7 VHD files, 4 chains", 1, true))
    end)

    it("flatten-vm.lua flattens one VM's disks to their exact virtual sizes", function()
      local quoted = {}
      for _, a in ipairs(source()) do quoted[#quoted + 1] = q(a) end
      local code, _, err = RUN(("%s plan %s -o %s"):format(q(SALVAGE), table.concat(quoted, " "), q(dir .. "/plan.json")))
      assert.equal(0, code, err)
      local out
      code, out, err = script("flatten-vm.lua", { dir .. "/plan.json", "--vm", "ppvm2", "-o", dir .. "/flat" })
      assert.equal(0, code, err .. out)
      assert.truthy(out:find("ppvm2 ROOT-25: ROOT chain of 2 -> " .. dir .. "/flat/ppvm2-ROOT-25.vhd, virtual size 21474836480 (= volumes.size), check ok", 1, true))
      assert.truthy(out:find("ppvm2 ppdatavol: DATADISK chain of 1 -> " .. dir .. "/flat/ppvm2-ppdatavol.vhd, virtual size 5368709120 (= volumes.size), check ok", 1, true))
    end)

    it("recover-all.lua recovers every VM", function()
      local code, out, err = script("recover-all.lua", with(source(), { "--workdir", dir .. "/w-all", "--poll-interval", "0.02" }), env)
      assert.equal(0, code, err .. out)
      assert.truthy(out:find("3 recovered, 0 failed", 1, true))
      assert.equal(3, #assert(s:state()).vms)
    end)

    it("recover-one-account.lua recovers only that account's VMs", function()
      local code, out, err = script("recover-one-account.lua", with(source(), { "--account", "peterparker",
        "--workdir", dir .. "/w-one", "--poll-interval", "0.02" }), env)
      assert.equal(0, code, err .. out)
      local names = {}
      for _, v in ipairs(assert(s:state()).vms) do names[#names + 1] = v.name .. "@" .. v.account end
      table.sort(names)
      assert.same({ "ppvm2@peterparker", "ppvm3@peterparker" }, names)
    end)

    it("rename-customer.lua recovers SPDM Inc's VMs into Spider Industries", function()
      local code, out, err = script("rename-customer.lua", with(source(), { "--workdir", dir .. "/w-ren", "--poll-interval", "0.02" }), env)
      assert.equal(0, code, err .. out)
      local st = assert(s:state())
      local owners = {}
      for _, v in ipairs(st.vms) do owners[v.name] = v.domainpath .. "/" .. v.account end
      assert.same({ rootvm1 = "ROOT/admin", ppvm2 = "ROOT/Spider Industries/peterparker-spider",
        ppvm3 = "ROOT/Spider Industries/peterparker-spider" }, owners)
    end)

    it("dry-run-report.lua tells what would be created and creates nothing", function()
      local code, out, err = script("dry-run-report.lua", with(source(), { "--workdir", dir .. "/w-dry" }), env)
      assert.equal(0, code, err .. out)
      assert.truthy(out:find("ppvm2 (/SPDM Inc/peterparker, 1 CPU 500 MHz 512 MB)", 1, true))
      assert.truthy(out:find("would create account: /SPDM Inc/peterparker", 1, true))
      assert.truthy(out:find("would upload volume: ppdatavol", 1, true))
      assert.truthy(out:find("nothing was created", 1, true))
      local st = assert(s:state())
      assert.equal(0, #st.vms)
      assert.equal(0, #st.templates)
      assert.is_nil(st.calls.createAccount)
    end)
  end)
end)
