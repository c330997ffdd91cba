/* Unit tests of the pure VHD engine (src/vhd/): parsers, checksums, writer, reader, flatten. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vhd/vhd.h"

static char tmpdir[256];

static int setup_dir(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/salvage-test-vhd-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_checksum(void **state)
{
	uint8_t b[16] = { 1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 5 };
	/* bytes at 4..7 (the checksum field) do not count */
	assert_int_equal(vhd_checksum(b, 16, 4), ~(uint32_t)(1 + 2 + 3 + 4 + 5));
}

static void test_footer_roundtrip(void **state)
{
	vhd_footer f, g;
	memset(&f, 0, sizeof f);
	f.features = 2;
	f.version = 0x00010000;
	f.data_offset = 512;
	memcpy(f.creator_app, "tap", 4);
	f.current_size = f.original_size = 64ull << 20;
	vhd_geometry(f.current_size, &f.cylinders, &f.heads, &f.sectors);
	f.disk_type = VHD_DYNAMIC;
	f.hidden = 1;
	for (int i = 0; i < 16; i++)
		f.uuid[i] = (uint8_t)i;
	uint8_t b[512];
	vhd_footer_build(&f, b);
	assert_memory_equal(b, "conectix", 8);
	assert_int_equal(vhd_footer_parse(b, &g), 0);
	assert_true(vhd_footer_valid(&g));
	assert_int_equal(g.current_size, 64ull << 20);
	assert_int_equal(g.hidden, 1);
	assert_int_equal(b[85], 1);
	/* XenServer's 64 MiB geometry, as vhd-util wrote the fixtures */
	assert_int_equal(g.cylinders, 963);
	assert_int_equal(g.heads, 8);
	assert_int_equal(g.sectors, 17);
	b[100] ^= 1;
	vhd_footer_parse(b, &g);
	assert_false(vhd_footer_valid(&g));
	b[100] ^= 1;
	b[0] = 'x';
	assert_int_equal(vhd_footer_parse(b, &g), -1);
}

static void test_header_roundtrip(void **state)
{
	vhd_header h, g;
	memset(&h, 0, sizeof h);
	h.data_offset = VHD_NONE64;
	h.table_offset = 1536;
	h.version = 0x00010000;
	h.max_bat_entries = 32;
	h.block_size = 2u << 20;
	h.parent_uuid[0] = 0xAB;
	snprintf(h.parent_name, sizeof h.parent_name, "b\xc3\xa4se-\xf0\x9f\x92\xbe.vhd"); /* ä and an astral char */
	memcpy(h.loc[0].code, "MacX", 5);
	h.loc[0].data_space = 512;
	h.loc[0].data_length = 17;
	h.loc[0].data_offset = 3072;
	uint8_t b[1024];
	vhd_header_build(&h, b);
	assert_int_equal(vhd_header_parse(b, &g), 0);
	assert_int_equal(g.checksum, g.checksum_computed);
	assert_string_equal(g.parent_name, h.parent_name);
	assert_int_equal(g.block_size, 2u << 20);
	assert_int_equal(g.parent_uuid[0], 0xAB);
	assert_string_equal(g.loc[0].code, "MacX");
	assert_int_equal(g.loc[0].data_offset, 3072);
	assert_int_equal(g.loc[1].code[0], 0);
	/* parent name is UTF-16 big-endian at 64 */
	assert_int_equal(b[64], 0);
	assert_int_equal(b[65], 'b');
}

static void test_locators(void **state)
{
	char out[256];
	const char *mac = "file://./base.vhd";
	assert_int_equal(vhd_locator_decode("MacX", (const uint8_t *)mac, strlen(mac), out, sizeof out), 0);
	assert_string_equal(out, "./base.vhd");
	uint8_t w[64];
	size_t n = vhd_utf16_encode(".\\dir\\base.vhd", w, sizeof w, 0);
	assert_int_equal(n, 28);
	assert_int_equal(w[0], '.');
	assert_int_equal(w[1], 0);
	assert_int_equal(vhd_locator_decode("W2ku", w, n, out, sizeof out), 0);
	assert_string_equal(out, "./dir/base.vhd");
	assert_int_equal(vhd_locator_decode("W2ru", w, n, out, sizeof out), 0);
	assert_int_equal(vhd_locator_decode("Wi2k", w, n, out, sizeof out), -1);
	assert_int_equal(vhd_locator_decode("MacX", (const uint8_t *)"", 0, out, sizeof out), -1);
	/* tiny output buffers truncate, never overflow */
	char small[4];
	vhd_locator_decode("MacX", (const uint8_t *)mac, strlen(mac), small, sizeof small);
	assert_int_equal(strlen(small), 3);
}

