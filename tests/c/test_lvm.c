/* Unit tests of the pure LVM2 metadata reader (src/lvm/): CRC, label, mda header, text parser,
 * extent mapping, and whole synthetic devices (metadata wrapping round the circular buffer,
 * damaged copies, LVs past the end). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lvm/lvm.h"

static char tmpdir[256];

static int setup_dir(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/salvage-test-lvm-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

#define PVID "abcdefABCDEF0123456789ghijklmnop"
#define MDA_AT 4096u
#define MDA_SIZE (64u * 1024)
#define PE_START (1u << 20)
#define EXTENT (64u * 1024)   /* 128 sectors */

/* label in sector 1: one data area at PE_START, one metadata area at MDA_AT */
static void build_label(uint8_t *sec, uint64_t dev_size)
{
	memset(sec, 0, 512);
	memcpy(sec, "LABELONE", 8);
	put64(sec + 8, 1);
	put32(sec + 20, 32);
	memcpy(sec + 24, "LVM2 001", 8);
	uint8_t *p = sec + 32;
	memcpy(p, PVID, 32);
	put64(p + 32, dev_size);
	put64(p + 40, PE_START);  /* data area, size 0 = to the end */
	put64(p + 56, 0);          /* end of data areas */
	put64(p + 72, MDA_AT);
	put64(p + 80, MDA_SIZE);
	put64(p + 88, 0);          /* end of metadata areas */
	put32(sec + 16, lvm_crc(LVM_INITIAL_CRC, sec + 20, 492));
}

static void build_mda(uint8_t *h, uint64_t off, uint64_t size, uint32_t crc)
{
	memset(h, 0, 512);
	memcpy(h + 4, " LVM2 x[5A%r0N*>", 16);
	put32(h + 20, 1);
	put64(h + 24, MDA_AT);
	put64(h + 32, MDA_SIZE);
	put64(h + 40, off);
	put64(h + 48, size);
	put32(h + 56, crc);
	put32(h, lvm_crc(LVM_INITIAL_CRC, h + 4, 508));
}

static void test_crc(void **state)
{
	assert_int_equal(lvm_crc(LVM_INITIAL_CRC, (const uint8_t *)"", 0), LVM_INITIAL_CRC);
	/* = zlib crc32(buf, seed ^ ~0) ^ ~0, computed independently */
	assert_int_equal(lvm_crc(LVM_INITIAL_CRC, (const uint8_t *)"123456789", 9), 0x4991cf02u);
}

static void test_label(void **state)
{
	uint8_t b[2048] = { 0 };
	lvm_label l;
	lvm_err e;
	assert_int_equal(lvm_label_find(b, sizeof b, &l, &e), -1);
	assert_string_equal(e.code, "ENOLABEL");
	build_label(b + 512, 1 << 24);
	assert_int_equal(lvm_label_find(b, sizeof b, &l, &e), 0);
	assert_int_equal(l.sector, 1);
	assert_string_equal(l.pv_id, PVID);
	assert_int_equal(l.ndata, 1);
	assert_int_equal(l.data[0].offset, PE_START);
	assert_int_equal(l.nmeta, 1);
	assert_int_equal(l.meta[0].offset, MDA_AT);
	assert_int_equal(l.meta[0].size, MDA_SIZE);
	b[512 + 100] ^= 1;
	assert_int_equal(lvm_label_find(b, sizeof b, &l, &e), -1);
	assert_string_equal(e.code, "ECHECKSUM");
	/* a label copied to another sector says where it belongs */
	build_label(b + 512, 1 << 24);
	memcpy(b + 1024, b + 512, 512);
	memset(b + 512, 0, 512);
	assert_int_equal(lvm_label_find(b, sizeof b, &l, &e), -1);
	assert_string_equal(e.code, "EFORMAT");
	assert_non_null(strstr(e.msg, "belongs in sector 1"));
	/* area lists that never end inside the sector */
	build_label(b + 512, 1 << 24);
	memset(b + 512 + 72, 0xAB, 440);
	put32(b + 512 + 16, lvm_crc(LVM_INITIAL_CRC, b + 512 + 20, 492));
	memset(b + 1024, 0, 512);
	assert_int_equal(lvm_label_find(b, sizeof b, &l, &e), -1);
	assert_non_null(strstr(e.msg, "not terminated"));
}

