salvage vhd on an LVM-based SR (tests/fixtures/lvhd: a LUN image whose metadata lvm2 wrote).

  $ xz -dc "$TOP/tests/fixtures/lvhd/lvhd-public.img.xz" | cp --sparse=always /dev/stdin "$CRAMTMP/lun.img" && cd "$CRAMTMP"

The VG, the SR's name from its MGT volume, every VHD chain with parents the LVHD way, the raw LV
and the SR metadata volume; name= is the VDI's name XenServer kept in MGT:

  $ "$SALVAGE" vhd scan lvm:lun.img
  vg=VG_XenStorage-0f3c9a52-6b7e-4d21-a8c4-2e9b5f1d8a60 pv=q5TB8j-1wVW-lB4K-rc1b-yFg7-HSbw-gJUddo extent_size=4194304 seqno=2 lvs=6
  sr=0f3c9a52-6b7e-4d21-a8c4-2e9b5f1d8a60 name="Salvage LVHD test SR"
  raw=LV-2fa91425-cb00-4853-9d2c-67eda13ffe79 capacity=16777216 size=16777216 hidden=0 name="raw-data-disk"
  lv=MGT size=4194304 (SR metadata)
  vhd=VHD-db5b5fab-8f4d-4e27-9da1-494c73cf256d capacity=33554432 size=33554432 hidden=1 parent=none
     vhd=VHD-73ab4876-7734-47c1-87fd-e805ec99108d capacity=33554432 size=25165824 hidden=1 parent=VHD-db5b5fab-8f4d-4e27-9da1-494c73cf256d
        vhd=VHD-309d6b79-965e-4a32-9ae4-45508201e2bd capacity=33554432 size=41943040 hidden=0 parent=VHD-73ab4876-7734-47c1-87fd-e805ec99108d name="vm-disk-0"
        vhd=VHD-79cb9e86-830c-41c2-8dcc-69292f45e678 capacity=33554432 size=8388608 hidden=0 parent=VHD-73ab4876-7734-47c1-87fd-e805ec99108d name="vm-disk-0 snapshot"

A leaf flattened to a standalone VHD and to raw; the raw LV copied as it is (sha256 from the manifest):

  $ "$SALVAGE" vhd flatten lvm:lun.img:VHD-309d6b79-965e-4a32-9ae4-45508201e2bd -o leaf.vhd --quiet
  leaf.vhd: vhd 33554432 bytes virtual, * bytes written, 13 blocks allocated (glob)
  $ "$SALVAGE" vhd check leaf.vhd
  leaf.vhd is valid
  $ "$SALVAGE" vhd flatten leaf.vhd -o leaf.raw --format raw --quiet > /dev/null && sha256sum leaf.raw
  96b821bed24dfb470abc71bc8a4ab9f24f0480c7bbeef3050567778a35ef1b71  leaf.raw
  $ "$SALVAGE" vhd flatten lvm:lun.img:LV-2fa91425-cb00-4853-9d2c-67eda13ffe79 -o raw.img --format raw --quiet > /dev/null && sha256sum raw.img
  b22d038590ea65fc29e3de01b4dcc16f7eaaf5470a05b61b2c04b6232ec6d885  raw.img
  $ "$SALVAGE" vhd check lvm:lun.img:VHD-79cb9e86-830c-41c2-8dcc-69292f45e678
  lvm:lun.img:VHD-79cb9e86-830c-41c2-8dcc-69292f45e678 is valid

Refusals name the reason:

  $ "$SALVAGE" vhd read lvm:lun.img:VHD-00000000-0000-0000-0000-000000000000
  salvage: lun.img: VG VG_XenStorage-0f3c9a52-6b7e-4d21-a8c4-2e9b5f1d8a60 has no LV VHD-00000000-0000-0000-0000-000000000000
  [1]
  $ truncate -s 1M zeros.img && "$SALVAGE" vhd scan lvm:zeros.img
  lvm=zeros.img unreadable
     ! error ENOLABEL: zeros.img: no LVM label (LABELONE) in sectors 0-3: not an LVM physical volume
  [1]
  $ "$SALVAGE" vhd coalesce lvm:lun.img:VHD-309d6b79-965e-4a32-9ae4-45508201e2bd
  salvage: coalesce: lvm:lun.img:VHD-309d6b79-965e-4a32-9ae4-45508201e2bd: a VHD inside an LVM image is only read; flatten it instead (EROFS)
  [1]
