salvage inventory: the old cloud's VMs from a live database or a dump.
Real mariadb-dump outputs of the sample estate (+ tests/db/edge-cases.sql),
made by a private server that make-dumps.lua starts and stops:

  $ "$SALVAGE" "$TOP/tests/db/make-dumps.lua" "$PWD" 4.5.2
  $ ls
  named.sql.gz
  plain.sql

The table reads like the seed article's result, plus problems and a summary:

  $ "$SALVAGE" inventory -q --dump plain.sql
  vmid  vmname                   instance      account      domain          cpu  speed  ram   volid  volname             size         path                                  type      state      problems
  24    rootvm1                  i-2-24-VM     admin        /               1    500    512   25     ROOT-24             21474836480  34c8b964-4ecb-4463-9535-40afc0bd2117  ROOT      Ready      -
  25    ppvm2                    i-5-25-VM     peterparker  /SPDM Inc/      1    500    512   26     ROOT-25             21474836480  10c12a4f-7bf6-45c4-9a4e-c1806c5dd54a  ROOT      Ready      -
  25    ppvm2                    i-5-25-VM     peterparker  /SPDM Inc/      1    500    512   28     ppdatavol           5368709120   b9a51f4a-3eb4-4d17-a36d-5359333a5d71  DATADISK  Ready      -
  26    ppvm3                    i-5-26-VM     peterparker  /SPDM Inc/      1    500    512   27     ROOT-26             21474836480  7046409c-f1c2-49db-ad33-b2ba03a1c257  ROOT      Ready      -
  101   novols                   i-5-101-VM    peterparker  /SPDM Inc/      1    500    512   -      -                   -            -                                     -         -          ENOVOLUMES
  103   reinstalled              i-5-103-VM    peterparker  /SPDM Inc/      1    500    512   104    ROOT-103            21474836480  eeee0000-0000-4000-8000-000000000104  ROOT      Ready      -
  104   allocvm                  i-5-104-VM    peterparker  /SPDM Inc/      1    500    512   105    ROOT-104            21474836480  eeee0000-0000-4000-8000-000000000105  ROOT      Ready      -
  104   allocvm                  i-5-104-VM    peterparker  /SPDM Inc/      1    500    512   106    DATA-104            5368709120   -                                     DATADISK  Allocated  ENOPATH
  105   oldpoolvm                i-5-105-VM    peterparker  /SPDM Inc/      1    500    512   107    ROOT-105            21474836480  eeee0000-0000-4000-8000-000000000107  ROOT      Ready      EROOT,EPOOLREMOVED
  106   customvm                 i-5-106-VM    peterparker  /SPDM Inc/      4    2000   8192  108    ROOT-106            21474836480  eeee0000-0000-4000-8000-000000000108  ROOT      Ready      -
  107   customnodetails          i-5-107-VM    peterparker  /SPDM Inc/      -    -      -     109    ROOT-107            21474836480  eeee0000-0000-4000-8000-000000000109  ROOT      Ready      ESPEC
  108   devvm                    i-100-108-VM  devuser      /SPDM Inc/Dev/  1    1000   1024  110    ROOT-108            21474836480  eeee0000-0000-4000-8000-000000000110  ROOT      Ready      -
  109   devvm                    i-101-109-VM  devuser      /Dev/           1    1000   1024  111    ROOT-109            21474836480  eeee0000-0000-4000-8000-000000000111  ROOT      Ready      -
  110   manydisks                i-5-110-VM    peterparker  /SPDM Inc/      1    500    512   123    ROOT-110            21474836480  eeee0000-0000-4000-8000-000000000123  ROOT      Ready      -
  110   manydisks                i-5-110-VM    peterparker  /SPDM Inc/      1    500    512   120    DATA-110-a          1073741824   eeee0000-0000-4000-8000-000000000120  DATADISK  Ready      -
  110   manydisks                i-5-110-VM    peterparker  /SPDM Inc/      1    500    512   122    DATA-110-b          1073741824   eeee0000-0000-4000-8000-000000000122  DATADISK  Ready      -
  110   manydisks                i-5-110-VM    peterparker  /SPDM Inc/      1    500    512   121    DATA-110-c          1073741824   eeee0000-0000-4000-8000-000000000121  DATADISK  Ready      -
  111   it's "q" \\ back\nslash  i-5-111-VM    peterparker  /SPDM Inc/      1    500    512   125    ROOT 'x' \\ "y"\nz  21474836480  eeee0000-0000-4000-8000-000000000125  ROOT      Ready      -
  13 VMs, 17 volumes, 271656681472 bytes, 5 problems, 7 skipped, 0 detached volumes (CloudStack 4.5.2)
  skipped vm 20 oldvm: removed on 2015-03-01 09:05:00
  skipped vm 21 tmpvm: state Destroyed
  skipped vm 22 failedvm: state Error
  skipped vm 102 removedvm: removed on 2015-06-01 00:00:00
  skipped volume 24 ROOT-24: removed on 2015-05-20 14:00:00
  skipped volume 103 ROOT-103: state Destroy
  skipped volume 124 DATA-110-gone: removed on 2015-03-01 00:00:00

