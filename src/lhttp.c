/*
 * salvage.http: HTTP(S) requests over libcurl.
 *
 *   http.request{method=, url=, headers={k=v | "K: v"}, body= | body_file= | body_stream= | form={...},
 *                output_file=, timeout=, connect_timeout=, stall_timeout=, upload_buffer=,
 *                verify_tls=true, cafile=, fresh=false, progress=fn}
 *     -> {status=, headers={lower-case name = value}, body=, url=, uploaded=, downloaded=, seconds=,
 *         sent_sha256= (body_stream or a stream form part: sha256 of the bytes sent)}
 *      | nil, "http: why", CODE
 *   form entries: {name=, value=} | {name=, file=, filename=, type=} | {name=, stream=, filename=, type=}
 *                 | name = value
 *   http.client() -> handle keeping connections alive; handle:request{...}; handle:close()
 *
 * Uploads stream with a Content-Length, never chunked, never in memory:
 * body_file and file parts from disk, body_stream and stream parts from a
 * salvage.stream (src/lstream.h) through libcurl's read callback in C, the
 * sha256 of what was sent computed as it goes. A stream is sent once: curl
 * may not rewind it, so a failed transfer needs a new stream (and, for
 * CloudStack's single-use POST upload URLs, a new URL).
 * fresh = true: a new connection, closed after the request (CURLOPT_FRESH_CONNECT
 * and CURLOPT_FORBID_REUSE), so that a state-changing POST is never sent on a
 * kept-alive connection the server may already have closed (curl would re-send it).
 * A stop signal (Ctrl-C, SIGTERM) seen by the host aborts a transfer within a
 * second, progress function or not: nil, "http: URL: interrupted", "EINTR".
 *
 * Three steps: every option is read from Lua into a Request (strings anchored
 * on the stack; unknown options raise), then curl is set up, performed and
 * cleaned up with no Lua call that can raise (the progress function runs
 * under lua_pcall: its error is stored, the transfer aborted, and the error
 * raised again once curl's objects are freed), then the result is pushed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "lua.h"
#include "lauxlib.h"

#include "lstream.h"
#include "lutil.h"

#define HTTP_MT "salvage.http"
#define MAX_HEADERS 64
#define MAX_PARTS 32

typedef struct {
	CURL *curl;
} Client;

/* growable byte buffer filled by callbacks; malloc, never Lua */
typedef struct {
	char *p;
	size_t len, cap;
	int oom;
} Buf;

static void buf_add(Buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* One form part, as read from Lua. */
typedef struct {
	const char *name, *value, *file, *filename, *type;
	size_t value_len;
	out_stream *stream;
} Part;

/* Everything a request needs, read from Lua before curl is touched. Strings
 * point into Lua values anchored on the stack for the whole call. */
typedef struct {
	const char *url, *method, *body, *body_file, *output_file, *cafile;
	size_t body_len;
	out_stream *stream;        /* body_stream, or the one stream form part */
	lstream *stream_box;
	int has_form, nparts, nheaders;
	Part parts[MAX_PARTS];
	const char *headers[MAX_HEADERS];
	double timeout, connect_timeout, stall_timeout, upload_buffer;
	int verify, fresh, progress_idx;
} Request;

typedef struct {
	lua_State *L;
	int progress_idx;      /* stack index of the progress function, 0 if none */
	int progress_failed;   /* the callback raised: error object on the stack top */
	int cancelled;         /* the callback returned false */
	int interrupted;       /* Ctrl-C (SIGINT) or SIGTERM arrived during the transfer */
	curl_off_t last[4];
	Buf body, headers;
	FILE *out;             /* output_file, or NULL: body into memory */
	FILE *in;              /* body_file */
	int write_failed;
	out_stream *stream;    /* body_stream / stream part */
	EVP_MD_CTX *md;        /* sha256 of the stream's bytes as sent */
	int stream_failed;
} Transfer;

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
	Transfer *t = ud;
	size_t n = size * nmemb;
	if (t->out) {
		if (fwrite(data, 1, n, t->out) != n) {
			t->write_failed = errno ? errno : EIO;
			return 0;
		}
		return n;
	}
	buf_add(&t->body, data, n);
	return t->body.oom ? 0 : n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	Transfer *t = ud;
	size_t n = size * nmemb;
	/* a new status line (redirect, 100 Continue) starts a fresh header set */
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
		t->headers.len = 0;
	buf_add(&t->headers, data, n);
	return t->headers.oom ? 0 : n;
}

