/*
 * salvage.http: HTTP(S) requests over libcurl.
 *
 *   http.request{method=, url=, query={k=v}, headers={k=v}, body= | body_file= | form={...},
 *                output_file=, timeout=, connect_timeout=, stall_timeout=, verify_tls=true, cafile=,
 *                progress=fn, fresh=false (true: a new connection, never reused nor re-sent)}
 *     -> {status=, headers={lower-case name = value}, body=, url=, uploaded=, downloaded=, seconds=}
 *      | nil, "http: why", CODE
 *   http.client() -> handle keeping connections alive; handle:request{...}; handle:close()
 *
 * Uploads stream from disk with a Content-Length (body_file, and multipart
 * file parts whose size is known up front), never chunked, never in memory.
 * No Lua API call that can raise runs inside a libcurl callback except the
 * progress function, which runs under lua_pcall: its error is stored, the
 * transfer aborted, and the error raised again once curl_easy_perform returned.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "lua.h"
#include "lauxlib.h"

#include "errname.h"
#include "crypto/encode.h"

#define HTTP_MT "salvage.http"

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

typedef struct {
	lua_State *L;
	int progress_idx;      /* stack index of the progress function, 0 if none */
	int progress_failed;   /* the callback raised: error object on the stack top */
	int cancelled;         /* the callback returned false */
	curl_off_t last[4];
	Buf body, headers;
	FILE *out;             /* output_file, or NULL: body into memory */
	FILE *in;              /* body_file */
	int write_failed;
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

static int call_progress(lua_State *L)
{
	/* function and 4 numbers are on the stack */
	lua_call(L, 4, 1);
	return 1;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	Transfer *t = ud;
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

/* Append k=v pairs of the table at idx (sorted keys, Java URL encoding). */
static void add_query(lua_State *L, int idx, luaL_Buffer *b, int first)
{
	/* collect and sort keys through table.sort-free insertion: small tables */
	int n = 0;
	lua_newtable(L);
	int keys = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "salvage.http: query keys must be strings");
		lua_pushvalue(L, -1);
		lua_rawseti(L, keys, ++n);
	}
	for (int i = 2; i <= n; i++) {
		for (int j = i; j > 1; j--) {
			lua_rawgeti(L, keys, j - 1);
			lua_rawgeti(L, keys, j);
			int swap = strcmp(lua_tostring(L, -2), lua_tostring(L, -1)) > 0;
			if (swap) {
				lua_rawseti(L, keys, j - 1);
				lua_rawseti(L, keys, j);
			} else {
				lua_pop(L, 2);
				break;
			}
		}
	}
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, keys, i);
		size_t kl, vl;
		const char *k = lua_tolstring(L, -1, &kl);
		lua_pushvalue(L, -1);
		lua_gettable(L, idx);
		if (lua_isboolean(L, -1)) {
			lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
			lua_replace(L, -2);
		}
		const char *v = lua_tolstring(L, -1, &vl);
		if (!v)
			luaL_error(L, "salvage.http: query value for '%s' must be a string or number", k);
		char *ek = malloc(SALVAGE_URLENCODE_MAX(kl)), *ev = malloc(SALVAGE_URLENCODE_MAX(vl));
		if (!ek || !ev) {
			free(ek);
			free(ev);
			luaL_error(L, "salvage.http: out of memory");
		}
		salvage_urlencode_java((const unsigned char *)k, kl, ek);
		salvage_urlencode_java((const unsigned char *)v, vl, ev);
		lua_pop(L, 2);
		/* the buffer may sit below `keys` on the stack: use it only at the end */
		lua_pushfstring(L, "%s%s=%s", first ? "" : "&", ek, ev);
		free(ek);
		free(ev);
		lua_insert(L, keys);
		keys++;
		first = 0;
	}
	lua_pop(L, 1); /* keys */
	(void)b;
}

static int opt_field_type(lua_State *L, int idx, const char *k)
{
	lua_getfield(L, idx, k);
	return lua_type(L, -1);
}

