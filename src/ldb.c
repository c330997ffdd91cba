/*
 * salvage.db: MariaDB/MySQL over libmariadb, with server-side prepared
 * statements only (binary protocol: integers arrive as integers, no string
 * round trip, no SQL injection through parameters).
 *
 *   local db = require "salvage.db"
 *   local conn <close> = assert(db.connect("mariadb://cloud@db1/cloud"))
 *   for _, vm in ipairs(assert(conn:query("SELECT id, name FROM vm_instance WHERE type = ?", "User"))) do ... end
 *   for row in conn:rows("SELECT * FROM volumes") do ... end        -- streamed, not buffered
 *   local n, id = assert(conn:exec("INSERT INTO t (a) VALUES (?)", "x"))
 *   conn:transaction(function(c) ... end)                            -- COMMIT, or ROLLBACK and re-raise
 *
 * db.connect(opts | url): opts = {host, port, user, password, database,
 * socket, option_file, option_group, connect_timeout, read_timeout,
 * write_timeout, charset = "utf8mb4", tls = true | {ca, capath, cert, key,
 * cipher, verify = true}, url = "mariadb://..."}. A URL is
 * mariadb://user:pass@host:port/db?socket=/path&option_file=...&connect_timeout=5&tls=1.
 * Password precedence: opts.password, the URL's, $SALVAGE_DB_PASSWORD, then the
 * option file (client group or option_group).
 *
 * Parameters `?`: nil -> NULL, boolean -> TINYINT 0/1, integer -> BIGINT,
 * float -> DOUBLE, string -> bytes (embedded NULs kept). Any other type, or a
 * wrong number of them, raises.
 * Results: rows are tables keyed by column name. Integer columns (TINYINT ..
 * BIGINT, YEAR, BIT) -> Lua integers; BIGINT UNSIGNED above 2^63-1 -> decimal
 * string; FLOAT/DOUBLE -> numbers; DECIMAL -> string (exact); DATE ->
 * "YYYY-MM-DD", DATETIME/TIMESTAMP -> "YYYY-MM-DD HH:MM:SS" (fraction when the
 * column has one); TIME -> "HH:MM:SS"; text and blobs -> strings; NULL -> the
 * key is absent (nil). Two columns with one name are an error
 * (EDUPCOLUMN), never a silent overwrite: alias them.
 * Failures: nil, "what: why", code, {errno = 1146, sqlstate = "42S02"} with
 * code the MariaDB name ("ER_NO_SUCH_TABLE", "CR_CONNECTION_ERROR", ...).
 * A row iterator that loses its server mid-way raises (a for loop cannot
 * return nil, msg). `break` out of conn:rows() frees the result (the iterator
 * is also the loop's to-be-closed value); any other statement on the
 * connection abandons an unfinished iterator (using it then raises).
 * Statements whose result shape is only known when they run (CALL) execute,
 * but conn:query returns no rows for them. No Lua error ever unwinds through libmariadb: the library
 * calls no Lua code, and raises happen only between library calls.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>

#include "lua.h"
#include "lauxlib.h"

#include "db/dberr.h"
#include "lutil.h"

#define CONN_MT "salvage.db.conn"
#define CURSOR_MT "salvage.db.cursor"
#define SERVER_MT "salvage.db.server"
#define STMT_CACHE_MAX 256

enum kind { K_NULL, K_INT, K_DBL, K_STR, K_BIT };

struct col {
	enum kind kind;
	char *buf;
	unsigned long cap, len;
	my_bool is_null, error, is_unsigned;
	long long ival;
	double dval;
};

typedef struct cstmt {
	MYSQL_STMT *st;
	struct cstmt *next;
	unsigned nparams, ncols;
	MYSQL_RES *meta;
	MYSQL_BIND *res;
	struct col *cols;
	int untyped;        /* some column had no type at prepare time */
	unsigned long gen;  /* bumps at each execute: cursors know when they are stale */
} Cstmt;

typedef struct {
	MYSQL *my;
	Cstmt *stmts;
	int nstmts;
	Cstmt *active;  /* unbuffered result still pending on the wire */
	int in_tx;
	char desc[160];
} Conn;

typedef struct {
	Cstmt *stmt;
	unsigned long gen;
	int done;
} Cursor;

/* one counter for every statement: a stale cursor can never match a new execution */
static unsigned long generation;

/* ---------- errors ---------- */

static int push_error(lua_State *L, const char *what, unsigned code, const char *msg, const char *sqlstate)
{
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", what, msg && *msg ? msg : "unknown error");
	const char *name = salvage_db_errname(code);
	if (name)
		lua_pushstring(L, name);
	else if (code)
		lua_pushfstring(L, "ER_%d", (int)code);
	else
		lua_pushliteral(L, "EDB");
	lua_createtable(L, 0, 2);
	lua_pushinteger(L, code);
	lua_setfield(L, -2, "errno");
	lua_pushstring(L, sqlstate ? sqlstate : "HY000");
	lua_setfield(L, -2, "sqlstate");
	return 4;
}

static int conn_error(lua_State *L, Conn *c, const char *what)
{
	return push_error(L, what, mysql_errno(c->my), mysql_error(c->my), mysql_sqlstate(c->my));
}

