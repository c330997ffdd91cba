/*
 * salvage.vhd: the VHD engine (src/vhd/) for Lua. Thin: types and errors in,
 * tables out. Hot loops (flatten, coalesce) stay in C; the progress callback
 * runs under lua_pcall and an error in it is re-raised after C has cleaned up.
 * flatten and the zero-block pre-pass of stream stop at the next block on Ctrl-C
 * (or SIGTERM), progress function or not (ECANCELED; nothing is left behind).
 *
 *   local vhd = require "salvage.vhd"
 *   local h <close> = assert(vhd.open("c1.vhd" [, {search = {DIR...}, write = bool}]))
 *   h:info()            -> {path, file_size, footer = {...}, header = {...} | nil, allocated_blocks, problems}
 *   h:parent()          -> handle | nil (not differencing) | nil, msg, code
 *   h:chain()           -> {leaf path, ..., base path} | nil, msg, code
 *   h:read(off, len)    -> bytes through the chain (sector bitmaps decide) | nil, msg, code
 *   h:blocks()          -> {{index, offset, damaged}...}, block_size
 *   h:write(off, data)  -> true | nil, msg, code   (vhd.create handles, or opened {write = true})
 *   h:set_hidden(bool), h:sync(), h:close()   (close/__close/__gc: one idempotent function)
 *   vhd.check(path [, {search}])                    -> {path, ok, chain, problems = {{code, severity, message, file, block}}}
 *   vhd.flatten(leaf, out [, {format, force, overwrite, search, progress, drop_zero}])
 *                          format "vhd" (default), "raw" or "qcow2" (src/qcow2/; drop_zero: a read-only
 *                          pre-pass leaves all-zero clusters out of the file instead of as free clusters)
 *                                                   -> {path, virtual_size, bytes_written, blocks_written, format, uuid,
 *                                                       zero_filled, assumed_unallocated, problems} | nil, msg, code
 *   vhd.stream(leaf [, {format, drop_zero, search}]) -> salvage.stream: the flattened standalone VHD (raw, qcow2),
 *                                                      exact length known before the first byte | nil, msg, code
 *   vhd.create(path, {size, type, parent, block_size, hidden, xenserver, strict}) -> writable handle | nil, msg, code
 *       block_size other than 2 MiB needs xenserver = false (then no batmap, creator "qem2");
 *       a parent name outside ASCII is a warning in h:info().problems, refused with strict
 *   vhd.scan(paths [, {match}]), vhd.coalesce(child [, {force, search}])   (Lua, salvage/vhd/lib.lua)
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "lutil.h"
#include "lvm/lvm.h"
#include "lstream.h"
#include "qcow2/qcow2.h"
#include "vhd/vhd.h"

#define MT "salvage.vhd"

/* ---- lvm: sources: an LV inside a LUN image or block device (doc/lvhd.md) ---- */

typedef struct lvsrc {
	lvm_dev *d;   /* one reference per open LV */
	size_t lv;
} lvsrc;

static vhd_file *open_lv(lvm_dev *d, size_t i, vhd_err *e);

static ssize_t lv_pread(void *ctx, void *buf, size_t len, uint64_t off, vhd_err *e)
{
	lvsrc *s = ctx;
	lvm_err le;
	ssize_t n = lvm_lv_pread(s->d, s->lv, buf, len, off, &le);
	if (n < 0)
		vhd_seterr(e, le.code, "%s", le.msg);
	return n;
}

static int lv_hole(void *ctx, uint64_t off, uint64_t len)
{
	lvsrc *s = ctx;
	return lvm_lv_hole(s->d, s->lv, off, len);
}

static void lv_release(void *ctx)
{
	lvsrc *s = ctx;
	lvm_close(s->d);
	free(s);
}

/* A parent reference as LVHD writes it (a /dev/mapper basename, "--" for "-") into VG and LV names. */
static void mapper_split(const char *ref, char *vg, size_t vgn, char *lv, size_t lvn)
{
	const char *b = ref;
	for (const char *p = ref; *p; p++)
		if (*p == '/' || *p == '\\')
			b = p + 1;
	size_t o = 0;
	char *out = vg;
	size_t cap = vgn;
	int split = 0;
	for (const char *p = b; *p; p++) {
		if (p[0] == '-' && p[1] == '-') {
			p++;
		} else if (p[0] == '-' && !split) {
			out[o < cap ? o : cap - 1] = 0;
			out = lv, cap = lvn, o = 0, split = 1;
			continue;
		}
		if (o + 1 < cap)
			out[o++] = *p;
	}
	out[o] = 0;
	if (!split) { /* no VG part: a plain LV name */
		snprintf(lv, lvn, "%s", b);
		vg[0] = 0;
	}
}

