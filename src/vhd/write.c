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
	return vhd_align_up(from + bitmap_bytes, VHD_DATA_ALIGN) - bitmap_bytes;
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
	if (snprintf(fs, sizeof fs, "%s%s", from, strcmp(from, "/") == 0 ? "" : "/") >= (int)sizeof fs) {
		snprintf(out, outlen, "%s", to); /* no common prefix can be found: absolute */
		return;
	}
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

/* The parent's name and its three locators (MacX, W2ku, W2ru), relative to the child's directory. */
typedef struct parent_ref {
	vhd_file *f;
	struct stat st;
	char abs[4096];
	uint8_t data[3][1024];
	uint32_t len[3], space[3];
	uint64_t bytes;           /* locator space in all */
} parent_ref;

static int parent_locators(parent_ref *p, const char *path, vhd_err *e)
{
	char dir[4096], child_dir[4096], rel[4096];
	const char *slash = strrchr(path, '/');
	if (slash)
		snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	else
		snprintf(dir, sizeof dir, ".");
	if (realpath(dir, child_dir) == NULL)
		return vhd_syserr(e, "resolving the directory", path);
	rel_path(child_dir, p->abs, rel, sizeof rel);
	for (int i = 0; i < 3; i++) {
		size_t len;
		memset(p->data[i], 0, sizeof p->data[i]);
		if (i == 0) {
			len = (size_t)snprintf((char *)p->data[i], sizeof p->data[i], "file://%s", rel);
			if (len >= sizeof p->data[i])
				len = sizeof p->data[i] - 1;
		} else {
			char win[4096];
			snprintf(win, sizeof win, "%s", rel);
			for (char *c = win; *c; c++)
				if (*c == '/')
					*c = '\\';
			len = vhd_utf16_encode(win, p->data[i], sizeof p->data[i], 0);
		}
		p->len[i] = (uint32_t)len;
		p->space[i] = (uint32_t)vhd_align_up(len ? len : 1, 512);
		p->bytes += p->space[i];
	}
	return 0;
}

static int parent_open(parent_ref *p, const char *parent, const char *path, vhd_err *e)
{
	p->f = vhd_open(parent, NULL, e);
	if (p->f == NULL)
		return -1;
	if (fstat(p->f->fd, &p->st) != 0 || realpath(parent, p->abs) == NULL)
		return vhd_syserr(e, "stat parent", parent);
	return parent_locators(p, path, e);
}

/* Name the parent in the header and place its locators at l->locators. */
static void header_parent(vhd_header *h, const parent_ref *p, const vhd_layout *l)
{
	static const char *codes[] = { "MacX", "W2ku", "W2ru" };
	memcpy(h->parent_uuid, p->f->footer.uuid, 16);
	h->parent_timestamp = (uint32_t)((int64_t)p->st.st_mtime - VHD_EPOCH);
	const char *pb = strrchr(p->abs, '/');
	if (snprintf(h->parent_name, sizeof h->parent_name, "%s", pb ? pb + 1 : p->abs) >= (int)sizeof h->parent_name)
		h->parent_name[sizeof h->parent_name - 1] = '\0'; /* a base name is < 256 bytes on Linux */
	uint64_t next = l->locators;
	for (int i = 0; i < 3; i++) {
		memcpy(h->loc[i].code, codes[i], 5);
		h->loc[i].data_space = p->space[i]; /* bytes, as XenServer writes it */
		h->loc[i].data_length = p->len[i];
		h->loc[i].data_offset = next;
		next += p->space[i];
	}
}

