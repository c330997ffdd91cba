/* Pure C (no lua.h), shared by every area: errno as its stable symbolic name.
 * The only file an area may include from outside itself. */
#ifndef SALVAGE_ERR_ERRNAME_H
#define SALVAGE_ERR_ERRNAME_H

/* "ENOENT" for ENOENT, ...; "EUNKNOWN" for a number that is no known errno. */
const char *err_name(int err);

#endif