static vhd_file *lv_parent(void *ctx, const char *ref, const uint8_t *uuid, vhd_err *e)
{
	lvsrc *s = ctx;
	lvm_dev *d = s->d;
	if (ref) {
		char vg[256], lv[256];
		mapper_split(ref, vg, sizeof vg, lv, sizeof lv);
		int i = lvm_find_lv(d, lv);
		if ((vg[0] && strcmp(vg, d->vg.name) != 0) || i < 0) {
			vhd_seterr(e, "ENOENT", "%s: no LV %s in VG %s%s%s", ref, lv, d->vg.name, vg[0] ? " (named in VG " : "",
				   vg[0] ? vg : "");
			if (vg[0])
				strncat(e->msg, ")", sizeof e->msg - strlen(e->msg) - 1);
			return NULL;
		}
		return open_lv(d, (size_t)i, e);
	}
	for (size_t i = 0; i < d->vg.nlvs; i++) {
		if (i == s->lv || strncmp(d->vg.lvs[i].name, "VHD-", 4) != 0 || d->vg.lvs[i].problem[0])
			continue;
		vhd_err pe;
		vhd_file *c = open_lv(d, i, &pe);
		if (c && memcmp(c->footer.uuid, uuid, 16) == 0)
			return c;
		if (c)
			vhd_close(c);
	}
	vhd_seterr(e, "ENOENT", "no VHD LV in VG %s has that UUID", d->vg.name);
	return NULL;
}

/* LV i of d as a VHD ("VHD-" and others) or as a raw disk ("LV-"), named lvm:IMAGE:LV. */
static vhd_file *open_lv(lvm_dev *d, size_t i, vhd_err *e)
{
	const lvm_lv *lv = &d->vg.lvs[i];
	if (lv->problem[0]) {
		vhd_seterr(e, lv->problem_code, "%s: %s", d->path, lv->problem);
		return NULL;
	}
	lvsrc *s = malloc(sizeof *s);
	size_t n = strlen(d->path) + strlen(lv->name) + 8;
	char *name = malloc(n);
	if (!s || !name) {
		free(s);
		free(name);
		vhd_seterr(e, "ENOMEM", "out of memory");
		return NULL;
	}
	snprintf(name, n, "lvm:%s:%s", d->path, lv->name);
	lvm_ref(d);
	s->d = d;
	s->lv = i;
	vhd_reader rd = { s, lv->size, lv_pread, lv_parent, lv_release, lv_hole };
	vhd_file *f = strncmp(lv->name, "LV-", 3) == 0 ? vhd_open_raw(name, &rd, e) : vhd_open_reader(name, &rd, NULL, e);
	free(name);
	/* what the LVM layer got past (an older metadata copy) is said with every volume read from it */
	for (size_t w = 0; f && w < d->nwarnings; w++)
		vhd_problem_add(f, VHD_WARNING, 0, "LVM_OLD_METADATA", -1, "%s", d->warnings[w]);
	return f;
}

/* "lvm:IMAGE:LV" (or "lvm:IMAGE" when image is wanted alone); 0 ok */
static int split_lvm(const char *spec, char *image, size_t in, const char **lv)
{
	const char *rest = spec + 4;
	*lv = NULL;
	if (access(rest, F_OK) == 0 || strrchr(rest, ':') == NULL) {
		snprintf(image, in, "%s", rest);
		return 0;
	}
	const char *c = strrchr(rest, ':');
	snprintf(image, in, "%.*s", (int)(c - rest), rest);
	*lv = c + 1;
	return 0;
}

/* A path, or lvm:IMAGE:LV: every entry point of this module opens through here. */
static vhd_file *open_any(const char *path, const vhd_open_opts *o, vhd_err *e)
{
	if (strncmp(path, "lvm:", 4) != 0)
		return vhd_open(path, o, e);
	char image[4096];
	const char *lvname;
	split_lvm(path, image, sizeof image, &lvname);
	if (lvname == NULL || !*lvname) {
		vhd_seterr(e, "EINVAL", "%s: name a volume: lvm:IMAGE:VHD-<uuid> or lvm:IMAGE:LV-<uuid>", path);
		return NULL;
	}
	if (o && o->writable) {
		vhd_seterr(e, "EROFS", "%s: volumes inside an LVM image are only read", path);
		return NULL;
	}
	lvm_err le;
	lvm_dev *d = lvm_open_list(image, &le);
	if (d == NULL) {
		vhd_seterr(e, le.code, "%s", le.msg);
		return NULL;
	}
	int i = lvm_find_lv(d, lvname);
	vhd_file *f = NULL;
	if (i < 0)
		vhd_seterr(e, "ENOENT", "%s: VG %s has no LV %s", image, d->vg.name, lvname);
	else
		f = open_lv(d, (size_t)i, e);
	lvm_close(d);
	return f;
}

typedef struct handle {
	vhd_file *f;
	char **search;
	size_t nsearch;
} handle;

static int fail(lua_State *L, const vhd_err *e)
{
	lua_pushnil(L);
	lua_pushstring(L, e->msg);
	lua_pushstring(L, e->code[0] ? e->code : "EIO");
	return 3;
}

static handle *check(lua_State *L, int i)
{
	handle *h = luaL_checkudata(L, i, MT);
	if (h->f == NULL)
		luaL_error(L, "attempt to use a closed salvage.vhd handle");
	return h;
}

static void free_search(handle *h)
{
	for (size_t i = 0; i < h->nsearch; i++)
		free(h->search[i]);
	free(h->search);
	h->search = NULL;
	h->nsearch = 0;
}

