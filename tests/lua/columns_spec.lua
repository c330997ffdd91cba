local columns = require "salvage.columns"

describe("salvage.columns", function()
  it("aligns by UTF-8 characters and never pads the last column", function()
    local text = columns.text({ { "VM", "OWNER", "NOTE" }, { "ppvm2", "Spider — Ω", "x" }, { "a", "b", "" } })
    assert.are.equal("VM     OWNER       NOTE\nppvm2  Spider — Ω  x\na      b           ", text)
  end)

  it("indents when asked", function()
    assert.are.same({ "  a  b" }, columns.lines({ { "a", "b" } }, { indent = "  " }))
  end)
end)
