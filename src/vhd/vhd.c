/*
 * Opening VHD files, resolving parents, checking structure, reading sectors
 * through a chain. Reads are decided by sector bitmaps only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhd/vhd.h"

#define MAX_CHAIN 256

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

void vhd_problem_add(vhd_file *f, int sev, int fatal, const char *code, int64_t block, const char *fmt, ...)
{
	if (f->nproblems == f->cproblems) {
		size_t n = f->cproblems ? f->cproblems * 2 : 8;
		vhd_problem *p = realloc(f->problems, n * sizeof *p);
		if (p == NULL)
			return;
		f->problems = p;
		f->cproblems = n;
	}
	vhd_problem *p = &f->problems[f->nproblems++];
	memset(p, 0, sizeof *p);
	snprintf(p->code, sizeof p->code, "%s", code);
	p->severity = sev;
	p->fatal = fatal;
	p->block = block;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->message, sizeof p->message, fmt, ap);
	va_end(ap);
}

uint64_t vhd_size(const vhd_file *f) { return f->footer.current_size; }

uint32_t vhd_allocated_blocks(const vhd_file *f)
{
	uint32_t n = 0;
	for (uint32_t i = 0; f->bat && i < f->bat_entries; i++)
		if (f->bat[i] != VHD_BAT_FREE)
			n++;
	return n;
}

void vhd_ref(vhd_file *f) { f->refs++; }

void vhd_close(vhd_file *f)
{
	while (f != NULL) {
		if (--f->refs > 0)
			return;
		vhd_file *parent = f->parent;
		if (f->fd >= 0)
			close(f->fd);
		if (f->has_rd && f->rd.release)
			f->rd.release(f->rd.ctx);
		free(f->path);
		free(f->bat);
		free(f->bad_block);
		free(f->batmap.map);
		free(f->cached_bitmap);
		free(f->problems);
		free(f);
		f = parent;
	}
}

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Metadata regions of a dynamic file, for "BAT entry into metadata". */
static size_t meta_regions(const vhd_file *f, uint64_t (*r)[2], size_t max)
{
	size_t n = 0;
	r[n][0] = 0; r[n][1] = 512; n++;
	r[n][0] = f->footer.data_offset; r[n][1] = VHD_HEADER_SIZE; n++;
	r[n][0] = f->header.table_offset;
	r[n][1] = ((uint64_t)f->header.max_bat_entries * 4 + 511) / 512 * 512; n++;
	if (f->batmap.present) {
		r[n][0] = f->header.table_offset + r[2][1]; r[n][1] = 512; n++;
		r[n][0] = f->batmap.offset; r[n][1] = (uint64_t)f->batmap.size_sectors * 512; n++;
	}
	for (int i = 0; i < 8 && n < max; i++) {
		const vhd_locator *l = &f->header.loc[i];
		if (l->code[0] == 0 || l->data_offset == 0)
			continue;
		uint64_t space = l->data_space < 512 ? (uint64_t)l->data_space * 512 : l->data_space;
		if (space < l->data_length)
			space = l->data_length;
		r[n][0] = l->data_offset; r[n][1] = space; n++;
	}
	return n;
}

ssize_t vhd_file_pread(vhd_file *f, void *buf, size_t len, uint64_t off, vhd_err *e)
{
	if (f->has_rd) {
		vhd_err tmp;
		return f->rd.pread(f->rd.ctx, buf, len, off, e ? e : &tmp);
	}
	ssize_t n = vhd_pread_all(f->fd, buf, len, off);
	if (n < 0)
		vhd_syserr(e, "read", f->path);
	return n;
}

/* after a short or failed vhd_file_pread: e already says why when it failed */
static int short_read(vhd_err *e, const char *what, const char *name)
{
	if (e && e->code[0] == 0)
		vhd_seterr(e, "ETRUNCATED", "%s: %s: unexpected end of file", name, what);
	return -1;
}

/* The dynamic header at footer.data_offset, and the block geometry it gives. */
static int read_header(vhd_file *f, vhd_err *e)
{
	const char *name = f->path;
	uint8_t hb[VHD_HEADER_SIZE];
	uint64_t hoff = f->footer.data_offset;
	if (hoff == VHD_NONE64 || hoff + VHD_HEADER_SIZE > f->file_size || hoff < 512) {
		vhd_seterr(e, "EFORMAT", "%s: dynamic header offset %llu lies outside the file (%llu bytes)", name,
			   (unsigned long long)hoff, (unsigned long long)f->file_size);
		return -1;
	}
	if (vhd_file_pread(f, hb, sizeof hb, hoff, e) != (ssize_t)sizeof hb)
		return short_read(e, "reading dynamic header", name);
	if (vhd_header_parse(hb, &f->header) != 0) {
		vhd_seterr(e, "EFORMAT", "%s: no dynamic header (cookie 'cxsparse') at offset %llu", name,
			   (unsigned long long)hoff);
		return -1;
	}
	f->has_header = 1;
	vhd_header *h = &f->header;
	if (h->checksum != h->checksum_computed)
		vhd_problem_add(f, VHD_ERROR, 2, "HEADER_CHECKSUM", -1,
				"%s: dynamic header checksum is bad (stored 0x%08x, computed 0x%08x): header fields "
				"(BAT offset, block size, parent) cannot be trusted",
				base_name(name), h->checksum, h->checksum_computed);
	uint32_t bs = h->block_size;
	if (bs < 512 || bs % 512 != 0 || bs > (1u << 30)) {
		vhd_seterr(e, "EFORMAT", "%s: unsupported block size %u in dynamic header", name, bs);
		return -1;
	}
	f->spb = bs / 512;
	f->bitmap_bytes = ((f->spb + 7) / 8 + 511) / 512 * 512;
	return 0;
}