static void test_mda(void **state)
{
	uint8_t h[512];
	lvm_mda m;
	lvm_err e;
	build_mda(h, 512, 100, 0x1234);
	assert_int_equal(lvm_mda_parse(h, MDA_AT, &m, &e), 0);
	assert_int_equal(m.nrlocn, 1);
	assert_int_equal(m.rlocn[0].offset, 512);
	assert_int_equal(m.rlocn[0].size, 100);
	assert_int_equal(m.rlocn[0].checksum, 0x1234);
	assert_int_equal(lvm_mda_parse(h, 8192, &m, &e), -1);
	assert_non_null(strstr(e.msg, "says it starts at byte 4096"));
	h[300] ^= 1;
	assert_int_equal(lvm_mda_parse(h, MDA_AT, &m, &e), -1);
	assert_string_equal(e.code, "ECHECKSUM");
	h[5] = 'X';
	assert_int_equal(lvm_mda_parse(h, MDA_AT, &m, &e), -1);
	assert_non_null(strstr(e.msg, "wrong magic"));
}

/* a VG with a split LV (segments listed out of logical order), a raw LV, and oddities */
static const char *VG_TEXT =
	"# comment\n"
	"VG_T {\n"
	"id = \"aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg\"\n"
	"seqno = 7\n"
	"status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\n"
	"extent_size = 128 # sectors\n"
	"physical_volumes {\n"
	" pv0 { id = \"abcdef-ABCD-EF01-2345-6789-ghij-klmnop\" device = \"/dev/x\" status = [\"ALLOCATABLE\"]\n"
	"       dev_size = 32768 pe_start = 2048 pe_count = 200 }\n"
	"}\n"
	"logical_volumes {\n"
	" VHD-a { id = \"x\" status = [\"READ\", \"VISIBLE\"] tags = [\"t1\", \"a \\\"quoted\\\" tag\"] segment_count = 2\n"
	"   segment2 { start_extent = 2 extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 3] }\n"
	"   segment1 { start_extent = 0 extent_count = 2 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 10] }\n"
	" }\n"
	" LV-b { id = \"y\" status = [\"READ\", \"WRITE\", \"VISIBLE\"] segment_count = 1\n"
	"   segment1 { start_extent = 0 extent_count = 2 type = \"striped\" stripe_count = 2 stripes = [\"pv0\", 20, \"pv0\", 30] }\n"
	" }\n"
	" gap { id = \"z\" status = [] segment_count = 2\n"
	"   segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 40] }\n"
	"   segment2 { start_extent = 2 extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 41] }\n"
	" }\n"
	" far { id = \"w\" status = [] segment_count = 1\n"
	"   segment1 { start_extent = 0 extent_count = 10 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 195] }\n"
	" }\n"
	"}\n"
	"}\n"
	"contents = \"Text Format Volume Group\"\nversion = 1\n";

static void test_text(void **state)
{
	lvm_vg vg;
	lvm_err e;
	assert_int_equal(lvm_vg_parse(VG_TEXT, strlen(VG_TEXT) + 1, &vg, &e), 0);
	assert_string_equal(vg.name, "VG_T");
	assert_int_equal(vg.seqno, 7);
	assert_int_equal(vg.extent_size, EXTENT);
	assert_int_equal(vg.npvs, 1);
	assert_int_equal(vg.pvs[0].pe_start, PE_START);
	assert_int_equal(vg.nlvs, 4);
	lvm_lv *a = &vg.lvs[0];
	assert_string_equal(a->name, "VHD-a");
	assert_true(a->read && !a->write && a->visible);
	assert_int_equal(a->ntags, 2);
	assert_string_equal(a->tags[1], "a \"quoted\" tag");
	assert_int_equal(a->nsegs, 2);
	assert_int_equal(a->segs[0].start_extent, 0);   /* sorted by logical extent */
	assert_int_equal(a->segs[0].pe, 10);
	assert_int_equal(a->size, 3 * EXTENT);
	assert_string_equal(a->problem, "");
	uint64_t at, run;
	int pv;
	assert_int_equal(lvm_lv_map(&vg, a, EXTENT + 5, &at, &run, &pv), 0);
	assert_int_equal(at, PE_START + 11ull * EXTENT + 5);
	assert_int_equal(run, EXTENT - 5);
	assert_int_equal(lvm_lv_map(&vg, a, 2 * EXTENT, &at, &run, &pv), 0);
	assert_int_equal(at, PE_START + 3ull * EXTENT);
	assert_int_equal(lvm_lv_map(&vg, a, 3 * EXTENT, &at, &run, &pv), -1);
	assert_string_equal(vg.lvs[1].problem_code, "EUNSUPPORTED");
	assert_non_null(strstr(vg.lvs[1].problem, "2 stripes"));
	assert_string_equal(vg.lvs[2].problem_code, "EMETADATA");
	assert_non_null(strstr(vg.lvs[2].problem, "gaps"));
	assert_string_equal(vg.lvs[3].problem_code, "ERANGE");
	lvm_vg_free(&vg);
}

