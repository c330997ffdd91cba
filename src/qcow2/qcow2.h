/*
 * qcow2 writer (pure C, no Lua): the image of a disk_source (vhd/stream.h:
 * virtual size, allocation map, reader) as an out_stream whose exact length
 * is known before the first byte, produced in one pass in order. See
 * doc/qcow2-writer.md for the layout and why it is what it is.
 *
 * The image: version 3, 64 KiB clusters, refcount order 4 (16-bit), no
 * backing file, no compression, no snapshots, no extensions. In file order:
 *
 *   header cluster | L1 table | for each 512 MiB region holding data:
 *   its data clusters in virtual order, then its L2 table | refcount table |
 *   refcount blocks
 *
 * Every offset is computed from the allocation map before the stream opens.
 * L2 tables follow their data and refcounts come last, so a data cluster
 * found all-zero while streaming is still left unallocated (L2 entry 0,
 * refcount 0): its place in the file is a free cluster of zeros (a hole when
 * saved to a file). With out_stream_opts.drop_zero a read-only pre-pass
 * removes such clusters from the layout instead (shorter stream, one more
 * read of the data).
 */
#ifndef SALVAGE_QCOW2_H
#define SALVAGE_QCOW2_H

#include <stddef.h>
#include <stdint.h>

#include "vhd/stream.h"

#define QCOW2_CLUSTER_BITS 16
#define QCOW2_CLUSTER (1u << QCOW2_CLUSTER_BITS)
#define QCOW2_L2_ENTRIES (QCOW2_CLUSTER / 8)            /* virtual clusters per L2 table */
#define QCOW2_RB_ENTRIES (QCOW2_CLUSTER / 2)            /* host clusters per refcount block */
#define QCOW2_MAX_SIZE (16ull << 40)                    /* 16 TiB: bounds the maps to 32 MiB */
#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFFSET_MASK 0x00FFFFFFFFFFFE00ull

/*
 * Where everything goes, from the virtual size and the map of virtual
 * clusters that may hold data. Host positions are cluster indexes.
 */
typedef struct qcow2_layout {
	uint64_t size;            /* virtual bytes */
	uint64_t nclusters;       /* virtual clusters */
	uint32_t l1_entries;      /* = regions */
	uint32_t l1_clusters;
	uint32_t nl2;             /* regions holding data (one L2 table each) */
	uint64_t ndata;           /* data clusters */
	uint64_t rt_clusters;     /* refcount table */
	uint64_t nrb;             /* refcount blocks */
	uint64_t rt_host, rb_host;
	uint64_t total;           /* host clusters: length = total * cluster */
	uint64_t *region_host;    /* per region: host cluster of its first data cluster, 0 if none */
	uint32_t *region_count;   /* per region: data clusters; its L2 follows them */
	uint8_t *alloc;           /* bit per virtual cluster (LSB first): holds data */
} qcow2_layout;

/* Plan from an allocation bitmap (bit c, LSB first, of alloc); the layout takes alloc. 0, or
 * -1 with e filled (EINVAL for a size of 0, not a multiple of 512 or above QCOW2_MAX_SIZE). */
int qcow2_layout_plan(qcow2_layout *l, uint64_t size, uint8_t *alloc, stream_err *e);
void qcow2_layout_free(qcow2_layout *l);
/* The 104-byte v3 header of a layout, padded with zeros to a cluster by the caller. */
void qcow2_header_build(const qcow2_layout *l, uint8_t *buf);

static inline int qcow2_bit(const uint8_t *m, uint64_t i) { return (m[i >> 3] >> (i & 7)) & 1; }
static inline void qcow2_setbit(uint8_t *m, uint64_t i) { m[i >> 3] |= (uint8_t)(1u << (i & 7)); }
static inline void qcow2_clearbit(uint8_t *m, uint64_t i) { m[i >> 3] &= (uint8_t)~(1u << (i & 7)); }

/*
 * The qcow2 image of src as a stream (format "qcow2"). Asks src->allocated for
 * every unit once (and, with o->drop_zero, reads every allocated cluster once)
 * before returning; then read() asks src->read for the allocated clusters in
 * order, up to 2 MiB at a time. src must outlive the stream. Memory: 2 MiB of
 * buffer plus two bits per virtual cluster (64 KiB for a 256 GiB disk).
 * NULL with e filled (ECANCELED when the pre-pass progress said stop).
 */
out_stream *qcow2_stream_open(const disk_source *src, const out_stream_opts *o, stream_err *e);
/* Data clusters found all-zero while streaming (left unallocated), so far. */
uint64_t qcow2_stream_zero_clusters(const out_stream *s);
/* Data clusters allocated in the image (planned minus those found all-zero so far). */
uint64_t qcow2_stream_data_clusters(const out_stream *s);

/*
 * Save any out_stream to PATH: a temporary name beside it, all-zero 64 KiB
 * runs left as holes, fsync, rename, fsync of the directory. Refuses an
 * existing PATH unless overwrite. On failure nothing is left (the temporary
 * file is removed) and e says why. *written: bytes actually written.
 */
typedef struct stream_save_opts {
	int overwrite;
	int (*progress)(void *ctx, uint64_t done, uint64_t total); /* 0 = cancel */
	void *progress_ctx;
} stream_save_opts;
int qcow2_save(out_stream *s, const char *path, const stream_save_opts *o, uint64_t *written, stream_err *e);

void qcow2_seterr(stream_err *e, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
