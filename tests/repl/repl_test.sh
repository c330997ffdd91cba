#!/bin/sh
# The REPL as a person uses it: a real terminal (tmux), keys typed with
# send-keys -l, the screen read back with capture-pane. Prints TAP.
set -u
SALVAGE=${SALVAGE:-$(pwd)/salvage}
WORK=$(mktemp -d /tmp/salvage-repl.XXXXXX)
SOCK=$WORK/tmux.sock
T="tmux -S $SOCK"
n=0
cleanup() { $T kill-server 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

# an environment of its own: fresh HOME (history), no SALVAGE_INIT
$T -f /dev/null new-session -d -s repl -x 120 -y 50 \
	"env -u SALVAGE_INIT HOME=$WORK TERM=xterm $SALVAGE; sleep 30" || { echo "1..0 # tmux failed"; exit 1; }

screen() { $T capture-pane -p -t repl -S -200; }

# wait_for PATTERN: poll the screen for up to 5 s (grep -E)
wait_for() {
	i=0
	while [ $i -lt 50 ]; do
		if screen | grep -Eq -- "$1"; then return 0; fi
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

check() {  # check NAME PATTERN
	n=$((n + 1))
	if wait_for "$2"; then
		echo "ok $n - $1"
	else
		echo "not ok $n - $1"
		echo "# expected /$2/ on screen:"
		screen | tail -15 | sed 's/^/#   /'
	fi
}

type_line() { $T send-keys -t repl -l "$1"; $T send-keys -t repl Enter; }
clear_screen() { $T send-keys -t repl C-l; $T clear-history -t repl; sleep 0.2; }

wait_for 'salvage>' || true
type_line '1+1'
check "an expression prints its value" '^2$'

clear_screen
type_line 'for i=1,2 do'
type_line 'print(i*111)'
type_line 'end'
check "multi-line statements run when complete" '^222$'
check "continuation prompt shown" '\.\.> print'

clear_screen
type_line '{b=2,a={1,2}}'
check "tables print sorted and nested" '^\{a = \{1, 2\}, b = 2\}$'

clear_screen
type_line 'while true do end'
# under load the chunk may not run yet when the first Ctrl-C arrives: repeat it
i=0
while [ $i -lt 10 ] && ! screen | grep -q 'interrupted!'; do
	sleep 0.5
	$T send-keys -t repl C-c
	i=$((i + 1))
done
check "Ctrl-C interrupts a running chunk" 'interrupted!'
type_line 'print("still" .. "alive")'
check "the REPL survives the interrupt" '^stillalive$'

clear_screen
$T send-keys -t repl -l 'this is not lua'
wait_for 'salvage> this is not lua' || true
$T send-keys -t repl C-c
# the cancelled line stays on screen; a fresh empty prompt follows it
i=0
while [ $i -lt 50 ] && [ "$(screen | grep -v '^ *$' | tail -1 | sed 's/ *$//')" != "salvage>" ]; do
	sleep 0.1
	i=$((i + 1))
done
type_line '3*3'
check "Ctrl-C drops the line being typed" '^9$'
n=$((n + 1))
if screen | grep -q "syntax error"; then echo "not ok $n - the dropped line was not run"; else echo "ok $n - the dropped line was not run"; fi

clear_screen
$T send-keys -t repl -l 'salvage.pre'
wait_for 'salvage> salvage\.pre$' || true
$T send-keys -t repl Tab
wait_for 'salvage> salvage\.pretty$' || true
$T send-keys -t repl -l '.format({z=1})'
$T send-keys -t repl Enter
check "Tab completes fields of the salvage table" '^"\{z = 1\}"$'

clear_screen
type_line 'salvage.version'
check "the salvage module is a preloaded global" '^"[0-9]+\.[0-9]+\.[0-9]+"$'

clear_screen
type_line 'error("custom failure")'
check "errors are reported, not fatal" 'custom failure'

clear_screen
type_line 'help()'
check "help() exists and lists the modules" '^  .* vhd$'
clear_screen
type_line 'help(salvage.log)'
check "help(module) shows its documentation" 'configure'

clear_screen
type_line 'h = salvage.http.client()'
$T send-keys -t repl -l 'h:req'
wait_for 'salvage> h:req$' || true
$T send-keys -t repl Tab
wait_for 'salvage> h:request$' || true
$T send-keys -t repl -l ' == nil'
$T send-keys -t repl Enter
check "obj:<Tab> completes a method" 'salvage> h:request == nil'

clear_screen
$T send-keys -t repl -l 'salvage.db.'
$T send-keys -t repl Tab Tab
wait_for 'connect' || true
n=$((n + 1))
if screen | grep -q '_server_start'; then
	echo "not ok $n - names starting with _ are hidden from completion"
else
	echo "ok $n - names starting with _ are hidden from completion"
fi
$T send-keys -t repl C-c

clear_screen
type_line 'u = "mariadb://root:hunter2@db1/cloud"; k = {secretkey = "s3cr3t"}'
check "a line with a password runs" 'salvage>'

$T send-keys -t repl C-d
n=$((n + 1))
i=0
while [ $i -lt 50 ] && ! grep -q '1+1' "$WORK/.salvage_history" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if grep -q '^1+1$' "$WORK/.salvage_history" 2>/dev/null && grep -q 'for i=1,2 do' "$WORK/.salvage_history"; then
	echo "ok $n - Ctrl-D exits and history is saved"
else
	echo "not ok $n - Ctrl-D exits and history is saved"
	sed 's/^/#   /' "$WORK/.salvage_history" 2>/dev/null
fi
n=$((n + 1))
if grep -q 'root:\*\*\*@db1' "$WORK/.salvage_history" && grep -q 'secretkey = "\*\*\*"' "$WORK/.salvage_history" &&
	! grep -q 'hunter2\|s3cr3t' "$WORK/.salvage_history"; then
	echo "ok $n - history stores password lines masked"
else
	echo "not ok $n - history stores password lines masked"
	sed 's/^/#   /' "$WORK/.salvage_history" 2>/dev/null
fi
echo "1..$n"
