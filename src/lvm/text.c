/*
 * LVM2's metadata text (doc/lvhd.md §5): `key = value`, `name { ... }`,
 * arrays `[a, b]`, double-quoted strings with backslash escapes, integers,
 * `#` comments, a trailing NUL. Parsed into a small tree (bounded depth and
 * size, so hostile text cannot exhaust the stack), then the VG is read from
 * the tree and checked: extent size, PVs, LVs and their segments.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lvm/lvm.h"

#define MAX_DEPTH 16
#define MAX_NODES 200000

enum { N_SECTION, N_INT, N_STR, N_ARRAY };

typedef struct node {
	char *key;
	int kind;
	int64_t num;
	char *str;
	struct node *child, *next;   /* section members or array items */
} node;

typedef struct parser {
	const char *p, *end;
	int line;
	size_t nodes;
	lvm_err *e;
} parser;

static void free_node(node *n)
{
	while (n) {
		node *next = n->next;
		free_node(n->child);
		free(n->key);
		free(n->str);
		free(n);
		n = next;
	}
}

static int perr(parser *ps, const char *what)
{
	lvm_seterr(ps->e, "EMETADATA", "metadata text, line %d: %s", ps->line, what);
	return -1;
}

static void skip_space(parser *ps)
{
	while (ps->p < ps->end) {
		char c = *ps->p;
		if (c == '\n') {
			ps->line++;
			ps->p++;
		} else if (c == ' ' || c == '\t' || c == '\r') {
			ps->p++;
		} else if (c == '#') {
			while (ps->p < ps->end && *ps->p != '\n')
				ps->p++;
		} else {
			break;
		}
	}
}

static int is_ident(char c) { return isalnum((unsigned char)c) || strchr("_.+-", c) != NULL; }

static node *new_node(parser *ps, int kind)
{
	if (++ps->nodes > MAX_NODES) {
		perr(ps, "too many entries");
		return NULL;
	}
	node *n = calloc(1, sizeof *n);
	if (n == NULL)
		lvm_seterr(ps->e, "ENOMEM", "out of memory parsing metadata");
	else
		n->kind = kind;
	return n;
}

static char *read_ident(parser *ps)
{
	const char *s = ps->p;
	while (ps->p < ps->end && is_ident(*ps->p))
		ps->p++;
	if (ps->p == s || ps->p - s > 255) {
		perr(ps, ps->p == s ? "expected a name" : "name longer than 255 characters");
		return NULL;
	}
	return strndup(s, (size_t)(ps->p - s));
}

/* "string" with backslash escapes; ps->p is at the opening quote */
static node *read_string(parser *ps)
{
	ps->p++;
	size_t cap = 64, n = 0;
	char *buf = malloc(cap);
	while (buf && ps->p < ps->end && *ps->p != '"') {
		char c = *ps->p++;
		if (c == '\\' && ps->p < ps->end)
			c = *ps->p++;
		else if (c == '\n')
			ps->line++;
		if (c == '\0')
			break;
		if (n + 1 >= cap) {
			char *b = realloc(buf, cap *= 2);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
		}
		buf[n++] = c;
	}
	if (buf == NULL) {
		lvm_seterr(ps->e, "ENOMEM", "out of memory parsing metadata");
		return NULL;
	}
	if (ps->p >= ps->end || *ps->p != '"') {
		free(buf);
		perr(ps, "unterminated string");
		return NULL;
	}
	ps->p++;
	buf[n] = 0;
	node *v = new_node(ps, N_STR);
	if (!v)
		free(buf);
	else
		v->str = buf;
	return v;
}

