/* Byte encodings used to sign CloudStack requests: Java-style URL encoding,
 * hex and Base64. Pure C, no allocation: callers size the output. */
#ifndef SALVAGE_CRYPTO_ENCODE_H
#define SALVAGE_CRYPTO_ENCODE_H

#include <stddef.h>

/* Longest output of salvage_urlencode_java for n input bytes. */
#define SALVAGE_URLENCODE_MAX(n) ((n) * 3 + 1)
/* java.net.URLEncoder.encode(s, "UTF-8") then the CloudStack fix-ups: only
 * A-Z a-z 0-9 . - * _ stay, space is %20 (not +), every other byte is %XX in
 * upper case (so '~' is %7E). Returns the output length; out is NUL-ended. */
size_t salvage_urlencode_java(const unsigned char *in, size_t n, char *out);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void salvage_hex(const unsigned char *in, size_t n, char *out);

#define SALVAGE_BASE64_MAX(n) ((((n) + 2) / 3) * 4 + 1)
/* Standard Base64 with padding (RFC 4648 section 4). Returns length. */
size_t salvage_base64(const unsigned char *in, size_t n, char *out);

/* Decode standard Base64 (padding optional, no whitespace). Returns the
 * decoded length, or (size_t)-1 on a character outside the alphabet. out needs
 * n / 4 * 3 + 3 bytes. */
size_t salvage_base64_decode(const char *in, size_t n, unsigned char *out);

#endif
