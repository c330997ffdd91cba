/* libFuzzer: a whole small device: label scan, mda header, the current metadata copy (wrapping
 * round the circular buffer, checksum), the fallback scan for older copies, LV checks against
 * the device, and reads of every LV. The input is the device (memfd). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lvm/lvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("lvm", 0);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	lvm_err e;
	lvm_dev *d = lvm_open(path, &e);
	if (d) {
		uint8_t buf[4096];
		for (size_t i = 0; i < d->vg.nlvs; i++) {
			if (lvm_lv_pread(d, i, buf, sizeof buf, 0, &e) < 0 && e.code[0] == 0)
				__builtin_trap();
			if (d->vg.lvs[i].size > sizeof buf)
				lvm_lv_pread(d, i, buf, sizeof buf, d->vg.lvs[i].size - 100, &e);
			lvm_lv_hole(d, i, 0, d->vg.lvs[i].size < 8192 ? d->vg.lvs[i].size : 8192);
		}
		lvm_close(d);
	} else if (e.code[0] == 0) {
		__builtin_trap();
	}
	close(fd);
	return 0;
}
