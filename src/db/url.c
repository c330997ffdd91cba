/* mariadb://user:pass@host:port/database?socket=/run/mysqld.sock&connect_timeout=5
 * Parsed without allocation beyond the caller's buffer: every decoded string is
 * at most as long as its encoded form, so one buffer of the URL's length (plus
 * terminators) holds them all. Errors never quote the password. */
#include <stdio.h>
#include <string.h>

#include "db/dberr.h"

size_t db_url_size(size_t url_len)
{
	return sizeof(struct db_url) + url_len + 2 * DB_URL_MAX_PARAMS + 8;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Decode s[0..n) into *out (advancing it); NULL on a bad escape or a NUL byte. */
static const char *decode(char **out, const char *s, size_t n, int plus_is_space)
{
	char *start = *out, *o = *out;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= n)
				return NULL;
			int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
			if (h < 0 || l < 0)
				return NULL;
			c = h * 16 + l;
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		if (c == 0)
			return NULL;
		*o++ = (char)c;
	}
	*o++ = '\0';
	*out = o;
	return start;
}

static int fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -1;
}

/* The parse's state: the output buffer, the error text. */
typedef struct {
	struct db_url *u;
	char *o;
	char *err;
	size_t errlen;
} parse;

static int bad(parse *ps, const char *msg)
{
	return fail(ps->err, ps->errlen, msg);
}

/* user[:password]@ (the LAST '@' of the authority: passwords may contain '@' unescaped);
 * returns where the host starts, or NULL. */
static const char *parse_userinfo(parse *ps, const char *p, const char *auth_end)
{
	const char *at = NULL;
	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (!at)
		return p;
	const char *colon = memchr(p, ':', (size_t)(at - p));
	const char *uend = colon ? colon : at;
	if (uend > p && !(ps->u->user = decode(&ps->o, p, (size_t)(uend - p), 0))) {
		bad(ps, "bad percent-escape or NUL in the user name");
		return NULL;
	}
	if (colon && !(ps->u->password = decode(&ps->o, colon + 1, (size_t)(at - colon - 1), 0))) {
		bad(ps, "bad percent-escape or NUL in the password");
		return NULL;
	}
	return at + 1;
}

static int parse_port(parse *ps, const char *port, const char *end)
{
	long v = 0;
	if (port >= end)
		return bad(ps, "empty port");
	for (const char *q = port; q < end; q++) {
		if (*q < '0' || *q > '9')
			return bad(ps, "port must be a number");
		v = v * 10 + (*q - '0');
		if (v > 65535)
			return bad(ps, "port out of range (1-65535)");
	}
	if (v == 0)
		return bad(ps, "port out of range (1-65535)");
	ps->u->port = (int)v;
	return 0;
}

/* host, [ipv6] or name, then :port, in [p, auth_end). */
static int parse_hostport(parse *ps, const char *p, const char *auth_end)
{
	const char *hend = auth_end, *port = NULL;
	if (p < auth_end && *p == '[') {
		const char *rb = memchr(p, ']', (size_t)(auth_end - p));
		if (!rb)
			return bad(ps, "unterminated [IPv6] host");
		if (rb + 1 < auth_end) {
			if (rb[1] != ':')
				return bad(ps, "junk after ]");
			port = rb + 2;
		}
		if (!(ps->u->host = decode(&ps->o, p + 1, (size_t)(rb - p - 1), 0)))
			return bad(ps, "bad host");
	} else {
		size_t hlen = auth_end > p ? (size_t)(auth_end - p) : 0;
		const char *colon = hlen ? memchr(p, ':', hlen) : NULL;
		if (colon) {
			hend = colon;
			port = colon + 1;
		}
		if (hend > p && !(ps->u->host = decode(&ps->o, p, (size_t)(hend - p), 0)))
			return bad(ps, "bad percent-escape or NUL in the host");
	}
	return port ? parse_port(ps, port, auth_end) : 0;
}

/* ?k=v&k2=v2 ('+' is a space in both). */
static int parse_query(parse *ps, const char *p, const char *end)
{
	struct db_url *u = ps->u;
	while (p < end) {
		const char *amp = p;
		while (amp < end && *amp != '&')
			amp++;
		if (amp > p) {
			if (u->nparams == DB_URL_MAX_PARAMS)
				return bad(ps, "too many query parameters");
			const char *eq = memchr(p, '=', (size_t)(amp - p));
			const char *kend = eq ? eq : amp;
			const char *k = decode(&ps->o, p, (size_t)(kend - p), 1);
			const char *v = eq ? decode(&ps->o, eq + 1, (size_t)(amp - eq - 1), 1) : decode(&ps->o, "", 0, 0);
			if (!k || !v || !*k)
				return bad(ps, "bad query parameter");
			u->keys[u->nparams] = k;
			u->values[u->nparams] = v;
			u->nparams++;
		}
		p = amp < end ? amp + 1 : amp;
	}
	return 0;
}

int db_url_parse(struct db_url *u, const char *url, size_t len, char *err, size_t errlen)
{
	parse ps = { u, u->buf, err, errlen };
	const char *p = url, *end = url + len;
	u->user = u->password = u->host = u->database = NULL;
	u->port = 0;
	u->nparams = 0;
	if (memchr(url, '\0', len))
		return bad(&ps, "URL contains a NUL byte");
	if (len >= 10 && strncmp(p, "mariadb://", 10) == 0)
		p += 10;
	else if (len >= 8 && strncmp(p, "mysql://", 8) == 0)
		p += 8;
	else
		return bad(&ps, "URL must start with mariadb:// (or mysql://)");
	/* authority ends at '/', '?' or the end */
	const char *auth_end = p;
	while (auth_end < end && *auth_end != '/' && *auth_end != '?')
		auth_end++;
	if ((p = parse_userinfo(&ps, p, auth_end)) == NULL || parse_hostport(&ps, p, auth_end) != 0)
		return -1;
	p = auth_end;
	if (p < end && *p == '/') {
		const char *dend = ++p;
		while (dend < end && *dend != '?')
			dend++;
		if (dend > p && !(u->database = decode(&ps.o, p, (size_t)(dend - p), 0)))
			return bad(&ps, "bad percent-escape or NUL in the database name");
		if (u->database && strchr(u->database, '/'))
			return bad(&ps, "database name must not contain '/'");
		p = dend;
	}
	return p < end && *p == '?' ? parse_query(&ps, p + 1, end) : 0;
}
