/* The host's C half: stdlib embedding and lookup, preloads, message handler,
 * the development override, errno naming and the bindings' shared helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <errno.h>
#include <cmocka.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "host.h"
#include "lutil.h"

static lua_State *new_state(void)
{
	lua_State *L = luaL_newstate();
	salvage_host_open(L);
	return L;
}

static const char *run(lua_State *L, const char *code)
{
	lua_settop(L, 0);
	if (luaL_dostring(L, code) != LUA_OK)
		return lua_tostring(L, -1);
	return lua_tostring(L, -1);
}

static void test_stdlib_is_embedded(void **state)
{
	(void)state;
	int found_cli = 0, found_salvage = 0;
	for (const struct salvage_embedded *e = salvage_stdlib; e->module; e++) {
		assert_true(strncmp(e->path, "lua/stdlib/", 11) == 0);
		assert_true(e->length > 0);
		assert_int_equal(strlen((const char *)e->source), e->length);
		if (strcmp(e->module, "salvage.cli") == 0)
			found_cli = 1;
		if (strcmp(e->module, "salvage") == 0) {
			found_salvage = 1;  /* salvage/init.lua is the module "salvage" */
			assert_string_equal(e->path, "lua/stdlib/salvage/init.lua");
		}
	}
	assert_true(found_cli);
	assert_true(found_salvage);
}

static void test_require_embedded_module(void **state)
{
	(void)state;
	unsetenv("SALVAGE_STDLIB_DIR");
	lua_State *L = new_state();
	assert_string_equal(run(L, "return require('salvage.json').encode({b=1,a=2})"), "{\"a\":2,\"b\":1}");
	/* the loader data is the source path, so tracebacks show real files */
	assert_string_equal(run(L, "return select(2, require('salvage.pretty'))"), "lua/stdlib/salvage/pretty.lua");
	lua_close(L);
}

static void test_chunknames_point_at_sources(void **state)
{
	(void)state;
	lua_State *L = new_state();
	const char *msg = run(L, "local ok, e = pcall(require('salvage.json').encode, {f = print}) return e");
	assert_non_null(msg);
	assert_non_null(strstr(msg, "cannot encode a function"));
	msg = run(L, "return debug.getinfo(require('salvage.args').parse, 'S').source");
	assert_string_equal(msg, "@lua/stdlib/salvage/args.lua");
	lua_close(L);
}

static void test_missing_module_message(void **state)
{
	(void)state;
	lua_State *L = new_state();
	const char *msg = run(L, "local ok, e = pcall(require, 'salvage.nonexistent') return e");
	assert_non_null(strstr(msg, "no embedded module 'salvage.nonexistent'"));
	lua_close(L);
}

static void test_bindings_are_preloaded(void **state)
{
	(void)state;
	lua_State *L = new_state();
	assert_string_equal(run(L, "return type(package.preload['salvage.sys'])"), "function");
	assert_string_equal(run(L, "return type(require('salvage.sys').stat)"), "function");
	assert_string_equal(run(L, "return require('salvage.host').version"), SALVAGE_VERSION);
	lua_close(L);
}

