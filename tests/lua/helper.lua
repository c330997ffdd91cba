-- busted helper: specs find the repository and the binary under test.
local sys = require "salvage.sys"
TOP = os.getenv("TOP") or sys.realpath(".")
SALVAGE = os.getenv("SALVAGE") or (TOP .. "/salvage")
FIXTURES = TOP .. "/tests/fixtures"
DATA = TOP .. "/data"

--- The path of a test input; a missing one is an error (a spec whose input
-- is missing fails, it never vanishes).
function INPUT(path)
  local f = io.open(path, "rb")
  if not f then error("test input missing: " .. path, 2) end
  f:close()
  return path
end

--- The sample CloudStack files: the demo's (data/cloudstack) or the tests' own.
function CLOUDSTACK(name)
  local f = io.open(DATA .. "/cloudstack/" .. name, "rb")
  if f then f:close(); return DATA .. "/cloudstack/" .. name end
  return INPUT(FIXTURES .. "/cloudstack/" .. name)
end

--- The whole content of a file, or nil when it cannot be read.
function SLURP(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- Run a shell command; returns exit code, stdout, stderr.
function RUN(cmd)
  local tmp = os.tmpname()
  local p = io.popen(cmd .. " 2>" .. tmp, "r")
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(tmp)
  local err = f:read("a")
  f:close()
  os.remove(tmp)
  return code, out, err
end
