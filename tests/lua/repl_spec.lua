local repl = require "salvage.repl"

describe("salvage.repl completion", function()
  it("completes global names", function()
    local c = repl.complete("pri")
    assert.are.same({ "print" }, c)
  end)

  it("completes fields of tables", function()
    local c = repl.complete("string.for")
    assert.are.same({ "string.format" }, c)
  end)

  it("lists salvage submodules before they are loaded", function()
    _G.salvage = require "salvage"
    local c = repl.complete("salvage.")
    local set = {}
    for _, v in ipairs(c) do set[v] = true end
    assert.is_true(set["salvage.log"])
    assert.is_true(set["salvage.json"])
    assert.is_true(set["salvage.version"])
  end)

  it("completes methods after ':' through the metatable", function()
    _G.__repl_test = io.stdout
    local c = repl.complete("__repl_test:wri")
    _G.__repl_test = nil
    assert.are.same({ "__repl_test:write" }, c)
  end)

  it("returns nothing for unknown paths instead of raising", function()
    assert.are.same({}, repl.complete("nosuch.thing.x"))
  end)
end)