static size_t on_read(char *data, size_t size, size_t nmemb, void *ud)
{
	Transfer *t = ud;
	size_t n = fread(data, 1, size * nmemb, t->in);
	if (n == 0 && ferror(t->in))
		return CURL_READFUNC_ABORT;
	return n;
}

/* The stream body, in order, hashed as it goes; no Lua. */
static size_t on_stream_read(char *data, size_t size, size_t nmemb, void *ud)
{
	Transfer *t = ud;
	ssize_t n = out_stream_read(t->stream, (uint8_t *)data, size * nmemb);
	if (n < 0) {
		t->stream_failed = 1;
		return CURL_READFUNC_ABORT;
	}
	EVP_DigestUpdate(t->md, data, (size_t)n);
	return (size_t)n;
}

/* curl may ask to rewind (a redirect, an auth retry): only "to the start, before any byte". */
static int on_stream_seek(void *ud, curl_off_t offset, int origin)
{
	Transfer *t = ud;
	return origin == SEEK_SET && offset == 0 && t->stream->pos == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_CANTSEEK;
}

static int call_progress(lua_State *L)
{
	/* function and 4 numbers are on the stack */
	lua_call(L, 4, 1);
	return 1;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	Transfer *t = ud;
	/* curl calls this at least once a second, even while it waits for an answer */
	if (lu_interrupted()) {
		t->interrupted = 1;
		return 1;
	}
	if (!t->progress_idx)
		return 0;
	if (t->last[0] == dltotal && t->last[1] == dlnow && t->last[2] == ultotal && t->last[3] == ulnow)
		return 0;
	t->last[0] = dltotal; t->last[1] = dlnow; t->last[2] = ultotal; t->last[3] = ulnow;
	lua_State *L = t->L;
	if (!lua_checkstack(L, 8)) {
		t->cancelled = 1;
		return 1;
	}
	lua_pushcfunction(L, call_progress);
	lua_pushvalue(L, t->progress_idx);
	lua_pushinteger(L, (lua_Integer)dltotal);
	lua_pushinteger(L, (lua_Integer)dlnow);
	lua_pushinteger(L, (lua_Integer)ultotal);
	lua_pushinteger(L, (lua_Integer)ulnow);
	if (lua_pcall(L, 5, 1, 0) != LUA_OK) {
		t->progress_failed = 1;  /* error object stays on the top */
		return 1;
	}
	int stop = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (stop) {
		t->cancelled = 1;
		return 1;
	}
	return 0;
}

static const char *curl_code_name(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT: return "ECONNREFUSED";
	case CURLE_COULDNT_RESOLVE_HOST: return "EHOSTUNREACH";
	case CURLE_OPERATION_TIMEDOUT: return "ETIMEDOUT";
	case CURLE_ABORTED_BY_CALLBACK: return "ECANCELED";
	case CURLE_PEER_FAILED_VERIFICATION: return "ETLS";
#if LIBCURL_VERSION_NUM < 0x073e00
	case CURLE_SSL_CACERT: return "ETLS";
#endif
	case CURLE_SSL_CACERT_BADFILE: return "ETLS";
	case CURLE_SSL_CONNECT_ERROR: return "ETLS";
	case CURLE_URL_MALFORMAT: return "EINVAL";
	case CURLE_UNSUPPORTED_PROTOCOL: return "EINVAL";
	case CURLE_GOT_NOTHING: return "ECONNRESET";
	case CURLE_SEND_ERROR: return "ECONNRESET";
	case CURLE_RECV_ERROR: return "ECONNRESET";
	case CURLE_READ_ERROR: return "EIO";
	case CURLE_WRITE_ERROR: return "EIO";
	case CURLE_OUT_OF_MEMORY: return "ENOMEM";
	default: return "EHTTP";
	}
}

