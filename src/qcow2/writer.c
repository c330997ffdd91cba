/*
 * The qcow2 stream: the layout of layout.c produced in file order, one piece
 * at a time into a 2 MiB buffer — a metadata cluster, or a run of up to 32
 * data clusters read from the source in one call. The L2 table of a region
 * is built while its data goes by and produced right after it; the refcount
 * blocks come last and give 0 to data clusters that turned out all-zero.
 */
#include <stdlib.h>
#include <string.h>

#include "qcow2/qcow2.h"

#define RUN_CLUSTERS 32u                     /* 2 MiB per read of the source */
#define BUF_BYTES ((size_t)RUN_CLUSTERS * QCOW2_CLUSTER)

enum phase { PH_HEADER, PH_L1, PH_REGION, PH_RT, PH_RB, PH_END, PH_FAILED };

typedef struct q2s {
	out_stream base;                     /* first: the stream is a q2s */
	qcow2_layout l;
	const disk_source *src;
	uint8_t *buf;                        /* host bytes [buf_start, buf_start + buf_len) */
	uint64_t buf_start, buf_len;
	uint8_t *l2;                         /* L2 table of the current region */
	uint8_t *freed;                      /* bit per host cluster: data found all-zero */
	enum phase phase;
	uint64_t idx;                        /* cluster within L1 / RT / RB */
	uint32_t region;
	uint64_t vc;                         /* next virtual cluster to look at in the region */
	uint64_t host;                       /* host cluster of the next data cluster */
	uint64_t zero_clusters;
} q2s;

static void be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t region_end(const qcow2_layout *l, uint32_t r)
{
	uint64_t end = ((uint64_t)r + 1) * QCOW2_L2_ENTRIES;
	return end < l->nclusters ? end : l->nclusters;
}

/* Next region holding data at or after r (l1_entries when none). */
static uint32_t next_region(const qcow2_layout *l, uint32_t r)
{
	while (r < l->l1_entries && l->region_count[r] == 0)
		r++;
	return r;
}

static void enter_region(q2s *s, uint32_t r)
{
	s->region = next_region(&s->l, r);
	if (s->region >= s->l.l1_entries) {
		s->phase = PH_RT;
		s->idx = 0;
		return;
	}
	s->phase = PH_REGION;
	s->vc = (uint64_t)s->region * QCOW2_L2_ENTRIES;
	s->host = s->l.region_host[s->region];
	memset(s->l2, 0, QCOW2_CLUSTER);
}

static void fill_l1(q2s *s)
{
	const qcow2_layout *l = &s->l;
	memset(s->buf, 0, QCOW2_CLUSTER);
	for (uint64_t k = 0; k < QCOW2_L2_ENTRIES; k++) {
		uint64_t r = s->idx * QCOW2_L2_ENTRIES + k;
		if (r >= l->l1_entries)
			break;
		if (l->region_count[r])
			be64(s->buf + 8 * k, (l->region_host[r] + l->region_count[r]) * QCOW2_CLUSTER | QCOW2_OFLAG_COPIED);
	}
	if (++s->idx == l->l1_clusters)
		enter_region(s, 0);
}

/* A run of allocated clusters of the current region, or its L2 table when the data is done. */
static int fill_region(q2s *s)
{
	const qcow2_layout *l = &s->l;
	uint64_t end = region_end(l, s->region);
	while (s->vc < end && !qcow2_bit(l->alloc, s->vc))
		s->vc++;
	if (s->vc >= end) {
		memcpy(s->buf, s->l2, QCOW2_CLUSTER);
		s->buf_len = QCOW2_CLUSTER;
		enter_region(s, s->region + 1);
		return 0;
	}
	uint64_t k = 1;
	while (k < RUN_CLUSTERS && s->vc + k < end && qcow2_bit(l->alloc, s->vc + k))
		k++;
	uint64_t off = s->vc * QCOW2_CLUSTER;
	uint64_t len = k * QCOW2_CLUSTER;
	if (off + len > l->size)
		len = l->size - off; /* the last cluster is partly past the disk: zeros */
	memset(s->buf + len, 0, (size_t)(k * QCOW2_CLUSTER - len));
	if (s->src->read(s->src->ctx, off, (size_t)len, s->buf, &s->base.err) != 0)
		return -1;
	for (uint64_t i = 0; i < k; i++, s->host++) {
		uint64_t slot = (s->vc + i) % QCOW2_L2_ENTRIES;
		if (stream_all_zero(s->buf + i * QCOW2_CLUSTER, QCOW2_CLUSTER)) {
			qcow2_setbit(s->freed, s->host);
			s->zero_clusters++;
		} else {
			be64(s->l2 + 8 * slot, s->host * QCOW2_CLUSTER | QCOW2_OFLAG_COPIED);
		}
	}
	s->vc += k;
	s->buf_len = k * QCOW2_CLUSTER;
	return 0;
}

