/*
 * The one builder of dynamic-VHD metadata: the layout (where the BAT, the
 * batmap, the locators and every block slot go) and the bytes of the footer,
 * header, BAT and batmap. vhd_create, vhd_flatten and the VHD stream all lay
 * files out through here, so a file made one way is byte-identical in its
 * metadata to one made another way.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vhd/vhd.h"

void vhd_uuid_generate(uint8_t u[16])
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, u, 16) : -1;
	if (fd >= 0)
		close(fd);
	if (n != 16) {
		/* no /dev/urandom (a bare chroot): unique enough from time, pid and address */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid() << 40 ^
			     (uint64_t)(uintptr_t)u;
		for (int i = 0; i < 16; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			u[i] = (uint8_t)x;
		}
	}
	u[6] = (uint8_t)((u[6] & 0x0F) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3F) | 0x80);
}

int vhd_layout_init(vhd_layout *l, uint64_t size, uint32_t bs, uint64_t locator_bytes, vhd_err *e)
{
	memset(l, 0, sizeof *l);
	if (bs < 512 || (bs & (bs - 1)) != 0 || bs > (256u << 20)) {
		vhd_seterr(e, "EINVAL", "block size %u is not a power of two between 512 and 256 MiB", bs);
		return -1;
	}
	if (size == 0 || size % 512 != 0 || size > VHD_MAX_SIZE) {
		vhd_seterr(e, "EINVAL", "size %llu must be a positive multiple of 512 up to 2040 GiB",
			   (unsigned long long)size);
		return -1;
	}
	l->size = size;
	l->block_size = bs;
	l->spb = bs / 512;
	l->bitmap_bytes = (uint32_t)vhd_align_up((l->spb + 7) / 8, 512);
	l->entries = (uint32_t)((size + bs - 1) / bs);
	l->bat_offset = 1536;
	l->bat_bytes = vhd_align_up((uint64_t)l->entries * 4, 512);
	l->batmap_hdr = l->bat_offset + l->bat_bytes;
	l->batmap_offset = l->batmap_hdr + 512;
	l->batmap_bytes = vhd_align_up(((uint64_t)l->entries + 7) / 8, 512);
	l->locators = l->batmap_offset + l->batmap_bytes;
	l->meta_end = l->locators + locator_bytes;
	l->first_block = vhd_align_up(l->meta_end + l->bitmap_bytes, VHD_DATA_ALIGN) - l->bitmap_bytes;
	l->stride = vhd_align_up((uint64_t)l->bitmap_bytes + bs, VHD_DATA_ALIGN);
	return 0;
}

void vhd_meta_footer(vhd_footer *f, uint64_t size, uint32_t type, int hidden)
{
	memset(f, 0, sizeof *f);
	memcpy(f->cookie, "conectix", 9);
	f->features = 2;
	f->version = 0x00010000;
	f->data_offset = type == VHD_FIXED ? VHD_NONE64 : 512;
	f->timestamp = (uint32_t)(time(NULL) - VHD_EPOCH);
	/* "tap": what XenServer writes; qemu then trusts current_size rather than CHS */
	memcpy(f->creator_app, "tap", 4);
	f->creator_version = 0x00010003;
	f->creator_os = 0;
	f->original_size = f->current_size = size;
	vhd_geometry(size, &f->cylinders, &f->heads, &f->sectors);
	f->disk_type = type;
	vhd_uuid_generate(f->uuid);
	f->hidden = (uint8_t)(hidden ? 1 : 0);
}

void vhd_meta_header(vhd_header *h, const vhd_layout *l)
{
	memset(h, 0, sizeof *h);
	memcpy(h->cookie, "cxsparse", 9);
	h->data_offset = VHD_NONE64;
	h->table_offset = l->bat_offset;
	h->version = 0x00010000;
	h->max_bat_entries = l->entries;
	h->block_size = l->block_size;
}

void vhd_meta_batmap(vhd_batmap *bm, const vhd_layout *l)
{
	memset(bm, 0, sizeof *bm);
	bm->present = 1;
	bm->hdr_offset = l->batmap_hdr;
	bm->offset = l->batmap_offset;
	bm->size_sectors = (uint32_t)(l->batmap_bytes / 512);
	bm->version = 0x00010002;
	bm->checksum = bm->checksum_computed = 0xFFFFFFFFu; /* ~sum of an all-zero map */
}

uint8_t *vhd_meta_head(const vhd_layout *l, const vhd_footer *f, const vhd_header *h, const uint32_t *bat,
		       int full_blocks, size_t *len)
{
	uint8_t *p = calloc(1, (size_t)l->first_block);
	if (p == NULL)
		return NULL;
	vhd_footer_build(f, p);
	vhd_header_build(h, p + 512);
	uint8_t *tab = p + l->bat_offset, *map = p + l->batmap_offset;
	uint32_t sum = 0;
	for (uint32_t b = 0; b < l->entries; b++) {
		uint32_t v = bat ? bat[b] : VHD_BAT_FREE;
		vhd_put32(tab + 4ull * b, v); /* the padding after the last entry stays zero */
		if (full_blocks && v != VHD_BAT_FREE)
			vhd_setbit(map, b);
	}
	for (uint64_t i = 0; i < l->batmap_bytes; i++)
		sum += map[i];
	vhd_batmap bm;
	vhd_meta_batmap(&bm, l);
	bm.checksum = ~sum;
	vhd_batmap_header_build(&bm, p + l->batmap_hdr);
	*len = (size_t)l->first_block;
	return p;
}

void vhd_meta_block_bitmap(const vhd_layout *l, uint64_t b, uint8_t *bitmap)
{
	uint64_t first = b * l->spb, total = l->size / 512;
	uint64_t n = total - first < l->spb ? total - first : l->spb;
	memset(bitmap, 0, l->bitmap_bytes);
	memset(bitmap, 0xFF, (size_t)(n / 8));
	for (uint64_t s = n / 8 * 8; s < n; s++)
		vhd_setbit(bitmap, s);
}
