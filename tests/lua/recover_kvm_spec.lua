-- Recovery into a KVM zone, end to end: the seed estate from a real MariaDB,
-- VHD chains built with the VHD engine, `salvage recover` against the
-- simulator's KVM zone (--kvm-pool), both by QCOW2 upload and by zero-copy
-- adoption (--kvm-primary: qcow2 written into the pool, importVm/importVolume).
-- Disks are checked with qemu-img; resume creates nothing twice; a failed VM
-- leaves no file in the pool.
-- luacheck: max line length 140
local sys = require "salvage.sys"
local json = require "salvage.json"
local rig = dofile(TOP .. "/tests/lua/recover_rig.lua")
if not rig.needs("recovery into a KVM zone") then return end

local simulator = require "salvage.cloudstack.simulator"
local plan = require "salvage.plan"

local slurp = SLURP

local DIR, PRIMARY, VMS_RAW

local function start_sim(pool, extra)
  local args = { "--kvm-pool", pool }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return assert(simulator.start { lifetime = 240, job_polls = 1, template_polls = 1, args = args })
end

-- path: the PATH of the run (a fake virt-v2v-in-place first)
local function run(s, args, path)
  return rig.run(s, args, path and { env = { PATH = path } })
end

local function recover_args(work, extra)
  return rig.recover_args(work, extra, { zone = "Zone2-KVM" })
end

local function qemu_info(path)
  local code, out, err = RUN("qemu-img check -f qcow2 '" .. path .. "'")
  assert.equal(0, code, tostring(out) .. tostring(err))
  local _, info = RUN("qemu-img info -f qcow2 --output=json '" .. path .. "'")
  return json.decode(info)
end

local function live_vms(st)
  local out = {}
  for _, v in ipairs(st.vms) do
    assert.is_nil(out[v.name], "duplicate VM " .. v.name)
    out[v.name] = v
  end
  return out
end

local function pool_files(dir)
  local out = {}
  for _, n in ipairs(sys.dir(dir) or {}) do
    if n:match("%.qcow2$") or n:match("^%.") then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

