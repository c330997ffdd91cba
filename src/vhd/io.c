/* Whole-buffer positional I/O and errno-to-code translation, shared by the
 * reader, the writer and flatten: short reads and EINTR are handled once. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "err/errname.h"
#include "vhd/vhd.h"

/* pread all of it; returns bytes read (short only at EOF) or -1. */
ssize_t vhd_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int vhd_syserr(vhd_err *e, const char *what, const char *path)
{
	int err = errno;
	vhd_seterr(e, err_name(err), "%s: %s: %s", path, what, strerror(err));
	return -1;
}

/* pwrite all of it; 0, or -1 with errno set. */
int vhd_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}
