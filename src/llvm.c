/*
 * salvage.lvm: the LVM2 metadata reader (src/lvm/) for Lua. Read-only: it
 * never writes to the device and never activates anything.
 *
 *   local lvm = require "salvage.lvm"
 *   local vg = assert(lvm.read("lun.img"))   -- or a block device; several PVs: "lun1.img,lun2.img"
 *   vg -> {path, size, name, id, seqno, extent_size, pv_id, metadata_offset, from_old_copy,
 *          devices = {{path, size, pv_id}...} (size and pv_id above: the first device's),
 *          warnings = {msg...},
 *          pvs = {{name, id, device, pe_start, pe_count, dev_size, present}...},
 *          lvs = {{name, id, size, extents, read_only, visible, tags = {...},
 *                  segments = {{start_extent, extent_count, type, pv, pe}...},
 *                  problem, problem_code (when it cannot be read)}...}}
 *        | nil, msg, code   (ENOLABEL, ECHECKSUM, EMETADATA, ENOENT, ...)
 *   lvm.read_lv(path, lv, offset, length) -> bytes of an LV (short at its end) | nil, msg, code
 * Volumes are read as VHDs through salvage.vhd with paths "lvm:IMAGE:LV".
 */
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "lutil.h"
#include "lvm/lvm.h"

static void set_int(lua_State *L, const char *k, lua_Integer v) { lua_pushinteger(L, v); lua_setfield(L, -2, k); }
static void set_str(lua_State *L, const char *k, const char *v) { lua_pushstring(L, v); lua_setfield(L, -2, k); }
static void set_bool(lua_State *L, const char *k, int v) { lua_pushboolean(L, v); lua_setfield(L, -2, k); }

/* a PV uuid shown 6-4-4-4-4-4-6, as lvm2 prints it */
static const char *pv_dashed(const char *id, char out[40])
{
	snprintf(out, 40, "%.6s-%.4s-%.4s-%.4s-%.4s-%.4s-%.6s", id, id + 6, id + 10, id + 14, id + 18, id + 22, id + 26);
	return out;
}

static void push_lv(lua_State *L, const lvm_vg *vg, const lvm_lv *lv)
{
	lua_createtable(L, 0, 12);
	set_str(L, "name", lv->name);
	set_str(L, "id", lv->id);
	set_int(L, "size", (lua_Integer)lv->size);
	set_int(L, "extents", (lua_Integer)lv->extents);
	set_bool(L, "read_only", lv->read && !lv->write);
	set_bool(L, "visible", lv->visible);
	lua_createtable(L, (int)lv->ntags, 0);
	for (size_t t = 0; t < lv->ntags; t++) {
		lua_pushstring(L, lv->tags[t]);
		lua_rawseti(L, -2, (lua_Integer)t + 1);
	}
	lua_setfield(L, -2, "tags");
	lua_createtable(L, (int)lv->nsegs, 0);
	for (size_t s = 0; s < lv->nsegs; s++) {
		const lvm_seg *g = &lv->segs[s];
		lua_createtable(L, 0, 5);
		set_int(L, "start_extent", (lua_Integer)g->start_extent);
		set_int(L, "extent_count", (lua_Integer)g->extent_count);
		set_str(L, "type", g->type);
		if (g->pv >= 0) {
			set_str(L, "pv", vg->pvs[g->pv].name);
			set_int(L, "pe", (lua_Integer)g->pe);
		}
		lua_rawseti(L, -2, (lua_Integer)s + 1);
	}
	lua_setfield(L, -2, "segments");
	if (lv->problem[0]) {
		set_str(L, "problem", lv->problem);
		set_str(L, "problem_code", lv->problem_code);
	}
}

static void push_pvs(lua_State *L, const lvm_vg *vg)
{
	lua_createtable(L, (int)vg->npvs, 0);
	for (size_t i = 0; i < vg->npvs; i++) {
		const lvm_pv *pv = &vg->pvs[i];
		lua_createtable(L, 0, 7);
		set_str(L, "name", pv->name);
		set_str(L, "id", pv->id);
		set_str(L, "device", pv->device);
		set_int(L, "pe_start", (lua_Integer)pv->pe_start);
		set_int(L, "pe_count", (lua_Integer)pv->pe_count);
		set_int(L, "dev_size", (lua_Integer)pv->dev_size);
		set_bool(L, "present", pv->present);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "pvs");
}

static int l_read(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lvm_err e;
	lvm_dev *d = lvm_open_list(path, &e);
	if (d == NULL)
		return lu_fail(L, e.code, "%s", e.msg);
	const lvm_vg *vg = &d->vg;
	lua_createtable(L, 0, 14);
	set_str(L, "path", d->path);
	set_int(L, "size", (lua_Integer)d->devs[0].size);
	set_str(L, "name", vg->name);
	set_str(L, "id", vg->id);
	set_int(L, "seqno", (lua_Integer)vg->seqno);
	set_int(L, "extent_size", (lua_Integer)vg->extent_size);
	char pv[40];
	set_str(L, "pv_id", pv_dashed(d->devs[0].label.pv_id, pv));
	lua_createtable(L, (int)d->ndevs, 0);
	for (size_t k = 0; k < d->ndevs; k++) {
		lua_createtable(L, 0, 3);
		set_str(L, "path", d->devs[k].path);
		set_int(L, "size", (lua_Integer)d->devs[k].size);
		set_str(L, "pv_id", pv_dashed(d->devs[k].label.pv_id, pv));
		lua_rawseti(L, -2, (lua_Integer)k + 1);
	}
	lua_setfield(L, -2, "devices");
	set_int(L, "metadata_offset", (lua_Integer)d->mda_offset);
	set_bool(L, "from_old_copy", d->from_old_copy);
	lua_createtable(L, (int)d->nwarnings, 0);
	for (size_t i = 0; i < d->nwarnings; i++) {
		lua_pushstring(L, d->warnings[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "warnings");
	push_pvs(L, vg);
	lua_createtable(L, (int)vg->nlvs, 0);
	for (size_t i = 0; i < vg->nlvs; i++) {
		push_lv(L, vg, &vg->lvs[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "lvs");
	lvm_close(d);
	return 1;
}

/* lvm.read_lv(devices, lv, offset, length) -> bytes (short at the LV's end) | nil, msg, code */
static int l_read_lv(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const char *name = luaL_checkstring(L, 2);
	lua_Integer off = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
	luaL_argcheck(L, off >= 0, 3, "negative offset");
	luaL_argcheck(L, len >= 0 && len <= (64 << 20), 4, "length out of range (0..64 MiB)");
	lvm_err e;
	lvm_dev *d = lvm_open_list(path, &e);
	if (d == NULL)
		return lu_fail(L, e.code, "%s", e.msg);
	int i = lvm_find_lv(d, name);
	if (i < 0) {
		lua_pushfstring(L, "%s: VG %s has no LV %s", path, d->vg.name, name);
		lvm_close(d);
		return lu_fail(L, "ENOENT", "%s", lua_tostring(L, -1));
	}
	luaL_Buffer b;
	char *p = luaL_buffinitsize(L, &b, (size_t)len);
	ssize_t n = lvm_lv_pread(d, (size_t)i, p, (size_t)len, (uint64_t)off, &e);
	lvm_close(d);
	if (n < 0)
		return lu_fail(L, e.code, "%s", e.msg);
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

static const luaL_Reg funcs[] = {
	{ "read", l_read },
	{ "read_lv", l_read_lv },
	{ NULL, NULL },
};

LUAMOD_API int luaopen_salvage_lvm(lua_State *L)
{
	luaL_newlib(L, funcs);
	return 1;
}
