/*
 * Creating VHDs and writing into them the way XenServer's blktap does:
 * footer copy at 0, header at 512, BAT at 1536, parent locators (MacX,
 * W2ku, W2ru, relative), block data aligned on 4 KiB, footer at the end.
 * Writes set sector bitmap bits; a partial sector is merged with what the
 * chain holds there, so a differencing child stays exact.
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
#define ALIGN_DATA 4096u

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static void random_uuid(uint8_t u[16])
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, u, 16) : -1;
	if (fd >= 0)
		close(fd);
	if (n != 16) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid() << 40;
		for (int i = 0; i < 16; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			u[i] = (uint8_t)x;
		}
	}
	u[6] = (uint8_t)((u[6] & 0x0F) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3F) | 0x80);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* the last component of path is plain ASCII (what blktap accepts as a parent name) */
static int ascii_name(const char *path)
{
	const char *b = strrchr(path, '/');
	for (const unsigned char *p = (const unsigned char *)(b ? b + 1 : path); *p; p++)
		if (*p >= 0x80)
			return 0;
	return 1;
}

/* Offset for the next block's bitmap so that its data starts on 4 KiB. */
static uint64_t block_slot(uint64_t from, uint32_t bitmap_bytes)
{
	return align_up(from + bitmap_bytes, ALIGN_DATA) - bitmap_bytes;
}

static uint64_t footer_pos(const vhd_file *f)
{
	return f->footer.disk_type == VHD_FIXED ? f->footer.current_size : f->next_free;
}

static int write_footers(vhd_file *f, vhd_err *e)
{
	uint8_t b[512];
	vhd_footer_build(&f->footer, b);
	f->footer.checksum = f->footer.checksum_computed = vhd_checksum(b, 512, 64);
	if (f->footer.disk_type != VHD_FIXED && vhd_pwrite_all(f->fd, b, 512, 0) != 0)
		return vhd_syserr(e, "writing footer copy", f->path);
	if (vhd_pwrite_all(f->fd, b, 512, footer_pos(f)) != 0)
		return vhd_syserr(e, "writing footer", f->path);
	f->file_size = footer_pos(f) + 512;
	f->data_limit = footer_pos(f);
	f->footer_eof_ok = 1;
	f->footer_copy_ok = f->footer.disk_type != VHD_FIXED;
	return 0;
}

/* Relative path from directory FROM (absolute) to file TO (absolute), XenServer style "./x". */
static void rel_path(const char *from, const char *to, char *out, size_t outlen)
{
	char fs[4096];
	snprintf(fs, sizeof fs, "%s%s", from, strcmp(from, "/") == 0 ? "" : "/");
	size_t i = 0, lastsep = 0;
	while (fs[i] && to[i] && fs[i] == to[i]) {
		if (to[i] == '/')
			lastsep = i;
		i++;
	}
	int ups = 0;
	for (size_t k = lastsep + 1; fs[k]; k++)
		if (fs[k] == '/')
			ups++;
	size_t o = 0;
	if (ups == 0)
		o += (size_t)snprintf(out, outlen, "./");
	for (int k = 0; k < ups && o < outlen; k++)
		o += (size_t)snprintf(out + o, outlen - o, "../");
	if (o < outlen)
		snprintf(out + o, outlen - o, "%s", to + lastsep + 1);
}

