/* Shared helpers of the bindings: see lutil.h for the conventions. */
#include <string.h>

#include "lutil.h"
#include "err/errname.h"

const char *lu_errname(int err)
{
	return err_name(err);
}

int lu_fail(lua_State *L, const char *code, const char *fmt, ...)
{
	va_list ap;
	lua_pushnil(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	lua_pushstring(L, code);
	return 3;
}

int lu_fail_errno(lua_State *L, int err, const char *fmt, ...)
{
	va_list ap;
	lua_pushnil(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), strerror(err));
	lua_remove(L, -2);
	lua_pushstring(L, err_name(err));
	return 3;
}

/* Is the key on the stack top one of `known`? "#" in the list admits the
 * array part (integer keys 1..#t), as in spawn{"ls", "-l", cwd = "/"}. */
static int is_known(lua_State *L, int idx, const char *const known[])
{
	if (lua_type(L, -1) == LUA_TNUMBER) {
		int isint;
		lua_Integer i = lua_tointegerx(L, -1, &isint);
		if (!isint || i < 1 || i > (lua_Integer)lua_rawlen(L, idx))
			return 0;
		for (int j = 0; known[j]; j++)
			if (strcmp(known[j], "#") == 0)
				return 1;
		return 0;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		return 0;
	const char *k = lua_tostring(L, -1);
	for (int j = 0; known[j]; j++)
		if (strcmp(k, known[j]) == 0)
			return 1;
	return 0;
}

static void raise_unknown(lua_State *L, const char *fname, const char *const known[])
{
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 0; known[i]; i++) {
		if (strcmp(known[i], "#") == 0)
			continue;
		if (luaL_bufflen(&b))
			luaL_addstring(&b, ", ");
		luaL_addstring(&b, known[i]);
	}
	luaL_pushresult(&b);
	/* the offending key sits just below the list */
	if (lua_type(L, -2) == LUA_TSTRING)
		luaL_error(L, "%s: unknown option '%s' (known: %s)", fname, lua_tostring(L, -2), lua_tostring(L, -1));
	luaL_error(L, "%s: unexpected %s key in options (known: %s)", fname, luaL_typename(L, -2),
		   lua_tostring(L, -1));
}

void lu_check_options(lua_State *L, int idx, const char *fname, const char *const known[])
{
	idx = lua_absindex(L, idx);
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (!is_known(L, idx, known))
			raise_unknown(L, fname, known);
	}
}

int lu_opt_type(lua_State *L, int idx, const char *k)
{
	int t = lua_getfield(L, idx, k);
	lua_pop(L, 1);
	return t;
}

static void bad_type(lua_State *L, const char *fname, const char *k, const char *want)
{
	luaL_error(L, "%s: option '%s' must be %s, got %s", fname, k, want, luaL_typename(L, -1));
}

const char *lu_opt_string(lua_State *L, int idx, const char *fname, const char *k, const char *dflt)
{
	int t = lua_getfield(L, idx, k);
	const char *v = dflt;
	if (t == LUA_TSTRING || t == LUA_TNUMBER)
		v = lua_tostring(L, -1);
	else if (t != LUA_TNIL)
		bad_type(L, fname, k, "a string");
	lua_pop(L, 1);  /* a string value stays referenced by the table */
	return v;
}

lua_Integer lu_opt_integer(lua_State *L, int idx, const char *fname, const char *k, lua_Integer dflt)
{
	lua_Integer v = dflt;
	if (lua_getfield(L, idx, k) != LUA_TNIL) {
		int ok;
		v = lua_tointegerx(L, -1, &ok);
		if (!ok || lua_type(L, -1) != LUA_TNUMBER)
			bad_type(L, fname, k, "an integer");
	}
	lua_pop(L, 1);
	return v;
}

lua_Number lu_opt_number(lua_State *L, int idx, const char *fname, const char *k, lua_Number dflt)
{
	lua_Number v = dflt;
	int t = lua_getfield(L, idx, k);
	if (t == LUA_TNUMBER)
		v = lua_tonumber(L, -1);
	else if (t != LUA_TNIL)
		bad_type(L, fname, k, "a number");
	lua_pop(L, 1);
	return v;
}

int lu_opt_boolean(lua_State *L, int idx, const char *fname, const char *k, int dflt)
{
	int v = dflt;
	int t = lua_getfield(L, idx, k);
	if (t == LUA_TBOOLEAN)
		v = lua_toboolean(L, -1);
	else if (t != LUA_TNIL)
		bad_type(L, fname, k, "a boolean");
	lua_pop(L, 1);
	return v;
}

void lu_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close,
		  lua_CFunction tostring)
{
	luaL_newmetatable(L, name);
	lua_newtable(L);
	if (methods)
		luaL_setfuncs(L, methods, 0);
	lua_setfield(L, -2, "__index");
	if (close) {
		lua_pushcfunction(L, close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, close);
		lua_setfield(L, -2, "__close");
	}
	if (tostring) {
		lua_pushcfunction(L, tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
}