/* The URL without its query: query strings carry apikey and signature. */
static void push_safe_url(lua_State *L, const char *url)
{
	size_t n = strcspn(url, "?");
	lua_pushlstring(L, url, n);
}

static int fail(lua_State *L, const char *url, const char *why, const char *code)
{
	lua_pushnil(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	luaL_addstring(&b, "http: ");
	if (url) {
		push_safe_url(L, url);
		luaL_addvalue(&b);
		luaL_addstring(&b, ": ");
	}
	luaL_addstring(&b, why);
	luaL_pushresult(&b);
	lua_pushstring(L, code);
	return 3;
}

/* Parse the raw header block into {lower-case name = value} (last wins) and
 * pushes it; also returns nothing else. */
static void push_headers(lua_State *L, const Buf *h)
{
	lua_newtable(L);
	if (!h->p)
		return;
	const char *p = h->p, *end = h->p + h->len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon && !(eol - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
			luaL_Buffer nb;
			luaL_buffinit(L, &nb);
			for (const char *q = p; q < colon; q++)
				luaL_addchar(&nb, (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q));
			luaL_pushresult(&nb);
			const char *v = colon + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			lua_pushlstring(L, v, (size_t)(ve - v));
			lua_settable(L, -3);
		}
		p = eol + 1;
	}
}

/* ---- step 1: options from Lua into a Request ---- */

static const char *const request_keys[] = { "url", "method", "headers", "body", "body_file", "body_stream",
	"form", "output_file", "timeout", "connect_timeout", "stall_timeout", "upload_buffer", "verify_tls",
	"cafile", "fresh", "progress", NULL };
static const char *const part_keys[] = { "name", "value", "file", "stream", "filename", "type", NULL };

/* The string on the top, kept alive in the anchor table for the whole call; popped. */
static const char *anchor(lua_State *L, int keep, size_t *len)
{
	const char *s = lua_tolstring(L, -1, len);
	lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
	return s;
}

