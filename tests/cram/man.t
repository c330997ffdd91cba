The man page lists every command with its options: it is made at build time
(make man) from man/salvage.1.in and each command's own --help.

  $ sh "$TOP/tools/genman.sh" "$SALVAGE" "$TOP/man/salvage.1.in" > salvage.1
  $ grep -A1 '^\.SH GLOBAL OPTIONS' salvage.1 | tail -1
  Accepted by every command, before or after the command name
  $ grep -q -- '--zone ZONE' salvage.1 && grep -q -- '-n, --name FILE' salvage.1 && echo options listed
  options listed
  $ for c in $("$SALVAGE" help | sed -n '/^commands/,/^$/s/^  \([a-z][a-z0-9-]*\) .*/\1/p'); do
  >   grep -q "^\.SS $c\$" salvage.1 || echo "missing $c"; done
  $ grep -c '^\.SS "vhd ' salvage.1
  6
  $ for v in SALVAGE_API_URL SALVAGE_API_KEY SALVAGE_SECRET_KEY SALVAGE_PROFILE SALVAGE_CONFIG \
  >   SALVAGE_DB_PASSWORD SALVAGE_MARIADBD SALVAGE_DATA_DIR SALVAGE_INIT SALVAGE_STDLIB_DIR SALVAGE_EXAMPLES_DIR; do
  >   grep -q "$v" salvage.1 || echo "missing $v"; done
  $ grep -E '^\.SH (CONFIGURATION FILE|ENVIRONMENT|EXIT STATUS|EXAMPLES)$' salvage.1
  .SH CONFIGURATION FILE
  .SH ENVIRONMENT
  .SH EXIT STATUS
  .SH EXAMPLES
  $ LC_ALL=C.UTF-8 MANWIDTH=100 man --warnings -l salvage.1 2>&1 >/dev/null