static int stmt_error(lua_State *L, Cstmt *s, const char *what)
{
	return push_error(L, what, mysql_stmt_errno(s->st), mysql_stmt_error(s->st), mysql_stmt_sqlstate(s->st));
}

/* ---------- statements ---------- */

static void stmt_free(Cstmt *s)
{
	if (s->meta)
		mysql_free_result(s->meta);
	if (s->st)
		mysql_stmt_close(s->st);
	if (s->cols)
		for (unsigned i = 0; i < s->ncols; i++)
			free(s->cols[i].buf);
	free(s->cols);
	free(s->res);
	free(s);
}

/* Read and drop whatever the server still has to send for a statement (rows,
 * more result sets as from CALL), so the connection can run the next one.
 * `bound`: its result buffers are bound, so rows can be fetched one by one. */
static void finish(MYSQL_STMT *st, int bound)
{
	for (;;) {
		if (mysql_stmt_field_count(st) > 0) {
			if (bound) {
				int r;
				do
					r = mysql_stmt_fetch(st);
				while (r == 0 || r == MYSQL_DATA_TRUNCATED);
			} else {
				mysql_stmt_store_result(st);
			}
			mysql_stmt_free_result(st);
		}
		bound = 0;
		if (!mysql_stmt_more_results(st) || mysql_stmt_next_result(st) != 0)
			break;
	}
}

static void drop_active(Conn *c)
{
	if (c->active) {
		finish(c->active->st, 1);
		c->active->gen = ++generation;
		c->active = NULL;
	}
}

static void conn_release(Conn *c)
{
	if (c->my) {
		drop_active(c);
		while (c->stmts) {
			Cstmt *n = c->stmts->next;
			stmt_free(c->stmts);
			c->stmts = n;
		}
		c->nstmts = 0;
		mysql_close(c->my);
		c->my = NULL;
	}
}

static Conn *check_open(lua_State *L, int idx)
{
	Conn *c = luaL_checkudata(L, idx, CONN_MT);
	if (!c->my)
		luaL_error(L, "attempt to use a closed database connection");
	return c;
}

static enum kind kind_of(const MYSQL_FIELD *f)
{
	switch (f->type) {
	case MYSQL_TYPE_TINY: case MYSQL_TYPE_SHORT: case MYSQL_TYPE_INT24:
	case MYSQL_TYPE_LONG: case MYSQL_TYPE_LONGLONG: case MYSQL_TYPE_YEAR:
		return K_INT;
	case MYSQL_TYPE_FLOAT: case MYSQL_TYPE_DOUBLE:
		return K_DBL;
	case MYSQL_TYPE_BIT:
		return K_BIT;
	case MYSQL_TYPE_NULL:
		return K_NULL;
	default:
		return K_STR;
	}
}

static void bind_col(Cstmt *s, unsigned i)
{
	struct col *k = &s->cols[i];
	MYSQL_BIND *b = &s->res[i];
	memset(b, 0, sizeof *b);
	b->is_null = &k->is_null;
	b->error = &k->error;
	b->length = &k->len;
	switch (k->kind) {
	case K_INT:
		b->buffer_type = MYSQL_TYPE_LONGLONG;
		b->buffer = &k->ival;
		b->is_unsigned = k->is_unsigned;
		break;
	case K_DBL:
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = &k->dval;
		break;
	case K_NULL:
		b->buffer_type = MYSQL_TYPE_NULL;
		break;
	default:
		b->buffer_type = MYSQL_TYPE_STRING;  /* BIT arrives as its big-endian bytes */
		b->buffer = k->buf;
		b->buffer_length = k->cap;
		break;
	}
}

/* Column i from its metadata; -1 when out of memory. A `?` selected as a
 * column has no type before the first execute (MYSQL_TYPE_NULL): such
 * statements refresh their metadata after each execute. */
static int setup_col(Cstmt *s, unsigned i, const MYSQL_FIELD *f)
{
	struct col *k = &s->cols[i];
	k->kind = kind_of(f);
	k->is_unsigned = (f->flags & UNSIGNED_FLAG) != 0;
	if (k->kind == K_NULL)
		s->untyped = 1;
	if ((k->kind == K_STR || k->kind == K_BIT) && !k->buf) {
		unsigned long cap = f->length + 1;
		if (cap > 1024) cap = 1024;
		if (cap < 32) cap = 32;
		k->buf = malloc(cap);
		if (!k->buf)
			return -1;
		k->cap = cap;
	}
	bind_col(s, i);
	return 0;
}

/* After execute: give untyped columns the types the server now reports. */
static int retype(Cstmt *s)
{
	MYSQL_RES *meta = mysql_stmt_result_metadata(s->st);
	if (!meta)
		return 0;
	if (mysql_num_fields(meta) != s->ncols) {
		mysql_free_result(meta);
		return 0;
	}
	mysql_free_result(s->meta);
	s->meta = meta;
	MYSQL_FIELD *f = mysql_fetch_fields(meta);
	for (unsigned i = 0; i < s->ncols; i++)
		if (setup_col(s, i, &f[i]) != 0)
			return -1;
	mysql_stmt_bind_result(s->st, s->res);
	return 0;
}