static int h_close(lua_State *L)
{
	handle *h = luaL_checkudata(L, 1, MT);
	if (h->f) {
		vhd_err e;
		if (h->f->writable)
			vhd_sync(h->f, &e);
		vhd_close(h->f);
		h->f = NULL;
	}
	free_search(h);
	return 0;
}

static handle *new_handle(lua_State *L)
{
	handle *h = lua_newuserdatauv(L, sizeof *h, 0);
	memset(h, 0, sizeof *h);
	luaL_setmetatable(L, MT);
	return h;
}

/* opts.search = {DIR, ...} into the handle */
static void read_search(lua_State *L, int idx, handle *h)
{
	if (!lua_istable(L, idx))
		return;
	if (lua_getfield(L, idx, "search") == LUA_TTABLE) {
		size_t n = luaL_len(L, -1);
		h->search = calloc(n + 1, sizeof *h->search);
		for (size_t i = 1; h->search && i <= n; i++) {
			lua_geti(L, -1, (lua_Integer)i);
			const char *s = lua_tostring(L, -1);
			if (s)
				h->search[h->nsearch++] = strdup(s);
			lua_pop(L, 1);
		}
	} else if (lua_isstring(L, -1)) {
		h->search = calloc(1, sizeof *h->search);
		if (h->search) {
			h->search[0] = strdup(lua_tostring(L, -1));
			h->nsearch = 1;
		}
	}
	lua_pop(L, 1);
}

static vhd_open_opts opts_of(const handle *h)
{
	vhd_open_opts o = { 0 };
	o.search = (const char *const *)h->search;
	o.nsearch = h->nsearch;
	return o;
}

static int opt_bool(lua_State *L, int idx, const char *k)
{
	if (!lua_istable(L, idx))
		return 0;
	return lu_opt_boolean(L, idx, "salvage.vhd", k, 0);
}

/* The options each function takes: an unknown key raises (lutil.h). */
static const char *const open_keys[] = {"search", "write", NULL};
static const char *const check_keys[] = {"search", NULL};
static const char *const flatten_keys[] = {"format", "progress", "force", "overwrite", "search", "drop_zero", NULL};
static const char *const stream_keys[] = {"format", "drop_zero", "search", NULL};
static const char *const create_keys[] = {"size", "type", "parent", "block_size", "hidden", "strict", "xenserver",
	NULL};

static void check_opts(lua_State *L, int idx, const char *fname, const char *const keys[])
{
	if (lua_istable(L, idx))
		lu_check_options(L, idx, fname, keys);
}

static int l_open(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TTABLE);
	check_opts(L, 2, "vhd.open", open_keys);
	handle *h = new_handle(L);
	read_search(L, 2, h);
	vhd_open_opts o = opts_of(h);
	o.writable = opt_bool(L, 2, "write");
	vhd_err e;
	h->f = open_any(path, &o, &e);
	if (h->f == NULL) {
		free_search(h);
		return fail(L, &e);
	}
	return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) { lua_pushinteger(L, v); lua_setfield(L, -2, k); }
static void set_str(lua_State *L, const char *k, const char *v) { lua_pushstring(L, v); lua_setfield(L, -2, k); }
static void set_bool(lua_State *L, const char *k, int v) { lua_pushboolean(L, v); lua_setfield(L, -2, k); }

static void push_uuid(lua_State *L, const uint8_t u[16])
{
	char s[37];
	vhd_uuid_str(u, s);
	lua_pushstring(L, s);
}

static void push_problems(lua_State *L, vhd_file *f, int *n)
{
	for (size_t i = 0; i < f->nproblems; i++) {
		vhd_problem *p = &f->problems[i];
		lua_createtable(L, 0, 6);
		set_str(L, "code", p->code);
		set_str(L, "severity", p->severity == VHD_ERROR ? "error" : p->severity == VHD_WARNING ? "warning" : "info");
		set_str(L, "message", p->message);
		set_str(L, "file", f->path);
		if (p->block >= 0)
			set_int(L, "block", p->block);
		/* for planners: does this finding stop vhd.flatten, and would force get past it? */
		set_bool(L, "blocks_flatten", p->fatal >= 1);
		set_bool(L, "force_allows", p->fatal == 1);
		lua_rawseti(L, -2, ++*n);
	}
}

