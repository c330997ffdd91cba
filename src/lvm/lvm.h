/*
 * LVM2 on-disk metadata, read-only (pure C, no Lua, no lvm2, no
 * device-mapper): the PV label in sectors 0-3, the pv_header, the metadata
 * area header (mda_header) and its raw_locns, the newest metadata text, a
 * parser for that text (VG, PVs, LVs, segments) and the mapping of an LV's
 * logical bytes onto the device. See doc/lvhd.md §5.
 *
 * Nothing here writes to a device or activates anything. Every refusal fills
 * an lvm_err with a stable code and a sentence naming the device (and LV);
 * things the reader got past (an older metadata copy used) are warnings on
 * the lvm_dev. All on-disk integers are little-endian.
 */
#ifndef SALVAGE_LVM_H
#define SALVAGE_LVM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LVM_SECTOR 512u
#define LVM_LABEL_SCAN 4u          /* the label is in one of sectors 0..3 */
#define LVM_MAX_AREAS 8u
#define LVM_MAX_TEXT (64u << 20)   /* larger metadata text is refused, not read */

typedef struct lvm_err {
	char code[24];    /* stable: ENOLABEL, ECHECKSUM, EFORMAT, EMETADATA, ERANGE, ENOENT, ... */
	char msg[512];
} lvm_err;

typedef struct lvm_area { uint64_t offset, size; } lvm_area;  /* bytes; size 0 = to the end */

typedef struct lvm_label {
	uint32_t sector;                 /* where the label was found (0..3) */
	char pv_id[33];                  /* 32 characters, no dashes */
	uint64_t dev_size;               /* from the pv_header */
	lvm_area data[LVM_MAX_AREAS];    /* data areas: offset = pe_start */
	size_t ndata;
	lvm_area meta[LVM_MAX_AREAS];    /* metadata areas */
	size_t nmeta;
} lvm_label;

typedef struct lvm_rlocn { uint64_t offset, size; uint32_t checksum, flags; } lvm_rlocn;

typedef struct lvm_mda {
	uint32_t checksum, checksum_computed;
	uint32_t version;
	uint64_t start, size;            /* absolute offset of the area, its size */
	lvm_rlocn rlocn[4];
	size_t nrlocn;
} lvm_mda;

typedef struct lvm_pv {
	char name[64];                   /* "pv0" */
	char id[40];                     /* as written, with dashes */
	char device[256];                /* only a hint */
	uint64_t dev_size, pe_start, pe_count; /* dev_size and pe_start in bytes */
	int present;                     /* 1 when this device is that PV */
} lvm_pv;

typedef struct lvm_seg {
	uint64_t start_extent, extent_count;
	char type[32];
	uint32_t stripe_count;
	int pv;                          /* index in vg.pvs; -1 unknown */
	uint64_t pe;                     /* first physical extent on that PV */
} lvm_seg;

typedef struct lvm_lv {
	char name[128];
	char id[40];
	int read, write, visible;        /* from status */
	char **tags;
	size_t ntags;
	lvm_seg *segs;                   /* sorted by start_extent */
	size_t nsegs;
	uint64_t extents;                /* sum of extent_count */
	uint64_t size;                   /* bytes */
	char problem[600];               /* non-empty: cannot be read, and why */
	char problem_code[24];
} lvm_lv;

typedef struct lvm_vg {
	char name[128];
	char id[40];
	uint64_t seqno;
	uint64_t extent_size;            /* bytes */
	lvm_pv *pvs;
	size_t npvs;
	lvm_lv *lvs;
	size_t nlvs;
} lvm_vg;

/* ---- pure parsers (fuzzed) ---- */
uint32_t lvm_crc(uint32_t seed, const uint8_t *buf, size_t len);
#define LVM_INITIAL_CRC 0xf597a6cfu
/* Find and parse the label + pv_header in the first LVM_LABEL_SCAN sectors of buf (len bytes). */
int lvm_label_find(const uint8_t *buf, size_t len, lvm_label *l, lvm_err *e);
/* Parse a 512-byte mda_header that should sit at absolute offset `at`. */
int lvm_mda_parse(const uint8_t buf[512], uint64_t at, lvm_mda *m, lvm_err *e);
/* Parse metadata text (len bytes, may end in NUL) into vg; validates segments. */
int lvm_vg_parse(const char *text, size_t len, lvm_vg *vg, lvm_err *e);
void lvm_vg_free(lvm_vg *vg);
/* Byte offset on the PV of LV byte `off` (whole extents only); -1 when unmapped. */
int lvm_lv_map(const lvm_vg *vg, const lvm_lv *lv, uint64_t off, uint64_t *pv_off, uint64_t *run, int *pv);

/* ---- a VG read from its devices (image files or block devices), one PV each ---- */
typedef struct lvm_pvdev {
	int fd;
	char *path;
	uint64_t size;
	lvm_label label;
} lvm_pvdev;

typedef struct lvm_dev {
	int refs;
	char *path;                      /* the devices as given, joined by ',' */
	lvm_pvdev *devs;
	size_t ndevs;
	lvm_vg vg;
	int *pv_dev;                     /* per vg.pvs[i]: index in devs, -1 when that PV is missing */
	uint64_t mda_offset;             /* where the metadata in use came from (in mda_dev) */
	size_t mda_dev;
	int from_old_copy;               /* 1: the current copy was bad; an older one is used */
	char warnings[4][512];
	size_t nwarnings;
} lvm_dev;

/* Open read-only: labels, metadata areas, the newest good metadata of all the devices (the PVs
 * of one VG; the newest seqno wins). LVs on PVs not given are marked missing, by name. */
lvm_dev *lvm_open_many(const char *const *paths, size_t n, lvm_err *e);
lvm_dev *lvm_open(const char *path, lvm_err *e);
/* The same from "dev1,dev2,..." */
lvm_dev *lvm_open_list(const char *list, lvm_err *e);
void lvm_ref(lvm_dev *d);
void lvm_close(lvm_dev *d);
/* index of the LV named name, or -1 */
int lvm_find_lv(const lvm_dev *d, const char *name);
/* Read from LV i (bytes past the LV's end are not read: returns the count read); -1 on error. */
ssize_t lvm_lv_pread(lvm_dev *d, size_t i, void *buf, size_t len, uint64_t off, lvm_err *e);

/* 1 when bytes [off, off+len) of LV i lie in holes of a sparse image file (read as zeros). */
int lvm_lv_hole(lvm_dev *d, size_t i, uint64_t off, uint64_t len);

void lvm_seterr(lvm_err *e, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
