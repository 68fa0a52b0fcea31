/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * fork(): a child drops the parent's handle with xs_daemon_destroy_postfork() and opens its
 * own; the parent's handle, its watch and its reader thread (if any) keep working.
 * The child reports through its exit status only (0, or the number of the step that failed).
 * Not applicable to the embedded store (the child gets a copy of it): skipped there.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common/xst.h"

#define BASE "/ctest/fork"
#define WAIT_MS 5000

static int child(struct xs_handle *inherited, bool destroy)
{
	struct xs_handle *h;
	unsigned int len;
	char *v;

	if (destroy)
		xs_daemon_destroy_postfork(inherited);
	h = xs_open(0);
	if (!h)
		return 10;
	v = xs_read(h, XBT_NULL, BASE "/parent", &len);
	if (!v || strcmp(v, "p"))
		return 11;
	free(v);
	if (!xs_write(h, XBT_NULL, destroy ? BASE "/child" : BASE "/child2", "c", 1))
		return 12;
	xs_close(h);
	return 0;
}

static void run_child(struct xs_handle *h, bool destroy, const char *what)
{
	int status = -1;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		xst_fatal("fork: %s", xst_errname(errno));
	if (pid == 0)
		_exit(child(h, destroy));
	waitpid(pid, &status, 0);
	xst_check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child exit status %d%s",
		  what, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		  WIFSIGNALED(status) ? " (killed by a signal)" : "");
}

static void expect_event(struct xs_handle *h, const char *want_path)
{
	char **ev;

	for (;;) {
		ev = xs_check_watch(h);
		if (ev || errno != EAGAIN || !xst_readable(xs_fileno(h), WAIT_MS))
			break;
	}
	xst_check(ev && !strcmp(ev[XS_WATCH_PATH], want_path) && !strcmp(ev[XS_WATCH_TOKEN], "ptok"),
		  "parent's watch: event %s %s", ev ? ev[XS_WATCH_PATH] : "none",
		  ev ? ev[XS_WATCH_TOKEN] : "");
	free(ev);
}

static void expect_value(struct xs_handle *h, const char *path, const char *want)
{
	unsigned int len;
	char *v = xs_read(h, XBT_NULL, path, &len);

	xst_check(v && !strcmp(v, want), "parent reads %s -> %s", path, v ? v : xst_errname(errno));
	free(v);
}

int main(void)
{
	struct xs_handle *h;
	bool ok;

	xst_begin("fork");
	/* In-process, the child's fork copies the whole store: its writes cannot reach ours. */
	if (xst_embedded())
		xst_skip("embedded store: a forked child works on its own copy of the store");
	h = xst_open(0);
	xst_clean(h, BASE);
	ok = xs_write(h, XBT_NULL, BASE "/parent", "p", 1);
	xst_check(ok, "write " BASE "/parent -> %s", xst_res(ok));
	ok = xs_watch(h, BASE, "ptok");
	xst_check(ok, "watch " BASE " ptok -> %s", xst_res(ok));
	expect_event(h, BASE);

	run_child(h, true, "child with xs_daemon_destroy_postfork + its own handle");
	expect_value(h, BASE "/child", "c");
	expect_event(h, BASE "/child");

	run_child(h, false, "child that leaves the inherited handle alone");
	expect_value(h, BASE "/child2", "c");
	expect_event(h, BASE "/child2");

	ok = xs_write(h, XBT_NULL, BASE "/parent", "q", 1);
	xst_check(ok, "parent writes again -> %s", xst_res(ok));
	expect_event(h, BASE "/parent");
	expect_value(h, BASE "/parent", "q");

	ok = xs_rm(h, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	return xst_end();
}
