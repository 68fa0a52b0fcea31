/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Domain calls: introduce, is_introduced, get_domain_path, resume, release, the
 * @introduceDomain and @releaseDomain watches, xs_suspend_evtchn_port.
 *
 * Uses domain 7 (any page and event channel number do: the daemon under test runs on plain
 * Linux, without a hypervisor).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#define DOMID 7
#define WAIT_MS 5000

/* Next event on h, waiting up to WAIT_MS; "path token" or "none". */
static const char *next_event(struct xs_handle *h)
{
	static char line[512];
	char **ev;

	for (;;) {
		ev = xs_check_watch(h);
		if (ev)
			break;
		if (errno != EAGAIN || !xst_readable(xs_fileno(h), WAIT_MS))
			return "none";
	}
	snprintf(line, sizeof(line), "%s %s", ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
	free(ev);
	return line;
}

static void expect_event(struct xs_handle *h, const char *want, const char *what)
{
	const char *got = next_event(h);

	xst_check(strcmp(got, want) == 0, "%s: event %s", what, got);
}

static void expect_quiet(struct xs_handle *h, const char *what)
{
	char **ev;

	errno = 0;
	ev = xs_check_watch(h);
	xst_check(!ev && errno == EAGAIN, "%s: no event pending -> %s", what,
		  ev ? ev[XS_WATCH_PATH] : xst_errname(errno));
	free(ev);
}

static void domain_path(struct xs_handle *h, unsigned int domid)
{
	char *p = xs_get_domain_path(h, domid);
	char want[64];

	snprintf(want, sizeof(want), "/local/domain/%u", domid);
	xst_check(p && strcmp(p, want) == 0, "get_domain_path(%u) -> %s", domid,
		  p ? p : xst_errname(errno));
	free(p);
}

int main(void)
{
	struct xs_handle *h, *w;
	char path[128];
	bool ok;
	int port;

	xst_begin("domains");
	h = xst_open(0);
	w = xst_open(0);
	snprintf(path, sizeof(path), "/local/domain/%d", DOMID);
	xst_clean(h, path);

	domain_path(h, 0);
	domain_path(h, DOMID);
	domain_path(h, 32752);
	xst_check(!xs_is_domain_introduced(h, DOMID), "is_domain_introduced(%d) before -> false",
		  DOMID);
	xst_check(!xs_is_domain_introduced(h, 4242), "is_domain_introduced(4242) -> false");

	ok = xs_watch(w, "@introduceDomain", "intro");
	xst_check(ok, "watch @introduceDomain -> %s", xst_res(ok));
	expect_event(w, "@introduceDomain intro", "initial");
	ok = xs_watch(w, "@releaseDomain", "rel");
	xst_check(ok, "watch @releaseDomain -> %s", xst_res(ok));
	expect_event(w, "@releaseDomain rel", "initial");

	ok = xs_introduce_domain(h, DOMID, 0x1234, 11);
	xst_check(ok, "introduce_domain(%d, 0x1234, 11) -> %s", DOMID, xst_res(ok));
	expect_event(w, "@introduceDomain intro", "after introduce");
	xst_check(xs_is_domain_introduced(h, DOMID), "is_domain_introduced(%d) -> true", DOMID);
	domain_path(h, DOMID);

	ok = xs_introduce_domain(h, DOMID, 0x1234, 11);
	xst_say("introduce_domain(%d) again, same page -> %s", DOMID, xst_res(ok));
	ok = xs_resume_domain(h, DOMID);
	xst_check(ok, "resume_domain(%d) -> %s", DOMID, xst_res(ok));
	errno = 0;
	ok = xs_resume_domain(h, 4242);
	xst_say("resume_domain(4242) -> %s", xst_res(ok));
	ok = xs_set_target(h, DOMID, 0);
	xst_say("set_target(%d, 0) -> %s", DOMID, xst_res(ok));

	/* A suspend channel published by the domain, read back by the library. */
	snprintf(path, sizeof(path), "/local/domain/%d/device/suspend/event-channel", DOMID);
	port = xs_suspend_evtchn_port(DOMID);
	xst_check(port == -1, "suspend_evtchn_port(%d) with nothing published -> %d", DOMID, port);
	ok = xs_write(h, XBT_NULL, path, "42", 2);
	xst_check(ok, "write %s = 42 -> %s", path, xst_res(ok));
	port = xs_suspend_evtchn_port(DOMID);
	xst_check(port == 42, "suspend_evtchn_port(%d) -> %d", DOMID, port);
	ok = xs_write(h, XBT_NULL, path, "", 0);
	port = xs_suspend_evtchn_port(DOMID);
	xst_check(ok && port == -1, "suspend_evtchn_port(%d) with an empty value -> %d", DOMID,
		  port);
	expect_quiet(w, "before release");

	ok = xs_release_domain(h, DOMID);
	xst_check(ok, "release_domain(%d) -> %s", DOMID, xst_res(ok));
	expect_event(w, "@releaseDomain rel", "after release");
	xst_check(!xs_is_domain_introduced(h, DOMID), "is_domain_introduced(%d) after release -> false",
		  DOMID);
	errno = 0;
	ok = xs_release_domain(h, DOMID);
	xst_say("release_domain(%d) again -> %s", DOMID, xst_res(ok));
	errno = 0;
	ok = xs_release_domain(h, 4242);
	xst_say("release_domain(4242), never introduced -> %s", xst_res(ok));
	expect_quiet(w, "after the failed releases");

	ok = xs_unwatch(w, "@introduceDomain", "intro") && xs_unwatch(w, "@releaseDomain", "rel");
	xst_check(ok, "unwatch both -> %s", xst_res(ok));
	snprintf(path, sizeof(path), "/local/domain/%d", DOMID);
	xst_clean(h, path);
	xs_close(w);
	xs_close(h);
	return xst_end();
}
