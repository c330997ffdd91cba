--- The recovery plan: for every VM the policy keeps, where it goes (owner), what it
-- is (spec, OS, names), and which VHD chain holds each disk, checked.
-- The plan is a JSON document a person can read and edit before `salvage recover`.
--
--   local plan = require "salvage.plan"
--   local p = plan.build(vms, { storage = {"/mnt/primary", "c6d4...=/mnt/old"}, policy = pol, meta = meta })
--   io.write(plan.encode(p))          -- or plan.table(p)
--   local p2 = assert(plan.load("plan.json"))
--
-- Document (keys sorted on output):
--   { format = "salvage-plan", version = 1, storage = {...},
--     vms = { { id, uuid, name, display_name, instance_name, state, hypervisor,
--               owner = { domain_path, account, type, old_domain_path, old_account },
--               spec = { cpu, speed, ram, offering }, os_type,
--               template = { name, requires_hvm, password_enabled, old_name },
--               start, recoverable, problems = {...},
--               hostname (unique in the account),
--               disks = { { id, uuid, name, upload_name, type, device_id, size, path, pool,
--                           file, chain = {leaf..base}, force, recoverable, problems = {...} } } } },
--     policy = { file, sha256 },
--     skipped = { {id, name, reason} }, summary = { vms, recoverable, disks, bytes, problems } }
-- A problem is { code, severity = "error"|"warning"|"info", message }; any "error"
-- makes its disk (and, for the ROOT disk, its VM) not recoverable.
local sys = require "salvage.sys"
local columns = require "salvage.columns"
local json = require "salvage.json"
local log = require "salvage.log"

local M = {}

M.FORMAT = "salvage-plan"
M.VERSION = 1

local policylib = require "salvage.policy"

--- The hook `name` of `policy`, or salvage.policy's default (the only defaults).
function M.hook(policy, name)
  local f = policy and policy[name]
  if type(f) == "function" then return f end
  return policylib.default[name]
end

local function problem(code, severity, message)
  return { code = code, severity = severity, message = message }
end
M.problem = problem

local function has_error(problems)
  for _, p in ipairs(problems or {}) do
    if p.severity == "error" then return true end
  end
  return false
end
M.has_error = has_error

--- Normalize a domain path to the database's form: "/", "/SPDM Inc/", "/A/B/".
function M.domain_path(p)
  if p == nil or p == "" or p == "/" or p == "ROOT" or p == "ROOT/" then return "/" end
  p = tostring(p):gsub("^ROOT/", "/")
  if p:sub(1, 1) ~= "/" then p = "/" .. p end
  if p:sub(-1) ~= "/" then p = p .. "/" end
  return p
end

--- "ROOT/SPDM Inc/peterparker" for an owner {domain_path, account}.
function M.owner_text(owner)
  return "ROOT" .. M.domain_path(owner.domain_path) .. tostring(owner.account)
end

