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

int db_url_parse(struct db_url *u, const char *url, size_t len, char *err, size_t errlen)
{
	char *o = u->buf;
	const char *p = url, *end = url + len;
	u->user = u->password = u->host = u->database = NULL;
	u->port = 0;
	u->nparams = 0;
	if (memchr(url, '\0', len))
		return fail(err, errlen, "URL contains a NUL byte");
	if (len >= 10 && strncmp(p, "mariadb://", 10) == 0)
		p += 10;
	else if (len >= 8 && strncmp(p, "mysql://", 8) == 0)
		p += 8;
	else
		return fail(err, errlen, "URL must start with mariadb:// (or mysql://)");

	/* authority ends at '/', '?' or the end */
	const char *auth_end = p;
	while (auth_end < end && *auth_end != '/' && *auth_end != '?')
		auth_end++;
	/* the LAST '@' separates credentials: passwords may contain '@' unescaped */
	const char *at = NULL;
	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		const char *uend = colon ? colon : at;
		if (uend > p && !(u->user = decode(&o, p, (size_t)(uend - p), 0)))
			return fail(err, errlen, "bad percent-escape or NUL in the user name");
		if (colon && !(u->password = decode(&o, colon + 1, (size_t)(at - colon - 1), 0)))
			return fail(err, errlen, "bad percent-escape or NUL in the password");
		p = at + 1;
	}
	/* host, [ipv6] or name, then :port */
	const char *hend = auth_end, *port = NULL;
	if (p < auth_end && *p == '[') {
		const char *rb = memchr(p, ']', (size_t)(auth_end - p));
		if (!rb)
			return fail(err, errlen, "unterminated [IPv6] host");
		if (rb + 1 < auth_end) {
			if (rb[1] != ':')
				return fail(err, errlen, "junk after ]");
			port = rb + 2;
		}
		if (!(u->host = decode(&o, p + 1, (size_t)(rb - p - 1), 0)))
			return fail(err, errlen, "bad host");
	} else {
		size_t hlen = auth_end > p ? (size_t)(auth_end - p) : 0;
		const char *colon = hlen ? memchr(p, ':', hlen) : NULL;
		if (colon) {
			hend = colon;
			port = colon + 1;
		}
		if (hend > p && !(u->host = decode(&o, p, (size_t)(hend - p), 0)))
			return fail(err, errlen, "bad percent-escape or NUL in the host");
	}
	if (port) {
		long v = 0;
		if (port >= auth_end)
			return fail(err, errlen, "empty port");
		for (const char *q = port; q < auth_end; q++) {
			if (*q < '0' || *q > '9')
				return fail(err, errlen, "port must be a number");
			v = v * 10 + (*q - '0');
			if (v > 65535)
				return fail(err, errlen, "port out of range (1-65535)");
		}
		if (v == 0)
			return fail(err, errlen, "port out of range (1-65535)");
		u->port = (int)v;
	}
	p = auth_end;
	if (p < end && *p == '/') {
		const char *dend = ++p;
		while (dend < end && *dend != '?')
			dend++;
		if (dend > p && !(u->database = decode(&o, p, (size_t)(dend - p), 0)))
			return fail(err, errlen, "bad percent-escape or NUL in the database name");
		if (u->database && strchr(u->database, '/'))
			return fail(err, errlen, "database name must not contain '/'");
		p = dend;
	}
	if (p < end && *p == '?') {
		p++;
		while (p < end) {
			const char *amp = p;
			while (amp < end && *amp != '&')
				amp++;
			if (amp > p) {
				if (u->nparams == DB_URL_MAX_PARAMS)
					return fail(err, errlen, "too many query parameters");
				const char *eq = memchr(p, '=', (size_t)(amp - p));
				const char *kend = eq ? eq : amp;
				const char *k = decode(&o, p, (size_t)(kend - p), 1);
				const char *v = eq ? decode(&o, eq + 1, (size_t)(amp - eq - 1), 1) : decode(&o, "", 0, 0);
				if (!k || !v || !*k)
					return fail(err, errlen, "bad query parameter");
				u->keys[u->nparams] = k;
				u->values[u->nparams] = v;
				u->nparams++;
			}
			p = amp < end ? amp + 1 : amp;
		}
	}
	return 0;
}