static void test_bitmap_order(void **state)
{
	uint8_t m[2] = { 0x80, 0x01 };
	assert_int_equal(vhd_bit(m, 0), 1);
	assert_int_equal(vhd_bit(m, 1), 0);
	assert_int_equal(vhd_bit(m, 15), 1);
	uint8_t z[2] = { 0, 0 };
	vhd_setbit(z, 9);
	assert_int_equal(z[1], 0x40);
}

static void test_open_errors(void **state)
{
	vhd_err e;
	char p[300];
	snprintf(p, sizeof p, "%s/missing.vhd", tmpdir);
	assert_null(vhd_open(p, NULL, &e));
	assert_string_equal(e.code, "ENOENT");
	snprintf(p, sizeof p, "%s/tiny.vhd", tmpdir);
	FILE *f = fopen(p, "wb");
	fputs("tiny", f);
	fclose(f);
	assert_null(vhd_open(p, NULL, &e));
	assert_string_equal(e.code, "EFORMAT");
}

static int cancel_at_half(void *ctx, uint64_t done, uint64_t total)
{
	(*(int *)ctx)++;
	return done < total / 2;
}

static void test_write_read_flatten(void **state)
{
	vhd_err e;
	char base[300], child[300], out[300];
	snprintf(base, sizeof base, "%s/base.vhd", tmpdir);
	snprintf(child, sizeof child, "%s/child.vhd", tmpdir);
	snprintf(out, sizeof out, "%s/out.raw", tmpdir);
	vhd_create_opts co = { .size = 8ull << 20, .type = VHD_DYNAMIC };
	vhd_file *b = vhd_create(base, &co, &e);
	assert_non_null(b);
	uint8_t buf[4096];
	memset(buf, 'B', sizeof buf);
	assert_int_equal(vhd_write(b, 1000, buf, sizeof buf, &e), 0);
	vhd_close(b);
	vhd_create_opts cc = { .parent = base };
	vhd_file *c = vhd_create(child, &cc, &e);
	assert_non_null(c);
	assert_int_equal(vhd_size(c), 8ull << 20);
	/* 3 bytes inside a sector the parent wrote: the rest of the sector must survive */
	assert_int_equal(vhd_write(c, 1100, (const uint8_t *)"xyz", 3, &e), 0);
	uint8_t r[512];
	assert_int_equal(vhd_read(c, 1024, 512, r, &e), 0);
	assert_int_equal(r[0], 'B');
	assert_memory_equal(r + 76, "xyz", 3);
	assert_int_equal(r[79], 'B');
	vhd_close(c);

	vhd_open_opts oo = { 0 };
	vhd_file *l = vhd_open(child, &oo, &e);
	assert_non_null(l);
	assert_int_equal(vhd_resolve_chain(l, &oo, &e), 0);
	assert_non_null(l->parent);
	assert_int_equal(l->nproblems, 0);
	int calls = 0;
	vhd_flatten_opts fo = { .raw = 1, .progress = cancel_at_half, .progress_ctx = &calls };
	vhd_flatten_result res;
	assert_int_equal(vhd_flatten(l, out, &fo, &res, &e), -1);
	assert_string_equal(e.code, "ECANCELED");
	assert_int_equal(access(out, F_OK), -1);
	fo.progress = NULL;
	assert_int_equal(vhd_flatten(l, out, &fo, &res, &e), 0);
	assert_int_equal(res.virtual_size, 8ull << 20);
	assert_int_equal(res.blocks_written, 1);
	assert_int_equal(res.nzero, 0);
	vhd_flatten_result_free(&res);
	FILE *f = fopen(out, "rb");
	assert_non_null(f);
	fseek(f, 1099, SEEK_SET);
	char got[5];
	assert_int_equal(fread(got, 1, 5, f), 5);
	fclose(f);
	assert_memory_equal(got, "BxyzB", 5);
	vhd_close(l);
}

/* The whole output of a stream into malloc'd memory, read in odd-sized pieces. */
static uint8_t *drain(out_stream *s, uint64_t *len)
{
	uint8_t *all = malloc(s->length ? s->length : 1);
	assert_non_null(all);
	uint64_t got = 0;
	ssize_t n;
	while ((n = out_stream_read(s, all + got, 777777)) > 0)
		got += (uint64_t)n;
	assert_int_equal(n, 0);
	*len = got;
	return all;
}