--- The levels of a domain path: "/A/B/" -> {"A", "B"}.
function M.domain_levels(p)
  local out = {}
  for part in M.domain_path(p):gmatch("[^/]+") do out[#out + 1] = part end
  return out
end

-- Storage roots ------------------------------------------------------------

--- An LVM-based SR (XenServer LVHD: iSCSI, FC, local LVM) on an image or block device:
-- {image, vg, lvs = {name = true}} | nil, message. Read-only; nothing is activated.
local function lvm_root(spec)
  local devices = {}
  for dev in spec:sub(5):gmatch("[^,]+") do -- a VG on several LUNs: lvm:lun1.img,lun2.img
    local st = sys.stat(dev)
    if not st or (st.type ~= "file" and st.type ~= "block") then
      return nil, ("storage %s: %s is not a file or block device"):format(spec, dev)
    end
    devices[#devices + 1] = sys.realpath(dev) or dev
  end
  local image = table.concat(devices, ",")
  local vg, err = require("salvage.lvm").read(image)
  if not vg then return nil, ("storage %s: %s"):format(spec, err) end
  local r = { image = image, vg = vg.name, lvs = {}, warnings = vg.warnings }
  for _, lv in ipairs(vg.lvs) do r.lvs[lv.name] = lv end
  return r
end

--- parse_storage{"DIR", "POOL_UUID=DIR", "POOL_UUID=lvm:IMAGE"}
--   -> {dirs = {...}, pools = {uuid = dir}, lvm = {uuid = lvm_root}} | nil, message
function M.parse_storage(list)
  local roots = { dirs = {}, pools = {}, lvm = {}, spec = json.array({}) }
  for _, s in ipairs(list or {}) do
    local uuid, dir = s:match("^([%x%-]+)=(.+)$")
    if uuid and #uuid >= 8 and dir:match("^lvm:") then
      local r, err = lvm_root(dir)
      if not r then return nil, err end
      roots.lvm[uuid:lower()] = r
    elseif s:match("^lvm:") then
      return nil, ("storage %s: an LVM image belongs to one pool: give POOL_UUID=%s"):format(s, s)
    elseif uuid and #uuid >= 8 then
      local st = sys.stat(dir)
      if not st or st.type ~= "directory" then return nil, ("storage %s: %s is not a directory"):format(uuid, dir) end
      roots.pools[uuid:lower()] = sys.realpath(dir)
    else
      local st = sys.stat(s)
      if not st or st.type ~= "directory" then return nil, ("storage: %s is not a directory"):format(s) end
      roots.dirs[#roots.dirs + 1] = sys.realpath(s)
    end
    roots.spec[#roots.spec + 1] = s
  end
  return roots
end

-- Every *.vhd (and LVM-style VHD-<uuid>) under the plain roots, by base name
-- without extension: {name = {path, ...}}. Symlinked directories are not followed
-- (a loop must not hang a scan); symlinked files are.
local function index_dirs(dirs)
  local idx = {}
  local seen = {}
  local function walk(dir, depth)
    if depth > 32 then return end
    local names = sys.dir(dir)
    if not names then return end
    table.sort(names)
    for _, n in ipairs(names) do
      local p = dir .. "/" .. n
      local st = sys.lstat(p)
      if st and st.type == "directory" then
        local key = st.dev .. ":" .. st.ino
        if not seen[key] then
          seen[key] = true
          walk(p, depth + 1)
        end
      elseif st then
        local base = n:match("^(.+)%.vhd$") or n:match("^VHD%-(.+)$")
        if base then
          idx[base] = idx[base] or {}
          table.insert(idx[base], p)
        end
      end
    end
  end
  for _, d in ipairs(dirs) do walk(d, 0) end
  return idx
end

-- LVHD names a VDI's LV by the volume's path (the VDI uuid): VHD-<uuid>, or LV-<uuid> for raw.
local LVM_POOL_TYPES = { IscsiLUN = true, PreSetup = true, LVM = true, FiberChannel = true }

local function find_lv(lvm, vol)
  local warn
  if vol.pool.type and not LVM_POOL_TYPES[vol.pool.type] then
    warn = problem("EPOOLTYPE", "warning", ("pool %s is of type %s, yet an LVM image was given for it"):format(
      tostring(vol.pool.name or vol.pool.uuid), vol.pool.type))
  end
  for _, name in ipairs({ "VHD-" .. vol.path, "LV-" .. vol.path }) do
    local lv = lvm.lvs[name]
    if lv and lv.problem then return nil, problem(lv.problem_code or "ELV", "error", lv.problem) end
    if lv then return ("lvm:%s:%s"):format(lvm.image, name), warn end
  end
  return nil, problem("ENOENT", "error", ("no LV VHD-%s or LV-%s in VG %s on %s"):format(vol.path, vol.path,
    lvm.vg, lvm.image))
end

--- A finder: function(volume) -> path | nil, problem. Volumes on a mapped pool are
-- looked up in that pool's directory first; then every plain root.
function M.finder(roots)
  local idx
  return function(vol)
    if not vol.path or vol.path == "" then
      return nil, problem("ENOPATH", "error", "volume has no path (never created on primary storage)")
    end
    local pool_uuid = vol.pool and vol.pool.uuid and tostring(vol.pool.uuid):lower()
    local lvm = pool_uuid and roots.lvm and roots.lvm[pool_uuid]
    if lvm then return find_lv(lvm, vol) end
    local pdir = pool_uuid and roots.pools[pool_uuid]
    if pdir then
      for _, cand in ipairs({ pdir .. "/" .. vol.path .. ".vhd", pdir .. "/VHD-" .. vol.path }) do
        local st = sys.stat(cand)
        if st and st.type == "file" then return cand end
      end
    end
    idx = idx or index_dirs(roots.dirs)
    local hits = idx[vol.path]
    if hits and #hits > 0 then
      if #hits > 1 then
        return hits[1], problem("EDUPLICATE", "warning",
          ("%d files named %s.vhd under the storage roots; using %s"):format(#hits, vol.path, hits[1]))
      end
      return hits[1]
    end
    local where = pdir and (pdir .. " or the storage roots") or "the storage roots"
    return nil, problem("ENOENT", "error", ("%s.vhd not found under %s"):format(vol.path, where))
  end
end

-- Disks --------------------------------------------------------------------

local function copy_problems(list, into, prefix)
  for _, p in ipairs(list or {}) do
    local sev = p.severity or "error"
    into[#into + 1] = problem(p.code or "EPROBLEM", sev, (prefix or "") .. (p.message or tostring(p)))
  end
end

-- Resolve and check one disk's chain with the VHD engine.
local function check_disk(vhd, disk, file)
  local h, err, code = vhd.open(file)
  if not h then
    disk.problems[#disk.problems + 1] = problem(code or "EOPEN", "error", tostring(err))
    return
  end
  local info = h:info()
  local chain, cerr, ccode = h:chain()
  h:close()
  local broken = not chain and problem(ccode or "ECHAIN", "error", "broken chain: " .. tostring(cerr))
  chain = chain or { file }
  disk.chain = json.array(chain)
  disk.virtual_size = info and info.footer and info.footer.current_size
  disk.disk_type = info and info.footer and info.footer.disk_type
  -- check() validates the whole chain; each finding names its file.
  local r = vhd.check(file)
  for _, pr in ipairs(r and r.problems or {}) do
    if type(pr) == "table" then
      local where = pr.file and pr.file ~= file and (tostring(pr.file):match("[^/]+$") .. ": ") or ""
      local sev = pr.severity
      -- What stops a recovery is what stops flatten: a damaged footer copy is an
      -- "error" for check, yet flatten reads through the good copy.
      if pr.blocks_flatten == false and sev == "error" then sev = "warning" end
      if pr.blocks_flatten == true then sev = "error" end
      local msg = pr.message
      -- a disk marked `force` is flattened as `vhd flatten --force` does: what
      -- it cannot read is zero-filled, and the report lists those ranges
      if disk.force and sev == "error" then
        sev = "warning"
        msg = "forced, unreadable parts will be zero-filled: " .. tostring(msg)
      end
      copy_problems({ { code = pr.code, severity = sev, message = msg } }, disk.problems, where)
    end
  end
  -- check() usually names what broke the chain; say it ourselves only if it did not
  if broken and not has_error(disk.problems) then disk.problems[#disk.problems + 1] = broken end
  if disk.virtual_size and disk.size and disk.virtual_size ~= disk.size then
    disk.problems[#disk.problems + 1] = problem("ESIZE", "error",
      ("virtual size %d differs from volumes.size %d"):format(disk.virtual_size, disk.size))
  end
end

local function build_disk(vol, vm, ctx)
  local disk = {
    id = vol.id, uuid = vol.uuid, name = vol.name, type = vol.type, device_id = vol.device_id,
    size = vol.size, path = vol.path, format = vol.format, state = vol.state,
    pool = vol.pool and { name = vol.pool.name, uuid = vol.pool.uuid, path = vol.pool.path } or nil,
    parent_base = vol.parent_base,
    problems = json.array({}),
  }
  disk.upload_name = M.hook(ctx.policy, "volume_name")(vol, vm)
  local f = ctx.force or {}
  if f[vol.name or ""] or f[vol.uuid or ""] or f[tostring(vol.id)] or f[vol.path or ""]
      or M.hook(ctx.policy, "force_disk")(vol, vm) then
    disk.force = true
  end
  copy_problems(vol.problems, disk.problems)
  if vol.recoverable == false and not has_error(disk.problems) then
    disk.problems[#disk.problems + 1] = problem("EUNRECOVERABLE", "error", "inventory marks the volume not recoverable")
  end
  if vol.format and vol.format ~= "VHD" then
    disk.problems[#disk.problems + 1] = problem("EFORMAT", "error", ("volume format %s is not VHD"):format(vol.format))
  end
  if not has_error(disk.problems) then
    local file, pr = ctx.find(vol)
    if pr then disk.problems[#disk.problems + 1] = pr end
    disk.file = file
    if file then
      if ctx.vhd then
        check_disk(ctx.vhd, disk, file)
      else
        disk.problems[#disk.problems + 1] = problem("ENOVHD", "error",
          "the VHD engine (salvage.vhd) is not available: chain not checked")
      end
    end
  end
  disk.recoverable = not has_error(disk.problems)
  return disk
end

local function sort_disks(vols)
  local list = {}
  for _, v in ipairs(vols or {}) do list[#list + 1] = v end
  table.sort(list, function(a, b)
    local ra, rb = a.type == "ROOT", b.type == "ROOT"
    if ra ~= rb then return ra end
    local da, db = a.device_id or math.maxinteger, b.device_id or math.maxinteger
    if da ~= db then return da < db end
    return (a.id or 0) < (b.id or 0)
  end)
  return list
end

--- What a guest needs before it boots on KVM (virtio disks and NICs), from its old OS type:
-- {family = "windows"|"linux"|"other", needs = text}. XenServer guests have Xen PV drivers, not
-- virtio ones; a guest without them does not find its root disk.
function M.kvm_readiness(os_type)
  local t = tostring(os_type or ""):lower()
  if t:find("windows", 1, true) then
    return { family = "windows", needs = "virtio drivers (viostor/vioscsi, netkvm) installed before the move "
      .. "(virtio-win), or virt-v2v-in-place on the qcow2; remove XenServer PV tools afterwards" }
  end
  for _, w in ipairs { "linux", "centos", "debian", "ubuntu", "red hat", "rhel", "suse", "fedora", "oracle" } do
    if t:find(w, 1, true) then
      return { family = "linux", needs = "virtio_blk/virtio_scsi and virtio_net in the initramfs "
        .. "(dracut --add-drivers / update-initramfs), fstab by UUID or label (xvda becomes vda)" }
    end
  end
  return { family = "other", needs = "unknown guest: check it has virtio disk and network drivers" }
end

local function build_vm(vm, ctx)
  local pol = ctx.policy
  local owner = M.hook(pol, "account_map")(vm.account, vm.domain) or {}
  local entry = {
    id = vm.id, uuid = vm.uuid, name = vm.name, display_name = vm.display_name or vm.name,
    instance_name = vm.instance_name, state = vm.state, hypervisor = vm.hypervisor,
    owner = {
      domain_path = M.domain_path(owner.domain_path or (vm.domain and vm.domain.path)),
      account = owner.account or (vm.account and vm.account.name),
      type = owner.type or (vm.account and vm.account.type) or 0,
      old_domain_path = vm.domain and vm.domain.path,
      old_account = vm.account and vm.account.name,
    },
    spec = {
      cpu = vm.offering and vm.offering.cpu, speed = vm.offering and vm.offering.speed,
      ram = vm.offering and vm.offering.ram, offering = vm.offering and vm.offering.name,
    },
    os_type = vm.guest_os,
    kvm_guest = M.kvm_readiness(vm.guest_os),
    template = {
      name = M.hook(pol, "template_name")(vm),
      old_name = vm.template and vm.template.name,
      requires_hvm = vm.template and vm.template.requires_hvm,
      password_enabled = vm.template and vm.template.password_enabled,
    },
    start = M.hook(pol, "start_after_import")(vm) and true or false,
    problems = json.array({}),
    disks = json.array({}),
  }
  if type(vm.nics) == "table" and #vm.nics > 0 then
    entry.nics = json.array({})
    for i, n in ipairs(vm.nics) do
      entry.nics[i] = { mac = n.mac, ip = n.ip, network_id = n.network_id, device_id = n.device_id,
        default = n.default and true or false }
    end
  end
  if type(pol) == "table" and type(pol.network_for) == "function" then
    local okn, net = pcall(pol.network_for, vm, entry.owner)
    if okn and net ~= nil then entry.network = net end
  end
  copy_problems(vm.problems, entry.problems)
  local volume_filter = type(pol) == "table" and pol.volume_filter
  local roots = 0
  for _, vol in ipairs(sort_disks(vm.volumes)) do
    local keep = true
    if type(volume_filter) == "function" then keep = volume_filter(vol, vm) end
    if keep then
      local d = build_disk(vol, vm, ctx)
      entry.disks[#entry.disks + 1] = d
      if d.type == "ROOT" then roots = roots + 1 end
    end
  end
  local root = entry.disks[1]
  if roots == 0 then
    entry.problems[#entry.problems + 1] = problem("ENOROOT", "error", "no root disk")
  elseif roots > 1 then
    entry.problems[#entry.problems + 1] = problem("EMULTIROOT", "error", ("%d root disks"):format(roots))
  elseif not root.recoverable then
    local why = {}
    for _, p in ipairs(root.problems) do
      if p.severity == "error" then why[#why + 1] = p.message end
    end
    entry.problems[#entry.problems + 1] = problem("EROOT", "error",
      "root disk cannot be recovered: " .. table.concat(why, "; "))
  end
  for _, d in ipairs(entry.disks) do
    if d.type ~= "ROOT" and not d.recoverable then
      entry.problems[#entry.problems + 1] = problem("EDATADISK", "warning",
        ("data disk %s cannot be recovered and will be left out"):format(d.name))
    end
  end
  if not entry.spec.cpu or not entry.spec.speed or not entry.spec.ram then
    entry.problems[#entry.problems + 1] = problem("ESPEC", "error", "CPU count, speed or RAM unknown")
  end
  if not entry.owner.account then
    entry.problems[#entry.problems + 1] = problem("EOWNER", "error", "no owner account")
  end
  entry.recoverable = not has_error(entry.problems)
  return entry
end

--- build(vms, opts) -> plan | nil, message
-- vms: inventory records (salvage.cloudstack.inventory.load); opts: storage = {"DIR",
-- "POOL_UUID=DIR"} (or parsed roots), policy = policy table, meta = inventory meta
-- (its `skipped` list is carried over), vhd = VHD engine (default salvage.vhd),
-- source = free-form description of where the inventory came from, force_disks =
-- names (or uuids, ids, paths) of disks to flatten with force, policy_record =
-- {file, sha256} of the policy file (plan.policy_record).
function M.build(vms, opts)
  opts = opts or {}
  local roots = opts.storage
  if roots == nil or roots.dirs == nil then
    local r, err = M.parse_storage(roots or {})
    if not r then return nil, err end
    roots = r
  end
  local vhd = opts.vhd
  if vhd == nil then
    local ok, mod = pcall(require, "salvage.vhd")
    vhd = ok and mod or false
  end
  local force = {}
  for _, n in ipairs(opts.force_disks or {}) do force[tostring(n)] = true end
  local ctx = { policy = opts.policy, find = M.finder(roots), vhd = vhd or nil, force = force }
  local p = {
    format = M.FORMAT, version = M.VERSION,
    created = os.date("!%Y-%m-%dT%H:%M:%SZ", opts.now),
    source = opts.source,
    storage = roots.spec,
    vms = json.array({}),
    skipped = json.array({}),
    policy = opts.policy_record,
  }
  for _, vm in ipairs(vms) do
    local keep, reason = true, nil
    if opts.filter_vms then keep, reason = policylib.keep_vm(opts.policy, vm) end
    if keep then
      p.vms[#p.vms + 1] = build_vm(vm, ctx)
    else
      p.skipped[#p.skipped + 1] = { id = vm.id, name = vm.name,
        reason = reason or "excluded by the policy's vm_filter" }
    end
  end
  p.skipped_volumes = json.array({})
  for _, s in ipairs(opts.meta and opts.meta.skipped or {}) do
    if s.kind == "volume" then
      p.skipped_volumes[#p.skipped_volumes + 1] = { id = s.id, name = s.name, vm_id = s.vm_id, reason = s.reason }
    else
      p.skipped[#p.skipped + 1] = { id = s.id, name = s.name, reason = s.reason }
    end
  end
  M.assign_names(p)
  M.summarize(p)
  return p
end

--- A CloudStack host name for a VM name: letters, digits and hyphens, starting
-- with a letter, at most 63 characters (the old name stays the display name).
function M.hostname(name)
  local h = tostring(name):gsub("[^%w%-]+", "-"):gsub("%-+", "-"):gsub("^[^%a]+", ""):gsub("%-+$", "")
  if h == "" then h = "vm" end
  h = h:sub(1, 63):gsub("%-+$", "")
  return h
end

-- Make `name` unique among `taken` (a set of lower-cased names; `also`, another set the
-- name must be unique in too, or nil) by appending "-<id>" (host names stay within 63
-- characters); returns the name, renamed?.
local function unique(taken, name, id, limit, also)
  local function used(n) return taken[n:lower()] or (also and also[n:lower()]) end
  local n = name
  if used(n) then
    local suffix = "-" .. tostring(id)
    n = (limit and #name + #suffix > limit) and (name:sub(1, limit - #suffix) .. suffix) or (name .. suffix)
    local i = 2
    while used(n) do
      n = name .. suffix .. "-" .. i
      i = i + 1
    end
  end
  taken[n:lower()] = true
  if also then also[n:lower()] = true end
  return n, n ~= name
end

--- assign_names(plan): every VM, template and volume gets a name unique in its
-- account (new owner), stable across runs: the old host name (template and
-- volume names from the policy), the old id appended only on a collision, which
-- is reported as a warning on the VM. CloudStack wants a host name unique in its
-- network too: VMs the policy put on one network (vm.network, a shared network of
-- several accounts) get host names unique there as well. Names a plan already has
-- are kept when unique (an edited plan keeps its edits). Returns the plan.
function M.assign_names(p)
  local taken = {}
  local function scope(vm, kind)
    local k = kind .. "\0" .. tostring(vm.owner.domain_path) .. tostring(vm.owner.account)
    taken[k] = taken[k] or {}
    return taken[k]
  end
  local function note(vm, what, old, new, where)
    vm.problems[#vm.problems + 1] = problem("ENAME", "warning",
      ("%s '%s' is also another's in %s: named '%s'"):format(what, old,
        where or ("account " .. M.owner_text(vm.owner)), new))
  end
  local on_network = {}
  for _, vm in ipairs(p.vms) do
    local want = vm.hostname or M.hostname(vm.name)
    local net
    if vm.network ~= nil then
      net = on_network[tostring(vm.network)] or {}
      on_network[tostring(vm.network)] = net
    end
    local mine = scope(vm, "vm")
    local clash_here = mine[want:lower()]
    local h, renamed = unique(mine, want, vm.id, 63, net)
    if renamed then
      note(vm, "host name", want, h, not clash_here and ("network " .. tostring(vm.network)) or nil)
    end
    vm.hostname = h
    if type(vm.template) == "table" and vm.template.name then
      local t, tr = unique(scope(vm, "template"), vm.template.name, vm.id)
      if tr then note(vm, "template name", vm.template.name, t) end
      vm.template.name = t
    end
    for i, d in ipairs(vm.disks or {}) do
      if i > 1 then
        local base = d.upload_name or d.name or ("disk-" .. tostring(d.id))
        local v, vr = unique(scope(vm, "volume"), base, d.id)
        if vr then note(vm, "volume name", base, v) end
        d.upload_name = v
      end
    end
  end
  return p
end

--- (Re)compute p.summary from p.vms.
function M.summarize(p)
  local s = { vms = #p.vms, recoverable = 0, disks = 0, bytes = 0, problems = 0, skipped = #(p.skipped or {}) }
  for _, vm in ipairs(p.vms) do
    if vm.recoverable then s.recoverable = s.recoverable + 1 end
    s.problems = s.problems + #(vm.problems or {})
    for _, d in ipairs(vm.disks or {}) do
      s.disks = s.disks + 1
      s.bytes = s.bytes + (d.size or 0)
      s.problems = s.problems + #(d.problems or {})
    end
  end
  p.summary = s
  return s
end

--- encode(plan) -> pretty JSON text
function M.encode(p)
  return json.pretty(p)
end

local function mark_arrays(p)
  for _, k in ipairs({ "vms", "skipped", "skipped_volumes", "storage" }) do
    if type(p[k]) == "table" then json.array(p[k]) end
  end
  for _, vm in ipairs(p.vms or {}) do
    json.array(vm.problems or {})
    for _, d in ipairs(vm.disks or {}) do json.array(d.problems or {}) end
  end
end

--- decode(text) -> plan | nil, message   (validates what recover relies on)
function M.decode(text)
  local p, err = json.decode(text)
  if not p then return nil, err end
  if type(p) ~= "table" or p.format ~= M.FORMAT then return nil, "not a salvage plan (format ~= salvage-plan)" end
  if p.version ~= M.VERSION then
    return nil, ("plan version %s not supported (want %d)"):format(tostring(p.version), M.VERSION)
  end
  if type(p.vms) ~= "table" then return nil, "plan has no vms array" end
  for i, vm in ipairs(p.vms) do
    local where = ("vms[%d]"):format(i)
    if vm.id == nil then return nil, where .. ": missing id" end
    if type(vm.name) ~= "string" then return nil, where .. ": missing name" end
    if type(vm.owner) ~= "table" or type(vm.owner.account) ~= "string" then
      return nil, where .. ": missing owner.account"
    end
    if type(vm.disks) ~= "table" then return nil, where .. ": missing disks" end
    for j, d in ipairs(vm.disks) do
      if type(d.type) ~= "string" then return nil, ("%s.disks[%d]: missing type"):format(where, j) end
    end
    vm.owner.domain_path = M.domain_path(vm.owner.domain_path)
    if vm.problems == nil then vm.problems = {} end
  end
  p.skipped = p.skipped or {}
  mark_arrays(p)
  M.assign_names(p)
  return p
end

--- load(path) -> plan | nil, message
function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  local p, derr = M.decode(text)
  if not p then return nil, path .. ": " .. derr end
  return p
end

--- save(plan, path): atomically.
function M.save(p, path)
  return sys.write_atomic(path, M.encode(p))
end

local function human(n)
  if not n then return "-" end
  local units = { "B", "K", "M", "G", "T" }
  local i = 1
  local v = n + 0.0
  while v >= 1024 and i < #units do v = v / 1024; i = i + 1 end
  if i == 1 then return ("%dB"):format(n) end
  if v == math.floor(v) then return ("%d%s"):format(math.floor(v), units[i]) end
  return ("%.1f%s"):format(v, units[i])
end
M.human = human

--- load_policy(file | nil) -> policy table | nil, message  (salvage.policy.load / .new)
function M.load_policy(file)
  if file then return policylib.load(file) end
  return policylib.new({})
end

--- policy_record(file | nil) -> {file, sha256} | nil, message: what a plan
-- records of the policy it was made with (file = json.null: the defaults).
function M.policy_record(file)
  if not file then return { file = json.null, sha256 = json.null } end
  local real = sys.realpath(file) or file
  local sum, err = require("salvage.crypto").sha256_file(real)
  if not sum then return nil, err end
  return { file = real, sha256 = sum }
end

--- policy_of(plan, file | nil, changed) -> policy, nil, file | nil, message
-- The policy a recovery of `plan` uses: the plan's own (the file it recorded,
-- unchanged) by default; `file` when it is the same; another (or a changed
-- file) only when `changed` says so.
function M.policy_of(p, file, changed)
  local rec = type(p.policy) == "table" and p.policy or nil
  if not rec then
    local pol, err = M.load_policy(file)
    return pol, err, file and (sys.realpath(file) or file)
  end
  local want = rec.file ~= json.null and rec.file or nil
  local use = file or want
  if not changed then
    local now, err = M.policy_record(use)
    if not now then return nil, err end
    if now.sha256 ~= rec.sha256 then
      return nil, ("the plan was made with %s%s; %s differs: give --policy-changed to recover with it anyway"):format(
        want and ("policy " .. want) or "the default policy",
        rec.sha256 ~= json.null and (" (sha256 " .. tostring(rec.sha256):sub(1, 12) .. ")") or "",
        use or "the default policy")
    end
  end
  local pol, err = M.load_policy(use)
  return pol, err, use and (sys.realpath(use) or use)
end

--- inventory(opts, policy) -> vms, meta, source | nil, message
-- The VMs of the old cloud from exactly one of opts.db (URL), opts.dump (list of
-- mysqldump files, loaded on a private server) or opts.inventory (a JSON file
-- saved by `salvage inventory`), filtered by the policy's vm_filter.
function M.inventory(opts, policy)
  if opts.inventory then
    local f, err = io.open(opts.inventory, "rb")
    if not f then return nil, err end
    local vms, derr = json.decode(f:read("a"))
    f:close()
    if type(vms) ~= "table" then return nil, opts.inventory .. ": " .. tostring(derr or "not an array") end
    local keep, skipped = {}, {}
    for _, vm in ipairs(vms) do
      local ok, reason = policylib.keep_vm(policy, vm)
      if ok then
        keep[#keep + 1] = vm
      else
        skipped[#skipped + 1] = { id = vm.id, name = vm.name, reason = reason }
      end
    end
    return keep, { skipped = skipped }, { inventory = opts.inventory }
  end
  local okdb, db = pcall(require, "salvage.db")
  local okinv, inventory = pcall(require, "salvage.cloudstack.inventory")
  if not okdb or not okinv then
    return nil, "reading a database needs salvage.db and salvage.cloudstack.inventory, which this build lacks"
  end
  local dumps = opts.dump or {}
  local conn, err
  if opts.db then
    conn, err = db.connect(opts.db)
  elseif #dumps == 1 then
    conn, err = db.ephemeral { dump = dumps[1] }
  else
    conn, err = db.ephemeral { load = dumps }
  end
  if not conn then return nil, "database: " .. tostring(err) end
  local vms, meta = inventory.load(conn, { policy = policy })
  conn:close()
  if not vms then return nil, "inventory: " .. tostring(meta) end
  local source = opts.db and { database = log.scrub((opts.db:gsub("//([^:/@]*):[^@/]*@", "//%1:***@"))) }
    or { dump = dumps }
  if type(meta) == "table" then source.cloudstack_version = meta.version end
  return vms, meta, source
end

--- A table for people: one line per VM and disk, then a summary line.
--- rows(p [, {repeat_vm = true}]) -> the plan as rows, header first: one row
-- per disk; the VM's columns only on its first disk unless repeat_vm (CSV).
function M.rows(p, opts)
  local repeat_vm = opts and opts.repeat_vm
  local rows = { { "VMID", "VM", "OWNER", "CPU", "MHZ", "RAM", "DISK", "TYPE", "SIZE", "CHAIN", "STATUS" } }
  for _, vm in ipairs(p.vms) do
    local owner = M.owner_text(vm.owner)
    local first = true
    local vm_status = vm.recoverable and "ok" or "NOT RECOVERABLE"
    local disks = vm.disks
    if #disks == 0 then disks = { { name = "-", type = "-", problems = {} } } end
    for _, d in ipairs(disks) do
      local status
      if d.recoverable == false then
        local msgs = {}
        for _, pr in ipairs(d.problems or {}) do
          if pr.severity == "error" then msgs[#msgs + 1] = pr.code end
        end
        status = "ERROR " .. table.concat(msgs, ",")
      else
        status = first and vm_status or "ok"
      end
      local show = first or repeat_vm
      rows[#rows + 1] = {
        show and tostring(vm.id) or "", show and vm.name or "", show and owner or "",
        show and tostring(vm.spec.cpu or "?") or "", show and tostring(vm.spec.speed or "?") or "",
        show and tostring(vm.spec.ram or "?") or "",
        d.name or "-", d.type or "-", repeat_vm and tostring(d.size or "") or human(d.size),
        d.chain and tostring(#d.chain) or "-", status,
      }
      first = false
    end
  end
  return rows
end

--- The plan as CSV: one line per disk, every column filled, sizes in bytes.
function M.csv(p)
  return columns.csv(M.rows(p, { repeat_vm = true }))
end

function M.table(p)
  local rows = M.rows(p)
  local out = columns.lines(rows)
  local s = p.summary or M.summarize(p)
  out[#out + 1] = ("%d VMs (%d recoverable), %d disks, %s, %d problems, %d skipped"):format(
    s.vms, s.recoverable, s.disks, human(s.bytes), s.problems, s.skipped or 0)
  for _, vm in ipairs(p.vms) do
    for _, pr in ipairs(vm.problems or {}) do
      out[#out + 1] = ("  %s: %s %s: %s"):format(vm.name, pr.severity, pr.code, pr.message)
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
