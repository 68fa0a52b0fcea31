/* SPDX-License-Identifier: LGPL-2.1-only */
/* Access lists: xs_get_permissions, xs_set_permissions, xs_strings_to_perms. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#define BASE "/ctest/perms"

/* "r5 n0" style, independent of either library's own formatting code. */
static const char *perms_str(const struct xs_permissions *p, unsigned int num)
{
	static char buf[1024];
	size_t o = 0;

	buf[0] = 0;
	for (unsigned int i = 0; i < num && o + 32 < sizeof(buf); i++) {
		char c;

		switch (p[i].perms & (XS_PERM_READ | XS_PERM_WRITE)) {
		case XS_PERM_READ: c = 'r'; break;
		case XS_PERM_WRITE: c = 'w'; break;
		case XS_PERM_READ | XS_PERM_WRITE: c = 'b'; break;
		default: c = 'n'; break;
		}
		o += snprintf(buf + o, sizeof(buf) - o, "%s%c%u", i ? " " : "", c, p[i].id);
		if (p[i].perms & ~(unsigned int)(XS_PERM_READ | XS_PERM_WRITE))
			o += snprintf(buf + o, sizeof(buf) - o, "(+%#x)",
				      p[i].perms & ~(unsigned int)(XS_PERM_READ | XS_PERM_WRITE));
	}
	return buf;
}

static void expect_perms(struct xs_handle *h, const char *path, const char *want)
{
	unsigned int num = 999;
	struct xs_permissions *p = xs_get_permissions(h, XBT_NULL, path, &num);

	if (!p) {
		xst_check(false, "get_permissions %s -> %s", path, xst_errname(errno));
		return;
	}
	xst_check(strcmp(perms_str(p, num), want) == 0, "get_permissions %s -> %u: %s", path, num,
		  perms_str(p, num));
	free(p);
}

static void parse(const char *label, const char *strings, unsigned int num, bool want_ok)
{
	struct xs_permissions p[8];
	bool ok;

	memset(p, 0, sizeof(p));
	errno = 0;
	ok = xs_strings_to_perms(p, num, strings);
	if (ok)
		xst_check(want_ok, "xs_strings_to_perms(%s, %u) -> ok: %s", label, num,
			  perms_str(p, num));
	else
		xst_check(!want_ok && errno == EINVAL, "xs_strings_to_perms(%s, %u) -> false %s",
			  label, num, xst_errname(errno));
}

int main(void)
{
	struct xs_handle *h;
	struct xs_permissions set3[3] = {
		{ .id = 0, .perms = XS_PERM_NONE },
		{ .id = 5, .perms = XS_PERM_READ },
		{ .id = 7, .perms = XS_PERM_READ | XS_PERM_WRITE },
	};
	struct xs_permissions owner5[1] = { { .id = 5, .perms = XS_PERM_NONE } };
	struct xs_permissions readable[2] = {
		{ .id = 0, .perms = XS_PERM_READ },
		{ .id = 9, .perms = XS_PERM_WRITE },
	};
	bool ok;

	xst_begin("perms");
	h = xst_open(0);
	xst_clean(h, BASE);

	ok = xs_write(h, XBT_NULL, BASE "/p", "x", 1);
	xst_check(ok, "write " BASE "/p -> %s", xst_res(ok));
	expect_perms(h, BASE "/p", "n0");

	ok = xs_set_permissions(h, XBT_NULL, BASE "/p", set3, 3);
	xst_check(ok, "set_permissions " BASE "/p n0 r5 b7 -> %s", xst_res(ok));
	expect_perms(h, BASE "/p", "n0 r5 b7");

	ok = xs_write(h, XBT_NULL, BASE "/p/child", "c", 1);
	xst_check(ok, "write " BASE "/p/child -> %s", xst_res(ok));
	xst_say("a new child's access list:");
	expect_perms(h, BASE "/p/child", "n0 r5 b7");

	ok = xs_set_permissions(h, XBT_NULL, BASE "/p/child", readable, 2);
	xst_check(ok, "set_permissions " BASE "/p/child r0 w9 -> %s", xst_res(ok));
	expect_perms(h, BASE "/p/child", "r0 w9");
	expect_perms(h, BASE "/p", "n0 r5 b7");

	ok = xs_set_permissions(h, XBT_NULL, BASE "/p", owner5, 1);
	xst_check(ok, "set_permissions " BASE "/p owner 5 -> %s", xst_res(ok));
	expect_perms(h, BASE "/p", "n5");
	/* Domain 0 is privileged: still allowed to read and rewrite it. */
	ok = xs_write(h, XBT_NULL, BASE "/p", "y", 1);
	xst_check(ok, "dom0 writes a node owned by 5 -> %s", xst_res(ok));
	expect_perms(h, BASE "/p", "n5");

	errno = 0;
	ok = xs_set_permissions(h, XBT_NULL, BASE "/nothere", set3, 3);
	xst_check(!ok && errno == ENOENT, "set_permissions on a missing node -> %s", xst_res(ok));
	{
		unsigned int num = 0;
		struct xs_permissions *p;

		errno = 0;
		p = xs_get_permissions(h, XBT_NULL, BASE "/nothere", &num);
		xst_check(!p && errno == ENOENT, "get_permissions on a missing node -> %s",
			  p ? "a list" : xst_errname(errno));
		free(p);
	}
	ok = xs_set_permissions(h, XBT_NULL, BASE "/p", set3, 0);
	xst_say("set_permissions with an empty list -> %s", xst_res(ok));
	expect_perms(h, BASE "/p", "n5");

	/* Pure parsing: no connection involved. */
	parse("n0 r5 b7", "n0\0r5\0b7", 3, true);
	parse("w12", "w12", 1, true);
	parse("b4294967295", "b4294967295", 1, true);
	parse("nothing", "", 0, true);
	parse("x5", "x5", 1, false);
	parse("r (no domain)", "r", 1, false);
	parse("r5 q1", "r5\0q1", 2, false);

	ok = xs_rm(h, XBT_NULL, BASE);
	xst_check(ok, "rm " BASE " -> %s", xst_res(ok));
	xs_close(h);
	return xst_end();
}
