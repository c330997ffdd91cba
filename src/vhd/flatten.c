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

#define VHD_EPOCH 946684800
#define OUT_BLOCK (2u << 20)

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/*
 * Stream to disk while writing: start writeback of each 32 MiB as it is
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

static int all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *q = (const uint64_t *)p;
	size_t k = n / 8;
	for (size_t i = 0; i < k; i++)
		if (q[i])
			return 0;
	for (size_t i = k * 8; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Does any file of the chain hold data (or damage) for these sectors? */
static int chain_touches(const vhd_file *f, uint64_t sec, uint64_t cnt)
{
	for (; f; f = f->parent) {
		uint64_t total = f->footer.current_size / 512;
		if (f->footer.disk_type == VHD_FIXED)
			return sec < total;
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

static void make_uuid(uint8_t u[16])
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, u, 16) : -1;
	if (fd >= 0)
		close(fd);
	if (n != 16) {
		uint64_t x = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)u;
		for (int i = 0; i < 16; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			u[i] = (uint8_t)x;
		}
	}
	u[6] = (uint8_t)((u[6] & 0x0F) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3F) | 0x80);
}

void vhd_flatten_result_free(vhd_flatten_result *r)
{
	free(r->zero_filled);
	r->zero_filled = NULL;
	r->nzero = 0;
}

