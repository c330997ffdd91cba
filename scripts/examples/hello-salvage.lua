-- Shows what this salvage binary offers (version, modules, commands): a template for your own scripts.
--
-- usage: salvage hello-salvage.lua [--json]
local script = require "salvage.script"
local cli = require "salvage.cli"
local json = require "salvage.json"
local salvage = require "salvage"

script.run{
  description = "Show the salvage version, its Lua modules and its built-in commands",
  usage = "salvage hello-salvage.lua [--json]",
  options = { { "json", help = "machine-readable output" } },
  main = function(opts)
    local facts = {
      version = salvage.version,
      lua = salvage.lua_version,
      modules = json.array(salvage.modules()),
      commands = json.array({}),
    }
    for _, c in ipairs(cli.commands()) do
      table.insert(facts.commands, { name = c.name, summary = c.summary })
    end
    if opts.json then
      io.write(json.pretty(facts))
      return 0
    end
    print(("salvage %s on %s"):format(facts.version, facts.lua))
    print("modules:  salvage." .. table.concat(facts.modules, ", salvage."))
    print("commands:")
    for _, c in ipairs(facts.commands) do print(("  %-12s %s"):format(c.name, c.summary)) end
    return 0
  end,
}
