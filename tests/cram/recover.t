salvage recover: usage and refusals (the recovery itself is tested end to end in tests/lua).

  $ S="$SALVAGE"
  $ $S recover --help | head -3
  usage: salvage recover PLAN.json --zone ZONE --workdir DIR [--profile NAME] [--workers N] [--scratch DIR] [--keep-disks] [--skip-unreadable] [--dry-run] [--only VM]... [--format table|json|csv] [--hypervisor kvm|xenserver] [--kvm-primary POOL=DIR]
  
  recover the VMs of a plan into the new cloud (resumable)
  $ $S recover --help | grep -c -- '--dry-run\|--workers\|--only\|--workdir'
  5
  $ $S recover plan.json --workdir w; echo "exit $?"
  salvage: recover: missing required option --zone
  exit 2
  $ $S recover --zone Z --workdir w; echo "exit $?"
  salvage: recover: missing argument: salvage recover PLAN.json --zone ZONE --workdir DIR [--profile NAME] [--workers N] [--scratch DIR] [--keep-disks] [--skip-unreadable] [--dry-run] [--only VM]... [--format table|json|csv] [--hypervisor kvm|xenserver] [--kvm-primary POOL=DIR]
  exit 2
  $ $S recover plan.json --zone Z --workdir w --workers 0; echo "exit $?"
  salvage: recover: --workers must be 1..64
  exit 2

A plan must be a plan.

  $ $S recover missing.json --zone Z --workdir w; echo "exit $?"
  salvage: missing.json: No such file or directory
  exit 1
  $ echo '{"vms": []}' > notaplan.json
  $ $S recover notaplan.json --zone Z --workdir w; echo "exit $?"
  salvage: notaplan.json: not a salvage plan (format ~= salvage-plan)
  exit 1
