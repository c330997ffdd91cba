/* Stable error codes for scripts to branch on: errno as its symbolic name. */
#ifndef SALVAGE_ERRNAME_H
#define SALVAGE_ERRNAME_H

const char *salvage_errname(int err);

#endif
