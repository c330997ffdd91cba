The man page lists every command with its options (each command's own --help):
man/salvage.1 is generated from man/salvage.1.in by `make man` and must be
up to date (if this fails: run `make man` and commit man/salvage.1).

  $ sh "$TOP/tools/genman.sh" "$SALVAGE" "$TOP/man/salvage.1.in" > salvage.1
  $ diff -u "$TOP/man/salvage.1" salvage.1 && echo up to date
  up to date
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
