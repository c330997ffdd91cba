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

#define VHD_SECTOR 512u
#define VHD_FOOTER_SIZE 512u
#define VHD_HEADER_SIZE 1024u
#define VHD_BAT_FREE 0xFFFFFFFFu
#define VHD_MAX_SIZE (0xFF000000ull * 512ull) /* 2040 GiB */
#define VHD_NONE64 0xFFFFFFFFFFFFFFFFull

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
void vhd_uuid_str(const uint8_t u[16], char out[37]);
int vhd_uuid_is_null(const uint8_t u[16]);
const char *vhd_type_name(uint32_t t);

/* ---- open files ---- */
typedef struct vhd_file vhd_file;
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
};

typedef struct vhd_open_opts {
	int writable;
	const char *const *search; /* extra dirs searched for a parent by UUID */
	size_t nsearch;
} vhd_open_opts;

/* Open one file (no parent). Problems found while opening are recorded in f->problems. */
vhd_file *vhd_open(const char *path, const vhd_open_opts *o, vhd_err *e);
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

/* ---- write ---- */
typedef struct vhd_create_opts {
	uint64_t size;
	uint32_t type;           /* VHD_FIXED, VHD_DYNAMIC, VHD_DIFF (parent set) */
	uint32_t block_size;     /* default 2 MiB */
	const char *parent;
	int hidden;
} vhd_create_opts;
vhd_file *vhd_create(const char *path, const vhd_create_opts *o, vhd_err *e);
int vhd_write(vhd_file *f, uint64_t off, const uint8_t *data, uint64_t len, vhd_err *e);
int vhd_set_hidden(vhd_file *f, int hidden, vhd_err *e);
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

/* ---- coalesce ---- child's chain resolved; parent reopened writable inside. */
int vhd_coalesce(vhd_file *child, vhd_progress_fn progress, void *ctx, vhd_err *e);

void vhd_seterr(vhd_err *e, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- a chain as input to writers of other formats (clusters.c) ---- */
struct disk_source;
/* Validate the chain and refuse (0 / -1, e filled) what vhd_flatten refuses: a blocker under
 * force, an unresolved parent. `what` names the job in the message ("write qcow2 from"). */
int vhd_chain_readable(vhd_file *leaf, int force, const char *what, vhd_err *e);
/* The stable error code (EPARENT, ECHECKSUM, ETRUNCATED, EDAMAGED) of a blocking problem. */
const char *vhd_problem_errcode(const vhd_problem *p);
/* 1 when path is (the same inode as) a file of leaf's chain. */
int vhd_chain_holds(const vhd_file *leaf, const char *path);
/* 1 when any of the sectors may read non-zero through the chain (BATs and sector bitmaps only;
 * 1 when a bitmap cannot be read), 0 when they surely read as zeros. */
int vhd_may_hold_data(vhd_file *f, uint64_t sector, uint64_t count);
/* A checked chain as a disk_source whose allocation map has a grain of `grain` bytes (a power
 * of two from 512 to the block size), answered from the sector bitmaps; reads go through rctx
 * (force, ranges zero-filled). ctx is caller storage that must outlive src. */
typedef struct vhd_source { vhd_file *leaf; vhd_rctx *rctx; uint32_t grain; } vhd_source;
void vhd_bitmap_source(vhd_file *leaf, uint32_t grain, vhd_rctx *rctx, vhd_source *ctx, struct disk_source *src);

/* ---- I/O helpers (io.c) ---- */
ssize_t vhd_pread_all(int fd, void *buf, size_t len, uint64_t off);  /* short only at EOF; -1 on error */
int vhd_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
int vhd_syserr(vhd_err *e, const char *what, const char *path);      /* from errno; returns -1 */

#endif
