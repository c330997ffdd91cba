/*
 * The interactive loop. Reading is readline's callback interface driven by
 * select(), so Ctrl-C at the prompt interrupts select() and we drop the line
 * cleanly instead of longjmp-ing out of readline. Evaluation follows lua.c:
 * try "return <line>" first so expressions print, keep reading while the
 * only complaint is an unfinished statement (<eof>). Printing and completion
 * are Lua (salvage.repl), where tables are easy to walk.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "lua.h"
#include "lauxlib.h"

#include "host.h"

#define PROMPT "salvage> "
#define PROMPT2 "     ..> "
#define HISTORY_MAX 2000

static lua_State *repl_state;
static char *line_read;
static int line_done;

static void on_line(char *line)
{
	line_read = line;
	line_done = 1;
	rl_callback_handler_remove();
}

enum read_status { READ_OK, READ_EOF, READ_CANCEL };

static enum read_status read_line(const char *prompt, char **out)
{
	line_read = NULL;
	line_done = 0;
	salvage_interrupt_reset();
	rl_callback_handler_install(prompt, on_line);
	while (!line_done) {
		fd_set fds;
		int fd = fileno(rl_instream ? rl_instream : stdin);
		FD_ZERO(&fds);
		FD_SET(fd, &fds);
		int r = select(fd + 1, &fds, NULL, NULL, NULL);
		if (r < 0) {
			if (errno == EINTR && salvage_interrupted()) {
				rl_free_line_state();
				rl_callback_sigcleanup();
				rl_cleanup_after_signal();
				rl_callback_handler_remove();
				fputs("\n", stdout);
				fflush(stdout);
				return READ_CANCEL;
			}
			if (errno == EINTR)
				continue;
			rl_callback_handler_remove();
			return READ_EOF;
		}
		rl_callback_read_char();
	}
	if (line_read == NULL)
		return READ_EOF;
	*out = line_read;
	return READ_OK;
}

/* ---- completion: ask salvage.repl.complete(word) for candidates ---------- */

static char **candidates;
static size_t ncandidates;

static void free_candidates(void)
{
	for (size_t i = 0; i < ncandidates; i++)
		free(candidates[i]);
	free(candidates);
	candidates = NULL;
	ncandidates = 0;
}

static void load_candidates(const char *text)
{
	lua_State *L = repl_state;
	int top = lua_gettop(L);
	free_candidates();
	lua_getglobal(L, "require");
	lua_pushliteral(L, "salvage.repl");
	if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1))
		goto out;
	lua_getfield(L, -1, "complete");
	lua_pushstring(L, text);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1))
		goto out;
	size_t n = (size_t)lua_rawlen(L, -1);
	candidates = calloc(n + 1, sizeof *candidates);
	if (candidates == NULL)
		goto out;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, (lua_Integer)i);
		const char *s = lua_tostring(L, -1);
		if (s != NULL && (candidates[ncandidates] = strdup(s)) != NULL)
			ncandidates++;
		lua_pop(L, 1);
	}
out:
	lua_settop(L, top);
}

static char *generator(const char *text, int state)
{
	static size_t next;
	if (state == 0) {
		load_candidates(text);
		next = 0;
	}
	if (next < ncandidates)
		return strdup(candidates[next++]);
	return NULL;
}

static char **complete(const char *text, int start, int end)
{
	(void)start;
	(void)end;
	rl_attempted_completion_over = 1;  /* never fall back to file names */
	rl_completion_append_character = '\0';
	return rl_completion_matches(text, generator);
}

/* ---- evaluation --------------------------------------------------------- */

static int incomplete(lua_State *L, int status)
{
	if (status == LUA_ERRSYNTAX) {
		size_t len;
		const char *msg = lua_tolstring(L, -1, &len);
		const char *mark = "<eof>";
		size_t lmark = strlen(mark);
		if (len >= lmark && strcmp(msg + len - lmark, mark) == 0) {
			lua_pop(L, 1);
			return 1;
		}
	}
	return 0;
}

static int run_chunk(lua_State *L)
{
	int base = lua_gettop(L);  /* the chunk is at base */
	lua_pushcfunction(L, salvage_msghandler);
	lua_insert(L, base);
	salvage_interrupt_reset();
	salvage_sigint_install(L);
	int status = lua_pcall(L, 0, LUA_MULTRET, base);
	salvage_sigint_remove();
	lua_remove(L, base);
	return status;
}

