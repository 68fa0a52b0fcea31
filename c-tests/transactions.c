/* SPDX-License-Identifier: LGPL-2.1-only */
/* Transactions: commit, abort, isolation, and the EAGAIN conflict retry loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#define BASE "/ctest/transactions"

static char *get(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	unsigned int len;
	char *v = xs_read(h, t, path, &len);

	if (!v) {
		static char err[64];

		snprintf(err, sizeof(err), "<%s>", xst_errname(errno));
		return strdup(err);
	}
	return v;
}

static void expect_read(struct xs_handle *h, xs_transaction_t t, const char *tag,
			const char *path, const char *want)
{
	char *v = get(h, t, path);

	xst_check(strcmp(v, want) == 0, "read %s (%s) -> %s", path, tag, v);
	free(v);
}

/*
 * The usual client loop: read, modify, write, commit; start over on EAGAIN. On the first
 * attempt `other` changes the node behind the transaction's back, so exactly one retry is due.
 */
static int increment(struct xs_handle *h, struct xs_handle *other, const char *path)
{
	int attempts = 0;

	for (;;) {
		xs_transaction_t t = xs_transaction_start(h);
		char *v, buf[32];
		bool ok;

		attempts++;
		if (t == XBT_NULL)
			xst_fatal("transaction_start in attempt %d: %s", attempts,
				  xst_errname(errno));
		v = get(h, t, path);
		snprintf(buf, sizeof(buf), "%ld", strtol(v, NULL, 10) + 1);
		free(v);
		if (attempts == 1) {
			ok = xs_write(other, XBT_NULL, path, "100", 3);
			xst_say("attempt 1: another connection writes %s = 100 -> %s", path,
				xst_res(ok));
		}
		ok = xs_write(h, t, path, buf, strlen(buf));
		if (!ok)
			xst_fatal("write in transaction: %s", xst_errname(errno));
		errno = 0;
		ok = xs_transaction_end(h, t, false);
		xst_say("attempt %d: write %s = %s, commit -> %s", attempts, path, buf,
			xst_res(ok));
		if (ok)
			return attempts;
		if (errno != EAGAIN) {
			xst_check(false, "commit failed with %s, not EAGAIN", xst_errname(errno));
			return attempts;
		}
		if (attempts == 5) {
			xst_check(false, "still conflicting after 5 attempts");
			return attempts;
		}
	}
}

int main(void)
{
	struct xs_handle *h, *h2;
	xs_transaction_t t, t2;
	unsigned int num;
	char **d;
	bool ok;

	xst_begin("transactions");
	h = xst_open(0);
	h2 = xst_open(0);
	xst_clean(h, BASE);
	ok = xs_mkdir(h, XBT_NULL, BASE);
	xst_check(ok, "mkdir " BASE " -> %s", xst_res(ok));

	/* Commit. */
	t = xs_transaction_start(h);
	xst_check(t != XBT_NULL, "transaction_start -> %s", t != XBT_NULL ? "an id" : xst_errname(errno));
	ok = xs_write(h, t, BASE "/a", "in-tx", 5);
	xst_check(ok, "write " BASE "/a in transaction -> %s", xst_res(ok));
	ok = xs_mkdir(h, t, BASE "/dir");
	xst_check(ok, "mkdir " BASE "/dir in transaction -> %s", xst_res(ok));
	expect_read(h, t, "inside", BASE "/a", "in-tx");
	expect_read(h, XBT_NULL, "outside, same connection", BASE "/a", "<ENOENT>");
	expect_read(h2, XBT_NULL, "outside, other connection", BASE "/a", "<ENOENT>");
	d = xs_directory(h, t, BASE, &num);
	if (d) {
		xst_sort(d, num);
		xst_check(num == 2 && !strcmp(d[0], "a") && !strcmp(d[1], "dir"),
			  "directory " BASE " inside -> %u entries", num);
		free(d);
	} else {
		xst_check(false, "directory " BASE " inside -> %s", xst_errname(errno));
	}
	ok = xs_transaction_end(h, t, false);
	xst_check(ok, "commit -> %s", xst_res(ok));
	expect_read(h2, XBT_NULL, "after commit", BASE "/a", "in-tx");
	expect_read(h2, XBT_NULL, "after commit", BASE "/dir", "");

	errno = 0;
	ok = xs_transaction_end(h, t, false);
	xst_say("commit the same id again -> %s", xst_res(ok));
	xst_check(!ok, "a finished transaction cannot be ended twice");

	/* Abort. */
	t = xs_transaction_start(h);
	xst_check(t != XBT_NULL, "transaction_start -> %s", t != XBT_NULL ? "an id" : xst_errname(errno));
	ok = xs_write(h, t, BASE "/b", "dropped", 7);
	xst_check(ok, "write " BASE "/b in transaction -> %s", xst_res(ok));
	ok = xs_rm(h, t, BASE "/a");
	xst_check(ok, "rm " BASE "/a in transaction -> %s", xst_res(ok));
	expect_read(h, t, "inside", BASE "/a", "<ENOENT>");
	ok = xs_transaction_end(h, t, true);
	xst_check(ok, "abort -> %s", xst_res(ok));
	expect_read(h, XBT_NULL, "after abort", BASE "/b", "<ENOENT>");
	expect_read(h, XBT_NULL, "after abort", BASE "/a", "in-tx");

	/* Two open at once on one connection, each seeing only its own writes. */
	t = xs_transaction_start(h);
	t2 = xs_transaction_start(h);
	xst_check(t != XBT_NULL && t2 != XBT_NULL && t != t2,
		  "two transactions at once -> distinct ids: %s", t != t2 ? "yes" : "no");
	ok = xs_write(h, t, BASE "/one", "1", 1) && xs_write(h, t2, BASE "/two", "2", 1);
	xst_check(ok, "one write in each -> %s", xst_res(ok));
	expect_read(h, t, "in the first", BASE "/two", "<ENOENT>");
	expect_read(h, t2, "in the second", BASE "/one", "<ENOENT>");
	ok = xs_transaction_end(h, t2, false);
	xst_check(ok, "commit the second -> %s", xst_res(ok));
	ok = xs_transaction_end(h, t, true);
	xst_check(ok, "abort the first -> %s", xst_res(ok));
	expect_read(h, XBT_NULL, "after", BASE "/two", "2");
	expect_read(h, XBT_NULL, "after", BASE "/one", "<ENOENT>");

	/* Conflict: commit refused with EAGAIN, then the retry succeeds. */
	ok = xs_write(h, XBT_NULL, BASE "/counter", "0", 1);
	xst_check(ok, "write " BASE "/counter = 0 -> %s", xst_res(ok));
	xst_check(increment(h, h2, BASE "/counter") == 2, "increment took 2 attempts");
	expect_read(h2, XBT_NULL, "final", BASE "/counter", "101");

	/* A transaction id used after the connection that made it is gone. */
	t = xs_transaction_start(h2);
	xs_close(h2);
	errno = 0;
	ok = xs_write(h, t, BASE "/foreign", "x", 1);
	xst_say("write with another (closed) connection's transaction id -> %s", xst_res(ok));
	expect_read(h, XBT_NULL, "after", BASE "/foreign", "<ENOENT>");

	ok = xs_rm(h, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	return xst_end();
}
