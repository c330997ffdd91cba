/* Unit tests of the qcow2 writer (src/qcow2/): layout arithmetic, header, stream, save. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "qcow2/qcow2.h"

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static uint8_t *map_all(uint64_t nclusters, int set)
{
	uint8_t *m = calloc(nclusters / 8 + 1, 1);
	if (set)
		memset(m, 0xFF, nclusters / 8 + 1);
	return m;
}

/* 16 GiB, every cluster allocated: 262144 data clusters in 32 regions, one L1 cluster. */
static void test_layout_full(void **state)
{
	qcow2_layout l;
	stream_err e;
	uint64_t n = (16ull << 30) / QCOW2_CLUSTER;
	assert_int_equal(qcow2_layout_plan(&l, 16ull << 30, map_all(n, 1), &e), 0);
	assert_int_equal(l.nclusters, n);
	assert_int_equal(l.l1_entries, 32);
	assert_int_equal(l.l1_clusters, 1);
	assert_int_equal(l.nl2, 32);
	assert_int_equal(l.ndata, n);
	assert_int_equal(l.region_host[0], 2);                      /* header, L1, then data */
	assert_int_equal(l.region_host[1], 2 + 8192 + 1);           /* after region 0's data and its L2 */
	uint64_t base = 2 + n + 32;
	assert_int_equal(l.rt_host, base);
	assert_int_equal(l.rt_clusters, 1);
	/* refcount blocks cover base + 1 + themselves: ceil((base + 1 + 9) / 32768) = 9 */
	assert_int_equal(l.nrb, 9);
	assert_int_equal(l.total, base + 1 + 9);
	qcow2_layout_free(&l);
}

/* Nothing allocated: header, L1, refcount table and one block; no L2 at all. */
static void test_layout_empty(void **state)
{
	qcow2_layout l;
	stream_err e;
	assert_int_equal(qcow2_layout_plan(&l, 1ull << 40, map_all((1ull << 40) / QCOW2_CLUSTER, 0), &e), 0);
	assert_int_equal(l.l1_entries, 2048);
	assert_int_equal(l.nl2, 0);
	assert_int_equal(l.total, 1 + 1 + 1 + 1);
	qcow2_layout_free(&l);
}

static void test_layout_refuses(void **state)
{
	qcow2_layout l;
	stream_err e;
	assert_int_equal(qcow2_layout_plan(&l, 0, map_all(1, 0), &e), -1);
	assert_string_equal(e.code, "EINVAL");
	qcow2_layout_free(&l);
	assert_int_equal(qcow2_layout_plan(&l, 1000, map_all(1, 0), &e), -1);
	qcow2_layout_free(&l);
	assert_int_equal(qcow2_layout_plan(&l, QCOW2_MAX_SIZE + 512, map_all(1, 0), &e), -1);
	qcow2_layout_free(&l);
}

/* A source of 3 MiB + 512: cluster 1 holds 0xAB, cluster 5 is allocated but all zero. */
typedef struct mem { uint64_t size; } mem;
static int m_alloc(void *ctx, uint64_t unit, stream_err *e) { return unit == 1 || unit == 5; }
static int m_read(void *ctx, uint64_t off, size_t len, uint8_t *buf, stream_err *e)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (off + i) / QCOW2_CLUSTER == 1 ? 0xAB : 0;
	return 0;
}

static out_stream *open_mem(mem *m, int drop)
{
	disk_source src = { .size = m->size, .grain = QCOW2_CLUSTER, .ctx = m, .allocated = m_alloc, .read = m_read };
	static disk_source keep;
	keep = src;
	out_stream_opts o = { .drop_zero = drop };
	stream_err e;
	return qcow2_stream_open(&keep, &o, &e);
}

static void test_stream_header_and_zero_cluster(void **state)
{
	mem m = { (3u << 20) + 512 };
	out_stream *s = open_mem(&m, 0);
	assert_non_null(s);
	/* header, L1, 2 data clusters, L2, refcount table, one block */
	assert_int_equal(s->length, 7ull * QCOW2_CLUSTER);
	uint8_t *img = malloc(s->length);
	uint64_t got = 0;
	ssize_t n;
	while ((n = out_stream_read(s, img + got, 1000)) > 0)
		got += (uint64_t)n;
	assert_int_equal(n, 0);
	assert_int_equal(got, s->length);
	assert_memory_equal(img, "QFI\xfb", 4);
	assert_int_equal(be32(img + 4), 3);
	assert_int_equal(be64(img + 24), m.size);
	assert_int_equal(be32(img + 96), 4);
	assert_int_equal(qcow2_stream_zero_clusters(s), 1);
	assert_int_equal(qcow2_stream_data_clusters(s), 1);
	/* the L2 table (cluster 4): entry 1 -> host cluster 2, entry 5 unallocated */
	const uint8_t *l2 = img + 4 * QCOW2_CLUSTER;
	assert_int_equal(be64(l2 + 8), 2ull * QCOW2_CLUSTER | QCOW2_OFLAG_COPIED);
	assert_int_equal(be64(l2 + 40), 0);
	assert_int_equal(img[2 * QCOW2_CLUSTER + 100], 0xAB);
	/* refcounts (cluster 6): 1 for all but host cluster 3 (the zero data cluster) */
	const uint8_t *rb = img + 6 * QCOW2_CLUSTER;
	for (int h = 0; h < 7; h++)
		assert_int_equal(rb[2 * h + 1], h == 3 ? 0 : 1);
	assert_int_equal(rb[2 * 7 + 1], 0);
	out_stream_close(s);
	free(img);
	/* drop_zero: the zero cluster is not in the layout at all */
	s = open_mem(&m, 1);
	assert_int_equal(s->length, 6ull * QCOW2_CLUSTER);
	out_stream_close(s);
}

static void test_save_refuses_and_cleans(void **state)
{
	char dir[] = "/tmp/salvage-test-qcow2-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char out[300];
	snprintf(out, sizeof out, "%s/o.qcow2", dir);
	mem m = { 1u << 20 };
	out_stream *s = open_mem(&m, 0);
	stream_err e;
	uint64_t written;
	assert_int_equal(qcow2_save(s, out, NULL, &written, &e), 0);
	out_stream_close(s);
	struct stat st;
	assert_int_equal(stat(out, &st), 0);
	assert_true(written < (uint64_t)st.st_size);             /* the zero cluster is a hole */
	s = open_mem(&m, 0);
	assert_int_equal(qcow2_save(s, out, NULL, &written, &e), -1);
	assert_string_equal(e.code, "EEXIST");
	out_stream_close(s);
	s = open_mem(&m, 0);
	snprintf(out, sizeof out, "%s/missing/o.qcow2", dir);
	assert_int_equal(qcow2_save(s, out, NULL, &written, &e), -1);
	assert_string_equal(e.code, "ENOENT");
	out_stream_close(s);
	char cmd[400];
	snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1 && rm -rf '%s'", dir, dir);
	assert_int_equal(system(cmd), 0);                         /* no temporary file left */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_full),
		cmocka_unit_test(test_layout_empty),
		cmocka_unit_test(test_layout_refuses),
		cmocka_unit_test(test_stream_header_and_zero_cluster),
		cmocka_unit_test(test_save_refuses_and_cleans),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
