--- salvage recover PLAN: flatten, upload and deploy every VM of a plan into the new
-- cloud; resumable (journal in the work directory), N VMs at a time.
local args = require "salvage.args"
local cli = require "salvage.cli"
local json = require "salvage.json"
local sys = require "salvage.sys"
local plan = require "salvage.plan"
local recover = require "salvage.recover"

local spec = {
  usage = "salvage recover PLAN.json --zone ZONE --workdir DIR [--profile NAME] [--workers N] "
    .. "[--scratch DIR] [--keep-disks] [--skip-unreadable] [--dry-run] [--only VM]... [--format table|json|csv] "
    .. "[--hypervisor kvm|xenserver] [--kvm-primary POOL=DIR]",
  summary = "recover the VMs of a plan into the new cloud (resumable)",
  description = [[
Per VM: ensure the domain, account and service offering, upload the root disk as a
template, deploy the VM stopped with its old names, upload and attach the data disks,
start it if the policy says so. Each disk is streamed from its chain straight into the
new cloud (sources are never written; nothing is stored): DIR holds only the journal,
the report and a lock. --scratch SCRATCH flattens each disk into SCRATCH first and
uploads the file (for links or clouds where a local copy helps); --keep-disks keeps a
copy of what was sent, in SCRATCH (or DIR)/disks.
Every finished step is journaled in DIR/journal.jsonl: run the same
command again after any interruption and it continues where it stopped, creating
nothing twice. The report is printed and written to DIR/report.json.
KVM: the zone's hypervisor comes from the API (or --hypervisor); a KVM zone gets
its disks as QCOW2 uploads. --kvm-primary POOL=DIR (the zone's NFS primary pool,
mounted at DIR here) writes each disk as qcow2 into the pool root instead and adopts
it with importVm / importVolume (CloudStack 4.19+): no upload, no copy.
Every template, VM and volume made is tagged salvage-source=<old UUID> and found
again by that tag; journaled ids are checked in the new cloud on every run.
Before creating anything, the credentials, the zone and every disk are checked: a disk
file that cannot be read stops the run, unless --skip-unreadable (then each VM with such a
disk fails at "preflight", named with its files, and the others are recovered).
SIGINT or SIGTERM stops the whole run (exit 130 or 143); run again to resume.
The policy is the plan's (recorded with its hash); another needs --policy-changed.
Credentials: --profile NAME (salvage config; ~/.config/salvage/config.lua) or SALVAGE_API_URL,
SALVAGE_API_KEY, SALVAGE_SECRET_KEY.]],
  options = {
    { "profile", short = "p", value = "NAME", help = "API credentials profile (salvage config)" },
    { "api-profile", value = "NAME", help = "old name of --profile" },
    { "zone", value = "ZONE", required = true, help = "zone name or id in the new cloud" },
    { "workdir", value = "DIR", required = true, help = "journal, report and lock" },
    { "scratch", value = "SCRATCH", help = "flatten each disk into SCRATCH/disks, then upload the file" },
    { "workers", short = "j", value = "N", type = "integer", default = 1, help = "VMs recovered at a time" },
    { "dry-run", short = "n", help = "look up and check everything, create nothing; print what would be done" },
    { "only", value = "VM", multi = true, help = "only this VM (name, id or uuid)" },
    { "policy", value = "FILE.lua", help = "policy script (passwords, offerings, networks)" },
    { "format", value = "F", choices = { "table", "json", "csv" }, default = "table",
      help = "report format on stdout" },
    { "poll-interval", value = "S", type = "number", help = "seconds between polls of jobs and uploads" },
    { "hypervisor", value = "H", choices = { "kvm", "xenserver" },
      help = "the target zone's hypervisor (default: asked from the API)" },
    { "kvm-primary", value = "POOL=DIR", help = "zero-copy: write qcow2 into this NFS pool, mounted at DIR" },
    { "keep-disks", help = "keep a copy of every disk sent, in SCRATCH (or DIR)/disks (written while streaming)" },
    { "skip-unreadable", help = "recover the VMs whose disks can be read; the others fail, each named" },
    { "switch-cloud", help = "use a workdir made against another cloud (every id is checked again)" },
    { "policy-changed", help = "use a policy other than the one the plan was made with" },
    { "worker-vm", value = "ID", help = "(internal) run one VM as a worker process" },
    { "parent-pid", value = "PID", type = "integer", help = "(internal) the coordinating process" },
  },
  positionals = { min = 1, max = 1 },
}