Hostile names stay on their line:

  $ "$SALVAGE" inventory -q --dump plain.sql | grep -c ''
  27

A gzipped dump that names its own database (--databases cloud_old) is found:

  $ "$SALVAGE" inventory -q --dump named.sql.gz --format csv --include-detached
  vmid,vmname,instance,account,domain,cpu,speed,ram,volid,volname,size,path,type,state,problems
  24,rootvm1,i-2-24-VM,admin,/,1,500,512,25,ROOT-24,21474836480,34c8b964-4ecb-4463-9535-40afc0bd2117,ROOT,Ready,
  25,ppvm2,i-5-25-VM,peterparker,/SPDM Inc/,1,500,512,26,ROOT-25,21474836480,10c12a4f-7bf6-45c4-9a4e-c1806c5dd54a,ROOT,Ready,
  25,ppvm2,i-5-25-VM,peterparker,/SPDM Inc/,1,500,512,28,ppdatavol,5368709120,b9a51f4a-3eb4-4d17-a36d-5359333a5d71,DATADISK,Ready,
  26,ppvm3,i-5-26-VM,peterparker,/SPDM Inc/,1,500,512,27,ROOT-26,21474836480,7046409c-f1c2-49db-ad33-b2ba03a1c257,ROOT,Ready,
  101,novols,i-5-101-VM,peterparker,/SPDM Inc/,1,500,512,,,,,,,ENOVOLUMES
  103,reinstalled,i-5-103-VM,peterparker,/SPDM Inc/,1,500,512,104,ROOT-103,21474836480,eeee0000-0000-4000-8000-000000000104,ROOT,Ready,
  104,allocvm,i-5-104-VM,peterparker,/SPDM Inc/,1,500,512,105,ROOT-104,21474836480,eeee0000-0000-4000-8000-000000000105,ROOT,Ready,
  104,allocvm,i-5-104-VM,peterparker,/SPDM Inc/,1,500,512,106,DATA-104,5368709120,,DATADISK,Allocated,ENOPATH
  105,oldpoolvm,i-5-105-VM,peterparker,/SPDM Inc/,1,500,512,107,ROOT-105,21474836480,eeee0000-0000-4000-8000-000000000107,ROOT,Ready,"EROOT,EPOOLREMOVED"
  106,customvm,i-5-106-VM,peterparker,/SPDM Inc/,4,2000,8192,108,ROOT-106,21474836480,eeee0000-0000-4000-8000-000000000108,ROOT,Ready,
  107,customnodetails,i-5-107-VM,peterparker,/SPDM Inc/,,,,109,ROOT-107,21474836480,eeee0000-0000-4000-8000-000000000109,ROOT,Ready,ESPEC
  108,devvm,i-100-108-VM,devuser,/SPDM Inc/Dev/,1,1000,1024,110,ROOT-108,21474836480,eeee0000-0000-4000-8000-000000000110,ROOT,Ready,
  109,devvm,i-101-109-VM,devuser,/Dev/,1,1000,1024,111,ROOT-109,21474836480,eeee0000-0000-4000-8000-000000000111,ROOT,Ready,
  110,manydisks,i-5-110-VM,peterparker,/SPDM Inc/,1,500,512,123,ROOT-110,21474836480,eeee0000-0000-4000-8000-000000000123,ROOT,Ready,
  110,manydisks,i-5-110-VM,peterparker,/SPDM Inc/,1,500,512,120,DATA-110-a,1073741824,eeee0000-0000-4000-8000-000000000120,DATADISK,Ready,
  110,manydisks,i-5-110-VM,peterparker,/SPDM Inc/,1,500,512,122,DATA-110-b,1073741824,eeee0000-0000-4000-8000-000000000122,DATADISK,Ready,
  110,manydisks,i-5-110-VM,peterparker,/SPDM Inc/,1,500,512,121,DATA-110-c,1073741824,eeee0000-0000-4000-8000-000000000121,DATADISK,Ready,
  111,"it's ""q"" \ back
  slash",i-5-111-VM,peterparker,/SPDM Inc/,1,500,512,125,"ROOT 'x' \ ""y""
  z",21474836480,eeee0000-0000-4000-8000-000000000125,ROOT,Ready,
  ,,,peterparker,/SPDM Inc/,,,,29,pplogs,21474836480,c3d2e1f0-2929-4a5b-8c6d-7e8f9a0b2929,DATADISK,Ready,