static uint8_t *slurp(const char *path, uint64_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = (uint64_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *p = malloc(*len);
	assert_int_equal(fread(p, 1, *len, f), *len);
	fclose(f);
	return p;
}

/* Footer timestamp, checksum and UUID differ between two outputs of the same disk. */
static void mask_footer(uint8_t *f)
{
	memset(f + 24, 0, 4);
	memset(f + 64, 0, 20);
}

/* The VHD stream of a chain (with the zero-block pre-pass) is vhd_flatten's file byte for byte,
 * its length is what it promised, and without the pre-pass an allocated all-zero block is kept;
 * the raw stream is the raw flatten. */
static void test_stream_matches_flatten(void **state)
{
	vhd_err e;
	char base[300], child[300], out[300], raw[300];
	snprintf(base, sizeof base, "%s/sbase.vhd", tmpdir);
	snprintf(child, sizeof child, "%s/schild.vhd", tmpdir);
	snprintf(out, sizeof out, "%s/sout.vhd", tmpdir);
	snprintf(raw, sizeof raw, "%s/sout.raw", tmpdir);
	vhd_create_opts co = { .size = (9ull << 20) + 3 * 512, .type = VHD_DYNAMIC };
	vhd_file *b = vhd_create(base, &co, &e);
	assert_non_null(b);
	uint8_t buf[8192], zero[4096] = { 0 };
	memset(buf, 'S', sizeof buf);
	assert_int_equal(vhd_write(b, 0, buf, sizeof buf, &e), 0);
	assert_int_equal(vhd_write(b, (4ull << 20) + 512, zero, sizeof zero, &e), 0); /* allocated, all zero */
	vhd_close(b);
	vhd_create_opts cc = { .parent = base };
	vhd_file *c = vhd_create(child, &cc, &e);
	assert_non_null(c);
	assert_int_equal(vhd_write(c, (9ull << 20) + 100, buf, 1000, &e), 0); /* the partial last block */
	vhd_close(c);
	vhd_open_opts oo = { 0 };
	vhd_file *l = vhd_open(child, &oo, &e);
	assert_non_null(l);
	assert_int_equal(vhd_resolve_chain(l, &oo, &e), 0);
	vhd_flatten_opts fo = { 0 };
	vhd_flatten_result res;
	assert_int_equal(vhd_flatten(l, out, &fo, &res, &e), 0);
	vhd_flatten_result_free(&res);
	fo.raw = 1;
	assert_int_equal(vhd_flatten(l, raw, &fo, &res, &e), 0);
	vhd_flatten_result_free(&res);

	vhd_source vs;
	assert_int_equal(vhd_source_init(&vs, l, 0, &e), 0);
	out_stream_opts so = { .drop_zero = 1 };
	out_stream *s = vhd_stream_open(&vs.src, &so, &e);
	assert_non_null(s);
	uint64_t slen, flen, promised = s->length;
	uint8_t *sb = drain(s, &slen), *fb = slurp(out, &flen);
	assert_int_equal(slen, promised);
	assert_int_equal(slen, flen);
	mask_footer(sb);
	mask_footer(sb + slen - 512);
	mask_footer(fb);
	mask_footer(fb + flen - 512);
	assert_memory_equal(sb, fb, slen);
	out_stream_close(s);
	free(sb);

	so.drop_zero = 0;
	s = vhd_stream_open(&vs.src, &so, &e);
	assert_non_null(s);
	assert_true(s->length > flen); /* the allocated zero block goes along */
	free(drain(s, &slen));
	assert_int_equal(slen, s->length);
	out_stream_close(s);

	s = raw_stream_open(&vs.src, &e);
	assert_non_null(s);
	uint8_t *rb = drain(s, &slen), *rf = slurp(raw, &flen);
	assert_int_equal(slen, flen);
	assert_memory_equal(rb, rf, slen);
	out_stream_close(s);
	free(rb);
	free(rf);
	free(fb);
	vhd_source_free(&vs);
	vhd_close(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksum),
		cmocka_unit_test(test_footer_roundtrip),
		cmocka_unit_test(test_header_roundtrip),
		cmocka_unit_test(test_locators),
		cmocka_unit_test(test_bitmap_order),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_write_read_flatten),
		cmocka_unit_test(test_stream_matches_flatten),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
