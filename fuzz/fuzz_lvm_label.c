/* libFuzzer: the LVM2 label + pv_header scan (sectors 0-3) and the metadata area header.
 * Input: up to 2048 bytes of sectors 0-3, then 512 bytes read as an mda_header at byte 4096. */
#include <stdint.h>
#include <string.h>

#include "lvm/lvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lvm_label l;
	lvm_err e;
	size_t n = size < 2048 ? size : 2048;
	if (lvm_label_find(data, n, &l, &e) == 0) {
		if (l.ndata > LVM_MAX_AREAS || l.nmeta > LVM_MAX_AREAS || strlen(l.pv_id) != 32)
			__builtin_trap();
	} else if (strlen(e.msg) >= sizeof e.msg || e.code[0] == 0) {
		__builtin_trap();
	}
	uint8_t h[512] = { 0 };
	if (size > 2048)
		memcpy(h, data + 2048, size - 2048 < 512 ? size - 2048 : 512);
	lvm_mda m;
	if (lvm_mda_parse(h, 4096, &m, &e) == 0 && (m.nrlocn > 4 || m.start != 4096))
		__builtin_trap();
	return 0;
}
