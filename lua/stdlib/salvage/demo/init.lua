--- salvage.demo: the whole recovery on the sample estate, start to finish, from
-- installed data (what `salvage demo` and `make demo` run):
--  1. a private MariaDB loaded with the CloudStack 4.5.2 schema and the sample
--     seed (salvage.db.ephemeral: its own datadir and socket, gone when done);
--  2. a demo primary storage built with the VHD engine (salvage.demo.estate):
--     hidden base copies, differencing root disks, the data disk ppdatavol;
--  3. the CloudStack API simulator on a loopback port, standing in for the new cloud;
--  4. `salvage plan`, then `salvage recover` (2 workers), run as commands of this
--     very binary, so the demo shows exactly what a user would type and see;
--  5. what the new cloud holds afterwards; everything started here is stopped.
-- With kvm = true (`salvage demo --kvm`, `make demo-kvm`) the new cloud is a KVM
-- zone, twice: once recovered by QCOW2 upload, once by zero-copy adoption
-- (--kvm-primary: qcow2 written into the NFS pool, importVm/importVolume), with
-- time and bytes moved side by side.
--
--   local demo = require "salvage.demo"
--   local files = assert(demo.files())      -- {schema=, seed=, simulator=}
--   local rc = demo.run{ out = io.stdout }  -- exit status of the recover step
--
-- Data is looked up in $SALVAGE_DATA_DIR, then PREFIX/share/salvage beside the
-- binary (bin/../share/salvage: cloudstack/*.sql, cloudstack-sim/simulator.py),
-- then the source tree the binary was built in (data/, tests/cloudstack-sim/).
local sys = require "salvage.sys"

local M = {}

M.SCHEMA = "schema-4.5.2.sql"
M.SEED = "seed-4.5.2.sql"

local function isfile(p)
  local st = p and sys.stat(p)
  return st and st.type == "file"
end

--- The directories searched, in order: {{sql = dir, sim = dir}, ...}.
function M.roots()
  local roots = {}
  local env = os.getenv("SALVAGE_DATA_DIR")
  if env and env ~= "" then roots[#roots + 1] = { sql = env .. "/cloudstack", sim = env .. "/cloudstack-sim" } end
  local exe = sys.realpath("/proc/self/exe")
  local bindir = exe and exe:match("^(.*)/[^/]*$")
  if bindir then
    local share = bindir .. "/../share/salvage"
    roots[#roots + 1] = { sql = share .. "/cloudstack", sim = share .. "/cloudstack-sim" }
    -- the source tree: ./salvage or build/salvage
    for _, top in ipairs { bindir, bindir .. "/.." } do
      roots[#roots + 1] = { sql = top .. "/data/cloudstack", sim = top .. "/tests/cloudstack-sim" }
    end
  end
  return roots
end

--- The demo's inputs: {schema=, seed=, simulator=} | nil, message naming what is missing.
function M.files()
  local roots = M.roots()
  for _, r in ipairs(roots) do
    local f = { schema = r.sql .. "/" .. M.SCHEMA, seed = r.sql .. "/" .. M.SEED, simulator = r.sim .. "/simulator.py" }
    if isfile(f.schema) and isfile(f.seed) and isfile(f.simulator) then
      for k, v in pairs(f) do f[k] = sys.realpath(v) or v end
      return f
    end
  end
  local where = {}
  for _, r in ipairs(roots) do where[#where + 1] = r.sql end
  return nil, ("missing %s, %s and simulator.py (looked in %s; set SALVAGE_DATA_DIR)")
    :format(M.SCHEMA, M.SEED, table.concat(where, ", "))
end

local function python()
  for _, p in ipairs { "/usr/bin/python3", "/bin/python3", "/usr/local/bin/python3" } do
    if isfile(p) then return p end
  end
  return nil
end

--- The checks `salvage demo` makes before starting: nil or a message.
function M.missing_tools()
  if not python() then return "python3 is needed for the CloudStack API simulator (apt install python3)" end
  return nil  -- a missing mariadbd is named by salvage.db.ephemeral at step 1
end

-- Run this binary with argv (inheriting stdout/stderr); its exit status.
local function run_self(argv, env)
  local exe = assert(sys.realpath("/proc/self/exe"))
  local cmd = { exe, table.unpack(argv) }
  cmd.env = env
  io.stdout:flush()
  io.stderr:flush()
  local pid, err = sys.spawn(cmd)
  if not pid then return nil, err end
  local how, code = sys.wait(pid)
  if how == "exited" then return code end
  return 128 + (code or 0)
end

-- The steps, once the temporary directory `d` exists; returns recover's status.
local function steps(d, files, out, keep_sim)
  local function step(s) out:write("\n== ", s, "\n") out:flush() end
  local sim_mod = require "salvage.cloudstack.simulator"
  local crypto = require "salvage.crypto"

  step(("demo primary storage in %s/primary (VHD chains for the seed's volumes)"):format(d))
  local primary = d .. "/primary"
  assert(sys.mkdir(primary))
  local made, err = require("salvage.demo.estate").from_dump(primary, { files.schema, files.seed })
  if not made then error({ demo = "demo: " .. tostring(err) }) end
  out:write(("%d VHD files written\n"):format(#made.files))
  run_self({ "vhd", "scan", primary })

  step("the new cloud: CloudStack API simulator")
  local sim, serr = sim_mod.start {
    script = files.simulator, apikey = ("demo-%d-key"):format(os.time()),
    secretkey = crypto.hex(crypto.random_bytes(24)), lifetime = 600, job_polls = 1, template_polls = 2,
  }
  if not sim then error({ demo = "demo: simulator: " .. tostring(serr) }) end
  keep_sim(sim)
  out:write("listening on ", sim.base, "\n")
  local env = { SALVAGE_API_URL = sim.url, SALVAGE_API_KEY = sim.apikey, SALVAGE_SECRET_KEY = sim.secretkey }

  step(("salvage plan --dump %s --dump %s --storage %s"):format(M.SCHEMA, M.SEED, primary))
  local prc = run_self({ "plan", "--dump", files.schema, "--dump", files.seed, "--storage", primary,
    "-o", d .. "/plan.json", "--format", "table" }, env)
  if prc ~= 0 then error({ demo = ("demo: plan failed (exit status %s)"):format(tostring(prc)) }) end

  step(("salvage recover plan.json --zone Zone1 --workdir %s/work --workers 2"):format(d))
  local rc = run_self({ "recover", d .. "/plan.json", "--zone", "Zone1", "--workdir", d .. "/work",
    "--workers", "2", "--poll-interval", "0.1" }, env) or 1

  step("the new cloud afterwards (simulator state)")
  local st = sim:state()
  if st then out:write(require("salvage.demo.show").state(st)) end

  step("stopping the simulator")
  sim:stop()
  out:write(("done (recover exit status %d)\n"):format(rc))
  return rc
end

-- Bytes of the files under dir (what a zero-copy run wrote into the pool).
local function bytes_under(dir)
  local n = 0
  for _, f in ipairs(sys.dir(dir) or {}) do
    local st = sys.stat(dir .. "/" .. f)
    if st and st.type == "file" then n = n + (st.allocated or st.size) end
  end
  return n
end

-- One KVM recovery into a fresh simulator; returns recover's status and {seconds, bytes, what}.
local function kvm_round(d, files, out, keep_sim, how)
  local sim_mod = require "salvage.cloudstack.simulator"
  local crypto = require "salvage.crypto"
  local pool = ("%s/kvm-pool-%s"):format(d, how)
  local sim, serr = sim_mod.start {
    script = files.simulator, apikey = ("demo-%d-key"):format(os.time()), args = { "--kvm-pool", pool },
    secretkey = crypto.hex(crypto.random_bytes(24)), lifetime = 600, job_polls = 1, template_polls = 2,
  }
  if not sim then error({ demo = "demo: simulator: " .. tostring(serr) }) end
  keep_sim(sim)
  local env = { SALVAGE_API_URL = sim.url, SALVAGE_API_KEY = sim.apikey, SALVAGE_SECRET_KEY = sim.secretkey }
  local argv = { "recover", d .. "/plan.json", "--zone", "Zone2-KVM", "--workdir", ("%s/work-%s"):format(d, how),
    "--workers", "2", "--poll-interval", "0.1" }
  if how == "zero-copy" then
    argv[#argv + 1] = "--kvm-primary"
    argv[#argv + 1] = "kvm-nfs-primary=" .. pool
  end
  out:write(("salvage %s\n"):format(table.concat(argv, " ")))
  local t0 = sys.clock()
  local rc = run_self(argv, env) or 1
  local secs = sys.clock() - t0
  local st = sim:state()
  if st then out:write(require("salvage.demo.show").state(st)) end
  local sent = 0
  for _, x in ipairs(st and st.templates or {}) do sent = sent + ((x.upload or {}).bytes or 0) end
  for _, x in ipairs(st and st.volumes or {}) do sent = sent + ((x.upload or {}).bytes or 0) end
  sim:stop()
  return rc, { seconds = secs, sent = sent, pool = bytes_under(pool) }
end

local function steps_kvm(d, files, out, keep_sim)
  local function step(s) out:write("\n== ", s, "\n") out:flush() end
  step(("demo primary storage in %s/primary (VHD chains for the seed's volumes)"):format(d))
  local primary = d .. "/primary"
  assert(sys.mkdir(primary))
  local made, err = require("salvage.demo.estate").from_dump(primary, { files.schema, files.seed })
  if not made then error({ demo = "demo: " .. tostring(err) }) end
  out:write(("%d VHD files written\n"):format(#made.files))
  step("salvage plan (with what each guest needs on KVM)")
  local prc = run_self({ "plan", "--dump", files.schema, "--dump", files.seed, "--storage", primary,
    "-o", d .. "/plan.json", "--format", "table" })
  if prc ~= 0 then error({ demo = ("demo: plan failed (exit status %s)"):format(tostring(prc)) }) end
  local p = require("salvage.plan").load(d .. "/plan.json")
  for _, vm in ipairs(p and p.vms or {}) do
    local needs = vm.kvm_guest and vm.kvm_guest.needs or "?"
    out:write(("  %-8s %-32s KVM needs: %s\n"):format(vm.name, tostring(vm.os_type), needs))
  end
  step("new cloud 1, a KVM zone: recover by QCOW2 upload")
  local rc1, up = kvm_round(d, files, out, keep_sim, "upload")
  step("new cloud 2, a KVM zone: recover by zero-copy import from its NFS primary pool")
  local rc2, zc = kvm_round(d, files, out, keep_sim, "zero-copy")
  step("side by side")
  out:write(("%-12s %10s %18s %22s\n"):format("path", "seconds", "bytes uploaded", "bytes written in pool"))
  out:write(("%-12s %10.2f %18d %22d\n"):format("upload", up.seconds, up.sent, up.pool))
  out:write(("%-12s %10.2f %18d %22d\n"):format("zero-copy", zc.seconds, zc.sent, zc.pool))
  local rc = (rc1 ~= 0) and rc1 or rc2
  out:write(("done (recover exit status %d)\n"):format(rc))
  return rc
end

local function rm_rf(path)
  local pid = sys.spawn { "rm", "-rf", "--", path }
  if pid then sys.wait(pid) end
end

--- run{out = io.stdout, keep = false, kvm = false} -> exit status of the recover step,
-- or nil, message when the demo cannot start or a step before recover fails.
-- The temporary directory and the simulator are removed/stopped whatever
-- happens (keep = true leaves the directory, to look at the journal and report).
function M.run(opts)
  opts = opts or {}
  local out = opts.out or io.stdout
  local files, ferr = M.files()
  if not files then return nil, "demo: " .. ferr end
  local why = M.missing_tools()
  if why then return nil, "demo: " .. why end
  local tmp = os.getenv("TMPDIR")
  local d, derr = sys.mkdtemp(((tmp and tmp ~= "") and tmp or "/tmp") .. "/salvage-demo.")
  if not d then return nil, "demo: " .. tostring(derr) end
  local sim
  local ok, res = pcall(opts.kvm and steps_kvm or steps, d, files, out, function(s)
    if sim then pcall(sim.stop, sim) end
    sim = s
  end)
  if sim then pcall(sim.stop, sim) end
  if opts.keep then out:write("kept ", d, "\n") else rm_rf(d) end
  if ok then return res end
  if type(res) == "table" and res.demo then return nil, res.demo end
  error(res, 0)
end

return M
