/*
 * salvage.stream: an output format's bytes (a standalone VHD of a chain, ...)
 * as a Lua value of known length, read once, in order, in C.
 *
 *   local s <close> = assert(vhd.stream(leaf [, opts]))   -- made by a format binding
 *   s:length()  -> exact byte count, known before the first byte
 *   s:format()  -> "vhd", ...        s:id() -> the output's UUID or nil
 *   s:write_to(path | "-")  -> {bytes =, sha256 =} | nil, msg, code
 *       "-" is standard output; a path gets a temporary name, fsync and rename. Ctrl-C
 *       (or SIGTERM) stops it within 1 MiB: nil, "PATH: interrupted", "EINTR".
 *   s:tee(path) -> s: a copy of every byte read also goes to path (temporary name, fsync and
 *       rename before the last bytes are handed out; removed if not read to the end) | nil, msg, code
 *   s:read(n)   -> up to n bytes | nil at the end | nil, msg, code   (tests, small consumers)
 *   s:close()   (also __close and __gc; idempotent)
 *   require("salvage.stream").type(v) -> "stream" | "closed stream" | nil
 *   http.request{..., body_stream = s}  sends it (salvage.http)
 *
 * A stream is read once: after write_to, an upload, or any read, a second
 * consumer gets an error (it would otherwise send a truncated body).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lua.h"
#include "lauxlib.h"

#include "lstream.h"
#include "lutil.h"
#include "vhd/vhd.h"

#define COPY_CHUNK (1u << 20)

void lstream_close(lstream *b)
{
	out_stream_close(b->s);
	b->s = NULL;
	if (b->release)
		b->release(b->ctx);
	b->release = NULL;
	b->ctx = NULL;
}

static int s_close(lua_State *L)
{
	lstream_close(luaL_checkudata(L, 1, LSTREAM_MT));
	return 0;
}

static lstream *check_open(lua_State *L, int idx)
{
	lstream *b = luaL_checkudata(L, idx, LSTREAM_MT);
	if (b->s == NULL)
		luaL_error(L, "attempt to use a closed salvage.stream");
	return b;
}

lstream *lstream_check_unread(lua_State *L, int idx)
{
	lstream *b = check_open(L, idx);
	if (b->used || b->s->pos != 0)
		luaL_error(L, "salvage.stream already read: a stream is sent once; make a new one");
	return b;
}

static int s_length(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)check_open(L, 1)->s->length);
	return 1;
}

static int s_format(lua_State *L)
{
	lua_pushstring(L, check_open(L, 1)->s->format);
	return 1;
}

static int s_id(lua_State *L)
{
	lstream *b = check_open(L, 1);
	if (b->id[0])
		lua_pushstring(L, b->id);
	else
		lua_pushnil(L);
	return 1;
}

static int fail_err(lua_State *L, const stream_err *e)
{
	lua_pushnil(L);
	lua_pushstring(L, e->msg);
	lua_pushstring(L, e->code[0] ? e->code : "EIO");
	return 3;
}

static int s_read(lua_State *L)
{
	lstream *b = check_open(L, 1);
	lua_Integer n = luaL_checkinteger(L, 2);
	luaL_argcheck(L, n > 0 && n <= (64 << 20), 2, "read size must be 1 byte to 64 MiB");
	b->used = 1;
	luaL_Buffer buf;
	char *p = luaL_buffinitsize(L, &buf, (size_t)n);
	ssize_t got = out_stream_read(b->s, (uint8_t *)p, (size_t)n);
	if (got < 0)
		return fail_err(L, &b->s->err);
	if (got == 0) {
		lua_pushnil(L);
		return 1;
	}
	luaL_pushresultsize(&buf, (size_t)got);
	return 1;
}

/* Where write_to puts the bytes; all C, so nothing can raise while it is open. */
typedef struct sink {
	int fd;
	char *tmp;                /* NULL for standard output */
	const char *path;
	EVP_MD_CTX *md;
	uint8_t *buf;
	char code[24], msg[512];
} sink;

static int sink_fail(sink *k, const char *what)
{
	int err = errno;
	snprintf(k->code, sizeof k->code, "%s", lu_errname(err));
	snprintf(k->msg, sizeof k->msg, "%s: %s: %s", k->path, what, strerror(err));
	return -1;
}

static int sink_open(sink *k, const char *path)
{
	k->path = path;
	k->md = EVP_MD_CTX_new();
	k->buf = malloc(COPY_CHUNK);
	if (!k->md || !k->buf || !EVP_DigestInit_ex(k->md, EVP_sha256(), NULL)) {
		errno = ENOMEM;
		return sink_fail(k, "starting");
	}
	if (strcmp(path, "-") == 0) {
		k->fd = STDOUT_FILENO;
		return 0;
	}
	size_t n = strlen(path) + 32;
	if ((k->tmp = malloc(n)) == NULL) {
		errno = ENOMEM;
		return sink_fail(k, "starting");
	}
	snprintf(k->tmp, n, "%s.salvage-XXXXXX", path);
	k->fd = mkstemp(k->tmp);
	if (k->fd < 0) {
		free(k->tmp);
		k->tmp = NULL;
		return sink_fail(k, "cannot create temporary output");
	}
	(void)fchmod(k->fd, 0644);
	return 0;
}

