/*
 * salvage.sys: the few POSIX services the Lua stdlib needs that stock Lua
 * lacks (stat, directories, processes, fsync'ed writes, clocks, terminals).
 * Failures of the world return nil, "what: why", "ECODE".
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "lutil.h"

/* fail(L, what, err) -> nil, "what: strerror", "ENOENT" */
static int fail(lua_State *L, const char *what, int err)
{
	return lu_fail_errno(L, err, "%s", what);
}

static int sys_isatty(lua_State *L)
{
	lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
	return 1;
}

static int sys_clock(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

static int sys_time(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

static int sys_sleep(lua_State *L)
{
	lua_Number s = luaL_checknumber(L, 1);
	struct timespec ts;
	if (s < 0)
		s = 0;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return 0;
}

static const char *file_type(mode_t m)
{
	if (S_ISREG(m)) return "file";
	if (S_ISDIR(m)) return "directory";
	if (S_ISLNK(m)) return "link";
	if (S_ISBLK(m)) return "block";
	if (S_ISCHR(m)) return "char";
	if (S_ISFIFO(m)) return "fifo";
	if (S_ISSOCK(m)) return "socket";
	return "other";
}

static int push_stat(lua_State *L, const char *path, int follow)
{
	struct stat st;
	if ((follow ? stat(path, &st) : lstat(path, &st)) != 0)
		return fail(L, path, errno);
	lua_createtable(L, 0, 8);
	lua_pushstring(L, file_type(st.st_mode));
	lua_setfield(L, -2, "type");
	lua_pushinteger(L, (lua_Integer)st.st_size);
	lua_setfield(L, -2, "size");
	lua_pushinteger(L, (lua_Integer)st.st_mtime);
	lua_setfield(L, -2, "mtime");
	lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
	lua_setfield(L, -2, "mode");
	lua_pushinteger(L, (lua_Integer)st.st_ino);
	lua_setfield(L, -2, "ino");
	lua_pushinteger(L, (lua_Integer)st.st_dev);
	lua_setfield(L, -2, "dev");
	lua_pushinteger(L, (lua_Integer)st.st_blocks * 512);
	lua_setfield(L, -2, "allocated");
	lua_pushinteger(L, (lua_Integer)st.st_nlink);
	lua_setfield(L, -2, "nlink");
	return 1;
}

static int sys_stat(lua_State *L) { return push_stat(L, luaL_checkstring(L, 1), 1); }
static int sys_lstat(lua_State *L) { return push_stat(L, luaL_checkstring(L, 1), 0); }

static int sys_dir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	DIR *d = opendir(path);
	if (d == NULL)
		return fail(L, path, errno);
	lua_newtable(L);
	lua_Integer n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		lua_pushstring(L, e->d_name);
		lua_rawseti(L, -2, ++n);
	}
	closedir(d);
	return 1;
}

#define SIMPLE_PATH_CALL(name, expr)                   \
	static int sys_##name(lua_State *L)            \
	{                                              \
		const char *path = luaL_checkstring(L, 1); \
		if ((expr) != 0)                       \
			return fail(L, path, errno);   \
		lua_pushboolean(L, 1);                 \
		return 1;                              \
	}

SIMPLE_PATH_CALL(mkdir, mkdir(path, (mode_t)luaL_optinteger(L, 2, 0777)))
SIMPLE_PATH_CALL(rmdir, rmdir(path))
SIMPLE_PATH_CALL(unlink, unlink(path))
SIMPLE_PATH_CALL(chmod, chmod(path, (mode_t)luaL_checkinteger(L, 2)))

