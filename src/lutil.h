/* The conventions every binding (src/l*.c) follows, in one place (luaposix's
 * _helpers.c is the model):
 *   - misuse raises (luaL_check*, and the option readers below);
 *   - a failure of the world returns nil, "what: why", code with a stable
 *     string code ("ENOENT", "ER_ACCESS_DENIED_ERROR", "ECHECKSUM");
 *   - an options table is declared: an unknown key raises, naming the known
 *     ones, so a typo ("timout") never silently falls back to a default;
 *   - a handle's metatable has __index = methods, and one idempotent close
 *     function serves close, __close and __gc.
 * Not a Lua module: linked into the host and into every loadable module. */
#ifndef SALVAGE_LUTIL_H
#define SALVAGE_LUTIL_H

#include "lua.h"
#include "lauxlib.h"

/* Push nil, the formatted message, `code`; return 3 (for `return lu_fail(...)`).
 * The format is lua_pushfstring's: %s %d %I %f %p %c %U %%. */
int lu_fail(lua_State *L, const char *code, const char *fmt, ...);

/* The same for an errno: message "<fmt>: strerror(err)", code its name. */
int lu_fail_errno(lua_State *L, int err, const char *fmt, ...);

/* errno -> "ENOENT", ...; "EUNKNOWN" if no errno has that number. */
const char *lu_errname(int err);

/* Raise unless every key of the table at idx is a string in `known`
 * (NULL-terminated); a "#" entry also admits the array part (keys 1..#t). `fname` names the function in the message:
 *   "connect: unknown option 'pasword' (known: host, user, password, ...)" */
void lu_check_options(lua_State *L, int idx, const char *fname, const char *const known[]);

/* Typed readers of an option in the table at idx (absent or nil -> dflt); a
 * value of another type raises "fname: option 'k' must be T, got U". A string
 * returned stays valid while the table holds it. Numbers are accepted as
 * strings by lu_opt_string (as lua_tostring would). */
const char *lu_opt_string(lua_State *L, int idx, const char *fname, const char *k, const char *dflt);
lua_Integer lu_opt_integer(lua_State *L, int idx, const char *fname, const char *k, lua_Integer dflt);
lua_Number lu_opt_number(lua_State *L, int idx, const char *fname, const char *k, lua_Number dflt);
int lu_opt_boolean(lua_State *L, int idx, const char *fname, const char *k, int dflt);
/* The type of option k (LUA_TNIL if absent); the stack is left unchanged. */
int lu_opt_type(lua_State *L, int idx, const char *k);

/* Register the metatable `name` for a handle type: __index = methods (may be
 * NULL), `close` as __gc and __close (may be NULL), `tostring` as __tostring
 * (may be NULL), __name = name (luaL_newmetatable). Leaves the stack as it was. */
void lu_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close,
		  lua_CFunction tostring);

/* The stop signal (SIGINT, SIGTERM) the salvage host saw, or 0. Weak: absent
 * (NULL) when a module is loaded into a stock Lua; call lu_interrupted(). A
 * binding whose C loop runs long without calling Lua (a transfer, a copy)
 * checks it, so that Ctrl-C does not wait for the loop to end. */
int salvage_interrupted(void) __attribute__((weak));
static inline int lu_interrupted(void) { return salvage_interrupted ? salvage_interrupted() : 0; }

#endif