static void fill_rt(q2s *s)
{
	const qcow2_layout *l = &s->l;
	memset(s->buf, 0, QCOW2_CLUSTER);
	for (uint64_t k = 0; k < QCOW2_CLUSTER / 8; k++) {
		uint64_t j = s->idx * (QCOW2_CLUSTER / 8) + k;
		if (j >= l->nrb)
			break;
		be64(s->buf + 8 * k, (l->rb_host + j) * QCOW2_CLUSTER);
	}
	if (++s->idx == l->rt_clusters) {
		s->phase = PH_RB;
		s->idx = 0;
	}
}

static void fill_rb(q2s *s)
{
	const qcow2_layout *l = &s->l;
	memset(s->buf, 0, QCOW2_CLUSTER);
	for (uint64_t k = 0; k < QCOW2_RB_ENTRIES; k++) {
		uint64_t h = s->idx * QCOW2_RB_ENTRIES + k;
		if (h >= l->total)
			break;
		if (!qcow2_bit(s->freed, h))
			be16(s->buf + 2 * k, 1);
	}
	if (++s->idx == l->nrb)
		s->phase = PH_END;
}

/* The next piece of the file into buf, right after the current one. */
static int produce(q2s *s)
{
	s->buf_start += s->buf_len;
	s->buf_len = QCOW2_CLUSTER;
	switch (s->phase) {
	case PH_HEADER:
		memset(s->buf, 0, QCOW2_CLUSTER);
		qcow2_header_build(&s->l, s->buf);
		s->phase = PH_L1;
		return 0;
	case PH_L1:
		fill_l1(s);
		return 0;
	case PH_REGION:
		return fill_region(s);
	case PH_RT:
		fill_rt(s);
		return 0;
	case PH_RB:
		fill_rb(s);
		return 0;
	default:
		qcow2_seterr(&s->base.err, "EIO", "qcow2: read past the end of the image (internal error)");
		return -1;
	}
}

static ssize_t q2s_read(out_stream *os, uint8_t *out, size_t n)
{
	q2s *s = (q2s *)os;
	if (s->phase == PH_FAILED)
		return -1;
	size_t done = 0;
	while (done < n && os->pos < os->length) {
		if (os->pos >= s->buf_start + s->buf_len && produce(s) != 0) {
			s->phase = PH_FAILED;
			return -1;
		}
		uint64_t have = s->buf_start + s->buf_len - os->pos;
		size_t k = n - done < have ? n - done : (size_t)have;
		memcpy(out + done, s->buf + (os->pos - s->buf_start), k);
		done += k;
		os->pos += k;
	}
	return (ssize_t)done;
}

static void q2s_close(out_stream *os)
{
	q2s *s = (q2s *)os;
	qcow2_layout_free(&s->l);
	free(s->buf);
	free(s->l2);
	free(s->freed);
	free(s);
}

static const out_stream_ops q2s_ops = { q2s_read, q2s_close };

uint64_t qcow2_stream_zero_clusters(const out_stream *os) { return ((const q2s *)os)->zero_clusters; }

uint64_t qcow2_stream_data_clusters(const out_stream *os)
{
	const q2s *s = (const q2s *)os;
	return s->l.ndata - s->zero_clusters;
}

/* Does virtual cluster c hold any unit the source calls allocated? 1, 0, -1 (e filled). */
static int cluster_allocated(const disk_source *src, uint64_t c, stream_err *e)
{
	uint64_t off = c * QCOW2_CLUSTER;
	uint64_t end = off + QCOW2_CLUSTER < src->size ? off + QCOW2_CLUSTER : src->size;
	for (uint64_t u = off / src->grain; u * src->grain < end; u++) {
		int a = src->allocated(src->ctx, u, e);
		if (a != 0)
			return a < 0 ? -1 : 1;
	}
	return 0;
}