/* info().footer: every field, with checksums stored and computed, and which copy was used. */
static void push_footer(lua_State *L, const vhd_file *f)
{
	const vhd_footer *ft = &f->footer;
	char buf[64];
	lua_createtable(L, 0, 24);
	set_str(L, "disk_type", vhd_type_name(ft->disk_type));
	set_int(L, "current_size", (lua_Integer)ft->current_size);
	set_int(L, "original_size", (lua_Integer)ft->original_size);
	push_uuid(L, ft->uuid);
	lua_setfield(L, -2, "uuid");
	set_bool(L, "hidden", ft->hidden != 0);
	set_int(L, "hidden_byte", ft->hidden);
	char app[5];
	memcpy(app, ft->creator_app, 5);
	for (int i = 3; i >= 0 && (app[i] == 0 || app[i] == ' '); i--)
		app[i] = 0;
	set_str(L, "creator_app", app);
	snprintf(buf, sizeof buf, "%u.%u", ft->creator_version >> 16, ft->creator_version & 0xFFFF);
	set_str(L, "creator_version", buf);
	snprintf(buf, sizeof buf, "0x%08x", ft->creator_os);
	set_str(L, "creator_os", buf);
	set_int(L, "timestamp", ft->timestamp);
	set_int(L, "timestamp_unix", (lua_Integer)ft->timestamp + 946684800);
	set_bool(L, "checksum_ok", ft->checksum == ft->checksum_computed);
	set_int(L, "checksum", ft->checksum);
	set_int(L, "checksum_computed", ft->checksum_computed);
	set_str(L, "cookie", ft->cookie);
	snprintf(buf, sizeof buf, "0x%08x", ft->features);
	set_str(L, "features", buf);
	snprintf(buf, sizeof buf, "%u.%u", ft->version >> 16, ft->version & 0xFFFF);
	set_str(L, "version", buf);
	if (ft->data_offset != VHD_NONE64)
		set_int(L, "data_offset", (lua_Integer)ft->data_offset);
	lua_createtable(L, 0, 3);
	set_int(L, "cylinders", ft->cylinders);
	set_int(L, "heads", ft->heads);
	set_int(L, "sectors", ft->sectors);
	lua_setfield(L, -2, "geometry");
	set_int(L, "saved_state", ft->saved_state);
	set_str(L, "source", f->footer_from_copy ? "copy" : "end");
	set_bool(L, "end_ok", f->footer_eof_ok);
	set_bool(L, "copy_ok", f->footer_copy_ok);
}

/* info().header.locators: each used entry, with the path it decodes to when it can be read. */
static void push_locators(lua_State *L, vhd_file *f)
{
	lua_newtable(L);
	int n = 0;
	for (int i = 0; i < 8; i++) {
		const vhd_locator *l = &f->header.loc[i];
		if (l->code[0] == 0)
			continue;
		lua_createtable(L, 0, 5);
		set_str(L, "code", l->code);
		set_int(L, "data_space", l->data_space);
		set_int(L, "data_length", l->data_length);
		set_int(L, "data_offset", (lua_Integer)l->data_offset);
		if (l->data_length > 0 && l->data_length <= 4096 && l->data_offset + l->data_length <= f->file_size) {
			uint8_t d[4096];
			char out[2048];
			if (vhd_file_pread(f, d, l->data_length, l->data_offset, NULL) == (ssize_t)l->data_length &&
			    vhd_locator_decode(l->code, d, l->data_length, out, sizeof out) == 0)
				set_str(L, "path", out);
		}
		lua_rawseti(L, -2, ++n);
	}
}

/* info().header: the dynamic header of a dynamic or differencing disk. */
static void push_header(lua_State *L, vhd_file *f)
{
	const vhd_header *hd = &f->header;
	char buf[64];
	lua_createtable(L, 0, 12);
	set_int(L, "block_size", hd->block_size);
	set_int(L, "max_bat_entries", hd->max_bat_entries);
	set_int(L, "bat_entries", f->bat_entries);
	set_int(L, "table_offset", (lua_Integer)hd->table_offset);
	snprintf(buf, sizeof buf, "%u.%u", hd->version >> 16, hd->version & 0xFFFF);
	set_str(L, "version", buf);
	set_bool(L, "checksum_ok", hd->checksum == hd->checksum_computed);
	set_int(L, "checksum", hd->checksum);
	set_int(L, "checksum_computed", hd->checksum_computed);
	set_int(L, "bitmap_bytes", f->bitmap_bytes);
	if (f->footer.disk_type == VHD_DIFF || !vhd_uuid_is_null(hd->parent_uuid)) {
		set_str(L, "parent_name", hd->parent_name);
		push_uuid(L, hd->parent_uuid);
		lua_setfield(L, -2, "parent_uuid");
		set_int(L, "parent_timestamp", hd->parent_timestamp);
	}
	push_locators(L, f);
	lua_setfield(L, -2, "locators");
	set_bool(L, "batmap", f->batmap.present);
}

static void push_info(lua_State *L, handle *h)
{
	vhd_file *f = h->f;
	lua_createtable(L, 0, 8);
	set_str(L, "path", f->path);
	set_int(L, "file_size", (lua_Integer)f->file_size);
	if (f->raw)
		set_bool(L, "raw", 1);
	push_footer(L, f);
	lua_setfield(L, -2, "footer");
	if (f->has_header) {
		push_header(L, f);
		lua_setfield(L, -2, "header");
	}
	set_int(L, "allocated_blocks", f->has_header ? vhd_allocated_blocks(f) : 0);
	lua_newtable(L);
	int n = 0;
	push_problems(L, f, &n);
	lua_setfield(L, -2, "problems");
}

static int h_info(lua_State *L)
{
	push_info(L, check(L, 1));
	return 1;
}

static int h_parent(lua_State *L)
{
	handle *h = check(L, 1);
	vhd_err e;
	vhd_open_opts o = opts_of(h);
	if (h->f->footer.disk_type != VHD_DIFF) {
		lua_pushnil(L);
		return 1;
	}
	if (vhd_resolve_parent(h->f, &o, &e) != 0)
		return fail(L, &e);
	handle *p = new_handle(L);
	vhd_ref(h->f->parent);
	p->f = h->f->parent;
	for (size_t i = 0; i < h->nsearch; i++) {
		char **s = realloc(p->search, (p->nsearch + 1) * sizeof *s);
		if (!s)
			break;
		p->search = s;
		p->search[p->nsearch++] = strdup(h->search[i]);
	}
	return 1;
}

