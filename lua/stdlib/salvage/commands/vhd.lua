--- salvage vhd read|scan|check|flatten|coalesce|create: the VHD engine on the command line.
local args = require "salvage.args"
local cli = require "salvage.cli"
local json = require "salvage.json"
local log = require "salvage.log"
local progress = require "salvage.progress"
local vhd = require "salvage.vhd"

local M = { summary = "VHD disks: read, scan, check, flatten, coalesce, create" }

local function out(...) io.stdout:write(...) end

local function emit_json(v) out(json.pretty(v)) end

local function arrays(problems)
  local list = {}
  for i, p in ipairs(problems or {}) do
    list[i] = { code = p.code, severity = p.severity, message = p.message, block = p.block }
  end
  return json.array(list)
end

local function basename(p) return p:match("([^/]+)$") or p end

--- "16G", "512M", "1048576B" -> bytes; a bare number is in `bare` units
-- (bytes for --block-size; MiB for --size, as vhd-util create -s).
local function parse_size(s, bare)
  local n, unit, b = tostring(s):match("^(%d+)([KMGTkmgt]?)i?([Bb]?)$")
  n = math.tointeger(tonumber(n))
  if not n then return nil end
  if unit == "" and b == "" then return n * (bare or 1) end
  local mul = ({ [""] = 1, k = 1 << 10, m = 1 << 20, g = 1 << 30, t = 1 << 40 })[unit:lower()]
  return n * mul
end

-- vhd-util spells the file `-n FILE`; salvage takes it as the positional too.
local function file_arg(opts, what)
  if opts.name and opts[1] then cli.usage_error(("vhd %s: give FILE or -n FILE, not both"):format(what)) end
  local f = opts.name or opts[1]
  if not f then cli.usage_error(("vhd %s: missing FILE (or -n FILE)"):format(what)) end
  return f
end

local NAME_OPT = { "name", short = "n", value = "FILE", help = "the VHD (vhd-util's spelling of FILE)" }

