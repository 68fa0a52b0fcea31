/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Simulated guests on the embedded store (XENSTORE_EMBEDDED=1): handles from
 * xs_embedded_open_domain() act as an unprivileged domain whose messages cross its ring page.
 * Covers relative paths, permissions between domains, the node quota (the store stays
 * consistent: CONTROL check), relative and absolute watches, transactions, and release making
 * the guest's handle fail and waking its waiters.
 *
 * Our library's own extension: skipped with a library that lacks xs_embedded_open_domain (it
 * is looked up with dlsym, so this program builds against any libxenstore) or without the
 * embedded store.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#if __has_include(<xenstore_embedded.h>)
#include <xenstore_embedded.h>
/* The header's declaration and the type used here must agree. */
static __typeof__(&xs_embedded_open_domain) declared __attribute__((unused));
#endif

#define GUEST 7
#define OTHER 9
#define HOME "/local/domain/7"
#define WAIT_MS 5000

typedef struct xs_handle *open_domain_fn(unsigned int domid);
static open_domain_fn *open_domain;

static struct xs_handle *h; /* domain 0 */

static char *get(struct xs_handle *x, const char *path)
{
	unsigned int len;

	return xs_read(x, XBT_NULL, path, &len);
}

static bool put(struct xs_handle *x, const char *path, const char *v)
{
	return xs_write(x, XBT_NULL, path, v, strlen(v));
}

/* Read `path` through `x`, expecting `want` (a value) or, when want is NULL, error `err`. */
static void expect_read(struct xs_handle *x, const char *who, const char *path, const char *want,
			int err)
{
	char *v = get(x, path);
	int e = errno;

	if (want)
		xst_check(v && !strcmp(v, want), "%s reads %s -> %s", who, path, v ? v : xst_errname(e));
	else
		xst_check(!v && e == err, "%s reads %s -> %s", who, path, v ? v : xst_errname(e));
	free(v);
}

static void expect_write(struct xs_handle *x, const char *who, const char *path, int err)
{
	bool ok = put(x, path, "w");

	xst_check(err ? (!ok && errno == err) : ok, "%s writes %s -> %s", who, path, xst_res(ok));
}

/* Introduce domid and give it a home it owns, as a toolstack does. */
static void make_domain(unsigned int domid)
{
	struct xs_permissions p = { .id = domid, .perms = XS_PERM_NONE };
	char home[64];
	bool ok;

	snprintf(home, sizeof(home), "/local/domain/%u", domid);
	ok = xs_introduce_domain(h, domid, 0x1000 + domid, 10 + domid);
	xst_check(ok, "introduce domain %u -> %s", domid, xst_res(ok));
	ok = xs_mkdir(h, XBT_NULL, home) && xs_set_permissions(h, XBT_NULL, home, &p, 1);
	xst_check(ok, "%s made, owned by domain %u -> %s", home, domid, xst_res(ok));
}