/* The chain, checked once (overlapping blocks become unreadable rather than wrong). */
static int resolve(lua_State *L, handle *h, vhd_err *e)
{
	vhd_open_opts o = opts_of(h);
	if (vhd_resolve_chain(h->f, &o, e) != 0)
		return -1;
	for (vhd_file *c = h->f; c; c = c->parent)
		vhd_validate(c);
	return 0;
}

static int h_chain(lua_State *L)
{
	handle *h = check(L, 1);
	vhd_err e;
	if (resolve(L, h, &e) != 0)
		return fail(L, &e);
	lua_newtable(L);
	int n = 0;
	for (vhd_file *c = h->f; c; c = c->parent) {
		lua_pushstring(L, c->path);
		lua_rawseti(L, -2, ++n);
	}
	return 1;
}

static int h_read(lua_State *L)
{
	handle *h = check(L, 1);
	lua_Integer off = luaL_checkinteger(L, 2);
	lua_Integer len = luaL_checkinteger(L, 3);
	luaL_argcheck(L, off >= 0, 2, "negative offset");
	luaL_argcheck(L, len >= 0 && len <= (1 << 30), 3, "length out of range (0..1 GiB)");
	vhd_err e;
	if (resolve(L, h, &e) != 0)
		return fail(L, &e);
	uint64_t size = vhd_size(h->f);
	if ((uint64_t)off >= size)
		len = 0;
	else if ((uint64_t)(off + len) > size)
		len = (lua_Integer)(size - (uint64_t)off);
	luaL_Buffer b;
	char *p = luaL_buffinitsize(L, &b, (size_t)len);
	if (vhd_read(h->f, (uint64_t)off, (uint64_t)len, (uint8_t *)p, &e) != 0)
		return fail(L, &e);
	luaL_pushresultsize(&b, (size_t)len);
	return 1;
}

static int h_blocks(lua_State *L)
{
	handle *h = check(L, 1);
	vhd_file *f = h->f;
	lua_newtable(L);
	int n = 0;
	for (uint32_t i = 0; f->has_header && i < f->bat_entries; i++) {
		if (f->bat[i] == VHD_BAT_FREE)
			continue;
		lua_createtable(L, 0, 3);
		set_int(L, "index", i);
		set_int(L, "offset", (lua_Integer)f->bat[i] * 512);
		if (f->bad_block[i])
			set_bool(L, "damaged", 1);
		lua_rawseti(L, -2, ++n);
	}
	lua_pushinteger(L, f->has_header ? f->header.block_size : 0);
	return 2;
}

static int h_write(lua_State *L)
{
	handle *h = check(L, 1);
	lua_Integer off = luaL_checkinteger(L, 2);
	size_t len;
	const char *data = luaL_checklstring(L, 3, &len);
	luaL_argcheck(L, off >= 0, 2, "negative offset");
	if (!h->f->writable)
		return luaL_error(L, "salvage.vhd handle is read-only (open with {write = true} or use vhd.create)");
	vhd_err e;
	if (h->f->footer.disk_type == VHD_DIFF && resolve(L, h, &e) != 0)
		return fail(L, &e);
	if (vhd_write(h->f, (uint64_t)off, (const uint8_t *)data, len, &e) != 0)
		return fail(L, &e);
	lua_pushboolean(L, 1);
	return 1;
}

static int h_set_hidden(lua_State *L)
{
	handle *h = check(L, 1);
	vhd_err e;
	if (vhd_set_hidden(h->f, lua_toboolean(L, 2), &e) != 0)
		return fail(L, &e);
	lua_pushboolean(L, 1);
	return 1;
}

static int h_sync(lua_State *L)
{
	handle *h = check(L, 1);
	vhd_err e;
	if (vhd_sync(h->f, &e) != 0)
		return fail(L, &e);
	lua_pushboolean(L, 1);
	return 1;
}

static int h_tostring(lua_State *L)
{
	handle *h = luaL_checkudata(L, 1, MT);
	if (h->f == NULL)
		lua_pushstring(L, "salvage.vhd (closed)");
	else
		lua_pushfstring(L, "salvage.vhd (%s %s, %I bytes)", vhd_type_name(h->f->footer.disk_type), h->f->path,
				(lua_Integer)vhd_size(h->f));
	return 1;
}

