/* libFuzzer: the 1024-byte dynamic header (parent name UTF-16BE, locator table) and batmap header. */
#include <stdint.h>
#include <string.h>

#include "vhd/vhd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t b[1024] = { 0 };
	memcpy(b, data, size < 1024 ? size : 1024);
	vhd_header h;
	vhd_header_parse(b, &h);
	if (strlen(h.parent_name) >= sizeof h.parent_name)
		__builtin_trap();
	uint8_t r[1024];
	vhd_header_build(&h, r);
	vhd_batmap bm;
	vhd_batmap_header_parse(b, &bm);
	return 0;
}
