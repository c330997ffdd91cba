The command line behaves like lua5.4, plus built-in commands.

  $ S="$SALVAGE"
  $ $S -e 'print(1+1)'
  2
  $ printf 'return 6*7\n' | $S -; echo "exit $?"
  exit 0
  $ printf 'print(6*7)\n' | $S -
  42
  $ printf 'print(6*7)\n' | $S
  42
  $ $S -e 'print(require("cjson").encode({a=1}))'
  {"a":1}
  $ $S --version
  salvage \d+\.\d+\.\d+ \(Lua 5\.4\.\d+\) (re)
  $ $S -v -e 'print("after")'
  salvage * (glob)
  after

Scripts get the arg table as lua sets it, and may start with #!.

  $ cat > args.lua <<'LUA'
  > #!/usr/bin/env salvage
  > print(arg[0], arg[1], arg[2], #arg, arg[-1] ~= nil)
  > print(...)
  > LUA
  $ $S args.lua one two
  args.lua\tone\ttwo\t2\ttrue (esc)
  one\ttwo (esc)
  $ $S -e 'x=1' args.lua a
  args.lua\ta\tnil\t1\ttrue (esc)
  a
  $ $S -l j=salvage.json -e 'print(j.encode({3}))'
  [3]

SALVAGE_INIT runs first (code or @file); -E ignores it.

  $ SALVAGE_INIT='greeting="hi"' $S -e 'print(greeting)'
  hi
  $ echo 'greeting="from file"' > init.lua
  $ SALVAGE_INIT=@init.lua $S -e 'print(greeting)'
  from file
  $ SALVAGE_INIT='greeting="hi"' $S -E -e 'print(greeting)'
  nil

Errors: "salvage: message", a traceback naming files and lines, exit 1.

  $ cat > broken.lua <<'LUA'
  > local function inner()
  >   error("disk on fire")
  > end
  > inner()
  > LUA
  $ $S broken.lua
  salvage: broken.lua:2: disk on fire
  stack traceback:
  \t[C]: in function 'error' (esc)
  \tbroken.lua:2: in local 'inner' (esc)
  \tbroken.lua:4: in main chunk (esc)
  \t[C]: in ? (esc)
  [1]
  $ $S -e 'require("salvage.json").encode({print})' 2>&1 | grep -c 'lua/stdlib/salvage/json.lua:[0-9]*:'
  [1-9] (re)
  $ $S nosuchfile.lua
  salvage: cannot open nosuchfile.lua: No such file or directory
  [1]
  $ $S -e 'syntax error here'
  salvage: (command line):1: syntax error near 'error'
  [1]

Ctrl-C interrupts a running script: exit 130.

  $ $S -e 'while true do end' & pid=$!; sleep 0.5; kill -INT $pid; wait $pid; echo "exit $?"
  salvage: interrupted!
  stack traceback:
  \t(command line):1: in main chunk (esc)
  \t[C]: in ? (esc)
  exit 130

Built-in commands: a word without / or .lua.

  $ $S nosuchcmd
  salvage: unknown command 'nosuchcmd'; commands are: *help* (glob)
  [2]
  $ $S help | grep -E '^  (help|repl|examples) '
    examples     list the shipped example scripts (run them with salvage FILE)
    help         list the commands, or show one command's help
    repl         interactive Lua prompt (readline, completion, history)
  $ $S --help | head -3
  usage: salvage [options] [script [args]]    run a Lua script (like lua5.4)
         salvage <command> [args]             run a built-in command
         salvage                              interactive REPL (on a terminal)
  $ $S help repl | head -1
  usage: salvage repl
  $ $S repl --bogus
  salvage: repl: unknown option '--bogus' (see --help)
  [2]
  $ $S repl --log-level loud
  salvage: repl: unknown log level 'loud' (error, warn, info, debug)
  [2]
  $ $S -x
  salvage: unrecognized option '-x'
  usage: salvage [options] [script [args]] | salvage <command> [args] (see salvage --help)
  [2]

Every command answers --help.

  $ for c in $($S help | sed -n '/^commands/,/^$/s/^  \([a-z-]*\) .*/\1/p'); do $S $c --help > /dev/null || echo "$c: no help"; done
