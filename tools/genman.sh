#!/bin/sh
# Generate the man page from man/salvage.1.in: the COMMANDS section is every
# built-in command's own --help (and each vhd subcommand's), so the man page
# lists every command with its options and cannot drift from them. Run at
# build time (make man -> build/salvage.1; make install and the package use it).
# Usage: tools/genman.sh SALVAGE_BINARY [TEMPLATE] > salvage.1
set -eu
S=$1
IN=${2:-$(dirname "$0")/../man/salvage.1.in}

# roff-safe preformatted text: backslashes escaped, no line starting with . or '
roff() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }

# a command's --help without the global options (listed once, above)
help_of() { "$S" "$@" --help | sed '/^global options/,$d' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'; }

commands() {
	for c in $("$S" help | sed -n '/^commands/,/^$/s/^  \([a-z][a-z0-9-]*\) .*/\1/p'); do
		printf '.SS %s\n' "$c"
		printf '.EX\n'
		help_of "$c" | roff
		printf '.EE\n'
		if [ "$c" = vhd ]; then
			for sub in $("$S" vhd --help | sed -n 's/^  \([a-z][a-z]*\)  .*/\1/p'); do
				printf '.SS "vhd %s"\n.EX\n' "$sub"
				help_of vhd "$sub" | roff
				printf '.EE\n'
			done
		fi
	done
}

version=$("$S" -e 'io.write(require("salvage").version)')
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
commands > "$tmp"
awk -v cmds="$tmp" -v version="$version" -v date="2026-12-07" '
	/^@COMMANDS@$/ { while ((getline l < cmds) > 0) print l; next }
	{ gsub(/@VERSION@/, version); gsub(/@DATE@/, date); print }
' "$IN"
