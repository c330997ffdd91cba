#include <errno.h>

#include "errname.h"

const char *salvage_errname(int err)
{
	switch (err) {
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case EEXIST: return "EEXIST";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case ENOSPC: return "ENOSPC";
	case EIO: return "EIO";
	case EINVAL: return "EINVAL";
	case ENOMEM: return "ENOMEM";
	case EROFS: return "EROFS";
	case EBUSY: return "EBUSY";
	case ENOTEMPTY: return "ENOTEMPTY";
	case EXDEV: return "EXDEV";
	case EFBIG: return "EFBIG";
	case ESRCH: return "ESRCH";
	case ECHILD: return "ECHILD";
	case EINTR: return "EINTR";
	case EAGAIN: return "EAGAIN";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ELOOP: return "ELOOP";
	case EMFILE: return "EMFILE";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	default: return "EIO";
	}
}
