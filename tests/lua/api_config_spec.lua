-- salvage.config profiles and the environment.
local config = require "salvage.config"
local sys = require "salvage.sys"

describe("salvage.config", function()
  local dir = assert(sys.mkdtemp("/tmp/salvage-config-spec-XXXXXX"))
  local saved = {}
  local vars = { "SALVAGE_CONFIG", "SALVAGE_API_URL", "SALVAGE_API_KEY", "SALVAGE_SECRET_KEY", "SALVAGE_PROFILE" }
  setup(function()
    for _, v in ipairs(vars) do saved[v] = os.getenv(v) or false; sys.setenv(v, nil) end
  end)
  local home = os.getenv("HOME")
  teardown(function()
    for _, v in ipairs(vars) do sys.setenv(v, saved[v] or nil) end
    sys.setenv("HOME", home)
    RUN("rm -rf " .. dir)
  end)

  local function write(text)
    local p = dir .. "/config.lua"
    local f = assert(io.open(p, "w"))
    f:write(text)
    f:close()
    sys.setenv("SALVAGE_CONFIG", p)
    return p
  end

  it("reads named profiles and the default one", function()
    write [[return { default_profile = "new", profiles = {
      new = { url = "http://a/client/api", apikey = "k1", secretkey = "s1", timeout = 5 },
      old = { url = "http://b/client/api", apikey = "k2", secretkey = "s2" } } }]]
    local p = assert(config.profile())
    assert.equal("new", p.name)
    assert.equal("http://a/client/api", p.url)
    assert.equal(5, p.timeout)
    assert.equal("k2", assert(config.profile("old")).apikey)
    local r, err = config.profile("nope")
    assert.is_nil(r)
    assert.matches("no profile named 'nope'", err)
  end)

  it("lets the environment override a profile", function()
    write [[return { profiles = { only = { url = "http://a/client/api", apikey = "k1", secretkey = "s1" } } }]]
    sys.setenv("SALVAGE_API_KEY", "envkey")
    local p = assert(config.profile())
    assert.equal("only", p.name)
    assert.equal("envkey", p.apikey)
    assert.equal("s1", p.secretkey)
    sys.setenv("SALVAGE_API_KEY", nil)
  end)

  it("reports a broken or missing config file clearly, and runs it without globals", function()
    write "return {"
    local r, err = config.profile()
    assert.is_nil(r)
    assert.matches("^config: ", err)
    write "os.exit(3)"
    r, err = config.profile()
    assert.is_nil(r)
    assert.matches("config: ", err)
    -- a missing file is an empty configuration: credentials may come from the environment
    sys.setenv("SALVAGE_CONFIG", dir .. "/missing.lua")
    r, err = config.profile()
    assert.is_nil(r)
    assert.matches("no url for profile", err)
    assert.matches("missing.lua", err)
    r, err = config.profile("named")
    assert.is_nil(r)
    assert.matches("no profile named 'named'", err)
    r, err = config.load(dir .. "/missing.lua", true)
    assert.is_nil(r)
    assert.matches("cannot read", err)
  end)

  it("works from the environment alone", function()
    sys.setenv("SALVAGE_CONFIG", nil)
    sys.setenv("HOME", dir)
    sys.setenv("SALVAGE_API_URL", "http://env/client/api")
    sys.setenv("SALVAGE_API_KEY", "k")
    sys.setenv("SALVAGE_SECRET_KEY", "s")
    local p = assert(require("salvage.cloudstack.api").profile())
    assert.equal("http://env/client/api", p.url)
    for _, v in ipairs { "SALVAGE_API_URL", "SALVAGE_API_KEY", "SALVAGE_SECRET_KEY" } do sys.setenv(v, nil) end
  end)
end)
