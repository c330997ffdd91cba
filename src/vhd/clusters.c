/*
 * A chain as input to writers of other formats: which ranges may hold data
 * (from the BATs and sector bitmaps alone, never the data), so that the
 * chain's disk_source (stream.c) can answer at a grain finer than a block.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "vhd/stream.h"
#include "vhd/vhd.h"

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

static int bitmap_allocated(void *ctx, uint64_t unit, stream_err *e)
{
	vhd_source *s = ctx;
	uint64_t spu = s->src.grain / 512;
	return vhd_may_hold_data(s->leaf, unit * spu, spu);
}

int vhd_source_set_grain(vhd_source *s, uint32_t grain, vhd_err *e)
{
	uint32_t block = s->leaf->footer.disk_type == VHD_FIXED ? 2u << 20 : s->leaf->header.block_size;
	if (grain < 512 || (grain & (grain - 1)) != 0 || grain > block) {
		vhd_seterr(e, "EINVAL", "allocation grain %u is not a power of two from 512 to %u", grain, block);
		return -1;
	}
	s->src.grain = grain;
	s->src.allocated = bitmap_allocated;
	return 0;
}
