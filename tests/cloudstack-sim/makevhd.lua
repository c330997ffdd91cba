--- Minimal valid VHD files for tests and benchmarks (no salvage.vhd needed):
--   local makevhd = dofile(TOP .. "/tests/cloudstack-sim/makevhd.lua")
--   makevhd.write(path, {virtual_size = 64 << 20, allocated = {0, 3}, type = "dynamic"})
-- Dynamic disks: footer copy + dynamic header + BAT + 2 MiB blocks (bitmap +
-- data) + footer, checksums right. `allocated` lists block numbers to fill
-- (with a byte pattern derived from the block number, or `fill(i)`).
local M = {}

local BLOCK = 2 << 20
local VHD_EPOCH = 946684800  -- 2000-01-01T00:00:00Z

local function checksum(s)
  local sum = 0
  for i = 1, #s do sum = sum + s:byte(i) end
  return (~sum) & 0xFFFFFFFF
end

local function geometry(size)
  -- CHS as in the VHD specification's appendix
  local sectors = size // 512
  if sectors > 65535 * 16 * 255 then sectors = 65535 * 16 * 255 end
  local spt, heads, cth
  if sectors >= 65535 * 16 * 63 then
    spt, heads = 255, 16
    cth = sectors // spt
  else
    spt = 17
    cth = sectors // spt
    heads = (cth + 1023) // 1024
    if heads < 4 then heads = 4 end
    if cth >= heads * 1024 or heads > 16 then
      spt, heads = 31, 16
      cth = sectors // spt
    end
    if cth >= heads * 1024 then
      spt, heads = 63, 16
      cth = sectors // spt
    end
  end
  return cth // heads, heads, spt
end

function M.footer(size, disk_type, data_offset)
  local c, h, s = geometry(size)
  local uid = ("%016x"):format(size) .. "salvage!"
  local f = string.pack(">c8I4I4I8I4c4I4c4I8I8I2BBI4I4c16B",
    "conectix", 2, 0x00010000, data_offset, os.time() - VHD_EPOCH, "slvg", 0x00010000, "Wi2k",
    size, size, c, h, s, disk_type, 0, uid:sub(1, 16), 0)
  f = f .. string.rep("\0", 512 - #f)
  local sum = checksum(f)
  return f:sub(1, 64) .. string.pack(">I4", sum) .. f:sub(69)
end

local function dyn_header(entries, parent)
  local h = string.pack(">c8I8I8I4I4I4I4c16I4I4",
    "cxsparse", 0xFFFFFFFFFFFFFFFF, 1536, 0x00010000, entries, BLOCK, 0,
    parent and "parent-uuid-0001" or string.rep("\0", 16), 0, 0)
  h = h .. string.rep("\0", 1024 - #h)
  local sum = checksum(h)
  return h:sub(1, 36) .. string.pack(">I4", sum) .. h:sub(41)
end

--- write(path, {virtual_size, allocated = {block numbers}, type = "dynamic"|"fixed"|"differencing",
--   fill = function(i) -> 2 MiB string}) -> file size
function M.write(path, o)
  local size = o.virtual_size or (8 << 20)
  local kind = o.type or "dynamic"
  local f = assert(io.open(path, "wb"))
  if kind == "fixed" then
    local zero = string.rep("\0", 1 << 20)
    local left = size
    while left > 0 do
      local n = math.min(left, #zero)
      f:write(n == #zero and zero or zero:sub(1, n))
      left = left - n
    end
    f:write(M.footer(size, 2, 0xFFFFFFFFFFFFFFFF))
    f:close()
    return size + 512
  end
  local dtype = kind == "differencing" and 4 or 3
  local entries = (size + BLOCK - 1) // BLOCK
  local bat_bytes = ((entries * 4 + 511) // 512) * 512
  local foot = M.footer(size, dtype, 512)
  local first = 1536 + bat_bytes
  local bat = {}
  for i = 1, entries do bat[i] = 0xFFFFFFFF end
  local alloc = {}
  for _, b in ipairs(o.allocated or {}) do alloc[#alloc + 1] = b end
  table.sort(alloc)
  for k, b in ipairs(alloc) do
    bat[b + 1] = (first + (k - 1) * (512 + BLOCK)) // 512
  end
  local parts = {}
  for i = 1, entries do parts[i] = string.pack(">I4", bat[i]) end
  local bat_s = table.concat(parts)
  bat_s = bat_s .. string.rep("\255", bat_bytes - #bat_s)
  f:write(foot, dyn_header(entries, kind == "differencing"), bat_s)
  local bitmap = string.rep("\255", 512)
  for _, b in ipairs(alloc) do
    f:write(bitmap)
    if o.fill then
      f:write(o.fill(b))
    else
      f:write(string.rep(string.char(b % 251 + 1), BLOCK))
    end
  end
  f:write(foot)
  f:close()
  return first + #alloc * (512 + BLOCK) + 512
end

return M