JSON is an array of the VM records, keys sorted:

  $ "$SALVAGE" inventory -q --dump named.sql.gz --format json > inv.json
  $ "$SALVAGE" -e 'local j = require("salvage.json").decode(io.open("inv.json"):read("a")); print(#j, j[2].name, j[2].volumes[2].path, j[2].offering.cpu, j[2].domain.path)'
  13\tppvm2\tb9a51f4a-3eb4-4d17-a36d-5359333a5d71\t1\t/SPDM Inc/ (esc)

A policy script:

  $ cat > only-pp.lua <<'LUA'
  > return function(p)
  >   p.accounts = { "peterparker" }
  >   p.include_destroyed = true
  > end
  > LUA
  $ "$SALVAGE" inventory -q --dump plain.sql --policy only-pp.lua | cut -c1-22
  vmid  vmname          
  21    tmpvm           
  25    ppvm2           
  25    ppvm2           
  26    ppvm3           
  101   novols          
  103   reinstalled     
  104   allocvm         
  104   allocvm         
  105   oldpoolvm       
  106   customvm        
  107   customnodetails 
  110   manydisks       
  110   manydisks       
  110   manydisks       
  110   manydisks       
  111   it's "q" \\ back
  11 VMs, 15 volumes, 22
  skipped vm 20 oldvm: r
  skipped vm 22 failedvm
  skipped vm 24 rootvm1:
  skipped vm 102 removed
  skipped vm 108 devvm: 
  skipped vm 109 devvm: 
  skipped volume 103 ROO
  skipped volume 124 DAT

Errors are clear and never a traceback:

  $ "$SALVAGE" inventory --db 'mariadb://root@127.0.0.1:1/cloud?connect_timeout=3'
  salvage: inventory: connect to 127.0.0.1:1: Can't connect to server on '127.0.0.1' (115)
  [1]
  $ "$SALVAGE" inventory --db 'mariadb://root@localhost/cloud?socket=/nonexistent/sock'
  salvage: inventory: connect to /nonexistent/sock: Can't connect to local server through socket '/nonexistent/sock' (2)
  [1]
  $ "$SALVAGE" inventory --db 'mariadb://root@db:99999/cloud'
  salvage: inventory: connect: bad URL: port out of range (1-65535)
  [2]
  $ "$SALVAGE" inventory --dump missing.sql
  salvage: inventory: missing.sql: no such file
  [1]
  $ "$SALVAGE" inventory
  salvage: inventory: give --db URL or --dump FILE (see --help)
  [2]
  $ "$SALVAGE" inventory --db mariadb://x/ --dump plain.sql
  salvage: inventory: give --db or --dump, not both
  [2]
  $ "$SALVAGE" inventory --dump plain.sql --format xml
  salvage: inventory: option --format expects one of table, json, csv, got 'xml'
  [2]
  $ echo 'return 42' > bad.lua
  $ "$SALVAGE" inventory --dump plain.sql --policy bad.lua
  salvage: inventory: policy bad.lua: must return a table of overrides or a function(policy), got number
  [2]
  $ "$SALVAGE" inventory --help | head -3
  usage: salvage inventory (--db URL | --dump FILE) [--policy FILE.lua] [--format table|json|csv]
  
  List the recoverable user VMs of a CloudStack database, with owners, specs and disks
