/* Encodings used to sign CloudStack requests (src/crypto/encode.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "crypto/encode.h"

static void test_urlencode_java(void **state)
{
	(void)state;
	char out[SALVAGE_URLENCODE_MAX(64)];
	const struct { const char *in, *want; } v[] = {
		{"", ""},
		{"azAZ09.-*_", "azAZ09.-*_"},
		{"~", "%7E"},
		{" ", "%20"},
		{"a+b/c=d&e?f%g", "a%2Bb%2Fc%3Dd%26e%3Ff%25g"},
		{"\xc3\xa9\xe4\xb8\xad", "%C3%A9%E4%B8%AD"},
		{"2030-01-01T00:00:00+0000", "2030-01-01T00%3A00%3A00%2B0000"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		size_t n = salvage_urlencode_java((const unsigned char *)v[i].in, strlen(v[i].in), out);
		assert_string_equal(out, v[i].want);
		assert_int_equal(n, strlen(v[i].want));
	}
	/* every byte outside the safe set is escaped, NUL included */
	const unsigned char bin[] = {0, 0x7f, 0x80, 0xff};
	salvage_urlencode_java(bin, 4, out);
	assert_string_equal(out, "%00%7F%80%FF");
}

static void test_hex(void **state)
{
	(void)state;
	char out[16];
	salvage_hex((const unsigned char *)"\x00\xab\x10", 3, out);
	assert_string_equal(out, "00ab10");
}

static void test_base64_rfc4648(void **state)
{
	(void)state;
	const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (int i = 0; i < 7; i++) {
		char out[SALVAGE_BASE64_MAX(8)];
		unsigned char back[16];
		size_t n = salvage_base64((const unsigned char *)plain[i], strlen(plain[i]), out);
		assert_string_equal(out, enc[i]);
		assert_int_equal(n, strlen(enc[i]));
		size_t m = salvage_base64_decode(enc[i], strlen(enc[i]), back);
		assert_int_equal(m, strlen(plain[i]));
		assert_memory_equal(back, plain[i], m);
	}
}

static void test_base64_decode_rejects(void **state)
{
	(void)state;
	unsigned char out[16];
	assert_int_equal(salvage_base64_decode("Zm9v!", 5, out), (size_t)-1);
	assert_int_equal(salvage_base64_decode("Z", 1, out), (size_t)-1);
	assert_int_equal(salvage_base64_decode("Zm 9", 4, out), (size_t)-1);
}

static void test_base64_roundtrip_all_bytes(void **state)
{
	(void)state;
	unsigned char in[256], back[260];
	char enc[SALVAGE_BASE64_MAX(256)];
	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)i;
	for (size_t len = 0; len <= 256; len += 17) {
		size_t n = salvage_base64(in, len, enc);
		assert_int_equal(salvage_base64_decode(enc, n, back), len);
		assert_memory_equal(back, in, len);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urlencode_java),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_base64_rfc4648),
		cmocka_unit_test(test_base64_decode_rejects),
		cmocka_unit_test(test_base64_roundtrip_all_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