/* The BAT: as many entries as the virtual size needs, big-endian on disk. */
static int read_bat(vhd_file *f, vhd_err *e)
{
	const char *name = f->path;
	const vhd_header *h = &f->header;
	uint64_t need = (f->footer.current_size + h->block_size - 1) / h->block_size;
	if (need > h->max_bat_entries) {
		vhd_seterr(e, "EFORMAT", "%s: %llu blocks needed for %llu bytes but the BAT has only %u entries", name,
			   (unsigned long long)need, (unsigned long long)f->footer.current_size, h->max_bat_entries);
		return -1;
	}
	f->bat_entries = (uint32_t)need;
	uint64_t batbytes = (uint64_t)f->bat_entries * 4;
	if (h->table_offset == VHD_NONE64 || h->table_offset + batbytes > f->file_size) {
		vhd_seterr(e, "EFORMAT", "%s: BAT (offset %llu, %llu bytes) lies outside the file", name,
			   (unsigned long long)h->table_offset, (unsigned long long)batbytes);
		return -1;
	}
	f->bat = malloc(batbytes ? batbytes : 4);
	f->bad_block = calloc(f->bat_entries ? f->bat_entries : 1, 1);
	f->cached_bitmap = malloc(f->bitmap_bytes);
	if (!f->bat || !f->bad_block || !f->cached_bitmap) {
		vhd_seterr(e, "ENOMEM", "%s: out of memory for the BAT", name);
		return -1;
	}
	if (vhd_file_pread(f, f->bat, batbytes, h->table_offset, e) != (ssize_t)batbytes)
		return short_read(e, "reading BAT", name);
	for (uint32_t i = 0; i < f->bat_entries; i++) {
		const uint8_t *p = (const uint8_t *)&f->bat[i];
		f->bat[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	}
	return 0;
}

/* XenServer's batmap: right after the padded BAT. A hint only: never an error, and never
 * used for data; a bad one is a warning. */
static void read_batmap(vhd_file *f)
{
	const vhd_header *h = &f->header;
	uint64_t bmh = h->table_offset + ((uint64_t)h->max_bat_entries * 4 + 511) / 512 * 512;
	uint8_t bb[512];
	if (bmh + 512 > f->file_size || vhd_file_pread(f, bb, 512, bmh, NULL) != 512 ||
	    vhd_batmap_header_parse(bb, &f->batmap) != 0)
		return;
	f->batmap.hdr_offset = bmh;
	uint64_t len = (uint64_t)f->batmap.size_sectors * 512;
	uint64_t want = (f->bat_entries + 7) / 8;
	if (len < want || len > (64u << 20) || f->batmap.offset + len > f->file_size) {
		vhd_problem_add(f, VHD_WARNING, 0, "BATMAP_INVALID", -1,
				"%s: batmap (offset %llu, %u sectors) is unusable; ignored", base_name(f->path),
				(unsigned long long)f->batmap.offset, f->batmap.size_sectors);
		f->batmap.present = 0;
		return;
	}
	f->batmap.map = malloc(len);
	if (f->batmap.map == NULL || vhd_file_pread(f, f->batmap.map, len, f->batmap.offset, NULL) != (ssize_t)len) {
		free(f->batmap.map);
		f->batmap.map = NULL;
		f->batmap.present = 0;
		return;
	}
	uint32_t sum = 0;
	for (uint64_t i = 0; i < len; i++)
		sum += f->batmap.map[i];
	f->batmap.checksum_computed = ~sum;
	if (f->batmap.checksum_computed != f->batmap.checksum)
		vhd_problem_add(f, VHD_WARNING, 0, "BATMAP_CHECKSUM", -1,
				"%s: batmap checksum is bad (stored 0x%08x, computed 0x%08x); the batmap is never used for data",
				base_name(f->path), f->batmap.checksum, f->batmap.checksum_computed);
}

/* Block i's bounds: past the end of the file, into metadata, or truncated is what flatten
 * must refuse (or, forced, state exactly). */
static void check_block(vhd_file *f, uint32_t i, uint64_t regions[][2], size_t nreg)
{
	const char *name = base_name(f->path);
	uint64_t bs = f->header.block_size;
	uint64_t start = (uint64_t)f->bat[i] * 512, span = bs, vstart = (uint64_t)i * bs;
	if (vstart + span > f->footer.current_size)
		span = (f->footer.current_size - vstart + 511) / 512 * 512;
	uint64_t end = start + f->bitmap_bytes + span;
	if (start >= f->file_size) {
		f->bad_block[i] = VHD_BAD_BAT;
		vhd_problem_add(f, VHD_ERROR, 1, "BAT_PAST_EOF", i,
				"%s: block %u: BAT entry points at byte %llu, past the end of the file (%llu bytes)", name,
				i, (unsigned long long)start, (unsigned long long)f->file_size);
		return;
	}
	for (size_t r = 0; r < nreg; r++) {
		if (overlaps(start, f->bitmap_bytes + span, regions[r][0], regions[r][1])) {
			f->bad_block[i] = VHD_BAD_BAT;
			vhd_problem_add(f, VHD_ERROR, 1, "BAT_INTO_METADATA", i,
					"%s: block %u: BAT entry (byte %llu) overlaps the file's metadata "
					"(footer copy, header, BAT, batmap or parent locators)",
					name, i, (unsigned long long)start);
			return;
		}
	}
	if (end <= f->data_limit)
		return;
	f->bad_block[i] = VHD_BAD_TRUNC;
	if (f->footer_eof_ok && end <= f->file_size)
		vhd_problem_add(f, VHD_ERROR, 1, "BLOCK_CLOBBERS_FOOTER", i,
				"%s: block %u: data (bytes %llu-%llu) overlaps the footer at the end of the file", name, i,
				(unsigned long long)start, (unsigned long long)end);
	else
		vhd_problem_add(f, VHD_ERROR, 1, "BLOCK_TRUNCATED", i,
				"%s: block %u: data (bytes %llu-%llu) runs past the end of the file (%llu bytes): file "
				"truncated",
				name, i, (unsigned long long)start, (unsigned long long)end, (unsigned long long)f->file_size);
}

static int open_dynamic(vhd_file *f, vhd_err *e)
{
	if (read_header(f, e) != 0 || read_bat(f, e) != 0)
		return -1;
	read_batmap(f);
	uint64_t regions[16][2];
	size_t nreg = meta_regions(f, regions, 16);
	f->data_limit = f->footer_eof_ok ? f->file_size - 512 : f->file_size;
	for (uint32_t i = 0; i < f->bat_entries; i++)
		if (f->bat[i] != VHD_BAT_FREE)
			check_block(f, i, regions, nreg);
	return 0;
}

static vhd_file *new_file(const char *path, const vhd_open_opts *o, vhd_err *e)
{
	vhd_file *f = calloc(1, sizeof *f);
	if (f == NULL || (f->path = strdup(path)) == NULL) {
		free(f);
		vhd_seterr(e, "ENOMEM", "%s: out of memory", path);
		return NULL;
	}
	f->fd = -1;
	f->refs = 1;
	f->cached_block = -1;
	f->writable = o && o->writable;
	return f;
}

/* Footers (end, then the copy at 0) and the dynamic metadata of an object of f->file_size bytes. */
/* The footer to trust: the one at the end of the file, or its copy at offset 0 when the end
 * one is bad (an error finding either way); refused when neither is valid. */
static int choose_footer(vhd_file *f, vhd_err *e)
{
	const char *path = f->path, *bn = base_name(path);
	uint8_t eb[512], cb[512];
	vhd_footer ef, cf;
	if (e)
		e->code[0] = 0;
	if (vhd_file_pread(f, eb, 512, f->file_size - 512, e) != 512 || vhd_file_pread(f, cb, 512, 0, e) != 512)
		return short_read(e, "reading footer", path);
	int ecookie = vhd_footer_parse(eb, &ef) == 0;
	int ccookie = vhd_footer_parse(cb, &cf) == 0;
	f->footer_eof_ok = vhd_footer_valid(&ef);
	f->footer_copy_ok = vhd_footer_valid(&cf) && cf.disk_type != VHD_FIXED;
	if (f->footer_eof_ok) {
		f->footer = ef;
		if (ef.disk_type == VHD_FIXED)
			return 0;
		if (!f->footer_copy_ok)
			vhd_problem_add(f, VHD_ERROR, 0, "FOOTER_COPY_BAD", -1,
					"%s: footer copy at offset 0 is %s; the footer at the end of the file is good "
					"and is used",
					bn, !ccookie ? "missing (bad cookie)" : "damaged (bad checksum or fields)");
		else if (memcmp(eb, cb, 512) != 0)
			vhd_problem_add(f, VHD_WARNING, 0, "FOOTER_MISMATCH", -1,
					"%s: the footer copy at offset 0 differs from the footer at the end; "
					"the end one is used", bn);
		return 0;
	}
	if (!f->footer_copy_ok) {
		vhd_seterr(e, "ECHECKSUM", "%s: no valid footer: the end-of-file footer is %s and there is no "
			   "valid copy at offset 0", path, !ecookie ? "missing" : "damaged (bad checksum)");
		return -1;
	}
	f->footer = cf;
	f->footer_from_copy = 1;
	vhd_problem_add(f, VHD_ERROR, 0, "FOOTER_EOF_BAD", -1,
			"%s: footer at the end of the file is %s; reading through the intact copy at offset 0",
			bn, !ecookie ? "missing (bad cookie: truncated file or lost footer)"
				     : "damaged (bad checksum or fields)");
	return 0;
}

static int open_common(vhd_file *f, vhd_err *e)
{
	const char *path = f->path;
	if (f->file_size < 512) {
		vhd_seterr(e, "EFORMAT", "%s: %llu bytes is too small for a VHD (no footer)", path,
			   (unsigned long long)f->file_size);
		return -1;
	}
	if (choose_footer(f, e) != 0)
		return -1;
	if (f->footer.current_size % 512 != 0) {
		vhd_seterr(e, "EFORMAT", "%s: virtual size %llu is not a whole number of sectors", path,
			   (unsigned long long)f->footer.current_size);
		return -1;
	}
	if (f->footer.disk_type != VHD_FIXED)
		return open_dynamic(f, e);
	f->data_limit = f->file_size - 512;
	if (f->file_size - 512 < f->footer.current_size) {
		uint64_t have = f->file_size - 512;
		vhd_problem_add(f, VHD_ERROR, 1, "FIXED_TRUNCATED", -1,
				"%s: fixed disk holds %llu of its %llu bytes: sectors %llu-%llu are missing", base_name(path),
				(unsigned long long)have, (unsigned long long)f->footer.current_size,
				(unsigned long long)(have / 512), (unsigned long long)(f->footer.current_size / 512 - 1));
	}
	return 0;
}

vhd_file *vhd_open(const char *path, const vhd_open_opts *o, vhd_err *e)
{
	vhd_file *f = new_file(path, o, e);
	if (f == NULL)
		return NULL;
	f->fd = open(path, (f->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (f->fd < 0) {
		vhd_syserr(e, "cannot open", path);
		goto fail;
	}
	struct stat st;
	if (fstat(f->fd, &st) != 0) {
		vhd_syserr(e, "stat", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		vhd_seterr(e, "EFORMAT", "%s: not a regular file", path);
		goto fail;
	}
	f->file_size = (uint64_t)st.st_size;
	if (open_common(f, e) == 0)
		return f;
fail:
	vhd_close(f);
	return NULL;
}

vhd_file *vhd_open_reader(const char *name, const vhd_reader *src, const vhd_open_opts *o, vhd_err *e)
{
	if (o && o->writable) {
		if (src->release)
			src->release(src->ctx);
		vhd_seterr(e, "EROFS", "%s: a VHD inside another object is opened read-only", name);
		return NULL;
	}
	vhd_file *f = new_file(name, NULL, e);
	if (f == NULL) {
		if (src->release)
			src->release(src->ctx);
		return NULL;
	}
	f->rd = *src;
	f->has_rd = 1;
	f->file_size = src->size;
	if (open_common(f, e) == 0)
		return f;
	vhd_close(f);
	return NULL;
}

vhd_file *vhd_open_raw(const char *name, const vhd_reader *src, vhd_err *e)
{
	vhd_file *f = new_file(name, NULL, e);
	if (f == NULL || src->size % 512 != 0 || src->size == 0) {
		if (f)
			vhd_seterr(e, "EFORMAT", "%s: %llu bytes is not a whole number of sectors", name,
				   (unsigned long long)src->size);
		if (src->release)
			src->release(src->ctx);
		vhd_close(f);
		return NULL;
	}
	f->rd = *src;
	f->has_rd = 1;
	f->raw = 1;
	f->file_size = f->data_limit = src->size;
	vhd_footer *ft = &f->footer;
	memcpy(ft->cookie, "conectix", 9);
	ft->disk_type = VHD_FIXED;
	ft->data_offset = VHD_NONE64;
	ft->original_size = ft->current_size = src->size;
	vhd_geometry(src->size, &ft->cylinders, &ft->heads, &ft->sectors);
	f->footer_eof_ok = 1;
	return f;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Deeper checks than open: overlaps, alignment, batmap against bitmaps. */
/* Blocks whose data overlap: which of two entries is right cannot be known, so both are
 * unusable (an error each pair). */
static void check_overlaps(vhd_file *f, const char *bn)
{
	uint32_t n = 0;
	uint64_t *offs = malloc(((size_t)f->bat_entries + 1) * sizeof *offs);
	if (offs == NULL)
		return;
	for (uint32_t i = 0; i < f->bat_entries; i++)
		if (f->bat[i] != VHD_BAT_FREE && f->bad_block[i] != VHD_BAD_BAT)
			offs[n++] = (uint64_t)f->bat[i] << 32 | i;
	qsort(offs, n, sizeof *offs, cmp);
	uint64_t span = f->bitmap_bytes + (uint64_t)f->header.block_size;
	for (uint32_t k = 1; k < n; k++) {
		uint64_t pa = (offs[k - 1] >> 32) * 512, pb = (offs[k] >> 32) * 512;
		if (pb >= pa + span)
			continue;
		f->bad_block[offs[k] & 0xFFFFFFFF] = VHD_BAD_BAT;
		f->bad_block[offs[k - 1] & 0xFFFFFFFF] = VHD_BAD_BAT;
		f->cached_block = -1;
		vhd_problem_add(f, VHD_ERROR, 1, "BLOCK_OVERLAP", (int64_t)(offs[k] & 0xFFFFFFFF),
				"%s: block %u (byte %llu) overlaps block %u (byte %llu)", bn, (unsigned)(offs[k] & 0xFFFFFFFF),
				(unsigned long long)pb, (unsigned)(offs[k - 1] & 0xFFFFFFFF), (unsigned long long)pa);
	}
	free(offs);
}

/* XenServer puts block data on 4 KiB; others (qemu) need not: harmless, said once. */
static void check_alignment(vhd_file *f, const char *bn)
{
	uint32_t unaligned = 0, first_un = 0;
	for (uint32_t i = 0; i < f->bat_entries; i++)
		if (f->bat[i] != VHD_BAT_FREE && !f->bad_block[i] && ((uint64_t)f->bat[i] * 512 + f->bitmap_bytes) % 4096 != 0)
			if (unaligned++ == 0)
				first_un = i;
	if (unaligned)
		vhd_problem_add(f, VHD_INFO, 0, "BLOCK_UNALIGNED", first_un,
				"%s: data of %u block%s (first: block %u) not aligned on 4 KiB as XenServer writes it; "
				"harmless for reading", bn, unaligned, unaligned > 1 ? "s" : "", first_un);
}

/* The batmap: a set bit claims block i is fully written; content follows the sector bitmaps
 * regardless, and a claim the bitmap contradicts is a warning. */
static void check_batmap(vhd_file *f, const char *bn)
{
	if (!f->batmap.present || !f->batmap.map)
		return;
	for (uint32_t i = 0; i < f->bat_entries; i++) {
		if (!vhd_bit(f->batmap.map, i) || f->bat[i] == VHD_BAT_FREE || f->bad_block[i])
			continue;
		const uint8_t *bm = vhd_block_bitmap(f, i, NULL);
		if (bm == NULL)
			continue;
		uint64_t secs = f->spb, vstart = (uint64_t)i * f->spb;
		if (vstart + secs > f->footer.current_size / 512)
			secs = f->footer.current_size / 512 - vstart;
		for (uint64_t s = 0; s < secs; s++) {
			if (vhd_bit(bm, s))
				continue;
			vhd_problem_add(f, VHD_WARNING, 0, "BATMAP_MISMATCH", i,
					"%s: block %u: batmap says fully written but sector bitmap bit %llu is clear; the "
					"bitmap is followed (coalescing by batmap would copy never-written sectors)",
					bn, i, (unsigned long long)s);
			break;
		}
	}
}

void vhd_validate(vhd_file *f)
{
	if (!f->has_header || f->validated)
		return;
	f->validated = 1;
	const char *bn = base_name(f->path);
	check_overlaps(f, bn);
	check_alignment(f, bn);
	check_batmap(f, bn);
}


const uint8_t *vhd_block_bitmap(vhd_file *f, uint32_t b, vhd_err *e)
{
	if (!f->has_header || b >= f->bat_entries || f->bat[b] == VHD_BAT_FREE)
		return NULL;
	if (f->cached_block == (int64_t)b)
		return f->cached_bitmap;
	uint64_t off = (uint64_t)f->bat[b] * 512;
	ssize_t n = vhd_file_pread(f, f->cached_bitmap, f->bitmap_bytes, off, e);
	if (n < 0) {
		f->cached_block = -1;
		return NULL;
	}
	if ((size_t)n < f->bitmap_bytes) {
		f->cached_block = -1;
		vhd_seterr(e, "ETRUNCATED", "%s: block %u: sector bitmap lies past the end of the file", f->path, b);
		return NULL;
	}
	f->cached_block = b;
	return f->cached_bitmap;
}

static int add_range(vhd_rctx *c, uint64_t sec, uint64_t cnt, int kind, const char *reason)
{
	if (c->nranges) {
		vhd_range *l = &c->ranges[c->nranges - 1];
		if (l->kind == kind && l->sector + l->count == sec && strcmp(l->reason, reason) == 0) {
			l->count += cnt;
			return 0;
		}
	}
	if (c->nranges == c->cranges) {
		size_t n = c->cranges ? c->cranges * 2 : 16;
		vhd_range *r = realloc(c->ranges, n * sizeof *r);
		if (r == NULL)
			return -1;
		c->ranges = r;
		c->cranges = n;
	}
	vhd_range *r = &c->ranges[c->nranges++];
	r->sector = sec;
	r->count = cnt;
	r->kind = kind;
	snprintf(r->reason, sizeof r->reason, "%s", reason);
	return 0;
}

static int fill_below(vhd_file *f, uint64_t sec, uint64_t cnt, uint8_t *buf, vhd_rctx *c)
{
	if (f->footer.disk_type == VHD_DIFF) {
		if (f->parent == NULL) {
			vhd_seterr(c->e, "EPARENT", "%s: parent not resolved", f->path);
			return -1;
		}
		return vhd_read_sectors_ctx(f->parent, sec, cnt, buf, c);
	}
	memset(buf, 0, cnt * 512);
	return 0;
}

/* A fixed disk's sectors [sec, sec + cnt), inside the virtual size; a truncated file is
 * refused, or (forced) zero-filled and reported. */
static int read_fixed(vhd_file *f, uint64_t sec, uint64_t cnt, uint8_t *buf, vhd_rctx *c)
{
	uint64_t have = (f->data_limit / 512 > sec) ? f->data_limit / 512 - sec : 0;
	uint64_t n = have < cnt ? have : cnt;
	if (n < cnt) {
		if (!c->force) {
			vhd_seterr(c->e, "ETRUNCATED", "%s: fixed disk truncated: sector %llu is past the end of the file",
				   f->path, (unsigned long long)(sec + n));
			return -1;
		}
		memset(buf + n * 512, 0, (cnt - n) * 512);
		char why[160];
		snprintf(why, sizeof why, "%s: past the end of the truncated fixed disk", base_name(f->path));
		add_range(c, sec + n, cnt - n, 0, why);
	}
	if (n && vhd_file_pread(f, buf, n * 512, sec * 512, c->e) != (ssize_t)(n * 512))
		return short_read(c->e, "reading data", f->path);
	return 0;
}

/* `run` sectors that block b's bitmap marks written, from file offset off (virtual sector
 * sec); sectors past the end of a truncated file are refused, or (forced) zero-filled. */
static int read_written(vhd_file *f, uint32_t b, uint64_t sec, uint64_t off, uint64_t run, uint8_t *dst,
			vhd_rctx *c)
{
	uint64_t ok = off < f->data_limit ? (f->data_limit - off) / 512 : 0;
	if (ok > run)
		ok = run;
	if (ok && vhd_file_pread(f, dst, ok * 512, off, c->e) != (ssize_t)(ok * 512))
		return short_read(c->e, "reading data", f->path);
	if (ok == run)
		return 0;
	if (!c->force) {
		vhd_seterr(c->e, "ETRUNCATED", "%s: block %u: sector %llu is past the end of the file", f->path, b,
			   (unsigned long long)(sec + ok));
		return -1;
	}
	char why[160];
	snprintf(why, sizeof why, "%s: block %u: written sectors past the end of the truncated file",
		 base_name(f->path), b);
	memset(dst + ok * 512, 0, (run - ok) * 512);
	add_range(c, sec + ok, run - ok, 0, why);
	return 0;
}

/* Sectors [in, in + n) of allocated block b (virtual sector sec = its first), run by run of
 * its bitmap: written runs from this file, the others from the parent (or zeros). */
static int read_allocated(vhd_file *f, uint32_t b, uint64_t in, uint64_t sec, uint64_t n, uint8_t *buf,
			  vhd_rctx *c)
{
	uint64_t bstart = (uint64_t)f->bat[b] * 512;
	const uint8_t *bm = NULL;
	if (bstart + f->bitmap_bytes <= f->data_limit && (bm = vhd_block_bitmap(f, b, c->e)) == NULL)
		return -1;
	if (bm == NULL) {
		/* forced, bitmap itself gone: the whole range of this block is unknown */
		char why[160];
		snprintf(why, sizeof why, "%s: block %u: sector bitmap lost (truncated file)", base_name(f->path), b);
		memset(buf, 0, n * 512);
		add_range(c, sec, n, 0, why);
		return 0;
	}
	uint64_t dstart = bstart + f->bitmap_bytes;
	for (uint64_t i = 0, j; i < n; i = j) {
		int bit = vhd_bit(bm, in + i);
		for (j = i + 1; j < n && vhd_bit(bm, in + j) == bit;)
			j++;
		int rc = bit ? read_written(f, b, sec + i, dstart + (in + i) * 512, j - i, buf + i * 512, c)
			     : fill_below(f, sec + i, j - i, buf + i * 512, c);
		if (rc != 0)
			return -1;
	}
	return 0;
}

/* Sectors [in, in + n) of block b of a dynamic or differencing disk; a damaged block is
 * refused, or (forced) read as far as it can be and reported. */
static int read_block(vhd_file *f, uint32_t b, uint64_t in, uint64_t sec, uint64_t n, uint8_t *buf, vhd_rctx *c)
{
	uint32_t entry = f->bat[b];
	int bad = entry == VHD_BAT_FREE ? 0 : f->bad_block[b];
	if (bad && !c->force) {
		const char *why = bad == VHD_BAD_BAT ? "its BAT entry points past the end of the file or into metadata"
						     : "its data runs past the end of the file (truncated)";
		vhd_seterr(c->e, bad == VHD_BAD_BAT ? "EBAT" : "ETRUNCATED",
			   "%s: block %u: %s; refusing to guess its content (use --force to %s)", f->path, b, why,
			   bad == VHD_BAD_BAT ? "treat it as unallocated" : "zero-fill the missing sectors");
		return -1;
	}
	if (entry != VHD_BAT_FREE && bad != VHD_BAD_BAT)
		return read_allocated(f, b, in, sec, n, buf, c);
	if (bad) {
		char why[160];
		snprintf(why, sizeof why, "%s: block %u: invalid BAT entry treated as unallocated", base_name(f->path), b);
		add_range(c, sec, n, 1, why);
	}
	return fill_below(f, sec, n, buf, c);
}

int vhd_read_sectors_ctx(vhd_file *f, uint64_t sec, uint64_t cnt, uint8_t *buf, vhd_rctx *c)
{
	uint64_t total = f->footer.current_size / 512;
	if (sec >= total) {
		memset(buf, 0, cnt * 512);
		return 0;
	}
	if (sec + cnt > total) {
		memset(buf + (total - sec) * 512, 0, (sec + cnt - total) * 512);
		cnt = total - sec;
	}
	if (f->footer.disk_type == VHD_FIXED)
		return read_fixed(f, sec, cnt, buf, c);
	while (cnt > 0) {
		uint32_t b = (uint32_t)(sec / f->spb);
		uint64_t in = sec % f->spb;
		uint64_t n = f->spb - in < cnt ? f->spb - in : cnt;
		if (read_block(f, b, in, sec, n, buf, c) != 0)
			return -1;
		sec += n;
		cnt -= n;
		buf += n * 512;
	}
	return 0;
}

int vhd_read_sectors(vhd_file *f, uint64_t sector, uint64_t count, uint8_t *buf, vhd_err *e)
{
	vhd_rctx c = { .force = 0, .e = e };
	int rc = vhd_read_sectors_ctx(f, sector, count, buf, &c);
	free(c.ranges);
	return rc;
}

int vhd_read(vhd_file *f, uint64_t off, uint64_t len, uint8_t *buf, vhd_err *e)
{
	if (len == 0)
		return 0;
	uint64_t first = off / 512, last = (off + len - 1) / 512;
	if ((off % 512) == 0 && (len % 512) == 0)
		return vhd_read_sectors(f, first, len / 512, buf, e);
	uint64_t n = last - first + 1;
	uint8_t *tmp = malloc(n * 512);
	if (tmp == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	int rc = vhd_read_sectors(f, first, n, tmp, e);
	if (rc == 0)
		memcpy(buf, tmp + (off - first * 512), len);
	free(tmp);
	return rc;
}

/* ---- parents ---- */

static char *join_dir(const char *child, const char *rel)
{
	if (rel[0] == '/')
		return strdup(rel);
	const char *slash = strrchr(child, '/');
	size_t dl = slash ? (size_t)(slash - child) : 1;
	const char *dir = slash ? child : ".";
	if (slash && dl == 0)
		dl = 1; /* "/x.vhd" */
	while (rel[0] == '.' && rel[1] == '/')
		rel += 2;
	size_t n = dl + 1 + strlen(rel) + 1;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%.*s/%s", (int)dl, dir, rel);
	return p;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int has_vhd_ext(const char *n)
{
	size_t l = strlen(n);
	return l > 4 && strcasecmp(n + l - 4, ".vhd") == 0;
}

/* Search DIR for a VHD whose footer UUID is uuid. */
static vhd_file *search_uuid(const char *dir, const uint8_t uuid[16], const char *self)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return NULL;
	struct dirent *de;
	vhd_file *found = NULL;
	while (!found && (de = readdir(d)) != NULL) {
		if (!has_vhd_ext(de->d_name))
			continue;
		size_t n = strlen(dir) + strlen(de->d_name) + 2;
		char *p = malloc(n);
		if (!p)
			break;
		snprintf(p, n, "%s/%s", dir, de->d_name);
		char *rp = realpath(p, NULL), *rs = realpath(self, NULL);
		int same = rp && rs && strcmp(rp, rs) == 0;
		free(rp);
		free(rs);
		if (!same) {
			vhd_err e;
			vhd_file *c = vhd_open(p, NULL, &e);
			if (c && memcmp(c->footer.uuid, uuid, 16) == 0)
				found = c;
			else if (c)
				vhd_close(c);
		}
		free(p);
	}
	closedir(d);
	return found;
}

/* A child larger than its parent reads fine, but coalescing must grow the parent first: say how. */
static void parent_smaller(vhd_file *f, const vhd_file *p)
{
	uint64_t max = vhd_max_growth(p);
	char what[200];
	if (max >= f->footer.current_size)
		snprintf(what, sizeof what, "coalesce would first grow %s to %llu bytes (its BAT holds up to %llu)",
			 base_name(p->path), (unsigned long long)f->footer.current_size, (unsigned long long)max);
	else
		snprintf(what, sizeof what, "coalesce would refuse: %s can only grow to %llu bytes in place",
			 base_name(p->path), (unsigned long long)max);
	vhd_problem_add(f, VHD_WARNING, 0, "PARENT_SMALLER", -1,
			"%s: virtual size %llu is larger than its parent's %llu (the disk was grown after the snapshot): "
			"reading is exact (sectors past the parent read as zeros); %s",
			base_name(f->path), (unsigned long long)f->footer.current_size,
			(unsigned long long)p->footer.current_size, what);
}

/* What the search for a parent saw, for its warnings and its refusal. */
typedef struct {
	char want[37];         /* the parent UUID the header names */
	char named[1024];      /* the first candidate path */
	char mismatch[600];    /* the first candidate with another UUID */
	char unreadable[600];  /* why the first unreadable candidate could not be opened */
} parent_search;

/* Candidate paths (malloc'd, or NULL): locators in XenServer's order, then the header's
 * parent name; relative to f's directory unless f reads through a reader (an LV). */
static int parent_candidates(vhd_file *f, char *cand[10])
{
	static const char *order[] = { "MacX", "W2ku", "W2ru" };
	int nc = 0;
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 8; i++) {
			vhd_locator *l = &f->header.loc[i];
			if (strncmp(l->code, order[k], 4) != 0 || l->data_length == 0 || l->data_length > 4096 ||
			    l->data_offset + l->data_length > f->file_size)
				continue;
			uint8_t buf[4096];
			char out[2048];
			if (vhd_file_pread(f, buf, l->data_length, l->data_offset, NULL) != (ssize_t)l->data_length)
				continue;
			if (vhd_locator_decode(l->code, buf, l->data_length, out, sizeof out) == 0 && nc < 9)
				cand[nc++] = f->has_rd ? strdup(out) : join_dir(f->path, out);
		}
	if (f->header.parent_name[0] && nc < 10)
		cand[nc++] = f->has_rd ? strdup(f->header.parent_name) : join_dir(f->path, f->header.parent_name);
	return nc;
}

/* Open candidate `path`: the VHD, or NULL (missing: skipped silently; unreadable: noted). */
static vhd_file *open_candidate(vhd_file *f, const char *path, parent_search *ps)
{
	vhd_err pe = { "", "" };
	vhd_file *c;
	if (f->has_rd) {
		c = f->rd.parent ? f->rd.parent(f->rd.ctx, path, NULL, &pe) : NULL;
		if (c == NULL && (!f->rd.parent || strcmp(pe.code, "ENOENT") == 0))
			return NULL;
	} else {
		if (access(path, F_OK) != 0)
			return NULL;
		c = vhd_open(path, NULL, &pe);
	}
	if (c == NULL && !ps->unreadable[0])
		snprintf(ps->unreadable, sizeof ps->unreadable, "%s", pe.msg);
	return c;
}

/* The first candidate whose UUID is the one wanted (or a raw volume, which has none). */
static vhd_file *parent_by_name(vhd_file *f, char *cand[], int nc, parent_search *ps)
{
	for (int i = 0; i < nc; i++) {
		if (!cand[i])
			continue;
		if (!ps->named[0])
			snprintf(ps->named, sizeof ps->named, "%s", cand[i]);
		vhd_file *c = open_candidate(f, cand[i], ps);
		if (c == NULL)
			continue;
		if (memcmp(c->footer.uuid, f->header.parent_uuid, 16) == 0)
			return c;
		if (c->raw) {
			/* a raw volume (LVHD "LV-") has no UUID to check: used by its name, as blktap does */
			vhd_problem_add(f, VHD_WARNING, 0, "PARENT_RAW", -1,
					"%s: parent %s is a raw volume: it has no UUID to check against %s; used by its "
					"name, as XenServer does", base_name(f->path), c->path, ps->want);
			return c;
		}
		char got[37];
		vhd_uuid_str(c->footer.uuid, got);
		if (!ps->mismatch[0])
			snprintf(ps->mismatch, sizeof ps->mismatch, "%s has UUID %s, not the expected %s", cand[i], got,
				 ps->want);
		vhd_close(c);
	}
	return NULL;
}

/* No candidate fits: the VHD with the wanted UUID, through the reader or in f's directory
 * and the search directories; a warning says why the named one was not used. */
static vhd_file *parent_by_uuid(vhd_file *f, const vhd_open_opts *o, const parent_search *ps)
{
	vhd_file *p = NULL;
	if (f->has_rd) {
		vhd_err pe;
		p = f->rd.parent ? f->rd.parent(f->rd.ctx, NULL, f->header.parent_uuid, &pe) : NULL;
	} else {
		char *dir = dir_of(f->path);
		if (dir) {
			p = search_uuid(dir, f->header.parent_uuid, f->path);
			free(dir);
		}
		for (size_t i = 0; !p && o && i < o->nsearch; i++)
			p = search_uuid(o->search[i], f->header.parent_uuid, f->path);
	}
	if (p)
		vhd_problem_add(f, VHD_WARNING, 0, ps->mismatch[0] ? "PARENT_UUID_MISMATCH" : "PARENT_FOUND_BY_UUID", -1,
				"%s: parent %s %s; using %s, found by its UUID %s", base_name(f->path),
				ps->named[0] ? ps->named : "(unnamed)",
				ps->mismatch[0] ? "has another UUID" : ps->unreadable[0] ? "is unreadable" : "is missing",
				p->path, ps->want);
	return p;
}

/* No parent at all: the finding (file's base name) and the error (its path), saying why. */
static int parent_not_found(vhd_file *f, const parent_search *ps, vhd_err *e)
{
	const char *code;
	char why[2200];
	if (ps->unreadable[0] && !ps->mismatch[0]) {
		code = "PARENT_UNREADABLE";
		snprintf(why, sizeof why, "parent cannot be read (%s), and no other VHD with UUID %s was found",
			 ps->unreadable, ps->want);
	} else if (ps->mismatch[0]) {
		code = "PARENT_UUID_MISMATCH";
		snprintf(why, sizeof why, "parent mismatch: %s, and no VHD with that UUID was found", ps->mismatch);
	} else {
		code = "PARENT_MISSING";
		snprintf(why, sizeof why, "parent %s (UUID %s) is missing and no VHD with that UUID was found",
			 ps->named[0] ? ps->named : f->header.parent_name, ps->want);
	}
	f->parent_state = -1;
	vhd_problem_add(f, VHD_ERROR, 2, code, -1, "%s: %s", base_name(f->path), why);
	vhd_seterr(e, "EPARENT", "%s: %s", f->path, why);
	return -1;
}

/* Notes on a parent found: a timestamp that differs (info only), a resized disk. */
static void parent_notes(vhd_file *f, vhd_file *p)
{
	const char *bn = base_name(f->path);
	struct stat st;
	if (!p->has_rd && fstat(p->fd, &st) == 0 && (int64_t)st.st_mtime - VHD_EPOCH != (int64_t)f->header.parent_timestamp)
		vhd_problem_add(f, VHD_INFO, 0, "PARENT_TIMESTAMP", -1,
				"%s: parent timestamp %u differs from %s's modification time (%lld); copying files "
				"changes mtimes, so this alone means nothing",
				bn, f->header.parent_timestamp, base_name(p->path), (long long)(st.st_mtime - VHD_EPOCH));
	if (p->footer.current_size > f->footer.current_size)
		vhd_problem_add(f, VHD_INFO, 0, "PARENT_SIZE", -1,
				"%s: virtual size %llu differs from parent's %llu (resized disk)", bn,
				(unsigned long long)f->footer.current_size, (unsigned long long)p->footer.current_size);
	else if (p->footer.current_size < f->footer.current_size)
		parent_smaller(f, p);
}

int vhd_resolve_parent(vhd_file *f, const vhd_open_opts *o, vhd_err *e)
{
	if (f->footer.disk_type != VHD_DIFF || f->parent_state == 1)
		return 0;
	if (f->parent_state == -1) {
		vhd_seterr(e, "EPARENT", "%s: parent could not be resolved", f->path);
		return -1;
	}
	if (f->header.checksum != f->header.checksum_computed) {
		vhd_seterr(e, "ECHECKSUM", "%s: dynamic header checksum is bad: the parent reference cannot be trusted",
			   f->path);
		f->parent_state = -1;
		return -1;
	}
	parent_search ps = { "", "", "", "" };
	vhd_uuid_str(f->header.parent_uuid, ps.want);
	char *cand[10];
	int nc = parent_candidates(f, cand);
	vhd_file *p = parent_by_name(f, cand, nc, &ps);
	for (int i = 0; i < nc; i++)
		free(cand[i]);
	if (p == NULL && (p = parent_by_uuid(f, o, &ps)) == NULL)
		return parent_not_found(f, &ps, e);
	parent_notes(f, p);
	f->parent = p;
	f->parent_state = 1;
	return 0;
}

int vhd_resolve_chain(vhd_file *f, const vhd_open_opts *o, vhd_err *e)
{
	int depth = 0;
	for (vhd_file *c = f; c; c = c->parent) {
		if (++depth > MAX_CHAIN) {
			vhd_seterr(e, "ELOOP", "%s: chain deeper than %d levels (a loop?)", f->path, MAX_CHAIN);
			vhd_problem_add(f, VHD_ERROR, 2, "CHAIN_LOOP", -1, "%s", e ? e->msg : "chain too deep");
			return -1;
		}
		for (vhd_file *a = f; a != c; a = a->parent)
			if (memcmp(a->footer.uuid, c->footer.uuid, 16) == 0) {
				vhd_seterr(e, "ELOOP", "%s: chain loops back to %s (same UUID)", f->path, c->path);
				vhd_problem_add(f, VHD_ERROR, 2, "CHAIN_LOOP", -1, "%s: chain loops back to %s (same UUID)",
						base_name(f->path), c->path);
				return -1;
			}
		if (vhd_resolve_parent(c, o, e) != 0)
			return -1;
	}
	return 0;
}

const vhd_problem *vhd_chain_blocker(vhd_file *leaf, int force, const vhd_file **where)
{
	for (vhd_file *c = leaf; c; c = c->parent)
		for (size_t i = 0; i < c->nproblems; i++) {
			const vhd_problem *p = &c->problems[i];
			if (p->fatal == 2 || (p->fatal == 1 && !force)) {
				if (where)
					*where = c;
				return p;
			}
		}
	return NULL;
}

const char *vhd_problem_errcode(const vhd_problem *p)
{
	if (strncmp(p->code, "PARENT", 6) == 0)
		return "EPARENT";
	if (strstr(p->code, "CHECKSUM"))
		return "ECHECKSUM";
	if (strstr(p->code, "TRUNC") || strstr(p->code, "CLOBBER"))
		return "ETRUNCATED";
	return "EDAMAGED";
}
