/* Pure C parts of the database layer: URL parsing, error names, the
 * ephemeral server's watchdog (with a stand-in "server" process). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "db/dberr.h"

static struct db_url *parse(const char *url, char *err, size_t errlen, int *rc)
{
	struct db_url *u = malloc(db_url_size(strlen(url)));
	*rc = db_url_parse(u, url, strlen(url), err, errlen);
	return u;
}

static void test_url_full(void **state)
{
	(void)state;
	char err[128];
	int rc;
	struct db_url *u = parse("mariadb://cloud%20user:p%40ss:w@db1.example:3307/cloud?socket=/run/my%20s.sock&connect_timeout=5&x", err, sizeof err, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(u->user, "cloud user");
	assert_string_equal(u->password, "p@ss:w");
	assert_string_equal(u->host, "db1.example");
	assert_int_equal(u->port, 3307);
	assert_string_equal(u->database, "cloud");
	assert_int_equal(u->nparams, 3);
	assert_string_equal(u->keys[0], "socket");
	assert_string_equal(u->values[0], "/run/my s.sock");
	assert_string_equal(u->keys[1], "connect_timeout");
	assert_string_equal(u->values[1], "5");
	assert_string_equal(u->keys[2], "x");
	assert_string_equal(u->values[2], "");
	free(u);
}

static void test_url_minimal(void **state)
{
	(void)state;
	char err[128];
	int rc;
	struct db_url *u = parse("mysql://", err, sizeof err, &rc);
	assert_int_equal(rc, 0);
	assert_null(u->user);
	assert_null(u->password);
	assert_null(u->host);
	assert_null(u->database);
	assert_int_equal(u->port, 0);
	free(u);
	u = parse("mariadb://[::1]:3306/db", err, sizeof err, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(u->host, "::1");
	assert_int_equal(u->port, 3306);
	assert_string_equal(u->database, "db");
	free(u);
	/* the last @ separates credentials */
	u = parse("mariadb://u:a@b@h/d", err, sizeof err, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(u->password, "a@b");
	assert_string_equal(u->host, "h");
	free(u);
}

static void test_url_bad(void **state)
{
	(void)state;
	const char *bad[] = {
		"http://h/", "mariadb://h:0/", "mariadb://h:65536/", "mariadb://h:/", "mariadb://h:1x/",
		"mariadb://u%zz@h/", "mariadb://u%0@h/", "mariadb://u%00@h/", "mariadb://[::1/", "mariadb://[::1]x/",
		"mariadb://h/a/b", "mariadb://h/?=v", "mariadb://h/?a=%",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char err[128] = "";
		int rc;
		struct db_url *u = parse(bad[i], err, sizeof err, &rc);
		if (rc != -1)
			fail_msg("accepted %s", bad[i]);
		assert_true(err[0] != '\0');
		free(u);
	}
	/* the password never appears in an error */
	char err[128];
	int rc;
	struct db_url *u = parse("mariadb://u:s3cret@h:99999/", err, sizeof err, &rc);
	assert_int_equal(rc, -1);
	assert_null(strstr(err, "s3cret"));
	free(u);
}

static void test_url_too_many_params(void **state)
{
	(void)state;
	char url[1024] = "mariadb://h/?";
	for (int i = 0; i < DB_URL_MAX_PARAMS + 1; i++)
		snprintf(url + strlen(url), sizeof url - strlen(url), "k%d=v&", i);
	char err[128];
	int rc;
	struct db_url *u = parse(url, err, sizeof err, &rc);
	assert_int_equal(rc, -1);
	free(u);
}

static void test_errname(void **state)
{
	(void)state;
	assert_string_equal(salvage_db_errname(1045), "ER_ACCESS_DENIED_ERROR");
	assert_string_equal(salvage_db_errname(1146), "ER_NO_SUCH_TABLE");
	assert_string_equal(salvage_db_errname(2002), "CR_CONNECTION_ERROR");
	/* range markers (ER_ERROR_FIRST, CR_MIN_ERROR) are no error names */
	assert_string_equal(salvage_db_errname(1000), "ER_HASHCHK");
	assert_string_equal(salvage_db_errname(2000), "CR_UNKNOWN_ERROR");
	assert_null(salvage_db_errname(0));
	assert_null(salvage_db_errname(999999));
}

/* The watchdog with `sleep` as the server: stopping it kills the child and
 * removes the directory; a dead "server" is noticed. */
static void test_watchdog(void **state)
{
	(void)state;
	char dir[] = "/tmp/salvage-test-db.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char logp[128], file[128];
	snprintf(logp, sizeof logp, "%s/log", dir);
	snprintf(file, sizeof file, "%s/sub", dir);
	assert_int_equal(mkdir(file, 0700), 0);
	char *argv[] = {"/bin/sleep", "30", NULL};
	struct db_server s;
	char err[256];
	assert_int_equal(db_server_start(&s, argv, logp, dir, err, sizeof err), 0);
	assert_true(s.server > 0);
	assert_int_equal(kill(s.server, 0), 0);
	assert_int_equal(db_server_alive(&s), 1);
	pid_t server = s.server;
	db_server_stop(&s);
	db_server_stop(&s); /* idempotent */
	assert_int_equal(kill(server, 0), -1);
	struct stat st;
	assert_int_equal(stat(dir, &st), -1);

	char dir2[] = "/tmp/salvage-test-db.XXXXXX";
	assert_non_null(mkdtemp(dir2));
	snprintf(logp, sizeof logp, "%s/log", dir2);
	char *argv2[] = {"/bin/false", NULL};
	assert_int_equal(db_server_start(&s, argv2, logp, dir2, err, sizeof err), 0);
	int alive = 1;
	for (int i = 0; i < 300 && alive; i++) {
		alive = db_server_alive(&s);
		if (alive)
			usleep(10000);
	}
	assert_int_equal(alive, 0);
	db_server_stop(&s);
	assert_int_equal(stat(dir2, &st), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_full),
		cmocka_unit_test(test_url_minimal),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_url_too_many_params),
		cmocka_unit_test(test_errname),
		cmocka_unit_test(test_watchdog),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
