/*
 * A chain as a disk_source, and a standalone dynamic VHD of any disk_source
 * as an out_stream of known length. The output layout comes from the
 * source's allocation map before the first byte: a block is written when any
 * grain unit inside it may hold data (with drop_zero, when it also reads as
 * not all zeros). Bytes are produced in order from the metadata head held in
 * memory, one block at a time, and the footer; nothing is written anywhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhd/vhd.h"

#define OUT_BLOCK (2u << 20)

/* ---- the chain as a disk_source ---- */

static void copy_err(stream_err *to, const vhd_err *from)
{
	snprintf(to->code, sizeof to->code, "%s", from->code);
	snprintf(to->msg, sizeof to->msg, "%s", from->msg);
}

/* Does any file of the chain hold data (or damage) for these sectors? */
static int chain_touches(const vhd_file *f, uint64_t sec, uint64_t cnt)
{
	for (; f; f = f->parent) {
		uint64_t total = f->footer.current_size / 512;
		if (f->footer.disk_type == VHD_FIXED) {
			if (sec >= total)
				return 0;
			/* a raw reader (an LV): holes of a sparse LUN image need not be read */
			uint64_t n = sec + cnt > total ? total - sec : cnt;
			return !(f->raw && f->rd.hole && f->rd.hole(f->rd.ctx, sec * 512, n * 512));
		}
		if (sec >= total)
			continue;
		uint64_t last = sec + cnt - 1;
		if (last >= total)
			last = total - 1;
		for (uint64_t b = sec / f->spb; b <= last / f->spb; b++)
			if (f->bat[b] != VHD_BAT_FREE)
				return 1;
		if (f->footer.disk_type != VHD_DIFF)
			return 0;
	}
	return 0;
}

static int chain_allocated(void *ctx, uint64_t unit, stream_err *e)
{
	vhd_source *s = ctx;
	uint64_t spu = s->src.grain / 512, total = s->src.size / 512, first = unit * spu;
	if (first >= total)
		return 0;
	return chain_touches(s->leaf, first, total - first < spu ? total - first : spu);
}

static int chain_read(void *ctx, uint64_t off, size_t len, uint8_t *buf, stream_err *e)
{
	vhd_source *s = ctx;
	if (off % 512 || len % 512 || off > s->src.size || len > s->src.size - off) {
		snprintf(e->code, sizeof e->code, "EINVAL");
		snprintf(e->msg, sizeof e->msg, "%s: read of %zu bytes at %llu is not whole sectors inside the disk",
			 s->leaf->path, len, (unsigned long long)off);
		return -1;
	}
	if (vhd_read_sectors_ctx(s->leaf, off / 512, len / 512, buf, &s->rctx) != 0) {
		copy_err(e, &s->err);
		return -1;
	}
	return 0;
}

int vhd_source_init(vhd_source *s, vhd_file *leaf, int force, vhd_err *e)
{
	memset(s, 0, sizeof *s);
	for (vhd_file *c = leaf; c; c = c->parent)
		vhd_validate(c);
	const vhd_file *where = NULL;
	const vhd_problem *bp = vhd_chain_blocker(leaf, force, &where);
	if (bp) {
		vhd_seterr(e, vhd_problem_errcode(bp), "%s; refusing to flatten %s (nothing written)%s", bp->message,
			   leaf->path, bp->fatal == 1 ? "; --force would proceed and list the affected sectors" : "");
		return -1;
	}
	for (vhd_file *c = leaf; c; c = c->parent)
		if (c->footer.disk_type == VHD_DIFF && c->parent == NULL) {
			vhd_seterr(e, "EPARENT", "%s: parent not resolved; refusing to flatten", c->path);
			return -1;
		}
	s->leaf = leaf;
	s->rctx.force = force;
	s->rctx.e = &s->err;
	s->src.size = leaf->footer.current_size;
	s->src.grain = OUT_BLOCK;
	s->src.ctx = s;
	s->src.allocated = chain_allocated;
	s->src.read = chain_read;
	return 0;
}