static const char *opt_str(lua_State *L, int t, const char *k, int keep, size_t *len)
{
	int ty = lua_getfield(L, t, k);
	if (ty == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	if (ty != LUA_TSTRING)
		luaL_error(L, "http.request: option '%s' must be a string, got %s", k, luaL_typename(L, -1));
	return anchor(L, keep, len);
}

/* A salvage.stream option: unread, kept alive, at most one per request. */
static out_stream *opt_stream(lua_State *L, int t, const char *k, int keep, Request *r)
{
	if (lua_getfield(L, t, k) == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	if (r->stream)
		luaL_error(L, "salvage.http: one stream per request");
	r->stream_box = lstream_check_unread(L, -1);
	r->stream = r->stream_box->s;
	lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
	return r->stream;
}

static void read_headers(lua_State *L, int t, int keep, Request *r)
{
	if (lua_getfield(L, t, "headers") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "http.request: option 'headers' must be a table, got %s", luaL_typename(L, -1));
	int h = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, h)) {
		if (r->nheaders == MAX_HEADERS)
			luaL_error(L, "salvage.http: more than %d headers", MAX_HEADERS);
		int named = lua_type(L, -2) == LUA_TSTRING; /* name = value, or "Name: value" */
		const char *v = luaL_tolstring(L, -1, NULL);
		if (named) {
			lua_pushfstring(L, "%s: %s", lua_tostring(L, -3), v);
			lua_remove(L, -2);
		}
		r->headers[r->nheaders++] = anchor(L, keep, NULL);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

static void read_part(lua_State *L, int e, int keep, Request *r, Part *p)
{
	if (lua_type(L, -2) == LUA_TSTRING) { /* name = value */
		lua_pushvalue(L, -2);
		p->name = anchor(L, keep, NULL);
		luaL_tolstring(L, -1, NULL);
		p->value = anchor(L, keep, &p->value_len);
		return;
	}
	if (!lua_istable(L, e))
		luaL_error(L, "salvage.http: bad form entry");
	lu_check_options(L, e, "http.request: form part", part_keys);
	p->name = opt_str(L, e, "name", keep, NULL);
	p->value = opt_str(L, e, "value", keep, &p->value_len);
	p->file = opt_str(L, e, "file", keep, NULL);
	p->stream = opt_stream(L, e, "stream", keep, r);
	p->filename = opt_str(L, e, "filename", keep, NULL);
	p->type = opt_str(L, e, "type", keep, NULL);
	if (!p->name)
		luaL_error(L, "salvage.http: form part without a name");
	if ((p->value != NULL) + (p->file != NULL) + (p->stream != NULL) != 1)
		luaL_error(L, "salvage.http: form part '%s' needs one of value, file, stream", p->name);
}

static void read_form(lua_State *L, int t, int keep, Request *r)
{
	int ty = lua_getfield(L, t, "form");
	if (ty == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (ty != LUA_TTABLE)
		luaL_error(L, "http.request: option 'form' must be a table, got %s", luaL_typename(L, -1));
	r->has_form = 1;
	int f = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, f)) {
		if (r->nparts == MAX_PARTS)
			luaL_error(L, "salvage.http: more than %d form parts", MAX_PARTS);
		read_part(L, lua_gettop(L), keep, r, &r->parts[r->nparts++]);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

static void read_request(lua_State *L, int t, int keep, Request *r)
{
	luaL_checktype(L, t, LUA_TTABLE);
	lu_check_options(L, t, "http.request", request_keys);
	memset(r, 0, sizeof *r);
	if ((r->url = opt_str(L, t, "url", keep, NULL)) == NULL)
		luaL_error(L, "salvage.http: 'url' is required");
	r->method = opt_str(L, t, "method", keep, NULL);
	r->body = opt_str(L, t, "body", keep, &r->body_len);
	r->body_file = opt_str(L, t, "body_file", keep, NULL);
	r->output_file = opt_str(L, t, "output_file", keep, NULL);
	r->cafile = opt_str(L, t, "cafile", keep, NULL);
	int body_stream = opt_stream(L, t, "body_stream", keep, r) != NULL;
	read_form(L, t, keep, r);
	if ((r->body != NULL) + (r->body_file != NULL) + body_stream + r->has_form > 1)
		luaL_error(L, "salvage.http: give one of body, body_file, body_stream, form");
	read_headers(L, t, keep, r);
	r->timeout = lu_opt_number(L, t, "http.request", "timeout", 0);
	r->connect_timeout = lu_opt_number(L, t, "http.request", "connect_timeout", 30);
	r->stall_timeout = lu_opt_number(L, t, "http.request", "stall_timeout", 0);
	r->upload_buffer = lu_opt_number(L, t, "http.request", "upload_buffer", 1 << 20);
	luaL_argcheck(L, r->upload_buffer >= 16384 && r->upload_buffer <= 2 << 20, 1, "upload_buffer: 16 KiB to 2 MiB");
	r->verify = lu_opt_boolean(L, t, "http.request", "verify_tls", 1);
	r->fresh = lu_opt_boolean(L, t, "http.request", "fresh", 0);
	if (lua_getfield(L, t, "progress") != LUA_TNIL) {
		luaL_checktype(L, -1, LUA_TFUNCTION);
		r->progress_idx = lua_gettop(L); /* stays on the stack */
	} else {
		lua_pop(L, 1);
	}
}

/* ---- step 2: curl, with no Lua call that can raise ---- */

typedef struct {
	CURLcode rc;
	int err;                 /* errno of a local failure (a file), 0 if none */
	const char *err_path;
	long status;
	curl_off_t up, down;
	double secs;
	char sha256[2 * EVP_MAX_MD_SIZE + 1];
	char errbuf[CURL_ERROR_SIZE];
} Outcome;

static void set_common(CURL *curl, const Request *r, Transfer *t, Outcome *o)
{
	curl_easy_setopt(curl, CURLOPT_URL, r->url);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, o->errbuf);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);   /* on_progress also watches for Ctrl-C */
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, t);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, r->verify ? 1L : 0L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, r->verify ? 2L : 0L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "salvage/1");
	if (r->cafile)
		curl_easy_setopt(curl, CURLOPT_CAINFO, r->cafile);
	if (r->timeout > 0)
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(r->timeout * 1000));
	if (r->stall_timeout > 0) {
		/* abort a transfer that moved less than 1 byte/s for that long */
		curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)(r->stall_timeout + 0.999));
	}
	if (r->connect_timeout > 0)
		curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->connect_timeout * 1000));
	if (r->fresh) {
		curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
	}
	/* big buffers: fewer syscalls and callbacks for multi-GiB uploads and downloads */
	curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, (long)r->upload_buffer);
	curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L << 10);
}

