/*
 * VHD engine (pure C, no Lua): parse, check, read through chains, flatten,
 * create, write, coalesce. Formats as XenServer's blktap writes them; see
 * doc/vhd-format.md. All on-disk integers are big-endian.
 *
 * Content is decided by sector bitmaps alone; the batmap is only compared.
 * Every failure fills a vhd_err with a stable code and a sentence naming
 * the file (and block) so that callers can show it unchanged.
 */
#ifndef SALVAGE_VHD_H
#define SALVAGE_VHD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vhd/stream.h"

#define VHD_SECTOR 512u
#define VHD_FOOTER_SIZE 512u
#define VHD_HEADER_SIZE 1024u
#define VHD_BAT_FREE 0xFFFFFFFFu
#define VHD_MAX_SIZE (0xFF000000ull * 512ull) /* 2040 GiB */
#define VHD_NONE64 0xFFFFFFFFFFFFFFFFull
#define VHD_EPOCH 946684800 /* 2000-01-01T00:00:00Z: VHD timestamps count from here */
#define VHD_DATA_ALIGN 4096u /* block data starts on 4 KiB, as blktap lays it out */

enum vhd_type { VHD_FIXED = 2, VHD_DYNAMIC = 3, VHD_DIFF = 4 };
/* Why a block cannot be read as-is; with force: BAT → unallocated, TRUNC → missing sectors zero. */
enum vhd_bad { VHD_BAD_NONE = 0, VHD_BAD_BAT = 1, VHD_BAD_TRUNC = 2 };
enum vhd_severity { VHD_INFO = 0, VHD_WARNING = 1, VHD_ERROR = 2 };

typedef struct vhd_err {
	char code[24];    /* stable: ENOENT, ECHECKSUM, EFORMAT, EPARENT, ... */
	char msg[512];
} vhd_err;

typedef struct vhd_problem {
	char code[32];    /* stable: FOOTER_CHECKSUM, BAT_PAST_EOF, ... */
	int severity;
	int64_t block;    /* -1 when not about a block */
	int fatal;        /* 0 data still exact; 1 flatten refuses unless forced; 2 always refuses */
	char message[400];
} vhd_problem;

typedef struct vhd_footer {
	char cookie[9];
	uint32_t features, version;
	uint64_t data_offset;
	uint32_t timestamp;
	char creator_app[5];
	uint32_t creator_version, creator_os;
	uint64_t original_size, current_size;
	uint16_t cylinders;
	uint8_t heads, sectors;
	uint32_t disk_type;
	uint32_t checksum, checksum_computed;
	uint8_t uuid[16];
	uint8_t saved_state, hidden;
} vhd_footer;

typedef struct vhd_locator {
	char code[5];
	uint32_t data_space, data_length;
	uint64_t data_offset;
} vhd_locator;

typedef struct vhd_header {
	char cookie[9];
	uint64_t data_offset, table_offset;
	uint32_t version, max_bat_entries, block_size;
	uint32_t checksum, checksum_computed;
	uint8_t parent_uuid[16];
	uint32_t parent_timestamp;
	char parent_name[1024];   /* UTF-8 from UTF-16BE */
	vhd_locator loc[8];
} vhd_header;

typedef struct vhd_batmap {
	int present;
	uint64_t hdr_offset;      /* where the "tdbatmap" header is */
	uint64_t offset;
	uint32_t size_sectors, version, checksum, checksum_computed;
	uint8_t *map;             /* bit per block, MSB first */
} vhd_batmap;

/* ---- pure parsers (fuzzed) ---- */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off);
/* 0 when cookie is right; sets checksum_computed either way. */
int vhd_footer_parse(const uint8_t buf[512], vhd_footer *f);
int vhd_footer_valid(const vhd_footer *f); /* cookie + checksum + sane type */
void vhd_footer_build(const vhd_footer *f, uint8_t buf[512]); /* computes checksum */
int vhd_header_parse(const uint8_t buf[1024], vhd_header *h);
void vhd_header_build(const vhd_header *h, uint8_t buf[1024]);
/* Decode locator bytes into a UTF-8 path (code MacX, W2ku, W2ru); -1 if unknown/invalid. */
int vhd_locator_decode(const char *code, const uint8_t *data, size_t len, char *out, size_t outlen);
size_t vhd_utf16_encode(const char *s, uint8_t *out, size_t outlen, int big);
int vhd_batmap_header_parse(const uint8_t buf[512], vhd_batmap *bm);
void vhd_batmap_header_build(const vhd_batmap *bm, uint8_t buf[512]);
/* 1 when every sector of block b that lies inside the disk has its bit set */
int vhd_block_full(const uint8_t *bitmap, uint64_t block, uint32_t spb, uint64_t total_sectors);
/* bit i of a sector bitmap (MSB first) */
static inline int vhd_bit(const uint8_t *map, uint64_t i) { return (map[i >> 3] >> (7 - (i & 7))) & 1; }
static inline void vhd_setbit(uint8_t *map, uint64_t i) { map[i >> 3] |= (uint8_t)(0x80u >> (i & 7)); }
void vhd_geometry(uint64_t size, uint16_t *c, uint8_t *h, uint8_t *s);
static inline uint64_t vhd_align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
static inline void vhd_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
void vhd_uuid_generate(uint8_t u[16]); /* random (version 4) */
void vhd_uuid_str(const uint8_t u[16], char out[37]);
int vhd_uuid_is_null(const uint8_t u[16]);
const char *vhd_type_name(uint32_t t);