static uint8_t *map_of(const disk_source *src, uint64_t nclusters, stream_err *e)
{
	uint8_t *m = calloc(nclusters / 8 + 1, 1);
	if (m == NULL) {
		qcow2_seterr(e, "ENOMEM", "qcow2: out of memory for the allocation map");
		return NULL;
	}
	for (uint64_t c = 0; c < nclusters; c++) {
		int a = cluster_allocated(src, c, e);
		if (a < 0) {
			free(m);
			return NULL;
		}
		if (a)
			qcow2_setbit(m, c);
	}
	return m;
}

/* The pre-pass of drop_zero: read every allocated cluster once, clear those all-zero. */
static int drop_zero(const disk_source *src, uint8_t *m, uint64_t nclusters, const out_stream_opts *o,
		     uint8_t *buf, stream_err *e)
{
	uint64_t total = 0, done = 0;
	for (uint64_t c = 0; c < nclusters; c++)
		total += qcow2_bit(m, c);
	total *= QCOW2_CLUSTER;
	for (uint64_t c = 0; c < nclusters;) {
		if (!qcow2_bit(m, c)) {
			c++;
			continue;
		}
		uint64_t k = 1;
		while (k < RUN_CLUSTERS && c + k < nclusters && qcow2_bit(m, c + k))
			k++;
		uint64_t off = c * QCOW2_CLUSTER, len = k * QCOW2_CLUSTER;
		if (off + len > src->size)
			len = src->size - off;
		memset(buf + len, 0, (size_t)(k * QCOW2_CLUSTER - len));
		if (src->read(src->ctx, off, (size_t)len, buf, e) != 0)
			return -1;
		for (uint64_t i = 0; i < k; i++)
			if (stream_all_zero(buf + i * QCOW2_CLUSTER, QCOW2_CLUSTER))
				qcow2_clearbit(m, c + i);
		c += k;
		done += k * QCOW2_CLUSTER;
		if (o->progress && !o->progress(o->progress_ctx, done, total)) {
			qcow2_seterr(e, "ECANCELED", "qcow2: cancelled while looking for all-zero clusters");
			return -1;
		}
	}
	return 0;
}

static q2s *q2s_new(void)
{
	q2s *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->base.ops = &q2s_ops;
	s->base.format = "qcow2";
	s->buf = aligned_alloc(4096, BUF_BYTES);
	s->l2 = malloc(QCOW2_CLUSTER);
	if (s->buf == NULL || s->l2 == NULL) {
		q2s_close(&s->base);
		return NULL;
	}
	return s;
}

out_stream *qcow2_stream_open(const disk_source *src, const out_stream_opts *o, stream_err *e)
{
	static const out_stream_opts none = { 0 };
	if (o == NULL)
		o = &none;
	if (src->grain < 512 || (src->grain & (src->grain - 1)) != 0) {
		qcow2_seterr(e, "EINVAL", "qcow2: allocation grain %u is not a power of two >= 512", src->grain);
		return NULL;
	}
	if (src->size == 0 || src->size % 512 || src->size > QCOW2_MAX_SIZE) {
		qcow2_seterr(e, "EINVAL", "qcow2: virtual size %llu is not a positive multiple of 512 up to %llu",
			     (unsigned long long)src->size, (unsigned long long)QCOW2_MAX_SIZE);
		return NULL;
	}
	q2s *s = q2s_new();
	if (s == NULL) {
		qcow2_seterr(e, "ENOMEM", "qcow2: out of memory");
		return NULL;
	}
	uint64_t nclusters = (src->size + QCOW2_CLUSTER - 1) / QCOW2_CLUSTER;
	uint8_t *m = map_of(src, nclusters, e);
	if (m == NULL || (o->drop_zero && drop_zero(src, m, nclusters, o, s->buf, e) != 0)) {
		free(m);
		q2s_close(&s->base);
		return NULL;
	}
	if (qcow2_layout_plan(&s->l, src->size, m, e) != 0) { /* the layout owns m from here */
		q2s_close(&s->base);
		return NULL;
	}
	s->freed = calloc(s->l.total / 8 + 1, 1);
	if (s->freed == NULL) {
		qcow2_seterr(e, "ENOMEM", "qcow2: out of memory");
		q2s_close(&s->base);
		return NULL;
	}
	s->src = src;
	s->base.length = s->l.total * QCOW2_CLUSTER;
	s->phase = PH_HEADER;
	return &s->base;
}
