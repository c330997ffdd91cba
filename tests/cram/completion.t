Bash completion (tools/salvage.bash-completion, installed by make install and
the Debian package): commands, options read from each command's --help,
choice values, vhd subcommands.

  $ mkdir bin && ln -s "$SALVAGE" bin/salvage
  $ cat > t.sh <<'SH'
  > . /usr/share/bash-completion/bash_completion
  > . "$TOP/tools/salvage.bash-completion"
  > PATH=$PWD/bin:$PATH
  > t() {
  >   COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  >   COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
  >   _salvage salvage "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
  >   echo "${COMPREPLY[*]}"
  > }
  > SH
  $ bash -c '. ./t.sh; t salvage ap; t salvage de; t salvage vhd ""; t salvage plan --form'
  api
  demo
  read scan check flatten coalesce create
  --format
  $ bash -c '. ./t.sh; t salvage --quiet inventory --format ""; t salvage --log-level ""; t salvage inventory --inc'
  table json csv
  error warn info debug
  --include-destroyed --include-detached