/* Prepare (or find in the connection's cache) the statement for `sql`.
 * Returns NULL with the error pushed (4 values) in *nret. */
/* The statement prepared for this SQL text on this connection, or NULL. */
static Cstmt *cached_stmt(lua_State *L, int conn_idx, int sql_idx)
{
	lua_getiuservalue(L, conn_idx, 1);
	lua_pushvalue(L, sql_idx);
	int ty = lua_rawget(L, -2);
	Cstmt *s = ty == LUA_TLIGHTUSERDATA ? lua_touserdata(L, -1) : NULL;
	lua_pop(L, 2);
	return s;
}

/* Simple and bounded: a full cache forgets everything (rare: scripts building SQL text). */
static void forget_stmts(lua_State *L, Conn *c, int conn_idx)
{
	while (c->stmts) {
		Cstmt *n = c->stmts->next;
		stmt_free(c->stmts);
		c->stmts = n;
	}
	c->nstmts = 0;
	lua_newtable(L);
	lua_setiuservalue(L, conn_idx, 1);
}

/* The result columns of a prepared statement, bound; a duplicate column name is refused
 * (4 results pushed, *nret = 4). 0, or -1 with *nret set. */
static int bind_columns(lua_State *L, Cstmt *s, int *nret)
{
	MYSQL_FIELD *f = mysql_fetch_fields(s->meta);
	s->cols = calloc(s->ncols, sizeof *s->cols);
	s->res = calloc(s->ncols, sizeof *s->res);
	if (!s->cols || !s->res)
		luaL_error(L, "out of memory");
	for (unsigned i = 0; i < s->ncols; i++) {
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(f[i].name, f[j].name) != 0)
				continue;
			/* not cached: the next call reports it again */
			char what[300];
			snprintf(what, sizeof what, "duplicate column name '%s' (alias one of them)", f[i].name);
			push_error(L, "query", 0, what, "42S21");
			lua_pushliteral(L, "EDUPCOLUMN");
			lua_replace(L, -3);
			*nret = 4;
			return -1;
		}
		if (setup_col(s, i, &f[i]) != 0)
			luaL_error(L, "out of memory");
	}
	if (mysql_stmt_bind_result(s->st, s->res) != 0) {
		*nret = stmt_error(L, s, "query");
		return -1;
	}
	return 0;
}

static Cstmt *prepare(lua_State *L, Conn *c, int conn_idx, int sql_idx, int *nret)
{
	size_t len;
	const char *sql = luaL_checklstring(L, sql_idx, &len);
	drop_active(c);
	Cstmt *s = cached_stmt(L, conn_idx, sql_idx);
	if (s)
		return s;
	if (c->nstmts >= STMT_CACHE_MAX)
		forget_stmts(L, c, conn_idx);
	s = calloc(1, sizeof *s);
	if (!s)
		luaL_error(L, "out of memory");
	s->st = mysql_stmt_init(c->my);
	if (!s->st) {
		free(s);
		*nret = conn_error(L, c, "prepare");
		return NULL;
	}
	if (mysql_stmt_prepare(s->st, sql, len) != 0) {
		*nret = stmt_error(L, s, "query");
		stmt_free(s);
		return NULL;
	}
	/* from here on the connection owns it (freed with it even if we raise) */
	s->next = c->stmts;
	c->stmts = s;
	c->nstmts++;
	s->nparams = (unsigned)mysql_stmt_param_count(s->st);
	s->meta = mysql_stmt_result_metadata(s->st);
	s->ncols = s->meta ? mysql_num_fields(s->meta) : 0;
	if (s->ncols && bind_columns(L, s, nret) != 0)
		return NULL;
	lua_getiuservalue(L, conn_idx, 1);
	lua_pushvalue(L, sql_idx);
	lua_pushlightuserdata(L, s);
	lua_rawset(L, -3);
	lua_pop(L, 1);
	return s;
}

/* Bind the Lua values at [first, top] and execute. 0, or 4 results pushed. */
static int execute(lua_State *L, Cstmt *s, int first, int *nret)
{
	int top = lua_gettop(L);
	unsigned n = top >= first ? (unsigned)(top - first + 1) : 0;
	if (n != s->nparams)
		luaL_error(L, "statement has %d parameter(s) ('?'), got %d value(s)", (int)s->nparams, (int)n);
	if (n) {
		MYSQL_BIND *b = lua_newuserdatauv(L, n * sizeof *b, 0);
		union { long long i; double d; signed char t; } *v = lua_newuserdatauv(L, n * sizeof *v, 0);
		memset(b, 0, n * sizeof *b);
		for (unsigned i = 0; i < n; i++) {
			int idx = first + (int)i;
			switch (lua_type(L, idx)) {
			case LUA_TNIL:
				b[i].buffer_type = MYSQL_TYPE_NULL;
				break;
			case LUA_TBOOLEAN:
				v[i].t = (signed char)lua_toboolean(L, idx);
				b[i].buffer_type = MYSQL_TYPE_TINY;
				b[i].buffer = &v[i].t;
				break;
			case LUA_TNUMBER:
				if (lua_isinteger(L, idx)) {
					v[i].i = (long long)lua_tointeger(L, idx);
					b[i].buffer_type = MYSQL_TYPE_LONGLONG;
					b[i].buffer = &v[i].i;
				} else {
					v[i].d = (double)lua_tonumber(L, idx);
					b[i].buffer_type = MYSQL_TYPE_DOUBLE;
					b[i].buffer = &v[i].d;
				}
				break;
			case LUA_TSTRING: {
				size_t len;
				const char *p = lua_tolstring(L, idx, &len);
				b[i].buffer_type = MYSQL_TYPE_STRING;
				b[i].buffer = (void *)p;
				b[i].buffer_length = (unsigned long)len;
				break;
			}
			default:
				luaL_error(L, "parameter %d: cannot send a %s to the database", (int)i + 1,
					   luaL_typename(L, idx));
			}
		}
		if (mysql_stmt_bind_param(s->st, b) != 0) {
			lua_pop(L, 2);
			*nret = stmt_error(L, s, "query");
			return -1;
		}
		/* b and v stay on the stack until execute returned; the caller resets the stack */
	}
	s->gen = ++generation;
	if (mysql_stmt_execute(s->st) != 0) {
		*nret = stmt_error(L, s, "query");
		return -1;
	}
	if (s->untyped && retype(s) != 0)
		luaL_error(L, "out of memory");
	return 0;
}

