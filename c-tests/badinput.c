/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Bad input. First what the daemon refuses (malformed paths, unknown transactions), which
 * both libraries must pass through unchanged, with the handle still usable afterwards. Then
 * NULL handles, paths, tokens and out-pointers: this library must answer false/NULL with
 * EINVAL instead of crashing. The reference library dereferences them, so those cases run in
 * a child process each and are "ext" lines (see xst.h); against the reference they are only
 * reported.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common/xst.h"

#define BASE "/ctest/badinput"

static void daemon_refuses(struct xs_handle *h)
{
	char longpath[3200];
	unsigned int len;
	char *v;
	bool ok;
	static const char *const bad_paths[] = {
		"", BASE "//x", BASE "/x/", BASE "/a b", BASE "/tab\there", BASE "/star*",
	};

	for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
		errno = 0;
		v = xs_read(h, XBT_NULL, bad_paths[i], &len);
		xst_say("read \"%s\" -> %s", xst_show(0, bad_paths[i], strlen(bad_paths[i])),
			v ? "a value" : xst_errname(errno));
		free(v);
		errno = 0;
		ok = xs_write(h, XBT_NULL, bad_paths[i], "v", 1);
		xst_say("write \"%s\" -> %s", xst_show(0, bad_paths[i], strlen(bad_paths[i])),
			xst_res(ok));
	}

	/* Longer than XENSTORE_ABS_PATH_MAX, short enough for the payload. */
	memset(longpath, 'p', sizeof(longpath));
	memcpy(longpath, BASE "/", sizeof(BASE));
	longpath[XENSTORE_ABS_PATH_MAX + 1] = 0;
	errno = 0;
	ok = xs_write(h, XBT_NULL, longpath, "v", 1);
	xst_say("write a %d-character path -> %s", XENSTORE_ABS_PATH_MAX + 1, xst_res(ok));
	longpath[XENSTORE_ABS_PATH_MAX] = 0;
	errno = 0;
	ok = xs_write(h, XBT_NULL, longpath, "v", 1);
	xst_say("write a %d-character path -> %s", XENSTORE_ABS_PATH_MAX, xst_res(ok));

	errno = 0;
	ok = xs_write(h, 0x7777, BASE "/tx", "v", 1);
	/* The errno is the daemon's choice (C: ENOENT, OCaml: EIO); the library passes it on. */
	xst_check(!ok, "write in unknown transaction 0x7777 -> %s", xst_res(ok));
	errno = 0;
	ok = xs_transaction_end(h, 0x7777, false);
	xst_check(!ok, "end unknown transaction 0x7777 -> %s", xst_res(ok));
	errno = 0;
	ok = xs_transaction_end(h, XBT_NULL, true);
	xst_say("end transaction XBT_NULL -> %s", xst_res(ok));

	errno = 0;
	ok = xs_watch(h, "", "t");
	xst_say("watch \"\" -> %s", xst_res(ok));
	errno = 0;
	ok = xs_watch(h, BASE "//x", "t");
	xst_say("watch \"" BASE "//x\" -> %s", xst_res(ok));
	errno = 0;
	ok = xs_watch(h, BASE, "");
	xst_say("watch with an empty token -> %s", xst_res(ok));
	if (ok) {
		ok = xs_unwatch(h, BASE, "");
		xst_say("unwatch it -> %s", xst_res(ok));
	}

	ok = xs_write(h, XBT_NULL, BASE "/nulldata", NULL, 0);
	xst_check(ok, "write NULL data of length 0 -> %s", xst_res(ok));
	v = xs_read(h, XBT_NULL, BASE "/nulldata", &len);
	xst_check(v && len == 0, "read it back -> %s len=%u", v ? "a value" : xst_errname(errno),
		  v ? len : 0);
	free(v);

	v = xs_get_domain_path(h, 0x7fffffff);
	xst_say("get_domain_path(0x7fffffff) -> %s", v ? v : xst_errname(errno));
	free(v);

	ok = xs_write(h, XBT_NULL, BASE "/still", "usable", 6);
	v = xs_read(h, XBT_NULL, BASE "/still", &len);
	xst_check(ok && v && !strcmp(v, "usable"), "handle still usable -> %s",
		  v ? v : xst_errname(errno));
	free(v);
}

/* ---- NULL arguments, one child process each ---- */

typedef void probe_fn(char *out, size_t n);

static void say_bool(char *out, size_t n, bool b)
{
	if (b)
		snprintf(out, n, "true");
	else
		snprintf(out, n, "false %s", xst_errname(errno));
}

static void say_ptr(char *out, size_t n, const void *p)
{
	if (p)
		snprintf(out, n, "non-NULL");
	else
		snprintf(out, n, "NULL %s", xst_errname(errno));
}

static struct xs_handle *child_handle(void)
{
	struct xs_handle *h = xs_open(0);

	if (!h)
		_exit(3);
	return h;
}

