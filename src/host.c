/*
 * Host services: library opening, the embedded-stdlib searcher, the message
 * handler and Ctrl-C. Shaped after lua.c, whose behaviour operators already know.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "host.h"

static lua_State *volatile signal_state = NULL;
static volatile sig_atomic_t interrupted_flag = 0;

int salvage_msghandler(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	if (msg == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			return 1;
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	lua_sethook(L, NULL, 0, 0);
	luaL_error(L, "interrupted!");
}

static void on_sigint(int sig)
{
	interrupted_flag = sig;
	if (signal_state != NULL) {
		int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
		/* lua_sethook is the one Lua call that is safe in a signal handler */
		lua_sethook(signal_state, interrupt_hook, mask, 1);
	}
}

void salvage_sigint_install(lua_State *L)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	signal_state = L;
	sigaction(SIGINT, &sa, NULL);
	/* SIGTERM stops a run the same way: cleanly, resumable, exit 143 */
	sigaction(SIGTERM, &sa, NULL);
}

void salvage_sigint_remove(void)
{
	signal_state = NULL;
}

int salvage_interrupted(void) { return interrupted_flag; }
void salvage_interrupt_reset(void) { interrupted_flag = 0; }

/* ---- embedded stdlib ---------------------------------------------------- */

static const struct salvage_embedded *find_embedded(const char *name)
{
	for (const struct salvage_embedded *e = salvage_stdlib; e->module; e++)
		if (strcmp(e->module, name) == 0)
			return e;
	return NULL;
}

/* Searcher placed right after the preload searcher: SALVAGE_STDLIB_DIR wins
 * while developing, then the copy compiled into the binary. */
static int stdlib_searcher(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const struct salvage_embedded *e = find_embedded(name);
	const char *dir = getenv("SALVAGE_STDLIB_DIR");

	if (dir && *dir) {
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		luaL_addstring(&b, dir);
		luaL_addchar(&b, '/');
		for (const char *p = name; *p; p++)
			luaL_addchar(&b, *p == '.' ? '/' : *p);
		luaL_addstring(&b, ".lua");
		luaL_pushresult(&b);
		const char *file = lua_tostring(L, -1);
		struct stat st;
		if (stat(file, &st) == 0) {
			if (luaL_loadfile(L, file) != LUA_OK)
				return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
						  name, file, lua_tostring(L, -1));
			lua_pushstring(L, file);
			return 2;
		}
		lua_pop(L, 1);
	}
	if (e == NULL) {
		lua_pushfstring(L, "no embedded module '%s'", name);
		return 1;
	}
	lua_pushfstring(L, "@%s", e->path);
	if (luaL_loadbufferx(L, (const char *)e->source, e->length, lua_tostring(L, -1), "t") != LUA_OK)
		return luaL_error(L, "error loading embedded module '%s':\n\t%s", name, lua_tostring(L, -1));
	lua_pushstring(L, e->path);
	return 2;
}

/* salvage.host: facts about this binary, for the Lua side of the CLI. */
static int host_embedded(lua_State *L)
{
	lua_newtable(L);
	for (const struct salvage_embedded *e = salvage_stdlib; e->module; e++) {
		lua_pushstring(L, e->path);
		lua_setfield(L, -2, e->module);
	}
	return 1;
}

/* host.source("salvage.log") -> the embedded source text, or nil (help() reads
 * a module's header comment from it). */
static int host_source(lua_State *L)
{
	const struct salvage_embedded *e = find_embedded(luaL_checkstring(L, 1));
	if (e == NULL)
		return 0;
	lua_pushlstring(L, (const char *)e->source, e->length);
	return 1;
}

static int host_interrupted(lua_State *L)
{
	lua_pushboolean(L, salvage_interrupted());
	return 1;
}

static int host_repl(lua_State *L)
{
	lua_pushinteger(L, salvage_repl(L));
	return 1;
}

static int luaopen_salvage_host(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"embedded", host_embedded},
		{"source", host_source},
		{"repl", host_repl},
		{"interrupted", host_interrupted},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	lua_pushliteral(L, SALVAGE_VERSION);
	lua_setfield(L, -2, "version");
	lua_pushliteral(L, LUA_RELEASE);
	lua_setfield(L, -2, "lua_version");
	return 1;
}

void salvage_host_open(lua_State *L)
{
	luaL_openlibs(L);

	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	for (const luaL_Reg *r = salvage_preload; r->name; r++) {
		lua_pushcfunction(L, r->func);
		lua_setfield(L, -2, r->name);
	}
	lua_pushcfunction(L, luaopen_salvage_host);
	lua_setfield(L, -2, "salvage.host");
	lua_pop(L, 1);

	/* insert our searcher at position 2, after package.preload */
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "searchers");
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
	for (lua_Integer i = n; i >= 2; i--) {
		lua_rawgeti(L, -1, i);
		lua_rawseti(L, -2, i + 1);
	}
	lua_pushcfunction(L, stdlib_searcher);
	lua_rawseti(L, -2, 2);
	lua_pop(L, 2);
}