static void push_bit(lua_State *L, const struct col *k)
{
	lua_Integer v = 0;
	for (unsigned long i = 0; i < k->len && i < 8; i++)
		v = (v << 8) | (unsigned char)k->buf[i];
	lua_pushinteger(L, v);
}

/* Fetch the next row into a new table on the stack. 1 row, 0 end, -1 error (4 pushed). */
/* A fetch reported truncation: each string or bit column longer than its buffer gets a bigger
 * one and is fetched again. 1 when buffers were rebound, 0 when none needed it, -1 on error. */
static int refetch_truncated(lua_State *L, Cstmt *s, int *nret)
{
	int rebind = 0;
	for (unsigned i = 0; i < s->ncols; i++) {
		struct col *k = &s->cols[i];
		if (!((k->kind == K_STR || k->kind == K_BIT) && !k->is_null && k->len > k->cap))
			continue;
		unsigned long cap = k->len + 1;
		char *nb = realloc(k->buf, cap);
		if (!nb) {
			mysql_stmt_free_result(s->st);
			luaL_error(L, "out of memory (a value of %lu bytes)", k->len);
		}
		k->buf = nb;
		k->cap = cap;
		bind_col(s, i);
		if (mysql_stmt_fetch_column(s->st, &s->res[i], i, 0) != 0) {
			*nret = stmt_error(L, s, "fetch");
			return -1;
		}
		rebind = 1;
	}
	return rebind;
}

/* One column's value as Lua's: an integer (an unsigned one past Lua's range as its decimal
 * string), a float, a bit string, or bytes. */
static void push_col(lua_State *L, const struct col *k)
{
	switch (k->kind) {
	case K_INT:
		if (k->is_unsigned && (unsigned long long)k->ival > (unsigned long long)LUA_MAXINTEGER) {
			char num[32];
			snprintf(num, sizeof num, "%llu", (unsigned long long)k->ival);
			lua_pushstring(L, num);
		} else {
			lua_pushinteger(L, (lua_Integer)k->ival);
		}
		break;
	case K_DBL:
		lua_pushnumber(L, (lua_Number)k->dval);
		break;
	case K_BIT:
		push_bit(L, k);
		break;
	default:
		lua_pushlstring(L, k->buf, k->len < k->cap ? k->len : k->cap);
		break;
	}
}

static int fetch_row(lua_State *L, Cstmt *s, int *nret)
{
	int r = mysql_stmt_fetch(s->st);
	if (r == MYSQL_NO_DATA)
		return 0;
	if (r == 1) {
		*nret = stmt_error(L, s, "fetch");
		return -1;
	}
	int rebind = r == MYSQL_DATA_TRUNCATED ? refetch_truncated(L, s, nret) : 0;
	if (rebind < 0)
		return -1;
	MYSQL_FIELD *f = mysql_fetch_fields(s->meta);
	lua_createtable(L, 0, (int)s->ncols);
	for (unsigned i = 0; i < s->ncols; i++) {
		const struct col *k = &s->cols[i];
		if (k->is_null || k->kind == K_NULL)
			continue;
		push_col(L, k);
		lua_setfield(L, -2, f[i].name);
	}
	if (rebind)
		mysql_stmt_bind_result(s->st, s->res);
	return 1;
}

/* conn:method(sql, ...): prepare (cached) and execute with the arguments from
 * index 3; NULL with *nret results (nil, msg, code) pushed on failure. */
static Cstmt *run_statement(lua_State *L, Conn *c, int *nret)
{
	Cstmt *s = prepare(L, c, 1, 2, nret);
	if (!s)
		return NULL;
	int base = lua_gettop(L);
	if (execute(L, s, 3, nret) != 0)
		return NULL;
	lua_settop(L, base);
	return s;
}

/* ---------- connection methods ---------- */

