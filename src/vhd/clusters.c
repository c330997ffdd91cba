/*
 * A chain as input to writers of other formats: which ranges may hold data
 * (from the BATs and sector bitmaps alone, never the data), a disk_source
 * (vhd/stream.h) at a fine grain built on that, and the checks every writer
 * makes before reading a chain.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "vhd/stream.h"
#include "vhd/vhd.h"

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

int vhd_chain_readable(vhd_file *leaf, int force, const char *what, vhd_err *e)
{
	for (vhd_file *c = leaf; c; c = c->parent)
		vhd_validate(c);
	const vhd_problem *bp = vhd_chain_blocker(leaf, force, NULL);
	if (bp) {
		vhd_seterr(e, vhd_problem_errcode(bp), "%s; refusing to %s %s (nothing written)%s", bp->message, what,
			   leaf->path, bp->fatal == 1 ? "; --force would proceed and list the affected sectors" : "");
		return -1;
	}
	for (vhd_file *c = leaf; c; c = c->parent)
		if (c->footer.disk_type == VHD_DIFF && c->parent == NULL) {
			vhd_seterr(e, "EPARENT", "%s: parent not resolved; refusing to %s", c->path, what);
			return -1;
		}
	return 0;
}

int vhd_chain_holds(const vhd_file *leaf, const char *path)
{
	struct stat pst, cst;
	if (stat(path, &pst) != 0)
		return 0;
	for (const vhd_file *c = leaf; c; c = c->parent)
		if (fstat(c->fd, &cst) == 0 && cst.st_dev == pst.st_dev && cst.st_ino == pst.st_ino)
			return 1;
	return 0;
}

/* Any bit set in bitmap positions [from, from + n)? */
static int any_bit(const uint8_t *bm, uint64_t from, uint64_t n)
{
	for (uint64_t i = from; i < from + n; i++) {
		if ((i & 7) == 0 && i + 8 <= from + n) {
			if (bm[i >> 3])
				return 1;
			i += 7;
			continue;
		}
		if (vhd_bit(bm, i))
			return 1;
	}
	return 0;
}

/* Does this one file give data (not "look below") for any sector of the range? 1, 0, or 1
 * when unsure (a bitmap that cannot be read: the read will then report it exactly). */
static int level_has_data(vhd_file *f, uint64_t sec, uint64_t cnt)
{
	if (f->footer.disk_type == VHD_FIXED)
		return 1;
	for (uint64_t s = sec; s < sec + cnt;) {
		uint32_t b = (uint32_t)(s / f->spb);
		uint64_t in = s % f->spb;
		uint64_t n = f->spb - in < sec + cnt - s ? f->spb - in : sec + cnt - s;
		if (f->bat[b] != VHD_BAT_FREE) {
			/* a damaged entry: let the reader meet it, refuse it or (forced) report it */
			if (f->bad_block[b] == VHD_BAD_BAT)
				return 1;
			vhd_err ignored;
			const uint8_t *bm = (uint64_t)f->bat[b] * 512 + f->bitmap_bytes <= f->data_limit
				? vhd_block_bitmap(f, b, &ignored) : NULL;
			if (bm == NULL || any_bit(bm, in, n))
				return 1;
		}
		s += n;
	}
	return 0;
}

int vhd_may_hold_data(vhd_file *f, uint64_t sec, uint64_t cnt)
{
	for (; f; f = f->parent) {
		uint64_t total = f->footer.current_size / 512;
		if (sec >= total)
			return 0; /* past this file's size reads as zeros, whatever lies below */
		if (cnt > total - sec)
			cnt = total - sec;
		if (level_has_data(f, sec, cnt))
			return 1;
		if (f->footer.disk_type != VHD_DIFF)
			return 0;
	}
	return 0;
}

static void to_stream_err(const vhd_err *v, stream_err *e)
{
	if (e == NULL)
		return;
	snprintf(e->code, sizeof e->code, "%s", v->code[0] ? v->code : "EIO");
	snprintf(e->msg, sizeof e->msg, "%s", v->msg);
}

static int src_allocated(void *ctx, uint64_t unit, stream_err *e)
{
	vhd_source *s = ctx;
	uint64_t spu = s->grain / 512;
	return vhd_may_hold_data(s->leaf, unit * spu, spu);
}

static int src_read(void *ctx, uint64_t off, size_t len, uint8_t *buf, stream_err *e)
{
	vhd_source *s = ctx;
	if (vhd_read_sectors_ctx(s->leaf, off / 512, len / 512, buf, s->rctx) != 0) {
		to_stream_err(s->rctx->e, e);
		return -1;
	}
	return 0;
}

void vhd_bitmap_source(vhd_file *leaf, uint32_t grain, vhd_rctx *rctx, vhd_source *ctx, struct disk_source *src)
{
	ctx->leaf = leaf;
	ctx->rctx = rctx;
	ctx->grain = grain;
	memset(src, 0, sizeof *src);
	src->size = leaf->footer.current_size;
	src->grain = grain;
	src->ctx = ctx;
	src->allocated = src_allocated;
	src->read = src_read;
}
