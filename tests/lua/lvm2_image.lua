--- LVHD images made with lvm2's own tools for the specs: pvcreate, vgcreate, vgcfgrestore on a
-- loop device (nothing activated, no device-mapper needed), with lvm2's private configuration in
-- the test's directory. Where bytes go is asked of lvm2 (`pvs`, `lvs -o seg_pe_ranges`), never
-- computed with salvage's own mapping. No loop device or no lvm2: an error saying so.
--   local img = dofile(TOP .. "/tests/lua/lvm2_image.lua")
--   local view = img.build(dir, image, size, vg, {{name, id, status, {{le, n, pe}...}}...})
local sys = require "salvage.sys"

local M = {}

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- the device-mapper basename LVHD links parents by: VG and LV with "-" doubled
function M.mapper(vg, lv) return (vg:gsub("%-", "--") .. "-" .. lv:gsub("%-", "--")) end

--- an lvm2 id (32 characters, 6-4-4-4-4-4-6) from a number
function M.lv_id(n)
  local s = ("%032d"):format(n):gsub("0", "A")
  return ("%s-%s-%s-%s-%s-%s-%s"):format(s:sub(1, 6), s:sub(7, 10), s:sub(11, 14), s:sub(15, 18), s:sub(19, 22),
    s:sub(23, 26), s:sub(27, 32))
end

function M.have_lvm2()
  return RUN("command -v pvcreate") == 0 and RUN("command -v vgcfgrestore") == 0
end

local function lvm(conf, cmd)
  local code, out, err = RUN(("LVM_SUPPRESS_FD_WARNINGS=1 LVM_SYSTEM_DIR=%s %s"):format(sh(conf), cmd))
  assert(code == 0, cmd .. " failed: " .. tostring(err))
  return out
end

