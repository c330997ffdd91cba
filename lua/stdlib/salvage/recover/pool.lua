--- salvage.recover.pool: the worker processes of a recovery (salvage.recover).
-- Lua is single-threaded, so `workers > 1` runs each VM's machine steps in a child
-- process; this module starts them, reaps them, and stops orphans of a killed run.
--
--   local pool = require "salvage.recover.pool"
--   local argv = pool.worker_argv{ exe = exe, plan = "DIR/plan.json", zone = "Zone1",
--     workdir = "DIR", policy = "customer.lua", api_profile = "p", poll_interval = 0.2 }
--   argv(vm_id) -> { exe, "recover", plan, "--zone", ..., "--worker-vm", id, "--parent-pid", pid }
--   for k, f in pairs(pool.methods) do Engine[k] = f end   -- reap_orphans, lock, unlock, run_pool
local sys = require "salvage.sys"
local log = require "salvage.log"

local M = {}

local function sleep(s) if s > 0 then sys.sleep(s) end end

local Engine = {}
M.methods = Engine

--- worker_argv(o) -> function(vm_id) -> argv: the one place that builds a worker's
-- command line. o: exe (default this binary), plan (file), zone, workdir, policy
-- (file), api_profile, poll_interval; every option of the run a worker needs.
function M.worker_argv(o)
  assert(type(o) == "table" and o.plan and o.zone and o.workdir, "worker_argv: plan, zone and workdir expected")
  local exe = o.exe or sys.realpath("/proc/self/exe")
  return function(vm_id)
    local a = { exe, "recover", o.plan, "--zone", o.zone, "--workdir", o.workdir }
    if o.policy then a[#a + 1] = "--policy"; a[#a + 1] = o.policy end
    if o.api_profile then a[#a + 1] = "--api-profile"; a[#a + 1] = o.api_profile end
    if o.poll_interval then a[#a + 1] = "--poll-interval"; a[#a + 1] = tostring(o.poll_interval) end
    if o.hypervisor then a[#a + 1] = "--hypervisor"; a[#a + 1] = o.hypervisor end
    if o.kvm_primary then a[#a + 1] = "--kvm-primary"; a[#a + 1] = o.kvm_primary end
    a[#a + 1] = "--worker-vm"; a[#a + 1] = tostring(vm_id)
    a[#a + 1] = "--parent-pid"; a[#a + 1] = tostring(sys.getpid())
    return a
  end
end

-- Kill workers orphaned by a killed parent (they would race with this run).
function Engine:reap_orphans()
  local dir = self.workdir .. "/workers"
  for _, n in ipairs(sys.dir(dir) or {}) do
    local pid = math.tointeger(tonumber(n))
    if pid then
      local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
      local cmd = f and f:read("a") or ""
      if f then f:close() end
      if cmd:find("--worker-vm", 1, true) and cmd:find(self.workdir, 1, true) then
        log.warn("stopping a worker left by an earlier run", { pid = pid })
        sys.kill(pid, 9)
        for _ = 1, 50 do
          if not sys.kill(pid, 0) then break end
          sleep(0.05)
        end
      end
      sys.unlink(dir .. "/" .. n)
    end
  end
end

function Engine:lock()
  local path = self.workdir .. "/lock"
  local f = io.open(path, "r")
  if f then
    local pid = math.tointeger(tonumber(f:read("l") or ""))
    f:close()
    if pid and pid ~= sys.getpid() and sys.kill(pid, 0) then
      local cf = io.open("/proc/" .. pid .. "/cmdline", "rb")
      local cmd = cf and cf:read("a") or ""
      if cf then cf:close() end
      if cmd:find("salvage", 1, true) or cmd:find("busted", 1, true) then
        error(("recover: another recovery (pid %d) is using %s"):format(pid, self.workdir), 0)
      end
    end
  end
  sys.write_atomic(path, tostring(sys.getpid()) .. "\n")
end

function Engine:unlock()
  sys.unlink(self.workdir .. "/lock")
end

-- Run VMs' machine steps on up to `workers` child processes.
function Engine:run_pool(queue, status, on_done)
  local n = self.opts.workers or 1
  local running = {}
  local count = 0
  local i = 1
  sys.mkdir(self.workdir .. "/workers")
  sys.mkdir(self.workdir .. "/logs")
  while i <= #queue or count > 0 do
    while count < n and i <= #queue do
      local vm = queue[i]
      i = i + 1
      local argv = self.opts.worker_argv(vm.id)
      argv.stdout = ("%s/logs/vm-%s.log"):format(self.workdir, tostring(vm.id))
      argv.stderr = argv.stdout
      local pid, err = sys.spawn(argv)
      if not pid then
        status[vm.id] = { step = "worker", error = tostring(err) }
        on_done(vm)
      else
        sys.write_atomic(("%s/workers/%d"):format(self.workdir, pid), tostring(vm.id))
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
        sys.unlink(("%s/workers/%d"):format(self.workdir, pid))
        self.worker_wall = self.worker_wall or {}
        self.worker_wall[vm.id] = sys.clock() - self.spawned[vm.id]
        if not (how == "exited" and (code == 0 or code == 1)) then
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