/* an integer (a float, which nothing we read uses, is kept as a string) */
static node *read_number(parser *ps)
{
	const char *s = ps->p;
	if (ps->p < ps->end && (*ps->p == '-' || *ps->p == '+'))
		ps->p++;
	while (ps->p < ps->end && (isdigit((unsigned char)*ps->p) || *ps->p == '.'))
		ps->p++;
	if (ps->p == s || ps->p - s > 30) {
		perr(ps, "expected a string or a number");
		return NULL;
	}
	char tmp[32];
	memcpy(tmp, s, (size_t)(ps->p - s));
	tmp[ps->p - s] = 0;
	if (strchr(tmp, '.')) {
		node *v = new_node(ps, N_STR);
		if (v && !(v->str = strdup(tmp))) {
			free(v);
			return NULL;
		}
		return v;
	}
	errno = 0;
	char *endp;
	long long x = strtoll(tmp, &endp, 10);
	if (errno || *endp) {
		perr(ps, "integer out of range");
		return NULL;
	}
	node *v = new_node(ps, N_INT);
	if (v)
		v->num = x;
	return v;
}

/* a scalar: "string" or integer */
static node *read_scalar(parser *ps)
{
	if (ps->p < ps->end && *ps->p == '"')
		return read_string(ps);
	return read_number(ps);
}

static node *read_array(parser *ps)
{
	node *a = new_node(ps, N_ARRAY), **tail;
	if (!a)
		return NULL;
	tail = &a->child;
	ps->p++; /* [ */
	for (;;) {
		skip_space(ps);
		if (ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			return a;
		}
		node *v = read_scalar(ps);
		if (!v) {
			free_node(a);
			return NULL;
		}
		*tail = v;
		tail = &v->next;
		skip_space(ps);
		if (ps->p < ps->end && *ps->p == ',')
			ps->p++;
		else if (!(ps->p < ps->end && *ps->p == ']')) {
			free_node(a);
			perr(ps, "expected ',' or ']' in an array");
			return NULL;
		}
	}
}

static int read_members(parser *ps, node **tail, int depth, int top);

/* one `key = value` or `key { ... }` */
static node *read_entry(parser *ps, int depth)
{
	char *key = read_ident(ps);
	if (!key)
		return NULL;
	skip_space(ps);
	node *n = NULL;
	if (ps->p < ps->end && *ps->p == '{') {
		if (depth >= MAX_DEPTH) {
			free(key);
			perr(ps, "sections nested too deeply");
			return NULL;
		}
		ps->p++;
		n = new_node(ps, N_SECTION);
		if (n && read_members(ps, &n->child, depth + 1, 0) != 0) {
			free_node(n);
			n = NULL;
		}
	} else if (ps->p < ps->end && *ps->p == '=') {
		ps->p++;
		skip_space(ps);
		n = ps->p < ps->end && *ps->p == '[' ? read_array(ps) : read_scalar(ps);
	} else {
		perr(ps, "expected '=' or '{' after a name");
	}
	if (!n) {
		free(key);
		return NULL;
	}
	n->key = key;
	return n;
}

static int read_members(parser *ps, node **tail, int depth, int top)
{
	for (;;) {
		skip_space(ps);
		if (ps->p >= ps->end || *ps->p == '\0') {
			if (top)
				return 0;
			return perr(ps, "text ends inside a section (missing '}')");
		}
		if (*ps->p == '}') {
			if (top)
				return perr(ps, "unexpected '}'");
			ps->p++;
			return 0;
		}
		node *n = read_entry(ps, depth);
		if (!n)
			return -1;
		*tail = n;
		tail = &n->next;
	}
}

/* ---- from the tree to the VG ---- */

static const node *get(const node *sec, const char *key, int kind)
{
	for (const node *n = sec ? sec->child : NULL; n; n = n->next)
		if (n->key && strcmp(n->key, key) == 0)
			return n->kind == kind ? n : NULL;
	return NULL;
}

static int get_u64(const node *sec, const char *key, uint64_t *v)
{
	const node *n = get(sec, key, N_INT);
	if (!n || n->num < 0)
		return -1;
	*v = (uint64_t)n->num;
	return 0;
}

static const char *get_str(const node *sec, const char *key)
{
	const node *n = get(sec, key, N_STR);
	return n ? n->str : NULL;
}