vhd_file *vhd_create(const char *path, const vhd_create_opts *o, vhd_err *e)
{
	uint32_t bs = o->block_size ? o->block_size : (2u << 20);
	uint32_t type = o->parent ? VHD_DIFF : (o->type ? o->type : VHD_DYNAMIC);
	uint64_t size = o->size;
	vhd_file *parent = NULL;
	char parent_abs[4096] = "", child_dir[4096] = "";
	struct stat pst;
	if (bs < 512 || (bs & (bs - 1)) != 0 || bs > (256u << 20)) {
		vhd_seterr(e, "EINVAL", "%s: block size %u is not a power of two between 512 and 256 MiB", path, bs);
		return NULL;
	}
	/* blktap reads 2 MiB blocks only (larger: libvhd refuses; smaller: reads fail past BAT entry 32) */
	if (bs != (2u << 20) && !o->foreign) {
		vhd_seterr(e, "EINVAL", "%s: block size %u: XenServer uses 2 MiB blocks only and its tools cannot read "
			   "others; ask for a non-XenServer file to use another size", path, bs);
		return NULL;
	}
	if (o->parent) {
		if (o->type && o->type != VHD_DIFF) {
			vhd_seterr(e, "EINVAL", "%s: a parent makes a differencing disk, not %s", path, vhd_type_name(o->type));
			return NULL;
		}
		parent = vhd_open(o->parent, NULL, e);
		if (parent == NULL)
			return NULL;
		if (fstat(parent->fd, &pst) != 0 || realpath(o->parent, parent_abs) == NULL) {
			vhd_syserr(e, "stat parent", o->parent);
			vhd_close(parent);
			return NULL;
		}
		if (size == 0)
			size = parent->footer.current_size;
		if (!ascii_name(parent_abs) && o->strict) {
			vhd_seterr(e, "EINVAL", "%s: parent name %s is not ASCII; XenServer's tools reject such a child "
				   "(\"invalid parent name\")", path, parent_abs);
			vhd_close(parent);
			return NULL;
		}
	}
	if (size == 0 || size % 512 != 0 || size > VHD_MAX_SIZE) {
		vhd_seterr(e, "EINVAL", "%s: size %llu must be a positive multiple of 512 up to 2040 GiB", path,
			   (unsigned long long)size);
		vhd_close(parent);
		return NULL;
	}
	vhd_file *f = calloc(1, sizeof *f);
	if (f == NULL || (f->path = strdup(path)) == NULL) {
		free(f);
		vhd_close(parent);
		vhd_seterr(e, "ENOMEM", "out of memory");
		return NULL;
	}
	f->refs = 1;
	f->writable = 1;
	f->cached_block = -1;
	f->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (f->fd < 0) {
		vhd_syserr(e, "cannot create", path);
		vhd_close(parent);
		f->fd = -1;
		vhd_close(f);
		return NULL;
	}
	vhd_footer *ft = &f->footer;
	memcpy(ft->cookie, "conectix", 9);
	ft->features = 2;
	ft->version = 0x00010000;
	ft->timestamp = (uint32_t)(time(NULL) - VHD_EPOCH);
	/* "tap": what XenServer writes; qemu then trusts current_size rather than CHS. Not for
	 * XenServer: "qem2", qemu's label for the same rule, so blktap applies no "tap" rules to it. */
	memcpy(ft->creator_app, o->foreign ? "qem2" : "tap", 4);
	ft->creator_version = 0x00010003;
	ft->creator_os = 0;
	ft->original_size = ft->current_size = size;
	vhd_geometry(size, &ft->cylinders, &ft->heads, &ft->sectors);
	ft->disk_type = type;
	random_uuid(ft->uuid);
	ft->hidden = (uint8_t)(o->hidden ? 1 : 0);
	if (type == VHD_FIXED) {
		ft->data_offset = VHD_NONE64;
		if (ftruncate(f->fd, (off_t)size) != 0)
			goto syserr;
		f->next_free = size;
	} else {
		vhd_header *h = &f->header;
		f->has_header = 1;
		ft->data_offset = 512;
		memcpy(h->cookie, "cxsparse", 9);
		h->data_offset = VHD_NONE64;
		h->table_offset = 1536;
		h->version = 0x00010000;
		h->block_size = bs;
		f->spb = bs / 512;
		f->bitmap_bytes = ((f->spb + 7) / 8 + 511) / 512 * 512;
		f->bat_entries = (uint32_t)((size + bs - 1) / bs);
		h->max_bat_entries = f->bat_entries;
		uint64_t batbytes = align_up((uint64_t)f->bat_entries * 4, 512);
		uint64_t next = h->table_offset + batbytes;
		f->bat = malloc((size_t)f->bat_entries * 4 + 4);
		f->bad_block = calloc((size_t)f->bat_entries + 1, 1);
		f->cached_bitmap = malloc(f->bitmap_bytes);
		if (!f->bat || !f->bad_block || !f->cached_bitmap) {
			vhd_seterr(e, "ENOMEM", "out of memory");
			goto fail;
		}
		memset(f->bat, 0xFF, (size_t)f->bat_entries * 4);
		/* the on-disk BAT: all 0xFF, written in chunks */
		uint8_t chunk[65536];
		memset(chunk, 0xFF, sizeof chunk);
		uint64_t left = (uint64_t)f->bat_entries * 4;
		for (uint64_t off = 0; off < left; off += sizeof chunk) {
			size_t n = left - off < sizeof chunk ? (size_t)(left - off) : sizeof chunk;
			if (vhd_pwrite_all(f->fd, chunk, n, h->table_offset + off) != 0)
				goto syserr;
		}
		if (batbytes > left) {
			uint8_t zero[512] = { 0 };
			if (vhd_pwrite_all(f->fd, zero, (size_t)(batbytes - left), h->table_offset + left) != 0)
				goto syserr;
		}
		/* XenServer's batmap right after the BAT: tapdisk expects one from a "tap" 1.3 file */
		if (!o->foreign) {
			vhd_batmap *bm = &f->batmap;
			uint64_t mapbytes = align_up(((uint64_t)f->bat_entries + 7) / 8, 512);
			bm->present = 1;
			bm->hdr_offset = next;
			bm->offset = next + 512;
			bm->size_sectors = (uint32_t)(mapbytes / 512);
			bm->version = 0x00010002;
			bm->checksum = bm->checksum_computed = 0xFFFFFFFFu; /* ~sum of an all-zero map */
			bm->map = calloc(1, mapbytes);
			if (bm->map == NULL) {
				vhd_seterr(e, "ENOMEM", "out of memory");
				goto fail;
			}
			uint8_t bh[512];
			vhd_batmap_header_build(bm, bh);
			if (vhd_pwrite_all(f->fd, bh, 512, bm->hdr_offset) != 0)
				goto syserr;
			for (uint64_t off = 0; off < mapbytes; off += 512) {
				uint8_t zero[512] = { 0 };
				if (vhd_pwrite_all(f->fd, zero, 512, bm->offset + off) != 0)
					goto syserr;
			}
			next = bm->offset + mapbytes;
		}
		if (parent) {
			memcpy(h->parent_uuid, parent->footer.uuid, 16);
			h->parent_timestamp = (uint32_t)((int64_t)pst.st_mtime - VHD_EPOCH);
			const char *pb = strrchr(parent_abs, '/');
			snprintf(h->parent_name, sizeof h->parent_name, "%s", pb ? pb + 1 : parent_abs);
			/* child directory, absolute, for relative locators */
			char *slash = strrchr(path, '/');
			char tmp[4096];
			if (slash)
				snprintf(tmp, sizeof tmp, "%.*s", slash == path ? 1 : (int)(slash - path), path);
			else
				snprintf(tmp, sizeof tmp, ".");
			if (realpath(tmp, child_dir) == NULL)
				goto syserr;
			char rel[4096];
			rel_path(child_dir, parent_abs, rel, sizeof rel);
			static const char *codes[] = { "MacX", "W2ku", "W2ru" };
			for (int i = 0; i < 3; i++) {
				uint8_t data[1024];
				size_t len;
				memset(data, 0, sizeof data);
				if (i == 0) {
					len = (size_t)snprintf((char *)data, sizeof data, "file://%s", rel);
					if (len >= sizeof data)
						len = sizeof data - 1;
				} else {
					char win[4096];
					snprintf(win, sizeof win, "%s", rel);
					for (char *p = win; *p; p++)
						if (*p == '/')
							*p = '\\';
					len = vhd_utf16_encode(win, data, sizeof data, 0);
				}
				uint32_t space = (uint32_t)align_up(len ? len : 1, 512);
				memcpy(h->loc[i].code, codes[i], 5);
				h->loc[i].data_space = space; /* bytes, as XenServer writes it */
				h->loc[i].data_length = (uint32_t)len;
				h->loc[i].data_offset = next;
				if (vhd_pwrite_all(f->fd, data, space, next) != 0)
					goto syserr;
				next += space;
			}
		}
		uint8_t hb[1024];
		vhd_header_build(h, hb);
		f->header.checksum = f->header.checksum_computed = vhd_checksum(hb, 1024, 36);
		if (vhd_pwrite_all(f->fd, hb, 1024, 512) != 0)
			goto syserr;
		f->next_free = block_slot(next, f->bitmap_bytes);
	}
	if (write_footers(f, e) != 0)
		goto fail;
	if (parent && !ascii_name(parent_abs))
		vhd_problem_add(f, VHD_WARNING, 0, "PARENT_NAME_NOT_ASCII", -1,
				"%s: parent name %s is not ASCII: XenServer's tools reject this child (\"invalid parent "
				"name\"); salvage reads it", path, strrchr(parent_abs, '/') + 1);
	if (parent) {
		f->parent = parent;
		f->parent_state = 1;
	} else {
		f->parent_state = 1;
	}
	return f;
syserr:
	vhd_syserr(e, "writing", path);
fail:
	unlink(path);
	vhd_close(parent);
	vhd_close(f);
	return NULL;
}

