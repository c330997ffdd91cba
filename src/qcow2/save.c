/*
 * An out_stream saved to a file the project's way: temporary name beside
 * the target, written in order with all-zero 64 KiB runs left as holes,
 * fsynced, renamed, directory fsynced; on any failure the temporary file is
 * removed and the target is untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2/qcow2.h"

#define SAVE_CHUNK (4u << 20)
#define HOLE_GRAIN 65536u
#define WB_CHUNK (64ull << 20)

/*
 * Write-back while writing (as the VHD flatten does): start writing each
 * 64 MiB as soon as it is complete, wait for the one before and drop it from
 * the page cache. The disk stays busy, dirty memory stays bounded, and the
 * final fsync has little left to do.
 */
typedef struct writeback { uint64_t start, prev_start, prev_end; } writeback;

static void wb_note(int fd, writeback *w, uint64_t end)
{
	if (end - w->start < WB_CHUNK)
		return;
#ifdef SYNC_FILE_RANGE_WRITE
	sync_file_range(fd, (off_t)w->start, (off_t)(end - w->start), SYNC_FILE_RANGE_WRITE);
	if (w->prev_end > w->prev_start) {
		sync_file_range(fd, (off_t)w->prev_start, (off_t)(w->prev_end - w->prev_start),
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
		posix_fadvise(fd, (off_t)w->prev_start, (off_t)(w->prev_end - w->prev_start), POSIX_FADV_DONTNEED);
	}
#endif
	w->prev_start = w->start;
	w->prev_end = end;
	w->start = end;
}

static int syserr(stream_err *e, const char *what, const char *path)
{
	int err = errno;
	const char *code = err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : err == ENOSPC ? "ENOSPC"
		: err == EEXIST ? "EEXIST" : err == EROFS ? "EROFS" : err == EDQUOT ? "EDQUOT" : "EIO";
	qcow2_seterr(e, code, "%s: %s: %s", path, what, strerror(err));
	return -1;
}

static int zero_run(const uint8_t *p, size_t n)
{
	const uint64_t *q = (const uint64_t *)p;
	for (size_t i = 0; i < n / 8; i++)
		if (q[i])
			return 0;
	for (size_t i = n / 8 * 8; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Write buf at off, skipping all-zero grains (the file is extended by ftruncate at the end). */
static int write_sparse(int fd, const uint8_t *buf, size_t len, uint64_t off, uint64_t *written)
{
	size_t i = 0;
	while (i < len) {
		size_t n = len - i < HOLE_GRAIN ? len - i : HOLE_GRAIN;
		if (!zero_run(buf + i, n)) {
			size_t j = i + n;
			while (j < len) { /* extend the write over following non-zero grains */
				size_t m = len - j < HOLE_GRAIN ? len - j : HOLE_GRAIN;
				if (zero_run(buf + j, m))
					break;
				j += m;
			}
			size_t k = 0;
			while (k < j - i) {
				ssize_t w = pwrite(fd, buf + i + k, j - i - k, (off_t)(off + i + k));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					return -1;
				k += (size_t)w;
			}
			*written += j - i;
			i = j;
		} else {
			i += n;
		}
	}
	return 0;
}

static char *temp_name(const char *path)
{
	size_t n = strlen(path) + 32;
	char *t = malloc(n);
	if (t == NULL)
		return NULL;
	const char *slash = strrchr(path, '/');
	if (slash)
		snprintf(t, n, "%.*s/.%s.salvage-XXXXXX", (int)(slash - path), path, slash + 1);
	else
		snprintf(t, n, ".%s.salvage-XXXXXX", path);
	return t;
}

static void sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dir);
}

static int copy_out(out_stream *s, int fd, const char *tmp, uint8_t *buf, const stream_save_opts *o,
		    uint64_t *written, stream_err *e)
{
	writeback wb = { 0 };
	while (s->pos < s->length) {
		uint64_t at = s->pos;
		ssize_t n = out_stream_read(s, buf, SAVE_CHUNK);
		if (n < 0) {
			*e = s->err;
			return -1;
		}
		if (n == 0) {
			qcow2_seterr(e, "EIO", "%s: stream ended at %llu of %llu bytes", tmp, (unsigned long long)s->pos,
				     (unsigned long long)s->length);
			return -1;
		}
		if (write_sparse(fd, buf, (size_t)n, at, written) != 0)
			return syserr(e, "writing", tmp);
		wb_note(fd, &wb, s->pos);
		if (o->progress && !o->progress(o->progress_ctx, s->pos, s->length)) {
			qcow2_seterr(e, "ECANCELED", "%s: cancelled; nothing left under the target name", tmp);
			return -1;
		}
	}
	if (ftruncate(fd, (off_t)s->length) != 0)
		return syserr(e, "setting the size", tmp);
	if (fsync(fd) != 0)
		return syserr(e, "fsync", tmp);
	return 0;
}

int qcow2_save(out_stream *s, const char *path, const stream_save_opts *o, uint64_t *written, stream_err *e)
{
	static const stream_save_opts none = { 0 };
	if (o == NULL)
		o = &none;
	*written = 0;
	struct stat st;
	if (!o->overwrite && lstat(path, &st) == 0) {
		qcow2_seterr(e, "EEXIST", "%s: output already exists; refusing to replace it", path);
		return -1;
	}
	char *tmp = temp_name(path);
	uint8_t *buf = aligned_alloc(4096, SAVE_CHUNK);
	if (tmp == NULL || buf == NULL) {
		free(tmp);
		free(buf);
		qcow2_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	int fd = mkstemp(tmp);
	if (fd < 0) {
		syserr(e, "cannot create a temporary file", tmp);
		free(tmp);
		free(buf);
		return -1;
	}
	(void)fchmod(fd, 0644);
	int rc = copy_out(s, fd, tmp, buf, o, written, e);
	if (close(fd) != 0 && rc == 0)
		rc = syserr(e, "close", tmp);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = syserr(e, "rename to the output name", path);
	if (rc == 0)
		sync_dir(path);
	else
		unlink(tmp);
	free(tmp);
	free(buf);
	return rc;
}