static int has_flag(const node *sec, const char *key, const char *flag)
{
	const node *a = get(sec, key, N_ARRAY);
	for (const node *v = a ? a->child : NULL; v; v = v->next)
		if (v->kind == N_STR && strcmp(v->str, flag) == 0)
			return 1;
	return 0;
}

static int read_pvs(const node *vgn, lvm_vg *vg, lvm_err *e)
{
	const node *pvs = get(vgn, "physical_volumes", N_SECTION);
	if (!pvs) {
		lvm_seterr(e, "EMETADATA", "VG %s: no physical_volumes section", vg->name);
		return -1;
	}
	size_t n = 0;
	for (const node *p = pvs->child; p; p = p->next)
		n += p->kind == N_SECTION;
	vg->pvs = calloc(n ? n : 1, sizeof *vg->pvs);
	if (!vg->pvs) {
		lvm_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	for (const node *p = pvs->child; p; p = p->next) {
		if (p->kind != N_SECTION)
			continue;
		lvm_pv *pv = &vg->pvs[vg->npvs++];
		snprintf(pv->name, sizeof pv->name, "%s", p->key);
		const char *id = get_str(p, "id"), *dev = get_str(p, "device");
		snprintf(pv->id, sizeof pv->id, "%s", id ? id : "");
		snprintf(pv->device, sizeof pv->device, "%s", dev ? dev : "");
		uint64_t pe_start, dev_size = 0, pe_count;
		if (!id || get_u64(p, "pe_start", &pe_start) != 0 || get_u64(p, "pe_count", &pe_count) != 0 ||
		    pe_start > (UINT64_MAX >> 10) || pe_count > (UINT64_MAX >> 24)) {
			lvm_seterr(e, "EMETADATA", "VG %s: PV %s lacks a valid id, pe_start or pe_count", vg->name, p->key);
			return -1;
		}
		get_u64(p, "dev_size", &dev_size);
		pv->pe_start = pe_start * LVM_SECTOR;
		pv->pe_count = pe_count;
		pv->dev_size = dev_size <= (UINT64_MAX >> 10) ? dev_size * LVM_SECTOR : 0;
	}
	return 0;
}

static int pv_index(const lvm_vg *vg, const char *name)
{
	for (size_t i = 0; i < vg->npvs; i++)
		if (strcmp(vg->pvs[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int seg_cmp(const void *a, const void *b)
{
	const lvm_seg *x = a, *y = b;
	return x->start_extent < y->start_extent ? -1 : x->start_extent > y->start_extent;
}

/* The first reason an LV cannot be read, "LV name: why". */
static void lv_refuse(lvm_lv *lv, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lv_refuse(lvm_lv *lv, const char *code, const char *fmt, ...)
{
	if (lv->problem[0])
		return;
	snprintf(lv->problem_code, sizeof lv->problem_code, "%s", code);
	int n = snprintf(lv->problem, sizeof lv->problem, "LV %s: ", lv->name);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(lv->problem + n, sizeof lv->problem - (size_t)n, fmt, ap);
	va_end(ap);
}

/* One segment; unsupported types are kept and make the LV unreadable, by name. */
static int read_seg(const node *s, lvm_vg *vg, lvm_lv *lv, lvm_seg *g, lvm_err *e)
{
	const char *type = get_str(s, "type");
	uint64_t sc = 0;
	if (get_u64(s, "start_extent", &g->start_extent) != 0 || get_u64(s, "extent_count", &g->extent_count) != 0 ||
	    !type || g->extent_count == 0 || g->start_extent > (1ull << 40) || g->extent_count > (1ull << 40)) {
		lvm_seterr(e, "EMETADATA", "VG %s: LV %s: %s lacks a valid start_extent, extent_count or type", vg->name,
			   lv->name, s->key);
		return -1;
	}
	snprintf(g->type, sizeof g->type, "%s", type);
	g->pv = -1;
	get_u64(s, "stripe_count", &sc);
	g->stripe_count = sc > 0xFFFF ? 0xFFFF : (uint32_t)sc;
	if (strcmp(type, "striped") != 0 || sc != 1) {
		lv_refuse(lv, "EUNSUPPORTED", "%s is of type %.30s with %llu stripes; only linear segments "
			  "(striped, 1 stripe) are read", s->key, type, (unsigned long long)sc);
		return 0;
	}
	const node *st = get(s, "stripes", N_ARRAY);
	const node *name = st ? st->child : NULL, *pe = name ? name->next : NULL;
	if (!name || name->kind != N_STR || !pe || pe->kind != N_INT || pe->num < 0 || pe->next) {
		lvm_seterr(e, "EMETADATA", "VG %s: LV %s: %s: stripes must be [\"pvN\", first extent]", vg->name, lv->name,
			   s->key);
		return -1;
	}
	g->pv = pv_index(vg, name->str);
	g->pe = (uint64_t)pe->num;
	if (g->pv < 0) {
		lvm_seterr(e, "EMETADATA", "VG %s: LV %s: %s names PV %s, which the VG does not list", vg->name, lv->name,
			   s->key, name->str);
		return -1;
	}
	if (g->pe + g->extent_count > vg->pvs[g->pv].pe_count)
		lv_refuse(lv, "ERANGE", "%s (extents %llu-%llu of %s) lies past the PV's %llu extents", s->key,
			  (unsigned long long)g->pe, (unsigned long long)(g->pe + g->extent_count - 1), name->str,
			  (unsigned long long)vg->pvs[g->pv].pe_count);
	return 0;
}

static int read_tags(const node *l, lvm_lv *lv, lvm_err *e)
{
	const node *t = get(l, "tags", N_ARRAY);
	size_t n = 0;
	for (const node *v = t ? t->child : NULL; v; v = v->next)
		n++;
	if (!n)
		return 0;
	lv->tags = calloc(n, sizeof *lv->tags);
	if (!lv->tags) {
		lvm_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	for (const node *v = t->child; v; v = v->next)
		if (v->kind == N_STR && (lv->tags[lv->ntags] = strdup(v->str)) != NULL)
			lv->ntags++;
	return 0;
}

static int read_lv(const node *l, lvm_vg *vg, lvm_lv *lv, lvm_err *e)
{
	snprintf(lv->name, sizeof lv->name, "%s", l->key);
	const char *id = get_str(l, "id");
	snprintf(lv->id, sizeof lv->id, "%s", id ? id : "");
	lv->read = has_flag(l, "status", "READ");
	lv->write = has_flag(l, "status", "WRITE");
	lv->visible = has_flag(l, "status", "VISIBLE");
	if (read_tags(l, lv, e) != 0)
		return -1;
	size_t n = 0;
	for (const node *s = l->child; s; s = s->next)
		n += s->kind == N_SECTION && strncmp(s->key, "segment", 7) == 0;
	lv->segs = calloc(n ? n : 1, sizeof *lv->segs);
	if (!lv->segs) {
		lvm_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	for (const node *s = l->child; s; s = s->next) {
		if (s->kind != N_SECTION || strncmp(s->key, "segment", 7) != 0)
			continue;
		if (read_seg(s, vg, lv, &lv->segs[lv->nsegs], e) != 0)
			return -1;
		lv->extents += lv->segs[lv->nsegs++].extent_count;
	}
	uint64_t count = 0;
	if (get_u64(l, "segment_count", &count) == 0 && count != lv->nsegs)
		lv_refuse(lv, "EMETADATA", "segment_count says %llu but %zu segments are listed",
			  (unsigned long long)count, lv->nsegs);
	qsort(lv->segs, lv->nsegs, sizeof *lv->segs, seg_cmp);
	uint64_t next = 0;
	for (size_t i = 0; i < lv->nsegs; i++) {
		if (lv->segs[i].start_extent != next)
			lv_refuse(lv, "EMETADATA", "segments do not cover its extents without gaps or overlaps "
				  "(at logical extent %llu)", (unsigned long long)next);
		next = lv->segs[i].start_extent + lv->segs[i].extent_count;
	}
	if (lv->nsegs == 0)
		lv_refuse(lv, "EMETADATA", "no segments");
	if (lv->extents > (1ull << 62) / vg->extent_size)
		lv_refuse(lv, "ERANGE", "%llu extents is beyond any device", (unsigned long long)lv->extents);
	else
		lv->size = lv->extents * vg->extent_size;
	return 0;
}

static int read_lvs(const node *vgn, lvm_vg *vg, lvm_err *e)
{
	const node *lvs = get(vgn, "logical_volumes", N_SECTION);
	size_t n = 0;
	for (const node *l = lvs ? lvs->child : NULL; l; l = l->next)
		n += l->kind == N_SECTION;
	vg->lvs = calloc(n ? n : 1, sizeof *vg->lvs);
	if (!vg->lvs) {
		lvm_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	for (const node *l = lvs ? lvs->child : NULL; l; l = l->next) {
		if (l->kind != N_SECTION)
			continue;
		if (read_lv(l, vg, &vg->lvs[vg->nlvs++], e) != 0)
			return -1;
	}
	return 0;
}

static int read_vg(const node *top, lvm_vg *vg, lvm_err *e)
{
	const node *vgn = NULL;
	for (const node *n = top; n; n = n->next)
		if (n->kind == N_SECTION) {
			if (vgn) {
				lvm_seterr(e, "EMETADATA", "metadata text holds more than one VG (%s, %s)", vgn->key, n->key);
				return -1;
			}
			vgn = n;
		}
	if (!vgn) {
		lvm_seterr(e, "EMETADATA", "metadata text holds no VG section");
		return -1;
	}
	snprintf(vg->name, sizeof vg->name, "%s", vgn->key);
	const char *id = get_str(vgn, "id");
	snprintf(vg->id, sizeof vg->id, "%s", id ? id : "");
	uint64_t es;
	if (get_u64(vgn, "seqno", &vg->seqno) != 0 || get_u64(vgn, "extent_size", &es) != 0 || es == 0 ||
	    es > (1ull << 32)) {
		lvm_seterr(e, "EMETADATA", "VG %s: seqno or extent_size missing or invalid", vg->name);
		return -1;
	}
	vg->extent_size = es * LVM_SECTOR;
	if (read_pvs(vgn, vg, e) != 0 || read_lvs(vgn, vg, e) != 0)
		return -1;
	return 0;
}

void lvm_vg_free(lvm_vg *vg)
{
	for (size_t i = 0; i < vg->nlvs; i++) {
		for (size_t t = 0; t < vg->lvs[i].ntags; t++)
			free(vg->lvs[i].tags[t]);
		free(vg->lvs[i].tags);
		free(vg->lvs[i].segs);
	}
	free(vg->lvs);
	free(vg->pvs);
	memset(vg, 0, sizeof *vg);
}

int lvm_vg_parse(const char *text, size_t len, lvm_vg *vg, lvm_err *e)
{
	memset(vg, 0, sizeof *vg);
	const char *nul = memchr(text, 0, len);
	parser ps = { text, nul ? nul : text + len, 1, 0, e };
	node *top = NULL;
	int rc = read_members(&ps, &top, 0, 1);
	if (rc == 0)
		rc = read_vg(top, vg, e);
	free_node(top);
	if (rc != 0)
		lvm_vg_free(vg);
	return rc;
}

int lvm_lv_map(const lvm_vg *vg, const lvm_lv *lv, uint64_t off, uint64_t *pv_off, uint64_t *run, int *pv)
{
	uint64_t ext = off / vg->extent_size;
	for (size_t i = 0; i < lv->nsegs; i++) {
		const lvm_seg *g = &lv->segs[i];
		if (ext < g->start_extent || ext >= g->start_extent + g->extent_count || g->pv < 0)
			continue;
		uint64_t in = off - g->start_extent * vg->extent_size;
		*pv = g->pv;
		*pv_off = vg->pvs[g->pv].pe_start + g->pe * vg->extent_size + in;
		*run = g->extent_count * vg->extent_size - in;
		return 0;
	}
	return -1;
}