/* ---- open files ---- */
typedef struct vhd_file vhd_file;

/*
 * A readable object of known size that is not a file of its own, such as an
 * LV inside a LUN image. The VHD is read exactly as from a file of `size`
 * bytes: the primary footer is the last 512 bytes (where LVHD puts it; the
 * LV is usually larger than the VHD's data), the copy at offset 0.
 */
typedef struct vhd_reader {
	void *ctx;
	uint64_t size;
	/* all of len unless the object ends; -1 on error with e filled */
	ssize_t (*pread)(void *ctx, void *buf, size_t len, uint64_t off, vhd_err *e);
	/* The parent of a child read from this source: ref is a locator's path or the header's parent
	 * name (uuid NULL), or ref is NULL and the VHD with footer uuid is wanted. NULL with e->code
	 * "ENOENT" when there is none. */
	vhd_file *(*parent)(void *ctx, const char *ref, const uint8_t *uuid, vhd_err *e);
	void (*release)(void *ctx);  /* when the vhd_file is closed (or the open failed) */
	/* optional: 1 when [off, off+len) is known to read as zeros (a hole in a sparse image) */
	int (*hole)(void *ctx, uint64_t off, uint64_t len);
} vhd_reader;
struct vhd_file {
	int fd;
	int writable;
	int refs;
	char *path;
	uint64_t file_size;
	vhd_footer footer;       /* the copy in use */
	int footer_eof_ok, footer_copy_ok, footer_from_copy;
	int has_header;
	vhd_header header;
	uint32_t *bat;           /* host order, bat_entries of them */
	uint32_t bat_entries;    /* ceil(size / block) */
	uint32_t spb;            /* sectors per block */
	uint32_t bitmap_bytes;   /* padded to sectors */
	uint64_t meta_end;       /* end of footer copy/header/BAT/batmap/locators */
	vhd_batmap batmap;
	uint8_t *bad_block;      /* per block: VHD_BAD_* */
	uint64_t data_limit;     /* bytes past this are not block data (footer or EOF) */
	vhd_file *parent;        /* owned reference, NULL until resolved */
	int parent_state;        /* 0 unresolved, 1 resolved, -1 failed */
	int64_t cached_block;    /* bitmap cache */
	uint8_t *cached_bitmap;
	vhd_problem *problems;
	size_t nproblems, cproblems;
	uint64_t next_free;      /* writer: where the next block goes */
	int validated;           /* vhd_validate ran */
	int has_rd;              /* read through rd, not fd (fd is -1) */
	int raw;                 /* a raw object: the footer is made up, every byte is data */
	vhd_reader rd;
};

typedef struct vhd_open_opts {
	int writable;
	const char *const *search; /* extra dirs searched for a parent by UUID */
	size_t nsearch;
} vhd_open_opts;

