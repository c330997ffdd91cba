local pretty = require "salvage.pretty"

describe("salvage.pretty", function()
  it("prints scalars like Lua literals", function()
    assert.are.equal('"a\\"b\\n"', pretty.format('a"b\n'))
    assert.are.equal("42", pretty.format(42))
    assert.are.equal("2.0", pretty.format(2.0))
    assert.are.equal("nil", pretty.format(nil))
  end)

  it("sorts keys: array part first, then names", function()
    assert.are.equal('{1, 2, a = {1, 2}, b = 2, ["with space"] = true}',
      pretty.format({ 1, 2, b = 2, a = { 1, 2 }, ["with space"] = true }))
  end)

  it("marks cycles", function()
    local t = { name = "x" }
    t.self = t
    assert.are.equal('{name = "x", self = <cycle>}', pretty.format(t))
  end)

  it("limits depth and item count", function()
    assert.are.equal("{a = {b = {...}}}", pretty.format({ a = { b = { c = 1 } } }, { depth = 2 }))
    local big = {}
    for i = 1, 10 do big[i] = i end
    assert.are.equal("{1, 2, 3, ... (7 more)}", pretty.format(big, { max_items = 3 }))
  end)

  it("breaks wide tables over lines", function()
    local t = { alpha = ("x"):rep(40), beta = ("y"):rep(40) }
    local s = pretty.format(t, { width = 60 })
    assert.are.equal('{\n  alpha = "' .. ("x"):rep(40) .. '",\n  beta = "' .. ("y"):rep(40) .. '",\n}', s)
  end)
end)