/* vhd.check(path [, {search}]) */
static int l_check(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	check_opts(L, 2, "vhd.check", check_keys);
	handle *h = new_handle(L);
	read_search(L, 2, h);
	vhd_open_opts o = opts_of(h);
	vhd_err e;
	lua_createtable(L, 0, 4);
	set_str(L, "path", path);
	lua_newtable(L);
	int n = 0;
	h->f = open_any(path, &o, &e);
	if (h->f == NULL) {
		lua_createtable(L, 0, 4);
		set_str(L, "code", strcmp(e.code, "ENOENT") == 0 ? "FILE_MISSING" : strcmp(e.code, "ECHECKSUM") == 0 ? "FOOTER_BOTH_BAD" : "UNREADABLE");
		set_str(L, "severity", "error");
		set_str(L, "message", e.msg);
		set_str(L, "file", path);
		lua_rawseti(L, -2, ++n);
	} else {
		vhd_resolve_chain(h->f, &o, &e);
		for (vhd_file *c = h->f; c; c = c->parent) {
			vhd_validate(c);
			push_problems(L, c, &n);
		}
		lua_newtable(L);
		int k = 0;
		for (vhd_file *c = h->f; c; c = c->parent) {
			lua_pushstring(L, c->path);
			lua_rawseti(L, -2, ++k);
		}
		lua_setfield(L, -3, "chain");
	}
	int ok = 1;
	for (int i = 1; i <= n; i++) {
		lua_geti(L, -1, i);
		lua_getfield(L, -1, "severity");
		if (strcmp(lua_tostring(L, -1), "info") != 0)
			ok = 0;
		lua_pop(L, 2);
	}
	lua_setfield(L, -2, "problems");
	set_bool(L, "ok", ok);
	if (h->f) {
		vhd_close(h->f);
		h->f = NULL;
	}
	free_search(h);
	return 1;
}

typedef struct pcb {
	lua_State *L;
	int fn;     /* stack index of the callback, 0 for none */
	int error;  /* an error object was left at stack index err_ref */
	int err_ref;
} pcb;

/* Called by the C loops every block: Ctrl-C (or SIGTERM) cancels them here, progress
 * function or not; then the Lua function, if any (false cancels, an error is kept). */
static int progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	pcb *c = ctx;
	if (lu_interrupted())
		return 0;
	if (!c->fn)
		return 1;
	lua_State *L = c->L;
	lua_pushvalue(L, c->fn);
	lua_pushinteger(L, (lua_Integer)done);
	lua_pushinteger(L, (lua_Integer)total);
	if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
		c->error = 1;
		c->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		return 0;
	}
	int go = !(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
	lua_pop(L, 1);
	return go;
}

static void from_stream_err(vhd_err *e, const stream_err *se)
{
	snprintf(e->code, sizeof e->code, "%s", se->code[0] ? se->code : "EIO");
	snprintf(e->msg, sizeof e->msg, "%s", se->msg);
}

/* The chain as a disk_source at the qcow2 cluster size (allocation from the sector bitmaps). */
static int qcow2_source(vhd_source *vs, vhd_file *leaf, int force, vhd_err *e)
{
	if (vhd_source_init(vs, leaf, force, e) != 0)
		return -1;
	return vhd_source_set_grain(vs, QCOW2_CLUSTER, e);
}

/*
 * The chain through the qcow2 writer into a file: the qcow2 stream over the
 * chain's disk_source, saved the project's way (temporary name, holes,
 * fsync, rename). Zero-filled ranges (force) come back in r as for flatten.
 */
static int flatten_qcow2(vhd_file *leaf, const char *out, const vhd_flatten_opts *fo, int drop_zero,
			 vhd_flatten_result *r, vhd_err *e)
{
	memset(r, 0, sizeof *r);
	if (vhd_chain_holds(leaf, out)) {
		vhd_seterr(e, "EINVAL", "%s: output is a file of the chain being flattened", out);
		return -1;
	}
	vhd_source vs;
	if (qcow2_source(&vs, leaf, fo->force, e) != 0)
		return -1;
	out_stream_opts so = { .drop_zero = drop_zero };
	stream_err se = { "", "" };
	out_stream *s = qcow2_stream_open(&vs.src, &so, &se);
	int rc = -1;
	if (s != NULL) {
		stream_save_opts sv = { .overwrite = fo->overwrite, .progress = fo->progress,
					.progress_ctx = fo->progress_ctx };
		uint64_t written = 0;
		rc = qcow2_save(s, out, &sv, &written, &se);
		r->bytes_written = written;
		r->blocks_written = qcow2_stream_data_clusters(s); /* 64 KiB clusters holding data */
		out_stream_close(s);
	}
	if (rc != 0) {
		from_stream_err(e, &se);
		vhd_source_free(&vs);
		return -1;
	}
	r->virtual_size = leaf->footer.current_size;
	r->zero_filled = vs.rctx.ranges; /* handed over to r */
	r->nzero = vs.rctx.nranges;
	return 0;
}

/* vhd.flatten(leaf, out, {format, progress, force, search}) */
/* flatten's options table (index 3): format ("vhd", "raw", "qcow2"), force, overwrite,
 * drop_zero, progress (left on the stack for the callback). Raises on misuse. */