static int conn_query(lua_State *L)
{
	Conn *c = check_open(L, 1);
	int nret = 0;
	Cstmt *s = run_statement(L, c, &nret);
	if (!s)
		return nret;
	lua_newtable(L);
	if (s->ncols == 0) {
		finish(s->st, 0);
		return 1;
	}
	c->active = s;
	lua_Integer n = 0;
	for (;;) {
		int r = fetch_row(L, s, &nret);
		if (r == 0)
			break;
		if (r < 0) {
			drop_active(c);
			return nret;
		}
		lua_rawseti(L, -2, ++n);
	}
	drop_active(c);
	return 1;
}

static int conn_exec(lua_State *L)
{
	Conn *c = check_open(L, 1);
	int nret = 0;
	Cstmt *s = run_statement(L, c, &nret);
	if (!s)
		return nret;
	my_ulonglong affected = mysql_stmt_affected_rows(s->st);
	my_ulonglong id = mysql_stmt_insert_id(s->st);
	finish(s->st, 0);
	lua_pushinteger(L, affected == (my_ulonglong)-1 ? 0 : (lua_Integer)affected);
	if (id)
		lua_pushinteger(L, (lua_Integer)id);
	else
		lua_pushnil(L);
	return 2;
}

static int cursor_next(lua_State *L)
{
	Cursor *cur = luaL_checkudata(L, 1, CURSOR_MT);
	if (cur->done)
		return 0;
	lua_getiuservalue(L, 1, 1);
	Conn *c = luaL_checkudata(L, -1, CONN_MT);
	lua_pop(L, 1);
	if (!c->my || c->active != cur->stmt || cur->stmt->gen != cur->gen)
		return luaL_error(L, "rows: the result was abandoned (another statement ran on this connection, "
				     "or it was closed, before the loop ended)");
	int nret = 0;
	int r = fetch_row(L, cur->stmt, &nret);
	if (r == 1)
		return 1;
	cur->done = 1;
	drop_active(c);
	if (r == 0)
		return 0;
	return luaL_error(L, "%s", lua_tostring(L, -3));
}

static int cursor_close(lua_State *L)
{
	Cursor *cur = luaL_checkudata(L, 1, CURSOR_MT);
	if (!cur->done) {
		cur->done = 1;
		lua_getiuservalue(L, 1, 1);
		Conn *c = lua_touserdata(L, -1);
		if (c && c->my && c->active == cur->stmt && cur->stmt->gen == cur->gen)
			drop_active(c);
	}
	return 0;
}

static int conn_rows(lua_State *L)
{
	Conn *c = check_open(L, 1);
	int nret = 0;
	Cstmt *s = run_statement(L, c, &nret);
	if (!s)
		return nret;
	Cursor *cur = lua_newuserdatauv(L, sizeof *cur, 1);
	cur->stmt = s;
	cur->gen = s->gen;
	cur->done = s->ncols == 0;
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1);
	luaL_setmetatable(L, CURSOR_MT);
	if (s->ncols)
		c->active = s;
	else
		finish(s->st, 0);
	int cur_idx = lua_gettop(L);
	lua_pushcfunction(L, cursor_next);
	lua_pushvalue(L, cur_idx);
	lua_pushnil(L);
	lua_pushvalue(L, cur_idx);  /* to-be-closed: a `break` frees the result */
	return 4;
}

static int simple(lua_State *L, Conn *c, const char *sql, const char *what)
{
	drop_active(c);
	if (mysql_real_query(c->my, sql, strlen(sql)) != 0)
		return conn_error(L, c, what);
	return 0;
}

static int conn_transaction(lua_State *L)
{
	Conn *c = check_open(L, 1);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	if (c->in_tx)
		return luaL_error(L, "transaction: already in a transaction on this connection");
	int n = simple(L, c, "START TRANSACTION", "transaction");
	if (n)
		return n;
	c->in_tx = 1;
	int base = lua_gettop(L);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 1);
	int st = lua_pcall(L, 1, LUA_MULTRET, 0);
	c->in_tx = 0;
	if (st != LUA_OK) {
		if (c->my)
			simple(L, c, "ROLLBACK", "rollback");
		lua_settop(L, base + 1);
		return lua_error(L);
	}
	if (!c->my)
		return luaL_error(L, "transaction: the connection was closed inside the transaction");
	n = simple(L, c, "COMMIT", "commit");
	if (n)
		return n;
	int results = lua_gettop(L) - base;
	if (results == 0) {
		lua_pushboolean(L, 1);
		return 1;
	}
	return results;
}

static int conn_close(lua_State *L)
{
	Conn *c = luaL_checkudata(L, 1, CONN_MT);
	conn_release(c);
	/* an owner (the ephemeral server guard) goes with the connection */
	if (lua_getiuservalue(L, 1, 2) != LUA_TNIL) {
		lua_pushnil(L);
		lua_setiuservalue(L, 1, 2);
		if (luaL_getmetafield(L, -1, "__close") != LUA_TNIL) {
			lua_insert(L, -2);
			lua_pushnil(L);
			lua_pcall(L, 2, 0, 0);  /* a failing stop must not mask the close */
		}
	}
	return 0;
}

static int conn_tostring(lua_State *L)
{
	Conn *c = luaL_checkudata(L, 1, CONN_MT);
	if (c->my)
		lua_pushfstring(L, "salvage.db.conn (%s)", c->desc);
	else
		lua_pushliteral(L, "salvage.db.conn (closed)");
	return 1;
}

