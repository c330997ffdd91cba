/* Pure C helpers of the database layer (no lua.h): error names, connection
 * URLs, and the watchdog that keeps a private mariadbd from outliving us. */
#ifndef SALVAGE_DB_DBERR_H
#define SALVAGE_DB_DBERR_H

#include <stddef.h>
#include <sys/types.h>

/* "ER_ACCESS_DENIED_ERROR" for 1045, "CR_CONNECTION_ERROR" for 2002; NULL if unknown. */
const char *salvage_db_errname(unsigned code);

/* A parsed mariadb://user:pass@host:port/db?key=value&... URL. Strings are
 * percent-decoded, NUL-terminated and point into `buf`; absent parts are NULL,
 * port 0. Query parameters are kept as key/value pairs for the caller to
 * interpret (socket, option_file, connect_timeout, ...). */
#define DB_URL_MAX_PARAMS 16
struct db_url {
	const char *user, *password, *host, *database;
	int port;
	int nparams;
	const char *keys[DB_URL_MAX_PARAMS], *values[DB_URL_MAX_PARAMS];
	char buf[];  /* allocated by the caller: db_url_size(len) bytes */
};

size_t db_url_size(size_t url_len);
/* 0 on success; -1 with a message in err (what is wrong, never the password). */
int db_url_parse(struct db_url *u, const char *url, size_t len, char *err, size_t errlen);

/* The ephemeral server's watchdog: a process that starts argv (mariadbd) with
 * stdout/stderr to log_path, and when `ctl_fd` (our end of a pipe) closes —
 * because we stop it or because this process died, even by SIGKILL — kills the
 * server and removes `cleanup_dir` recursively. */
struct db_server {
	pid_t watchdog;
	pid_t server;     /* as reported by the watchdog */
	int ctl_fd;       /* closing it stops everything */
	int status_fd;    /* the watchdog reports the server's pid, then its exit */
	int exited;       /* server exit seen */
	int exit_status;  /* raw wait status */
};

/* 0 or -1 with errno and a message. */
int db_server_start(struct db_server *s, char *const argv[], const char *log_path,
		    const char *cleanup_dir, char *err, size_t errlen);
/* Is the server still running? 1 yes, 0 no (s->exit_status set). */
int db_server_alive(struct db_server *s);
/* Stop: close the pipe and wait for the watchdog (which kills the server and
 * removes the directory). Idempotent. */
void db_server_stop(struct db_server *s);

#endif