static void expect_bad(const char *text, const char *needle)
{
	lvm_vg vg;
	lvm_err e;
	assert_int_equal(lvm_vg_parse(text, strlen(text), &vg, &e), -1);
	if (strstr(e.msg, needle) == NULL)
		fail_msg("'%s' not in '%s'", needle, e.msg);
}

static void test_text_errors(void **state)
{
	expect_bad("VG { id = \"x\n", "unterminated string");
	expect_bad("VG { seqno = 1 extent_size = 8 physical_volumes { }\n", "missing '}'");
	expect_bad("a = 1\n", "no VG section");
	expect_bad("A { seqno = 1 extent_size = 8 physical_volumes {} } B { }", "more than one VG");
	expect_bad("VG { seqno = 1 }", "extent_size");
	expect_bad("VG { seqno = 1 extent_size = 0 physical_volumes {} }", "extent_size");
	expect_bad("VG { seqno = 99999999999999999999999 }", "out of range");
	expect_bad("VG { seqno = 1 extent_size = 8 physical_volumes { pv0 { id = \"p\" pe_start = 1 pe_count = 9 } }\n"
		   "logical_volumes { l { segment1 { start_extent = 0 extent_count = 1 type = \"striped\" "
		   "stripe_count = 1 stripes = [\"pv9\", 0] } } } }", "does not list");
	char deep[400] = "VG { ";
	for (int i = 0; i < 40; i++)
		strcat(deep, "a { ");
	expect_bad(deep, "nested too deeply");
	expect_bad("VG { x = [1, 2 }", "expected ',' or ']'");
}

/* a whole device: label, mda whose text wraps round the circular buffer, LVs */
static char *make_device(const char *name, const char *text, uint64_t text_off, uint64_t size)
{
	static char path[512];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w+b");
	assert_non_null(f);
	assert_int_equal(ftruncate(fileno(f), (off_t)size), 0);
	uint8_t sec[512];
	build_label(sec, size);
	assert_int_equal(pwrite(fileno(f), sec, 512, 512), 512);
	size_t len = strlen(text) + 1;
	uint64_t first = MDA_SIZE - text_off < len ? MDA_SIZE - text_off : len;
	assert_int_equal(pwrite(fileno(f), text, first, MDA_AT + text_off), (ssize_t)first);
	if (first < len)
		assert_int_equal(pwrite(fileno(f), text + first, len - first, MDA_AT + 512), (ssize_t)(len - first));
	build_mda(sec, text_off, len, lvm_crc(LVM_INITIAL_CRC, (const uint8_t *)text, len));
	assert_int_equal(pwrite(fileno(f), sec, 512, MDA_AT), 512);
	/* every extent starts with its own number, to see the mapping */
	for (uint32_t pe = 0; pe < 200 && PE_START + (uint64_t)(pe + 1) * EXTENT <= size; pe++) {
		char tag[32];
		int n = snprintf(tag, sizeof tag, "PE%u.", pe);
		assert_int_equal(pwrite(fileno(f), tag, (size_t)n, PE_START + (uint64_t)pe * EXTENT), n);
	}
	fclose(f);
	return path;
}