static int conn_ping(lua_State *L)
{
	Conn *c = check_open(L, 1);
	drop_active(c);
	if (mysql_ping(c->my) != 0)
		return conn_error(L, c, "ping");
	lua_pushboolean(L, 1);
	return 1;
}

static int conn_server_version(lua_State *L)
{
	Conn *c = check_open(L, 1);
	lua_pushstring(L, mysql_get_server_info(c->my));
	return 1;
}

/* conn:_own(guard): the connection keeps `guard` alive and closes it on close. */
static int conn_own(lua_State *L)
{
	luaL_checkudata(L, 1, CONN_MT);
	lua_settop(L, 2);
	lua_setiuservalue(L, 1, 2);
	return 0;
}

static int conn_is_closed(lua_State *L)
{
	Conn *c = luaL_checkudata(L, 1, CONN_MT);
	lua_pushboolean(L, c->my == NULL);
	return 1;
}

/* ---------- connect ---------- */

static const char *const connect_options[] = {
	"url", "host", "port", "user", "password", "database", "socket", "option_file", "option_group",
	"charset", "connect_timeout", "read_timeout", "write_timeout", "tls", NULL,
};
static const char *const tls_options[] = {"ca", "capath", "cert", "key", "cipher", "verify", NULL};

static const char *opt_string(lua_State *L, int t, const char *k)
{
	return lu_opt_string(L, t, "connect", k, NULL);
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer dflt)
{
	return lu_opt_integer(L, t, "connect", k, dflt);
}

/* Fill table t (at idx) from a URL, without overriding fields already set. */
static int url_into(lua_State *L, int t, const char *url, size_t len)
{
	struct db_url *u = lua_newuserdatauv(L, db_url_size(len), 0);
	char err[128];
	if (db_url_parse(u, url, len, err, sizeof err) != 0) {
		lua_pop(L, 1);
		return lu_fail(L, "EINVAL", "connect: bad URL: %s", err);
	}
#define SETF(name, val) do { if (val) { if (lua_getfield(L, t, name) == LUA_TNIL) { \
		lua_pushstring(L, val); lua_setfield(L, t, name); } lua_pop(L, 1); } } while (0)
	SETF("user", u->user);
	SETF("password", u->password);
	SETF("host", u->host);
	SETF("database", u->database);
	if (u->port && lua_getfield(L, t, "port") == LUA_TNIL) {
		lua_pushinteger(L, u->port);
		lua_setfield(L, t, "port");
	}
	if (u->port)
		lua_pop(L, 1);
	for (int i = 0; i < u->nparams; i++) {
		const char *k = u->keys[i], *v = u->values[i];
		if (strcmp(k, "password") == 0 || strcmp(k, "tls") == 0 || strcmp(k, "ssl") == 0) {
			if (strcmp(k, "password") == 0) {
				return lu_fail(L, "EINVAL", "connect: bad URL: put the password in $SALVAGE_DB_PASSWORD "
						   "or an option file, not in a query parameter");
			}
			if (lua_getfield(L, t, "tls") == LUA_TNIL) {
				lua_pushboolean(L, strcmp(v, "0") != 0 && strcmp(v, "false") != 0 && strcmp(v, "off") != 0);
				lua_setfield(L, t, "tls");
			}
			lua_pop(L, 1);
		} else if (strcmp(k, "socket") == 0 || strcmp(k, "option_file") == 0 ||
			   strcmp(k, "option_group") == 0 || strcmp(k, "charset") == 0) {
			SETF(k, v);
		} else if (strcmp(k, "connect_timeout") == 0 || strcmp(k, "read_timeout") == 0 ||
			   strcmp(k, "write_timeout") == 0 || strcmp(k, "port") == 0) {
			char *end;
			long n = strtol(v, &end, 10);
			if (*v == '\0' || *end != '\0' || n < 0 || n > 86400 * 365) {
				return lu_fail(L, "EINVAL", "connect: bad URL: %s must be a number of seconds", k);
			}
			if (lua_getfield(L, t, k) == LUA_TNIL) {
				lua_pushinteger(L, n);
				lua_setfield(L, t, k);
			}
			lua_pop(L, 1);
		} else {
			return lu_fail(L, "EINVAL", "connect: bad URL: unknown parameter '%s' (socket, option_file, "
				       "option_group, connect_timeout, read_timeout, write_timeout, charset, tls)", k);
		}
	}
#undef SETF
	lua_pop(L, 1);
	return 0;
}

/* db.parse_url(url) -> opts table | nil, msg, code */
static int db_parse_url(lua_State *L)
{
	size_t len;
	const char *url = luaL_checklstring(L, 1, &len);
	lua_newtable(L);
	int n = url_into(L, lua_gettop(L), url, len);
	if (n)
		return n;
	return 1;
}

/* What connect was asked, read from Lua before any MariaDB handle exists (strings anchored
 * in the options table at stack index 2). */
typedef struct {
	const char *host, *user, *password, *database, *socket, *option_file, *option_group, *charset;
	lua_Integer port, connect_timeout, read_timeout, write_timeout;
	int tls, tls_verify;
	const char *ca, *capath, *cert, *key, *cipher;
} ConnOpts;