void vhd_source_free(vhd_source *s)
{
	free(s->rctx.ranges);
	s->rctx.ranges = NULL;
	s->rctx.nranges = s->rctx.cranges = 0;
}

/* ---- a standalone VHD of a disk_source, as a stream ---- */

typedef struct vstream {
	out_stream base;
	disk_source src;
	vhd_layout l;
	vhd_footer footer;
	uint8_t foot[512];
	uint8_t *head;            /* [0, first_block) */
	size_t hlen;
	uint32_t *block_of;       /* slot k holds output block block_of[k] */
	uint64_t n;               /* slots */
	uint8_t *blk;             /* the loaded slot: bitmap, data, zero gap (stride bytes) */
	int64_t loaded;
} vstream;

static void vs_close(out_stream *s)
{
	vstream *v = (vstream *)s;
	free(v->head);
	free(v->block_of);
	free(v->blk);
	free(v);
}

/* Bytes of output block b inside the disk. */
static size_t block_len(const vhd_layout *l, uint64_t b)
{
	uint64_t off = b * l->block_size;
	return (size_t)(l->size - off < l->block_size ? l->size - off : l->block_size);
}

static int vs_load(vstream *v, uint64_t k)
{
	const vhd_layout *l = &v->l;
	uint64_t b = v->block_of[k];
	size_t len = block_len(l, b);
	uint8_t *data = v->blk + l->bitmap_bytes;
	vhd_meta_block_bitmap(l, b, v->blk);
	memset(data + len, 0, (size_t)(l->stride - l->bitmap_bytes - len));
	if (v->src.read(v->src.ctx, b * l->block_size, len, data, &v->base.err) != 0)
		return -1;
	v->loaded = (int64_t)k;
	return 0;
}

static ssize_t vs_read(out_stream *s, uint8_t *buf, size_t n)
{
	vstream *v = (vstream *)s;
	uint64_t body_end = vhd_layout_slot(&v->l, v->n);
	size_t done = 0;
	while (done < n && s->pos < s->length) {
		uint64_t pos = s->pos, avail;
		const uint8_t *from;
		if (pos < v->hlen) {
			from = v->head + pos;
			avail = v->hlen - pos;
		} else if (pos < body_end) {
			uint64_t k = (pos - v->l.first_block) / v->l.stride, r = (pos - v->l.first_block) % v->l.stride;
			if (v->loaded != (int64_t)k && vs_load(v, k) != 0)
				return -1;
			from = v->blk + r;
			avail = v->l.stride - r;
		} else {
			from = v->foot + (pos - body_end);
			avail = s->length - pos;
		}
		size_t c = avail < n - done ? (size_t)avail : n - done;
		memcpy(buf + done, from, c);
		done += c;
		s->pos += c;
	}
	return (ssize_t)done;
}

static const out_stream_ops vs_ops = { vs_read, vs_close };

/* Does output block b go into the file? From the map; with drop_zero, from its bytes too. */
static int block_wanted(vstream *v, uint64_t b, int drop_zero, vhd_err *e)
{
	const vhd_layout *l = &v->l;
	uint64_t u0 = b * l->block_size / v->src.grain;
	uint64_t u1 = (b * l->block_size + block_len(l, b) - 1) / v->src.grain;
	int any = 0;
	for (uint64_t u = u0; u <= u1 && !any; u++) {
		any = v->src.allocated(v->src.ctx, u, &v->base.err);
		if (any < 0)
			goto fail;
	}
	if (!any || !drop_zero)
		return any;
	uint8_t *data = v->blk + l->bitmap_bytes;
	if (v->src.read(v->src.ctx, b * l->block_size, block_len(l, b), data, &v->base.err) != 0)
		goto fail;
	return !stream_all_zero(data, block_len(l, b));
fail:
	vhd_seterr(e, v->base.err.code, "%s", v->base.err.msg);
	return -1;
}

