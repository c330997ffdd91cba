--- salvage.recover.pool: the worker processes of a recovery (salvage.recover).
-- Lua is single-threaded, so `workers > 1` runs each VM's machine steps in a child
-- process; this module starts them, reaps them, and stops orphans of a killed run.
--
--   local pool = require "salvage.recover.pool"
--   local argv = pool.worker_argv{ exe = exe, plan = "DIR/plan.json", zone = "Zone1",
--     workdir = "DIR", policy = "customer.lua", api_profile = "p", poll_interval = 0.2 }
--   argv(vm_id) -> { exe, "recover", plan, "--zone", ..., "--worker-vm", id, "--parent-pid", pid }
--   for k, f in pairs(pool.methods) do Engine[k] = f end
--   -- lock, unlock (the workdir), lock_vm, unlock_vm (one VM), run_pool, stop_workers
local sys = require "salvage.sys"
local log = require "salvage.log"

local M = {}

local function sleep(s) if s > 0 then sys.sleep(s) end end

local Engine = {}
M.methods = Engine

--- worker_argv(o) -> function(vm_id) -> argv: the one place that builds a worker's
-- command line. o: exe (default this binary), plan (file), zone, workdir, policy
-- (file), policy_changed, api_profile, poll_interval, scratch, keep_disks; every option
-- of the run a worker needs.
function M.worker_argv(o)
  assert(type(o) == "table" and o.plan and o.zone and o.workdir, "worker_argv: plan, zone and workdir expected")
  local exe = o.exe or sys.realpath("/proc/self/exe")
  return function(vm_id)
    local a = { exe, "recover", o.plan, "--zone", o.zone, "--workdir", o.workdir }
    if o.policy then a[#a + 1] = "--policy"; a[#a + 1] = o.policy end
    if o.api_profile then a[#a + 1] = "--profile"; a[#a + 1] = o.api_profile end
    if o.poll_interval then a[#a + 1] = "--poll-interval"; a[#a + 1] = tostring(o.poll_interval) end
    if o.hypervisor then a[#a + 1] = "--hypervisor"; a[#a + 1] = o.hypervisor end
    if o.kvm_primary then a[#a + 1] = "--kvm-primary"; a[#a + 1] = o.kvm_primary end
    if o.scratch then a[#a + 1] = "--scratch"; a[#a + 1] = o.scratch end
    if o.keep_disks then a[#a + 1] = "--keep-disks" end
    if o.policy_changed then a[#a + 1] = "--policy-changed" end
    a[#a + 1] = "--worker-vm"; a[#a + 1] = tostring(vm_id)
    a[#a + 1] = "--parent-pid"; a[#a + 1] = tostring(sys.getpid())
    return a
  end
end

-- Locks ----------------------------------------------------------------------------
-- flock(2) locks die with their holder, whatever the spelling of the workdir
-- (relative, "..", a symlink): the lock file is the same inode.

-- The holder's pid beside a lock (advisory, for messages and orphan stops: not fsynced).
local function write_pid(path)
  local f = io.open(path, "w")
  if f then
    f:write(tostring(sys.getpid()), "\n")
    f:close()
  end
end

local function read_pid(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local pid = math.tointeger(tonumber(f:read("l") or ""))
  f:close()
  return pid
end

-- Does process `pid` hold `path` open (it is the lock's holder)?
local function holds(pid, path)
  local real = sys.realpath(path)
  for _, fd in ipairs(sys.dir("/proc/" .. pid .. "/fd") or {}) do
    if sys.realpath("/proc/" .. pid .. "/fd/" .. fd) == real then return true end
  end
  return false
end
M.holds = holds

--- The workdir's lock: one recovery at a time per workdir.
function Engine:lock()
  local path = self.workdir .. "/lock"
  local l, err, code = sys.flock(path)
  if not l then
    if code == "EWOULDBLOCK" then
      local pid = read_pid(self.workdir .. "/lock.pid")
      error(("recover: another recovery%s is using %s"):format(pid and (" (pid " .. pid .. ")") or "",
        self.workdir), 0)
    end
    error("recover: " .. tostring(err), 0)
  end
  self.workdir_lock = l
  write_pid(self.workdir .. "/lock.pid")
end

function Engine:unlock()
  if self.workdir_lock then
    sys.unlink(self.workdir .. "/lock.pid")
    self.workdir_lock:close()
    self.workdir_lock = nil
  end
end

--- lock_vm(vm): this process alone works on the VM. A live holder is an orphan
-- of a killed run (this run holds the workdir's lock): it is stopped (SIGKILL).
function Engine:lock_vm(vm)
  local dir = self.workdir .. "/locks"
  sys.mkdir(dir)
  local path = ("%s/vm-%s.lock"):format(dir, tostring(vm.id))
  local pidfile = ("%s/vm-%s.pid"):format(dir, tostring(vm.id))
  local deadline = sys.clock() + 30
  while true do
    local l, err, code = sys.flock(path)
    if l then
      self.locks[vm.id] = l
      write_pid(pidfile)
      return l
    end
    if code ~= "EWOULDBLOCK" then error("recover: " .. tostring(err), 0) end
    local pid = read_pid(pidfile)
    if pid and pid ~= sys.getpid() and holds(pid, path) then
      log.warn("stopping a process of an earlier run that still works on this VM", { vm = vm.name, pid = pid })
      sys.kill(pid, 9)
      self.orphans_stopped = (self.orphans_stopped or 0) + 1
    end
    if sys.clock() > deadline then
      error(("recover: VM %s stays locked by another process (%s)"):format(vm.name, path), 0)
    end
    sleep(0.05)
  end
end

function Engine:unlock_vm(vm)
  local l = self.locks[vm.id]
  if l then
    l:close()
    self.locks[vm.id] = nil
  end
end

--- Stop this run's workers (on SIGINT/SIGTERM): TERM, then KILL after 5 s.
function Engine:stop_workers()
  local running = self.running or {}
  for pid in pairs(running) do sys.kill(pid, 15) end
  local deadline = sys.clock() + 5
  while next(running) and sys.clock() < deadline do
    for pid in pairs(running) do
      if sys.wait(pid, true) then running[pid] = nil end
    end
    if next(running) then sys.sleep(0.02) end
  end
  for pid in pairs(running) do
    sys.kill(pid, 9)
    sys.wait(pid)
    running[pid] = nil
  end
end

-- Run VMs' machine steps on up to `workers` child processes.
function Engine:run_pool(queue, status, on_done)
  local n = self.opts.workers or 1
  local running = {}
  self.running = running
  local count = 0
  local i = 1
  sys.mkdir(self.workdir .. "/logs")
  while i <= #queue or count > 0 do
    while count < n and i <= #queue do
      local vm = queue[i]
      i = i + 1
      -- an orphan of a killed run still working on this VM is stopped first
      self:lock_vm(vm)
      self:unlock_vm(vm)
      local argv = self.opts.worker_argv(vm.id)
      argv.stdout = ("%s/logs/vm-%s.log"):format(self.workdir, tostring(vm.id))
      argv.stderr = argv.stdout
      -- the pid is in `running` before spawn returns: a stop raised right after it still
      -- finds this worker in stop_workers
      argv.track = running
      local pid, err = sys.spawn(argv)
      if not pid then
        status[vm.id] = { step = "worker", error = tostring(err) }
        on_done(vm)
      else
        self.spawned = self.spawned or {}
        self.spawned[vm.id] = sys.clock()
        running[pid] = vm
        count = count + 1
      end
    end
    local reaped = false
    for pid, vm in pairs(running) do
      local how, code = sys.wait(pid, true)
      if how then
        running[pid] = nil
        count = count - 1
        reaped = true
        self.worker_wall = self.worker_wall or {}
        self.worker_wall[vm.id] = sys.clock() - self.spawned[vm.id]
        if how == "exited" and (code == 130 or code == 143) then
          status[vm.id] = { step = "worker", error = "worker stopped by a signal" }
        elseif not (how == "exited" and (code == 0 or code == 1)) then
          status[vm.id] = { step = "worker", error = ("worker %s %d (log: %s/logs/vm-%s.log)"):format(how, code,
            self.workdir, tostring(vm.id)) }
        end
        on_done(vm)
      end
    end
    if not reaped and count > 0 then
      local now = sys.clock()
      if self.follow and now - (self.followed or 0) > 0.25 then
        self.followed = now
        self.follow()
      end
      sleep(0.01)
    end
  end
end


return M
