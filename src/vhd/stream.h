/*
 * Streams of known length, read in order — the one interface between disk
 * formats and whatever sends or stores their bytes (an HTTP request body, a
 * pipe, a file). Pure C; this header depends on nothing but the C library,
 * so a writer of another format (src/qcow2/) includes it and nothing else of
 * src/vhd/.
 *
 * Two halves:
 *   disk_source   what a disk holds: its virtual size, an allocation map at
 *                 some grain ("may these bytes be non-zero?") and a reader of
 *                 any range. A VHD chain is one (vhd_chain_source in vhd.h);
 *                 a raw file or an LV can be another. Not VHD-specific.
 *   out_stream    an output format's bytes for such a source: the exact
 *                 length is known when the stream is opened, before the first
 *                 byte, and read() yields the bytes in order, once.
 *
 * A writer of a format provides an "open" function taking a disk_source and
 * returning an out_stream (vhd_stream_open in vhd.h; the qcow2 writer does
 * the same). Consumers only use out_stream_read / out_stream_close and the
 * length field. Errors fill a stream_err with a stable code (EIO, ENOMEM,
 * EFORMAT, ECANCELED, ...) and a sentence that names the disk.
 */
#ifndef SALVAGE_VHD_STREAM_H
#define SALVAGE_VHD_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

typedef struct stream_err {
	char code[24];
	char msg[512];
} stream_err;

/* ---- input: a disk's content ---- */
typedef struct disk_source {
	uint64_t size;      /* virtual size in bytes, a multiple of 512 */
	uint32_t grain;     /* bytes per allocation-map unit, a power of two >= 512 */
	void *ctx;
	/* 1 when any byte of grain unit `unit` may be non-zero, 0 when it surely reads as zeros,
	 * -1 on error (e filled). Never reads data; cheap (metadata only). */
	int (*allocated)(void *ctx, uint64_t unit, stream_err *e);
	/* Exactly len bytes at off (off + len <= size) into buf; 0, or -1 with e filled. */
	int (*read)(void *ctx, uint64_t off, size_t len, uint8_t *buf, stream_err *e);
} disk_source;

/* ---- output: a format's bytes, known length, in order ---- */
typedef struct out_stream out_stream;
typedef struct out_stream_ops {
	/* Up to n bytes at the stream's position into buf: the count (0 only at the end), or -1
	 * with s->err filled. After an error the stream only closes. */
	ssize_t (*read)(out_stream *s, uint8_t *buf, size_t n);
	void (*close)(out_stream *s); /* frees s; the source stays the caller's */
} out_stream_ops;

struct out_stream {
	const out_stream_ops *ops;
	uint64_t length;    /* exact byte count read() will yield, fixed at open */
	uint64_t pos;       /* bytes yielded so far */
	stream_err err;
	const char *format; /* "vhd", "qcow2", ... */
};

static inline ssize_t out_stream_read(out_stream *s, uint8_t *buf, size_t n) { return s->ops->read(s, buf, n); }
static inline void out_stream_close(out_stream *s) { if (s) s->ops->close(s); }

/* Do these n bytes read as zeros? For the writers' zero-block and zero-cluster tests: the
 * first 16 bytes, then memcmp of the buffer against itself shifted by 16 (libc's vectorised
 * compare; no aligned or aliased loads, so any buffer will do). */
static inline int stream_all_zero(const uint8_t *p, size_t n)
{
	size_t head = n < 16 ? n : 16;
	for (size_t i = 0; i < head; i++)
		if (p[i])
			return 0;
	return n <= 16 || memcmp(p, p + 16, n - 16) == 0;
}

/* Options every writer accepts. */
typedef struct out_stream_opts {
	/* Read every allocated unit once before the stream opens and leave out those that are all
	 * zero (smaller output, one more read of the data). 0: trust the allocation map. */
	int drop_zero;
	/* Called with (done, total) bytes during that pre-pass; return 0 to cancel. */
	int (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *progress_ctx;
} out_stream_opts;

#endif
