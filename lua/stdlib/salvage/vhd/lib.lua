--- The Lua half of salvage.vhd: scan (chain trees of many files) and coalesce
-- (policy around the C copy loop). luaopen_salvage_vhd calls the returned
-- function with the module table, so `require "salvage.vhd"` has them all.
local lvm = require "salvage.lvm"
local sys = require "salvage.sys"

local function glob_pattern(glob)
  local p = glob:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", "[^/]*"):gsub("%?", "[^/]")
  return "^" .. p .. "$"
end

local function basename(p) return p:match("([^/]+)$") or p end
local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

local function walk(path, pattern, out, depth)
  local st = sys.stat(path)
  if not st then return end
  if st.type == "directory" then
    if depth > 32 then return end
    local names = sys.dir(path) or {}
    table.sort(names)
    for _, n in ipairs(names) do walk(path .. "/" .. n, pattern, out, depth + 1) end
  elseif st.type == "file" and basename(path):match(pattern) then
    out[#out + 1] = path
  end
end

--- What an LV of an LVHD SR is, from its name (doc/lvhd.md §1).
local function lv_kind(name)
  if name:match("^VHD%-") then return "vhd" end
  if name:match("^LV%-") then return "raw" end
  if name == "MGT" then return "mgt" end
  -- SM's journals (journaler.py, lvhdutil.py): an operation was interrupted
  if name:match("^inflate_") or name:match("^clone_") or name:match("^jvhd_") or name:match("^coalesce_")
    or name:match("^leaf%-coalesce_") or name:match("^relink_") then
    return "journal"
  end
  return "other"
end

local function has_tag(lv, tag)
  for _, t in ipairs(lv.tags) do if t == tag then return true end end
  return false
end

--- One VHD LV: what its footer and header say; its parent resolved the LVHD way (in C).
local function scan_vhd_lv(vhd, e)
  local h, msg, code = vhd.open(e.path)
  if not h then
    e.problems[#e.problems + 1] = { code = code == "ECHECKSUM" and "FOOTER_BOTH_BAD" or "UNREADABLE",
      severity = "error", message = msg }
    return
  end
  local info = h:info()
  e.capacity, e.hidden, e.uuid = info.footer.current_size, info.footer.hidden, info.footer.uuid
  e.disk_type, e.allocated_blocks = info.footer.disk_type, info.allocated_blocks
  for _, p in ipairs(info.problems) do
    e.problems[#e.problems + 1] = { code = p.code, severity = p.severity, message = p.message }
  end
  if info.footer.disk_type == "differencing" then
    e.parent_uuid, e.parent_name = info.header.parent_uuid, info.header.parent_name
    local p, pmsg = h:parent()
    if p then
      e.parent = p:info().path
      p:close()
    else
      e.problems[#e.problems + 1] = { code = "PARENT_MISSING", severity = "error", message = pmsg }
    end
  end
  h:close()
end

local ENTITIES = { lt = "<", gt = ">", amp = "&", quot = '"', apos = "'" }
local function unxml(v) return (v:gsub("&(%a+);", function(n) return ENTITIES[n] end)) end

--- XenServer's SR metadata volume (MGT, doc/lvhd.md §2): "XSSM:<length>:1:2", then XML records
-- padded with spaces. -> {sr = {uuid, name_label, name_description}, vdis = {uuid = {...}}} | nil
local function parse_mgt(blob)
  local len = blob:match("^XSSM:%s*(%d+)%s*:1:%d")
  if not len then return nil end
  blob = blob:sub(1, tonumber(len))
  local function field(rec, k)
    local v = rec:match("<" .. k .. ">(.-)</" .. k .. ">")
    return v and unxml(v)
  end
  local head = blob:match("^(.-)<vdi>") or blob
  local r = { sr = { uuid = field(head, "uuid"), name_label = field(head, "name_label"),
    name_description = field(head, "name_description") }, vdis = {} }
  for rec in blob:gmatch("<vdi>(.-)</vdi>") do
    local v = {}
    for _, k in ipairs({ "name_label", "name_description", "uuid", "is_a_snapshot", "snapshot_of", "snapshot_time",
      "type", "vdi_type", "read_only", "deleted" }) do
      v[k] = field(rec, k)
    end
    if v.uuid and v.deleted ~= "1" then r.vdis[v.uuid] = v end
  end
  return r
end

--- Every LV of the VG on an LVM image or device (lvm:IMAGE): VHD chains, raw volumes, the rest.
local function scan_lvm(vhd, spec, list, vgs)
  local image = spec:sub(5)
  local vg, msg, code = lvm.read(image)
  if not vg then
    list[#list + 1] = { path = spec, kind = "lvm", problems = { { code = code, severity = "error", message = msg } } }
    return
  end
  vgs[#vgs + 1] = vg
  local mgt
  for _, lv in ipairs(vg.lvs) do
    if lv.name == "MGT" and not lv.problem then
      local blob = lvm.read_lv(image, "MGT", 0, math.min(lv.size, 4 << 20))
      mgt = blob and parse_mgt(blob)
      vg.sr_metadata = mgt
    end
  end
  for _, lv in ipairs(vg.lvs) do
    local e = { path = "lvm:" .. image .. ":" .. lv.name, lv = lv.name, vg = vg.name, kind = lv_kind(lv.name),
      size = lv.size, read_only = lv.read_only, problems = {} }
    local vdi = mgt and mgt.vdis[lv.name:match("^%u+%-(.+)$") or ""]
    if vdi then e.name_label, e.snapshot_of = vdi.name_label, vdi.snapshot_of ~= "" and vdi.snapshot_of or nil end
    if lv.problem then
      e.problems[1] = { code = lv.problem_code, severity = "error", message = lv.problem }
    elseif e.kind == "vhd" then
      scan_vhd_lv(vhd, e)
    elseif e.kind == "raw" then
      -- a raw VDI has no footer: its hidden flag is an LV tag, its size the LV's
      e.capacity, e.hidden = lv.size, has_tag(lv, "hidden")
    elseif e.kind == "journal" then
      e.problems[1] = { code = "SM_JOURNAL", severity = "warning", message = ("%s: a journal of XenServer's "
        .. "storage manager: an operation (inflate, clone, coalesce) was interrupted; check the VDIs it names")
        :format(lv.name) }
    end
    list[#list + 1] = e
  end
end

--- vhd.scan(paths [, {match = GLOB}]) -> array of {path, capacity, size, hidden, uuid, parent_uuid, parent, problems},
-- vgs. A path "lvm:IMAGE" scans every LV of the VG on that image or device: entries then also have
-- kind ("vhd", "raw", "mgt", "journal", "other"), lv, vg, read_only, path "lvm:IMAGE:LV", and the
-- name_label (snapshot_of) XenServer kept for the VDI in the SR's MGT volume; vgs lists the VGs read
-- (salvage.lvm's tables, with sr_metadata = {sr, vdis} from MGT).
local function scan(vhd, paths, opts)
  opts = opts or {}
  if type(paths) == "string" then paths = { paths } end
  local pattern = glob_pattern(opts.match or "*.vhd")
  local files, lvms, vgs = {}, {}, {}
  for _, p in ipairs(paths) do
    local st = sys.stat(p)
    if p:match("^lvm:") then
      lvms[#lvms + 1] = p
    elseif st and st.type == "file" then
      files[#files + 1] = p
    else
      walk((p:gsub("(.)/+$", "%1")), pattern, files, 0)
    end
  end
  local list, by_uuid, by_real = {}, {}, {}
  for _, path in ipairs(files) do
    local st = sys.stat(path)
    local e = { path = path, size = st and st.size, problems = {} }
    local h, msg, code = vhd.open(path)
    if not h then
      e.problems[1] = { code = code == "ECHECKSUM" and "FOOTER_BOTH_BAD" or "UNREADABLE", severity = "error",
        message = msg }
    else
      local info = h:info()
      h:close()
      e.capacity = info.footer.current_size
      e.hidden = info.footer.hidden
      e.uuid = info.footer.uuid
      e.disk_type = info.footer.disk_type
      e.allocated_blocks = info.allocated_blocks
      if info.header and info.footer.disk_type == "differencing" then
        e.parent_uuid = info.header.parent_uuid
        e.parent_name = info.header.parent_name
        e.locators = info.header.locators
      end
      for _, p in ipairs(info.problems) do
        e.problems[#e.problems + 1] = { code = p.code, severity = p.severity, message = p.message }
      end
      by_uuid[e.uuid] = by_uuid[e.uuid] or {}
      table.insert(by_uuid[e.uuid], e)
    end
    by_real[sys.realpath(path) or path] = e
    list[#list + 1] = e
  end
  for _, e in ipairs(list) do
    if e.parent_uuid then
      -- the named file first (locators, then the header's name), verified by UUID
      local named, named_entry = nil, nil
      local cands = {}
      for _, l in ipairs(e.locators or {}) do if l.path then cands[#cands + 1] = l.path end end
      if e.parent_name and e.parent_name ~= "" then cands[#cands + 1] = e.parent_name end
      for _, c in ipairs(cands) do
        local full = c:sub(1, 1) == "/" and c or (dirname(e.path) .. "/" .. c:gsub("^%./", ""))
        local real = sys.realpath(full)
        if real then
          named = named or full
          named_entry = by_real[real]
          if not named_entry then
            local h = vhd.open(full)
            if h then
              local info = h:info()
              h:close()
              named_entry = { path = full, uuid = info.footer.uuid, outside = true }
            end
          end
          if named_entry then break end
        end
      end
      named = named or (e.parent_name and dirname(e.path) .. "/" .. e.parent_name)
      if named_entry and named_entry.uuid == e.parent_uuid then
        e.parent = named_entry.path
      else
        -- several copies may share a UUID: prefer one beside the child
        local found
        for _, c in ipairs(by_uuid[e.parent_uuid] or {}) do
          if c ~= e and (not found or dirname(c.path) == dirname(e.path)) then found = c end
        end
        if found then
          e.parent = found.path
          e.problems[#e.problems + 1] = {
            code = named_entry and "PARENT_UUID_MISMATCH" or "PARENT_FOUND_BY_UUID",
            severity = "warning",
            message = ("%s: parent %s %s; %s has the parent UUID %s"):format(basename(e.path), tostring(named),
              named_entry and ("has UUID " .. tostring(named_entry.uuid)) or "is missing", found.path, e.parent_uuid),
          }
        else
          e.problems[#e.problems + 1] = {
            code = named_entry and "PARENT_UUID_MISMATCH" or "PARENT_MISSING",
            severity = "error",
            message = ("%s: parent %s %s, and no scanned VHD has UUID %s"):format(basename(e.path), tostring(named),
              named_entry and ("has UUID " .. tostring(named_entry.uuid)) or "is missing", e.parent_uuid),
          }
        end
      end
    end
    e.locators = nil
  end
  for _, spec in ipairs(lvms) do scan_lvm(vhd, spec, list, vgs) end
  table.sort(list, function(a, b) return a.path < b.path end)
  return list, vgs
end

--- Children of the VHD with UUID `uuid` among the VHDs of directory `dir`.
local function children_in(vhd, dir, uuid)
  local kids = {}
  for _, e in ipairs(scan(vhd, { dir }, { match = "*" })) do
    if e.parent_uuid == uuid then kids[#kids + 1] = e.path end
  end
  return kids
end

--- vhd.coalesce(child, {force = bool}) -> true | nil, msg, code
local function coalesce(vhd, child, opts)
  opts = opts or {}
  if child:match("^lvm:") then
    return nil, ("coalesce: %s: a VHD inside an LVM image is only read; flatten it instead"):format(child), "EROFS"
  end
  local h, msg, code = vhd.open(child, { search = opts.search })
  if not h then return nil, msg, code end
  local info = h:info()
  if info.footer.disk_type ~= "differencing" then
    h:close()
    return nil, ("coalesce: %s is a %s disk, not differencing: it has no parent"):format(child,
      info.footer.disk_type), "EINVAL"
  end
  local p, pmsg, pcode = h:parent()
  if not p then
    h:close()
    return nil, pmsg, pcode
  end
  local pinfo = p:info()
  p:close()
  local mine = sys.realpath(child)
  local others = {}
  -- only files in the parent's directory; a parent shared across directories is the caller's business
  local st = sys.stat(dirname(pinfo.path))
  if st then
    for _, k in ipairs(children_in(vhd, dirname(pinfo.path), pinfo.footer.uuid)) do
      if sys.realpath(k) ~= mine then others[#others + 1] = k end
    end
  end
  if #others > 0 and not opts.force then
    h:close()
    return nil, ("coalesce: %s has %d other child%s (%s); writing %s into it would corrupt them "
      .. "(flatten instead, or --force)"):format(pinfo.path, #others, #others > 1 and "ren" or "",
      table.concat(others, ", "), child), "ECHILDREN"
  end
  local ok, cmsg, ccode = vhd._coalesce(h)
  h:close()
  if not ok then return nil, cmsg, ccode end
  return true
end

return function(M)
  M.scan = function(paths, opts) return scan(M, paths, opts) end
  M.coalesce = function(child, opts) return coalesce(M, child, opts) end
end