static int sys_rename(lua_State *L)
{
	const char *from = luaL_checkstring(L, 1);
	const char *to = luaL_checkstring(L, 2);
	if (rename(from, to) != 0)
		return fail(L, from, errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int sys_symlink(lua_State *L)
{
	const char *target = luaL_checkstring(L, 1);
	const char *path = luaL_checkstring(L, 2);
	if (symlink(target, path) != 0)
		return fail(L, path, errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int sys_realpath(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	char *r = realpath(path, NULL);
	if (r == NULL)
		return fail(L, path, errno);
	lua_pushstring(L, r);
	free(r);
	return 1;
}

static int sys_mkdtemp(lua_State *L)
{
	const char *prefix = luaL_optstring(L, 1, "/tmp/salvage-");
	lua_pushfstring(L, "%sXXXXXX", prefix);
	char *buf = strdup(lua_tostring(L, -1));
	if (buf == NULL)
		return luaL_error(L, "out of memory");
	if (mkdtemp(buf) == NULL) {
		int err = errno;
		free(buf);
		return fail(L, prefix, err);
	}
	lua_pushstring(L, buf);
	free(buf);
	return 1;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	if (copy == NULL)
		return -1;
	char *slash = strrchr(copy, '/');
	const char *dir = ".";
	if (slash == copy)
		dir = "/";
	else if (slash) {
		*slash = '\0';
		dir = copy;
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = -1;
	if (fd >= 0) {
		rc = fsync(fd);
		close(fd);
	}
	free(copy);
	return rc;
}

/* append_sync(path, data): one record appended and on disk before we return —
 * what a journal needs to survive kill -9 and power loss. */
static int sys_append_sync(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t n;
	const char *data = luaL_checklstring(L, 2, &n);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return fail(L, path, errno);
	if (write_all(fd, data, n) != 0 || fsync(fd) != 0) {
		int err = errno;
		close(fd);
		return fail(L, path, err);
	}
	close(fd);
	lua_pushboolean(L, 1);
	return 1;
}

/* write_atomic(path, data [, mode]): temporary name, fsync, rename, fsync the
 * directory, so the final name holds either the old or the whole new content.
 * mode (default 0644) is the new file's, set before any byte is written. */
static int sys_write_atomic(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t n;
	const char *data = luaL_checklstring(L, 2, &n);
	mode_t mode = (mode_t)luaL_optinteger(L, 3, 0644);
	lua_pushfstring(L, "%s.tmp-%d", path, (int)getpid());
	const char *tmp = lua_tostring(L, -1);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd >= 0 && fchmod(fd, mode) != 0) {  /* the umask must not widen nor narrow it */
		int err = errno;
		close(fd);
		unlink(tmp);
		return fail(L, tmp, err);
	}
	if (fd < 0)
		return fail(L, tmp, errno);
	if (write_all(fd, data, n) != 0 || fsync(fd) != 0) {
		int err = errno;
		close(fd);
		unlink(tmp);
		return fail(L, path, err);
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		int err = errno;
		unlink(tmp);
		return fail(L, path, err);
	}
	fsync_dir_of(path);
	lua_pushboolean(L, 1);
	return 1;
}

static int sys_getpid(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)getpid());
	return 1;
}

static int sys_kill(lua_State *L)
{
	pid_t pid = (pid_t)luaL_checkinteger(L, 1);
	int sig = (int)luaL_optinteger(L, 2, SIGTERM);
	if (kill(pid, sig) != 0)
		return fail(L, "kill", errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int redirect(const char *path, int fd, int flags)
{
	int f = open(path, flags, 0644);
	if (f < 0)
		return -1;
	if (dup2(f, fd) < 0)
		return -1;
	close(f);
	return 0;
}

/* Environment additions of spawn's env option, resolved before fork (strings anchored in it). */
typedef struct {
	int n;
	const char *k[64], *v[64];
} spawn_env;

static void read_env(lua_State *L, spawn_env *env)
{
	env->n = 0;
	if (lua_getfield(L, 1, "env") != LUA_TTABLE)
		return;
	lua_pushnil(L);
	while (lua_next(L, -2) && env->n < 64) {
		if (lua_type(L, -2) == LUA_TSTRING) {
			env->k[env->n] = lua_tostring(L, -2);
			env->v[env->n] = lua_tostring(L, -1);
			env->n++;
		}
		lua_pop(L, 1);
	}
}

/* In the child: set each, or unset it when its value is not a string (false). */
static void apply_env(const spawn_env *env)
{
	for (int i = 0; i < env->n; i++) {
		if (env->v[i])
			setenv(env->k[i], env->v[i], 1);
		else
			unsetenv(env->k[i]);
	}
}

/* spawn{argv..., stdin=, stdout=, stderr=, env={K=V}, cwd=, setsid=, track=} -> pid
 * track = a table: track[pid] = true is set before spawn returns, with no Lua instruction in
 * between, so a Ctrl-C that raises just after the call can never lose the child (the caller's
 * cleanup finds it there). */
static const char *const spawn_options[] = {"#", "stdin", "stdout", "stderr", "env", "cwd", "setsid", "track",
					     NULL};

static int sys_spawn(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer argc = (lua_Integer)luaL_len(L, 1);
	luaL_argcheck(L, argc >= 1, 1, "argv must not be empty");
	const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
	for (lua_Integer i = 1; i <= argc; i++) {
		lua_rawgeti(L, 1, i);
		argv[i - 1] = luaL_checkstring(L, -1);
		lua_pop(L, 1);  /* the string stays alive in the table */
	}
	argv[argc] = NULL;
	lu_check_options(L, 1, "spawn", spawn_options);
	const char *in = lu_opt_string(L, 1, "spawn", "stdin", NULL);
	const char *out = lu_opt_string(L, 1, "spawn", "stdout", NULL);
	const char *err = lu_opt_string(L, 1, "spawn", "stderr", NULL);
	const char *cwd = lu_opt_string(L, 1, "spawn", "cwd", NULL);
	int new_session = lu_opt_boolean(L, 1, "spawn", "setsid", 0);
	int track = lu_opt_type(L, 1, "track");
	luaL_argcheck(L, track == LUA_TNIL || track == LUA_TTABLE, 1, "spawn: option 'track' must be a table");
	spawn_env env;
	read_env(L, &env);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return fail(L, argv[0], errno);
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		if (new_session)
			setsid();
		if (cwd && chdir(cwd) != 0)
			_exit(127);
		if (in && redirect(in, 0, O_RDONLY) != 0) _exit(127);
		if (out && redirect(out, 1, O_WRONLY | O_CREAT | O_APPEND) != 0) _exit(127);
		if (err && redirect(err, 2, O_WRONLY | O_CREAT | O_APPEND) != 0) _exit(127);
		apply_env(&env);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (track == LUA_TTABLE) {
		lua_getfield(L, 1, "track");
		lua_pushinteger(L, (lua_Integer)pid);
		lua_pushboolean(L, 1);
		lua_rawset(L, -3);
		lua_pop(L, 1);
	}
	lua_pushinteger(L, (lua_Integer)pid);
	return 1;
}

/* wait(pid [, nohang]) -> "exited"|"signaled", code   |  nil when still running */
static int sys_wait(lua_State *L)
{
	pid_t pid = (pid_t)luaL_checkinteger(L, 1);
	int nohang = lua_toboolean(L, 2);
	int status;
	pid_t r;
	do
		r = waitpid(pid, &status, nohang ? WNOHANG : 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return fail(L, "wait", errno);
	if (r == 0) {
		lua_pushnil(L);
		lua_pushliteral(L, "running");
		return 2;
	}
	if (WIFEXITED(status)) {
		lua_pushliteral(L, "exited");
		lua_pushinteger(L, WEXITSTATUS(status));
	} else {
		lua_pushliteral(L, "signaled");
		lua_pushinteger(L, WTERMSIG(status));
	}
	return 2;
}

static int sys_terminal_width(lua_State *L)
{
	struct winsize ws;
	int fd = (int)luaL_optinteger(L, 1, 2);
	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		lua_pushinteger(L, ws.ws_col);
	else
		lua_pushinteger(L, 80);
	return 1;
}

static int sys_peak_rss(lua_State *L)
{
	struct rusage ru;
	getrusage(luaL_optinteger(L, 1, 0) ? RUSAGE_CHILDREN : RUSAGE_SELF, &ru);
	lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
	return 1;
}

static int sys_setenv(lua_State *L)
{
	const char *k = luaL_checkstring(L, 1);
	const char *v = luaL_optstring(L, 2, NULL);
	if ((v ? setenv(k, v, 1) : unsetenv(k)) != 0)
		return fail(L, k, errno);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- locks that die with their holder ---------------------------------- */

#define LOCK_MT "salvage.sys.lock"

typedef struct { int fd; } Lock;

static int lock_close(lua_State *L)
{
	Lock *k = (Lock *)luaL_checkudata(L, 1, LOCK_MT);
	if (k->fd >= 0) {
		close(k->fd);  /* releases the flock */
		k->fd = -1;
	}
	return 0;
}

/* flock(path) -> lock | nil, msg, "EWOULDBLOCK" (held by another process) | nil, msg, code
 * An exclusive flock on path (created 0600), not inherited by spawned
 * processes; released by lock:close(), garbage collection or the holder's death. */
static int sys_flock(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	Lock *k = (Lock *)lua_newuserdatauv(L, sizeof(Lock), 0);
	k->fd = -1;
	luaL_setmetatable(L, LOCK_MT);  /* owned before anything can fail */
	k->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (k->fd < 0)
		return fail(L, path, errno);
	int r;
	do
		r = flock(k->fd, LOCK_EX | LOCK_NB);
	while (r != 0 && errno == EINTR);
	if (r != 0) {
		int e = errno;
		close(k->fd);
		k->fd = -1;
		if (e == EWOULDBLOCK) {
			lua_pushnil(L);
			lua_pushfstring(L, "%s: locked by another process", path);
			lua_pushliteral(L, "EWOULDBLOCK");
			return 3;
		}
		return fail(L, path, e);
	}
	return 1;
}

/* interrupted() -> "SIGINT" | "SIGTERM" | nil: the stop signal the host saw */
static int sys_interrupted(lua_State *L)
{
	int sig = lu_interrupted();
	if (sig == SIGINT)
		lua_pushliteral(L, "SIGINT");
	else if (sig == SIGTERM)
		lua_pushliteral(L, "SIGTERM");
	else
		lua_pushnil(L);
	return 1;
}

static const luaL_Reg sys_funcs[] = {
	{"isatty", sys_isatty},
	{"clock", sys_clock},
	{"time", sys_time},
	{"sleep", sys_sleep},
	{"stat", sys_stat},
	{"lstat", sys_lstat},
	{"dir", sys_dir},
	{"mkdir", sys_mkdir},
	{"rmdir", sys_rmdir},
	{"unlink", sys_unlink},
	{"chmod", sys_chmod},
	{"rename", sys_rename},
	{"symlink", sys_symlink},
	{"realpath", sys_realpath},
	{"mkdtemp", sys_mkdtemp},
	{"append_sync", sys_append_sync},
	{"write_atomic", sys_write_atomic},
	{"getpid", sys_getpid},
	{"kill", sys_kill},
	{"spawn", sys_spawn},
	{"wait", sys_wait},
	{"terminal_width", sys_terminal_width},
	{"peak_rss", sys_peak_rss},
	{"setenv", sys_setenv},
	{"flock", sys_flock},
	{"interrupted", sys_interrupted},
	{NULL, NULL},
};

LUAMOD_API int luaopen_salvage_sys(lua_State *L)
{
	static const luaL_Reg lock_methods[] = { {"close", lock_close}, {NULL, NULL} };
	lu_new_class(L, LOCK_MT, lock_methods, lock_close, NULL);
	luaL_newlib(L, sys_funcs);
	return 1;
}
