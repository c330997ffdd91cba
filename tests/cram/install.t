make install honours PREFIX and DESTDIR; the installed binary finds its examples.

  $ make -s -C "$TOP" install DESTDIR="$PWD/root" PREFIX=/opt/salvage > /dev/null
  $ ls root/opt/salvage/bin root/opt/salvage/share/man/man1
  root/opt/salvage/bin:
  salvage
  
  root/opt/salvage/share/man/man1:
  salvage.1
  $ root/opt/salvage/bin/salvage examples | grep -c '^hello-salvage.lua '
  1
  $ root/opt/salvage/bin/salvage examples hello-salvage
  */root/opt/salvage/share/salvage/examples/hello-salvage.lua (glob)
  $ root/opt/salvage/bin/salvage "$(root/opt/salvage/bin/salvage examples hello-salvage)" | head -1
  salvage * on Lua 5.4.* (glob)

Each C binding also loads into stock lua5.4.

  $ lua5.4 -e "package.cpath='$TOP/build/lua/?.so;'..package.cpath; print(type(require('salvage.sys').stat))"
  function
