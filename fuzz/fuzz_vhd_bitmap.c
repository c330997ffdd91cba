/*
 * libFuzzer: sector bitmap decoding (MSB first) — vhd_block_full's byte-wise
 * fast path against a bit-by-bit reading, for any block geometry.
 */
#include <stdint.h>
#include <string.h>

#include "vhd/vhd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 6)
		return 0;
	uint32_t spb = ((uint32_t)data[0] << 8 | data[1]) % 4097 + 1;
	uint64_t block = data[2] % 8;
	uint64_t total = ((uint64_t)data[3] << 16 | (uint64_t)data[4] << 8 | data[5]) % (9ull * spb + 1);
	uint8_t map[4096 / 8 + 1];
	memset(map, 0, sizeof map);
	size_t n = size - 6 < sizeof map ? size - 6 : sizeof map;
	memcpy(map, data + 6, n);
	uint64_t first = block * spb;
	uint64_t valid = first >= total ? 0 : total - first;
	if (valid > spb)
		valid = spb;
	int naive = 1;
	for (uint64_t i = 0; i < valid; i++)
		if (((map[i / 8] >> (7 - i % 8)) & 1) != 1)
			naive = 0;
	if (vhd_block_full(map, block, spb, total) != naive)
		__builtin_trap();
	uint8_t z[4096 / 8 + 1];
	memset(z, 0, sizeof z);
	for (uint64_t i = 0; i < spb; i++)
		if (vhd_bit(map, i))
			vhd_setbit(z, i);
	for (uint64_t i = 0; i < spb; i++)
		if (vhd_bit(z, i) != vhd_bit(map, i))
			__builtin_trap();
	return 0;
}