local M = { summary = "recover the VMs of a plan into the new cloud (resumable, parallel)", spec = spec }

--- A client for the new cloud from a profile name or the environment;
-- extra: client options ({poll_interval = s, ...}). Fails the command on error.
function M.client(profile, extra)
  local ok, api = pcall(require, "salvage.cloudstack.api")
  if not ok then cli.fail(1, "recover needs salvage.cloudstack.api, which this build lacks") end
  local client, err = api.from_profile(profile, extra)
  if not client then cli.fail(1, "api: " .. tostring(err)) end
  return client
end

function M.run(argv)
  local opts, err = args.parse(spec, argv)
  if not opts then cli.usage_error("recover: " .. err) end
  if opts.help then
    io.stdout:write(args.help(spec))
    return 0
  end
  opts.api_profile = opts.profile or opts.api_profile
  if opts.workers < 1 or opts.workers > 64 then cli.usage_error("recover: --workers must be 1..64") end
  local p, perr = plan.load(opts[1])
  if not p then cli.fail(1, perr) end
  local policy, polerr, policy_file = plan.policy_of(p, opts.policy, opts.policy_changed)
  if not policy then cli.fail(1, "policy: " .. tostring(polerr)) end
  local workdir = opts.workdir:gsub("/+$", "")
  if workdir == "" then workdir = "/" end
  if not opts.dry_run then sys.mkdir(workdir) end
  workdir = sys.realpath(workdir) or workdir
  local kvm_primary
  if opts.kvm_primary then
    local pool, dir = opts.kvm_primary:match("^([^=]+)=(.+)$")
    if not pool then cli.usage_error("recover: --kvm-primary takes POOL=DIR (pool id or name, mounted directory)") end
    kvm_primary = { pool = pool, dir = (sys.realpath(dir) or dir):gsub("/+$", "") }
    if opts.hypervisor == "xenserver" then cli.usage_error("recover: --kvm-primary needs a KVM zone") end
    opts.hypervisor = "kvm"
  end
  local scratch
  if opts.scratch then
    if not opts.dry_run then sys.mkdir(opts.scratch) end
    scratch = sys.realpath(opts.scratch) or opts.scratch
  end
  local client = M.client(opts.api_profile, { poll_interval = opts.poll_interval })
  local run_opts = {
    client = client, zone = opts.zone, workdir = workdir, workers = opts.workers,
    dry_run = opts.dry_run, only = opts.only, policy = policy, keep_disks = opts.keep_disks, scratch = scratch,
    switch_cloud = opts.switch_cloud, skip_unreadable = opts.skip_unreadable,
    worker_vm = opts.worker_vm, parent_pid = opts.parent_pid, poll_interval = opts.poll_interval,
    hypervisor = opts.hypervisor, kvm_primary = kvm_primary,
    worker_argv = recover.worker_argv { plan = sys.realpath(opts[1]) or opts[1], zone = opts.zone,
      workdir = workdir, policy = policy_file, policy_changed = opts.policy_changed,
      api_profile = opts.api_profile, poll_interval = opts.poll_interval, keep_disks = opts.keep_disks,
      hypervisor = opts.hypervisor, kvm_primary = opts.kvm_primary, scratch = scratch },
  }
  local ok, report = pcall(recover.run, p, run_opts)
  if not ok then
    if recover.is_stop(report) then
      -- one line; the journal is resumable
      local code = report.signal == "SIGTERM" and 143 or 130
      if not opts.worker_vm then
        require("salvage.log").line(("salvage: recover: stopped by %s; run the same command again to resume")
          :format(report.signal), { level = "error", signal = report.signal })
      end
      return code
    end
    if type(report) == "string" and report:match("^recover: ") then cli.fail(1, report:gsub("^recover: ", "")) end
    error(report, 0)
  end
  if opts.worker_vm then return report and 0 or 1 end
  if opts.format == "json" then
    -- generated passwords stay in DIR/report.json (mode 0600), not on stdout
    io.stdout:write(json.pretty(require("salvage.log").redact(report)))
  elseif opts.format == "csv" then
    io.stdout:write(recover.csv(report))
  else
    io.stdout:write(recover.table(report))
  end
  if #report.failed > 0 then return 1 end
  return 0
end

return M
