-- busted helper: specs find the repository and the binary under test.
local sys = require "salvage.sys"
TOP = os.getenv("TOP") or sys.realpath(".")
SALVAGE = os.getenv("SALVAGE") or (TOP .. "/salvage")
SHARED = os.getenv("SALVAGE_SHARED") or (TOP .. "/../shared")

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
