One set of command-line conventions, for every command.

  $ S="$SALVAGE"
  $ export HOME=$PWD SALVAGE_CONFIG=$PWD/conf/config.lua SALVAGE_API_URL= SALVAGE_API_KEY= SALVAGE_SECRET_KEY=

Global options go before the command as well as after it.

  $ "$S" vhd create d.vhd --size 1 --quiet
  d.vhd: dynamic, 1048576 bytes, uuid * (glob)
  $ "$S" --quiet vhd scan . ; echo "exit $?"
  vhd=d.vhd capacity=1048576 size=* hidden=0 parent=none (glob)
  exit 0
  $ "$S" --log-level=debug --log-json --format csv vhd scan .
  path,capacity,size,hidden,parent,problems
  ./d.vhd,1048576,*,0,, (glob)
  $ "$S" --log-level loud vhd scan .
  salvage: vhd: unknown log level 'loud' (error, warn, info, debug)
  [2]
  $ "$S" --log-json nosuchcmd 2>&1 | "$S" -e 'local r = require("salvage.json").decode(io.read("a")) print(r.level, r.exit)'
  error	2 (esc)

--help of every command lists the global options and the values of each choice.

  $ for c in api config demo examples inventory plan recover repl; do "$S" $c --help | grep -c -- '^  --log-json'; done | sort -u
  1
  $ "$S" plan --help | grep -E '^ +--format'
        --format F         what to print (default: json, or nothing with -o) (one of: json, table, csv)
  $ "$S" api --help | grep -c 'default:\? json'
  1
  $ "$S" api --help | grep -E '^ +-f, --format'
    -f, --format FMT             output format (one of: json, table, csv) (default: json)
  $ "$S" --help | grep -A4 '^options of every command'
  options of every command (before or after the command name):
    --log-level LEVEL   error, warn, info (default) or debug
    --quiet, -q         errors only, no progress
    --log-json          every stderr line one JSON object (logs, progress, errors)
    --format F          table, json or csv, for commands that print records

Every command that prints records offers table, json and csv.

  $ mkdir storage
  $ cat > inv.json <<'JSON'
  > [{"id": 24, "name": "rootvm1", "display_name": "rootvm1", "state": "Running",
  >   "account": {"id": 2, "name": "admin", "type": 1}, "domain": {"id": 1, "name": "ROOT", "path": "/"},
  >   "offering": {"name": "Small Instance", "cpu": 1, "speed": 500, "ram": 512},
  >   "volumes": [{"id": 25, "name": "ROOT-24", "type": "ROOT", "size": 21474836480, "device_id": 0,
  >                "path": "34c8b964-4ecb-4463-9535-40afc0bd2117", "format": "VHD", "state": "Ready"},
  >               {"id": 26, "name": "data, 1", "type": "DATADISK", "size": 1073741824, "device_id": 1,
  >                "path": "77c8b964-4ecb-4463-9535-40afc0bd2117", "format": "VHD", "state": "Ready"}]}]
  > JSON
  $ "$S" plan --inventory inv.json --storage storage --format csv
  VMID,VM,OWNER,CPU,MHZ,RAM,DISK,TYPE,SIZE,CHAIN,STATUS
  24,rootvm1,ROOT/admin,1,500,512,ROOT-24,ROOT,21474836480,-,ERROR ENOENT
  24,rootvm1,ROOT/admin,1,500,512,"data, 1",DATADISK,1073741824,-,ERROR ENOENT
  $ "$S" plan --inventory inv.json --storage storage -o plan.json -q
  $ python3 "$TOP/tests/cloudstack-sim/simulator.py" --ready-file ready --apikey k --secretkey s \
  >   --lifetime 60 > sim.log 2>&1 &
  $ for i in $(seq 100); do [ -f ready ] && break; sleep 0.1; done
  $ export SALVAGE_API_URL=$(cat ready)/client/api SALVAGE_API_KEY=k SALVAGE_SECRET_KEY=s
  $ "$S" recover plan.json --zone Zone1 --workdir w --format csv -q
  STATUS,VMID,VM,OWNER,NEW ID,DETAIL
  FAILED,24,rootvm1,,-,at plan: root disk cannot be recovered: 34c8b964-4ecb-4463-9535-40afc0bd2117.vhd not found under the storage roots
  [1]