/* Open one file (no parent). Problems found while opening are recorded in f->problems. */
vhd_file *vhd_open(const char *path, const vhd_open_opts *o, vhd_err *e);
/* Open a VHD held by a reader (taken over: released on close, or at once on failure). */
vhd_file *vhd_open_reader(const char *name, const vhd_reader *rd, const vhd_open_opts *o, vhd_err *e);
/* A raw object (no VHD inside: an LVHD "LV-" volume) seen as a fixed disk of its whole size. */
vhd_file *vhd_open_raw(const char *name, const vhd_reader *rd, vhd_err *e);
/* Read bytes of the file itself (not through the chain): short only at its end; -1 with e. */
ssize_t vhd_file_pread(vhd_file *f, void *buf, size_t len, uint64_t off, vhd_err *e);
void vhd_ref(vhd_file *f);
void vhd_close(vhd_file *f); /* drops a reference; frees the chain when last */
/* Open the parent of a differencing file (locators, name, then search by UUID). 0 ok. */
int vhd_resolve_parent(vhd_file *f, const vhd_open_opts *o, vhd_err *e);
int vhd_resolve_chain(vhd_file *f, const vhd_open_opts *o, vhd_err *e);
/* Run all structure checks on one file (BAT bounds, overlaps, batmap, ...) into f->problems. */
void vhd_validate(vhd_file *f);
void vhd_problem_add(vhd_file *f, int sev, int fatal, const char *code, int64_t block, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
uint64_t vhd_size(const vhd_file *f);
uint32_t vhd_allocated_blocks(const vhd_file *f);
/* Sectors through the chain. */
int vhd_read_sectors(vhd_file *f, uint64_t sector, uint64_t count, uint8_t *buf, vhd_err *e);
/* Reads that may go past damage (force) and record what they could not read. */
typedef struct vhd_rctx {
	int force;
	struct vhd_range *ranges;
	size_t nranges, cranges;
	vhd_err *e;
} vhd_rctx;
int vhd_read_sectors_ctx(vhd_file *f, uint64_t sector, uint64_t count, uint8_t *buf, vhd_rctx *c);
/* Any byte range through the chain. */
int vhd_read(vhd_file *f, uint64_t off, uint64_t len, uint8_t *buf, vhd_err *e);
/* The bitmap of block b of this file (NULL when unallocated); cached. */
const uint8_t *vhd_block_bitmap(vhd_file *f, uint32_t b, vhd_err *e);

/* ---- dynamic-VHD metadata builder (meta.c): one layout for create, flatten and streams ----
 * XenServer's order: footer copy at 0, header at 512, BAT at 1536 (padded to a sector),
 * batmap header and batmap, parent locators, then blocks whose data starts on 4 KiB,
 * footer at the end. Every block slot is `stride` bytes after the previous one. */
typedef struct vhd_layout {
	uint64_t size;
	uint32_t block_size, spb, bitmap_bytes, entries;
	uint64_t bat_offset, bat_bytes;            /* bat_bytes padded to 512 */
	uint64_t batmap_hdr, batmap_offset, batmap_bytes;
	uint64_t locators, meta_end;               /* [locators, meta_end): parent locator data */
	uint64_t first_block, stride;              /* slot k's bitmap at first_block + k * stride */
} vhd_layout;
/* 0, or -1 (EINVAL) when size or block size cannot make a VHD. */
int vhd_layout_init(vhd_layout *l, uint64_t size, uint32_t block_size, uint64_t locator_bytes, vhd_err *e);
static inline uint64_t vhd_layout_slot(const vhd_layout *l, uint64_t k) { return l->first_block + k * l->stride; }
/* A footer as blktap writes it ("tap" 1.3, new UUID, timestamp now). */
void vhd_meta_footer(vhd_footer *f, uint64_t size, uint32_t type, int hidden);
void vhd_meta_header(vhd_header *h, const vhd_layout *l);
/* Batmap header fields for l, checksum of an all-zero map; map left NULL. */
void vhd_meta_batmap(vhd_batmap *bm, const vhd_layout *l);
/* The bytes [0, first_block) of a dynamic VHD: footer copy, header, BAT (host-order bat, NULL:
 * all free), batmap header and batmap (a bit for each allocated block when full_blocks,
 * else none), zeros. Locator data is the caller's. malloc'd; NULL when out of memory. */
/* The sector bitmap of output block b: a bit for each sector of it inside the disk. */
void vhd_meta_block_bitmap(const vhd_layout *l, uint64_t b, uint8_t *bitmap);
uint8_t *vhd_meta_head(const vhd_layout *l, const vhd_footer *f, const vhd_header *h, const uint32_t *bat,
		       int full_blocks, size_t *len);

/* ---- write ---- */
typedef struct vhd_create_opts {
	uint64_t size;
	uint32_t type;           /* VHD_FIXED, VHD_DYNAMIC, VHD_DIFF (parent set) */
	uint32_t block_size;     /* default 2 MiB */
	const char *parent;
	int hidden;
	int foreign;             /* not for XenServer: any block size, no batmap, creator not "tap" */
	int strict;              /* refuse what blktap would reject (a parent name outside ASCII) */
} vhd_create_opts;
vhd_file *vhd_create(const char *path, const vhd_create_opts *o, vhd_err *e);
int vhd_write(vhd_file *f, uint64_t off, const uint8_t *data, uint64_t len, vhd_err *e);
int vhd_set_hidden(vhd_file *f, int hidden, vhd_err *e);
/* Largest virtual size this file can grow to in place (BAT and batmap as they are); 0 if fixed. */
uint64_t vhd_max_growth(const vhd_file *f);
/* Grow the virtual size in place (writable dynamic/differencing file, up to vhd_max_growth). */
int vhd_grow(vhd_file *f, uint64_t size, vhd_err *e);
int vhd_sync(vhd_file *f, vhd_err *e);

/* ---- flatten ---- */
typedef int (*vhd_progress_fn)(void *ctx, uint64_t done, uint64_t total); /* 0 = cancel */
struct vhd_range;
/* kind 0: zero-filled (data lost); kind 1: a bad BAT entry treated as unallocated. */
typedef struct vhd_range { uint64_t sector, count; int kind; char reason[160]; } vhd_range;
typedef struct vhd_flatten_opts {
	int raw;
	int force;
	int overwrite;            /* replace an existing OUT (never a file of the chain) */
	vhd_progress_fn progress;
	void *progress_ctx;
} vhd_flatten_opts;
typedef struct vhd_flatten_result {
	uint64_t virtual_size, bytes_written, blocks_written;
	vhd_range *zero_filled;   /* sectors zero-filled under force */
	size_t nzero;
	char uuid[37];
} vhd_flatten_result;
/* leaf must have its chain resolved. Writes a temp file in out's dir, fsync, rename. */
int vhd_flatten(vhd_file *leaf, const char *out, const vhd_flatten_opts *o, vhd_flatten_result *r, vhd_err *e);
void vhd_flatten_result_free(vhd_flatten_result *r);
/* First error-severity problem anywhere in the chain that forbids reading; NULL if none. */
const vhd_problem *vhd_chain_blocker(vhd_file *leaf, int force, const vhd_file **where);
/* The vhd_err code for refusing because of p: EPARENT, ECHECKSUM, ETRUNCATED or EDAMAGED. */
const char *vhd_problem_errcode(const vhd_problem *p);

/* ---- coalesce ---- child's chain resolved; parent reopened writable inside. */
int vhd_coalesce(vhd_file *child, vhd_progress_fn progress, void *ctx, vhd_err *e);

void vhd_seterr(vhd_err *e, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- streams (stream.c; the format-neutral interface is vhd/stream.h) ---- */
/* The virtual content of a checked chain as a disk_source (grain 2 MiB). Lives where the caller
 * put it (it points into itself: do not move it after init); borrows leaf. */
typedef struct vhd_source {
	disk_source src;          /* what writers read */
	vhd_file *leaf;
	vhd_rctx rctx;            /* under force: the sectors zero-filled so far */
	vhd_err err;
} vhd_source;
/* Validates the chain; refuses (nothing read) what flatten refuses. 0, or -1 with e filled. */
int vhd_source_init(vhd_source *s, vhd_file *leaf, int force, vhd_err *e);
void vhd_source_free(vhd_source *s);
/* A standalone dynamic VHD (XenServer layout, 2 MiB blocks) of src as a stream of known
 * length. Reads src only in order; one block in memory. NULL with e filled on failure. */
out_stream *vhd_stream_open(const disk_source *src, const out_stream_opts *o, vhd_err *e);
/* The raw virtual bytes of src as a stream (length = size; unallocated units read as zeros). */
out_stream *raw_stream_open(const disk_source *src, vhd_err *e);
/* inner's bytes, with a copy written to path as they pass (temporary name beside it; fsynced
 * and renamed before the last bytes are handed out; removed if the stream is not read to its
 * end). Takes inner: closing the tee closes it. NULL with e filled (inner untouched). */
out_stream *tee_stream_open(out_stream *inner, const char *path, vhd_err *e);
/* The footer UUID of a stream from vhd_stream_open, as text. */
void vhd_stream_uuid(const out_stream *s, char out[37]);

/* ---- a chain as input to writers of other formats (clusters.c) ---- */
/* 1 when path is (the same inode as) a file of leaf's chain. */
int vhd_chain_holds(const vhd_file *leaf, const char *path);
/* 1 when any of the sectors may read non-zero through the chain (BATs and sector bitmaps only;
 * 1 when a bitmap cannot be read or a block is damaged: the reader then refuses or reports it),
 * 0 when they surely read as zeros. */
int vhd_may_hold_data(vhd_file *f, uint64_t sector, uint64_t count);
/* Answer s's allocation map at a finer grain (a power of two, 512 B to the block size) from
 * the sector bitmaps: a 64 KiB cluster of an allocated block whose sectors no level wrote is
 * then known to read as zeros. 0, or -1 with e filled (EINVAL). */
int vhd_source_set_grain(vhd_source *s, uint32_t grain, vhd_err *e);

/* ---- I/O helpers (io.c) ---- */
ssize_t vhd_pread_all(int fd, void *buf, size_t len, uint64_t off);  /* short only at EOF; -1 on error */
int vhd_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
int vhd_syserr(vhd_err *e, const char *what, const char *path);      /* from errno; returns -1 */

#endif
