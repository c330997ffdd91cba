describe("salvage.script", function()
  local dir
  before_each(function() dir = assert(require("salvage.sys").mkdtemp("/tmp/salvage-script-")) end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end

  local decl = [[
local script = require "salvage.script"
script.run{
  description = "Greets an account",
  options = { { "account", value = "NAME", required = true }, { "loud", help = "shout" } },
  positionals = { min = 0, max = 1 },
  main = function(opts)
    local msg = "hello " .. opts.account .. (opts[1] and (" " .. opts[1]) or "")
    print(opts.loud and msg:upper() or msg)
    if opts.account == "fail" then require("salvage.cli").fail(3, "account fail refused") end
    if opts.account == "strict" then undeclared_thing = 1 end
    return 0
  end,
}
]]

  it("turns declared options into flags", function()
    local path = write("greet.lua", decl)
    local code, out = RUN(SALVAGE .. " " .. path .. " --account bob --loud x")
    assert.are.equal(0, code)
    assert.are.equal("HELLO BOB X\n", out)
  end)

  it("answers --help from the declaration", function()
    local path = write("greet.lua", decl)
    local code, out = RUN(SALVAGE .. " " .. path .. " --help")
    assert.are.equal(0, code)
    assert.matches("Greets an account", out, 1, true)
    assert.matches("--account NAME", out, 1, true)
  end)

  it("exits 2 on usage errors", function()
    local path = write("greet.lua", decl)
    local code, _, err = RUN(SALVAGE .. " " .. path)
    assert.are.equal(2, code)
    assert.matches("missing required option %-%-account", err)
  end)

  it("exits with cli.fail's code and message", function()
    local path = write("greet.lua", decl)
    local code, _, err = RUN(SALVAGE .. " " .. path .. " --account fail")
    assert.are.equal(3, code)
    assert.are.equal("salvage: account fail refused\n", err)
  end)

  it("runs main with strict globals", function()
    local path = write("greet.lua", decl)
    local code, _, err = RUN(SALVAGE .. " " .. path .. " --account strict")
    assert.are.equal(1, code)
    assert.matches("assignment to undeclared global 'undeclared_thing'", err)
  end)
end)
