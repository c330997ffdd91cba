/*
 * Flatten: the whole virtual content of a chain into one new standalone file
 * (dynamic VHD or raw). One block in memory at a time, one large write per
 * block, all-zero blocks left unallocated (holes in raw). The output goes to
 * a temporary name beside OUT, is fsynced and renamed; on failure it is
 * removed. Sources are only read.
 *
 * Coalesce: CHILD's written sectors into its parent, in place.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vhd/vhd.h"

#define OUT_BLOCK (2u << 20)

/*
 * Stream to disk while writing: start writeback of each 128 MiB as it is
 * written, wait for the previous one and drop it from the page cache. Dirty
 * memory stays bounded, the disk stays busy, and the final fsync is short.
 */
#define WB_CHUNK (128ull << 20)
typedef struct writeback { uint64_t start, end, prev_start, prev_end; } writeback;

static void wb_note(int fd, writeback *w, uint64_t end)
{
	if (end > w->end)
		w->end = end;
	if (w->end - w->start < WB_CHUNK)
		return;
#ifdef SYNC_FILE_RANGE_WRITE
	sync_file_range(fd, (off_t)w->start, (off_t)(w->end - w->start), SYNC_FILE_RANGE_WRITE);
	if (w->prev_end > w->prev_start) {
		sync_file_range(fd, (off_t)w->prev_start, (off_t)(w->prev_end - w->prev_start),
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
		posix_fadvise(fd, (off_t)w->prev_start, (off_t)(w->prev_end - w->prev_start), POSIX_FADV_DONTNEED);
	}
#endif
	w->prev_start = w->start;
	w->prev_end = w->end;
	w->start = w->end;
}

void vhd_flatten_result_free(vhd_flatten_result *r)
{
	free(r->zero_filled);
	r->zero_filled = NULL;
	r->nzero = 0;
}

/* One flatten in progress: the source, the temporary output, one block of memory. */
typedef struct flat {
	vhd_source vs;
	const vhd_flatten_opts *o;
	const char *out;
	char *tmp;
	int fd, created;
	vhd_layout l;            /* the output's layout (also for raw: blocks of OUT_BLOCK) */
	uint8_t *buf;            /* bitmap_bytes + OUT_BLOCK */
	uint32_t *bat;           /* VHD output: host order */
	uint64_t slots;          /* VHD output: blocks written so far */
	writeback wb;
	vhd_flatten_result *r;
} flat;

/* Never replace an existing OUT unless asked, and never a file of the chain being read. */
static int check_out(vhd_file *leaf, const char *out, int overwrite, vhd_err *e)
{
	struct stat ost;
	if (lstat(out, &ost) != 0)
		return 0;
	if (!overwrite) {
		vhd_seterr(e, "EEXIST", "%s: output already exists; refusing to replace it", out);
		return -1;
	}
	for (vhd_file *c = leaf; c; c = c->parent) {
		struct stat cst;
		if (fstat(c->fd, &cst) == 0 && cst.st_dev == ost.st_dev && cst.st_ino == ost.st_ino) {
			vhd_seterr(e, "EINVAL", "%s: output is %s, a file of the chain being flattened", out, c->path);
			return -1;
		}
	}
	return 0;
}

static int make_temp(flat *F, vhd_err *e)
{
	size_t olen = strlen(F->out);
	const char *slash = strrchr(F->out, '/');
	F->tmp = malloc(olen + 32);
	if (F->tmp == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	if (slash)
		snprintf(F->tmp, olen + 32, "%.*s/.%s.salvage-XXXXXX", (int)(slash - F->out), F->out, slash + 1);
	else
		snprintf(F->tmp, olen + 32, ".%s.salvage-XXXXXX", F->out);
	F->fd = mkstemp(F->tmp);
	if (F->fd < 0)
		return vhd_syserr(e, "cannot create temporary output", F->tmp);
	F->created = 1;
	(void)fchmod(F->fd, 0644);
	return 0;
}

/* Block b's content (n bytes, already read into the buffer) into the output, unless all zero. */
static int put_block(flat *F, uint64_t b, size_t n, vhd_err *e)
{
	uint8_t *data = F->buf + F->l.bitmap_bytes;
	if (stream_all_zero(data, n))
		return 0;
	if (F->o->raw) {
		if (vhd_pwrite_all(F->fd, data, n, b * OUT_BLOCK) != 0)
			return vhd_syserr(e, "writing", F->tmp);
		F->r->bytes_written += n;
		wb_note(F->fd, &F->wb, b * OUT_BLOCK + n);
	} else {
		uint64_t at = vhd_layout_slot(&F->l, F->slots);
		vhd_meta_block_bitmap(&F->l, b, F->buf);
		memset(data + n, 0, OUT_BLOCK - n);
		if (vhd_pwrite_all(F->fd, F->buf, (size_t)F->l.bitmap_bytes + OUT_BLOCK, at) != 0)
			return vhd_syserr(e, "writing", F->tmp);
		F->bat[b] = (uint32_t)(at / 512);
		F->slots++;
		F->r->bytes_written += F->l.bitmap_bytes + (uint64_t)OUT_BLOCK;
		wb_note(F->fd, &F->wb, at + F->l.bitmap_bytes + OUT_BLOCK);
	}
	F->r->blocks_written++;
	return 0;
}

static int copy_blocks(flat *F, vhd_err *e)
{
	disk_source *src = &F->vs.src;
	for (uint64_t b = 0; b < F->l.entries; b++) {
		size_t n = (size_t)(F->l.size - b * OUT_BLOCK < OUT_BLOCK ? F->l.size - b * OUT_BLOCK : OUT_BLOCK);
		stream_err se;
		if (!F->o->raw)
			F->bat[b] = VHD_BAT_FREE;
		int a = src->allocated(src->ctx, b, &se);
		if (a > 0 && src->read(src->ctx, b * OUT_BLOCK, n, F->buf + F->l.bitmap_bytes, &se) != 0)
			a = -1;
		if (a < 0) {
			vhd_seterr(e, se.code, "%s", se.msg);
			return -1;
		}
		if (a > 0 && put_block(F, b, n, e) != 0)
			return -1;
		if (F->o->progress && !F->o->progress(F->o->progress_ctx, b * OUT_BLOCK + n, F->l.size)) {
			vhd_seterr(e, "ECANCELED", "flatten of %s cancelled; %s not written", F->vs.leaf->path, F->out);
			return -1;
		}
	}
	return 0;
}

/* Raw: the size; VHD: head (footer copy, header, BAT, batmap) and footer from the builder. */
static int finish_meta(flat *F, vhd_err *e)
{
	if (F->o->raw) {
		if (ftruncate(F->fd, (off_t)F->l.size) != 0)
			return vhd_syserr(e, "setting size", F->tmp);
		return 0;
	}
	vhd_footer f;
	vhd_header h;
	size_t hlen;
	vhd_meta_footer(&f, F->l.size, VHD_DYNAMIC, 0);
	vhd_meta_header(&h, &F->l);
	uint8_t *head = vhd_meta_head(&F->l, &f, &h, F->bat, 1, &hlen);
	if (head == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	int rc = vhd_pwrite_all(F->fd, head, hlen, 0);
	if (rc == 0)
		rc = vhd_pwrite_all(F->fd, head, 512, vhd_layout_slot(&F->l, F->slots));
	free(head);
	if (rc != 0)
		return vhd_syserr(e, "writing metadata", F->tmp);
	F->r->bytes_written += hlen + 512;
	vhd_uuid_str(f.uuid, F->r->uuid);
	return 0;
}

/* fsync, rename over OUT, fsync the directory: the output exists whole or not at all. */
static int commit_out(flat *F, vhd_err *e)
{
	if (fsync(F->fd) != 0)
		return vhd_syserr(e, "fsync", F->tmp);
	int rc = close(F->fd);
	F->fd = -1;
	if (rc != 0)
		return vhd_syserr(e, "close", F->tmp);
	if (rename(F->tmp, F->out) != 0)
		return vhd_syserr(e, "rename to output", F->out);
	const char *slash = strrchr(F->out, '/');
	char *dir = slash ? strndup(F->out, slash == F->out ? 1 : (size_t)(slash - F->out)) : strdup(".");
	int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dir);
	return 0;
}

static int flatten_run(flat *F, vhd_err *e)
{
	if (check_out(F->vs.leaf, F->out, F->o->overwrite, e) != 0 ||
	    vhd_layout_init(&F->l, F->vs.src.size, OUT_BLOCK, 0, e) != 0 || make_temp(F, e) != 0)
		return -1;
	if (posix_memalign((void **)&F->buf, 4096, (size_t)F->l.bitmap_bytes + OUT_BLOCK) != 0)
		F->buf = NULL;
	if (!F->o->raw)
		F->bat = malloc((size_t)F->l.entries * 4 + 4);
	if (F->buf == NULL || (!F->o->raw && F->bat == NULL)) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	for (vhd_file *c = F->vs.leaf; c; c = c->parent)
		posix_fadvise(c->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	int rc = copy_blocks(F, e) == 0 && finish_meta(F, e) == 0 && commit_out(F, e) == 0 ? 0 : -1;
	for (vhd_file *c = F->vs.leaf; c; c = c->parent)
		posix_fadvise(c->fd, 0, 0, POSIX_FADV_NORMAL);
	return rc;
}

int vhd_flatten(vhd_file *leaf, const char *out, const vhd_flatten_opts *o, vhd_flatten_result *r, vhd_err *e)
{
	memset(r, 0, sizeof *r);
	flat F = { .o = o, .out = out, .fd = -1, .r = r };
	if (vhd_source_init(&F.vs, leaf, o->force, e) != 0)
		return -1;
	int rc = flatten_run(&F, e);
	if (rc != 0 && F.fd >= 0)
		close(F.fd);
	if (rc != 0 && F.created)
		unlink(F.tmp); /* gone already when the rename was the last step and succeeded */
	free(F.tmp);
	free(F.buf);
	free(F.bat);
	if (rc == 0) {
		r->virtual_size = F.l.size;
		r->zero_filled = F.vs.rctx.ranges; /* ownership moves to the result */
		r->nzero = F.vs.rctx.nranges;
		F.vs.rctx.ranges = NULL;
	}
	vhd_source_free(&F.vs);
	return rc;
}

/* Coalesce refuses what it must not write from or into. */
static int coalesce_check(vhd_file *child, vhd_err *e)
{
	if (child->footer.disk_type != VHD_DIFF || child->parent == NULL) {
		vhd_seterr(e, "EINVAL", "%s: not a differencing disk with a resolved parent", child->path);
		return -1;
	}
	if (child->has_rd) {
		vhd_seterr(e, "EROFS", "%s: a VHD inside an LVM image is only read; flatten it instead", child->path);
		return -1;
	}
	const vhd_file *where = NULL;
	for (vhd_file *c = child; c; c = c->parent)
		vhd_validate(c);
	const vhd_problem *bp = vhd_chain_blocker(child, 0, &where);
	if (bp) {
		vhd_seterr(e, vhd_problem_errcode(bp), "%s; refusing to coalesce %s", bp->message, child->path);
		return -1;
	}
	return 0;
}

/* The parent opened for writing, grown to the child's size when the child is larger (as
 * XenServer's SM does), with the rest of the chain under it; NULL (nothing written) if not. */
static vhd_file *coalesce_parent(vhd_file *child, vhd_err *e)
{
	vhd_open_opts wo = { .writable = 1 };
	vhd_file *pw = vhd_open(child->parent->path, &wo, e);
	if (pw == NULL)
		return NULL;
	for (size_t i = 0; i < pw->nproblems; i++)
		if (pw->problems[i].severity == VHD_ERROR) {
			vhd_seterr(e, "EDAMAGED", "%s; refusing to write into it", pw->problems[i].message);
			vhd_close(pw);
			return NULL;
		}
	if (child->footer.current_size > pw->footer.current_size &&
	    vhd_grow(pw, child->footer.current_size, e) != 0) {
		char why[512], code[24];
		snprintf(why, sizeof why, "%s", e ? e->msg : "");
		snprintf(code, sizeof code, "%s", e && e->code[0] ? e->code : "EFBIG");
		vhd_seterr(e, code, "%s is larger (%llu bytes) than its parent (%llu bytes) and the parent cannot be "
			   "grown: %.300s; refusing to coalesce (nothing written)", child->path,
			   (unsigned long long)child->footer.current_size,
			   (unsigned long long)child->parent->footer.current_size, why);
		vhd_close(pw);
		return NULL;
	}
	/* partial sectors never occur (whole sectors are copied), but the writer wants the chain */
	if (child->parent->parent) {
		vhd_ref(child->parent->parent);
		pw->parent = child->parent->parent;
		pw->parent_state = 1;
	}
	return pw;
}

/* Copy the sectors block b of the child has (its bitmap's runs) into the parent pw. */
static int coalesce_block(vhd_file *child, vhd_file *pw, uint32_t b, uint8_t *buf, vhd_err *e)
{
	const uint8_t *bm = vhd_block_bitmap(child, b, e);
	if (bm == NULL)
		return -1;
	uint8_t bmc[4096];
	size_t bml = child->bitmap_bytes < sizeof bmc ? child->bitmap_bytes : sizeof bmc;
	memcpy(bmc, bm, bml);
	uint64_t secs = child->spb, first = (uint64_t)b * child->spb;
	uint64_t total = child->footer.current_size / 512, pt = pw->footer.current_size / 512;
	if (first + secs > total)
		secs = total - first;
	for (uint64_t i = 0, j; i < secs; i = j) {
		for (j = i + 1; vhd_bit(bmc, i) && j < secs && vhd_bit(bmc, j); j++)
			;
		uint64_t s = first + i, cnt = j - i;
		if (!vhd_bit(bmc, i) || s >= pt)
			continue;
		if (s + cnt > pt)
			cnt = pt - s;
		uint64_t off = (uint64_t)child->bat[b] * 512 + child->bitmap_bytes + i * 512;
		if (pread(child->fd, buf, cnt * 512, (off_t)off) != (ssize_t)(cnt * 512)) {
			vhd_seterr(e, "EIO", "%s: block %u: short read", child->path, b);
			return -1;
		}
		if (vhd_write(pw, s * 512, buf, cnt * 512, e) != 0)
			return -1;
	}
	return 0;
}

int vhd_coalesce(vhd_file *child, vhd_progress_fn progress, void *pctx, vhd_err *e)
{
	if (coalesce_check(child, e) != 0)
		return -1;
	vhd_file *pw = coalesce_parent(child, e);
	if (pw == NULL)
		return -1;
	uint8_t *buf = malloc(child->header.block_size);
	if (buf == NULL) {
		vhd_close(pw);
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	int rc = 0;
	for (uint32_t b = 0; b < child->bat_entries && rc == 0; b++) {
		if (child->bat[b] != VHD_BAT_FREE)
			rc = coalesce_block(child, pw, b, buf, e);
		if (rc == 0 && progress && !progress(pctx, (uint64_t)(b + 1), child->bat_entries)) {
			vhd_seterr(e, "ECANCELED", "coalesce of %s cancelled part-way: the parent is partly updated",
				   child->path);
			rc = -1;
		}
	}
	free(buf);
	if (vhd_sync(pw, rc == 0 ? e : NULL) != 0)
		rc = -1;
	vhd_close(pw);
	return rc;
}