int vhd_flatten(vhd_file *leaf, const char *out, const vhd_flatten_opts *o, vhd_flatten_result *r, vhd_err *e)
{
	memset(r, 0, sizeof *r);
	for (vhd_file *c = leaf; c; c = c->parent)
		vhd_validate(c);
	const vhd_file *where = NULL;
	const vhd_problem *bp = vhd_chain_blocker(leaf, o->force, &where);
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
	struct stat ost;
	if (lstat(out, &ost) == 0) {
		if (!o->overwrite) {
			vhd_seterr(e, "EEXIST", "%s: output already exists; refusing to replace it", out);
			return -1;
		}
		/* never replace a file of the chain being read */
		for (vhd_file *c = leaf; c; c = c->parent) {
			struct stat cst;
			if (fstat(c->fd, &cst) == 0 && cst.st_dev == ost.st_dev && cst.st_ino == ost.st_ino) {
				vhd_seterr(e, "EINVAL", "%s: output is %s, a file of the chain being flattened", out, c->path);
				return -1;
			}
		}
	}
	uint64_t size = leaf->footer.current_size;
	uint64_t total = size / 512;
	uint32_t spb = OUT_BLOCK / 512;
	uint32_t bmbytes = 512;
	uint64_t entries = (size + OUT_BLOCK - 1) / OUT_BLOCK;
	size_t olen = strlen(out);
	char *tmp = malloc(olen + 32);
	if (tmp == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	const char *slash = strrchr(out, '/');
	if (slash)
		snprintf(tmp, olen + 32, "%.*s/.%s.salvage-XXXXXX", (int)(slash - out), out, slash + 1);
	else
		snprintf(tmp, olen + 32, ".%s.salvage-XXXXXX", out);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		vhd_syserr(e, "cannot create temporary output", tmp);
		free(tmp);
		return -1;
	}
	(void)fchmod(fd, 0644);
	uint8_t *buf = NULL;
	uint32_t *bat = NULL;
	uint8_t *batmap = NULL;
	vhd_rctx ctx = { .force = o->force, .e = e };
	if (posix_memalign((void **)&buf, 4096, (size_t)bmbytes + OUT_BLOCK) != 0)
		buf = NULL;
	if (!o->raw)
		bat = malloc(entries * 4 + 4);
	if (buf == NULL || (!o->raw && bat == NULL)) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		goto fail;
	}
	for (vhd_file *c = leaf; c; c = c->parent)
		posix_fadvise(c->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	uint8_t *bitmap = buf, *data = buf + bmbytes;
	writeback wb = { 0 };
	uint64_t batpad = align_up(entries * 4, 512);
	/* XenServer layout: BAT, batmap header, batmap, then blocks with data on 4 KiB */
	uint64_t mapbytes = align_up((entries + 7) / 8, 512);
	if (mapbytes == 0)
		mapbytes = 512;
	uint64_t next = align_up(1536 + batpad + 512 + mapbytes + bmbytes, 4096) - bmbytes;
	if (!o->raw && (batmap = calloc(1, mapbytes)) == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		goto fail;
	}
	for (uint64_t b = 0; b < entries; b++) {
		uint64_t s0 = b * spb;
		uint64_t n = total - s0 < spb ? total - s0 : spb;
		if (!o->raw)
			bat[b] = VHD_BAT_FREE;
		if (chain_touches(leaf, s0, n)) {
			if (vhd_read_sectors_ctx(leaf, s0, n, data, &ctx) != 0)
				goto fail;
			if (!all_zero(data, n * 512)) {
				if (o->raw) {
					if (vhd_pwrite_all(fd, data, n * 512, s0 * 512) != 0) {
						vhd_syserr(e, "writing", tmp);
						goto fail;
					}
					r->bytes_written += n * 512;
					wb_note(fd, &wb, (s0 + n) * 512);
				} else {
					memset(bitmap, 0, bmbytes);
					memset(bitmap, 0xFF, n / 8);
					for (uint64_t s = n / 8 * 8; s < n; s++)
						vhd_setbit(bitmap, s);
					if (n < spb)
						memset(data + n * 512, 0, (spb - n) * 512);
					if (vhd_pwrite_all(fd, buf, bmbytes + (size_t)OUT_BLOCK, next) != 0) {
						vhd_syserr(e, "writing", tmp);
						goto fail;
					}
					bat[b] = (uint32_t)(next / 512);
					vhd_setbit(batmap, b); /* every sector of the block is written */
					wb_note(fd, &wb, next + bmbytes + OUT_BLOCK);
					next = align_up(next + bmbytes + OUT_BLOCK + bmbytes, 4096) - bmbytes;
					r->bytes_written += bmbytes + (uint64_t)OUT_BLOCK;
				}
				r->blocks_written++;
			}
		}
		if (o->progress) {
			uint64_t done = (s0 + n) * 512;
			if (!o->progress(o->progress_ctx, done, size)) {
				vhd_seterr(e, "ECANCELED", "flatten of %s cancelled; %s not written", leaf->path, out);
				goto fail;
			}
		}
	}
	if (o->raw) {
		if (ftruncate(fd, (off_t)size) != 0) {
			vhd_syserr(e, "setting size", tmp);
			goto fail;
		}
	} else {
		/* BAT in big-endian, written from the block buffer in chunks */
		for (uint64_t i = 0; i < entries;) {
			uint64_t k = 0;
			uint64_t max = ((uint64_t)bmbytes + OUT_BLOCK) / 4;
			memset(buf, 0xFF, (size_t)bmbytes + OUT_BLOCK);
			for (; k < max && i + k < entries; k++) {
				uint32_t v = bat[i + k];
				uint8_t *p = buf + 4 * k;
				p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
			}
			uint64_t bytes = 4 * k;
			if (i + k >= entries)
				bytes = align_up(bytes, 512); /* padding stays 0xFF-free below */
			if (i + k >= entries)
				memset(buf + 4 * k, 0, (size_t)(bytes - 4 * k));
			if (vhd_pwrite_all(fd, buf, (size_t)bytes, 1536 + 4 * i) != 0) {
				vhd_syserr(e, "writing BAT", tmp);
				goto fail;
			}
			i += k;
		}
		vhd_batmap bm;
		memset(&bm, 0, sizeof bm);
		bm.offset = 1536 + batpad + 512;
		bm.size_sectors = (uint32_t)(mapbytes / 512);
		bm.version = 0x00010002;
		uint32_t sum = 0;
		for (uint64_t i = 0; i < mapbytes; i++)
			sum += batmap[i];
		bm.checksum = ~sum;
		uint8_t bh[512];
		vhd_batmap_header_build(&bm, bh);
		if (vhd_pwrite_all(fd, bh, 512, 1536 + batpad) != 0 || vhd_pwrite_all(fd, batmap, (size_t)mapbytes, bm.offset) != 0) {
			vhd_syserr(e, "writing batmap", tmp);
			goto fail;
		}
		r->bytes_written += 512 + mapbytes;
		vhd_header h;
		memset(&h, 0, sizeof h);
		memcpy(h.cookie, "cxsparse", 9);
		h.data_offset = VHD_NONE64;
		h.table_offset = 1536;
		h.version = 0x00010000;
		h.max_bat_entries = (uint32_t)entries;
		h.block_size = OUT_BLOCK;
		uint8_t hb[1024];
		vhd_header_build(&h, hb);
		vhd_footer f;
		memset(&f, 0, sizeof f);
		memcpy(f.cookie, "conectix", 9);
		f.features = 2;
		f.version = 0x00010000;
		f.data_offset = 512;
		f.timestamp = (uint32_t)(time(NULL) - VHD_EPOCH);
		memcpy(f.creator_app, "tap", 4);
		f.creator_version = 0x00010003;
		f.original_size = f.current_size = size;
		vhd_geometry(size, &f.cylinders, &f.heads, &f.sectors);
		f.disk_type = VHD_DYNAMIC;
		make_uuid(f.uuid);
		f.hidden = 0;
		uint8_t fb[512];
		vhd_footer_build(&f, fb);
		vhd_uuid_str(f.uuid, r->uuid);
		if (vhd_pwrite_all(fd, hb, 1024, 512) != 0 || vhd_pwrite_all(fd, fb, 512, 0) != 0 || vhd_pwrite_all(fd, fb, 512, next) != 0) {
			vhd_syserr(e, "writing metadata", tmp);
			goto fail;
		}
		r->bytes_written += 512 * 3 + batpad + 512;
	}
	if (fsync(fd) != 0) {
		vhd_syserr(e, "fsync", tmp);
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		vhd_syserr(e, "close", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, out) != 0) {
		vhd_syserr(e, "rename to output", out);
		goto fail;
	}
	{
		char *dir = slash ? strndup(out, slash == out ? 1 : (size_t)(slash - out)) : strdup(".");
		int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		free(dir);
	}
	for (vhd_file *c = leaf; c; c = c->parent)
		posix_fadvise(c->fd, 0, 0, POSIX_FADV_NORMAL);
	free(buf);
	free(bat);
	free(batmap);
	free(tmp);
	r->virtual_size = size;
	r->zero_filled = ctx.ranges;
	r->nzero = ctx.nranges;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	free(buf);
	free(bat);
	free(batmap);
	free(ctx.ranges);
	return -1;
}