#define PROBE_BOOL(fn, expr) \
	static void fn(char *out, size_t n) { struct xs_handle *h = child_handle(); \
		(void)h; errno = 0; say_bool(out, n, (expr)); }
#define PROBE_PTR(fn, expr) \
	static void fn(char *out, size_t n) { struct xs_handle *h = child_handle(); \
		unsigned int num = 0; (void)h; (void)num; errno = 0; say_ptr(out, n, (expr)); }

PROBE_PTR(read_null_h, xs_read(NULL, XBT_NULL, BASE, &num))
PROBE_PTR(read_null_path, xs_read(h, XBT_NULL, NULL, &num))
PROBE_BOOL(write_null_h, xs_write(NULL, XBT_NULL, BASE "/n", "v", 1))
PROBE_BOOL(write_null_path, xs_write(h, XBT_NULL, NULL, "v", 1))
PROBE_BOOL(write_null_data, xs_write(h, XBT_NULL, BASE "/n", NULL, 3))
PROBE_BOOL(mkdir_null_path, xs_mkdir(h, XBT_NULL, NULL))
PROBE_BOOL(rm_null_path, xs_rm(h, XBT_NULL, NULL))
PROBE_PTR(dir_null_path, xs_directory(h, XBT_NULL, NULL, &num))
PROBE_PTR(dir_null_num, xs_directory(h, XBT_NULL, BASE, NULL))
PROBE_PTR(getperms_null_path, xs_get_permissions(h, XBT_NULL, NULL, &num))
PROBE_PTR(getperms_null_num, xs_get_permissions(h, XBT_NULL, BASE, NULL))
PROBE_BOOL(setperms_null_perms, xs_set_permissions(h, XBT_NULL, BASE, NULL, 1))
PROBE_BOOL(watch_null_h, xs_watch(NULL, BASE, "t"))
PROBE_BOOL(watch_null_path, xs_watch(h, NULL, "t"))
PROBE_BOOL(watch_null_token, xs_watch(h, BASE, NULL))
PROBE_BOOL(unwatch_null_path, xs_unwatch(h, NULL, "t"))
PROBE_BOOL(unwatch_null_token, xs_unwatch(h, BASE, NULL))
PROBE_PTR(check_watch_null_h, xs_check_watch(NULL))
PROBE_PTR(read_watch_null_h, xs_read_watch(NULL, &num))
PROBE_BOOL(tx_end_null_h, xs_transaction_end(NULL, 1, false))
PROBE_BOOL(introduce_null_h, xs_introduce_domain(NULL, 7, 1, 1))
PROBE_BOOL(release_null_h, xs_release_domain(NULL, 7))
PROBE_BOOL(is_introduced_null_h, xs_is_domain_introduced(NULL, 0))
PROBE_PTR(domain_path_null_h, xs_get_domain_path(NULL, 0))
PROBE_PTR(control_null_cmd, xs_control_command(h, NULL, NULL, 0))
PROBE_BOOL(perms_null_out, xs_strings_to_perms(NULL, 1, "r0"))
PROBE_BOOL(perms_null_strings, xs_strings_to_perms((struct xs_permissions[1]){ { 0, 0 } }, 1, NULL))

static void tx_start_null_h(char *out, size_t n)
{
	xs_transaction_t t;

	errno = 0;
	t = xs_transaction_start(NULL);
	snprintf(out, n, "%u %s", t, t ? "" : xst_errname(errno));
}

static void fileno_null_h(char *out, size_t n)
{
	int fd;

	errno = 0;
	fd = xs_fileno(NULL);
	snprintf(out, n, "%d %s", fd, fd < 0 ? xst_errname(errno) : "");
}

static void subpath_null(char *out, size_t n)
{
	bool a = xs_path_is_subpath(NULL, "/a"), b = xs_path_is_subpath("/a", NULL);

	snprintf(out, n, "%s %s", a ? "true" : "false", b ? "true" : "false");
}

static void close_null(char *out, size_t n)
{
	xs_daemon_close(NULL);
	xs_daemon_destroy_postfork(NULL);
	xs_close(NULL);
	snprintf(out, n, "returned");
}

/*
 * want: the result this library must give; "a|b" accepts either. Only a NULL handle, path,
 * token or data pointer must be refused with EINVAL; for a NULL count pointer not crashing is
 * enough (refusing, or answering without the count).
 */
