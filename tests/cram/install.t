make install honours PREFIX and DESTDIR; the installed binary finds its examples.

  $ make -s -C "$TOP" install DESTDIR="$PWD/root" PREFIX=/opt/salvage > /dev/null
  $ ls root/opt/salvage/bin root/opt/salvage/share/man/man1 root/opt/salvage/share/salvage root/opt/salvage/share/salvage/cloudstack
  root/opt/salvage/bin:
  salvage
  
  root/opt/salvage/share/man/man1:
  salvage.1
  
  root/opt/salvage/share/salvage:
  NOTICE
  cloudstack
  cloudstack-sim
  examples
  
  root/opt/salvage/share/salvage/cloudstack:
  README.md
  schema-4.5.2.sql
  seed-4.5.2.sql
  $ root/opt/salvage/bin/salvage examples | grep -c '^hello-salvage.lua '
  1
  $ root/opt/salvage/bin/salvage examples hello-salvage
  */root/opt/salvage/share/salvage/examples/hello-salvage.lua (glob)
  $ root/opt/salvage/bin/salvage "$(root/opt/salvage/bin/salvage examples hello-salvage)" | head -1
  salvage * on Lua 5.4.* (glob)

Each C binding also loads into stock lua5.4.

  $ lua5.4 -e "package.cpath='$TOP/build/lua/?.so;'..package.cpath; print(type(require('salvage.sys').stat))"
  function

The installed binary runs the demo from its installed data (no source tree):
the sample estate is recovered into the simulator.

  $ cp -r root "$CRAMTMP/elsewhere" && cd "$CRAMTMP/elsewhere"
  $ mkdir tmp && TMPDIR=$PWD/tmp opt/salvage/bin/salvage demo > demo.out 2> demo.err; echo "exit $?"
  exit 0
  $ grep -E '^(== |[0-9]+ VHD files|3 recovered|done)' demo.out | sed 's#/[^ ]*/salvage-demo\.[A-Za-z0-9]*#D#'
  == demo primary storage in D/primary (VHD chains for the seed's volumes)
  7 VHD files written
  == the new cloud: CloudStack API simulator
  == salvage plan --dump schema-4.5.2.sql --dump seed-4.5.2.sql --storage D/primary
  == salvage recover plan.json --zone Zone1 --workdir D/work --workers 2
  3 recovered, 0 failed, 3 skipped
  == the new cloud afterwards (simulator state)
  == stopping the simulator
  done (recover exit status 0)
  $ grep -E '^  (rootvm1|ppvm2|ppvm3|ppdatavol) ' demo.out | awk '{print $1}' | sort | uniq -c
        1 ppdatavol
        1 ppvm2
        1 ppvm3
        1 rootvm1
  $ ls tmp

Missing data is named:

  $ rm opt/salvage/share/salvage/cloudstack/seed-4.5.2.sql
  $ opt/salvage/bin/salvage demo; echo "exit $?"
  salvage: demo: missing schema-4.5.2.sql, seed-4.5.2.sql and simulator.py (looked in */opt/salvage/bin/../share/salvage/cloudstack, */opt/salvage/bin/data/cloudstack, */opt/salvage/bin/../data/cloudstack; set SALVAGE_DATA_DIR) (glob)
  exit 1