static int sink_write(sink *k, const uint8_t *p, size_t n)
{
	EVP_DigestUpdate(k->md, p, n);
	while (n > 0) {
		ssize_t w = write(k->fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return sink_fail(k, "writing");
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int sink_commit(sink *k)
{
	if (k->tmp == NULL)
		return 0;
	if (fsync(k->fd) != 0)
		return sink_fail(k, "fsync");
	int rc = close(k->fd);
	k->fd = -1;
	if (rc != 0)
		return sink_fail(k, "close");
	if (rename(k->tmp, k->path) != 0)
		return sink_fail(k, "rename");
	free(k->tmp);
	k->tmp = NULL;
	return 0;
}

static void sink_free(sink *k)
{
	if (k->tmp) {
		if (k->fd >= 0)
			close(k->fd);
		unlink(k->tmp);
		free(k->tmp);
	}
	EVP_MD_CTX_free(k->md);
	free(k->buf);
}

static int copy_all(out_stream *s, sink *k)
{
	for (;;) {
		if (lu_interrupted()) {   /* Ctrl-C or SIGTERM: stop within a chunk (the hook raises next) */
			snprintf(k->code, sizeof k->code, "EINTR");
			snprintf(k->msg, sizeof k->msg, "%s: interrupted", k->path);
			return -1;
		}
		ssize_t n = out_stream_read(s, k->buf, COPY_CHUNK);
		if (n < 0) {
			snprintf(k->code, sizeof k->code, "%s", s->err.code);
			snprintf(k->msg, sizeof k->msg, "%s", s->err.msg);
			return -1;
		}
		if (n == 0)
			return s->pos == s->length ? 0 : (errno = EIO, sink_fail(k, "stream ended early"));
		if (sink_write(k, k->buf, (size_t)n) != 0)
			return -1;
	}
}

static int s_write_to(lua_State *L)
{
	lstream *b = lstream_check_unread(L, 1);
	const char *path = luaL_checkstring(L, 2);
	b->used = 1;
	sink k = { .fd = -1 };
	int rc = sink_open(&k, path) == 0 && copy_all(b->s, &k) == 0 && sink_commit(&k) == 0 ? 0 : -1;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	if (rc == 0)
		EVP_DigestFinal_ex(k.md, md, &mdlen);
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	hex[2 * mdlen] = '\0';
	uint64_t bytes = b->s->pos;
	sink_free(&k);
	if (rc != 0) {
		lua_pushnil(L);
		lua_pushstring(L, k.msg);
		lua_pushstring(L, k.code[0] ? k.code : "EIO");
		return 3;
	}
	lua_createtable(L, 0, 2);
	lua_pushinteger(L, (lua_Integer)bytes);
	lua_setfield(L, -2, "bytes");
	lua_pushstring(L, hex);
	lua_setfield(L, -2, "sha256");
	return 1;
}

/* s:tee(path): from now on a copy of every byte read goes to path (see tee_stream_open). */
static int s_tee(lua_State *L)
{
	lstream *b = lstream_check_unread(L, 1);
	const char *path = luaL_checkstring(L, 2);
	vhd_err e;
	out_stream *t = tee_stream_open(b->s, path, &e);
	if (t == NULL)
		return lu_fail(L, e.code, "%s", e.msg);
	b->s = t;
	lua_settop(L, 1);
	return 1;
}

static int s_tostring(lua_State *L)
{
	lstream *b = luaL_checkudata(L, 1, LSTREAM_MT);
	if (b->s)
		lua_pushfstring(L, "salvage.stream (%s, %I bytes, at %I)", b->s->format, (lua_Integer)b->s->length,
				(lua_Integer)b->s->pos);
	else
		lua_pushliteral(L, "salvage.stream (closed)");
	return 1;
}

static const luaL_Reg methods[] = {
	{ "length", s_length },
	{ "format", s_format },
	{ "id", s_id },
	{ "read", s_read },
	{ "write_to", s_write_to },
	{ "tee", s_tee },
	{ "close", s_close },
	{ NULL, NULL },
};

/* Any binding may make the first stream: the class is registered on first use. */
static void ensure_mt(lua_State *L)
{
	if (luaL_getmetatable(L, LSTREAM_MT) == LUA_TNIL) {
		lua_pop(L, 1);
		lu_new_class(L, LSTREAM_MT, methods, s_close, s_tostring);
		luaL_getmetatable(L, LSTREAM_MT);
	}
}

lstream *lstream_new(lua_State *L, int keep)
{
	if (keep)
		keep = lua_absindex(L, keep);
	lstream *b = lua_newuserdatauv(L, sizeof *b, 1);
	memset(b, 0, sizeof *b);
	ensure_mt(L);
	lua_setmetatable(L, -2);
	if (keep) {
		lua_pushvalue(L, keep);
		lua_setiuservalue(L, -2, 1);
	}
	return b;
}

/* stream.type(v) -> "stream" | "closed stream" | nil, like io.type */
static int l_type(lua_State *L)
{
	lstream *b = luaL_testudata(L, 1, LSTREAM_MT);
	if (b == NULL)
		lua_pushnil(L);
	else
		lua_pushstring(L, b->s ? "stream" : "closed stream");
	return 1;
}

LUAMOD_API int luaopen_salvage_stream(lua_State *L)
{
	ensure_mt(L);
	lua_pop(L, 1);
	lua_newtable(L);
	lua_pushcfunction(L, l_type);
	lua_setfield(L, -2, "type");
	return 1;
}
