local policy = require "salvage.policy"
local sys = require "salvage.sys"

local function vm(t)
  local v = { type = "User", state = "Running", name = "vm1",
    account = { id = 5, name = "peterparker", type = 0 },
    domain = { id = 2, name = "SPDM Inc", path = "/SPDM Inc/" } }
  for k, x in pairs(t or {}) do v[k] = x end
  return v
end

describe("salvage.policy defaults", function()
  local p = policy.new()

  it("has every hook", function()
    for _, h in ipairs(policy.HOOKS) do assert.is_function(p[h]) end
  end)

  it("keeps running user VMs and drops what the seed article drops", function()
    assert.is_true(p.vm_filter(vm()))
    for _, st in ipairs { "Expunging", "Expunged", "Destroyed", "Error" } do
      local keep, why = p.vm_filter(vm { state = st })
      assert.is_false(keep)
      assert.matches(st, why)
    end
    local keep, why = p.vm_filter(vm { type = "DomainRouter" })
    assert.is_false(keep)
    assert.matches("not a user VM", why)
    keep, why = p.vm_filter(vm { removed = "2015-11-17 10:00:00" })
    assert.is_false(keep)
    assert.matches("removed", why)
  end)

  it("drops deleted volumes and detached ones", function()
    assert.is_true(p.volume_filter({ state = "Ready" }, vm()))
    for _, st in ipairs { "Expunged", "Expunging", "Destroy", "Destroying" } do
      assert.is_false(p.volume_filter({ state = st }, vm()))
    end
    assert.is_false(p.volume_filter({ state = "Ready" }, nil))
  end)

  it("maps owners and names like the old cloud", function()
    local v = vm()
    assert.same({ domain_path = "/SPDM Inc/", account = "peterparker", type = 0 }, p.account_map(v.account, v.domain))
    assert.equal("recovered-vm1-root", p.template_name(v))
    assert.equal("ppdatavol", p.volume_name({ name = "ppdatavol" }, v))
    assert.is_nil(p.network_for(v, v.account))
    assert.is_nil(p.password_for(v.account))
    assert.is_false(p.start_after_import(v))
  end)

  it("picks an offering with the same cpu, speed and ram, else nil", function()
    local v = vm { offering = { cpu = 1, speed = 500, ram = 512 } }
    local offs = { { id = "a", cpu = 2, speed = 500, ram = 512 },
      { id = "b", cpunumber = 1, cpuspeed = 500, memory = 512 } }
    assert.equal("b", p.offering_for(v, offs).id)
    assert.is_nil(p.offering_for(vm { offering = { cpu = 4, speed = 1, ram = 1 } }, offs))
  end)
end)

describe("salvage.policy options and files", function()
  it("include_destroyed keeps Destroyed (not removed) VMs only", function()
    local p = policy.new { include_destroyed = true }
    assert.is_true(p.vm_filter(vm { state = "Destroyed" }))
    assert.is_false(p.vm_filter(vm { state = "Destroyed", removed = "2020-01-01 00:00:00" }))
    assert.is_false(p.vm_filter(vm { state = "Expunging" }))
  end)

  it("selects accounts and domain subtrees", function()
    local p = policy.new { accounts = { "admin" } }
    local keep, why = p.vm_filter(vm())
    assert.is_false(keep)
    assert.matches("peterparker", why)
    p = policy.new { domains = { "/SPDM Inc/" } }
    assert.is_true(p.vm_filter(vm { domain = { name = "Dev", path = "/SPDM Inc/Dev/" } }))
    assert.is_false(p.vm_filter(vm { domain = { name = "ROOT", path = "/" } }))
    p = policy.new { include_detached = true }
    assert.is_true(p.volume_filter({ state = "Ready" }, nil))
  end)

  it("rejects a hook that is not a function", function()
    assert.has_error(function() policy.new { vm_filter = 42 } end)
  end)

  local dir
  setup(function() dir = sys.mkdtemp("/tmp/salvage-policy.XXXXXX") end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end

  it("loads a table of overrides", function()
    local p = assert(policy.load(write("t.lua", [[
      return { include_destroyed = true, template_name = function(vm) return "t-" .. vm.name end }]])))
    assert.equal("t-vm1", p.template_name(vm()))
    assert.is_true(p.vm_filter(vm { state = "Destroyed" }))
  end)

  it("loads a function that edits the defaults and can call them", function()
    local p = assert(policy.load(write("f.lua", [[
      return function(p)
        p.include_destroyed = true
        p.vm_filter = function(vm)
          if vm.name == "skipme" then return false, "operator said so" end
          return p.defaults.vm_filter(vm)
        end
      end]])))
    local keep, why = p.vm_filter(vm { name = "skipme" })
    assert.is_false(keep)
    assert.equal("operator said so", why)
    assert.is_true(p.vm_filter(vm { state = "Destroyed" }))
  end)

  it("reports bad files with nil, message", function()
    local p, err = policy.load(dir .. "/missing.lua")
    assert.is_nil(p)
    assert.matches("missing.lua", err)
    p, err = policy.load(write("bad.lua", "return {"))
    assert.is_nil(p)
    assert.is_string(err)
    p, err = policy.load(write("num.lua", "return 42"))
    assert.is_nil(p)
    assert.matches("must return a table", err)
    p, err = policy.load(write("hook.lua", "return { password_for = 'x' }"))
    assert.is_nil(p)
    assert.matches("password_for", err)
  end)

  it("refuses a misspelled hook or option instead of ignoring it", function()
    local p, err = policy.load(write("typo.lua", "return { vm_filtr = function() return true end }"))
    assert.is_nil(p)
    assert.matches("unknown policy field 'vm_filtr'", err)
    p, err = policy.load(write("typo2.lua",
      "return function(p) p.start_after_imports = function() return true end end"))
    assert.is_nil(p)
    assert.matches("start_after_imports", err)
    assert.has_error(function() policy.new { adopt_untaged = true } end)
    assert.is_true(policy.new { adopt_untagged = true }.adopt_untagged)
  end)
end)