/* The form; NULL only when out of memory. File parts are sized from disk; a stream part
 * from its known length, read through on_stream_read. */
static curl_mime *build_form(CURL *curl, const Request *r, Transfer *t, Outcome *o)
{
	curl_mime *mime = curl_mime_init(curl);
	for (int i = 0; mime && i < r->nparts; i++) {
		const Part *p = &r->parts[i];
		curl_mimepart *part = curl_mime_addpart(mime);
		struct stat st;
		curl_mime_name(part, p->name);
		if (p->file && stat(p->file, &st) != 0) {
			o->err = errno;
			o->err_path = p->file;
		} else if (p->file) {
			curl_mime_filedata(part, p->file);
		} else if (p->stream) {
			curl_mime_data_cb(part, (curl_off_t)p->stream->length, on_stream_read, on_stream_seek, NULL, t);
		} else {
			curl_mime_data(part, p->value, p->value_len);
		}
		if (p->filename)
			curl_mime_filename(part, p->filename);
		if (p->type)
			curl_mime_type(part, p->type);
	}
	return mime;
}

/* The request body; 0, or -1 with o->err set. */
static int set_body(CURL *curl, const Request *r, Transfer *t, Outcome *o, curl_mime **mime)
{
	if (r->body) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, r->body);
	} else if (r->body_file) {
		struct stat st;
		t->in = fopen(r->body_file, "rb");
		if (!t->in || fstat(fileno(t->in), &st) != 0) {
			o->err = errno;
			o->err_path = r->body_file;
			return -1;
		}
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(curl, CURLOPT_READDATA, t);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)st.st_size);
	} else if (r->stream && !r->has_form) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_stream_read);
		curl_easy_setopt(curl, CURLOPT_READDATA, t);
		curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, on_stream_seek);
		curl_easy_setopt(curl, CURLOPT_SEEKDATA, t);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->stream->length);
	} else if (r->has_form) {
		if ((*mime = build_form(curl, r, t, o)) == NULL) {
			o->err = ENOMEM;
			return -1;
		}
		if (o->err)
			return -1;
		curl_easy_setopt(curl, CURLOPT_MIMEPOST, *mime);
	}
	return 0;
}

static void set_method(CURL *curl, const Request *r)
{
	if (!r->method)
		return;
	if (strcmp(r->method, "GET") == 0 && !r->body && !r->body_file && !r->stream && !r->has_form)
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	else if (strcmp(r->method, "HEAD") == 0)
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	else
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r->method);
}

static void finish_sha(Transfer *t, Outcome *o)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (t->md && t->stream && t->stream->pos == t->stream->length)
		EVP_DigestFinal_ex(t->md, md, &n);
	for (unsigned i = 0; i < n; i++)
		snprintf(o->sha256 + 2 * i, 3, "%02x", md[i]);
	o->sha256[2 * n] = '\0';
}