int vhd_coalesce(vhd_file *child, vhd_progress_fn progress, void *pctx, vhd_err *e)
{
	if (child->footer.disk_type != VHD_DIFF || child->parent == NULL) {
		vhd_seterr(e, "EINVAL", "%s: not a differencing disk with a resolved parent", child->path);
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
	vhd_open_opts wo = { .writable = 1 };
	vhd_file *pw = vhd_open(child->parent->path, &wo, e);
	if (pw == NULL)
		return -1;
	if (memcmp(pw->footer.uuid, child->parent->footer.uuid, 16) != 0 || pw->nproblems) {
		for (size_t i = 0; i < pw->nproblems; i++)
			if (pw->problems[i].severity == VHD_ERROR) {
				vhd_seterr(e, "EDAMAGED", "%s; refusing to write into it", pw->problems[i].message);
				vhd_close(pw);
				return -1;
			}
	}
	/* partial sectors never occur (whole sectors are copied), but the writer wants the chain */
	if (child->parent->parent) {
		vhd_ref(child->parent->parent);
		pw->parent = child->parent->parent;
		pw->parent_state = 1;
	}
	uint8_t *buf = malloc(child->header.block_size);
	if (buf == NULL) {
		vhd_close(pw);
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	int rc = 0;
	for (uint32_t b = 0; b < child->bat_entries && rc == 0; b++) {
		if (child->bat[b] != VHD_BAT_FREE) {
			const uint8_t *bm = vhd_block_bitmap(child, b, e);
			if (bm == NULL) {
				rc = -1;
				break;
			}
			uint8_t bmc[4096];
			size_t bml = child->bitmap_bytes < sizeof bmc ? child->bitmap_bytes : sizeof bmc;
			memcpy(bmc, bm, bml);
			uint64_t secs = child->spb;
			uint64_t first = (uint64_t)b * child->spb;
			uint64_t total = child->footer.current_size / 512;
			if (first + secs > total)
				secs = total - first;
			uint64_t pt = pw->footer.current_size / 512;
			uint64_t i = 0;
			while (i < secs && rc == 0) {
				if (!vhd_bit(bmc, i)) {
					i++;
					continue;
				}
				uint64_t j = i + 1;
				while (j < secs && vhd_bit(bmc, j))
					j++;
				uint64_t s = first + i, cnt = j - i;
				if (s < pt) {
					if (s + cnt > pt)
						cnt = pt - s;
					uint64_t off = (uint64_t)child->bat[b] * 512 + child->bitmap_bytes + i * 512;
					ssize_t got = pread(child->fd, buf, cnt * 512, (off_t)off);
					if (got != (ssize_t)(cnt * 512)) {
						vhd_seterr(e, "EIO", "%s: block %u: short read", child->path, b);
						rc = -1;
					} else if (vhd_write(pw, s * 512, buf, cnt * 512, e) != 0) {
						rc = -1;
					}
				}
				i = j;
			}
		}
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
