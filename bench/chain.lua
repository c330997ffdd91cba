-- bench/chain.lua DIR GIB [ZEROED]: the 3-level benchmark chain (base.vhd <- c1.vhd <- c2.vhd)
-- of bench/vhd.sh and bench/qcow2.sh, with full and partial blocks and varied data (nothing
-- all-zero by accident); ZEROED "zeroed" (the default) adds ~100 blocks the guest zeroed
-- (written as zeros), "none" leaves them out. Prints what was written.
local vhd = require "salvage.vhd"
local dir, gib, zeroed = arg[1], math.tointeger(tonumber(arg[2])), (arg[3] or "zeroed") == "zeroed"
local B = 2 << 20
local size = gib << 30
local nblocks = size // B
local function chunk(seed, len)
  local unit = string.char(seed % 251 + 1, (seed * 7) % 253 + 1, 0x55, seed % 13 + 1)
  return unit:rep(len // 4 + 1):sub(1, len)
end
local full = chunk(17, B)
local base = assert(vhd.create(dir .. "/base.vhd", { size = size, hidden = true }))
local allocated = 0
local step = math.max(1, nblocks // 800)
for b = 0, nblocks - 1, step do                -- ~800 full blocks = 1.6 GiB
  assert(base:write(b * B, full)); allocated = allocated + B
end
base:close()
local c1 = assert(vhd.create(dir .. "/c1.vhd", { parent = dir .. "/base.vhd", hidden = true }))
local f1 = chunk(29, B)
for b = 1, nblocks - 1, math.max(1, nblocks // 500) do -- ~500 full blocks, some over base's
  assert(c1:write(b * B, f1)); allocated = allocated + B
end
for b = 3, nblocks - 1, math.max(1, nblocks // 200) do -- partial: 300 KiB + odd bytes
  assert(c1:write(b * B + 4096 + 17, chunk(b, 300 * 1024 + 123))); allocated = allocated + 301 * 1024
end
c1:close()
local c2 = assert(vhd.create(dir .. "/c2.vhd", { parent = dir .. "/c1.vhd" }))
local f2 = chunk(41, B)
for b = 2, nblocks - 1, math.max(1, nblocks // 300) do -- ~300 full blocks
  assert(c2:write(b * B, f2)); allocated = allocated + B
end
for b = 0, nblocks - 1, math.max(1, nblocks // 150) do -- partial, inside base's blocks
  assert(c2:write(b * B + 512 * 9, chunk(b + 5, 700 * 1024))); allocated = allocated + 700 * 1024
end
-- blocks the guest zeroed (written, all zero): allocated in the chain, nothing to keep
local zeros = ("\0"):rep(B)
for b = 5, zeroed and nblocks - 1 or -1, math.max(1, nblocks // 100) do
  assert(c2:write(b * B, zeros)); allocated = allocated + B
end
c2:close()
io.stdout:write(("generated: %.2f GB written into the chain\n"):format(allocated / 1e9))
