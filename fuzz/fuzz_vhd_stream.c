/*
 * libFuzzer: the VHD stream writer's layout (src/vhd/stream.c, meta.c) for
 * any size, grain and allocation map. A synthetic disk_source says which
 * grain units are allocated and fills them from a pattern (some all zero);
 * the stream is read in chunks of varying size and checked as a reader
 * would: the exact promised length, footer at both ends, header, a BAT
 * inside the file with slots in order, sector bitmaps, and every byte of the
 * virtual disk equal to the source (unallocated reads as zero).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vhd/vhd.h"

typedef struct fsrc {
	const uint8_t *map;
	size_t nmap;
	uint64_t size;
	uint32_t grain;
} fsrc;

static int f_alloc(void *ctx, uint64_t unit, stream_err *e)
{
	fsrc *s = ctx;
	if (unit * s->grain >= s->size)
		abort(); /* the writer asked about a unit outside the disk */
	return s->nmap ? (s->map[unit % s->nmap] & 1) : 0;
}

static uint8_t pattern(const fsrc *s, uint64_t off)
{
	uint64_t unit = off / s->grain;
	if (!s->nmap || !(s->map[unit % s->nmap] & 1) || (s->map[unit % s->nmap] & 2))
		return 0; /* unallocated, or allocated and all zero */
	return (uint8_t)(off / 512 * 7 + unit + 1) | 1;
}

static int f_read(void *ctx, uint64_t off, size_t len, uint8_t *buf, stream_err *e)
{
	fsrc *s = ctx;
	if (off + len > s->size || off % 512 || len % 512)
		abort();
	for (size_t i = 0; i < len; i += 512)
		memset(buf + i, pattern(s, off + i), 512);
	return 0;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void check(const fsrc *s, const uint8_t *out, uint64_t len)
{
	vhd_footer f, g;
	vhd_header h;
	if (len < 2048 || vhd_footer_parse(out, &f) != 0 || !vhd_footer_valid(&f) ||
	    vhd_footer_parse(out + len - 512, &g) != 0 || memcmp(out, out + len - 512, 512) != 0 ||
	    f.current_size != s->size || vhd_header_parse(out + 512, &h) != 0 || h.checksum != h.checksum_computed)
		abort();
	uint64_t entries = (s->size + h.block_size - 1) / h.block_size, prev = 0;
	for (uint64_t b = 0; b < entries; b++) {
		uint32_t v = be32(out + h.table_offset + 4 * b);
		for (uint64_t sec = 0; sec < h.block_size / 512 && b * h.block_size + sec * 512 < s->size; sec++) {
			uint64_t off = b * h.block_size + sec * 512;
			uint8_t want = pattern(s, off);
			if (v == VHD_BAT_FREE) {
				if (want)
					abort(); /* data lost */
				continue;
			}
			uint64_t at = (uint64_t)v * 512;
			if (at <= prev || at + 512 + h.block_size > len - 512 || !vhd_bit(out + at, sec))
				abort();
			const uint8_t *d = out + at + 512 + sec * 512;
			for (int i = 0; i < 512; i++)
				if (d[i] != want)
					abort();
		}
		if (v != VHD_BAT_FREE)
			prev = (uint64_t)v * 512;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	fsrc s = { .map = data + 4, .nmap = size - 4 };
	/* up to 8 MiB virtual, any sector count; grain 512 B .. 8 MiB */
	s.size = ((uint64_t)(data[0] | data[1] << 8) * 257 % 16384 + 1) * 512;
	s.grain = 512u << (data[2] % 15);
	disk_source src = { .size = s.size, .grain = s.grain, .ctx = &s, .allocated = f_alloc, .read = f_read };
	out_stream_opts o = { .drop_zero = data[3] & 1 };
	vhd_err e;
	out_stream *st = vhd_stream_open(&src, &o, &e);
	if (st == NULL)
		abort();
	uint8_t *out = malloc(st->length);
	uint64_t got = 0;
	size_t chunk = (data[3] >> 1) ? (size_t)(data[3] >> 1) * 4099u : 1u << 20; /* odd sizes cross regions */
	for (;;) {
		size_t n = chunk < st->length - got ? chunk : (size_t)(st->length - got) + 1;
		ssize_t r = out_stream_read(st, out + got, n > st->length - got ? (size_t)(st->length - got) : n);
		if (r < 0)
			abort();
		if (r == 0)
			break;
		got += (uint64_t)r;
	}
	if (got != st->length || st->pos != st->length)
		abort();
	check(&s, out, got);
	free(out);
	out_stream_close(st);
	return 0;
}
