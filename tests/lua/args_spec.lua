local args = require "salvage.args"

local spec = {
  usage = "salvage thing FILE [options]",
  summary = "Do a thing",
  options = {
    { "json", help = "machine output" },
    { "output", short = "o", value = "FILE", help = "where" },
    { "workers", value = "N", type = "integer", default = 1 },
    { "storage", value = "DIR", multi = true },
    { "format", value = "F", choices = { "vhd", "raw" }, default = "vhd" },
    { "dry-run", help = "change nothing" },
  },
  positionals = { min = 1, max = 2 },
}

describe("salvage.args", function()
  it("parses flags, values, defaults, repeats and positionals", function()
    local o = assert(args.parse(spec, { "a.vhd", "--json", "-o", "out", "--storage", "d1", "--storage=d2",
      "--workers=4", "--dry-run", "b.vhd" }))
    assert.are.same({ "a.vhd", "b.vhd" }, { o[1], o[2] })
    assert.is_true(o.json)
    assert.is_true(o.dry_run)
    assert.are.equal("out", o.output)
    assert.are.equal(4, o.workers)
    assert.are.same({ "d1", "d2" }, o.storage)
    assert.are.equal("vhd", o.format)
  end)

  it("treats everything after -- as positional", function()
    local o = assert(args.parse(spec, { "--", "--json" }))
    assert.are.equal("--json", o[1])
    assert.is_nil(o.json)
  end)

  it("reports unknown options, missing values and bad types", function()
    local _, err = args.parse(spec, { "x", "--bogus" })
    assert.matches("unknown option '%-%-bogus'", err)
    _, err = args.parse(spec, { "x", "-o" })
    assert.matches("needs a value", err)
    _, err = args.parse(spec, { "x", "--workers", "many" })
    assert.matches("expects an integer", err)
    _, err = args.parse(spec, { "x", "--format", "qcow2" })
    assert.matches("one of vhd, raw", err)
    _, err = args.parse(spec, { "x", "--json=yes" })
    assert.matches("takes no value", err)
  end)

  it("checks positional counts", function()
    local _, err = args.parse(spec, {})
    assert.matches("missing argument", err)
    _, err = args.parse(spec, { "a", "b", "c" })
    assert.matches("unexpected argument 'c'", err)
  end)

  it("answers --help even when arguments are missing", function()
    local o = assert(args.parse(spec, { "--help" }))
    assert.is_true(o.help)
    local text = args.help(spec)
    assert.matches("usage: salvage thing FILE", text, 1, true)
    assert.matches("%-o, %-%-output FILE", text)
    assert.matches("default: 1", text)
    assert.matches("%-h, %-%-help", text)
  end)

  it("enforces required options", function()
    local _, err = args.parse({ options = { { "zone", value = "Z", required = true } } }, {})
    assert.matches("missing required option %-%-zone", err)
  end)
end)
