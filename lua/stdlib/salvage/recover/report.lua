--- salvage.recover.report: the report of a recovery run, as data and as a table.
--
--   local report = require "salvage.recover.report"
--   local r = report.build(engine, vms, status, elapsed)  -- {recovered, failed, skipped, accounts, summary, ...}
--   io.write(report.table(r))
local json = require "salvage.json"
local columns = require "salvage.columns"
local planlib = require "salvage.plan"

local M = {}

--- build(engine, vms, status, elapsed) -> report. status: vm.id -> {step, error}
-- for failures of this run; the rest comes from the engine's journal.
function M.build(self, vms, status, elapsed)
  local j = self.journal
  local r = {
    dry_run = self.dry, zone = self.opts.zone, workdir = self.workdir, scratch = self.scratch, elapsed = elapsed,
    recovered = json.array({}), failed = json.array({}), skipped = json.array({}),
    accounts = json.array({}),
  }
  for _, s in ipairs(self.plan.skipped or {}) do
    r.skipped[#r.skipped + 1] = { id = s.id, name = s.name, reason = s.reason }
  end
  local accounts_seen = {}
  for _, vm in ipairs(vms) do
    local done = not self.dry and j:get(vm.id, "done")
    local key = "account:" .. vm.owner.domain_path .. vm.owner.account
    if done then
      r.recovered[#r.recovered + 1] = {
        id = vm.id, name = vm.name, new_id = done.new_id, template_id = done.template_id,
        template_sha256 = done.template_sha256, template_bytes = done.template_bytes,
        domain_path = vm.owner.domain_path, account = vm.owner.account,
        old_domain_path = vm.owner.old_domain_path, old_account = vm.owner.old_account,
        cpu = vm.spec.cpu, speed = vm.spec.speed, ram = vm.spec.ram, offering = done.offering,
        volumes = json.array(done.volumes or {}), left_out = json.array(done.left_out or {}),
        hostname = done.hostname, zero_filled = json.array(done.zero_filled or {}),
      }
    elseif self.dry and not status[vm.id] then
      r.recovered[#r.recovered + 1] = { id = vm.id, name = vm.name, domain_path = vm.owner.domain_path,
        account = vm.owner.account, cpu = vm.spec.cpu, speed = vm.spec.speed, ram = vm.spec.ram, would = true }
    else
      local f = status[vm.id]
      if not f then
        local fl = j:failures_of(vm.id)
        f = fl[#fl] or { step = "unknown", error = "not finished (see the logs)" }
        for _, x in ipairs(fl) do if x.time and (not f.time or x.time > f.time) then f = x end end
      end
      r.failed[#r.failed + 1] = { id = vm.id, name = vm.name, step = f.step, error = f.error }
    end
    local acc = j:get(nil, key)
    if acc and not accounts_seen[key] and acc.created then
      accounts_seen[key] = true
      r.accounts[#r.accounts + 1] = { domain_path = vm.owner.domain_path, account = vm.owner.account,
        id = acc.id, password = acc.password, password_from_policy = acc.password_from_policy }
    end
  end
  if self.dry then r.actions = json.array(self.actions) end
  r.summary = { recovered = #r.recovered, failed = #r.failed, skipped = #r.skipped }
  r.warnings = json.array(self.warnings or {})
  r.cleaned = json.array(self.cleaned or {})
  r.journal_unreadable = self.journal_unreadable or 0
  local peak = 0
  for _, e in ipairs(j:entries()) do
    if e.step == "scratch" and type(e.data) == "table" and (e.data.bytes or 0) > peak then peak = e.data.bytes end
  end
  r.scratch_peak_bytes = math.max(peak, self.scratch_peak or 0)
  -- Where the time went, per VM recovered in this run (machine steps; owners are estate-wide).
  local n, sum, maxe, api, flat, proc, nproc, jr, str = 0, 0, 0, 0, 0, 0, 0, 0, 0
  for _, vm in ipairs(vms) do
    local done = not self.dry and j:get(vm.id, "done")
    local t = done and done.timing
    if t and t.engine then
      n = n + 1
      sum = sum + t.engine
      maxe = math.max(maxe, t.engine)
      api = api + (t.api or 0)
      flat = flat + (t.flatten or 0)
      str = str + (t.stream or 0)
      jr = jr + (t.journal or 0)
      local wall = self.worker_wall and self.worker_wall[vm.id]
      if wall then
        proc = proc + math.max(0, wall - t.total)
        nproc = nproc + 1
      end
    end
  end
  if n > 0 then
    r.timing = { vms = n, engine_ms_mean = sum / n * 1000, engine_ms_max = maxe * 1000,
      api_ms_mean = api / n * 1000, flatten_ms_mean = flat / n * 1000, stream_ms_mean = str / n * 1000,
      journal_ms_mean = jr / n * 1000,
      owners_ms = (self.owners_time or 0) * 1000,
      worker_process_ms_mean = nproc > 0 and proc / nproc * 1000 or nil }
  end
  return r
end

--- rows(report) -> the report's rows, header first (table and CSV).
function M.rows(report)
  local rows = { { "STATUS", "VMID", "VM", "OWNER", "NEW ID", "DETAIL" } }
  for _, v in ipairs(report.recovered) do
    local vols = {}
    for _, x in ipairs(v.volumes or {}) do vols[#vols + 1] = x.name end
    local detail = ("%s CPU %s MHz %s MB"):format(tostring(v.cpu), tostring(v.speed), tostring(v.ram))
    if #vols > 0 then detail = detail .. "; data: " .. table.concat(vols, ", ") end
    for _, x in ipairs(v.left_out or {}) do detail = detail .. "; LEFT OUT " .. tostring(x.name) .. ": " .. x.reason end
    for _, z in ipairs(v.zero_filled or {}) do
      detail = detail .. ("; ZERO-FILLED %s sectors %d-%d (%s)"):format(tostring(z.disk), z.sector,
        z.sector + z.count - 1, tostring(z.reason))
    end
    rows[#rows + 1] = { report.dry_run and "would" or "ok", tostring(v.id), v.name,
      planlib.owner_text({ domain_path = v.domain_path, account = v.account }),
      v.new_id ~= json.null and tostring(v.new_id or "-") or "-", detail }
  end
  for _, v in ipairs(report.failed) do
    rows[#rows + 1] = { "FAILED", tostring(v.id), v.name, "", "-", ("at %s: %s"):format(v.step, v.error) }
  end
  for _, v in ipairs(report.skipped) do
    rows[#rows + 1] = { "skipped", tostring(v.id), tostring(v.name), "", "-", tostring(v.reason) }
  end
  return rows
end

--- The report as CSV (no passwords: those stay in DIR/report.json).
function M.csv(report)
  return columns.csv(M.rows(report))
end

--- The report as a table for people.
function M.table(report)
  local rows = M.rows(report)
  local out = columns.lines(rows)
  if report.dry_run and report.actions then
    out[#out + 1] = ""
    out[#out + 1] = ("dry run: %d actions would be taken, nothing was created"):format(#report.actions)
    for _, a in ipairs(report.actions) do
      local who = a.vm ~= json.null and a.vm or "-"
      out[#out + 1] = ("  %-10s %-24s %s"):format(who, a.action, a.what)
    end
  end
  for _, a in ipairs(report.accounts or {}) do
    if a.password then
      out[#out + 1] = ("account %s created; password in %s/report.json"):format(
        planlib.owner_text({ domain_path = a.domain_path, account = a.account }), report.workdir or ".")
    end
  end
  for _, w in ipairs(report.warnings or {}) do out[#out + 1] = "warning: " .. w end
  if (report.scratch_peak_bytes or 0) > 0 then
    out[#out + 1] = ("scratch: peak %s in %s/disks"):format(planlib.human(report.scratch_peak_bytes),
      report.scratch or report.workdir or ".")
  end
  if report.dry_run then
    out[#out + 1] = ("would recover %d, %d would fail, %d skipped (dry run: nothing created)"):format(
      #report.recovered, #report.failed, #report.skipped)
  else
    out[#out + 1] = ("%d recovered, %d failed, %d skipped"):format(#report.recovered, #report.failed,
      #report.skipped)
  end
  return table.concat(out, "\n") .. "\n"
end

return M

