/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Inside a real Xen guest: an unprivileged domain reaching XenStore through its kernel's
 * /dev/xen/xenbus, as guest agents do. Covers relative paths and the guest's home, EACCES
 * outside it, the nodes dom0 granted it (/xvm/granted/{rw,ro,none}, set up by
 * scripts/xen-vm/dom0.sh), watches relayed by the kernel (set before and after the node
 * exists, relative and absolute, xs_fileno polled), transactions and their EAGAIN, and several
 * threads on one handle.
 *
 * Runs only where XST_DOMU is set (the guest of scripts/xen-vm/run.sh); skipped elsewhere.
 * Everything it writes is under the guest's home, in xvm-ctest/, removed at the end.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#define HOME_DIR "xvm-ctest"
#define THREADS 4
#define ROUNDS 50
#define WAIT_MS 10000

static struct xs_handle *h;
static char home[64];

static char *get(struct xs_handle *x, xs_transaction_t t, const char *path)
{
	unsigned int len;

	return xs_read(x, t, path, &len);
}

static bool put(struct xs_handle *x, xs_transaction_t t, const char *path, const char *v)
{
	return xs_write(x, t, path, v, strlen(v));
}

/* Read path, printing the value or the error: compared between libraries, not judged. */
static void show_read(const char *path)
{
	char *v = get(h, XBT_NULL, path);
	int e = errno;

	xst_say("read %s -> %s", path, v ? v : xst_errname(e));
	free(v);
}

static void expect_errno(bool ok, int err, const char *what)
{
	int e = errno;

	xst_check(!ok && e == err, "%s -> %s (want %s)", what, ok ? "ok" : xst_errname(e),
		  xst_errname(err));
}

