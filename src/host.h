/*
 * The host: what the salvage binary adds around a plain Lua state.
 * The embedded stdlib table and the preload list are generated at build time
 * (tools/embed.c, tools/genpreload.sh) from lua/stdlib/ and src/l*.c.
 */
#ifndef SALVAGE_HOST_H
#define SALVAGE_HOST_H

#include <stddef.h>
#include "lua.h"

#define SALVAGE_VERSION "0.1.0"

struct salvage_embedded {
	const char *module;  /* "salvage.log" */
	const char *path;    /* "lua/stdlib/salvage/log.lua" */
	const unsigned char *source;
	size_t length;
};

extern const struct salvage_embedded salvage_stdlib[];  /* ends with module == NULL */
extern const luaL_Reg salvage_preload[];                /* ends with name == NULL */

/* Open the standard libraries, preload the C bindings, install the stdlib searcher. */
void salvage_host_open(lua_State *L);

/* Message handler for lua_pcall: adds a traceback (lua.c's msghandler). */
int salvage_msghandler(lua_State *L);

/* Ctrl-C and SIGTERM: the handler only sets a hook, the hook raises "interrupted!". */
void salvage_sigint_install(lua_State *L);
void salvage_sigint_remove(void);
int salvage_interrupted(void);          /* the signal (SIGINT, SIGTERM) seen since the last reset, or 0 */
void salvage_interrupt_reset(void);

int salvage_repl(lua_State *L);          /* interactive loop; returns an exit status */

#endif
