salvage plan: the recovery plan from an inventory and storage roots.

  $ S="$SALVAGE"
  $ $S plan --help | head -3
  usage: salvage plan (--db URL | --dump FILE... | --inventory FILE) --storage ROOT... [--policy FILE.lua] [--force-disk NAME]... [-o plan.json] [--format json|table|csv]
  
  build the recovery plan: owners, specs and checked VHD chains of every VM to recover

Usage errors exit 2.

  $ $S plan --storage /tmp; echo "exit $?"
  salvage: plan: give exactly one of --db, --dump or --inventory
  exit 2
  $ $S plan --inventory x.json; echo "exit $?"
  salvage: plan: give at least one --storage ROOT
  exit 2
  $ $S plan --inventory x.json --storage /tmp --format xml; echo "exit $?"
  salvage: plan: option --format expects one of json, table, csv, got 'xml'
  exit 2

A VM whose disks are not found is kept in the plan, marked and explained.

  $ mkdir storage
  $ cat > inv.json <<'JSON'
  > [{"id": 24, "name": "rootvm1", "display_name": "rootvm1", "state": "Running",
  >   "account": {"id": 2, "name": "admin", "type": 1}, "domain": {"id": 1, "name": "ROOT", "path": "/"},
  >   "offering": {"name": "Small Instance", "cpu": 1, "speed": 500, "ram": 512},
  >   "guest_os": "Other Linux (64-bit)", "template": {"name": "centos65-base"},
  >   "volumes": [{"id": 25, "name": "ROOT-24", "type": "ROOT", "size": 21474836480, "device_id": 0,
  >                "path": "34c8b964-4ecb-4463-9535-40afc0bd2117", "format": "VHD", "state": "Ready"}]},
  >  {"id": 26, "name": "ppvm3", "display_name": "ppvm3", "state": "Stopped",
  >   "account": {"id": 5, "name": "peterparker", "type": 0}, "domain": {"id": 2, "name": "SPDM Inc", "path": "/SPDM Inc/"},
  >   "offering": {"name": "Small Instance", "cpu": 1, "speed": 500, "ram": 512},
  >   "volumes": [{"id": 27, "name": "ROOT-26", "type": "ROOT", "size": 21474836480, "device_id": 0,
  >                "state": "Allocated"}]}]
  > JSON
  $ $S plan --inventory inv.json --storage storage --format table
  VMID  VM       OWNER                      CPU  MHZ  RAM  DISK     TYPE  SIZE  CHAIN  STATUS
  24    rootvm1  ROOT/admin                 1    500  512  ROOT-24  ROOT  20G   -      ERROR ENOENT
  26    ppvm3    ROOT/SPDM Inc/peterparker  1    500  512  ROOT-26  ROOT  20G   -      ERROR ENOPATH
  2 VMs (0 recoverable), 2 disks, 40G, 4 problems, 0 skipped
    rootvm1: error EROOT: root disk cannot be recovered: 34c8b964-4ecb-4463-9535-40afc0bd2117.vhd not found under the storage roots
    ppvm3: error EROOT: root disk cannot be recovered: volume has no path (never created on primary storage)

The JSON plan is what recover reads; -o writes it atomically.

  $ $S plan --inventory inv.json --storage storage -o plan.json --quiet; echo "exit $?"
  exit 0
  $ $S -e 'local p = assert(require("salvage.plan").load("plan.json")); print(p.format, p.version, #p.vms, p.vms[2].owner.account, p.vms[1].recoverable)'
  salvage-plan\t1\t2\tpeterparker\tfalse (esc)

A policy file maps owners and names.

  $ cat > pol.lua <<'LUA'
  > return {
  >   account_map = function(account, domain)
  >     return { domain_path = "/Recovered" .. domain.path, account = account.name .. "-old", type = account.type }
  >   end,
  > }
  > LUA
  $ $S plan --inventory inv.json --storage storage --policy pol.lua --format table | cut -c1-54 | sed 's/ *$//' | head -3
  VMID  VM       OWNER
  24    rootvm1  ROOT/Recovered/admin-old
  26    ppvm3    ROOT/Recovered/SPDM Inc/peterparker-old

Storage roots must be directories.

  $ $S plan --inventory inv.json --storage nowhere; echo "exit $?"
  salvage: storage: nowhere is not a directory
  exit 1