static double opt_number(lua_State *L, int idx, const char *k, double def)
{
	lua_getfield(L, idx, k);
	double v = luaL_opt(L, luaL_checknumber, -1, def);
	lua_pop(L, 1);
	return v;
}

static const char *opt_string(lua_State *L, int idx, const char *k)
{
	lua_getfield(L, idx, k);
	const char *s = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
	if (!s && !lua_isnil(L, -1))
		luaL_error(L, "salvage.http: option '%s' must be a string", k);
	lua_pop(L, 1);  /* strings stay alive in the options table */
	return s;
}

/* Like opt_string, but the value stays on the stack: a progress callback may
 * change the options table while curl still uses these strings. */
static const char *opt_string_keep(lua_State *L, int idx, const char *k)
{
	lua_getfield(L, idx, k);
	if (lua_isnil(L, -1))
		return NULL;
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "salvage.http: option '%s' must be a string", k);
	return lua_tostring(L, -1);
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

/* Perform one request described by the table at index 2 (index 1 = client). */
static int do_request(lua_State *L, CURL *curl, int opts)
{
	luaL_checktype(L, opts, LUA_TTABLE);
	curl_easy_reset(curl);  /* keeps live connections, forgets options */

	const char *url = opt_string_keep(L, opts, "url");
	if (!url)
		return luaL_error(L, "salvage.http: 'url' is required");
	const char *method = opt_string_keep(L, opts, "method");
	const char *body_file = opt_string_keep(L, opts, "body_file");
	const char *output_file = opt_string_keep(L, opts, "output_file");
	const char *cafile = opt_string_keep(L, opts, "cafile");
	size_t body_len = 0;
	const char *body = NULL;
	if (opt_field_type(L, opts, "body") != LUA_TNIL) {
		body = luaL_checklstring(L, -1, &body_len);  /* stays on the stack: curl does not copy it */
	} else {
		lua_pop(L, 1);
	}
	int form_type = opt_field_type(L, opts, "form");
	if (form_type != LUA_TNIL && form_type != LUA_TTABLE)
		return luaL_error(L, "salvage.http: option 'form' must be a table");
	int has_form = form_type == LUA_TTABLE;
	int form_idx = lua_gettop(L);  /* form table or nil stays here */
	if ((body != NULL) + (body_file != NULL) + has_form > 1)
		return luaL_error(L, "salvage.http: give one of body, body_file, form");
	double timeout = opt_number(L, opts, "timeout", 0);
	double connect_timeout = opt_number(L, opts, "connect_timeout", 30);
	double stall_timeout = opt_number(L, opts, "stall_timeout", 0);
	double upload_buffer = opt_number(L, opts, "upload_buffer", 1 << 20);
	luaL_argcheck(L, upload_buffer >= 16384 && upload_buffer <= 2 << 20, 1, "upload_buffer: 16 KiB to 2 MiB");
	int verify = 1;
	if (opt_field_type(L, opts, "verify_tls") != LUA_TNIL)
		verify = lua_toboolean(L, -1);
	lua_pop(L, 1);
	/* fresh = true: a new connection, closed after use. A state-changing request
	 * must never be re-sent by libcurl on a reused connection that turns out dead
	 * (the server may have executed the first copy). */
	int fresh = 0;
	if (opt_field_type(L, opts, "fresh") != LUA_TNIL)
		fresh = lua_toboolean(L, -1);
	lua_pop(L, 1);
	int progress_idx = 0;
	if (opt_field_type(L, opts, "progress") != LUA_TNIL) {
		luaL_checktype(L, -1, LUA_TFUNCTION);
		progress_idx = lua_gettop(L);
	} else {
		lua_pop(L, 1);
	}

	/* full URL with the query table appended */
	luaL_Buffer ub;
	int before = lua_gettop(L);
	lua_pushstring(L, url);
	if (opt_field_type(L, opts, "query") == LUA_TTABLE) {
		int q = lua_gettop(L);
		add_query(L, q, NULL, strchr(url, '?') != NULL ? 0 : 1);
		lua_remove(L, q);
		/* the pieces pushed by add_query are between `before+1` and top */
		int top = lua_gettop(L);
		if (top > before + 1) {
			lua_pushstring(L, strchr(url, '?') ? "" : "?");
			lua_insert(L, before + 2);
			lua_concat(L, lua_gettop(L) - before);
		}
	} else {
		lua_pop(L, 1);
	}
	(void)ub;
	const char *full_url = lua_tostring(L, -1);
	int url_idx = lua_gettop(L);
	(void)url_idx;

	Transfer t;
	memset(&t, 0, sizeof t);
	t.L = L;
	t.progress_idx = progress_idx;
	t.last[0] = t.last[1] = t.last[2] = t.last[3] = -1;

	struct curl_slist *hdrs = NULL;
	curl_mime *mime = NULL;
	int ret;
	char errbuf[CURL_ERROR_SIZE] = "";

	curl_easy_setopt(curl, CURLOPT_URL, full_url);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, progress_idx ? 0L : 1L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "salvage/1");
	if (fresh) {
		curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
	}
	if (cafile)
		curl_easy_setopt(curl, CURLOPT_CAINFO, cafile);
	if (timeout > 0)
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
	if (stall_timeout > 0) {
		/* abort a transfer that moved less than 1 byte/s for that long */
		curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)(stall_timeout + 0.999));
	}
	if (connect_timeout > 0)
		curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_timeout * 1000));
	/* big buffers: fewer syscalls and callbacks for multi-GiB uploads and downloads */
	curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, (long)upload_buffer);
	curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L << 10);
	/* large POST bodies: no "Expect: 100-continue" round trip */
	hdrs = curl_slist_append(hdrs, "Expect:");

	if (opt_field_type(L, opts, "headers") == LUA_TTABLE) {
		int h = lua_gettop(L);
		lua_pushnil(L);
		while (lua_next(L, h)) {
			const char *line;
			if (lua_type(L, -2) == LUA_TSTRING) {
				const char *name = lua_tostring(L, -2);
				const char *value = luaL_tolstring(L, -1, NULL);  /* pushes */
				line = lua_pushfstring(L, "%s: %s", name, value);
				lua_remove(L, -2);
			} else {
				line = luaL_tolstring(L, -1, NULL);
			}
			hdrs = curl_slist_append(hdrs, line);
			lua_pop(L, 2);
		}
	}
	lua_pop(L, 1);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);

	if (body) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	} else if (body_file) {
		struct stat st;
		t.in = fopen(body_file, "rb");
		if (!t.in || fstat(fileno(t.in), &st) != 0) {
			int e = errno;
			if (t.in)
				fclose(t.in);
			curl_slist_free_all(hdrs);
			lua_pushnil(L);
			lua_pushfstring(L, "http: %s: %s", body_file, strerror(e));
			lua_pushstring(L, salvage_errname(e));
			return 3;
		}
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(curl, CURLOPT_READDATA, &t);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)st.st_size);
	} else if (has_form) {
		mime = curl_mime_init(curl);
		/* array entries {name=, value=} or {name=, file=, filename=, type=}; string keys k = v */
		lua_pushnil(L);
		while (lua_next(L, form_idx)) {
			curl_mimepart *part = curl_mime_addpart(mime);
			if (lua_type(L, -2) == LUA_TSTRING) {
				size_t vl;
				const char *v = luaL_tolstring(L, -1, &vl);
				curl_mime_name(part, lua_tostring(L, -3));
				curl_mime_data(part, v, vl);
				lua_pop(L, 1);
			} else if (lua_type(L, -1) == LUA_TTABLE) {
				int e = lua_gettop(L);
				const char *name = opt_string(L, e, "name");
				const char *file = opt_string(L, e, "file");
				const char *filename = opt_string(L, e, "filename");
				const char *type = opt_string(L, e, "type");
				if (!name) {
					curl_mime_free(mime);
					curl_slist_free_all(hdrs);
					return luaL_error(L, "salvage.http: form part without a name");
				}
				curl_mime_name(part, name);
				if (file) {
					struct stat st;
					if (stat(file, &st) != 0) {
						int err = errno;
						curl_mime_free(mime);
						curl_slist_free_all(hdrs);
						lua_pushnil(L);
						lua_pushfstring(L, "http: %s: %s", file, strerror(err));
						lua_pushstring(L, salvage_errname(err));
						return 3;
					}
					/* filedata: size known up front, read from disk as sent */
					curl_mime_filedata(part, file);
					if (filename)
						curl_mime_filename(part, filename);
				} else {
					size_t vl = 0;
					lua_getfield(L, e, "value");
					const char *v = luaL_tolstring(L, -1, &vl);
					curl_mime_data(part, v, vl);
					lua_pop(L, 2);
					if (filename)
						curl_mime_filename(part, filename);
				}
				if (type)
					curl_mime_type(part, type);
			} else {
				curl_mime_free(mime);
				curl_slist_free_all(hdrs);
				return luaL_error(L, "salvage.http: bad form entry");
			}
			lua_pop(L, 1);
		}
		curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
	}
	if (method) {
		if (strcmp(method, "GET") == 0 && !body && !body_file && !has_form)
			curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
		else if (strcmp(method, "HEAD") == 0)
			curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
		else
			curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	}
	if (output_file) {
		t.out = fopen(output_file, "wb");
		if (!t.out) {
			int e = errno;
			if (t.in)
				fclose(t.in);
			curl_mime_free(mime);
			curl_slist_free_all(hdrs);
			lua_pushnil(L);
			lua_pushfstring(L, "http: %s: %s", output_file, strerror(e));
			lua_pushstring(L, salvage_errname(e));
			return 3;
		}
	}

	CURLcode rc = curl_easy_perform(curl);

	if (t.in)
		fclose(t.in);
	int close_failed = 0;
	if (t.out && fclose(t.out) != 0)
		close_failed = errno;
	curl_mime_free(mime);
	curl_slist_free_all(hdrs);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);

	if (t.progress_failed) {
		free(t.body.p);
		free(t.headers.p);
		return lua_error(L);  /* the callback's error, raised now that curl returned */
	}
	if (rc != CURLE_OK || close_failed) {
		const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
		const char *code = curl_code_name(rc);
		if (t.cancelled)
			why = "cancelled by the progress callback";
		else if (t.write_failed || close_failed) {
			why = strerror(t.write_failed ? t.write_failed : close_failed);
			code = salvage_errname(t.write_failed ? t.write_failed : close_failed);
		} else if (t.body.oom || t.headers.oom) {
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
		ret = fail(L, url, w, code);
		free(t.body.p);
		free(t.headers.p);
		return ret;
	}

	long status = 0;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_off_t up = 0, down = 0;
	double secs = 0;
	curl_easy_getinfo(curl, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(curl, CURLINFO_SIZE_DOWNLOAD_T, &down);
	curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME, &secs);

	lua_createtable(L, 0, 6);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	push_headers(L, &t.headers);
	lua_setfield(L, -2, "headers");
	if (!t.out) {
		lua_pushlstring(L, t.body.p ? t.body.p : "", t.body.len);
		lua_setfield(L, -2, "body");
	}
	push_safe_url(L, url);
	lua_setfield(L, -2, "url");
	lua_pushinteger(L, (lua_Integer)up);
	lua_setfield(L, -2, "uploaded");
	lua_pushinteger(L, (lua_Integer)down);
	lua_setfield(L, -2, "downloaded");
	lua_pushnumber(L, secs);
	lua_setfield(L, -2, "seconds");
	free(t.body.p);
	free(t.headers.p);
	return 1;
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
	if (luaL_newmetatable(L, HTTP_MT)) {
		luaL_newlib(L, client_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, client_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, client_close);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, client_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	luaL_newlib(L, http_funcs);
	return 1;
}