/* The tls option: true, or a table {ca, capath, cert, key, cipher, verify}. Raises on misuse. */
static void read_tls(lua_State *L, ConnOpts *o)
{
	int tls_type = lua_getfield(L, 2, "tls");
	if (tls_type == LUA_TBOOLEAN) {
		o->tls = lua_toboolean(L, -1);
	} else if (tls_type == LUA_TTABLE) {
		int t = lua_gettop(L);
		lu_check_options(L, t, "connect: tls", tls_options);
		o->tls = 1;
		o->ca = opt_string(L, t, "ca");
		o->capath = opt_string(L, t, "capath");
		o->cert = opt_string(L, t, "cert");
		o->key = opt_string(L, t, "key");
		o->cipher = opt_string(L, t, "cipher");
		o->tls_verify = lu_opt_boolean(L, t, "connect: tls", "verify", o->ca || o->capath);
	} else if (tls_type != LUA_TNIL) {
		luaL_error(L, "connect: option 'tls' must be a boolean or a table");
	}
	lua_pop(L, 1);  /* the table stays anchored in the options */
}

static void read_connect_opts(lua_State *L, ConnOpts *o)
{
	memset(o, 0, sizeof *o);
	o->host = opt_string(L, 2, "host");
	o->user = opt_string(L, 2, "user");
	o->password = opt_string(L, 2, "password");
	o->database = opt_string(L, 2, "database");
	o->socket = opt_string(L, 2, "socket");
	o->option_file = opt_string(L, 2, "option_file");
	o->option_group = opt_string(L, 2, "option_group");
	o->charset = opt_string(L, 2, "charset");
	o->port = opt_int(L, 2, "port", 0);
	o->connect_timeout = opt_int(L, 2, "connect_timeout", 10);
	o->read_timeout = opt_int(L, 2, "read_timeout", 0);
	o->write_timeout = opt_int(L, 2, "write_timeout", 0);
	if (o->port < 0 || o->port > 65535)
		luaL_error(L, "connect: port out of range");
	if (!o->password)
		o->password = getenv("SALVAGE_DB_PASSWORD");
	if (o->password && !*o->password)
		o->password = NULL;
	read_tls(L, o);
}

static void set_mysql_options(MYSQL *my, const ConnOpts *o)
{
	unsigned int ct = (unsigned int)o->connect_timeout;
	mysql_optionsv(my, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
	if (o->read_timeout > 0) {
		unsigned int rt = (unsigned int)o->read_timeout;
		mysql_optionsv(my, MYSQL_OPT_READ_TIMEOUT, &rt);
	}
	if (o->write_timeout > 0) {
		unsigned int wt = (unsigned int)o->write_timeout;
		mysql_optionsv(my, MYSQL_OPT_WRITE_TIMEOUT, &wt);
	}
	if (o->option_file) {
		mysql_optionsv(my, MYSQL_READ_DEFAULT_FILE, o->option_file);
		mysql_optionsv(my, MYSQL_READ_DEFAULT_GROUP, o->option_group ? o->option_group : "client");
	} else if (o->option_group) {
		mysql_optionsv(my, MYSQL_READ_DEFAULT_GROUP, o->option_group);
	}
	mysql_optionsv(my, MYSQL_SET_CHARSET_NAME, o->charset ? o->charset : "utf8mb4");
	if (o->tls) {
		my_bool on = 1;
		mysql_ssl_set(my, o->key, o->cert, o->ca, o->capath, o->cipher);
		mysql_optionsv(my, MYSQL_OPT_SSL_ENFORCE, &on);
		my_bool v = (my_bool)o->tls_verify;
		mysql_optionsv(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &v);
	}
}

/* connect(url | {url=, host=, ...}): options (URL parts fill what the caller did not set),
 * then the handle, owned by its userdata before anything can fail. */
static int db_connect(lua_State *L)
{
	if (lua_type(L, 1) == LUA_TSTRING) {
		lua_newtable(L);
		lua_pushvalue(L, 1);
		lua_setfield(L, -2, "url");
		lua_replace(L, 1);
	}
	lu_check_options(L, 1, "connect", connect_options);
	lua_settop(L, 1);
	lua_newtable(L);  /* work on a copy at index 2 */
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, 2);
	}
	const char *url = opt_string(L, 2, "url");
	if (url) {
		int n = url_into(L, 2, url, strlen(url));
		if (n)
			return n;
	}
	ConnOpts o;
	read_connect_opts(L, &o);
	Conn *c = lua_newuserdatauv(L, sizeof *c, 2);
	memset(c, 0, sizeof *c);
	luaL_setmetatable(L, CONN_MT);
	int conn_idx = lua_gettop(L);
	lua_newtable(L);
	lua_setiuservalue(L, conn_idx, 1);
	c->my = mysql_init(NULL);
	if (!c->my)
		return luaL_error(L, "connect: out of memory");
	set_mysql_options(c->my, &o);
	if (!mysql_real_connect(c->my, o.host, o.user, o.password, o.database, (unsigned int)o.port, o.socket,
				CLIENT_FOUND_ROWS)) {
		char what[300];
		if (o.socket)
			snprintf(what, sizeof what, "connect to %s", o.socket);
		else
			snprintf(what, sizeof what, "connect to %s:%d", o.host ? o.host : "localhost",
				 o.port ? (int)o.port : 3306);
		int n = conn_error(L, c, what);
		mysql_close(c->my);
		c->my = NULL;
		return n;
	}
	snprintf(c->desc, sizeof c->desc, "%s@%s/%s", o.user ? o.user : "",
		 o.socket ? o.socket : o.host ? o.host : "localhost", o.database ? o.database : "");
	lua_pushvalue(L, conn_idx);
	return 1;
}