/* In-memory state of an empty dynamic or differencing file, and its metadata on disk. */
static int create_sparse(vhd_file *f, const vhd_layout *l, const parent_ref *p, int foreign, vhd_err *e)
{
	vhd_header *h = &f->header;
	f->has_header = 1;
	vhd_meta_header(h, l);
	if (p->f)
		header_parent(h, p, l);
	f->spb = l->spb;
	f->bitmap_bytes = l->bitmap_bytes;
	f->bat_entries = l->entries;
	vhd_meta_batmap(&f->batmap, l);
	f->bat = malloc((size_t)l->entries * 4 + 4);
	f->bad_block = calloc((size_t)l->entries + 1, 1);
	f->cached_bitmap = malloc(f->bitmap_bytes);
	f->batmap.map = calloc(1, (size_t)l->batmap_bytes);
	size_t hlen = 0;
	uint8_t *head = NULL;
	if (f->bat && f->bad_block && f->cached_bitmap && f->batmap.map)
		head = vhd_meta_head(l, &f->footer, h, NULL, 0, &hlen);
	if (head == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	memset(f->bat, 0xFF, (size_t)l->entries * 4);
	if (foreign) { /* not for XenServer: no batmap (its place stays zero) */
		memset(head + l->batmap_hdr, 0, 512);
		free(f->batmap.map);
		memset(&f->batmap, 0, sizeof f->batmap);
	}
	uint8_t hb[1024];
	vhd_header_build(h, hb);
	f->header.checksum = f->header.checksum_computed = vhd_checksum(hb, 1024, 36);
	/* the head, then locators over its zero tail (the first block slot lies past both) */
	int rc = vhd_pwrite_all(f->fd, head, hlen, 0);
	free(head);
	for (int i = 0; i < 3 && rc == 0 && p->f; i++)
		rc = vhd_pwrite_all(f->fd, p->data[i], p->space[i], h->loc[i].data_offset);
	if (rc != 0)
		return vhd_syserr(e, "writing", f->path);
	f->next_free = l->first_block;
	return 0;
}

static vhd_file *file_new(const char *path, vhd_err *e)
{
	vhd_file *f = calloc(1, sizeof *f);
	if (f == NULL || (f->path = strdup(path)) == NULL) {
		free(f);
		vhd_seterr(e, "ENOMEM", "out of memory");
		return NULL;
	}
	f->refs = 1;
	f->writable = 1;
	f->cached_block = -1;
	f->parent_state = 1;
	f->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (f->fd < 0) {
		vhd_syserr(e, "cannot create", path);
		vhd_close(f);
		return NULL;
	}
	return f;
}

/* Size and type from the options and the parent; 0 or -1 with e filled. */
static int create_shape(const char *path, const vhd_create_opts *o, const parent_ref *p, uint64_t *size,
			uint32_t *type, vhd_err *e)
{
	*type = o->parent ? VHD_DIFF : (o->type ? o->type : VHD_DYNAMIC);
	if (o->parent && o->type && o->type != VHD_DIFF) {
		vhd_seterr(e, "EINVAL", "%s: a parent makes a differencing disk, not %s", path, vhd_type_name(o->type));
		return -1;
	}
	*size = o->size ? o->size : (p->f ? p->f->footer.current_size : 0);
	if (*size == 0 || *size % 512 != 0 || *size > VHD_MAX_SIZE) {
		vhd_seterr(e, "EINVAL", "%s: size %llu must be a positive multiple of 512 up to 2040 GiB", path,
			   (unsigned long long)*size);
		return -1;
	}
	return 0;
}

vhd_file *vhd_create(const char *path, const vhd_create_opts *o, vhd_err *e)
{
	uint32_t bs = o->block_size ? o->block_size : (2u << 20), type;
	uint64_t size;
	parent_ref p = { 0 };
	vhd_layout l;
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
	if ((o->parent && !(o->type && o->type != VHD_DIFF) && parent_open(&p, o->parent, path, e) != 0) ||
	    create_shape(path, o, &p, &size, &type, e) != 0) {
		vhd_close(p.f);
		return NULL;
	}
	if (p.f && !ascii_name(p.abs) && o->strict) {
		vhd_seterr(e, "EINVAL", "%s: parent name %s is not ASCII; XenServer's tools reject such a child "
			   "(\"invalid parent name\")", path, p.abs);
		vhd_close(p.f);
		return NULL;
	}
	if (type != VHD_FIXED && vhd_layout_init(&l, size, bs, p.bytes, e) != 0) {
		vhd_close(p.f);
		return NULL;
	}
	vhd_file *f = file_new(path, e);
	if (f == NULL) {
		vhd_close(p.f);
		return NULL;
	}
	vhd_meta_footer(&f->footer, size, type, o->hidden);
	if (o->foreign) /* qemu's label for "trust current_size"; blktap applies no "tap" rules to it */
		memcpy(f->footer.creator_app, "qem2", 4);
	if (type == VHD_FIXED) {
		if (ftruncate(f->fd, (off_t)size) != 0) {
			vhd_syserr(e, "writing", path);
			goto fail;
		}
		f->next_free = size;
	} else if (create_sparse(f, &l, &p, o->foreign, e) != 0) {
		goto fail;
	}
	if (write_footers(f, e) != 0)
		goto fail;
	if (p.f && !ascii_name(p.abs))
		vhd_problem_add(f, VHD_WARNING, 0, "PARENT_NAME_NOT_ASCII", -1,
				"%s: parent name %s is not ASCII: XenServer's tools reject this child (\"invalid parent "
				"name\"); salvage reads it", path, strrchr(p.abs, '/') + 1);
	f->parent = p.f;
	return f;
fail:
	unlink(path);
	vhd_close(p.f);
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
	vhd_put32(be, (uint32_t)(start / 512));
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
	vhd_put32(cs, bm->checksum);
	if (vhd_pwrite_all(f->fd, bm->map + b / 8, 1, bm->offset + b / 8) != 0 ||
	    vhd_pwrite_all(f->fd, cs, 4, bm->hdr_offset + 24) != 0)
		return vhd_syserr(e, "writing batmap", f->path);
	return 0;
}

/* n bytes at byte bo of block b as whole sectors: data itself when it is sector-aligned, or a
 * malloc'd copy (*tmp) holding the edge sectors' current content (through the chain) around it. */
static const uint8_t *whole_sectors(vhd_file *f, uint32_t b, uint64_t bo, const uint8_t *data, uint64_t n,
				    uint8_t **tmp, vhd_err *e)
{
	uint64_t s0 = bo / 512, nsec = (bo + n - 1) / 512 - s0 + 1;
	uint64_t vsec0 = (uint64_t)b * f->spb + s0;
	*tmp = NULL;
	if (bo % 512 == 0 && (bo + n) % 512 == 0)
		return data;
	if ((*tmp = malloc(nsec * 512)) == NULL) {
		vhd_seterr(e, "ENOMEM", "out of memory");
		return NULL;
	}
	if (vhd_read_sectors(f, vsec0, 1, *tmp, e) != 0 ||
	    (nsec > 1 && vhd_read_sectors(f, vsec0 + nsec - 1, 1, *tmp + (nsec - 1) * 512, e) != 0)) {
		free(*tmp);
		*tmp = NULL;
		return NULL;
	}
	memcpy(*tmp + (bo - s0 * 512), data, n);
	return *tmp;
}

/* n bytes at byte bo of block b (inside it): allocate the block if need be, write the data,
 * then set the bitmap bits and the batmap bit, in that order (a crash leaves data unmarked,
 * never marked data that was not written). */
static int write_in_block(vhd_file *f, uint32_t b, uint64_t bo, const uint8_t *data, uint64_t n, vhd_err *e)
{
	if (f->bad_block[b]) {
		vhd_seterr(e, "EBAT", "%s: block %u is damaged; refusing to write into it", f->path, b);
		return -1;
	}
	uint64_t s0 = bo / 512, s1 = (bo + n - 1) / 512;
	uint8_t *tmp;
	const uint8_t *src = whole_sectors(f, b, bo, data, n, &tmp, e);
	if (src == NULL)
		return -1;
	if (f->bat[b] == VHD_BAT_FREE && alloc_block(f, b, e) != 0) {
		free(tmp);
		return -1;
	}
	uint64_t bstart = (uint64_t)f->bat[b] * 512;
	int rc = vhd_pwrite_all(f->fd, src, (s1 - s0 + 1) * 512, bstart + f->bitmap_bytes + s0 * 512);
	free(tmp);
	if (rc != 0)
		return vhd_syserr(e, "writing data", f->path);
	if (vhd_block_bitmap(f, b, e) == NULL)
		return -1;
	uint8_t *bm = f->cached_bitmap;
	uint64_t lo = s0 / 8, hi = s1 / 8;
	for (uint64_t s = s0; s <= s1; s++)
		vhd_setbit(bm, s);
	if (vhd_pwrite_all(f->fd, bm + lo, hi - lo + 1, bstart + lo) != 0)
		return vhd_syserr(e, "writing bitmap", f->path);
	return batmap_update(f, b, bm, e);
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
	if (f->footer.disk_type == VHD_FIXED)
		return vhd_pwrite_all(f->fd, data, (size_t)len, off) != 0 ? vhd_syserr(e, "writing", f->path) : 0;
	writer_init(f);
	uint64_t bs = f->header.block_size;
	while (len > 0) {
		uint64_t bo = off % bs, n = bs - bo < len ? bs - bo : len;
		if (write_in_block(f, (uint32_t)(off / bs), bo, data, n, e) != 0)
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
