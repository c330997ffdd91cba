/*
 * qcow2 layout: every host position of the image computed from the virtual
 * size and the allocation map before a byte is produced (see qcow2.h for the
 * order). The refcount structures cover the whole file including
 * themselves, so their size is found by iterating to a fixed point.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2/qcow2.h"

void qcow2_seterr(stream_err *e, const char *code, const char *fmt, ...)
{
	if (e == NULL)
		return;
	snprintf(e->code, sizeof e->code, "%s", code);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
}

static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* Set bits of m in [from, to). */
static uint64_t count_bits(const uint8_t *m, uint64_t from, uint64_t to)
{
	uint64_t n = 0, i = from;
	for (; i < to && (i & 7); i++)
		n += qcow2_bit(m, i);
	for (; i + 64 <= to; i += 64) {
		uint64_t w;
		memcpy(&w, m + (i >> 3), 8);
		n += (uint64_t)__builtin_popcountll(w);
	}
	for (; i + 8 <= to; i += 8)
		n += (uint64_t)__builtin_popcount(m[i >> 3]);
	for (; i < to; i++)
		n += qcow2_bit(m, i);
	return n;
}

/* Refcount table and blocks after `base` host clusters: the smallest sizes that cover
 * base + themselves. Both only grow while iterating, so this ends. */
static void size_refcounts(qcow2_layout *l, uint64_t base)
{
	uint64_t rtc = 1, nrb = 1;
	for (;;) {
		uint64_t total = base + rtc + nrb;
		uint64_t nrb2 = div_up(total, QCOW2_RB_ENTRIES);
		uint64_t rtc2 = div_up(nrb2 * 8, QCOW2_CLUSTER);
		if (nrb2 <= nrb && rtc2 <= rtc)
			break;
		nrb = nrb2 > nrb ? nrb2 : nrb;
		rtc = rtc2 > rtc ? rtc2 : rtc;
	}
	l->rt_clusters = rtc;
	l->nrb = nrb;
	l->rt_host = base;
	l->rb_host = base + rtc;
	l->total = base + rtc + nrb;
}

int qcow2_layout_plan(qcow2_layout *l, uint64_t size, uint8_t *alloc, stream_err *e)
{
	memset(l, 0, sizeof *l);
	l->alloc = alloc;
	if (size == 0 || size % 512 != 0 || size > QCOW2_MAX_SIZE) {
		qcow2_seterr(e, "EINVAL", "qcow2: virtual size %llu is not a positive multiple of 512 up to %llu",
			     (unsigned long long)size, (unsigned long long)QCOW2_MAX_SIZE);
		return -1;
	}
	l->size = size;
	l->nclusters = div_up(size, QCOW2_CLUSTER);
	/* bits past the last cluster mean nothing: clear them so counts and walks agree */
	for (uint64_t i = l->nclusters; i < div_up(l->nclusters, 8) * 8; i++)
		qcow2_clearbit(alloc, i);
	l->l1_entries = (uint32_t)div_up(l->nclusters, QCOW2_L2_ENTRIES);
	l->l1_clusters = (uint32_t)div_up((uint64_t)l->l1_entries * 8, QCOW2_CLUSTER);
	l->region_host = calloc(l->l1_entries, sizeof *l->region_host);
	l->region_count = calloc(l->l1_entries, sizeof *l->region_count);
	if (l->region_host == NULL || l->region_count == NULL) {
		qcow2_seterr(e, "ENOMEM", "qcow2: out of memory planning the layout");
		qcow2_layout_free(l);
		return -1;
	}
	uint64_t host = 1 + l->l1_clusters;
	for (uint32_t r = 0; r < l->l1_entries; r++) {
		uint64_t from = (uint64_t)r * QCOW2_L2_ENTRIES;
		uint64_t to = from + QCOW2_L2_ENTRIES < l->nclusters ? from + QCOW2_L2_ENTRIES : l->nclusters;
		uint64_t n = count_bits(alloc, from, to);
		if (n == 0)
			continue;
		l->region_host[r] = host;
		l->region_count[r] = (uint32_t)n;
		host += n + 1;
		l->ndata += n;
		l->nl2++;
	}
	size_refcounts(l, host);
	return 0;
}

void qcow2_layout_free(qcow2_layout *l)
{
	free(l->region_host);
	free(l->region_count);
	free(l->alloc);
	memset(l, 0, sizeof *l);
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static void be64(uint8_t *p, uint64_t v)
{
	be32(p, (uint32_t)(v >> 32));
	be32(p + 4, (uint32_t)v);
}

void qcow2_header_build(const qcow2_layout *l, uint8_t *b)
{
	memset(b, 0, 112);
	memcpy(b, "QFI\xfb", 4);
	be32(b + 4, 3);                          /* version */
	/* 8..19: no backing file */
	be32(b + 20, QCOW2_CLUSTER_BITS);
	be64(b + 24, l->size);
	/* 32: no encryption */
	be32(b + 36, l->l1_entries);
	be64(b + 40, (uint64_t)QCOW2_CLUSTER);   /* L1 right after the header cluster */
	be64(b + 48, l->rt_host * QCOW2_CLUSTER);
	be32(b + 56, (uint32_t)l->rt_clusters);
	/* 60..71: no snapshots; 72..95: no feature bits (a clean image) */
	be32(b + 96, 4);                         /* refcount order: 16-bit refcounts */
	be32(b + 100, 104);                      /* header length; extensions: only the end marker (zeros) */
}