static void read_flatten_opts(lua_State *L, vhd_flatten_opts *fo, int *qcow2, int *drop_zero, pcb *cb)
{
	if (!lua_istable(L, 3))
		return;
	lua_getfield(L, 3, "format");
	const char *fmt = lua_isnil(L, -1) ? "vhd" : luaL_checkstring(L, -1);
	if (strcmp(fmt, "raw") == 0)
		fo->raw = 1;
	else if (strcmp(fmt, "qcow2") == 0)
		*qcow2 = 1;
	else if (strcmp(fmt, "vhd") != 0)
		luaL_error(L, "format must be \"vhd\", \"raw\" or \"qcow2\", got \"%s\"", fmt);
	lua_pop(L, 1);
	fo->force = opt_bool(L, 3, "force");
	fo->overwrite = opt_bool(L, 3, "overwrite");
	*drop_zero = opt_bool(L, 3, "drop_zero");
	lua_getfield(L, 3, "progress");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return;
	}
	luaL_checktype(L, -1, LUA_TFUNCTION);
	cb->fn = lua_gettop(L);
	fo->progress = progress_cb;
	fo->progress_ctx = cb;
}

/* flatten's result table: what was written, zero-filled and assumed-unallocated ranges, and
 * the chain's problems (the table at index wi). */
static void push_flatten_result(lua_State *L, const char *out, const vhd_flatten_result *r, const char *format,
				int wi)
{
	lua_createtable(L, 0, 8);
	set_str(L, "path", out);
	set_int(L, "virtual_size", (lua_Integer)r->virtual_size);
	set_int(L, "bytes_written", (lua_Integer)r->bytes_written);
	set_int(L, "blocks_written", (lua_Integer)r->blocks_written);
	set_str(L, "format", format);
	if (strcmp(format, "vhd") == 0)
		set_str(L, "uuid", r->uuid);
	lua_newtable(L);
	lua_newtable(L);
	int z = 0, u = 0;
	for (size_t i = 0; i < r->nzero; i++) {
		lua_createtable(L, 0, 3);
		set_int(L, "sector", (lua_Integer)r->zero_filled[i].sector);
		set_int(L, "count", (lua_Integer)r->zero_filled[i].count);
		set_str(L, "reason", r->zero_filled[i].reason);
		lua_rawseti(L, r->zero_filled[i].kind == 0 ? -3 : -2, r->zero_filled[i].kind == 0 ? ++z : ++u);
	}
	lua_setfield(L, -3, "assumed_unallocated");
	lua_setfield(L, -2, "zero_filled");
	lua_pushvalue(L, wi);
	lua_setfield(L, -2, "problems");
}

static int l_flatten(lua_State *L)
{
	const char *leaf = luaL_checkstring(L, 1);
	const char *out = luaL_checkstring(L, 2);
	if (!lua_isnoneornil(L, 3))
		luaL_checktype(L, 3, LUA_TTABLE);
	check_opts(L, 3, "vhd.flatten", flatten_keys);
	vhd_flatten_opts fo = { 0 };
	int qcow2 = 0, drop_zero = 0;
	pcb cb = { L, 0, 0, LUA_NOREF };
	read_flatten_opts(L, &fo, &qcow2, &drop_zero, &cb);
	fo.progress = progress_cb;   /* with no function too: it watches for Ctrl-C */
	fo.progress_ctx = &cb;
	handle *h = new_handle(L);
	read_search(L, 3, h);
	vhd_open_opts o = opts_of(h);
	vhd_err e;
	h->f = open_any(leaf, &o, &e);
	if (h->f == NULL)
		return fail(L, &e);
	vhd_flatten_result r;
	int rc = vhd_resolve_chain(h->f, &o, &e);
	if (rc == 0)
		rc = qcow2 ? flatten_qcow2(h->f, out, &fo, drop_zero, &r, &e) : vhd_flatten(h->f, out, &fo, &r, &e);
	/* warnings of the chain, for the caller to show */
	lua_newtable(L);
	int n = 0;
	for (vhd_file *c = h->f; c; c = c->parent)
		push_problems(L, c, &n);
	int wi = lua_gettop(L);
	vhd_close(h->f);
	h->f = NULL;
	free_search(h);
	if (cb.error) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, cb.err_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, cb.err_ref);
		if (rc == 0)
			vhd_flatten_result_free(&r);
		return lua_error(L);
	}
	if (rc != 0)
		return fail(L, &e);
	push_flatten_result(L, out, &r, qcow2 ? "qcow2" : fo.raw ? "raw" : "vhd", wi);
	vhd_flatten_result_free(&r);
	return 1;
}

static void free_source(void *ctx)
{
	if (ctx)
		vhd_source_free(ctx);
	free(ctx);
}

/* vhd.stream(leaf, {drop_zero, search}): the stream keeps the chain's handle alive. Damage is
 * refused (no force: a stream cannot report zero-filled sectors before it is sent). */
