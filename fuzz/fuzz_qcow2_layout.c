/*
 * libFuzzer: the qcow2 writer's layout and stream. From the input: a virtual
 * size, which 64 KiB clusters the source calls allocated (at a fuzzed grain),
 * which of those read as all zeros, and whether the drop_zero pre-pass runs.
 * The stream is read in fuzzed chunk sizes and checked by an independent
 * reader below: header fields, every virtual cluster's content through
 * L1/L2, refcounts recomputed from the references (like qemu-img check:
 * no leak, no overlap, COPIED flags right), exact length.
 * A second part plans large sparse layouts (up to QCOW2_MAX_SIZE) without
 * data and checks that the regions tile the file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2/qcow2.h"

#define C QCOW2_CLUSTER
#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

typedef struct src_ctx {
	uint64_t size;
	uint32_t grain;
	uint8_t *units;      /* allocated units */
	uint8_t *zero;       /* per cluster: reads as zeros though allocated */
	uint32_t seed;
	int reads;
} src_ctx;

static uint64_t word_at(const src_ctx *c, uint64_t w)
{
	uint64_t x = (w + c->seed) * 0x9E3779B97F4A7C15ull;
	return (x ^ x >> 29) | 0x0101010101010101ull; /* no zero byte: a non-zero cluster stays non-zero */
}

static uint8_t byte_at(const src_ctx *c, uint64_t off)
{
	/* an unallocated unit and a cluster marked zero read as zeros */
	if (qcow2_bit(c->zero, off / C) || !qcow2_bit(c->units, off / c->grain))
		return 0;
	return (uint8_t)(word_at(c, off / 8) >> (8 * (off % 8)));
}

static int s_alloc(void *ctx, uint64_t unit, stream_err *e)
{
	src_ctx *c = ctx;
	CHECK(unit * c->grain < c->size);
	return qcow2_bit(c->units, unit);
}