/* Set up, perform, read the answer's facts, free every curl object. */
static void perform(CURL *curl, const Request *r, Transfer *t, Outcome *o)
{
	struct curl_slist *hdrs = NULL, *h;
	curl_mime *mime = NULL;
	curl_easy_reset(curl); /* keeps live connections, forgets options */
	set_common(curl, r, t, o);
	/* large POST bodies: no "Expect: 100-continue" round trip */
	hdrs = curl_slist_append(hdrs, "Expect:");
	for (int i = 0; hdrs && i < r->nheaders; i++)
		if ((h = curl_slist_append(hdrs, r->headers[i])) != NULL)
			hdrs = h;
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	if (r->stream && (t->md = EVP_MD_CTX_new()) != NULL && !EVP_DigestInit_ex(t->md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(t->md);
		t->md = NULL;
	}
	if (r->stream && t->md == NULL)
		o->err = ENOMEM;
	else if (set_body(curl, r, t, o, &mime) == 0) {
		set_method(curl, r);
		if (r->output_file && (t->out = fopen(r->output_file, "wb")) == NULL) {
			o->err = errno;
			o->err_path = r->output_file;
		}
	}
	if (!o->err) {
		o->rc = curl_easy_perform(curl);
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &o->status);
		curl_easy_getinfo(curl, CURLINFO_SIZE_UPLOAD_T, &o->up);
		curl_easy_getinfo(curl, CURLINFO_SIZE_DOWNLOAD_T, &o->down);
		curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME, &o->secs);
	}
	if (t->in)
		fclose(t->in);
	if (t->out && fclose(t->out) != 0 && !o->err && o->rc == CURLE_OK) {
		o->err = errno;
		o->err_path = r->output_file;
	}
	finish_sha(t, o);
	EVP_MD_CTX_free(t->md);
	curl_mime_free(mime);
	curl_slist_free_all(hdrs);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
}

/* ---- step 3: the result ---- */

static int push_failure(lua_State *L, const Request *r, const Transfer *t, const Outcome *o)
{
	if (o->err && o->err_path) {
		lua_pushnil(L);
		lua_pushfstring(L, "http: %s: %s", o->err_path, strerror(o->err));
		lua_pushstring(L, lu_errname(o->err));
		return 3;
	}
	const char *why = o->errbuf[0] ? o->errbuf : curl_easy_strerror(o->rc);
	const char *code = curl_code_name(o->rc);
	if (t->interrupted) {
		why = "interrupted";
		code = "EINTR";
	} else if (t->cancelled) {
		why = "cancelled by the progress callback";
	} else if (t->stream_failed) {
		why = t->stream->err.msg;
		code = t->stream->err.code[0] ? t->stream->err.code : "EIO";
	} else if (t->write_failed || o->err) {
		why = strerror(t->write_failed ? t->write_failed : o->err);
		code = lu_errname(t->write_failed ? t->write_failed : o->err);
	} else if (t->body.oom || t->headers.oom) {
		why = "out of memory";
		code = "ENOMEM";
	}
	/* errbuf may echo the URL: drop any query part it carries */
	lua_pushstring(L, why);
	const char *w = lua_tostring(L, -1);
	const char *qm = strchr(w, '?');
	if (qm) {
		lua_pushlstring(L, w, (size_t)(qm - w));
		lua_pushliteral(L, "?...");
		lua_concat(L, 2);
		w = lua_tostring(L, -1);
	}
	return fail(L, r->url, w, code);
}

static void push_result(lua_State *L, const Request *r, const Transfer *t, const Outcome *o)
{
	lua_createtable(L, 0, 8);
	lua_pushinteger(L, o->status);
	lua_setfield(L, -2, "status");
	push_headers(L, &t->headers);
	lua_setfield(L, -2, "headers");
	if (!r->output_file) {
		lua_pushlstring(L, t->body.p ? t->body.p : "", t->body.len);
		lua_setfield(L, -2, "body");
	}
	push_safe_url(L, r->url);
	lua_setfield(L, -2, "url");
	lua_pushinteger(L, (lua_Integer)o->up);
	lua_setfield(L, -2, "uploaded");
	lua_pushinteger(L, (lua_Integer)o->down);
	lua_setfield(L, -2, "downloaded");
	lua_pushnumber(L, o->secs);
	lua_setfield(L, -2, "seconds");
	if (o->sha256[0]) {
		lua_pushstring(L, o->sha256);
		lua_setfield(L, -2, "sent_sha256");
	}
}

