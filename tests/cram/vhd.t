salvage vhd on XenServer-made fixtures (tests/fixtures/vhd).

  $ sh "$TOP/tests/fixtures/vhd/unpack.sh" "$CRAMTMP/fx" && cd "$CRAMTMP/fx"

Every subcommand answers --help:

  $ for s in read scan check flatten coalesce create; do "$SALVAGE" vhd $s --help | head -1; done
  usage: salvage vhd read FILE [--json]   (or vhd-util's: read -p -n FILE)
  usage: salvage vhd scan PATH... [--match GLOB] [--format table|json|csv]   (or: scan -f -m 'DIR/*.vhd')
  usage: salvage vhd check FILE [--search DIR]... [--json]   (or vhd-util's: check -n FILE)
  usage: salvage vhd flatten LEAF -o OUT [--format vhd|raw|qcow2] [--drop-zero] [--force] [--overwrite] [--search DIR]... [--json]
  usage: salvage vhd coalesce CHILD [--force] [--search DIR]...
  usage: salvage vhd create OUT --size N [--type dynamic|fixed] [--parent P] [--block-size N] [--hidden] [--non-xenserver] [--strict]
  $ "$SALVAGE" vhd bogus
  salvage: vhd: unknown subcommand 'bogus' (read, scan, check, flatten, coalesce, create)
  [2]
  $ "$SALVAGE" vhd flatten chain_d1/c1.vhd
  salvage: vhd flatten: missing required option --output
  [2]

read:

  $ "$SALVAGE" vhd read chain_d1/c1.vhd | grep -v Timestamp
  VHD Footer Summary:
  -------------------
  Cookie              : conectix
  Features            : (0x00000002)
  File format version : 1.0
  Data offset         : 512
  Creator Application : 'tap'
  Creator version     : 1.3
  Creator OS          : 0x00000000
  Original disk size  : 64 MB (67108864 Bytes)
  Current disk size   : 64 MB (67108864 Bytes)
  Geometry            : Cyl: 963, Hds: 8, Sctrs: 17
                      : = 63 MB (67055616 Bytes)
  Disk type           : Differencing hard disk
  Checksum            : 0xfffff076|0xfffff076 (Good!)
  UUID                : 39dd8263-b0cd-469a-8a48-531ebdc6bcb6
  Saved state         : No
  Hidden              : 0
  Footer used         : end of file
  
  VHD Header Summary:
  -------------------
  Cookie              : cxsparse
  Table offset        : 1536
  Header version      : 1.0
  Max BAT size        : 32
  Block size          : 2097152 (2 MB)
  Parent name         : base.vhd
  Parent UUID         : 3de1a9b3-546a-4ee4-915e-db396c9dc2d0
  Parent timestamp    : Thu Nov 26 03:34:10 2026
  Checksum            : 0xffffe236|0xffffe236 (Good!)
  Parent locator 0    : MacX offset 3072 length 17 space 512: ./base.vhd
  Parent locator 1    : W2ku offset 3584 length 20 space 512: ./base.vhd
  Parent locator 2    : W2ru offset 4096 length 20 space 512: ./base.vhd
  Allocated blocks    : 4 of 32
  Batmap              : present
  $ "$SALVAGE" vhd read --json fixed/fixed_tap.vhd | grep -E '"(disk_type|current_size|header|checksum_ok|allocated_blocks)"'
    "allocated_blocks": 0,
      "checksum_ok": true,
      "current_size": 33554432,
      "disk_type": "fixed",
    "header": null,

A damaged end footer: read through the copy at offset 0, and say so:

  $ "$SALVAGE" vhd read damaged/bad_footer_checksum/c1.vhd | grep -E '^(Checksum|Footer used|error)'
  Checksum            : 0xfffff076|0xfffff076 (Good!)
  Footer used         : copy at offset 0
  Checksum            : 0xffffe236|0xffffe236 (Good!)
  error FOOTER_EOF_BAD: c1.vhd: footer at the end of the file is damaged (bad checksum or fields); reading through the intact copy at offset 0

scan, like vhd-util scan -p:

  $ "$SALVAGE" vhd scan chain_d2
  vhd=base.vhd capacity=100663296 size=12608000 hidden=1 parent=none
     vhd=c1.vhd capacity=100663296 size=8409600 hidden=1 parent=base.vhd
        vhd=c2.vhd capacity=100663296 size=10510848 hidden=0 parent=c1.vhd
  $ "$SALVAGE" vhd scan damaged/parent_renamed
  vhd=renamed-parent.vhd capacity=67108864 size=12608000 hidden=1 parent=none
     vhd=c1.vhd capacity=67108864 size=8409600 hidden=0 parent=renamed-parent.vhd
        ! warning PARENT_FOUND_BY_UUID: c1.vhd: parent damaged/parent_renamed/base.vhd is missing; damaged/parent_renamed/renamed-parent.vhd has the parent UUID 3de1a9b3-546a-4ee4-915e-db396c9dc2d0
  $ "$SALVAGE" vhd scan --json chain_d1 | grep -E '"(path|parent|hidden)"'
      "hidden": true,
      "parent": null,
      "path": "chain_d1/base.vhd",
      "hidden": false,
      "parent": "chain_d1/base.vhd",
      "path": "chain_d1/c1.vhd",

check: exit 0 when clean (info only), 1 on errors or warnings:

  $ "$SALVAGE" vhd check chain_d2/c2.vhd | grep -v PARENT_TIMESTAMP
  chain_d2/c2.vhd is valid
  $ "$SALVAGE" vhd check damaged/bat_past_eof/c1.vhd | grep -v PARENT_TIMESTAMP
  error BAT_PAST_EOF: c1.vhd: block 20: BAT entry points at byte 59609600, past the end of the file (8409600 bytes)
  damaged/bat_past_eof/c1.vhd is NOT valid
  $ "$SALVAGE" vhd check damaged/eof_footer_missing/c1.vhd | grep -v PARENT_TIMESTAMP
  error FOOTER_EOF_BAD: c1.vhd: footer at the end of the file is missing (bad cookie: truncated file or lost footer); reading through the intact copy at offset 0
  damaged/eof_footer_missing/c1.vhd is NOT valid
  $ "$SALVAGE" vhd check --json damaged/parent_missing/c1.vhd | grep -E '"(ok|code|severity)"'
    "ok": false,
        "code": "PARENT_MISSING",
        "severity": "error"
  $ "$SALVAGE" vhd check damaged/parent_missing/c1.vhd > /dev/null
  [1]
  $ "$SALVAGE" vhd check chain_d2/c2.vhd > /dev/null
  $ "$SALVAGE" vhd check
  salvage: vhd check: missing FILE (or -n FILE)
  [2]

flatten refuses what it cannot read exactly, leaving nothing:

  $ "$SALVAGE" vhd flatten -q damaged/parent_missing/c1.vhd -o out.vhd
  salvage: flatten: damaged/parent_missing/c1.vhd: parent damaged/parent_missing/base.vhd (UUID 3de1a9b3-546a-4ee4-915e-db396c9dc2d0) is missing and no VHD with that UUID was found (EPARENT)
  [1]
  $ "$SALVAGE" vhd flatten -q damaged/bat_past_eof/c1.vhd -o out.vhd
  salvage: flatten: c1.vhd: block 20: BAT entry points at byte 59609600, past the end of the file (8409600 bytes); refusing to flatten damaged/bat_past_eof/c1.vhd (nothing written); --force would proceed and list the affected sectors (EDAMAGED)
  [1]
  $ ls out.vhd .out.vhd* 2>&1 | sed 's/^ls: //'
  cannot access 'out.vhd': No such file or directory
  cannot access '.out.vhd*': No such file or directory
  $ "$SALVAGE" vhd flatten -q damaged/bat_past_eof/c1.vhd -o out.raw --format raw --force
  out.raw: raw 67108864 bytes virtual, 16777216 bytes written, 8 blocks allocated
  sectors 81920-86015 read from below: c1.vhd: block 20: invalid BAT entry treated as unallocated
  $ sha256sum out.raw | grep -c "$(grep chain_d1/c1.vhd EXPECTED_VIRTUAL.sha256 | cut -c1-64)"
  1
  $ "$SALVAGE" vhd flatten -q damaged/parent_renamed/c1.vhd -o renamed.vhd --json | grep -E '"(virtual_size|format|blocks_written)"'
    "blocks_written": 8,
    "format": "vhd",
    "virtual_size": 67108864,
  $ "$SALVAGE" vhd flatten -q damaged/parent_renamed/c1.vhd -o renamed.vhd > /dev/null
  salvage: flatten: renamed.vhd: output already exists; refusing to replace it (EEXIST)
  [1]
  $ "$SALVAGE" vhd flatten -q damaged/parent_renamed/c1.vhd -o renamed.vhd --overwrite > /dev/null
  $ qemu-img convert -f vpc -O raw renamed.vhd renamed.raw && sha256sum renamed.raw | grep -c "$(grep chain_d1/c1.vhd EXPECTED_VIRTUAL.sha256 | cut -c1-64)"
  1

flatten -o - writes the same output to standard output, nothing else (summary on stderr);
qemu-img reads it back, and the raw form has the fixtures' expected virtual hash:

  $ "$SALVAGE" vhd flatten chain_d2/c2.vhd -o - > piped.vhd 2> piped.err
  $ sed 's/sha256=.*/sha256=.../' piped.err
  info: flattened chain_d2/c2.vhd: vhd, 16814080 bytes to standard output sha256=...
  $ sha256sum piped.vhd | cut -c1-64 | grep -c "$(sed 's/.*sha256=//' piped.err)"
  1
  $ qemu-img convert -f vpc -O raw piped.vhd piped.raw && sha256sum piped.raw | grep -c "$(grep chain_d2/c2.vhd EXPECTED_VIRTUAL.sha256 | cut -c1-64)"
  1
Ctrl-C stops a stream to standard output within a chunk (1 MiB), not after the whole disk:
here the reader of the pipe waits 2 s, the writer is interrupted at 1 s, and fewer than the
16814080 bytes arrive.

  $ mkfifo slow
  $ (exec 3<slow; sleep 2; wc -c <&3 > count) & R=$!
  $ "$SALVAGE" vhd flatten -q chain_d2/c2.vhd -o - > slow 2> err & P=$!
  $ sleep 1; kill -INT $P; wait $P; echo "exit $?"
  exit 130
  $ wait $R; cat err; test "$(cat count)" -lt 16814080 && echo "stopped early"
  salvage: interrupted
  stopped early
  $ "$SALVAGE" --log-json vhd flatten chain_d2/c2.vhd -o - --json 2>&1 >/dev/null | sed 's/"sha256":"[0-9a-f]*"/"sha256":"..."/'
  {"bytes_written":16814080,"format":"vhd","path":"-","sha256":"..."}
  $ "$SALVAGE" vhd flatten -q chain_d2/c2.vhd -o - --format raw | sha256sum | grep -c "$(grep chain_d2/c2.vhd EXPECTED_VIRTUAL.sha256 | cut -c1-64)"
  1
  $ "$SALVAGE" vhd flatten -q damaged/parent_missing/c1.vhd -o - | wc -c
  salvage: flatten: damaged/parent_missing/c1.vhd: parent damaged/parent_missing/base.vhd (UUID 3de1a9b3-546a-4ee4-915e-db396c9dc2d0) is missing and no VHD with that UUID was found (EPARENT)
  0
  $ "$SALVAGE" vhd flatten -q damaged/bat_past_eof/c1.vhd -o - --force | wc -c
  salvage: flatten: --force cannot write to standard output: sectors it zero-fills must be listed before anything is sent; flatten to a file instead
  0

qcow2 for KVM: qemu-img finds nothing wrong and the same content; a stream is the same bytes:

  $ "$SALVAGE" vhd flatten -q chain_d2/c2.vhd -o c2.qcow2 --format qcow2
  c2.qcow2: qcow2 100663296 bytes virtual, 5046272 bytes written, 72 blocks allocated
  $ qemu-img check -q c2.qcow2 && qemu-img info c2.qcow2 | grep -E '^(file format|virtual size|cluster_size)'
  file format: qcow2
  virtual size: 96 MiB (100663296 bytes)
  cluster_size: 65536
  $ "$SALVAGE" vhd flatten -q chain_d2/c2.vhd -o c2.raw --format raw > /dev/null
  $ qemu-img compare -q -f raw -F qcow2 c2.raw c2.qcow2
  $ "$SALVAGE" vhd flatten -q chain_d2/c2.vhd -o - --format qcow2 | cmp - c2.qcow2
  $ "$SALVAGE" vhd flatten -q damaged/parent_missing/c1.vhd -o p.qcow2 --format qcow2
  salvage: flatten: damaged/parent_missing/c1.vhd: parent damaged/parent_missing/base.vhd (UUID 3de1a9b3-546a-4ee4-915e-db396c9dc2d0) is missing and no VHD with that UUID was found (EPARENT)
  [1]
  $ ls p.qcow2 .p.qcow2* 2>&1 | sed 's/^ls: //'
  cannot access 'p.qcow2': No such file or directory
  cannot access '.p.qcow2*': No such file or directory

create and coalesce:

  $ "$SALVAGE" vhd create new.vhd --size 16M --json | grep -E '"(disk_type|current_size)"'
    "current_size": 16777216,
    "disk_type": "dynamic",
  $ "$SALVAGE" vhd create kid.vhd --parent new.vhd > /dev/null
  $ "$SALVAGE" vhd create kid2.vhd --parent new.vhd > /dev/null
  $ "$SALVAGE" vhd create bad.vhd --size 12Q
  salvage: vhd create: --size expects MiB or N[B|K|M|G|T], got 12Q
  [2]
  $ "$SALVAGE" vhd coalesce kid.vhd 2>&1 | sed 's/(.*/(...)/'
  salvage: coalesce: ./new.vhd has 1 other child (...)
  $ "$SALVAGE" vhd coalesce --force kid.vhd
  kid.vhd coalesced into its parent