/* Writable handle on an existing file: where the next block goes. */
static void writer_init(vhd_file *f)
{
	if (f->next_free)
		return;
	uint64_t end = f->footer_eof_ok ? f->file_size - 512 : f->file_size;
	for (uint32_t i = 0; i < f->bat_entries; i++)
		if (f->bat[i] != VHD_BAT_FREE) {
			uint64_t be = (uint64_t)f->bat[i] * 512 + f->bitmap_bytes + f->header.block_size;
			if (be > end)
				end = be;
		}
	f->next_free = block_slot(end, f->bitmap_bytes);
}

static int alloc_block(vhd_file *f, uint32_t b, vhd_err *e)
{
	uint64_t start = f->next_free;
	if (start / 512 >= VHD_BAT_FREE) {
		vhd_seterr(e, "EFBIG", "%s: file would exceed the VHD limit", f->path);
		return -1;
	}
	uint64_t end = start + f->bitmap_bytes + f->header.block_size;
	uint8_t *zero = calloc(1, f->bitmap_bytes);
	if (zero == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	int rc = vhd_pwrite_all(f->fd, zero, f->bitmap_bytes, start);
	free(zero);
	if (rc != 0)
		return vhd_syserr(e, "writing bitmap", f->path);
	/* the data area reads as zeros until written (the old footer there is overwritten below) */
	if (f->file_size > start + f->bitmap_bytes) {
		uint64_t clear_to = f->file_size < end ? f->file_size : end;
		uint8_t z[512] = { 0 };
		for (uint64_t off = start + f->bitmap_bytes; off < clear_to; off += 512)
			if (vhd_pwrite_all(f->fd, z, 512, off) != 0)
				return vhd_syserr(e, "clearing block", f->path);
	}
	f->next_free = block_slot(end, f->bitmap_bytes);
	if (ftruncate(f->fd, (off_t)f->next_free) != 0)
		return vhd_syserr(e, "extending", f->path);
	uint8_t be[4];
	put32(be, (uint32_t)(start / 512));
	if (vhd_pwrite_all(f->fd, be, 4, f->header.table_offset + 4ull * b) != 0)
		return vhd_syserr(e, "writing BAT", f->path);
	f->bat[b] = (uint32_t)(start / 512);
	if (write_footers(f, e) != 0)
		return -1;
	f->cached_block = -1;
	return 0;
}

/* A block whose sectors are now all written gets its batmap bit, as tapdisk does. */
static int batmap_update(vhd_file *f, uint32_t b, const uint8_t *bitmap, vhd_err *e)
{
	vhd_batmap *bm = &f->batmap;
	if (!bm->present || bm->map == NULL || vhd_bit(bm->map, b))
		return 0;
	if (!vhd_block_full(bitmap, b, f->spb, f->footer.current_size / 512))
		return 0;
	uint8_t old = bm->map[b / 8];
	vhd_setbit(bm->map, b);
	uint32_t sum = ~bm->checksum + (uint32_t)bm->map[b / 8] - old;
	bm->checksum = ~sum;
	bm->checksum_computed = bm->checksum;
	uint8_t cs[4];
	put32(cs, bm->checksum);
	if (vhd_pwrite_all(f->fd, bm->map + b / 8, 1, bm->offset + b / 8) != 0 ||
	    vhd_pwrite_all(f->fd, cs, 4, bm->hdr_offset + 24) != 0)
		return vhd_syserr(e, "writing batmap", f->path);
	return 0;
}

int vhd_write(vhd_file *f, uint64_t off, const uint8_t *data, uint64_t len, vhd_err *e)
{
	if (!f->writable) {
		vhd_seterr(e, "EROFS", "%s: handle is read-only", f->path);
		return -1;
	}
	if (off > f->footer.current_size || len > f->footer.current_size - off) {
		vhd_seterr(e, "EINVAL", "%s: write of %llu bytes at %llu goes past the virtual size %llu", f->path,
			   (unsigned long long)len, (unsigned long long)off, (unsigned long long)f->footer.current_size);
		return -1;
	}
	if (len == 0)
		return 0;
	if (f->footer.disk_type == VHD_FIXED) {
		if (vhd_pwrite_all(f->fd, data, (size_t)len, off) != 0)
			return vhd_syserr(e, "writing", f->path);
		return 0;
	}
	writer_init(f);
	uint64_t bs = f->header.block_size;
	while (len > 0) {
		uint32_t b = (uint32_t)(off / bs);
		uint64_t bo = off % bs;
		uint64_t n = bs - bo;
		if (n > len)
			n = len;
		if (f->bad_block[b]) {
			vhd_seterr(e, "EBAT", "%s: block %u is damaged; refusing to write into it", f->path, b);
			return -1;
		}
		uint64_t s0 = bo / 512, s1 = (bo + n - 1) / 512;
		uint64_t nsec = s1 - s0 + 1;
		uint64_t vsec0 = (uint64_t)b * f->spb + s0;
		const uint8_t *src = data;
		uint8_t *tmp = NULL;
		if (bo % 512 != 0 || (bo + n) % 512 != 0) {
			tmp = malloc(nsec * 512);
			if (tmp == NULL) {
				vhd_seterr(e, "ENOMEM", "out of memory");
				return -1;
			}
			/* current content of the partial edge sectors, through the chain */
			if (vhd_read_sectors(f, vsec0, 1, tmp, e) != 0 ||
			    (nsec > 1 && vhd_read_sectors(f, vsec0 + nsec - 1, 1, tmp + (nsec - 1) * 512, e) != 0)) {
				free(tmp);
				return -1;
			}
			memcpy(tmp + (bo - s0 * 512), data, n);
			src = tmp;
		}
		if (f->bat[b] == VHD_BAT_FREE && alloc_block(f, b, e) != 0) {
			free(tmp);
			return -1;
		}
		uint64_t bstart = (uint64_t)f->bat[b] * 512;
		int rc = vhd_pwrite_all(f->fd, src, nsec * 512, bstart + f->bitmap_bytes + s0 * 512);
		free(tmp);
		if (rc != 0)
			return vhd_syserr(e, "writing data", f->path);
		const uint8_t *cur = vhd_block_bitmap(f, b, e);
		if (cur == NULL)
			return -1;
		uint8_t *bm = f->cached_bitmap;
		uint64_t lo = s0 / 8, hi = s1 / 8;
		for (uint64_t s = s0; s <= s1; s++)
			vhd_setbit(bm, s);
		if (vhd_pwrite_all(f->fd, bm + lo, hi - lo + 1, bstart + lo) != 0)
			return vhd_syserr(e, "writing bitmap", f->path);
		if (batmap_update(f, b, bm, e) != 0)
			return -1;
		off += n;
		data += n;
		len -= n;
	}
	return 0;
}

int vhd_set_hidden(vhd_file *f, int hidden, vhd_err *e)
{
	if (!f->writable) {
		vhd_seterr(e, "EROFS", "%s: handle is read-only", f->path);
		return -1;
	}
	if (f->footer.disk_type != VHD_FIXED)
		writer_init(f);
	f->footer.hidden = (uint8_t)(hidden ? 1 : 0);
	return write_footers(f, e);
}

int vhd_sync(vhd_file *f, vhd_err *e)
{
	if (f->writable && fsync(f->fd) != 0)
		return vhd_syserr(e, "fsync", f->path);
	return 0;
}

/* Largest virtual size a dynamic file's BAT (and batmap) can describe; 0 for fixed disks. */
uint64_t vhd_max_growth(const vhd_file *f)
{
	if (!f->has_header)
		return 0;
	uint64_t max = (uint64_t)f->header.max_bat_entries * f->header.block_size;
	if (f->batmap.present && f->batmap.map) {
		uint64_t bits = (uint64_t)f->batmap.size_sectors * 512 * 8 * f->header.block_size;
		if (bits < max)
			max = bits;
	}
	return max < VHD_MAX_SIZE ? max : VHD_MAX_SIZE;
}

/* Grow the virtual size in place, as XenServer's storage manager does before coalescing a
 * larger child: only the footer changes, plus BAT entries (already free) that come into use. */
int vhd_grow(vhd_file *f, uint64_t size, vhd_err *e)
{
	if (!f->writable) {
		vhd_seterr(e, "EROFS", "%s: handle is read-only", f->path);
		return -1;
	}
	if (size == f->footer.current_size)
		return 0;
	if (size < f->footer.current_size || size % 512 != 0) {
		vhd_seterr(e, "EINVAL", "%s: cannot grow from %llu to %llu bytes", f->path,
			   (unsigned long long)f->footer.current_size, (unsigned long long)size);
		return -1;
	}
	if (size > vhd_max_growth(f)) {
		vhd_seterr(e, "EFBIG", "%s: %s holds at most %llu bytes; growing it to %llu bytes would need a new "
			   "BAT", f->path, f->has_header ? "its BAT" : "a fixed disk", (unsigned long long)vhd_max_growth(f),
			   (unsigned long long)size);
		return -1;
	}
	uint32_t need = (uint32_t)((size + f->header.block_size - 1) / f->header.block_size);
	uint32_t *bat = realloc(f->bat, (size_t)need * 4);
	if (bat)
		f->bat = bat;
	uint8_t *bad = bat ? realloc(f->bad_block, need) : NULL;
	if (bad == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	f->bad_block = bad;
	writer_init(f);
	uint8_t ff[4] = { 0xFF, 0xFF, 0xFF, 0xFF };
	for (uint32_t i = f->bat_entries; i < need; i++) {
		if (vhd_pwrite_all(f->fd, ff, 4, f->header.table_offset + 4ull * i) != 0)
			return vhd_syserr(e, "writing BAT", f->path);
		f->bat[i] = VHD_BAT_FREE;
		f->bad_block[i] = VHD_BAD_NONE;
	}
	f->bat_entries = need;
	f->footer.current_size = size;
	vhd_geometry(size, &f->footer.cylinders, &f->footer.heads, &f->footer.sectors);
	return write_footers(f, e);
}
