/*
 * libFuzzer: a whole file through vhd_open (footers, header, BAT bounds,
 * batmap), vhd_validate (overlaps, batmap against sector bitmaps) and reads of
 * the first blocks through the sector bitmaps. Parents are not resolved.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vhd/vhd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz.vhd", 0);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	vhd_err e;
	vhd_file *f = vhd_open(path, NULL, &e);
	if (f) {
		vhd_validate(f);
		uint8_t *buf = malloc(64 * 512);
		vhd_rctx c = { .force = 1, .e = &e };
		for (uint32_t b = 0; buf && f->has_header && b < f->bat_entries && b < 16; b++) {
			uint64_t n = f->spb < 64 ? f->spb : 64;
			vhd_read_sectors_ctx(f, (uint64_t)b * f->spb, n, buf, &c);
		}
		if (buf && f->footer.disk_type == VHD_FIXED)
			vhd_read_sectors_ctx(f, 0, 64, buf, &c);
		free(c.ranges);
		free(buf);
		vhd_close(f);
	}
	close(fd);
	return 0;
}
