/* The watchdog of an ephemeral mariadbd.
 *
 *   salvage ──ctl pipe──▶ watchdog ──fork/exec──▶ mariadbd
 *           ◀─status pipe─┘
 *
 * The watchdog holds the read end of the ctl pipe; we hold the write end
 * (close-on-exec, and closed by every other watchdog), so it sees EOF when we
 * stop the server OR when this process dies in any way, kill -9 included. It
 * then SIGKILLs the server (its data is throwaway: no clean shutdown needed,
 * which makes stopping instant) and removes the temporary directory. The
 * server also gets PR_SET_PDEATHSIG so it dies if the watchdog itself is
 * killed. The watchdog runs in its own process group so a Ctrl-C meant for us
 * does not kill the server under a still-running load. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/dberr.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void close_others(int keep1, int keep2)
{
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = 3; fd < max; fd++)
		if (fd != keep1 && fd != keep2)
			close(fd);
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

static void watchdog(int ctl, int status, char *const argv[], const char *log_path, const char *dir)
{
	setpgid(0, 0);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);  /* only the pipe tells us to stop */
	signal(SIGPIPE, SIG_IGN);
	close_others(ctl, status);
	pid_t server = fork();
	if (server == 0) {
		int in = open("/dev/null", O_RDONLY);
		int out = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (in >= 0) dup2(in, 0);
		if (out >= 0) { dup2(out, 1); dup2(out, 2); }
		close_others(-1, -1);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		execv(argv[0], argv);
		dprintf(2, "salvage: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int pidmsg[2] = {(int)server, server < 0 ? errno : 0};
	write_all(status, pidmsg, sizeof pidmsg);
	int alive = server > 0;
	for (;;) {
		struct pollfd pf = {.fd = ctl, .events = POLLIN};
		int r = poll(&pf, 1, alive ? 100 : -1);
		if (r > 0) {
			char b[64];
			ssize_t n = read(ctl, b, sizeof b);
			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
				break;
		}
		if (alive) {
			int st;
			pid_t w = waitpid(server, &st, WNOHANG);
			if (w == server) {
				alive = 0;
				int msg[2] = {-1, st};
				write_all(status, msg, sizeof msg);
			}
		}
	}
	if (alive) {
		kill(server, SIGKILL);
		while (waitpid(server, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (dir && *dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	_exit(0);
}

int db_server_start(struct db_server *s, char *const argv[], const char *log_path,
		    const char *cleanup_dir, char *err, size_t errlen)
{
	int ctl[2], status[2];
	memset(s, 0, sizeof *s);
	s->ctl_fd = s->status_fd = -1;
	if (pipe2(ctl, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	if (pipe2(status, O_CLOEXEC) != 0) {
		int e = errno;
		close(ctl[0]); close(ctl[1]);
		snprintf(err, errlen, "pipe: %s", strerror(e));
		errno = e;
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(ctl[0]); close(ctl[1]); close(status[0]); close(status[1]);
		snprintf(err, errlen, "fork: %s", strerror(e));
		errno = e;
		return -1;
	}
	if (pid == 0) {
		close(ctl[1]);
		close(status[0]);
		watchdog(ctl[0], status[1], argv, log_path, cleanup_dir);
	}
	close(ctl[0]);
	close(status[1]);
	s->watchdog = pid;
	s->ctl_fd = ctl[1];
	s->status_fd = status[0];
	int msg[2];
	size_t got = 0;
	while (got < sizeof msg) {
		ssize_t n = read(s->status_fd, (char *)msg + got, sizeof msg - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < sizeof msg || msg[0] <= 0) {
		int e = got < sizeof msg ? EIO : msg[1];
		db_server_stop(s);
		snprintf(err, errlen, "cannot start the server: %s", strerror(e));
		errno = e;
		return -1;
	}
	s->server = (pid_t)msg[0];
	fcntl(s->status_fd, F_SETFL, O_NONBLOCK);
	return 0;
}

int db_server_alive(struct db_server *s)
{
	if (s->exited || s->status_fd < 0)
		return 0;
	int msg[2];
	ssize_t n = read(s->status_fd, msg, sizeof msg);
	if (n == (ssize_t)sizeof msg && msg[0] == -1) {
		s->exited = 1;
		s->exit_status = msg[1];
		return 0;
	}
	if (n == 0) {  /* watchdog gone: so is the server */
		s->exited = 1;
		return 0;
	}
	return 1;
}

void db_server_stop(struct db_server *s)
{
	if (s->ctl_fd >= 0) {
		close(s->ctl_fd);
		s->ctl_fd = -1;
	}
	if (s->watchdog > 0) {
		while (waitpid(s->watchdog, NULL, 0) < 0 && errno == EINTR)
			;
		s->watchdog = 0;
	}
	if (s->status_fd >= 0) {
		close(s->status_fd);
		s->status_fd = -1;
	}
}
