local cli = require "salvage.cli"

describe("salvage.cli", function()
  it("strips the options every command takes", function()
    local rest, settings = cli.global_options({ "read", "--log-level", "debug", "x.vhd", "--quiet", "--log-json" })
    assert.are.same({ "read", "x.vhd" }, rest)
    assert.are.same({ level = "debug", quiet = true, json = true }, settings)
  end)

  it("leaves arguments after -- alone", function()
    local rest = cli.global_options({ "a", "--", "--quiet" })
    assert.are.same({ "a", "--", "--quiet" }, rest)
  end)

  it("rejects unknown log levels", function()
    local rest, err = cli.global_options({ "--log-level=loud" })
    assert.is_nil(rest)
    assert.matches("unknown log level 'loud'", err)
  end)

  it("lists the built-in commands with summaries", function()
    local names = {}
    for _, c in ipairs(cli.commands()) do
      names[c.name] = c.summary
    end
    assert.is_string(names.help)
    assert.is_string(names.repl)
    assert.is_string(names.examples)
  end)
end)
