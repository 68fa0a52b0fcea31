/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Watches: the initial event, xs_fileno + poll, xs_check_watch's EAGAIN, xs_read_watch,
 * xs_unwatch with and without XS_UNWATCH_FILTER.
 *
 * Events of one change for several watches come in the daemon's order, so they are sorted
 * before they are printed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#define BASE "/ctest/watches"
#define WAIT_MS 5000

/* Take up to `want` events (waiting up to WAIT_MS for each), print them sorted. */
static unsigned int take(struct xs_handle *h, unsigned int want, const char *what)
{
	char *lines[16];
	unsigned int n = 0;

	while (n < want && n < 16) {
		char **ev = xs_check_watch(h);

		if (!ev) {
			if (errno != EAGAIN) {
				xst_check(false, "xs_check_watch -> %s", xst_errname(errno));
				break;
			}
			if (!xst_readable(xs_fileno(h), WAIT_MS))
				break;
			continue;
		}
		if (asprintf(&lines[n], "%s %s", ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]) < 0)
			xst_fatal("out of memory");
		n++;
		free(ev);
	}
	xst_sort(lines, n);
	xst_check(n == want, "%s: %u event(s)", what, n);
	for (unsigned int i = 0; i < n; i++) {
		xst_say("  event %s", lines[i]);
		free(lines[i]);
	}
	return n;
}