describe("recovery into a KVM zone", function()
  setup(function()
    rig.setup("/tmp/salvage-kvm-e2e-")
    DIR, PRIMARY, VMS_RAW = rig.dir, rig.primary, rig.vms
  end)
  teardown(rig.teardown)

  it("by upload: the zone's hypervisor from the API, QCOW2 templates and volumes, qemu-img clean", function()
    local s = start_sim(DIR .. "/pool-up")
    local work = DIR .. "/work-up"
    local code, out = run(s, recover_args(work, { "--keep-disks" }))
    assert.equal(0, code, out)
    local st = s:state()
    s:stop()
    local vms = live_vms(st)
    for _, name in ipairs { "rootvm1", "ppvm2", "ppvm3" } do
      assert.equal("KVM", assert(vms[name], name).hypervisor)
    end
    local n = 0
    for _, t in ipairs(st.templates) do
      if t.isready then
        n = n + 1
        assert.equal("QCOW2", t.format)
        assert.equal("KVM", t.hypervisor)
        assert.equal("qcow2", t.upload.disktype)
        assert.equal(21474836480, t.upload.virtualsize)
      end
    end
    assert.equal(3, n)
    local data
    for _, v in ipairs(st.volumes) do if v.type == "DATADISK" then data = v end end
    assert.equal("QCOW2", data.format)
    assert.equal("ppvm2", data.vmname)
    assert.equal(5368709120, qemu_info(work .. "/disks/25-28.qcow2")["virtual-size"])
    assert.equal(21474836480, qemu_info(work .. "/disks/24-25.qcow2")["virtual-size"])
  end)

  it("zero-copy: qcow2 into the pool root, importVm + importVolume + attach, idempotent", function()
    local pool = DIR .. "/pool-zc"
    local s = start_sim(pool)
    local work = DIR .. "/work-zc"
    local args = recover_args(work, { "--kvm-primary", "kvm-nfs-primary=" .. pool })
    local code, out = run(s, args)
    assert.equal(0, code, out)
    local st = s:state()
    local vms = live_vms(st)
    local files = pool_files(pool)
    assert.equal(4, #files, table.concat(files, " "))            -- three roots and the data disk, no temporary
    for _, f in ipairs(files) do
      assert.matches("^salvage%-[%w%-]+%-%d+%.qcow2$", f)          -- never a bare UUID like CloudStack's files
      qemu_info(pool .. "/" .. f)
    end
    local roots, datas = {}, {}
    for _, v in ipairs(st.volumes) do
      if v.type == "ROOT" then roots[v.vmname] = v else datas[#datas + 1] = v end
    end
    for _, name in ipairs { "rootvm1", "ppvm2", "ppvm3" } do
      local vm = assert(vms[name], name)
      assert.equal("kvm-default-vm-import-dummy-template", vm.templatename)
      assert.equal(name, vm.displayname)
      assert.truthy(sys.stat(pool .. "/" .. roots[name].path), roots[name].path)
      assert.equal(21474836480, roots[name].size)
    end
    assert.equal(1, #datas)
    assert.equal("ppvm2", datas[1].vmname)
    assert.equal(1, datas[1].deviceid)
    assert.equal(5368709120, datas[1].size)
    assert.equal(0, #st.templates)                                -- nothing uploaded
    -- the same command again: nothing new
    local calls = st.calls.importVm
    code, out = run(s, args)
    assert.equal(0, code, out)
    local st2 = s:state()
    s:stop()
    assert.equal(calls, st2.calls.importVm)
    assert.equal(#st.volumes, #st2.volumes)
    assert.equal(4, #pool_files(pool))
  end)

  it("keeps the old MAC and IPv4 (addresses_for) when the policy maps the network, upload and zero-copy", function()
    for _, zc in ipairs { false, true } do
      local pool = DIR .. (zc and "/pool-addr-zc" or "/pool-addr-up")
      local s = start_sim(pool)
      local net = assert(s:state()).networks[2]
      assert.equal("kvmGuestNetwork", net.name)
      local pol = DIR .. "/policy-addr.lua"
      local f = assert(io.open(pol, "w"))
      f:write(("return { network_for = function() return %q end }\n"):format(net.id))
      f:close()
      local pl = DIR .. "/plan-addr.json"
      local p = assert(plan.build(VMS_RAW, { storage = { PRIMARY },
        policy = assert(plan.load_policy(pol)) }))
      assert(plan.save(p, pl))
      local args = { "recover", pl, "--zone", "Zone2-KVM", "--workdir", DIR .. (zc and "/work-addr-zc" or "/work-addr-up"),
        "--poll-interval", "0.02", "--format", "json", "--policy", pol }
      if zc then args[#args + 1] = "--kvm-primary"; args[#args + 1] = "kvm-nfs-primary=" .. pool end
      local code, out = run(s, args)
      assert.equal(0, code, out)
      local vms = live_vms(s:state())
      s:stop()
      assert.equal("02:00:4c:5a:00:18", vms.rootvm1.nic[1].macaddress)
      assert.equal("10.1.1.24", vms.rootvm1.nic[1].ipaddress)
      assert.equal("10.1.2.26", vms.ppvm3.nic[1].ipaddress)
    end
  end)

  it("prepare_guest (the virt-v2v-in-place example) runs on each written root disk before its import", function()
    local bin = DIR .. "/fakebin"
    assert(sys.mkdir(bin))
    local calls = DIR .. "/v2v-calls"
    for _, mode in ipairs { "ok", "fail" } do
      local f = assert(io.open(bin .. "/virt-v2v-in-place", "w"))
      f:write(("#!/bin/sh\necho \"$@\" >> %s\n"):format(calls))
      if mode == "ok" then f:write("echo 'Converting guest: virtio drivers installed'\n") else f:write("echo broken; exit 1\n") end
      f:close()
      os.execute("chmod +x " .. bin .. "/virt-v2v-in-place")
      os.remove(calls)
      local pool = DIR .. "/pool-v2v-" .. mode
      local s = start_sim(pool)
      local args = recover_args(DIR .. "/work-v2v-" .. mode, { "--kvm-primary", "kvm-nfs-primary=" .. pool,
        "--policy", TOP .. "/scripts/examples/kvm-prepare-guest.lua", "--policy-changed" })
      local code, out = run(s, args, bin .. ":" .. os.getenv("PATH"))
      local st = s:state()
      s:stop()
      local n = 0
      for line in (slurp(calls) or ""):gmatch("[^\n]+") do
        n = n + 1
        assert.matches("^%-i disk " .. pool:gsub("%p", "%%%0") .. "/salvage%-.*%.qcow2$", line)
      end
      assert.equal(3, n, out)                              -- the three root disks, not the data disk
      if mode == "ok" then
        assert.equal(0, code, out)
        assert.equal(3, st.calls.importVm)
      else
        assert.equal(1, code, out)
        assert.is_nil(st.calls.importVm)                   -- nothing adopted half converted
        assert.equal(0, #pool_files(pool))                 -- and nothing left in the pool
        assert.matches("virt%-v2v%-in%-place failed", out)
      end
    end
  end)

  it("zero-copy: a VM whose import fails leaves no file in the pool; the next run finishes it", function()
    local pool = DIR .. "/pool-fail"
    local s = start_sim(pool)
    local work = DIR .. "/work-fail"
    assert(s:faults { fail_commands = { importVolume = { count = 1, errorcode = 530, errortext = "injected" } } })
    local args = recover_args(work, { "--kvm-primary", "kvm-nfs-primary=" .. pool })
    local code, out = run(s, args)
    assert.equal(1, code, out)
    local rep = json.decode(slurp(work .. "/report.json"))
    assert.equal(1, #rep.failed)
    assert.equal("ppvm2", rep.failed[1].name)
    -- ppvm2's root was imported (the cloud's now: kept); its data disk file is gone
    local files = pool_files(pool)
    assert.equal(3, #files, table.concat(files, " "))
    for _, f in ipairs(files) do assert.is_nil(f:match("%-28%.qcow2$"), f) end
    code, out = run(s, args)
    assert.equal(0, code, out)
    local st = s:state()
    s:stop()
    assert.equal(4, #pool_files(pool))
    local n = 0
    for _ in pairs(live_vms(st)) do n = n + 1 end
    assert.equal(3, n)
  end)
end)
