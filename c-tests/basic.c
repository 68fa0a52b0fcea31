/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Plain node operations: write, read, mkdir, rm, directory; binary and empty values; the
 * payload limit (E2BIG, with the handle still usable afterwards); the old open/close names.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#define BASE "/ctest/basic"

/* Read path and compare with want/want_len; prints what came back. */
static void expect_value(struct xs_handle *h, const char *path, const void *want,
			 unsigned int want_len)
{
	unsigned int len = 12345;
	char *v = xs_read(h, XBT_NULL, path, &len);

	if (!v) {
		xst_check(false, "read %s -> %s", path, xst_errname(errno));
		return;
	}
	xst_check(len == want_len && memcmp(v, want, len) == 0 && v[len] == 0,
		  "read %s -> len=%u '%s' (NUL-terminated: %s)", path, len, xst_show(0, v, len),
		  v[len] == 0 ? "yes" : "no");
	free(v);
}

static void expect_errno(bool ok, int want, const char *what)
{
	int e = errno;

	xst_check(!ok && e == want, "%s -> %s (want %s)", what, ok ? "ok" : xst_errname(e),
		  xst_errname(want));
}

static void list(struct xs_handle *h, const char *path)
{
	unsigned int num = 999;
	char **d = xs_directory(h, XBT_NULL, path, &num);

	if (!d) {
		xst_say("directory %s -> %s", path, xst_errname(errno));
		return;
	}
	xst_sort(d, num);
	xst_say("directory %s -> %u entries", path, num);
	for (unsigned int i = 0; i < num; i++)
		xst_say("  %s", d[i]);
	free(d);
}

