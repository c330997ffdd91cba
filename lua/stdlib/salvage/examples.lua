--- Where the example scripts live: installed beside the binary
-- (PREFIX/share/salvage/examples), or in the source tree next to ./salvage.
local sys = require "salvage.sys"

local M = {}

local function isdir(p)
  local st = sys.stat(p)
  return st and st.type == "directory"
end

--- The examples directory, or nil, message.
function M.dir()
  local env = os.getenv("SALVAGE_EXAMPLES_DIR")
  if env and env ~= "" then return env end
  local exe = sys.realpath("/proc/self/exe")
  if exe then
    local bindir = exe:match("^(.*)/[^/]*$") or "."
    for _, cand in ipairs({
      bindir .. "/../share/salvage/examples",
      bindir .. "/scripts/examples",
      bindir .. "/../scripts/examples",
    }) do
      if isdir(cand) then return sys.realpath(cand) end
    end
  end
  return nil, "cannot find the example scripts (set SALVAGE_EXAMPLES_DIR)"
end

--- The description of a script: its leading comment block, without the "--".
function M.describe(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local lines = {}
  for line in f:lines() do
    if line:match("^%-%-") then
      local text = line:gsub("^%-%-+%s?", "")
      if text == "" and #lines > 0 then break end
      if text ~= "" then lines[#lines + 1] = text end
    elseif not line:match("^#!") then
      break
    end
  end
  f:close()
  return lines[1] or ""
end

--- list() -> { {name, path, description}, ... } sorted by name
function M.list()
  local dir, err = M.dir()
  if not dir then return nil, err end
  local names, derr = sys.dir(dir)
  if not names then return nil, derr end
  local out = {}
  for _, n in ipairs(names) do
    if n:match("%.lua$") then
      out[#out + 1] = { name = n, path = dir .. "/" .. n, description = M.describe(dir .. "/" .. n) }
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

return M
