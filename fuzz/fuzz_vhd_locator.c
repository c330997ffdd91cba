/* libFuzzer: parent locator decoding (MacX UTF-8 file:// URLs, W2ku/W2ru UTF-16LE). */
#include <stdint.h>
#include <string.h>

#include "vhd/vhd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *codes[] = { "MacX", "W2ku", "W2ru", "Wi2k" };
	if (size < 1)
		return 0;
	const char *code = codes[data[0] & 3];
	char out[300];
	vhd_locator_decode(code, data + 1, size - 1, out, sizeof out);
	if (strlen(out) >= sizeof out)
		__builtin_trap();
	char small[3];
	vhd_locator_decode(code, data + 1, size - 1, small, sizeof small);
	uint8_t w[128];
	out[sizeof out - 1] = 0;
	vhd_utf16_encode(out, w, sizeof w, data[0] & 4);
	return 0;
}