static int l_stream(lua_State *L)
{
	const char *leaf = luaL_checkstring(L, 1);
	out_stream_opts so = { 0 };
	int raw = 0, qcow2 = 0;
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		check_opts(L, 2, "vhd.stream", stream_keys);
		so.drop_zero = opt_bool(L, 2, "drop_zero");
		lua_getfield(L, 2, "format");
		const char *fmt = lua_isnil(L, -1) ? "vhd" : luaL_checkstring(L, -1);
		if (strcmp(fmt, "raw") == 0)
			raw = 1;
		else if (strcmp(fmt, "qcow2") == 0)
			qcow2 = 1;
		else if (strcmp(fmt, "vhd") != 0)
			return luaL_error(L, "format must be \"vhd\", \"raw\" or \"qcow2\", got \"%s\"", fmt);
		lua_pop(L, 1);
	}
	handle *h = new_handle(L);
	int hi = lua_gettop(L);
	read_search(L, 2, h);
	vhd_open_opts o = opts_of(h);
	vhd_err e;
	lstream *b = lstream_new(L, hi);
	if ((b->ctx = calloc(1, sizeof(vhd_source))) == NULL)
		return luaL_error(L, "out of memory");
	b->release = free_source;
	h->f = open_any(leaf, &o, &e);
	if (h->f == NULL || vhd_resolve_chain(h->f, &o, &e) != 0)
		return fail(L, &e);
	if ((qcow2 ? qcow2_source(b->ctx, h->f, 0, &e) : vhd_source_init(b->ctx, h->f, 0, &e)) != 0)
		return fail(L, &e);
	vhd_source *vs = b->ctx;
	pcb cb = { L, 0, 0, LUA_NOREF };   /* no function: the zero-block pre-pass watches for Ctrl-C */
	so.progress = progress_cb;
	so.progress_ctx = &cb;
	if (qcow2) {
		stream_err se = { "", "" };
		if ((b->s = qcow2_stream_open(&vs->src, &so, &se)) == NULL)
			from_stream_err(&e, &se);
	} else {
		b->s = raw ? raw_stream_open(&vs->src, &e) : vhd_stream_open(&vs->src, &so, &e);
	}
	if (b->s == NULL)
		return fail(L, &e);
	if (!raw && !qcow2)
		vhd_stream_uuid(b->s, b->id);
	return 1;
}

/* vhd.create(path, {size, type, parent, block_size, hidden, xenserver, strict}) */
static int l_create(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	lu_check_options(L, 2, "vhd.create", create_keys);
	vhd_create_opts co = { 0 };
	lua_getfield(L, 2, "size");
	if (!lua_isnil(L, -1)) {
		lua_Integer s = luaL_checkinteger(L, -1);
		luaL_argcheck(L, s > 0, 2, "size must be positive");
		co.size = (uint64_t)s;
	}
	lua_pop(L, 1);
	lua_getfield(L, 2, "block_size");
	if (!lua_isnil(L, -1))
		co.block_size = (uint32_t)luaL_checkinteger(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, 2, "type");
	if (!lua_isnil(L, -1)) {
		const char *t = luaL_checkstring(L, -1);
		if (strcmp(t, "dynamic") == 0) co.type = VHD_DYNAMIC;
		else if (strcmp(t, "fixed") == 0) co.type = VHD_FIXED;
		else if (strcmp(t, "differencing") == 0) co.type = VHD_DIFF;
		else return luaL_error(L, "type must be \"dynamic\", \"fixed\" or \"differencing\", got \"%s\"", t);
	}
	lua_pop(L, 1);
	lua_getfield(L, 2, "parent");
	if (!lua_isnil(L, -1))
		co.parent = luaL_checkstring(L, -1);
	int pidx = lua_gettop(L); /* keeps the parent string alive */
	(void)pidx;
	co.hidden = opt_bool(L, 2, "hidden");
	co.strict = opt_bool(L, 2, "strict");
	lua_getfield(L, 2, "xenserver");  /* default true: a file XenServer's tools read */
	co.foreign = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (co.parent == NULL && co.size == 0)
		return luaL_error(L, "vhd.create needs size (or parent)");
	if (co.type == VHD_DIFF && co.parent == NULL)
		return luaL_error(L, "a differencing disk needs parent");
	handle *h = new_handle(L);
	vhd_err e;
	h->f = vhd_create(path, &co, &e);
	if (h->f == NULL)
		return fail(L, &e);
	return 1;
}

/* Internal: the C half of vhd.coalesce (policy lives in Lua). */
static int l_coalesce_raw(lua_State *L)
{
	handle *h = check(L, 1);
	vhd_err e;
	if (resolve(L, h, &e) != 0)
		return fail(L, &e);
	if (vhd_coalesce(h->f, NULL, NULL, &e) != 0)
		return fail(L, &e);
	lua_pushboolean(L, 1);
	return 1;
}

static const luaL_Reg methods[] = {
	{ "info", h_info },
	{ "parent", h_parent },
	{ "chain", h_chain },
	{ "read", h_read },
	{ "blocks", h_blocks },
	{ "write", h_write },
	{ "set_hidden", h_set_hidden },
	{ "sync", h_sync },
	{ "close", h_close },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "open", l_open },
	{ "check", l_check },
	{ "flatten", l_flatten },
	{ "stream", l_stream },
	{ "create", l_create },
	{ "_coalesce", l_coalesce_raw },
	{ NULL, NULL },
};

LUAMOD_API int luaopen_salvage_vhd(lua_State *L)
{
	lu_new_class(L, MT, methods, h_close, h_tostring);
	luaL_newlib(L, funcs);
	/* scan and coalesce are policy, written in Lua: salvage.vhd.lib adds them */
	lua_getglobal(L, "require");
	lua_pushstring(L, "salvage.vhd.lib");
	if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isfunction(L, -1)) {
		lua_pushvalue(L, -2);
		lua_call(L, 1, 0);
	} else {
		lua_pop(L, 1);
	}
	return 1;
}