/* The next event of x within WAIT_MS, as "path token" (static buffer), or "none"/an errno. */
static const char *next_event(struct xs_handle *x)
{
	static char line[512];
	char **ev;

	for (;;) {
		ev = xs_check_watch(x);
		if (ev)
			break;
		if (errno != EAGAIN)
			return xst_errname(errno);
		if (!xst_readable(xs_fileno(x), WAIT_MS))
			return "none";
	}
	snprintf(line, sizeof(line), "%s %s", ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
	free(ev);
	return line;
}

static void expect_event(struct xs_handle *x, const char *want, const char *what)
{
	const char *got = next_event(x);

	xst_check(!strcmp(got, want), "%s: event %s", what, got);
}

static void relative_paths(struct xs_handle *g)
{
	char *p, **dir;
	unsigned int n;
	struct xs_permissions *perms;
	bool ok;

	xst_say("-- relative paths");
	ok = put(g, "rel/a", "1");
	xst_check(ok, "guest writes rel/a -> %s", xst_res(ok));
	expect_read(h, "dom0", HOME "/rel/a", "1", 0);
	expect_read(g, "guest", HOME "/rel/a", "1", 0);
	expect_read(g, "guest", "rel/a", "1", 0);
	dir = xs_directory(g, XBT_NULL, "rel", &n);
	xst_check(dir && n == 1 && !strcmp(dir[0], "a"), "guest lists rel -> %u entries", dir ? n : 0);
	free(dir);
	perms = xs_get_permissions(g, XBT_NULL, "rel/a", &n);
	xst_check(perms && n >= 1 && perms[0].id == GUEST, "rel/a is owned by domain %d",
		  perms ? (int)perms[0].id : -1);
	free(perms);
	p = xs_get_domain_path(g, GUEST);
	xst_check(p && !strcmp(p, HOME), "guest's domain path -> %s", p ? p : xst_errname(errno));
	free(p);
	ok = xs_rm(g, XBT_NULL, "rel/a");
	xst_check(ok, "guest removes rel/a -> %s", xst_res(ok));
	expect_read(h, "dom0", HOME "/rel/a", NULL, ENOENT);
}

static void permissions(struct xs_handle *g)
{
	struct xs_permissions grant[2] = { { .id = 0, .perms = XS_PERM_NONE },
					   { .id = GUEST, .perms = XS_PERM_READ } };
	struct xs_permissions mine = { .id = GUEST, .perms = XS_PERM_NONE };
	struct xs_handle *other;
	bool ok;

	xst_say("-- permissions");
	ok = put(h, "/ctest/guest/private", "secret") && put(h, HOME "/mine", "m");
	xst_check(ok, "dom0 writes /ctest/guest/private and " HOME "/mine -> %s", xst_res(ok));
	expect_read(g, "guest", "/ctest/guest/private", NULL, EACCES);
	expect_write(g, "guest", "/ctest/guest/private", EACCES);
	expect_write(g, "guest", "/ctest/guest/new", EACCES);
	ok = xs_rm(g, XBT_NULL, "/ctest/guest/private");
	xst_check(!ok && errno == EACCES, "guest removes /ctest/guest/private -> %s", xst_res(ok));
	ok = xs_set_permissions(g, XBT_NULL, "/ctest/guest/private", &mine, 1);
	xst_check(!ok && errno == EACCES, "guest takes /ctest/guest/private -> %s", xst_res(ok));
	ok = xs_introduce_domain(g, 42, 1, 1);
	xst_check(!ok && errno == EACCES, "guest introduces a domain -> %s", xst_res(ok));
	/* Inside its home a node domain 0 created inherits the guest's ownership. */
	expect_read(g, "guest", "mine", "m", 0);

	ok = xs_set_permissions(h, XBT_NULL, "/ctest/guest/private", grant, 2);
	xst_check(ok, "dom0 grants domain %d read on /ctest/guest/private -> %s", GUEST, xst_res(ok));
	expect_read(g, "guest", "/ctest/guest/private", "secret", 0);
	expect_write(g, "guest", "/ctest/guest/private", EACCES);
	grant[1].perms = XS_PERM_READ | XS_PERM_WRITE;
	ok = xs_set_permissions(h, XBT_NULL, "/ctest/guest/private", grant, 2);
	xst_check(ok, "dom0 grants it write too -> %s", xst_res(ok));
	expect_write(g, "guest", "/ctest/guest/private", 0);

	/* Another guest can neither read nor write this one's home. */
	make_domain(OTHER);
	other = open_domain(OTHER);
	xst_check(other != NULL, "open domain %d -> %s", OTHER, other ? "ok" : xst_errname(errno));
	if (!other)
		return;
	expect_read(other, "domain 9", HOME "/mine", NULL, EACCES);
	expect_write(other, "domain 9", HOME "/mine", EACCES);
	expect_write(other, "domain 9", HOME "/intruder", EACCES);
	expect_read(g, "guest", "/local/domain/9", NULL, EACCES);
	xs_close(other);
	ok = xs_release_domain(h, OTHER) && xs_rm(h, XBT_NULL, "/local/domain/9");
	xst_check(ok, "release domain %d -> %s", OTHER, xst_res(ok));
}

static void quota(struct xs_handle *g)
{
	char path[64], *check;
	unsigned int n;
	int err = 0;

	xst_say("-- node quota");
	for (n = 0; n < 100000; n++) {
		snprintf(path, sizeof(path), "q/n%u", n);
		if (!put(g, path, "x")) {
			err = errno;
			break;
		}
	}
	xst_check(err == ENOSPC, "guest writes nodes until -> %s", err ? xst_errname(err) : "never stopped");
	xst_check(n > 100 && n < 100000, "it got some written first (%s)", n > 100 ? "yes" : "no");
	expect_read(g, "guest", "q/n0", "x", 0);
	expect_write(g, "guest", "q/n0", 0);
	check = xs_control_command(h, "check", NULL, 0);
	xst_check(check && !strcmp(check, "OK"), "CONTROL check -> %s", check ? check : xst_errname(errno));
	free(check);
	xst_check(xs_rm(g, XBT_NULL, "q"), "guest removes its nodes -> ok");
	expect_write(g, "guest", "q/again", 0);
}

static void watches(struct xs_handle *g)
{
	xs_transaction_t t;
	bool ok;

	xst_say("-- watches");
	ok = xs_watch(g, "w", "rel");
	xst_check(ok, "guest watches w (relative) -> %s", xst_res(ok));
	expect_event(g, "w rel", "initial, relative");
	ok = xs_watch(g, HOME "/w", "abs");
	xst_check(ok, "guest watches " HOME "/w -> %s", xst_res(ok));
	expect_event(g, HOME "/w abs", "initial, absolute");

	ok = put(h, HOME "/w/by-dom0", "1");
	xst_check(ok, "dom0 writes " HOME "/w/by-dom0 -> %s", xst_res(ok));
	/* One change, two watches: the order of the two events is the store's. */
	{
		char a[512], b[512];

		snprintf(a, sizeof(a), "%s", next_event(g));
		snprintf(b, sizeof(b), "%s", next_event(g));
		xst_check((!strcmp(a, "w/by-dom0 rel") && !strcmp(b, HOME "/w/by-dom0 abs")) ||
			  (!strcmp(b, "w/by-dom0 rel") && !strcmp(a, HOME "/w/by-dom0 abs")),
			  "events: '%s' and '%s'", a, b);
	}
	ok = xs_unwatch(g, HOME "/w", "abs");
	xst_check(ok, "guest unwatches the absolute one -> %s", xst_res(ok));

	/* The guest's own transaction fires its watch once committed. */
	t = xs_transaction_start(g);
	xst_check(t != XBT_NULL, "guest starts a transaction -> %s", t ? "ok" : xst_errname(errno));
	ok = xs_write(g, t, "w/in-txn", "2", 1);
	xst_check(ok, "guest writes w/in-txn in it -> %s", xst_res(ok));
	expect_read(h, "dom0", HOME "/w/in-txn", NULL, ENOENT);
	ok = xs_transaction_end(g, t, false);
	xst_check(ok, "guest commits -> %s", xst_res(ok));
	expect_event(g, "w/in-txn rel", "after commit");
	expect_read(h, "dom0", HOME "/w/in-txn", "2", 0);

	/* A value longer than the ring (1024 bytes) crosses it in pieces, both ways. */
	{
		char big[1901], *v;

		memset(big, 'b', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		ok = put(g, "w/big", big);
		xst_check(ok, "guest writes %zu bytes -> %s", strlen(big), xst_res(ok));
		expect_event(g, "w/big rel", "big write");
		v = get(g, "w/big");
		xst_check(v && !strcmp(v, big), "guest reads w/big back -> %s",
			  v ? xst_show(0, v, strlen(v)) : xst_errname(errno));
		free(v);
	}
}

struct waiter {
	struct xs_handle *g;
	bool returned_null;
	int err;
};

static void *wait_for_watch(void *arg)
{
	struct waiter *w = arg;
	unsigned int n;
	char **ev = xs_read_watch(w->g, &n);

	w->returned_null = ev == NULL;
	w->err = errno;
	free(ev);
	return NULL;
}

static void release(struct xs_handle *g)
{
	struct waiter w = { .g = g };
	pthread_t th;
	bool ok;
	char *v;

	xst_say("-- release");
	ok = xs_watch(h, "@releaseDomain", "released");
	xst_check(ok, "dom0 watches @releaseDomain -> %s", xst_res(ok));
	expect_event(h, "@releaseDomain released", "initial");
	ok = xs_watch(g, "gone", "g");
	xst_check(ok, "guest watches gone -> %s", xst_res(ok));
	expect_event(g, "gone g", "initial");
	if (pthread_create(&th, NULL, wait_for_watch, &w))
		xst_fatal("pthread_create");

	ok = xs_release_domain(h, GUEST);
	xst_check(ok, "dom0 releases domain %d -> %s", GUEST, xst_res(ok));
	expect_event(h, "@releaseDomain released", "dom0");
	pthread_join(th, NULL);
	xst_check(w.returned_null, "a thread blocked in the guest's xs_read_watch returns NULL");
	xst_check(xst_readable(xs_fileno(g), WAIT_MS), "the guest's xs_fileno polls readable");
	v = get(g, "mine");
	xst_check(!v && errno == EBADF, "guest reads mine -> %s", v ? v : xst_errname(errno));
	free(v);
	ok = put(g, "mine", "x");
	xst_check(!ok && errno == EBADF, "guest writes mine -> %s", xst_res(ok));
	xst_check(!xs_is_domain_introduced(h, GUEST), "domain %d is no longer introduced", GUEST);
	xs_close(g);
	g = open_domain(GUEST);
	xst_check(!g && errno == ENOENT, "open domain %d again -> %s", GUEST,
		  g ? "a handle" : xst_errname(errno));
	if (g)
		xs_close(g);
}

int main(void)
{
	struct xs_handle *g;

	xst_begin("guest");
	open_domain = (open_domain_fn *)dlsym(RTLD_DEFAULT, "xs_embedded_open_domain");
	if (!open_domain)
		xst_skip("this libxenstore has no xs_embedded_open_domain");
	if (!xst_embedded())
		xst_skip("guest handles need the embedded store (XENSTORE_EMBEDDED=1)");
	h = xst_open(0);
	xst_clean(h, "/ctest/guest");

	g = open_domain(GUEST);
	xst_check(!g && errno == ENOENT, "open domain %d before it is introduced -> %s", GUEST,
		  g ? "a handle" : xst_errname(errno));
	g = open_domain(0);
	xst_check(!g && errno == EINVAL, "open domain 0 -> %s", g ? "a handle" : xst_errname(errno));
	make_domain(GUEST);
	g = open_domain(GUEST);
	if (!g)
		xst_fatal("open domain %d: %s", GUEST, xst_errname(errno));
	xst_check(true, "open domain %d -> a handle", GUEST);

	relative_paths(g);
	permissions(g);
	quota(g);
	watches(g);
	release(g);

	xst_clean(h, "/ctest/guest");
	xst_clean(h, HOME);
	xs_close(h);
	return xst_end();
}