static int s_read(void *ctx, uint64_t off, size_t len, uint8_t *buf, stream_err *e)
{
	src_ctx *c = ctx;
	CHECK(off + len <= c->size && len > 0 && off % 512 == 0 && len % 512 == 0);
	c->reads++;
	for (size_t i = 0; i < len; i += 512) { /* a sector lies inside one cluster and one unit */
		uint64_t o = off + i;
		int zero = qcow2_bit(c->zero, o / C) || !qcow2_bit(c->units, o / c->grain);
		for (size_t k = 0; k < 512; k += 8) {
			uint64_t w = zero ? 0 : word_at(c, (o + k) / 8);
			memcpy(buf + i + k, &w, 8); /* little-endian host: byte j of w is byte_at(o + k + j) */
		}
	}
	return 0;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32at(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Independent check of a whole image in memory against the source. */
static void verify(const uint8_t *img, uint64_t len, const src_ctx *c)
{
	CHECK(len % C == 0 && len >= 4 * C);
	CHECK(memcmp(img, "QFI\xfb", 4) == 0 && be32at(img + 4) == 3);
	CHECK(rd64(img + 8) == 0 && be32at(img + 20) == 16 && rd64(img + 24) == c->size);
	CHECK(be32at(img + 32) == 0 && be32at(img + 96) == 4 && be32at(img + 100) == 104);
	CHECK(rd64(img + 72) == 0 && be32at(img + 60) == 0);
	uint64_t ncl = (c->size + C - 1) / C, l1n = be32at(img + 36);
	CHECK(l1n == (ncl + C / 8 - 1) / (C / 8));
	uint64_t l1o = rd64(img + 40), rto = rd64(img + 48), rtc = be32at(img + 56);
	uint64_t hosts = len / C;
	uint16_t *ref = calloc(hosts, sizeof *ref);
	CHECK(ref != NULL);
	ref[0]++;
	CHECK(l1o % C == 0 && rto % C == 0 && l1o / C + (l1n * 8 + C - 1) / C <= hosts);
	for (uint64_t i = 0; i < (l1n * 8 + C - 1) / C; i++)
		ref[l1o / C + i]++;
	CHECK(rto / C + rtc <= hosts);
	for (uint64_t i = 0; i < rtc; i++)
		ref[rto / C + i]++;
	for (uint64_t r = 0; r < l1n; r++) {
		uint64_t e1 = rd64(img + l1o + 8 * r);
		uint64_t l2o = e1 & QCOW2_OFFSET_MASK;
		CHECK((e1 & ~QCOW2_OFFSET_MASK & ~QCOW2_OFLAG_COPIED) == 0);
		for (uint64_t k = 0; k < C / 8; k++) {
			uint64_t vc = r * (C / 8) + k;
			if (vc >= ncl)
				break;
			uint64_t e2 = l2o ? rd64(img + l2o + 8 * k) : 0;
			uint64_t d = e2 & QCOW2_OFFSET_MASK;
			CHECK((e2 & ~QCOW2_OFFSET_MASK & ~QCOW2_OFLAG_COPIED) == 0);
			CHECK(d % C == 0 && d / C < hosts && (d == 0) == (e2 == 0));
			if (d)
				ref[d / C]++;
			for (uint64_t b = 0; b < C && vc * C + b < c->size; b += 509) /* a sample of each cluster */
				CHECK((d ? img[d + b] : 0) == byte_at(c, vc * C + b));
			if (d && vc * C + C - 1 < c->size)
				CHECK(img[d + C - 1] == byte_at(c, vc * C + C - 1));
		}
		if (l2o) {
			CHECK(l2o % C == 0 && l2o / C < hosts);
			ref[l2o / C]++;
			CHECK(e1 & QCOW2_OFLAG_COPIED);
		}
	}
	/* refcount blocks referenced by the table */
	for (uint64_t i = 0; i < rtc * (C / 8); i++) {
		uint64_t rb = rd64(img + rto + 8 * i);
		if (rb) {
			CHECK(rb % C == 0 && rb / C < hosts);
			ref[rb / C]++;
		}
	}
	for (uint64_t h = 0; h < hosts; h++) {
		CHECK(ref[h] <= 1);                       /* no cluster used twice */
		uint64_t rb = rd64(img + rto + 8 * (h / (C / 2)));
		CHECK(rb != 0);                           /* every cluster of the file is covered */
		uint32_t stored = (uint32_t)img[rb + 2 * (h % (C / 2))] << 8 | img[rb + 2 * (h % (C / 2)) + 1];
		CHECK(stored == ref[h]);                  /* no leak, nothing unreferenced counted */
	}
	free(ref);
}

static void large_layouts(const uint8_t *data, size_t size)
{
	if (size < 8)
		return;
	uint64_t vsize = ((rd64(data) % (rd64(data) & 1 ? QCOW2_MAX_SIZE : (2ull << 40))) / 512 + 1) * 512;
	uint64_t ncl = (vsize + C - 1) / C;
	uint8_t *m = calloc(ncl / 8 + 1, 1);
	CHECK(m != NULL);
	for (size_t i = 8; i + 4 <= size; i += 4)
		qcow2_setbit(m, be32at(data + i) % ncl * 7919 % ncl);
	qcow2_layout l;
	stream_err e;
	CHECK(qcow2_layout_plan(&l, vsize, m, &e) == 0);
	uint64_t h = 1 + l.l1_clusters, nd = 0;
	for (uint32_t r = 0; r < l.l1_entries; r++)
		if (l.region_count[r]) {
			CHECK(l.region_host[r] == h);
			h += l.region_count[r] + 1;
			nd += l.region_count[r];
		}
	CHECK(nd == l.ndata && l.rt_host == h && l.rb_host == h + l.rt_clusters && l.total == l.rb_host + l.nrb);
	CHECK(l.nrb * (C / 2) >= l.total && (l.nrb - 1) * (C / 2) < l.total);  /* covers, minimal */
	CHECK(l.rt_clusters * (C / 8) >= l.nrb && (l.rt_clusters - 1) * (C / 8) < l.nrb);
	qcow2_layout_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	if (data[0] & 0x80) {
		large_layouts(data + 1, size - 1);
		return 0;
	}
	src_ctx c = { 0 };
	/* up to 2.03 L2 regions of virtual size; a partial last cluster now and then */
	c.grain = 512u << (data[4] % 14);                  /* 512 B .. 4 MiB */
	/* fine grains cost one call per unit: keep those disks to one region and a bit */
	uint64_t span = c.grain < C ? 8192 * 128 + 4096 : 2 * 8192 * 128 + 4096;
	uint64_t sectors = ((uint64_t)data[1] << 16 | (uint64_t)data[2] << 8 | data[3]) % span + 1;
	c.size = sectors * 512;
	c.seed = data[5];
	int drop = data[6] & 1;
	size_t chunk = (size_t)(data[7] % 64 + 1) * 4093;   /* odd chunk sizes cross every boundary */
	uint64_t nunits = (c.size + c.grain - 1) / c.grain, ncl = (c.size + C - 1) / C;
	c.units = calloc(nunits / 8 + 1, 1);
	c.zero = calloc(ncl / 8 + 1, 1);
	CHECK(c.units && c.zero);
	/* at most ~48 allocated units and ~3 MiB of data, so the image stays small whatever the size */
	size_t maxunits = c.grain >= (2u << 20) / 48 ? (2u << 20) / c.grain + 1 : 48;
	for (size_t i = 8; i + 3 <= size && i < 8 + 3 * maxunits; i += 3) {
		uint64_t u = ((uint64_t)data[i] << 8 | data[i + 1]) * 131 % nunits;
		if (c.grain > 2 * C && nunits > 4)
			u = data[i] % nunits;
		qcow2_setbit(c.units, u);
		if (data[i + 2] & 1)
			qcow2_setbit(c.zero, u * c.grain / C);
	}
	disk_source src = { .size = c.size, .grain = c.grain, .ctx = &c, .allocated = s_alloc, .read = s_read };
	out_stream_opts o = { .drop_zero = drop };
	stream_err e;
	out_stream *s = qcow2_stream_open(&src, &o, &e);
	CHECK(s != NULL);
	if (s->length > (64ull << 20)) { /* a grain of 4 MiB on many units: fine, but too big to check here */
		out_stream_close(s);
		goto out;
	}
	uint8_t *img = malloc(s->length + 1);
	CHECK(img != NULL);
	uint64_t got = 0;
	for (;;) {
		size_t want = got < s->length && chunk > s->length - got ? (size_t)(s->length - got) : chunk;
		if (got == s->length)
			want = 1; /* at the end: 0 bytes, not an error */
		ssize_t n = out_stream_read(s, img + got, want);
		CHECK(n >= 0);
		if (n == 0)
			break;
		got += (uint64_t)n;
	}
	CHECK(got == s->length && s->pos == s->length);
	verify(img, got, &c);
	if (drop)
		CHECK(qcow2_stream_zero_clusters(s) == 0);
	free(img);
	out_stream_close(s);
out:
	free(c.units);
	free(c.zero);
	return 0;
}
