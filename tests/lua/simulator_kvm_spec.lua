-- The simulator's KVM zone (--kvm-pool DIR): QCOW2 uploads checked like the
-- server's Qcow2Inspector, the NFS pool as a directory, importVm/importVolume
-- with their checks, listApis. Disks are made by our qcow2 writer and by
-- qemu-img (a qcow2 with a backing file, a raw file).
local api = require "salvage.cloudstack.api"
local sim = require "salvage.cloudstack.simulator"
local sys = require "salvage.sys"
local vhd = require "salvage.vhd"
local fx = dofile(TOP .. "/tests/lua/vhd_fixtures.lua")
local sh = fx.sh

local DIR, POOL, s, c, zone, cluster, pool, net, so

local function qcow2_of(name, out)
  return assert(vhd.flatten(fx.unpack() .. "/" .. name, out, { format = "qcow2", overwrite = true }))
end

setup(function()
  DIR = assert(sys.mkdtemp("/tmp/salvage-simkvm-"))
  POOL = DIR .. "/pool"
  s = assert(sim.start { apikey = "key", secretkey = "secret", lifetime = 180, args = { "--kvm-pool", POOL } })
  c = api.new { url = s.url, apikey = s.apikey, secretkey = s.secretkey }
  zone = assert(c:find_one("listZones", { name = "Zone2-KVM" }))
  cluster = assert(c:find_one("listClusters", { zoneid = zone.id }))
  pool = assert(c:find_one("listStoragePools", { zoneid = zone.id, scope = "CLUSTER" }))
  net = assert(c:find_one("listNetworks", { zoneid = zone.id }))
  so = assert(c:find_one("listServiceOfferings", { name = "Small Instance" }))
end)
teardown(function()
  if s then s:stop() end
  os.execute("rm -rf " .. sh(DIR))
  fx.cleanup()
end)