static const char *SMALL =
	"VG_S {\nid = \"v\"\nseqno = %d\nextent_size = 128\n"
	"physical_volumes { pv0 { id = \"abcdef-ABCD-EF01-2345-6789-ghij-klmnop\" pe_start = 2048 pe_count = 200 } }\n"
	"logical_volumes {\n VHD-a { id = \"x\" status = [\"READ\"] segment_count = 2\n"
	"   segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 7] }\n"
	"   segment2 { start_extent = 1 extent_count = 2 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 2] }\n"
	" }\n}\n}\n";

static void test_device_wrapping(void **state)
{
	char text[2048];
	snprintf(text, sizeof text, SMALL, 3);
	/* starts 300 bytes before the end of the area: the rest is at area start + 512 */
	char *p = make_device("wrap.img", text, MDA_SIZE - 512 + 212, 8u << 20);
	lvm_err e;
	lvm_dev *d = lvm_open(p, &e);
	if (!d)
		fail_msg("%s", e.msg);
	assert_int_equal(d->vg.seqno, 3);
	assert_int_equal(d->from_old_copy, 0);
	int i = lvm_find_lv(d, "VHD-a");
	assert_int_equal(i, 0);
	char buf[16];
	/* a read across the segment boundary: end of PE 7, then PE 2 */
	char big[EXTENT + 8];
	assert_int_equal(lvm_lv_pread(d, 0, big, sizeof big, 0, &e), (ssize_t)sizeof big);
	assert_memory_equal(big, "PE7.", 4);
	assert_memory_equal(big + EXTENT, "PE2.", 4);
	assert_int_equal(lvm_lv_pread(d, 0, buf, 4, 2 * EXTENT, &e), 4);
	assert_memory_equal(buf, "PE3.", 4);
	/* past the LV's end: short */
	assert_int_equal(lvm_lv_pread(d, 0, buf, 16, 3 * EXTENT - 8, &e), 8);
	lvm_close(d);
}

static void test_device_fallback_and_range(void **state)
{
	char text[2048], old[2048];
	snprintf(old, sizeof old, SMALL, 1);
	snprintf(text, sizeof text, SMALL, 2);
	char *p = make_device("fallback.img", text, 4096, 8u << 20);
	/* an older copy earlier in the buffer, then damage to the current one */
	FILE *f = fopen(p, "r+b");
	assert_int_equal(pwrite(fileno(f), old, strlen(old) + 1, MDA_AT + 1024), (ssize_t)strlen(old) + 1);
	assert_int_equal(pwrite(fileno(f), "X", 1, MDA_AT + 4096 + 30), 1);
	fclose(f);
	lvm_err e;
	lvm_dev *d = lvm_open(p, &e);
	if (!d)
		fail_msg("%s", e.msg);
	assert_int_equal(d->vg.seqno, 1);
	assert_int_equal(d->from_old_copy, 1);
	assert_int_equal(d->nwarnings, 1);
	assert_non_null(strstr(d->warnings[0], "bad checksum"));
	assert_non_null(strstr(d->warnings[0], "seqno 1"));
	lvm_close(d);
	/* without an older copy: refused */
	p = make_device("nocopy.img", text, 4096, 8u << 20);
	f = fopen(p, "r+b");
	assert_int_equal(pwrite(fileno(f), "X", 1, MDA_AT + 4096 + 30), 1);
	fclose(f);
	assert_null(lvm_open(p, &e));
	assert_string_equal(e.code, "ECHECKSUM");
	assert_non_null(strstr(e.msg, "refusing to guess"));
	/* a device cut short: the LV whose extents lie past its end is unreadable, by name */
	p = make_device("short.img", text, 4096, PE_START + 5ull * EXTENT);
	d = lvm_open(p, &e);
	assert_non_null(d);
	assert_string_equal(d->vg.lvs[0].problem_code, "ERANGE");
	assert_non_null(strstr(d->vg.lvs[0].problem, "past the end"));
	char buf[4];
	assert_int_equal(lvm_lv_pread(d, 0, buf, 4, 0, &e), -1);
	assert_string_equal(e.code, "ERANGE");
	lvm_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc),
		cmocka_unit_test(test_label),
		cmocka_unit_test(test_mda),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_text_errors),
		cmocka_unit_test(test_device_wrapping),
		cmocka_unit_test(test_device_fallback_and_range),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
