/* libFuzzer: the LVM2 metadata text parser, and the extent map of every LV it accepts. */
#include <stdint.h>
#include <string.h>

#include "lvm/lvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lvm_vg vg;
	lvm_err e;
	if (lvm_vg_parse((const char *)data, size, &vg, &e) != 0) {
		if (e.code[0] == 0)
			__builtin_trap();
		return 0;
	}
	for (size_t i = 0; i < vg.nlvs; i++) {
		const lvm_lv *lv = &vg.lvs[i];
		for (size_t s = 1; s < lv->nsegs; s++)
			if (lv->segs[s].start_extent < lv->segs[s - 1].start_extent)
				__builtin_trap();  /* kept sorted */
		uint64_t at, run;
		int pv;
		for (uint64_t off = 0; off < lv->size && off < 64 * vg.extent_size; off += vg.extent_size / 2 + 1)
			if (lvm_lv_map(&vg, lv, off, &at, &run, &pv) == 0 && (pv < 0 || (size_t)pv >= vg.npvs || run == 0))
				__builtin_trap();
	}
	lvm_vg_free(&vg);
	return 0;
}