/* The slots from the allocation map, the BAT, the head and the footer. */
static int vs_plan(vstream *v, const out_stream_opts *o, vhd_err *e)
{
	const vhd_layout *l = &v->l;
	uint32_t *bat = malloc((size_t)l->entries * 4 + 4);
	v->block_of = malloc((size_t)l->entries * 4 + 4);
	if (bat == NULL || v->block_of == NULL) {
		free(bat);
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	for (uint64_t b = 0; b < l->entries; b++) {
		int w = block_wanted(v, b, o && o->drop_zero, e);
		if (w < 0) {
			free(bat);
			return -1;
		}
		bat[b] = w ? (uint32_t)(vhd_layout_slot(l, v->n) / 512) : VHD_BAT_FREE;
		if (w)
			v->block_of[v->n++] = (uint32_t)b;
		if (o && o->progress && o->drop_zero && !o->progress(o->progress_ctx, (b + 1) * l->block_size, l->size)) {
			free(bat);
			vhd_seterr(e, "ECANCELED", "stream cancelled while looking for zero blocks");
			return -1;
		}
	}
	vhd_meta_footer(&v->footer, l->size, VHD_DYNAMIC, 0);
	vhd_header h;
	vhd_meta_header(&h, l);
	v->head = vhd_meta_head(l, &v->footer, &h, bat, 1, &v->hlen);
	free(bat);
	if (v->head == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	vhd_footer_build(&v->footer, v->foot);
	v->base.length = vhd_layout_slot(l, v->n) + 512;
	return 0;
}

out_stream *vhd_stream_open(const disk_source *src, const out_stream_opts *o, vhd_err *e)
{
	vstream *v = calloc(1, sizeof *v);
	if (v == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return NULL;
	}
	v->base.ops = &vs_ops;
	v->base.format = "vhd";
	v->src = *src;
	v->loaded = -1;
	if (src->grain < 512 || (src->grain & (src->grain - 1)) != 0) {
		vhd_seterr(e, "EINVAL", "source grain %u is not a power of two of at least 512", src->grain);
		goto fail;
	}
	if (vhd_layout_init(&v->l, src->size, OUT_BLOCK, 0, e) != 0)
		goto fail;
	if (posix_memalign((void **)&v->blk, 4096, (size_t)v->l.stride) != 0) {
		v->blk = NULL;
		vhd_seterr(e, "ENOMEM", "out of memory");
		goto fail;
	}
	if (vs_plan(v, o, e) != 0)
		goto fail;
	return &v->base;
fail:
	vs_close(&v->base);
	return NULL;
}

void vhd_stream_uuid(const out_stream *s, char out[37])
{
	vhd_uuid_str(((const vstream *)s)->footer.uuid, out);
}

/* ---- a raw image of a disk_source, as a stream (format-neutral: the virtual bytes) ---- */

typedef struct rstream {
	out_stream base;
	disk_source src;
	uint8_t *buf;             /* one grain unit */
	uint64_t loaded;          /* unit in buf, or UINT64_MAX */
} rstream;

static void rs_close(out_stream *s)
{
	rstream *v = (rstream *)s;
	free(v->buf);
	free(v);
}

static ssize_t rs_read(out_stream *s, uint8_t *buf, size_t n)
{
	rstream *v = (rstream *)s;
	size_t done = 0;
	uint32_t g = v->src.grain;
	while (done < n && s->pos < s->length) {
		uint64_t unit = s->pos / g, r = s->pos % g;
		size_t len = (size_t)(s->length - unit * g < g ? s->length - unit * g : g);
		if (v->loaded != unit) {
			int a = v->src.allocated(v->src.ctx, unit, &s->err);
			if (a < 0 || (a > 0 && v->src.read(v->src.ctx, unit * g, len, v->buf, &s->err) != 0))
				return -1;
			if (a == 0)
				memset(v->buf, 0, len);
			v->loaded = unit;
		}
		size_t c = len - r < n - done ? (size_t)(len - r) : n - done;
		memcpy(buf + done, v->buf + r, c);
		done += c;
		s->pos += c;
	}
	return (ssize_t)done;
}

static const out_stream_ops rs_ops = { rs_read, rs_close };

out_stream *raw_stream_open(const disk_source *src, vhd_err *e)
{
	rstream *v = calloc(1, sizeof *v);
	if (v == NULL || src->grain < 512 || (src->grain & (src->grain - 1)) != 0 || src->grain > (64u << 20) ||
	    (v->buf = malloc(src->grain)) == NULL) {
		vhd_seterr(e, v ? "EINVAL" : "ENOMEM", "source grain %u is not a power of two from 512 B to 64 MiB",
			   src->grain);
		if (v)
			free(v);
		return NULL;
	}
	v->base.ops = &rs_ops;
	v->base.format = "raw";
	v->base.length = src->size;
	v->src = *src;
	v->loaded = UINT64_MAX;
	return &v->base;
}

/* ---- tee: a stream's bytes, and a copy of them in a file ---- */

typedef struct tstream {
	out_stream base;
	out_stream *inner;
	int fd;
	char *path, *tmp;
} tstream;

static void ts_close(out_stream *s)
{
	tstream *t = (tstream *)s;
	if (t->fd >= 0)
		close(t->fd);
	if (t->tmp)
		unlink(t->tmp); /* not read to the end: no copy */
	out_stream_close(t->inner);
	free(t->tmp);
	free(t->path);
	free(t);
}

static ssize_t ts_fail(tstream *t, const char *what, const char *path)
{
	vhd_err e;
	vhd_syserr(&e, what, path);
	snprintf(t->base.err.code, sizeof t->base.err.code, "%s", e.code);
	snprintf(t->base.err.msg, sizeof t->base.err.msg, "%s", e.msg);
	return -1;
}

/* The copy is fsynced and renamed before the last bytes are handed out: a consumer that
 * got the whole stream knows the copy exists. */
static ssize_t ts_read(out_stream *s, uint8_t *buf, size_t n)
{
	tstream *t = (tstream *)s;
	ssize_t got = out_stream_read(t->inner, buf, n);
	if (got < 0) {
		s->err = t->inner->err;
		return -1;
	}
	if (got > 0 && vhd_pwrite_all(t->fd, buf, (size_t)got, s->pos) != 0)
		return ts_fail(t, "writing the copy", t->tmp);
	if (t->inner->pos == t->inner->length && t->tmp) {
		if (fsync(t->fd) != 0 || close(t->fd) != 0) {
			t->fd = -1;
			return ts_fail(t, "fsync of the copy", t->tmp);
		}
		t->fd = -1;
		if (rename(t->tmp, t->path) != 0)
			return ts_fail(t, "renaming the copy", t->path);
		free(t->tmp);
		t->tmp = NULL;
	}
	s->pos += (uint64_t)got;
	return got;
}

static const out_stream_ops ts_ops = { ts_read, ts_close };

out_stream *tee_stream_open(out_stream *inner, const char *path, vhd_err *e)
{
	tstream *t = calloc(1, sizeof *t);
	size_t n = strlen(path) + 32;
	if (t == NULL || (t->path = strdup(path)) == NULL || (t->tmp = malloc(n)) == NULL) {
		if (t)
			free(t->path);
		free(t);
		vhd_seterr(e, "ENOMEM", "out of memory");
		return NULL;
	}
	t->base.ops = &ts_ops;
	t->base.format = inner->format;
	t->base.length = inner->length;
	const char *slash = strrchr(path, '/');
	if (slash)
		snprintf(t->tmp, n, "%.*s/.%s.salvage-XXXXXX", (int)(slash - path), path, slash + 1);
	else
		snprintf(t->tmp, n, ".%s.salvage-XXXXXX", path);
	t->fd = mkstemp(t->tmp);
	if (t->fd < 0) {
		vhd_syserr(e, "cannot create the copy", t->tmp);
		free(t->tmp);
		free(t->path);
		free(t);
		return NULL;
	}
	(void)fchmod(t->fd, 0644);
	t->inner = inner;
	return &t->base;
}