/* Perform one request described by the table at index opts. */
static int do_request(lua_State *L, CURL *curl, int opts)
{
	Request r;
	lua_newtable(L); /* anchors every string and stream of the request */
	read_request(L, opts, lua_gettop(L), &r);
	if (r.stream_box)
		r.stream_box->used = 1; /* from here on it is being sent, whatever happens */
	Transfer t;
	memset(&t, 0, sizeof t);
	t.L = L;
	t.progress_idx = r.progress_idx;
	t.stream = r.stream;
	t.last[0] = t.last[1] = t.last[2] = t.last[3] = -1;
	Outcome o;
	memset(&o, 0, sizeof o);
	perform(curl, &r, &t, &o);
	if (t.progress_failed) {
		free(t.body.p);
		free(t.headers.p);
		return lua_error(L); /* the callback's error, raised now that curl's objects are freed */
	}
	int n = 1;
	if (o.err || o.rc != CURLE_OK)
		n = push_failure(L, &r, &t, &o);
	else
		push_result(L, &r, &t, &o);
	free(t.body.p);
	free(t.headers.p);
	return n;
}

static Client *check_client(lua_State *L)
{
	Client *c = luaL_checkudata(L, 1, HTTP_MT);
	if (!c->curl)
		luaL_error(L, "attempt to use a closed salvage.http client");
	return c;
}

static int client_request(lua_State *L)
{
	Client *c = check_client(L);
	return do_request(L, c->curl, 2);
}

static int client_close(lua_State *L)
{
	Client *c = luaL_checkudata(L, 1, HTTP_MT);
	if (c->curl) {
		curl_easy_cleanup(c->curl);
		c->curl = NULL;
	}
	return 0;
}

static int client_tostring(lua_State *L)
{
	Client *c = luaL_checkudata(L, 1, HTTP_MT);
	if (c->curl)
		lua_pushfstring(L, "salvage.http client (%p)", (void *)c);
	else
		lua_pushliteral(L, "salvage.http client (closed)");
	return 1;
}

static Client *new_client(lua_State *L)
{
	Client *c = lua_newuserdatauv(L, sizeof *c, 0);
	c->curl = NULL;
	luaL_setmetatable(L, HTTP_MT);
	c->curl = curl_easy_init();
	if (!c->curl)
		luaL_error(L, "salvage.http: curl_easy_init failed");
	return c;
}

static int http_client(lua_State *L)
{
	new_client(L);
	return 1;
}

/* One-shot request: a client of its own, closed right after. */
static int http_request(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	Client *c = new_client(L);
	lua_insert(L, 1);  /* client at 1, options at 2 */
	int n = do_request(L, c->curl, 2);
	/* the client is closed by __gc; close now to free the connection */
	curl_easy_cleanup(c->curl);
	c->curl = NULL;
	return n;
}

static int http_version(lua_State *L)
{
	lua_pushstring(L, curl_version());
	return 1;
}

static const luaL_Reg client_methods[] = {
	{"request", client_request},
	{"close", client_close},
	{NULL, NULL},
};

static const luaL_Reg http_funcs[] = {
	{"request", http_request},
	{"client", http_client},
	{"version", http_version},
	{NULL, NULL},
};

LUAMOD_API int luaopen_salvage_http(lua_State *L)
{
	static int initialized = 0;
	if (!initialized) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		initialized = 1;
	}
	lu_new_class(L, HTTP_MT, client_methods, client_close, client_tostring);
	luaL_newlib(L, http_funcs);
	return 1;
}
