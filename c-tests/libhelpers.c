/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Helpers that need no connection: xs_path_is_subpath, the daemon paths with their
 * environment overrides, xs_write_all.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/xst.h"

static void subpath(const char *parent, const char *child, bool want)
{
	bool got = xs_path_is_subpath(parent, child);

	xst_check(got == want, "xs_path_is_subpath(\"%s\", \"%s\") -> %s", parent, child,
		  got ? "true" : "false");
}

static void paths(const char *label, const char *want_rundir, const char *want_socket)
{
	const char *r = xs_daemon_rundir(), *s = xs_daemon_socket(), *ro = xs_daemon_socket_ro();

	xst_check(r && !strcmp(r, want_rundir), "%s: xs_daemon_rundir -> %s", label, r ? r : "(null)");
	xst_check(s && !strcmp(s, want_socket), "%s: xs_daemon_socket -> %s", label, s ? s : "(null)");
	xst_say("%s: xs_daemon_socket_ro -> %s", label, ro ? ro : "(null)");
}

int main(void)
{
	char *saved_path = getenv("XENSTORED_PATH"), *saved_rundir = getenv("XENSTORED_RUNDIR");
	unsigned char out[3000], in[3000];
	int fds[2];
	size_t got = 0;
	bool ok;

	xst_begin("libhelpers");
	saved_path = saved_path ? strdup(saved_path) : NULL;
	saved_rundir = saved_rundir ? strdup(saved_rundir) : NULL;

	subpath("/a", "/a", true);
	subpath("/a", "/a/b", true);
	subpath("/a", "/a/b/c", true);
	subpath("/a", "/ab", false);
	subpath("/a/b", "/a", false);
	subpath("/", "/a", false);
	subpath("/a/", "/a/b", false);
	subpath("", "/a", true);
	subpath("", "", true);
	subpath("@releaseDomain", "@releaseDomain", true);
	subpath("rel", "rel/x", true);

	unsetenv("XENSTORED_PATH");
	unsetenv("XENSTORED_RUNDIR");
	paths("defaults", "/var/run/xenstored", "/var/run/xenstored/socket");
	setenv("XENSTORED_RUNDIR", "/tmp/xst-rundir", 1);
	paths("XENSTORED_RUNDIR=/tmp/xst-rundir", "/tmp/xst-rundir", "/tmp/xst-rundir/socket");
	setenv("XENSTORED_PATH", "/tmp/xst-other/sock", 1);
	paths("and XENSTORED_PATH=/tmp/xst-other/sock", "/tmp/xst-rundir", "/tmp/xst-other/sock");
	unsetenv("XENSTORED_RUNDIR");
	paths("XENSTORED_PATH only", "/var/run/xenstored", "/tmp/xst-other/sock");

	if (saved_path)
		setenv("XENSTORED_PATH", saved_path, 1);
	else
		unsetenv("XENSTORED_PATH");
	if (saved_rundir)
		setenv("XENSTORED_RUNDIR", saved_rundir, 1);
	free(saved_path);
	free(saved_rundir);

	/* xs_write_all through a pipe, then on a bad descriptor. */
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (unsigned char)(i * 7);
	if (pipe(fds))
		xst_fatal("pipe: %s", xst_errname(errno));
	ok = xs_write_all(fds[1], out, sizeof(out));
	xst_check(ok, "xs_write_all 3000 bytes to a pipe -> %s", xst_res(ok));
	close(fds[1]);
	while (got < sizeof(in)) {
		ssize_t n = read(fds[0], in + got, sizeof(in) - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fds[0]);
	xst_check(got == sizeof(out) && !memcmp(in, out, got), "read back %zu identical bytes", got);
	ok = xs_write_all(fds[1], "", 0);
	xst_say("xs_write_all of 0 bytes to a closed descriptor -> %s", ok ? "true" : "false");
	errno = 0;
	ok = xs_write_all(fds[1], out, 10);
	xst_check(!ok && errno == EBADF, "xs_write_all to a closed descriptor -> %s", xst_res(ok));

	return xst_end();
}
