-- Scans primary storage copies for VHD files and prints their chains (leaf → base) with any problem found.
--
-- usage: salvage scan-storage.lua DIR... [--match GLOB] [--json]
local script = require "salvage.script"
local json = require "salvage.json"
local plan = require "salvage.plan"

script.run{
  description = "Show every VHD chain under the given directories, with problems",
  usage = "salvage scan-storage.lua DIR... [--match GLOB] [--json]",
  options = {
    { "match", value = "GLOB", help = "only files matching (default *.vhd)" },
    { "json", help = "machine-readable" },
  },
  positionals = { min = 1 },
  main = function(opts)
    local vhd = require "salvage.vhd"
    local dirs = {}
    for i = 1, #opts do dirs[i] = opts[i] end
    local found, err = vhd.scan(dirs, { match = opts.match })
    if not found then
      io.stderr:write("scan-storage: ", tostring(err), "\n")
      return 1
    end
    if opts.json then
      io.write(json.pretty(json.array(found)))
      return 0
    end
    -- children under their parents, like vhd-util scan -p
    local kids, roots = {}, {}
    for _, e in ipairs(found) do
      if e.parent then
        kids[e.parent] = kids[e.parent] or {}
        table.insert(kids[e.parent], e)
      else
        roots[#roots + 1] = e
      end
    end
    local problems = 0
    local function show(e, depth)
      print(("%svhd=%s capacity=%d size=%d hidden=%s parent=%s"):format(("  "):rep(depth),
        e.path:match("[^/]+$"), e.capacity or 0, e.size or 0, e.hidden and 1 or 0,
        e.parent and e.parent:match("[^/]+$") or "none"))
      for _, pr in ipairs(e.problems or {}) do
        problems = problems + 1
        print(("%s  %s %s: %s"):format(("  "):rep(depth), pr.severity or "?", pr.code or "?", pr.message or ""))
      end
      for _, k in ipairs(kids[e.path] or {}) do show(k, depth + 1) end
    end
    for _, r in ipairs(roots) do show(r, 0) end
    local bytes = 0
    for _, e in ipairs(found) do bytes = bytes + (e.size or 0) end
    print(("%d VHD files, %d chains, %s on disk, %d problems"):format(#found, #roots, plan.human(bytes), problems))
    return problems == 0 and 0 or 1
  end,
}