int main(void)
{
	struct xs_handle *h, *h2;
	static const char bin[] = { 'a', 0, 'b', 0, (char)0xff, 0, 0 };
	char *big, *v;
	unsigned int len;
	bool ok;

	xst_begin("basic");
	h = xst_open(0);
	xst_clean(h, BASE);

	ok = xs_write(h, XBT_NULL, BASE "/a", "hello", 5);
	xst_check(ok, "write " BASE "/a 'hello' -> %s", xst_res(ok));
	expect_value(h, BASE "/a", "hello", 5);

	v = xs_read(h, XBT_NULL, BASE "/a", NULL);
	xst_check(v && strcmp(v, "hello") == 0, "read with len=NULL -> '%s'", v ? v : "(null)");
	free(v);

	ok = xs_write(h, XBT_NULL, BASE "/a", "hi", 2);
	xst_check(ok, "overwrite " BASE "/a 'hi' -> %s", xst_res(ok));
	expect_value(h, BASE "/a", "hi", 2);

	ok = xs_write(h, XBT_NULL, BASE "/empty", "", 0);
	xst_check(ok, "write " BASE "/empty '' -> %s", xst_res(ok));
	expect_value(h, BASE "/empty", "", 0);

	ok = xs_write(h, XBT_NULL, BASE "/bin", bin, sizeof(bin));
	xst_check(ok, "write " BASE "/bin (7 bytes with NULs) -> %s", xst_res(ok));
	expect_value(h, BASE "/bin", bin, sizeof(bin));

	ok = xs_mkdir(h, XBT_NULL, BASE "/dir");
	xst_check(ok, "mkdir " BASE "/dir -> %s", xst_res(ok));
	expect_value(h, BASE "/dir", "", 0);
	ok = xs_mkdir(h, XBT_NULL, BASE "/dir");
	xst_check(ok, "mkdir " BASE "/dir again -> %s", xst_res(ok));
	ok = xs_mkdir(h, XBT_NULL, BASE "/a");
	xst_check(ok, "mkdir over a value node -> %s", xst_res(ok));
	expect_value(h, BASE "/a", "hi", 2);

	ok = xs_write(h, XBT_NULL, BASE "/deep/x/y", "v", 1);
	xst_check(ok, "write " BASE "/deep/x/y (parents missing) -> %s", xst_res(ok));
	expect_value(h, BASE "/deep", "", 0);
	expect_value(h, BASE "/deep/x", "", 0);
	expect_value(h, BASE "/deep/x/y", "v", 1);

	list(h, BASE);
	list(h, BASE "/deep");
	list(h, BASE "/a");
	len = 7;
	errno = 0;
	char **d = xs_directory(h, XBT_NULL, BASE "/nothere", &len);
	expect_errno(d != NULL, ENOENT, "directory " BASE "/nothere");
	free(d);

	errno = 0;
	v = xs_read(h, XBT_NULL, BASE "/nothere", &len);
	expect_errno(v != NULL, ENOENT, "read " BASE "/nothere");
	free(v);

	ok = xs_rm(h, XBT_NULL, BASE "/deep");
	xst_check(ok, "rm " BASE "/deep (with children) -> %s", xst_res(ok));
	errno = 0;
	v = xs_read(h, XBT_NULL, BASE "/deep/x/y", &len);
	expect_errno(v != NULL, ENOENT, "read " BASE "/deep/x/y after rm");
	free(v);
	ok = xs_rm(h, XBT_NULL, BASE "/nothere");
	xst_say("rm " BASE "/nothere (parent exists) -> %s", xst_res(ok));
	ok = xs_rm(h, XBT_NULL, BASE "/no/such");
	xst_say("rm " BASE "/no/such (parent missing) -> %s", xst_res(ok));

	/* The payload (path, NUL, value) must fit XENSTORE_PAYLOAD_MAX. */
	big = malloc(XENSTORE_PAYLOAD_MAX + 1);
	memset(big, 'x', XENSTORE_PAYLOAD_MAX + 1);
	errno = 0;
	ok = xs_write(h, XBT_NULL, BASE "/big", big, XENSTORE_PAYLOAD_MAX + 1);
	expect_errno(ok, E2BIG, "write " BASE "/big with a 4097-byte value");
	ok = xs_write(h, XBT_NULL, BASE "/a", "after", 5);
	xst_check(ok, "write on the same handle after E2BIG -> %s", xst_res(ok));
	expect_value(h, BASE "/a", "after", 5);
	len = XENSTORE_PAYLOAD_MAX - (unsigned int)sizeof(BASE "/big");
	ok = xs_write(h, XBT_NULL, BASE "/big", big, len);
	xst_say("write a value that fills the payload exactly (%u bytes) -> %s", len, xst_res(ok));
	if (ok)
		expect_value(h, BASE "/big", big, len);
	errno = 0;
	ok = xs_write(h, XBT_NULL, BASE "/big", big, len + 1);
	expect_errno(ok, E2BIG, "write one byte more");
	free(big);

	/* A second connection sees the first one's writes. */
	h2 = xs_daemon_open();
	xst_check(h2 != NULL, "xs_daemon_open -> %s", h2 ? "handle" : xst_errname(errno));
	if (h2) {
		expect_value(h2, BASE "/a", "after", 5);
		xs_daemon_close(h2);
	}
	h2 = xs_domain_open();
	xst_check(h2 != NULL, "xs_domain_open -> %s", h2 ? "handle" : xst_errname(errno));
	if (h2) {
		expect_value(h2, BASE "/bin", bin, sizeof(bin));
		xs_close(h2);
	}
	h2 = xs_daemon_open_readonly();
	xst_check(h2 != NULL, "xs_daemon_open_readonly -> %s", h2 ? "handle" : xst_errname(errno));
	if (h2) {
		expect_value(h2, BASE "/empty", "", 0);
		xs_daemon_close(h2);
	}
	xs_close(NULL);
	xst_say("xs_close(NULL) returned");

	ok = xs_restrict(h, 1);
	xst_say("xs_restrict(h, 1) -> %s", ok ? "true" : "false");

	ok = xs_rm(h, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	return xst_end();
}
