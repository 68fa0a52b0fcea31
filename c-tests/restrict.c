/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * libxentoolcore's restriction of a process's handles: after xentoolcore_restrict_all() (what a
 * process that deprivileges itself calls, e.g. QEMU's -xen-domid-restrict) a XenStore handle
 * opened before it must have lost its connection, whatever libxenstore the process uses, while
 * a handle opened afterwards works. Debian's libxenstore links libxentoolcore; ours registers
 * with it when the process has it loaded, as here.
 *
 * libxentoolcore is Debian's, loaded with dlopen from XST_TOOLCORE (set by CMake from
 * XENSTORE_TOOLCORE or the reference root); skipped without it and in the embedded store (no
 * descriptor to restrict).
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#define NODE "/ctest/restrict"

int main(void)
{
	struct xs_handle *h, *later;
	int (*restrict_all)(uint16_t domid);
	unsigned int len;
	void *tc = NULL;
	char *v;
	bool ok;
	int rc, e;

	xst_begin("restrict");
#ifdef XST_TOOLCORE
	tc = dlopen(XST_TOOLCORE, RTLD_NOW | RTLD_GLOBAL);
#endif
	if (!tc)
		xst_skip("no libxentoolcore to load");
	if (xst_embedded())
		xst_skip("the embedded store has no descriptor to restrict");
	restrict_all = (int (*)(uint16_t))dlsym(tc, "xentoolcore_restrict_all");
	if (!restrict_all)
		xst_fatal("libxentoolcore without xentoolcore_restrict_all");

	h = xst_open(0);
	ok = xs_write(h, XBT_NULL, NODE, "before", 6);
	xst_check(ok, "write before restricting -> %s", xst_res(ok));
	rc = restrict_all(1);
	xst_check(rc == 0, "xentoolcore_restrict_all(1) -> %d", rc);

	v = xs_read(h, XBT_NULL, NODE, &len);
	e = errno;
	xst_check(!v, "read on the restricted handle fails -> %s", v ? v : xst_errname(e));
	free(v);
	ok = xs_write(h, XBT_NULL, NODE, "after", 5);
	e = errno;
	xst_check(!ok, "write on it fails -> %s", ok ? "ok" : xst_errname(e));

	later = xst_open(0);
	v = xs_read(later, XBT_NULL, NODE, &len);
	xst_check(v && !strcmp(v, "before"), "a handle opened afterwards works, and the write "
		  "on the restricted one did not happen -> %s", v ? v : xst_errname(errno));
	free(v);
	xst_clean(later, NODE);
	xs_close(later);
	xs_close(h);
	return xst_end();
}