/* The next watch event, within WAIT_MS: "path token", or "none". */
static const char *next_event(struct xs_handle *x, char *buf, size_t n)
{
	unsigned int num;
	char **ev;

	if (!xst_readable(xs_fileno(x), WAIT_MS))
		return "none";
	ev = xs_read_watch(x, &num);
	if (!ev)
		return "none";
	snprintf(buf, n, "%s %s", ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
	free(ev);
	return buf;
}

static void expect_event(struct xs_handle *x, const char *want)
{
	char buf[256];
	const char *got = next_event(x, buf, sizeof(buf));

	xst_check(!strcmp(got, want), "event %s (want %s)", got, want);
}

static void identity(void)
{
	char *id = get(h, XBT_NULL, "domid");
	char *path;
	unsigned int domid;

	if (!id)
		xst_fatal("cannot read my own domid: %s", xst_errname(errno));
	domid = strtoul(id, NULL, 10);
	free(id);
	xst_check(domid != 0, "the guest is not domain 0");
	path = xs_get_domain_path(h, domid);
	snprintf(home, sizeof(home), "/local/domain/%u", domid);
	xst_check(path && !strcmp(path, home), "xs_get_domain_path gives my home");
	free(path);
}

static void relative_paths(void)
{
	char abs[128], *v, **names;
	unsigned int n, num;
	struct xs_permissions *perms;
	bool ok;

	ok = put(h, XBT_NULL, HOME_DIR "/a", "relative");
	xst_check(ok, "write " HOME_DIR "/a -> %s", xst_res(ok));
	snprintf(abs, sizeof(abs), "%s/" HOME_DIR "/a", home);
	v = get(h, XBT_NULL, abs);
	xst_check(v && !strcmp(v, "relative"), "the same node by its absolute path");
	free(v);
	ok = xs_mkdir(h, XBT_NULL, HOME_DIR "/dir");
	xst_check(ok, "mkdir " HOME_DIR "/dir -> %s", xst_res(ok));
	names = xs_directory(h, XBT_NULL, HOME_DIR, &n);
	xst_check(names && n == 2, "directory " HOME_DIR " -> %u entries", names ? n : 0);
	if (names) {
		xst_sort(names, n);
		for (unsigned int i = 0; i < n; i++)
			xst_say("  %s", names[i]);
	}
	free(names);
	perms = xs_get_permissions(h, XBT_NULL, HOME_DIR "/a", &num);
	xst_check(perms && num >= 1 && perms[0].id != 0, "a node I create is mine");
	free(perms);
}

static void outside_home(void)
{
	struct xs_permissions p = { .id = 0, .perms = XS_PERM_NONE };
	unsigned int n;
	char **names;

	expect_errno(put(h, XBT_NULL, "/xvm-guest-was-here", "1"), EACCES, "write /xvm-guest-was-here");
	expect_errno(xs_mkdir(h, XBT_NULL, "/local/domain/0/xvm"), EACCES, "mkdir in dom0's home");
	expect_errno(xs_rm(h, XBT_NULL, "/local/domain/0"), EACCES, "rm dom0's home");
	expect_errno(xs_set_permissions(h, XBT_NULL, "/xvm/granted/ro", &p, 1), EACCES,
		     "chmod a node I may only read");
	names = xs_directory(h, XBT_NULL, "/local/domain/0", &n);
	expect_errno(names != NULL, EACCES, "directory of dom0's home");
	free(names);
	show_read("/local/domain/0/name");
	show_read("/tool/xenstored");
}

static void granted(void)
{
	char *v;
	bool ok;

	v = get(h, XBT_NULL, "/xvm/granted/ro");
	xst_check(v && !strcmp(v, "read-only"), "read a node dom0 let me read");
	free(v);
	expect_errno(put(h, XBT_NULL, "/xvm/granted/ro", "x"), EACCES, "write it");
	ok = put(h, XBT_NULL, "/xvm/granted/rw", "from-guest");
	xst_check(ok, "write a node dom0 let me write -> %s", xst_res(ok));
	v = get(h, XBT_NULL, "/xvm/granted/rw");
	xst_check(v && !strcmp(v, "from-guest"), "and read it back");
	free(v);
	v = get(h, XBT_NULL, "/xvm/granted/none");
	expect_errno(v != NULL, EACCES, "read a node dom0 keeps to itself");
	free(v);
}

static void watches(void)
{
	struct xs_handle *w = xst_open(0);
	char abs[128];
	bool ok;

	/* Set before the node exists: the initial event, then one per change, relative. */
	ok = xs_watch(w, HOME_DIR "/w", "rel");
	xst_check(ok, "watch " HOME_DIR "/w (not there yet) -> %s", xst_res(ok));
	expect_event(w, HOME_DIR "/w rel");
	put(h, XBT_NULL, HOME_DIR "/w", "1");
	expect_event(w, HOME_DIR "/w rel");
	put(h, XBT_NULL, HOME_DIR "/w/child", "2");
	expect_event(w, HOME_DIR "/w/child rel");
	/* Set after: absolute path, absolute events. */
	snprintf(abs, sizeof(abs), "%s/" HOME_DIR "/w", home);
	ok = xs_watch(w, abs, "abs");
	xst_check(ok, "watch by absolute path -> %s", xst_res(ok));
	{
		char want[192];

		snprintf(want, sizeof(want), "%s abs", abs);
		expect_event(w, want);
	}
	xs_rm(h, XBT_NULL, HOME_DIR "/w");
	/* Both watches fire on the removal: collect two events, in either order. */
	{
		char b1[256], b2[256];
		const char *e1 = next_event(w, b1, sizeof(b1));
		const char *e2 = next_event(w, b2, sizeof(b2));
		bool rel = !strcmp(e1, HOME_DIR "/w rel") || !strcmp(e2, HOME_DIR "/w rel");
		bool absok = !strncmp(e1, home, strlen(home)) || !strncmp(e2, home, strlen(home));

		xst_check(rel && absok, "rm fires both watches");
	}
	ok = xs_unwatch(w, HOME_DIR "/w", "rel") && xs_unwatch(w, abs, "abs");
	xst_check(ok, "unwatch both -> %s", xst_res(ok));
	put(h, XBT_NULL, HOME_DIR "/w", "3");
	xst_check(!xst_readable(xs_fileno(w), 500), "no event after unwatch");
	/* A node dom0 granted me: events for it reach me too. */
	ok = xs_watch(w, "/xvm/granted/rw", "granted");
	xst_check(ok, "watch /xvm/granted/rw -> %s", xst_res(ok));
	expect_event(w, "/xvm/granted/rw granted");
	put(h, XBT_NULL, "/xvm/granted/rw", "again");
	expect_event(w, "/xvm/granted/rw granted");
	xs_unwatch(w, "/xvm/granted/rw", "granted");
	xs_close(w);
}

static void transactions(void)
{
	struct xs_handle *other = xst_open(0);
	xs_transaction_t t;
	char *v;
	bool ok;
	int tries;

	t = xs_transaction_start(h);
	xst_check(t != XBT_NULL, "transaction start");
	put(h, t, HOME_DIR "/t1", "in-txn");
	v = get(h, XBT_NULL, HOME_DIR "/t1");
	expect_errno(v != NULL, ENOENT, "not visible outside before commit");
	free(v);
	ok = xs_transaction_end(h, t, false);
	xst_check(ok, "commit -> %s", xst_res(ok));
	v = get(h, XBT_NULL, HOME_DIR "/t1");
	xst_check(v && !strcmp(v, "in-txn"), "visible after commit");
	free(v);

	t = xs_transaction_start(h);
	put(h, t, HOME_DIR "/t2", "aborted");
	ok = xs_transaction_end(h, t, true);
	xst_check(ok, "abort -> %s", xst_res(ok));
	v = get(h, XBT_NULL, HOME_DIR "/t2");
	expect_errno(v != NULL, ENOENT, "nothing of it left");
	free(v);

	/* Another connection changes what the transaction read: EAGAIN. */
	put(h, XBT_NULL, HOME_DIR "/counter", "0");
	t = xs_transaction_start(h);
	v = get(h, t, HOME_DIR "/counter");
	free(v);
	put(other, XBT_NULL, HOME_DIR "/counter", "10");
	put(h, t, HOME_DIR "/counter", "1");
	ok = xs_transaction_end(h, t, false);
	expect_errno(ok, EAGAIN, "commit after a conflicting write");
	/* The retry loop every toolstack writes. */
	for (tries = 1; tries <= 10; tries++) {
		char buf[16];

		t = xs_transaction_start(h);
		v = get(h, t, HOME_DIR "/counter");
		snprintf(buf, sizeof(buf), "%ld", v ? strtol(v, NULL, 10) + 1 : -1);
		free(v);
		put(h, t, HOME_DIR "/counter", buf);
		if (xs_transaction_end(h, t, false) || errno != EAGAIN)
			break;
	}
	v = get(h, XBT_NULL, HOME_DIR "/counter");
	xst_check(v && !strcmp(v, "11"), "retry loop -> %s", v ? v : xst_errname(errno));
	free(v);
	xs_close(other);
}

struct worker {
	pthread_t thr;
	int id, bad;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char path[64], val[32], *v;

	for (int i = 0; i < ROUNDS; i++) {
		snprintf(path, sizeof(path), HOME_DIR "/thr/%d", w->id);
		snprintf(val, sizeof(val), "%d-%d", w->id, i);
		if (!put(h, XBT_NULL, path, val)) {
			w->bad++;
			continue;
		}
		v = get(h, XBT_NULL, path);
		if (!v || strcmp(v, val))
			w->bad++;
		free(v);
	}
	return NULL;
}

static void threads(void)
{
	struct worker w[THREADS];
	char buf[256];
	int bad = 0;
	bool ok;

	/* A watch on the same handle while the threads work: its events still arrive. */
	ok = xs_watch(h, HOME_DIR "/thr/done", "done");
	xst_check(ok, "watch on the shared handle -> %s", xst_res(ok));
	expect_event(h, HOME_DIR "/thr/done done");
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .id = i };
		pthread_create(&w[i].thr, NULL, work, &w[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(w[i].thr, NULL);
		bad += w[i].bad;
	}
	xst_check(bad == 0, "%d threads x %d write+read on one handle: %d wrong", THREADS, ROUNDS,
		  bad);
	put(h, XBT_NULL, HOME_DIR "/thr/done", "1");
	xst_check(!strcmp(next_event(h, buf, sizeof(buf)), HOME_DIR "/thr/done done"),
		  "the watch fires after the threads' traffic");
	xs_unwatch(h, HOME_DIR "/thr/done", "done");
}

int main(void)
{
	xst_begin("domu");
	if (!getenv("XST_DOMU"))
		xst_skip("only inside a Xen guest (XST_DOMU unset)");
	h = xst_open(0);
	identity();
	xst_clean(h, HOME_DIR);
	relative_paths();
	outside_home();
	granted();
	watches();
	transactions();
	threads();
	xst_clean(h, HOME_DIR);
	xs_close(h);
	return xst_end();
}