--- segments {le, n, pe [, "pvN"]} (pv0 when not named)
local function lv_section(name, id, status, segs)
  local t = { ("\t\t%s {\n\t\t\tid = %q\n\t\t\tstatus = [%s]\n\t\t\tflags = []\n\t\t\tsegment_count = %d\n"):format(
    name, id, status, #segs) }
  for i, s in ipairs(segs) do
    t[#t + 1] = ("\t\t\tsegment%d {\n\t\t\t\tstart_extent = %d\n\t\t\t\textent_count = %d\n\t\t\t\ttype = \"striped\"\n"
      .. "\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [%q, %d]\n\t\t\t}\n"):format(i, s[1], s[2], s[4] or "pv0", s[3])
  end
  t[#t + 1] = "\t\t}\n"
  return table.concat(t)
end

local function write_conf(dir)
  local conf = dir .. "/lvm-etc"
  if not sys.stat(conf) then assert(sys.mkdir(conf)) end
  local f = assert(io.open(conf .. "/lvm.conf", "w"))
  f:write('devices { filter = [ "a|^/dev/loop|", "r|.*|" ] obtain_device_list_from_udev = 0 }\n',
    "backup { backup = 0 archive = 0 }\n", "activation { udev_sync = 0 udev_rules = 0 }\n",
    "global { event_activation = 0 }\n")
  f:close()
  return conf
end

--- Make image (size bytes; or a list of images, PVs pv0, pv1, ...) a PV of VG vg holding the LVs
-- of layout ({name, id, status, segments}); returns lvm2's view {pe_start, extent,
-- segs = {lv = {{le, n, pe, image}...}}}. after(lvm) may run more lvm2 commands
-- (lvm("lvchange ...")) while the loop devices are there. mda: the metadata area size
-- (lvm2's --metadatasize; default 10M, lvm2 makes no smaller than about 1 MiB).
function M.build(dir, image, size, vg, layout, after, mda)
  assert(M.have_lvm2(), "lvm2 is not installed: run tools/deps.sh")
  local conf = write_conf(dir)
  local images = type(image) == "table" and image or { image }
  local loops, image_of = {}, {}
  for _, im in ipairs(images) do
    assert(RUN(("truncate -s %d %s"):format(size, sh(im))) == 0)
    local code, out, err = RUN("losetup -f --show " .. sh(im))
    if code ~= 0 then
      for _, l in ipairs(loops) do RUN("losetup -d " .. l) end
      error("no loop device for the lvm2 image (losetup: " .. tostring(err) .. "); these tests need one", 0)
    end
    loops[#loops + 1] = out:match("(%S+)")
    image_of[loops[#loops]] = im
  end
  local all = table.concat(loops, " ")
  local ok, res = pcall(function()
    lvm(conf, ("pvcreate -ff -y --metadatasize %s %s"):format(mda or "10M", all))
    lvm(conf, ("vgcreate --metadatasize %s %s %s"):format(mda or "10M", vg, all))
    local backup = dir .. "/vg-backup.txt"
    lvm(conf, ("vgcfgbackup -f %s %s"):format(sh(backup), vg))
    local f = assert(io.open(backup))
    local text = f:read("a")
    f:close()
    local lvs = {}
    for _, l in ipairs(layout) do lvs[#lvs + 1] = lv_section(l[1], l[2], l[3], l[4]) end
    local cut = text:match(".*()}")
    text = text:sub(1, cut - 1) .. "\tlogical_volumes {\n" .. table.concat(lvs) .. "\t}\n" .. text:sub(cut)
    text = text:gsub("seqno = (%d+)", function(n) return "seqno = " .. (tonumber(n) + 1) end)
    f = assert(io.open(backup, "w"))
    f:write(text)
    f:close()
    lvm(conf, ("vgcfgrestore -f %s %s"):format(sh(backup), vg))
    if after then after(function(cmd) return lvm(conf, cmd) end) end
    local view = { segs = {} }
    view.pe_start = tonumber(lvm(conf, "pvs --noheadings --units b --nosuffix -o pe_start " .. loops[1]):match("(%d+)"))
    view.extent = tonumber(lvm(conf, "vgs --noheadings --units b --nosuffix -o vg_extent_size " .. vg):match("(%d+)"))
    local rows = lvm(conf, "lvs --noheadings --units b --nosuffix "
      .. "-o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges " .. vg)
    for name, le, n, dev, pe in rows:gmatch("(%S+)%s+(%d+)%s+(%d+)%s+(%S-):(%d+)%-%d+") do
      view.segs[name] = view.segs[name] or {}
      table.insert(view.segs[name], { tonumber(le), tonumber(n), tonumber(pe), image_of[dev] })
    end
    return view
  end)
  for _, l in ipairs(loops) do RUN("losetup -d " .. l) end
  if not ok then error(res, 0) end
  return res
end

--- write data at LV byte off, through the extents (and devices) lvm2 reported
function M.lv_write(image, view, lv, off, data)
  local pos = 1
  while pos <= #data do
    local at = off + pos - 1
    local le = at // view.extent
    local phys, im
    for _, s in ipairs(view.segs[lv]) do
      if le >= s[1] and le < s[1] + s[2] then
        phys, im = view.pe_start + (s[3] + le - s[1]) * view.extent + at % view.extent, s[4] or image
      end
    end
    assert(phys, lv .. ": byte " .. at .. " unmapped")
    local n = math.min(#data - pos + 1, view.extent - at % view.extent)
    local f = assert(io.open(im, "r+b"))
    f:seek("set", phys)
    f:write(data:sub(pos, pos + n - 1))
    f:close()
    pos = pos + n
  end
end

--- a VHD file laid into an LV as LVHD does: the file at 0, its footer again at LV end - 512
function M.place_vhd(image, view, lv, file, lv_size)
  local f = assert(io.open(file, "rb"))
  local bytes = f:read("a")
  f:close()
  assert(#bytes <= lv_size - 512, file .. " does not fit its LV")
  M.lv_write(image, view, lv, 0, bytes)
  M.lv_write(image, view, lv, lv_size - 512, bytes:sub(-512))
end

return M