static void expect_none(struct xs_handle *h, const char *what)
{
	char **ev;

	errno = 0;
	ev = xs_check_watch(h);
	xst_check(!ev && errno == EAGAIN, "%s: xs_check_watch -> %s", what,
		  ev ? "an event" : xst_errname(errno));
	if (ev)
		xst_say("  unexpected event %s %s", ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
	free(ev);
}

static void do_write(struct xs_handle *h, const char *path, const char *value)
{
	bool ok = xs_write(h, XBT_NULL, path, value, strlen(value));

	xst_check(ok, "write %s -> %s", path, xst_res(ok));
}

/* A request and its reply on h: events caused by h's earlier requests are queued by now. */
static void round_trip(struct xs_handle *h)
{
	unsigned int len;
	char *v = xs_read(h, XBT_NULL, BASE, &len);

	if (!v)
		xst_fatal("round trip read: %s", xst_errname(errno));
	free(v);
}

int main(void)
{
	struct xs_handle *h, *hf;
	unsigned int num;
	char **ev;
	int fd;
	bool ok;

	xst_begin("watches");
	h = xst_open(0);
	xst_clean(h, BASE);
	ok = xs_mkdir(h, XBT_NULL, BASE);
	xst_check(ok, "mkdir " BASE " -> %s", xst_res(ok));

	expect_none(h, "before any watch");
	fd = xs_fileno(h);
	xst_check(fd >= 0, "xs_fileno -> %s", fd >= 0 ? "a descriptor" : xst_errname(errno));
	xst_check(xs_fileno(h) == fd, "xs_fileno again -> the same descriptor");
	xst_check(!xst_readable(fd, 0), "descriptor not readable before any watch");

	/* The initial event. */
	ok = xs_watch(h, BASE, "tok1");
	xst_check(ok, "watch " BASE " tok1 -> %s", xst_res(ok));
	xst_check(xst_readable(fd, WAIT_MS), "descriptor readable after watch");
	ev = xs_check_watch(h);
	xst_check(ev && !strcmp(ev[XS_WATCH_PATH], BASE) && !strcmp(ev[XS_WATCH_TOKEN], "tok1"),
		  "xs_check_watch -> initial event %s %s", ev ? ev[XS_WATCH_PATH] : "-",
		  ev ? ev[XS_WATCH_TOKEN] : xst_errname(errno));
	free(ev);
	expect_none(h, "after the initial event");
	xst_check(!xst_readable(fd, 0), "descriptor not readable once drained");

	/* A change below the watched node, read with the blocking call. */
	do_write(h, BASE "/x", "1");
	num = 0;
	ev = xs_read_watch(h, &num);
	xst_check(ev && num == 2 && !strcmp(ev[XS_WATCH_PATH], BASE "/x") &&
		  !strcmp(ev[XS_WATCH_TOKEN], "tok1"),
		  "xs_read_watch -> num=%u %s %s", num, ev ? ev[XS_WATCH_PATH] : "-",
		  ev ? ev[XS_WATCH_TOKEN] : xst_errname(errno));
	free(ev);
	expect_none(h, "after xs_read_watch");

	/* A watch on a node that does not exist yet, nested in the first one. */
	ok = xs_watch(h, BASE "/later/deep", "tok2");
	xst_check(ok, "watch " BASE "/later/deep tok2 -> %s", xst_res(ok));
	take(h, 1, "initial event of a watch on a missing node");
	do_write(h, BASE "/later/deep/z", "v");
	take(h, 2, "write below both watches");
	ok = xs_rm(h, XBT_NULL, BASE "/later");
	xst_check(ok, "rm " BASE "/later -> %s", xst_res(ok));
	take(h, 2, "rm above the nested watch");

	/* Same path, two tokens; then the same pair again. */
	ok = xs_watch(h, BASE "/dup", "d1") && xs_watch(h, BASE "/dup", "d2");
	xst_check(ok, "watch " BASE "/dup d1 and d2 -> %s", xst_res(ok));
	take(h, 2, "initial events");
	errno = 0;
	ok = xs_watch(h, BASE "/dup", "d1");
	xst_check(!ok && errno == EEXIST, "watch " BASE "/dup d1 again -> %s", xst_res(ok));
	do_write(h, BASE "/dup", "x");
	take(h, 3, "write under tok1, d1 and d2");
	ok = xs_unwatch(h, BASE "/dup", "d1") && xs_unwatch(h, BASE "/dup", "d2");
	xst_check(ok, "unwatch d1 and d2 -> %s", xst_res(ok));
	ok = xs_unwatch(h, BASE "/later/deep", "tok2");
	xst_check(ok, "unwatch " BASE "/later/deep tok2 -> %s", xst_res(ok));
	errno = 0;
	ok = xs_unwatch(h, BASE "/never", "tok9");
	xst_check(!ok && errno == ENOENT, "unwatch a watch never set -> %s", xst_res(ok));
	do_write(h, BASE "/dup", "y");
	take(h, 1, "write after unwatching d1 and d2");

	/* Without XS_UNWATCH_FILTER an event queued before xs_unwatch may still come out. */
	do_write(h, BASE "/stale", "s");
	round_trip(h);
	ok = xs_unwatch(h, BASE, "tok1");
	xst_check(ok, "unwatch " BASE " tok1 -> %s", xst_res(ok));
	ev = xs_check_watch(h);
	xst_say("event queued before unwatch (no filter): %s", ev ? ev[XS_WATCH_PATH] : "none");
	free(ev);
	while ((ev = xs_check_watch(h)))
		free(ev);
	do_write(h, BASE "/after", "a");
	round_trip(h);
	expect_none(h, "after unwatch, a new change");

	/* With XS_UNWATCH_FILTER queued events of the removed watch are dropped, others kept. */
	hf = xst_open(XS_UNWATCH_FILTER);
	ok = xs_watch(hf, BASE, "ftok") && xs_watch(hf, BASE "/other", "keep");
	xst_check(ok, "filtered handle: watch " BASE " ftok and " BASE "/other keep -> %s",
		  xst_res(ok));
	take(hf, 2, "initial events");
	do_write(hf, BASE "/z", "1");
	do_write(hf, BASE "/other/q", "2");
	round_trip(hf);
	ok = xs_unwatch(hf, BASE, "ftok");
	xst_check(ok, "unwatch " BASE " ftok -> %s", xst_res(ok));
	take(hf, 1, "left after the filtered unwatch");
	expect_none(hf, "filtered handle drained");
	xst_check(!xst_readable(xs_fileno(hf), 0), "filtered handle's descriptor not readable");
	xs_close(hf);

	ok = xs_rm(h, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	return xst_end();
}