static void print_results(lua_State *L)
{
	int n = lua_gettop(L);
	if (n == 0)
		return;
	lua_getglobal(L, "require");
	lua_pushliteral(L, "salvage.repl");
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		fprintf(stderr, "salvage: %s\n", lua_tostring(L, -1));
		lua_settop(L, 0);
		return;
	}
	lua_getfield(L, -1, "print");
	lua_remove(L, -2);
	lua_insert(L, 1);
	if (lua_pcall(L, n, 0, 0) != LUA_OK)
		fprintf(stderr, "salvage: error printing results: %s\n", lua_tostring(L, -1));
	lua_settop(L, 0);
}

/* History keeps no secret: salvage.repl.mask(statement) hides passwords of
 * URLs and secret-named fields; if that fails, the line is not kept at all. */
static void remember(const char *statement)
{
	if (statement[0] == '\0' || statement[0] == ' ')
		return;
	lua_State *L = repl_state;
	int top = lua_gettop(L);
	lua_getglobal(L, "require");
	lua_pushliteral(L, "salvage.repl");
	if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
		lua_getfield(L, -1, "mask");
		lua_pushstring(L, statement);
		if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isstring(L, -1))
			add_history(lua_tostring(L, -1));
	}
	lua_settop(L, top);
}

/* help() and friends, once per session (salvage.repl.setup). */
static void setup_globals(lua_State *L)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "salvage.repl");
	if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
		lua_getfield(L, -1, "setup");
		if (lua_pcall(L, 0, 0, 0) != LUA_OK)
			lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

static char *history_path(void)
{
	const char *home = getenv("HOME");
	if (home == NULL || *home == '\0')
		return NULL;
	size_t n = strlen(home) + sizeof "/.salvage_history";
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/.salvage_history", home);
	return p;
}

/* Statement mode, as lua.c's multiline: the line (pushed at index 1) grows by further lines
 * while the chunk is incomplete. LUA_OK or an error status with the chunk or message on
 * top; -1 when the continuation was cancelled (Ctrl-C) or ended (*eof set). */
static int multiline(lua_State *L, int *eof)
{
	for (;;) {
		size_t len;
		const char *buf = lua_tolstring(L, 1, &len);
		int status = luaL_loadbuffer(L, buf, len, "=stdin");
		if (!incomplete(L, status))
			return status;
		char *more = NULL;
		enum read_status rs = read_line(PROMPT2, &more);
		if (rs != READ_OK) {
			*eof = rs == READ_EOF;
			return -1;
		}
		lua_pushliteral(L, "\n");
		lua_pushstring(L, more);
		lua_concat(L, 3);
		free(more);
	}
}

/* One entry: a line read, tried as an expression ("return LINE;") first, then as statements
 * (more lines while incomplete). LUA_OK with the chunk on the stack, an error status with its
 * message, -1 to read again (cancelled), -2 at the end of input. */
static int load_entry(lua_State *L)
{
	char *line = NULL;
	enum read_status rs = read_line(PROMPT, &line);
	if (rs != READ_OK)
		return rs == READ_EOF ? -2 : -1;
	const char *retline = lua_pushfstring(L, "return %s;", line);
	int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
	lua_remove(L, -2);
	if (status == LUA_OK) {
		remember(line);
		free(line);
		return LUA_OK;
	}
	lua_pop(L, 1);
	lua_pushstring(L, line);
	free(line);
	int eof = 0;
	status = multiline(L, &eof);
	if (status == -1) {
		lua_settop(L, 0);
		return eof ? -2 : -1;
	}
	remember(lua_tostring(L, 1));
	lua_remove(L, 1);
	return status;
}

int salvage_repl(lua_State *L)
{
	char *hist = history_path();
	repl_state = L;
	rl_readline_name = "salvage";
	rl_catch_signals = 0;
	/* '.' and ':' stay inside a word: salvage.vhd.op<Tab>, conn:qu<Tab> */
	rl_basic_word_break_characters = " \t\n\"'`@$><=;|&{(+-*/%^~#,[)]}";
	rl_attempted_completion_function = complete;
	using_history();
	if (hist)
		read_history(hist);
	lua_settop(L, 0);
	setup_globals(L);
	lua_settop(L, 0);
	int status;
	while ((status = load_entry(L)) != -2) {
		if (status == -1)
			continue;
		if (status == LUA_OK)
			status = run_chunk(L);
		if (status == LUA_OK) {
			print_results(L);
		} else {
			const char *msg = lua_tostring(L, -1);
			fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
			fflush(stderr);
			lua_settop(L, 0);
		}
		if (hist) {
			write_history(hist);
			history_truncate_file(hist, HISTORY_MAX);
		}
	}
	fputs("\n", stdout);
	fflush(stdout);
	free_candidates();
	free(hist);
	return 0;
}