static void test_development_override(void **state)
{
	(void)state;
	char dir[] = "/tmp/salvage-host-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char sub[256], file[300];
	snprintf(sub, sizeof sub, "%s/salvage", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	snprintf(file, sizeof file, "%s/pretty.lua", sub);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fputs("return { overridden = true }\n", f);
	fclose(f);

	setenv("SALVAGE_STDLIB_DIR", dir, 1);
	lua_State *L = new_state();
	assert_string_equal(run(L, "return tostring(require('salvage.pretty').overridden)"), "true");
	/* modules absent on disk still come from the binary */
	assert_string_equal(run(L, "return type(require('salvage.json').encode)"), "function");
	lua_close(L);
	unsetenv("SALVAGE_STDLIB_DIR");
	unlink(file);
	rmdir(sub);
	rmdir(dir);
}

static void test_msghandler_adds_traceback(void **state)
{
	(void)state;
	lua_State *L = new_state();
	lua_pushcfunction(L, salvage_msghandler);
	luaL_loadstring(L, "local function inner() error('deep failure') end\ninner()");
	assert_int_not_equal(lua_pcall(L, 0, 0, 1), LUA_OK);
	const char *msg = lua_tostring(L, -1);
	assert_non_null(strstr(msg, "deep failure"));
	assert_non_null(strstr(msg, "stack traceback:"));
	assert_non_null(strstr(msg, "in local 'inner'"));
	lua_close(L);
}

static void test_msghandler_non_string_error(void **state)
{
	(void)state;
	lua_State *L = new_state();
	lua_pushcfunction(L, salvage_msghandler);
	luaL_loadstring(L, "error({})");
	assert_int_not_equal(lua_pcall(L, 0, 0, 1), LUA_OK);
	assert_non_null(strstr(lua_tostring(L, -1), "(error object is a table value)"));
	lua_close(L);
}

static void test_errname(void **state)
{
	(void)state;
	assert_string_equal(lu_errname(ENOENT), "ENOENT");
	assert_string_equal(lu_errname(ENOSPC), "ENOSPC");
	assert_string_equal(lu_errname(EACCES), "EACCES");
	/* every errno has its own name, none becomes a wrong "EIO" */
	assert_string_equal(lu_errname(EOVERFLOW), "EOVERFLOW");
	assert_string_equal(lu_errname(ETXTBSY), "ETXTBSY");
	assert_string_equal(lu_errname(EAGAIN), "EAGAIN");
	assert_string_equal(lu_errname(123456), "EUNKNOWN");
}

static const char *const test_known[] = {"#", "size", "name", NULL};

static int check_opts(lua_State *L)
{
	lu_check_options(L, 1, "make", test_known);
	lua_pushinteger(L, lu_opt_integer(L, 1, "make", "size", 7));
	lua_pushstring(L, lu_opt_string(L, 1, "make", "name", "none"));
	return 2;
}

static int fail_enoent(lua_State *L)
{
	return lu_fail_errno(L, ENOENT, "open %s", "/x");
}

/* Options: known keys read with defaults, an unknown key or a wrong type raises
 * naming it; a failure of the world is nil, msg, code. */
static void test_lutil(void **state)
{
	(void)state;
	lua_State *L = new_state();
	lua_register(L, "check_opts", check_opts);
	lua_register(L, "fail_enoent", fail_enoent);
	assert_string_equal(run(L, "local a, b = check_opts{size = 3} return a .. b"), "3none");
	assert_string_equal(run(L, "local a, b = check_opts{'x', 'y', name = 'n'} return a .. b"), "7n");
	assert_non_null(strstr(run(L, "return select(2, pcall(check_opts, {sise = 3}))"),
			       "make: unknown option 'sise' (known: size, name)"));
	assert_non_null(strstr(run(L, "return select(2, pcall(check_opts, {size = 'big'}))"),
			       "make: option 'size' must be an integer, got string"));
	assert_non_null(strstr(run(L, "return select(2, pcall(check_opts, {[true] = 1}))"), "unexpected boolean key"));
	assert_string_equal(run(L, "local v, m, c = fail_enoent() return tostring(v) .. '|' .. m .. '|' .. c"),
			    "nil|open /x: No such file or directory|ENOENT");
	lua_close(L);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stdlib_is_embedded),
		cmocka_unit_test(test_require_embedded_module),
		cmocka_unit_test(test_chunknames_point_at_sources),
		cmocka_unit_test(test_missing_module_message),
		cmocka_unit_test(test_bindings_are_preloaded),
		cmocka_unit_test(test_development_override),
		cmocka_unit_test(test_msghandler_adds_traceback),
		cmocka_unit_test(test_msghandler_non_string_error),
		cmocka_unit_test(test_errname),
		cmocka_unit_test(test_lutil),
	};
	return cmocka_run_group_tests_name("host", tests, NULL, NULL);
}
