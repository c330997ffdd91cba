--- The recovery journal: what has been done, so a killed run resumes where it stopped.
-- One JSON object per line, appended with O_APPEND and fsynced before the call
-- returns (salvage.sys.append_sync), keyed by the old VM id and a step name,
-- holding the new cloud's ids. Several worker processes append to the same file:
-- each record is one write() on an O_APPEND descriptor, so records never
-- interleave. A run killed mid-write leaves a torn last line: replay ignores it,
-- and `open` terminates it with a newline so the next record starts clean.
--
--   local j = assert(journal.open(dir .. "/journal.jsonl"))
--   local done = j:get(24, "template")        -- nil, or the data recorded
--   j:record(24, "template", { id = "..." })
--   j:fail(24, "deploy", "errortext")          -- a failure is not a completion
--
-- Record: {"seq": n, "time": unix, "pid": pid, "vm": id|null, "step": "...", "data": {...}}
-- or {"vm": id, "step": "...", "failed": "message"}. A step recorded twice keeps the last.
local sys = require "salvage.sys"
local json = require "salvage.json"

local M = {}
local Journal = {}
Journal.__index = Journal

local function key(vm, step)
  return tostring(vm == nil and "*" or vm) .. "\0" .. step
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- Re-read the file (after other processes appended to it). Returns self.
function Journal:reload()
  self.done, self.failures, self.order = {}, {}, {}
  self.torn, self.bad = 0, {}
  local text = read_all(self.path)
  local lineno = 0
  local last_bad = false
  local n = #text
  local pos = 1
  while pos <= n do
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or n + 1) - 1)
    lineno = lineno + 1
    pos = (nl or n) + 1
    if line ~= "" then
      local rec = json.decode(line)
      if type(rec) ~= "table" or type(rec.step) ~= "string" then
        -- The last line, unparsable, is the torn tail of a killed write; a bad
        -- line in the middle is damage worth a word, but not a reason to stop.
        self.bad[#self.bad + 1] = lineno
        last_bad = true
      else
        last_bad = false
        local vm = rec.vm
        if vm == json.null then vm = nil end
        local k = key(vm, rec.step)
        if rec.failed ~= nil then
          self.failures[k] = { vm = vm, step = rec.step, error = rec.failed, time = rec.time }
        else
          local data = rec.data
          if data == json.null or data == nil then data = {} end
          if not self.done[k] then self.order[#self.order + 1] = { vm = vm, step = rec.step } end
          self.done[k] = data
          self.failures[k] = nil
        end
      end
    end
  end
  if last_bad then
    self.bad[#self.bad] = nil
    self.torn = 1
  end
  -- tail() continues after the last whole line
  local last_nl = text:match(".*()\n")
  self.offset = last_nl or 0
  self.records = lineno
  return self
end

--- open(path [, {readonly = true}]) -> journal | nil, message, code. Creates the
-- file when missing; read-only (a dry run) never writes: a missing file reads as
-- empty, and record/fail raise.
function M.open(path, opts)
  local self = setmetatable({ path = path }, Journal)
  local st = sys.stat(path)
  if st and st.type ~= "file" then
    return nil, path .. ": not a regular file", "EISDIR"
  end
  if opts and opts.readonly then
    self.readonly = true
    return self:reload()
  end
  if st and st.size > 0 then
    local f = io.open(path, "rb")
    if not f then return nil, path .. ": cannot read", "EACCES" end
    f:seek("end", -1)
    local last = f:read(1)
    f:close()
    if last ~= "\n" then
      -- Terminate the torn tail so the next record is a line of its own.
      local ok, err, code = sys.append_sync(path, "\n")
      if not ok then return nil, err, code end
    end
  elseif not st then
    local ok, err, code = sys.append_sync(path, "")
    if not ok then return nil, err, code end
  end
  return self:reload()
end

--- Records appended (by other processes) since the last reload or tail: an array
-- of {vm, step, data} or {vm, step, failed}, in file order; they are applied to
-- this journal's view too. Only whole lines are read: a record being written
-- is picked up by the next call.
function Journal:tail()
  local f = io.open(self.path, "rb")
  if not f then return {} end
  f:seek("set", self.offset or 0)
  local text = f:read("a") or ""
  f:close()
  local out = {}
  local pos = 1
  while true do
    local nl = text:find("\n", pos, true)
    if not nl then break end
    local rec = json.decode(text:sub(pos, nl - 1))
    pos = nl + 1
    if type(rec) == "table" and type(rec.step) == "string" then
      local vm = rec.vm
      if vm == json.null then vm = nil end
      local k = key(vm, rec.step)
      if rec.failed ~= nil then
        self.failures[k] = { vm = vm, step = rec.step, error = rec.failed, time = rec.time }
        out[#out + 1] = { vm = vm, step = rec.step, failed = rec.failed }
      else
        local data = (rec.data == nil or rec.data == json.null) and {} or rec.data
        if not self.done[k] then self.order[#self.order + 1] = { vm = vm, step = rec.step } end
        self.done[k] = data
        self.failures[k] = nil
        out[#out + 1] = { vm = vm, step = rec.step, data = data }
      end
    end
  end
  self.offset = (self.offset or 0) + pos - 1
  return out
end

--- The data recorded for (vm, step), or nil when the step is not done.
function Journal:get(vm, step)
  return self.done[key(vm, step)]
end

--- The last failure recorded for (vm, step) since its last completion, or nil.
function Journal:failure(vm, step)
  return self.failures[key(vm, step)]
end

local seq = 0
local function append(self, rec)
  assert(not self.readonly, "salvage.journal: this journal is open read-only")
  seq = seq + 1
  rec.seq = seq
  rec.pid = sys.getpid()
  rec.time = sys.time()
  local ok, err, code = sys.append_sync(self.path, json.encode(rec) .. "\n")
  if not ok then return nil, err, code end
  return true
end

--- Record a finished step (vm may be nil for estate-wide steps). Raises on I/O
-- failure: a recovery that cannot write its journal must stop, not continue blind.
function Journal:record(vm, step, data)
  assert(type(step) == "string", "journal step must be a string")
  data = data or {}
  local ok, err = append(self, { vm = vm, step = step, data = data })
  if not ok then error("journal: " .. tostring(err), 0) end
  local k = key(vm, step)
  if not self.done[k] then self.order[#self.order + 1] = { vm = vm, step = step } end
  self.done[k] = data
  self.failures[k] = nil
  return data
end

--- Record a failed attempt (for the report; the step stays not done).
function Journal:fail(vm, step, message)
  local ok, err = append(self, { vm = vm, step = step, failed = tostring(message) })
  if not ok then error("journal: " .. tostring(err), 0) end
  self.failures[key(vm, step)] = { vm = vm, step = step, error = tostring(message) }
end

--- Unreadable lines (not the torn last line of a killed write): their count and numbers.
function Journal:unreadable()
  return #self.bad, self.bad
end

--- Every step recorded for one VM: { step = data }.
function Journal:steps(vm)
  local out = {}
  for _, o in ipairs(self.order) do
    if o.vm == vm then out[o.step] = self.done[key(o.vm, o.step)] end
  end
  return out
end

--- Every failure still standing for one VM: array of {step, error}, by step name.
function Journal:failures_of(vm)
  local out = {}
  for _, f in pairs(self.failures) do
    if f.vm == vm then out[#out + 1] = f end
  end
  table.sort(out, function(a, b) return a.step < b.step end)
  return out
end

--- All completions, in the order first recorded: array of {vm, step, data}.
function Journal:entries()
  local out = {}
  for _, o in ipairs(self.order) do
    out[#out + 1] = { vm = o.vm, step = o.step, data = self.done[key(o.vm, o.step)] }
  end
  return out
end

function Journal:__tostring()
  return ("salvage.journal (%s, %d steps)"):format(self.path, #self.order)
end

return M