describe("simulator KVM zone", function()
  it("has a KVM zone, cluster, NFS pool and the XenServer zone unchanged", function()
    local xen = assert(c:find_one("listZones", { name = "Zone1" }))
    assert.equal("XenServer", assert(c:call("listHypervisors", { zoneid = xen.id })).hypervisor[1].name)
    assert.equal("KVM", assert(c:call("listHypervisors", { zoneid = zone.id })).hypervisor[1].name)
    assert.equal("KVM", cluster.hypervisortype)
    assert.equal("NetworkFilesystem", pool.type)
    assert.equal(POOL, s:state().kvm.storage_pools[1].dir)
  end)

  it("takes a QCOW2 template and volume by upload, refuses a VHD there and a backing file", function()
    local q = DIR .. "/c2.qcow2"
    local r = qcow2_of("chain_d2/c2.vhd", q)
    local t = assert(c:upload_template(q,
      { name = "kvm-t", zoneid = zone.id, format = "QCOW2", hypervisor = "KVM" }, { poll_interval = 0.05 }))
    assert.equal("QCOW2", t.format)
    assert.equal(r.virtual_size, t.size)
    local v = assert(c:upload_volume(q, { name = "kvm-v", zoneid = zone.id, format = "QCOW2" },
      { poll_interval = 0.05 }))
    assert.equal("Uploaded", v.state)
    -- a VHD into the KVM zone: refused by getUploadParams (431)
    local _, err = c:call("getUploadParamsForVolume", { name = "x", zoneid = zone.id, format = "VHD" })
    assert.equal(431, err.errorcode)
    assert.matches("XenServer hypervisor supported for VHD", err.errortext)
    -- a qcow2 with a backing file: refused at upload (4.20+)
    local code = RUN(("qemu-img create -q -f qcow2 -F qcow2 -b %s %s"):format(sh(q), sh(DIR .. "/child.qcow2")))
    assert.equal(0, code)
    _, err = c:upload_volume(DIR .. "/child.qcow2", { name = "child", zoneid = zone.id, format = "QCOW2" })
    assert.truthy(err)
    assert.matches("backing file", err.errortext)
    -- a raw file named .qcow2: not a QCOW2
    assert(io.open(DIR .. "/raw.qcow2", "wb")):write(("x"):rep(4096))
    _, err = c:upload_volume(DIR .. "/raw.qcow2", { name = "raw", zoneid = zone.id, format = "QCOW2" })
    assert.matches("not a QCOW2", err.errortext)
  end)

  it("importVm adopts a qcow2 in the pool root; refuses reuse, sub-directories, non-qcow2", function()
    qcow2_of("chain_d1/c1.vhd", POOL .. "/salvage-vm1-root.qcow2")
    local args = { zoneid = zone.id, clusterid = cluster.id, hypervisor = "KVM", importsource = "shared",
      storageid = pool.id, diskpath = "salvage-vm1-root.qcow2", name = "vm1", serviceofferingid = so.id,
      networkid = net.id, ["nicipaddresslist[0].nic"] = "nic0", ["nicipaddresslist[0].ip4Address"] = "10.2.2.77",
      ["nicmacaddresslist[0].nic"] = "nic0", ["nicmacaddresslist[0].macAddress"] = "06:aa:bb:cc:dd:01" }
    local r = assert(c:async("importVm", args))
    local vm = r.virtualmachine
    assert.equal("Stopped", vm.state)
    assert.equal("KVM", vm.hypervisor)
    assert.equal("10.2.2.77", vm.nic[1].ipaddress)
    assert.equal("06:aa:bb:cc:dd:01", vm.nic[1].macaddress)
    local root = assert(c:find_one("listVolumes", { virtualmachineid = vm.id, listall = true }))
    assert.equal("ROOT", root.type)
    assert.equal("salvage-vm1-root.qcow2", root.path)
    -- the same file again: in use
    args.name = "vm1b"
    args["nicipaddresslist[0].ip4Address"] = nil
    args["nicipaddresslist[0].nic"] = nil
    args["nicmacaddresslist[0].nic"] = nil
    args["nicmacaddresslist[0].macAddress"] = nil
    local _, err = c:async("importVm", args)
    assert.equal(431, err.errorcode)
    assert.matches("already in use", err.errortext)
    -- not in the root directory, missing, or not a qcow2
    assert(sys.mkdir(POOL .. "/sub"))
    qcow2_of("chain_d1/c1.vhd", POOL .. "/sub/x.qcow2")
    assert(io.open(POOL .. "/raw.img", "wb")):write(("\0"):rep(65536))
    for _, path in ipairs { "sub/x.qcow2", "missing.qcow2", "raw.img" } do
      args.diskpath = path
      _, err = c:async("importVm", args)
      assert.equal(530, err.errorcode, path)
      assert.matches("Disk not found or is invalid", err.errortext)
    end
    -- clusterid is required (inherited from importUnmanagedInstance)
    args.clusterid = nil
    _, err = c:call("importVm", args)
    assert.equal(431, err.errorcode)
    assert.matches("missing parameter clusterid", err.errortext)
  end)

  it("importVolume adopts a data disk, attachVolume attaches it; listVolumesForImport lists free files", function()
    qcow2_of("chain_d2/c2.vhd", POOL .. "/salvage-vm1-data1.qcow2")
    local list = assert(c:list("listVolumesForImport", { storageid = pool.id }))
    local names = {}
    for _, f in ipairs(list) do names[f.path] = f.format end
    assert.equal("QCOW2", names["salvage-vm1-data1.qcow2"])
    assert.is_nil(names["salvage-vm1-root.qcow2"]) -- taken by vm1
    local r = assert(c:async("importVolume", { storageid = pool.id, path = "salvage-vm1-data1.qcow2", name = "data1" }))
    assert.equal("Ready", r.volume.state)
    assert.equal("DATADISK", r.volume.type)
    local vm = assert(c:find_one("listVirtualMachines", { name = "vm1", listall = true }))
    r = assert(c:async("attachVolume", { id = r.volume.id, virtualmachineid = vm.id, deviceid = 1 }))
    assert.equal(vm.id, r.volume.virtualmachineid)
    local _, err = c:async("importVolume", { storageid = pool.id, path = "salvage-vm1-data1.qcow2" })
    assert.matches("already in use", err.errortext)
  end)

  it("listApis tells whether importVm takes MAC addresses", function()
    local r = assert(c:call("listApis", { name = "importVm" }))
    local params = {}
    for _, p in ipairs(r.api[1].params) do params[p.name] = p.required end
    assert.is_true(params.clusterid)
    assert.is_true(params.importsource)
    assert.is_false(params.diskpath)
    assert.is_false(params.nicmacaddresslist)
    local old = assert(sim.start { apikey = "k", secretkey = "s", lifetime = 60,
      args = { "--kvm-pool", DIR .. "/pool2", "--importvm-no-mac" } })
    local oc = api.new { url = old.url, apikey = old.apikey, secretkey = old.secretkey }
    r = assert(oc:call("listApis", { name = "importVm" }))
    old:stop()
    for _, p in ipairs(r.api[1].params) do assert.are_not.equal("nicmacaddresslist", p.name) end
  end)
end)
