--- Progress of long work (bytes or items): rate and ETA on stderr.
-- On a terminal a single redrawn line; elsewhere a plain line every few
-- seconds (logs stay readable); nothing under --quiet. With --log-json the
-- plain lines are JSON records.
--
--   local p = progress.new{ label = "flatten vm-42", total = size, unit = "bytes" }
--   p:update(done)   -- or p:add(n)
--   p:finish()
local sys = require "salvage.sys"
local log = require "salvage.log"

local M = {}
local Progress = {}
Progress.__index = Progress

local UNITS = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" }

--- 1536 -> "1.5 KiB"
function M.bytes(n)
  local i = 1
  n = n + 0.0
  while n >= 1024 and i < #UNITS do
    n = n / 1024
    i = i + 1
  end
  if i == 1 then return ("%d B"):format(math.floor(n)) end
  return ("%.1f %s"):format(n, UNITS[i])
end

--- 75 -> "1:15", 3725 -> "1:02:05"
function M.duration(s)
  if s == nil or s ~= s or s == math.huge or s < 0 then return "?" end
  s = math.floor(s + 0.5)
  local h, m, sec = s // 3600, (s % 3600) // 60, s % 60
  if h > 0 then return ("%d:%02d:%02d"):format(h, m, sec) end
  return ("%d:%02d"):format(m, sec)
end

--- new{label, total, unit = "bytes"|"items", tty = bool, interval = seconds, out = file, clock = fn}
function M.new(opts)
  opts = opts or {}
  local clock = opts.clock or sys.clock
  local self = setmetatable({
    label = opts.label or "",
    total = opts.total,
    unit = opts.unit or "bytes",
    done = 0,
    out = opts.out or io.stderr,
    tty = opts.tty,
    interval = opts.interval,
    clock = clock,
    started = clock(),
    last_draw = -math.huge,
    silent = opts.quiet == nil and log.quiet() or opts.quiet,
    json = log.json_mode(),
    finished = false,
  }, Progress)
  if self.tty == nil then self.tty = sys.isatty(2) end
  if self.interval == nil then self.interval = self.tty and 0.1 or 5 end
  return self
end

function Progress:amount(n)
  if self.unit == "bytes" then return M.bytes(n) end
  return ("%d"):format(n)
end

function Progress:rate()
  local elapsed = self.clock() - self.started
  if elapsed <= 0 then return 0 end
  return self.done / elapsed
end

function Progress:eta()
  local r = self:rate()
  if not self.total or r <= 0 then return nil end
  return (self.total - self.done) / r
end

--- The status line, without terminal control characters.
function Progress:line()
  local parts = {}
  if self.label ~= "" then parts[#parts + 1] = self.label end
  local r = self:rate()
  if self.total and self.total > 0 then
    local frac = math.min(1, self.done / self.total)
    if self.tty then
      local width = 24
      local fill = math.floor(frac * width + 0.5)
      parts[#parts + 1] = "[" .. ("="):rep(fill) .. (" "):rep(width - fill) .. "]"
    end
    parts[#parts + 1] = ("%3d%%"):format(math.floor(frac * 100))
    parts[#parts + 1] = self:amount(self.done) .. "/" .. self:amount(self.total)
  else
    parts[#parts + 1] = self:amount(self.done)
  end
  if self.unit == "bytes" then
    parts[#parts + 1] = M.bytes(r) .. "/s"
  else
    parts[#parts + 1] = ("%.1f/s"):format(r)
  end
  if self.total then parts[#parts + 1] = "ETA " .. M.duration(self:eta()) end
  return table.concat(parts, " ")
end

function Progress:draw(final)
  if self.silent then return end
  local now = self.clock()
  if not final and now - self.last_draw < self.interval then return end
  self.last_draw = now
  if self.json then
    local eta = self:eta()
    log.info("progress", { label = self.label, done = self.done, total = self.total, unit = self.unit,
      rate = math.floor(self:rate()), eta_s = eta and eta == eta and eta < math.huge and math.ceil(eta) or nil,
      final = final or nil })
  elseif self.tty then
    local line = self:line()
    local width = sys.terminal_width(2) - 1
    if #line > width then line = line:sub(1, width) end
    self.out:write("\r", line, "\27[K", final and "\n" or "")
    self.out:flush()
  else
    self.out:write(self:line(), "\n")
    self.out:flush()
  end
end

--- Set the absolute amount done. Returns true (so it can be a C callback's answer).
function Progress:update(done, total)
  self.done = done
  if total then self.total = total end
  self:draw(false)
  return true
end

function Progress:add(n)
  return self:update(self.done + (n or 1))
end

--- A function(done, total) for C code that reports progress.
function Progress:callback()
  return function(done, total) return self:update(done, total) end
end

function Progress:finish()
  if self.finished then return end
  self.finished = true
  if self.total then self.done = math.max(self.done, self.total) end
  self:draw(true)
end

return M