static const struct {
	const char *name, *want;
	probe_fn *run;
} probes[] = {
	{ "xs_read(NULL handle)", "NULL EINVAL", read_null_h },
	{ "xs_read(NULL path)", "NULL EINVAL", read_null_path },
	{ "xs_write(NULL handle)", "false EINVAL", write_null_h },
	{ "xs_write(NULL path)", "false EINVAL", write_null_path },
	{ "xs_write(NULL data, len 3)", "false EINVAL", write_null_data },
	{ "xs_mkdir(NULL path)", "false EINVAL", mkdir_null_path },
	{ "xs_rm(NULL path)", "false EINVAL", rm_null_path },
	{ "xs_directory(NULL path)", "NULL EINVAL", dir_null_path },
	{ "xs_directory(NULL num)", "NULL EINVAL|non-NULL", dir_null_num },
	{ "xs_get_permissions(NULL path)", "NULL EINVAL", getperms_null_path },
	{ "xs_get_permissions(NULL num)", "NULL EINVAL|non-NULL", getperms_null_num },
	{ "xs_set_permissions(NULL perms, 1)", "false EINVAL", setperms_null_perms },
	{ "xs_watch(NULL handle)", "false EINVAL", watch_null_h },
	{ "xs_watch(NULL path)", "false EINVAL", watch_null_path },
	{ "xs_watch(NULL token)", "false EINVAL", watch_null_token },
	{ "xs_unwatch(NULL path)", "false EINVAL", unwatch_null_path },
	{ "xs_unwatch(NULL token)", "false EINVAL", unwatch_null_token },
	{ "xs_check_watch(NULL handle)", "NULL EINVAL", check_watch_null_h },
	{ "xs_read_watch(NULL handle)", "NULL EINVAL", read_watch_null_h },
	{ "xs_transaction_start(NULL handle)", "0 EINVAL", tx_start_null_h },
	{ "xs_transaction_end(NULL handle)", "false EINVAL", tx_end_null_h },
	{ "xs_fileno(NULL handle)", "-1 EINVAL", fileno_null_h },
	{ "xs_introduce_domain(NULL handle)", "false EINVAL", introduce_null_h },
	{ "xs_release_domain(NULL handle)", "false EINVAL", release_null_h },
	{ "xs_is_domain_introduced(NULL handle)", "false EINVAL", is_introduced_null_h },
	{ "xs_get_domain_path(NULL handle)", "NULL EINVAL", domain_path_null_h },
	{ "xs_control_command(NULL cmd)", "NULL EINVAL", control_null_cmd },
	{ "xs_strings_to_perms(NULL perms)", "false EINVAL", perms_null_out },
	{ "xs_strings_to_perms(NULL strings)", "false EINVAL", perms_null_strings },
	{ "xs_path_is_subpath(NULL, _) and (_, NULL)", "false false", subpath_null },
	{ "xs_daemon_close/destroy_postfork/close(NULL)", "returned", close_null },
};

static bool acceptable(const char *got, const char *want)
{
	size_t n = strlen(got);

	for (const char *w = want; w; w = strchr(w, '|') ? strchr(w, '|') + 1 : NULL) {
		size_t len = strchr(w, '|') ? (size_t)(strchr(w, '|') - w) : strlen(w);

		if (len == n && !strncmp(got, w, n))
			return true;
	}
	return false;
}

/* Run one probe in a child; its result line, or how it died. */
static void run_probe(probe_fn *run, char *got, size_t n)
{
	int p[2], status;
	ssize_t len = 0, r;
	pid_t pid;

	if (pipe(p))
		xst_fatal("pipe: %s", xst_errname(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		xst_fatal("fork: %s", xst_errname(errno));
	if (pid == 0) {
		char out[256];

		close(p[0]);
		alarm(10);
		run(out, sizeof(out));
		if (write(p[1], out, strlen(out)) < 0)
			_exit(2);
		_exit(0);
	}
	close(p[1]);
	while (len < (ssize_t)n - 1 && (r = read(p[0], got + len, n - 1 - (size_t)len)) > 0)
		len += r;
	got[len] = 0;
	close(p[0]);
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);

		snprintf(got, n, "%s", sig == SIGSEGV ? "crashed (SIGSEGV)" :
			 sig == SIGABRT ? "crashed (SIGABRT)" : sig == SIGALRM ? "hung" : "killed");
	} else if (WEXITSTATUS(status) == 3) {
		snprintf(got, n, "child could not connect");
	}
	/* Trailing blank from "%u %s" style results. */
	for (size_t l = strlen(got); l > 0 && got[l - 1] == ' '; l--)
		got[l - 1] = 0;
}

int main(void)
{
	struct xs_handle *h;
	char got[256];
	bool ok;

	xst_begin("badinput");
	h = xst_open(0);
	xst_clean(h, BASE);
	ok = xs_mkdir(h, XBT_NULL, BASE);
	xst_check(ok, "mkdir " BASE " -> %s", xst_res(ok));

	daemon_refuses(h);

	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		run_probe(probes[i].run, got, sizeof(got));
#ifdef XST_REFERENCE
		xst_ext_say("%s -> %s (reference: not required)", probes[i].name, got);
#else
		xst_ext_check(acceptable(got, probes[i].want), "%s -> %s", probes[i].name, got);
#endif
	}

	ok = xs_rm(h, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	return xst_end();
}
