/*
 * salvage: the command line. Compatible with the stock `lua` interpreter
 * (arg table, -e, -i, -l, -v, -E, -W, -, #! lines, SALVAGE_INIT) so test
 * runners like busted run inside it, plus built-in commands that are Lua
 * modules of the stdlib (`salvage vhd ...`, dispatched by salvage.cli).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "host.h"

static const char *progname = "salvage";

static void print_usage(const char *badoption)
{
	if (badoption[1] == 'e' || badoption[1] == 'l')
		fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
	else
		fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
	fprintf(stderr, "usage: %s [options] [script [args]] | %s <command> [args] (see %s --help)\n",
		progname, progname, progname);
}

static void report(lua_State *L, int status)
{
	if (status != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		if (msg == NULL)
			msg = "(error object is not a string)";
		fprintf(stderr, "%s: %s\n", progname, msg);
		fflush(stderr);
		lua_pop(L, 1);
	}
}

/* Run the function on top of the stack with a traceback handler, Ctrl-C armed. */
static int docall(lua_State *L, int narg, int nres)
{
	int base = lua_gettop(L) - narg;
	lua_pushcfunction(L, salvage_msghandler);
	lua_insert(L, base);
	salvage_sigint_install(L);
	int status = lua_pcall(L, narg, nres, base);
	salvage_sigint_remove();
	lua_remove(L, base);
	return status;
}

static int dochunk(lua_State *L, int status)
{
	if (status == LUA_OK)
		status = docall(L, 0, 0);
	report(L, status);
	return status;
}

static int dostring(lua_State *L, const char *s, const char *name)
{
	return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

static int dofile(lua_State *L, const char *name)
{
	return dochunk(L, luaL_loadfile(L, name));
}

static int dolibrary(lua_State *L, char *globname)
{
	char *modname = strchr(globname, '=');
	if (modname == NULL)
		modname = globname;
	else
		*modname++ = '\0';
	lua_getglobal(L, "require");
	lua_pushstring(L, modname);
	int status = docall(L, 1, 1);
	if (status == LUA_OK)
		lua_setglobal(L, globname);
	report(L, status);
	return status;
}

static void createargtable(lua_State *L, char **argv, int argc, int script)
{
	if (script == argc)
		script = 0;  /* no script name: the program name is arg[0] */
	int narg = argc - (script + 1);
	lua_createtable(L, narg, script + 1);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script);
	}
	lua_setglobal(L, "arg");
}

static int pushargs(lua_State *L)
{
	if (lua_getglobal(L, "arg") != LUA_TTABLE)
		luaL_error(L, "'arg' is not a table");
	int n = (int)luaL_len(L, -1);
	luaL_checkstack(L, n + 3, "too many arguments to script");
	int i;
	for (i = 1; i <= n; i++)
		lua_rawgeti(L, -i, i);
	lua_remove(L, -i);
	return n;
}

static int handle_script(lua_State *L, char **argv)
{
	const char *fname = argv[0];
	if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
		fname = NULL;  /* stdin */
	int status = luaL_loadfile(L, fname);
	if (status == LUA_OK) {
		int n = pushargs(L);
		status = docall(L, n, LUA_MULTRET);
	}
	report(L, status);
	return status;
}

#define has_error 1
#define has_i 2
#define has_v 4
#define has_e 8
#define has_E 16
#define has_help 32

static int collectargs(char **argv, int *first)
{
	int args = 0;
	int i;
	if (argv[0] != NULL) {
		if (argv[0][0])
			progname = "salvage";
	}
	for (i = 1; argv[i] != NULL; i++) {
		*first = i;
		if (argv[i][0] != '-')
			return args;
		switch (argv[i][1]) {
		case '-':
			if (strcmp(argv[i], "--version") == 0) {
				args |= has_v;
				break;
			}
			if (strcmp(argv[i], "--help") == 0) {
				args |= has_help;
				break;
			}
			if (argv[i][2] != '\0')
				return has_error;
			*first = i + 1;
			return args;
		case '\0':
			return args;  /* script "-" */
		case 'E':
			if (argv[i][2] != '\0')
				return has_error;
			args |= has_E;
			break;
		case 'W':
			if (argv[i][2] != '\0')
				return has_error;
			break;
		case 'i':
			args |= has_i;  /* -i implies -v */
			/* fallthrough */
		case 'v':
			if (argv[i][2] != '\0')
				return has_error;
			args |= has_v;
			break;
		case 'e':
			args |= has_e;
			/* fallthrough */
		case 'l':
			if (argv[i][2] == '\0') {
				i++;
				if (argv[i] == NULL || argv[i][0] == '-')
					return has_error;
			}
			break;
		case 'h':
			args |= has_help;
			break;
		default:
			return has_error;
		}
	}
	*first = i;
	return args;
}

static int runargs(lua_State *L, char **argv, int n)
{
	for (int i = 1; i < n; i++) {
		int option = argv[i][1];
		switch (option) {
		case 'e':
		case 'l': {
			char *extra = argv[i] + 2;
			if (*extra == '\0')
				extra = argv[++i];
			int status = (option == 'e') ? dostring(L, extra, "=(command line)")
						      : dolibrary(L, extra);
			if (status != LUA_OK)
				return 0;
			break;
		}
		case 'W':
			lua_warning(L, "@on", 0);
			break;
		}
	}
	return 1;
}

static int handle_init(lua_State *L)
{
	const char *init = getenv("SALVAGE_INIT");
	if (init == NULL)
		return LUA_OK;
	if (init[0] == '@')
		return dofile(L, init + 1);
	return dostring(L, init, "=SALVAGE_INIT");
}

