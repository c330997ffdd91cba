The API command: help, credentials, calls against a private simulator.

  $ "$SALVAGE" api --help | head -1
  usage: salvage api COMMAND [key=value ...] [--format json|table|csv] [--filter a,b] [--profile NAME]
  $ "$SALVAGE" api
  salvage: api: a command name is required (e.g. listZones)
  [2]
  $ "$SALVAGE" api listZones foo
  salvage: api: expected key=value, got 'foo'
  [2]

Without credentials it says where to put them.

  $ export HOME=$PWD SALVAGE_CONFIG= SALVAGE_API_URL= SALVAGE_API_KEY= SALVAGE_SECRET_KEY=
  $ "$SALVAGE" api listZones
  salvage: config: no url for profile 'default' (set it in */.config/salvage/config.lua or SALVAGE_API_URL) (glob)
  [1]

A simulator, private to this test, gone after 60 s at the latest.

  $ python3 "$TOP/tests/cloudstack-sim/simulator.py" --ready-file ready --apikey 'key~1' --secretkey 'sec ret' \
  >   --lifetime 60 --enforce-post --job-polls 1 --template-polls 1 > sim.log 2>&1 &
  $ for i in $(seq 100); do [ -f ready ] && break; sleep 0.1; done
  $ mkdir -p .config/salvage
  $ cat > .config/salvage/config.lua <<LUA
  > return { profiles = { sim = { url = "$(cat ready)/client/api", apikey = "key~1", secretkey = "sec ret" } } }
  > LUA
  $ "$SALVAGE" api listZones --filter name,allocationstate --format table
  NAME   ALLOCATIONSTATE
  Zone1  Enabled
  $ "$SALVAGE" api createDomain name='SPDM Inc' --filter name,path
  [
    {
      "name": "SPDM Inc",
      "path": "ROOT/SPDM Inc"
    }
  ]
  $ "$SALVAGE" api createDomain name='SPDM Inc'
  salvage: createDomain: Domain with name SPDM Inc already exists for the parent id=* (errorcode 431, cserrorcode 4350) (glob)
  [1]
  $ "$SALVAGE" api listDomains listall=true --format csv --filter name,path,level
  name,path,level
  ROOT,ROOT,0
  SPDM Inc,ROOT/SPDM Inc,1

An unknown command is named as such, with the closest names the server knows
(it answers 401 for it, as for bad credentials: listApis tells them apart).

  $ "$SALVAGE" api listzones
  salvage: api: unknown command 'listzones'; did you mean listZones, listHosts? (salvage api --list-commands lists them)
  [2]
  $ "$SALVAGE" api listZone
  salvage: api: unknown command 'listZone'; did you mean listZones? (salvage api --list-commands lists them)
  [2]
  $ "$SALVAGE" api listApis --filter name --format csv | grep -x 'listZones'
  listZones
  $ XDG_CACHE_HOME=$PWD/cache "$SALVAGE" api --list-commands | grep -x 'deployVirtualMachine'
  deployVirtualMachine
  $ ls cache/salvage
  api-commands-sim.txt

cloudmonkey's filter=a,b is the output filter, never sent to the server.

  $ "$SALVAGE" api listZones filter=name,allocationstate --format csv
  name,allocationstate
  Zone1,Enabled
  $ "$SALVAGE" api listZones filter=name --filter id
  salvage: api: give filter= or --filter, not both
  [2]

A URL without /client/api gets a hint.

  $ SALVAGE_API_URL=$(cat ready)/client "$SALVAGE" api listZones 2>&1 | grep -o 'hint: .*'
  hint: the API URL usually ends in /client/api (e.g. http://HOST:8080/client/api)

Async commands wait for their job; the result is printed.

  $ "$SALVAGE" api listServiceOfferings name='Small Instance' --filter id --format csv | tail -1 > so
  $ "$SALVAGE" api listZones --filter id --format csv | tail -1 > zone
  $ "$SALVAGE" api deployVirtualMachine serviceofferingid=$(cat so) zoneid=$(cat zone) templateid=nope --poll-interval 0.05
  salvage: deployVirtualMachine: Unable to execute API command deployvirtualmachine due to invalid value. Invalid parameter templateid value=nope * (glob)
  [1]

The answer is what was asked for: printed unmasked (upload parameters, keys);
logs mask them. The environment overrides the profile.

  $ "$SALVAGE" api listUsers --filter username,apikey,secretkey --format csv
  username,apikey,secretkey
  admin,key~1,sec ret
  $ "$SALVAGE" api getUploadParamsForVolume name=v format=VHD zoneid=$(cat zone) --format csv --filter signature | grep -c '\*\*\*'
  0
  [1]
  $ SALVAGE_SECRET_KEY=wrong "$SALVAGE" api listZones
  salvage: listZones: unable to verify user credentials and/or request signature (errorcode 401)
  [1]

--log-level debug (before or after the command) shows each request URL, signature and keys masked.

  $ "$SALVAGE" --log-level debug api listZones --filter name 2>&1 >/dev/null | grep 'api request' | grep -o 'url=[^ ]*' | sed 's/expires=[^&]*/expires=T/; s/127.0.0.1:[0-9]*/HOST/'
  url="http://HOST/client/api?apikey=***&command=listZones&expires=T&page=1&pagesize=500&response=json&signature=***&signatureversion=3"
  $ "$SALVAGE" api listZones --filter name --log-level debug 2>&1 >/dev/null | grep -c 'sec ret\|key~1\|sec%20ret\|key%7E1'
  0
  [1]

  $ curl -s -X POST "$(cat ready)/_sim/shutdown"
  {"stopping": true} (no-eol)
  $ wait