local function mb(n) return ("%d MB (%d Bytes)"):format(n // (1 << 20), n) end

local function date(unix) return os.date("!%a %b %e %H:%M:%S %Y", unix) end

local subcommands = {}

-- read ---------------------------------------------------------------------
subcommands.read = {
  spec = {
    usage = "salvage vhd read FILE [--json]   (or vhd-util's: read -p -n FILE)",
    summary = "Show a VHD's footer and header (like vhd-util read -p -n)",
    options = {
      NAME_OPT,
      { "print", short = "p", help = "print the summary (vhd-util's -p; the default)" },
      { "json", help = "machine-readable output (same as --format json)" },
      { "format", value = "F", choices = { "table", "json" }, default = "table", help = "output format" },
    },
    positionals = { min = 0, max = 1 },
  },
  run = function(opts)
    local file = file_arg(opts, "read")
    if opts.format == "json" then opts.json = true end
    local h, msg = vhd.open(file)
    if not h then cli.fail(1, msg) end
    local info = h:info()
    h:close()
    if opts.json then
      local header = info.header
      if header then header.locators = json.array(header.locators) end
      info.problems = arrays(info.problems)
      info.header = header or json.null
      emit_json(info)
      return 0
    end
    local f = info.footer
    local function row(k, v) out(("%-20s: %s\n"):format(k, tostring(v))) end
    out("VHD Footer Summary:\n-------------------\n")
    row("Cookie", f.cookie)
    row("Features", "(" .. f.features .. ")")
    row("File format version", f.version)
    row("Data offset", f.data_offset or "none (fixed disk)")
    row("Timestamp", date(f.timestamp_unix))
    row("Creator Application", "'" .. f.creator_app .. "'")
    row("Creator version", f.creator_version)
    row("Creator OS", f.creator_os)
    row("Original disk size", mb(f.original_size))
    row("Current disk size", mb(f.current_size))
    local g = f.geometry
    row("Geometry", ("Cyl: %d, Hds: %d, Sctrs: %d"):format(g.cylinders, g.heads, g.sectors))
    row("", ("= %s"):format(mb(g.cylinders * g.heads * g.sectors * 512)))
    row("Disk type", ({ fixed = "Fixed hard disk", dynamic = "Dynamic hard disk",
      differencing = "Differencing hard disk" })[f.disk_type] or f.disk_type)
    row("Checksum", ("0x%08x|0x%08x (%s)"):format(f.checksum, f.checksum_computed, f.checksum_ok and "Good!" or "Bad!"))
    row("UUID", f.uuid)
    row("Saved state", f.saved_state ~= 0 and "Yes" or "No")
    row("Hidden", f.hidden_byte)
    row("Footer used", f.source == "copy" and "copy at offset 0" or "end of file")
    if info.header then
      local hd = info.header
      out("\nVHD Header Summary:\n-------------------\n")
      row("Cookie", "cxsparse")
      row("Table offset", hd.table_offset)
      row("Header version", hd.version)
      row("Max BAT size", hd.max_bat_entries)
      row("Block size", ("%d (%d MB)"):format(hd.block_size, hd.block_size >> 20))
      row("Parent name", hd.parent_name or "")
      row("Parent UUID", hd.parent_uuid or "")
      row("Parent timestamp", hd.parent_timestamp and date(hd.parent_timestamp + 946684800) or "")
      row("Checksum", ("0x%08x|0x%08x (%s)"):format(hd.checksum, hd.checksum_computed,
        hd.checksum_ok and "Good!" or "Bad!"))
      for i, l in ipairs(hd.locators) do
        row("Parent locator " .. (i - 1), ("%s offset %d length %d space %d: %s"):format(l.code, l.data_offset,
          l.data_length, l.data_space, l.path or "?"))
      end
      row("Allocated blocks", ("%d of %d"):format(info.allocated_blocks, hd.bat_entries))
      row("Batmap", hd.batmap and "present" or "none")
    end
    for _, p in ipairs(info.problems) do out(("%s %s: %s\n"):format(p.severity, p.code, p.message)) end
    return 0
  end,
}

-- scan ---------------------------------------------------------------------
subcommands.scan = {
  spec = {
    usage = "salvage vhd scan PATH... [--match GLOB] [--format table|json|csv]   (or: scan -f -m 'DIR/*.vhd')",
    summary = "Every VHD under the given paths, as chain trees (like vhd-util scan -p)",
    description = "A parent is found by the child's parent name and verified by UUID; when that file is "
      .. "missing or wrong, the scanned files are searched for the parent UUID.\n"
      .. "vhd-util's spellings work: -m PATTERN (a glob, with its directory when no PATH is given), "
      .. "-f and -p (accepted; the scan always reads footers and headers and prints the tree).\n"
      .. "PATH lvm:IMAGE (a LUN image or block device of an LVM-based SR) lists its VG and every LV, "
      .. "like vhd-util scan -l: VHD chains, raw volumes (raw=), and the other LVs (lv=). Read-only.",
    options = {
      { "match", short = "m", value = "GLOB", help = "file names to consider (default *.vhd)" },
      { "fast", short = "f", help = "(vhd-util's -f; accepted)" },
      { "print", short = "p", help = "(vhd-util's -p: the tree; the default)" },
      { "json", help = "machine-readable output (same as --format json)" },
      { "format", value = "F", choices = { "table", "json", "csv" }, default = "table", help = "output format" },
    },
    positionals = { min = 0 },
  },
  run = function(opts)
    local paths, match = { table.unpack(opts) }, opts.match or "*.vhd"
    if #paths == 0 then
      -- vhd-util scan -m '/var/run/sr-mount/SR/*.vhd': the directory is in the pattern
      local dir, glob = match:match("^(.*)/([^/]+)$")
      if not dir then cli.usage_error("vhd scan: give a PATH, or -m 'DIR/GLOB'") end
      paths, match = { dir == "" and "/" or dir }, glob
      opts[1] = paths[1]
    end
    local list, vgs = vhd.scan(paths, { match = match })
    if opts.format == "json" then opts.json = true end
    if opts.format == "csv" then
      local rows = { { "path", "capacity", "size", "hidden", "parent", "problems" } }
      for _, e in ipairs(list) do
        local codes = {}
        for _, p in ipairs(e.problems or {}) do codes[#codes + 1] = p.code end
        rows[#rows + 1] = { e.path, e.capacity, e.size, e.hidden and 1 or 0, e.parent or "",
          table.concat(codes, " ") }
      end
      out(require("salvage.columns").csv(rows))
      return 0
    end
    if opts.json then
      for _, e in ipairs(list) do
        e.problems = arrays(e.problems)
        if e.parent == nil then e.parent = json.null end
      end
      emit_json(json.array(list))
      return 0
    end
    for _, vg in ipairs(vgs) do
      out(("vg=%s pv=%s extent_size=%d seqno=%d lvs=%d\n"):format(vg.name, vg.pv_id, vg.extent_size, vg.seqno,
        #vg.lvs))
      local sr = vg.sr_metadata and vg.sr_metadata.sr
      if sr then out(("sr=%s name=%q\n"):format(tostring(sr.uuid), sr.name_label or "")) end
      for _, w in ipairs(vg.warnings) do out(("! warning: %s\n"):format(w)) end
    end
    local kids, roots, by_path = {}, {}, {}
    for _, e in ipairs(list) do by_path[e.path] = e end
    for _, e in ipairs(list) do
      if e.parent and by_path[e.parent] then
        kids[e.parent] = kids[e.parent] or {}
        table.insert(kids[e.parent], e)
      else
        roots[#roots + 1] = e
      end
    end
    -- names relative to the one scanned directory (or LVM image), as vhd-util prints them; else paths
    local root = #opts == 1 and (opts[1]:match("^lvm:") and opts[1] .. ":" or opts[1]:gsub("/+$", "") .. "/") or nil
    local function name(p)
      if root and p:sub(1, #root) == root then return p:sub(#root + 1) end
      return p
    end
    local function show(e, depth)
      local pad = ("   "):rep(depth)
      -- the VDI's name as XenServer kept it in MGT (not a vhd-util field; last on the line)
      local label = e.name_label and (" name=%q"):format(e.name_label) or ""
      if e.kind == "lvm" then -- an image that could not be read as an LVM PV
        out(("lvm=%s unreadable\n"):format(e.path:sub(5)))
      elseif e.kind == "raw" then
        out(("%sraw=%s capacity=%d size=%d hidden=%d%s\n"):format(pad, name(e.path), e.size, e.size,
          e.hidden and 1 or 0, label))
      elseif e.kind == "mgt" or e.kind == "other" or e.kind == "journal" then
        out(("%slv=%s size=%d (%s)\n"):format(pad, name(e.path), e.size,
          ({ mgt = "SR metadata", journal = "SM journal" })[e.kind] or "not a VDI"))
      else
        out(("%svhd=%s capacity=%s size=%s hidden=%s parent=%s%s\n"):format(pad, name(e.path),
          tostring(e.capacity or "?"), tostring(e.size or "?"), e.hidden and 1 or 0,
          e.parent and name(e.parent) or "none", label))
      end
      for _, p in ipairs(e.problems) do
        out(("%s   ! %s %s: %s\n"):format(("   "):rep(depth), p.severity, p.code, p.message))
      end
      for _, k in ipairs(kids[e.path] or {}) do show(k, depth + 1) end
    end
    local status = 0
    for _, r in ipairs(roots) do
      show(r, 0)
      if r.kind == "lvm" then status = 1 end
    end
    return status
  end,
}

-- check --------------------------------------------------------------------
subcommands.check = {
  spec = {
    usage = "salvage vhd check FILE [--search DIR]... [--json]   (or vhd-util's: check -n FILE)",
    summary = "Validate a VHD and its whole chain",
    description = "Both footer copies, checksums, header, BAT bounds, overlaps, blocks clobbering the footer, "
      .. "truncation, batmap against bitmaps, parent presence, UUID and timestamp.\n"
      .. "Exit 0 when nothing (beyond info) was found, 1 when any error or warning was.",
    options = {
      NAME_OPT,
      { "search", value = "DIR", multi = true, help = "also look here for a missing parent (by UUID)" },
      { "json", help = "machine-readable output (same as --format json)" },
      { "format", value = "F", choices = { "table", "json" }, default = "table", help = "output format" },
    },
    positionals = { min = 0, max = 1 },
  },
  run = function(opts)
    opts[1] = file_arg(opts, "check")
    if opts.format == "json" then opts.json = true end
    local r = vhd.check(opts[1], { search = opts.search })
    if opts.json then
      r.problems = arrays(r.problems)
      r.chain = r.chain and json.array(r.chain) or nil
      emit_json(r)
    else
      for _, p in ipairs(r.problems) do out(("%s %s: %s\n"):format(p.severity, p.code, p.message)) end
      if r.ok then
        out(("%s is valid\n"):format(opts[1]))
      else
        out(("%s is NOT valid\n"):format(opts[1]))
      end
    end
    return r.ok and 0 or 1
  end,
}

-- flatten ------------------------------------------------------------------
-- -o -: the same output as a file (all-zero blocks left out, so the bytes match a flatten to a
-- file but for the footer's identity), sent as it is made; nothing but data on stdout.
local function flatten_to_stdout(opts)
  if opts.force then
    cli.fail(2, "flatten: --force cannot write to standard output: sectors it zero-fills must be listed "
      .. "before anything is sent; flatten to a file instead")
  end
  if io.stdout:seek() ~= nil and (io.stdout:seek("end") or 0) > 0 then
    cli.fail(2, "flatten: standard output is a non-empty file; refusing to write into it")
  end
  -- VHD: all-zero blocks left out as in a file; qcow2: as asked (--drop-zero reads the data twice)
  local drop = opts.format ~= "qcow2" or opts.drop_zero
  local s, msg, code = vhd.stream(opts[1], { format = opts.format, drop_zero = drop, search = opts.search })
  if not s then cli.fail(1, ("flatten: %s (%s)"):format(msg, code)) end
  local r
  r, msg, code = s:write_to("-")
  local len = s:length()
  s:close()
  if not r then cli.fail(1, ("flatten: %s (%s)"):format(msg, code)) end
  if opts.json then
    -- stdout is the disk: the result goes to stderr, one line under --log-json (every line a record)
    local res = { path = "-", format = opts.format, bytes_written = r.bytes, sha256 = r.sha256 }
    io.stderr:write(log.json_mode() and (json.encode(res) .. "\n") or json.pretty(res))
  else
    log.info(("flattened %s: %s, %d bytes to standard output"):format(opts[1], opts.format, len),
      { sha256 = r.sha256 })
  end
  return 0
end

subcommands.flatten = {
  spec = {
    usage = "salvage vhd flatten LEAF -o OUT [--format vhd|raw|qcow2] [--drop-zero] [--force] [--overwrite] "
      .. "[--search DIR]... [--json]",
    summary = "Write the full content of LEAF's chain into a new standalone file",
    description = "LEAF is a file, or lvm:IMAGE:LV for a volume of an LVM-based SR (a VHD- chain is read "
      .. "through its LVHD parents; an LV- volume is copied as it is). "
      .. "Sources are opened read-only. OUT is written under a temporary name, fsynced and renamed; "
      .. "on failure nothing is left under OUT. Refuses (exit 1) when the chain cannot be read exactly; "
      .. "--force proceeds only where the loss can be stated, and lists the affected sectors. "
      .. "-o - writes the output to standard output, as one stream of known length (for pipes: "
      .. "| ssh host dd of=..., | curl -T -); the summary then goes to standard error.",
    options = {
      { "output", short = "o", value = "OUT", required = true, help = "new file (must not exist), - for stdout" },
      { "format", value = "F", choices = { "vhd", "raw", "qcow2" }, default = "vhd",
        help = "dynamic VHD, raw image, or qcow2 (v3, 64 KiB clusters, for KVM)" },
      { "drop-zero", help = "qcow2: read the data once more first and leave all-zero clusters out of the file" },
      { "force", help = "go past damage whose loss can be listed exactly" },
      { "overwrite", help = "replace OUT if it exists (never a file of the chain)" },
      { "search", value = "DIR", multi = true, help = "also look here for a missing parent (by UUID)" },
      { "json", help = "machine-readable result" },
    },
    positionals = { min = 1, max = 1 },
  },
  run = function(opts)
    if opts.output == "-" then return flatten_to_stdout(opts) end
    local p
    local r, msg, code = vhd.flatten(opts[1], opts.output, {
      format = opts.format, force = opts.force, overwrite = opts.overwrite, search = opts.search,
      drop_zero = opts.drop_zero,
      progress = function(done, total)
        if not p then p = progress.new { label = "flatten " .. basename(opts[1]), total = total, unit = "bytes" } end
        p:update(done)
        return true
      end,
    })
    if p then p:finish() end
    if not r then cli.fail(1, ("flatten: %s (%s)"):format(msg, code)) end
    for _, pr in ipairs(r.problems) do
      if pr.severity ~= "info" then log.warn(pr.message, { code = pr.code }) end
    end
    if opts.json then
      r.problems = arrays(r.problems)
      r.zero_filled = json.array(r.zero_filled)
      r.assumed_unallocated = json.array(r.assumed_unallocated)
      emit_json(r)
      return 0
    end
    out(("%s: %s %d bytes virtual, %d bytes written, %d blocks allocated\n"):format(r.path, r.format,
      r.virtual_size, r.bytes_written, r.blocks_written))
    for _, z in ipairs(r.zero_filled) do
      out(("zero-filled sectors %d-%d: %s\n"):format(z.sector, z.sector + z.count - 1, z.reason))
    end
    for _, z in ipairs(r.assumed_unallocated) do
      out(("sectors %d-%d read from below: %s\n"):format(z.sector, z.sector + z.count - 1, z.reason))
    end
    return 0
  end,
}

-- coalesce -----------------------------------------------------------------
subcommands.coalesce = {
  spec = {
    usage = "salvage vhd coalesce CHILD [--force] [--search DIR]...",
    summary = "Write CHILD's sectors into its parent in place (vhd-util coalesce)",
    description = "Refuses when the parent has other children among the VHDs of its directory: coalescing "
      .. "would corrupt them. Prefer 'salvage vhd flatten', which changes nothing.",
    options = {
      { "force", help = "coalesce even though the parent has other children" },
      { "search", value = "DIR", multi = true, help = "also look here for a missing parent (by UUID)" },
    },
    positionals = { min = 1, max = 1 },
  },
  run = function(opts)
    local ok, msg, code = vhd.coalesce(opts[1], { force = opts.force, search = opts.search })
    if not ok then cli.fail(1, ("%s (%s)"):format(msg, code)) end
    out(("%s coalesced into its parent\n"):format(opts[1]))
    return 0
  end,
}

-- create -------------------------------------------------------------------
subcommands.create = {
  spec = {
    usage = "salvage vhd create OUT --size N [--type dynamic|fixed] [--parent P] [--block-size N] [--hidden]"
      .. " [--non-xenserver] [--strict]\n"
      .. "       (or vhd-util's: create -n OUT -s MiB)",
    summary = "Create an empty VHD (dynamic, fixed, or differencing on --parent)",
    description = "Files are made as XenServer's blktap makes them (2 MiB blocks, batmap, creator \"tap\"). "
      .. "--block-size other than 2M needs --non-xenserver: XenServer's tools cannot read such files.",
    options = {
      NAME_OPT,
      { "size", short = "s", value = "N", help = "virtual size: MiB when bare (as vhd-util -s), or N with "
        .. "B/K/M/G/T (default with --parent: the parent's)" },
      { "type", value = "T", choices = { "dynamic", "fixed" }, help = "dynamic (default) or fixed" },
      { "parent", value = "P", help = "make a differencing disk on this parent" },
      { "block-size", value = "N", help = "block size (default 2M)" },
      { "hidden", help = "set XenServer's hidden flag" },
      { "non-xenserver", help = "a file not meant for XenServer: any block size, no batmap, creator qem2" },
      { "strict", help = "refuse what XenServer's tools would reject (a parent name outside ASCII)" },
      { "json", help = "machine-readable result" },
    },
    positionals = { min = 0, max = 1 },
  },
  run = function(opts)
    opts[1] = file_arg(opts, "create")
    local size = opts.size and parse_size(opts.size, 1 << 20)
    if opts.size and not size then
      cli.usage_error("vhd create: --size expects MiB or N[B|K|M|G|T], got " .. opts.size)
    end
    if not size and not opts.parent then cli.usage_error("vhd create: --size is required (or --parent)") end
    local bs = opts.block_size and parse_size(opts.block_size)
    if opts.block_size and not bs then cli.usage_error("vhd create: bad --block-size " .. opts.block_size) end
    if opts.parent and opts.type then cli.usage_error("vhd create: --type does not go with --parent") end
    local h, msg, code = vhd.create(opts[1], { size = size, type = opts.type, parent = opts.parent,
      block_size = bs, hidden = opts.hidden, xenserver = not opts.non_xenserver, strict = opts.strict })
    if not h then cli.fail(1, ("create: %s (%s)"):format(msg, code)) end
    local info = h:info()
    h:close()
    for _, p in ipairs(info.problems) do
      if p.severity ~= "info" then log.warn(p.message, { code = p.code }) end
    end
    if opts.json then
      emit_json({ path = info.path, uuid = info.footer.uuid, disk_type = info.footer.disk_type,
        current_size = info.footer.current_size })
    else
      out(("%s: %s, %d bytes, uuid %s\n"):format(info.path, info.footer.disk_type, info.footer.current_size,
        info.footer.uuid))
    end
    return 0
  end,
}

local order = { "read", "scan", "check", "flatten", "coalesce", "create" }

local function usage()
  local lines = { "usage: salvage vhd <subcommand> [args]   (salvage vhd <subcommand> --help)", "", "subcommands:" }
  for _, n in ipairs(order) do lines[#lines + 1] = ("  %-9s %s"):format(n, subcommands[n].spec.summary) end
  return table.concat(lines, "\n") .. "\n"
end

function M.run(argv)
  -- global options before the subcommand (salvage --format json vhd scan DIR) go after it
  local lead = {}
  while argv[1] == "--format" and argv[2] or (argv[1] and argv[1]:match("^%-%-format=")) do
    lead[#lead + 1] = table.remove(argv, 1)
    if lead[#lead] == "--format" then lead[#lead + 1] = table.remove(argv, 1) end
  end
  for i, a in ipairs(lead) do table.insert(argv, 1 + i, a) end
  local name = argv[1]
  if name == nil or name == "--help" or name == "-h" or name == "help" then
    out(usage())
    return name and 0 or 2
  end
  local sub = subcommands[name]
  if not sub then
    cli.usage_error(("vhd: unknown subcommand '%s' (read, scan, check, flatten, coalesce, create)"):format(name))
  end
  local opts, err = args.parse(sub.spec, { table.unpack(argv, 2) })
  if not opts then cli.usage_error("vhd " .. name .. ": " .. err) end
  if opts.help then
    out(args.help(sub.spec))
    return 0
  end
  return sub.run(opts)
end

return M
