-- A policy file for recovering into KVM: prepare_guest runs virt-v2v-in-place (Debian's virt-v2v) on
-- each root disk written into the pool, before it is imported, and says what it changed.
--
-- usage: salvage recover PLAN.json --zone ZONE --workdir DIR --kvm-primary POOL=DIR \
--          --policy "$(salvage examples kvm-prepare-guest)"
--
-- virt-v2v-in-place installs virtio drivers into a Windows guest (from virtio-win, when present)
-- and rebuilds a Linux guest's initramfs with the virtio modules, in place, on the qcow2 file.
-- When it is not installed the disk is left as it is and the reason is recorded; a guest that
-- then does not boot on KVM needs its drivers installed by hand (see `salvage plan`: kvm_guest).
-- When it is installed and fails, the import of that VM is refused (its file is removed from the
-- pool) so that no VM is adopted half converted. Run as a script, it prepares one disk:
--   salvage "$(salvage examples kvm-prepare-guest)" DISK.qcow2
local sys = require "salvage.sys"

local function which(cmd)
  for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    local st = sys.stat(dir .. "/" .. cmd)
    if st and st.type == "file" then return dir .. "/" .. cmd end
  end
  return nil
end

local function slurp(p)
  local f = io.open(p, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- prepare_guest(vm, disk_path) -> text of what changed | false, why
local function prepare_guest(vm, path)
  local v2v = which("virt-v2v-in-place")
  if not v2v then
    return "virt-v2v-in-place not installed (apt install virt-v2v): guest not converted"
  end
  local log = os.tmpname()
  local pid, err = sys.spawn { v2v, "-i", "disk", path, stdout = log, stderr = log, stdin = "/dev/null" }
  if not pid then return false, "virt-v2v-in-place: " .. tostring(err) end
  local how, code = sys.wait(pid)
  local out = slurp(log)
  os.remove(log)
  if how ~= "exited" or code ~= 0 then
    return false, ("virt-v2v-in-place failed on %s (%s %s): %s"):format(path, how, tostring(code), out:sub(-400))
  end
  -- its own summary lines say what it did (drivers installed, initramfs rebuilt)
  local said = {}
  for line in out:gmatch("[^\n]+") do
    if line:find("virtio", 1, true) or line:find("initrd", 1, true) or line:find("Converting", 1, true) then
      said[#said + 1] = line
    end
  end
  return ("virt-v2v-in-place converted %s for %s: %s"):format(path, tostring(vm and vm.name),
    #said > 0 and table.concat(said, "; ") or "done")
end

-- run as a script on one disk
if arg and arg[0] and arg[0]:match("kvm%-prepare%-guest%.lua$") and ... ~= nil then
  local disk = ...
  if disk == "--help" then
    io.stdout:write("usage: salvage kvm-prepare-guest.lua DISK.qcow2\n")
    os.exit(0)
  end
  local r, why = prepare_guest({ name = disk }, disk)
  if r == false then
    io.stderr:write(why, "\n")
    os.exit(1)
  end
  io.stdout:write(r, "\n")
  os.exit(0)
end

return { prepare_guest = prepare_guest }
