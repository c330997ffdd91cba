/* libFuzzer: the 512-byte footer parser and its checksum/validity rules. */
#include <stdint.h>
#include <string.h>

#include "vhd/vhd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t b[512] = { 0 };
	memcpy(b, data, size < 512 ? size : 512);
	vhd_footer f;
	vhd_footer_parse(b, &f);
	if (vhd_footer_valid(&f)) {
		/* a valid footer rebuilds to the same bytes' checksum */
		uint8_t r[512];
		vhd_footer_build(&f, r);
		vhd_footer g;
		vhd_footer_parse(r, &g);
		if (!vhd_footer_valid(&g) || g.current_size != f.current_size || g.disk_type != f.disk_type)
			__builtin_trap();
	}
	char u[37];
	vhd_uuid_str(f.uuid, u);
	uint16_t c;
	uint8_t h, s;
	vhd_geometry(f.current_size, &c, &h, &s);
	return 0;
}
