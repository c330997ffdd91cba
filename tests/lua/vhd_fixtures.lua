--- Test fixtures for the VHD specs: tests/fixtures/vhd unpacked (with its
-- own unpack.sh, which checks their byte hashes) into a private temp dir.
--   local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
--   local dir = fx.unpack()        -- once per spec file; fx.cleanup() in teardown
local sys = require "salvage.sys"

local M = {}

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.sh = sh

function M.unpack()
  if M.dir then return M.dir end
  local dir = assert(sys.mkdtemp("/tmp/salvage-vhd-fx-"))
  local code, _, err = RUN(("sh %s %s"):format(sh(INPUT(FIXTURES .. "/vhd/unpack.sh")), sh(dir)))
  assert(code == 0, "unpack.sh failed: " .. tostring(err))
  M.dir = dir
  return dir
end

function M.cleanup()
  if M.dir then os.execute("rm -rf " .. sh(M.dir)) end
  M.dir = nil
end

--- {["chain_d1/c1.vhd"] = sha256, ...}
function M.expected()
  local t = {}
  for line in io.lines(INPUT(FIXTURES .. "/vhd/EXPECTED_VIRTUAL.sha256")) do
    local h, p = line:match("^(%x+)%s+%*?(%S+)$")
    if h then t[p] = h end
  end
  return t
end

function M.sha256(path)
  local code, out = RUN("sha256sum " .. sh(path))
  assert(code == 0, "sha256sum " .. path)
  return out:match("^(%x+)")
end

function M.sha256_string(s)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(s)
  f:close()
  local h = M.sha256(tmp)
  os.remove(tmp)
  return h
end

function M.have(cmd) return (RUN("command -v " .. cmd)) == 0 end

--- sha256 of a standalone VHD's content as qemu-img reads it (never used on a differencing
-- chain: qemu-img is wrong there)
function M.qemu_raw_sha(path)
  local raw = path .. ".qemu.raw"
  local code, _, err = RUN(("qemu-img convert -f vpc -O raw %s %s"):format(sh(path), sh(raw)))
  assert(code == 0, err)
  local h = M.sha256(raw)
  os.remove(raw)
  return h
end

return M