/* A word with no '/', not ending in .lua, not an option: a built-in command. */
static int is_command(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || s[0] == '-' || strchr(s, '/') != NULL)
		return 0;
	if (n >= 4 && strcmp(s + n - 4, ".lua") == 0)
		return 0;
	return 1;
}

/* The exit status of a failure: 128 + the stop signal when one arrived, else 1. */
static int failure_code(void)
{
	return salvage_interrupted() ? 128 + salvage_interrupted() : 1;
}

/* Hand over to salvage.cli: run_command(argv) or usage(). Returns an exit status. */
static int call_cli(lua_State *L, const char *fn, char **argv, int argc)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "salvage.cli");
	int status = docall(L, 1, 1);
	if (status != LUA_OK) {
		report(L, status);
		return 1;
	}
	lua_getfield(L, -1, fn);
	lua_remove(L, -2);
	lua_createtable(L, argc, 0);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i + 1);
	}
	status = docall(L, 1, 1);
	if (status != LUA_OK) {
		int code = failure_code();
		report(L, status);
		return code;
	}
	int code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
	lua_pop(L, 1);
	return code;
}

static void preload_salvage_global(lua_State *L)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "salvage");
	if (lua_pcall(L, 1, 1, 0) == LUA_OK)
		lua_setglobal(L, "salvage");
	else
		lua_pop(L, 1);
}

/* Global options may come before the command (salvage --quiet vhd scan DIR):
 * how many argv words from index 1 are such options (with their values). */
static int leading_globals(int argc, char **argv)
{
	int i = 1;
	while (i < argc) {
		const char *a = argv[i];
		if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0 || strcmp(a, "--log-json") == 0 ||
		    strncmp(a, "--log-level=", 12) == 0 || strncmp(a, "--format=", 9) == 0)
			i++;
		else if ((strcmp(a, "--log-level") == 0 || strcmp(a, "--format") == 0) && i + 1 < argc)
			i += 2;
		else
			break;
	}
	return i - 1;
}

/* {command, globals..., rest...}: salvage.cli strips global options anywhere. */
static char **command_first(lua_State *L, int argc, char **argv, int nglobal)
{
	char **v = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
	int k = 0;
	v[k++] = argv[0];
	v[k++] = argv[1 + nglobal];
	for (int i = 1; i <= nglobal; i++)
		v[k++] = argv[i];
	for (int i = 2 + nglobal; i < argc; i++)
		v[k++] = argv[i];
	v[k] = NULL;
	return v;
}

struct pmain_result {
	int code;
};

/* Nothing left to run: the REPL on a terminal; piped stdin without one runs as a script. */
static int rest_of_input(lua_State *L)
{
	if (isatty(0)) {
		printf("salvage %s (%s)  Ctrl-D exits, help() lists commands\n", SALVAGE_VERSION, LUA_RELEASE);
		fflush(stdout);
		return salvage_repl(L);
	}
	return dofile(L, NULL) == LUA_OK ? 0 : failure_code();
}

/* lua.c's way: options, LUA_INIT, -e and -l in order, the script, then -i or the REPL. */
static int run_lua_style(lua_State *L, int argc, char **argv)
{
	int script = 0;
	int args = collectargs(argv, &script);
	if (args == has_error) {
		print_usage(argv[script]);
		return 2;
	}
	if (args & has_help)
		return call_cli(L, "usage", argv, 0);
	if (args & has_v) {
		printf("salvage %s (%s)\n", SALVAGE_VERSION, LUA_RELEASE);
		fflush(stdout);
	}
	if (args & has_E) {
		lua_pushboolean(L, 1);
		lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
	}
	createargtable(L, argv, argc, script);
	if (!(args & has_E) && handle_init(L) != LUA_OK)
		return 1;
	if (!runargs(L, argv, script))
		return failure_code();
	if (script < argc && handle_script(L, argv + script) != LUA_OK)
		return failure_code();
	if (args & has_i)
		return salvage_repl(L);
	if (script == argc && !(args & (has_e | has_v)))
		return rest_of_input(L);
	return 0;
}

/* Run under lua_pcall: a built-in command (global options may come first), or lua.c's way. */
static int pmain(lua_State *L)
{
	int argc = (int)lua_tointeger(L, 1);
	char **argv = (char **)lua_touserdata(L, 2);
	struct pmain_result *res = (struct pmain_result *)lua_touserdata(L, 3);
	res->code = 1;
	luaL_checkversion(L);
	salvage_host_open(L);
	preload_salvage_global(L);
	int nglobal = leading_globals(argc, argv);
	if (nglobal > 0 && 1 + nglobal < argc && is_command(argv[1 + nglobal]))
		argv = command_first(L, argc, argv, nglobal);
	if (argc >= 2 && is_command(argv[1])) {
		createargtable(L, argv, argc, 1);
		res->code = call_cli(L, "run_command", argv + 1, argc - 1);
	} else {
		res->code = run_lua_style(L, argc, argv);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct pmain_result res = {1};
	lua_State *L = luaL_newstate();
	if (L == NULL) {
		fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
		return 1;
	}
	lua_pushcfunction(L, pmain);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	lua_pushlightuserdata(L, &res);
	int status = lua_pcall(L, 3, 0, 0);
	if (status != LUA_OK) {
		report(L, status);
		res.code = 1;
	}
	fflush(stdout);
	lua_close(L);
	return res.code;
}
