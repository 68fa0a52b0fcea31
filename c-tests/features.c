/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Calls added after Xen 4.17 (server features, quotas, watch depth). Built only where the
 * headers declare them (XST_HAVE_FEATURES); skipped against the 4.17 reference. What the
 * daemon answers depends on the daemon, so results are printed; the checks are on what the
 * library itself must do.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#ifndef XST_HAVE_FEATURES
int main(void)
{
	xst_begin("features");
	xst_skip("this libxenstore has no xs_get_features_supported (Xen 4.17 API)");
}
#else

#define BASE "/ctest/features"
#define WAIT_MS 2000

static void drain(struct xs_handle *h, const char *what)
{
	char **ev;
	int n = 0;

	for (;;) {
		ev = xs_check_watch(h);
		if (!ev) {
			if (errno != EAGAIN || !xst_readable(xs_fileno(h), WAIT_MS))
				break;
			continue;
		}
		xst_say("  %s: event %s %s", what, ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
		free(ev);
		n++;
	}
	xst_say("  %s: %d event(s)", what, n);
}

int main(void)
{
	static const struct { const char *name, *version; } syms[] = {
		{ "xs_get_features_supported", "VERS_4.1" },
		{ "xs_get_features_domain", "VERS_4.1" },
		{ "xs_set_features_domain", "VERS_4.1" },
		{ "xs_get_quota_names", "VERS_4.2" },
		{ "xs_watch_depth", "VERS_4.2" },
		{ "xs_watch_try_depth", "VERS_4.2" },
	};
	struct xs_handle *h;
	unsigned int features = 0xdead, value, num = 0;
	const char **names;
	bool ok;

	xst_begin("features");
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *p = dlvsym(RTLD_DEFAULT, syms[i].name, syms[i].version);

		xst_check(p != NULL, "%s@%s %s", syms[i].name, syms[i].version,
			  p ? "present" : "missing");
	}

	h = xst_open(0);
	xst_clean(h, BASE);
	ok = xs_mkdir(h, XBT_NULL, BASE);
	xst_check(ok, "mkdir " BASE " -> %s", xst_res(ok));

	ok = xs_get_features_supported(h, &features);
	if (ok)
		xst_say("get_features_supported -> %#x", features);
	else
		xst_say("get_features_supported -> %s", xst_errname(errno));

	if (ok && (features & XENSTORE_SERVER_FEATURE_WATCHDEPTH)) {
		ok = xs_watch_depth(h, BASE, "d0", 0);
		xst_check(ok, "watch_depth " BASE " d0 depth 0 -> %s", xst_res(ok));
		drain(h, "initial");
		ok = xs_write(h, XBT_NULL, BASE "/child", "x", 1);
		xst_check(ok, "write " BASE "/child -> %s", xst_res(ok));
		drain(h, "a child changes under a depth-0 watch");
		ok = xs_unwatch(h, BASE, "d0");
		xst_check(ok, "unwatch d0 -> %s", xst_res(ok));
	} else {
		errno = 0;
		ok = xs_watch_depth(h, BASE, "d0", 0);
		xst_say("watch_depth without server support -> %s", xst_res(ok));
	}
	ok = xs_watch_try_depth(h, BASE, "td", 1);
	xst_check(ok, "watch_try_depth " BASE " td 1 -> %s", xst_res(ok));
	drain(h, "initial");
	ok = xs_unwatch(h, BASE, "td");
	xst_check(ok, "unwatch td -> %s", xst_res(ok));

	ok = xs_get_features_domain(h, 0, &value);
	xst_say("get_features_domain(0) -> %s", ok ? "ok" : xst_errname(errno));

	names = xs_get_quota_names(h, &num);
	if (names) {
		xst_say("get_quota_names -> %u names", num);
		for (unsigned int i = 0; i < num; i++) {
			ok = xs_get_global_quota(h, names[i], &value);
			xst_say("  %s: global %s", names[i], ok ? "readable" : xst_errname(errno));
		}
		free(names);
	} else {
		xst_say("get_quota_names -> %s", xst_errname(errno));
	}
	errno = 0;
	ok = xs_get_global_quota(h, "no-such-quota", &value);
	xst_say("get_global_quota(no-such-quota) -> %s", xst_res(ok));

	ok = xs_rm(h, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	return xst_end();
}
#endif
