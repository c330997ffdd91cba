/* Deprecated: kept only so that branches in flight that still call
 * salvage_errname() build after merging; new code includes "lutil.h" and
 * calls lu_errname(). Remove once no file includes it. */
#ifndef SALVAGE_ERRNAME_H
#define SALVAGE_ERRNAME_H

#include "err/errname.h"
#define salvage_errname err_name

#endif
