/* libFuzzer target: the connection URL parser (src/db/url.c) must never read
 * or write out of bounds, and what it returns must be NUL-terminated strings
 * inside its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "db/dberr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct db_url *u = malloc(db_url_size(size));
	if (!u)
		return 0;
	char err[128];
	if (db_url_parse(u, (const char *)data, size, err, sizeof err) == 0) {
		size_t total = 0;
		const char *parts[] = {u->user, u->password, u->host, u->database};
		for (int i = 0; i < 4; i++)
			if (parts[i])
				total += strlen(parts[i]);
		for (int i = 0; i < u->nparams; i++)
			total += strlen(u->keys[i]) + strlen(u->values[i]);
		if (total > size)
			abort();
		if (u->port < 0 || u->port > 65535)
			abort();
	} else if (strlen(err) >= sizeof err) {
		abort();
	}
	free(u);
	return 0;
}
