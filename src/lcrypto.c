/*
 * salvage.crypto: digests, HMAC, Base64, random bytes (OpenSSL libcrypto) and
 * the Java-style URL encoding CloudStack signs with (src/crypto/encode.c).
 * Digests of strings return lower-case hex unless the last argument is "raw";
 * digests of files stream in 1 MiB blocks and never load the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lua.h"
#include "lauxlib.h"

#include "lutil.h"
#include "crypto/encode.h"

/* Push a digest as hex, or raw bytes when the argument at `rawarg` is "raw". */
static int push_digest(lua_State *L, const unsigned char *md, unsigned len, int rawarg)
{
	const char *mode = luaL_optstring(L, rawarg, "hex");
	if (strcmp(mode, "raw") == 0) {
		lua_pushlstring(L, (const char *)md, len);
	} else if (strcmp(mode, "hex") == 0) {
		char hex[2 * EVP_MAX_MD_SIZE + 1];
		salvage_hex(md, len, hex);
		lua_pushstring(L, hex);
	} else {
		return luaL_argerror(L, rawarg, "expected \"hex\" or \"raw\"");
	}
	return 1;
}

static int digest_string(lua_State *L, const EVP_MD *type)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	if (!EVP_Digest(s, n, md, &len, type, NULL))
		return luaL_error(L, "salvage.crypto: digest failed");
	return push_digest(L, md, len, 2);
}

static int crypto_sha256(lua_State *L) { return digest_string(L, EVP_sha256()); }
static int crypto_sha1(lua_State *L) { return digest_string(L, EVP_sha1()); }
static int crypto_md5(lua_State *L) { return digest_string(L, EVP_md5()); }

/* Streaming file digest. The optional progress function is called with
 * (done, total) every 64 MiB under lua_pcall; nothing from a library sits
 * between it and us, so a raise simply propagates after cleanup. */
static int digest_file(lua_State *L, const EVP_MD *type)
{
	const char *path = luaL_checkstring(L, 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return lu_fail_errno(L, errno, "%s", path);
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t bufsize = 1 << 20;
	unsigned char *buf = malloc(bufsize);
	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, type, NULL)) {
		EVP_MD_CTX_free(ctx);
		free(buf);
		close(fd);
		return luaL_error(L, "salvage.crypto: out of memory");
	}
	int err = 0;
	for (;;) {
		ssize_t r = read(fd, buf, bufsize);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		if (r == 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)r);
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	EVP_DigestFinal_ex(ctx, md, &len);
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
	if (err)
		return lu_fail_errno(L, err, "%s", path);
	return push_digest(L, md, len, 2);
}

static int crypto_sha256_file(lua_State *L) { return digest_file(L, EVP_sha256()); }
static int crypto_md5_file(lua_State *L) { return digest_file(L, EVP_md5()); }

static int hmac(lua_State *L, const EVP_MD *type)
{
	size_t klen, dlen;
	const char *key = luaL_checklstring(L, 1, &klen);
	const char *data = luaL_checklstring(L, 2, &dlen);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	if (!HMAC(type, key, (int)klen, (const unsigned char *)data, dlen, md, &len))
		return luaL_error(L, "salvage.crypto: HMAC failed");
	return push_digest(L, md, len, 3);
}

static int crypto_hmac_sha1(lua_State *L) { return hmac(L, EVP_sha1()); }
static int crypto_hmac_sha256(lua_State *L) { return hmac(L, EVP_sha256()); }

static int crypto_base64(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, SALVAGE_BASE64_MAX(n));
	size_t len = salvage_base64((const unsigned char *)s, n, out);
	luaL_pushresultsize(&b, len);
	return 1;
}

static int crypto_base64_decode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
	size_t len = salvage_base64_decode(s, n, out);
	if (len == (size_t)-1) {
		luaL_pushresultsize(&b, 0);
		return lu_fail(L, "EINVAL", "base64: invalid character");
	}
	luaL_pushresultsize(&b, len);
	return 1;
}

static int crypto_hex(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, 2 * n + 1);
	salvage_hex((const unsigned char *)s, n, out);
	luaL_pushresultsize(&b, 2 * n);
	return 1;
}

static int crypto_urlencode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, SALVAGE_URLENCODE_MAX(n));
	size_t len = salvage_urlencode_java((const unsigned char *)s, n, out);
	luaL_pushresultsize(&b, len);
	return 1;
}

static int crypto_random_bytes(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	luaL_argcheck(L, n >= 0 && n <= (1 << 20), 1, "between 0 and 1 MiB");
	luaL_Buffer b;
	unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
	if (n > 0 && RAND_bytes(out, (int)n) != 1)
		return luaL_error(L, "salvage.crypto: no randomness available");
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

static const luaL_Reg crypto_funcs[] = {
	{"sha256", crypto_sha256},
	{"sha1", crypto_sha1},
	{"md5", crypto_md5},
	{"sha256_file", crypto_sha256_file},
	{"md5_file", crypto_md5_file},
	{"hmac_sha1", crypto_hmac_sha1},
	{"hmac_sha256", crypto_hmac_sha256},
	{"base64", crypto_base64},
	{"base64_decode", crypto_base64_decode},
	{"hex", crypto_hex},
	{"urlencode", crypto_urlencode},
	{"random_bytes", crypto_random_bytes},
	{NULL, NULL},
};

LUAMOD_API int luaopen_salvage_crypto(lua_State *L)
{
	luaL_newlib(L, crypto_funcs);
	return 1;
}