/* ---------- the ephemeral server's process guard ---------- */

typedef struct {
	struct db_server s;
	int started;
} Server;

/* db._server_start({argv...}, log_path, cleanup_dir) -> server | nil, msg, code */
static int db_server_start_l(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *log_path = luaL_checkstring(L, 2);
	const char *dir = luaL_optstring(L, 3, NULL);
	lua_Integer argc = luaL_len(L, 1);
	luaL_argcheck(L, argc >= 1 && argc < 200, 1, "argv must have 1..199 entries");
	char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
	for (lua_Integer i = 1; i <= argc; i++) {
		lua_rawgeti(L, 1, i);
		argv[i - 1] = (char *)luaL_checkstring(L, -1);
		lua_pop(L, 1);
	}
	argv[argc] = NULL;
	Server *srv = lua_newuserdatauv(L, sizeof *srv, 0);
	memset(srv, 0, sizeof *srv);
	srv->s.ctl_fd = srv->s.status_fd = -1;
	luaL_setmetatable(L, SERVER_MT);
	char err[256];
	if (db_server_start(&srv->s, argv, log_path, dir, err, sizeof err) != 0) {
		int e = errno;
		return lu_fail(L, e == ENOENT ? "ENOENT" : "ESERVER", "%s", err);
	}
	srv->started = 1;
	return 1;
}

static int server_alive(lua_State *L)
{
	Server *srv = luaL_checkudata(L, 1, SERVER_MT);
	if (srv->started && db_server_alive(&srv->s)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	lua_pushboolean(L, 0);
	int st = srv->s.exit_status;
	if (WIFEXITED(st))
		lua_pushfstring(L, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		lua_pushfstring(L, "killed by signal %d", WTERMSIG(st));
	else
		lua_pushliteral(L, "stopped");
	return 2;
}

static int server_pid(lua_State *L)
{
	Server *srv = luaL_checkudata(L, 1, SERVER_MT);
	if (!srv->started)
		return 0;
	lua_pushinteger(L, srv->s.server);
	lua_pushinteger(L, srv->s.watchdog);
	return 2;
}

static int server_stop(lua_State *L)
{
	Server *srv = luaL_checkudata(L, 1, SERVER_MT);
	if (srv->started) {
		db_server_stop(&srv->s);
		srv->started = 0;
	}
	return 0;
}

static int server_tostring(lua_State *L)
{
	Server *srv = luaL_checkudata(L, 1, SERVER_MT);
	if (srv->started)
		lua_pushfstring(L, "salvage.db.server (pid %d)", (int)srv->s.server);
	else
		lua_pushliteral(L, "salvage.db.server (closed)");
	return 1;
}

static int db_errname(lua_State *L)
{
	const char *n = salvage_db_errname((unsigned)luaL_checkinteger(L, 1));
	if (n)
		lua_pushstring(L, n);
	else
		lua_pushnil(L);
	return 1;
}

static const luaL_Reg conn_methods[] = {
	{"query", conn_query},
	{"rows", conn_rows},
	{"exec", conn_exec},
	{"transaction", conn_transaction},
	{"ping", conn_ping},
	{"server_version", conn_server_version},
	{"close", conn_close},
	{"is_closed", conn_is_closed},
	{"_own", conn_own},
	{NULL, NULL},
};

static const luaL_Reg server_methods[] = {
	{"alive", server_alive},
	{"pid", server_pid},
	{"stop", server_stop},
	{"close", server_stop},
	{NULL, NULL},
};

static const luaL_Reg db_funcs[] = {
	{"connect", db_connect},
	{"parse_url", db_parse_url},
	{"errname", db_errname},
	{"_server_start", db_server_start_l},
	{NULL, NULL},
};

/* db.ephemeral and friends live in Lua (salvage.db.ephemeral): loaded on first use. */
static int db_index(lua_State *L)
{
	const char *k = luaL_checkstring(L, 2);
	if (strcmp(k, "ephemeral") != 0)
		return 0;
	lua_getglobal(L, "require");
	lua_pushliteral(L, "salvage.db.ephemeral");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "start");
	return 1;
}

LUAMOD_API int luaopen_salvage_db(lua_State *L)
{
	lu_new_class(L, CONN_MT, conn_methods, conn_close, conn_tostring);
	lu_new_class(L, CURSOR_MT, NULL, cursor_close, NULL);
	lu_new_class(L, SERVER_MT, server_methods, server_stop, server_tostring);
	luaL_newlib(L, db_funcs);
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, db_index);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -2);
	return 1;
}