--log-json: every stderr line is one JSON object, per-VM status lines and
fatal errors included.

  $ "$S" recover plan.json --zone Zone1 --workdir w2 --log-json > report.txt 2> err.jsonl; echo "exit $?"
  exit 1
  $ "$S" -e 'local json = require "salvage.json"
  > for line in io.lines("err.jsonl") do
  >   local r = assert(json.decode(line), line)
  >   if r.vm then print(r.level, r.msg, r.status) end
  > end'
  info\t[1/1] rootvm1: not recoverable\tnot recoverable (esc)
  $ "$S" --log-json plan --inventory missing.json --storage storage; echo "exit $?"
  {"exit":1,"level":"error","msg":"salvage: missing.json: No such file or directory","time":"*"} (glob)
  exit 1
  $ "$S" --log-json vhd read nothere.vhd 2>&1 | "$S" -e 'print(require("salvage.json").decode(io.read("a")).level)'
  error
  $ curl -s -X POST "$(cat ready)/_sim/shutdown"
  {"stopping": true} (no-eol)

Ctrl-C: one line, exit 130, no traceback (here: a server that never answers). The
call does not wait for its 60 s timeout: `timeout 20` would end it with 124.

  $ cat > hole.py <<'PY'
  > import socket, sys, time
  > s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(5); s.settimeout(0.5)
  > open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
  > import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
  > conns, end = [], time.time() + 40
  > while time.time() < end:
  >     try: conns.append(s.accept()[0])
  >     except socket.timeout: pass
  > PY
  $ python3 hole.py port & HOLE=$!
  $ for i in $(seq 100); do [ -f port ] && break; sleep 0.1; done
  $ SALVAGE_API_URL=http://127.0.0.1:$(cat port)/client/api timeout 20 "$S" api listZones --timeout 60 > out 2> err & P=$!
  $ sleep 1; kill -INT $P; wait $P; echo "exit $?"
  exit 130
  $ cat err
  salvage: interrupted
  $ kill $HOLE

salvage config: profiles in a Lua file, secrets masked by show, one --profile everywhere.

  $ unset SALVAGE_API_URL SALVAGE_API_KEY SALVAGE_SECRET_KEY
  $ "$S" config path
  */conf/config.lua (glob)
  $ "$S" config show
  # */conf/config.lua (does not exist) (glob)
  $ "$S" config set url http://127.0.0.1:9/client/api
  config: url of profile 'default' saved in */conf/config.lua (glob)
  $ "$S" config set --profile new apikey AKIA1234567
  config: apikey of profile 'new' saved in */conf/config.lua (glob)
  $ "$S" config set -p new secretkey 'very secret'
  config: secretkey of profile 'new' saved in */conf/config.lua (glob)
  $ "$S" config set -p new verify_tls perhaps
  salvage: config: verify_tls must be true or false
  [2]
  $ "$S" config set colour blue
  salvage: config: unknown key 'colour' (apikey, cafile, secretkey, timeout, url, verify_tls)
  [2]
  $ "$S" config show
  # */conf/config.lua (glob)
  [default]
    url = http://127.0.0.1:9/client/api
  [new]
    apikey = AKIA***
    secretkey = ***
  $ "$S" config show | grep -c 'very secret\|1234567'
  0
  [1]
  $ stat -c %a conf/config.lua conf
  600
  700
  $ "$S" -e 'print(require("salvage.config").load().profiles.new.secretkey)'
  very secret
  $ "$S" api listZones --profile new
  salvage: config: no url for profile 'new' (set it in */conf/config.lua or SALVAGE_API_URL) (glob)
  [1]
  $ "$S" recover plan.json --zone Z --workdir w3 --profile nope
  salvage: api: config: no profile named 'nope' in */conf/config.lua (glob)
  [1]
  $ "$S" recover --help | grep -E '^ +-p, --profile'
    -p, --profile NAME * API credentials profile (salvage config) (glob)

salvage vhd takes vhd-util's spellings; a bare --size is MiB (as vhd-util -s).

  $ "$S" vhd create -n u.vhd -s 10240
  u.vhd: dynamic, 10737418240 bytes, uuid * (glob)
  $ "$S" vhd create v.vhd --size 10240B
  v.vhd: dynamic, 10240 bytes, uuid * (glob)
  $ "$S" vhd read -p -n u.vhd | grep 'Current disk size'
  Current disk size   : 10240 MB (10737418240 Bytes)
  $ "$S" vhd check -n u.vhd
  u.vhd is valid
  $ "$S" vhd scan -f -m "$PWD/u*.vhd" | sed 's/size=[0-9]*/size=N/'
  vhd=u.vhd capacity=10737418240 size=N hidden=0 parent=none
  $ "$S" vhd read u.vhd -n v.vhd
  salvage: vhd read: give FILE or -n FILE, not both
  [2]
