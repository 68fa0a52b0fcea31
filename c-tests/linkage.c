/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * How the program was linked and what got loaded: xs_* must come from the library that
 * pkg-config pointed at (XST_EXPECTED_LIBDIR), through its SONAME libxenstore.so.4, with the
 * upstream symbol versions.
 */
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/xst.h"

#ifndef XST_EXPECTED_LIBDIR
#error "XST_EXPECTED_LIBDIR must name the directory pkg-config gave for libxenstore"
#endif

int main(void)
{
	static const char *const v40[] = {
		"xs_open", "xs_close", "xs_read", "xs_write", "xs_watch", "xs_check_watch",
		"xs_transaction_start", "xs_daemon_destroy_postfork", "xs_path_is_subpath",
		"xs_strings_to_perms", "xs_write_all", "xs_daemon_socket",
	};
	char real_lib[PATH_MAX], real_dir[PATH_MAX], copy[PATH_MAX];
	Dl_info info;
	bool same;

	xst_begin("linkage");
	if (!dladdr((void *)xs_open, &info) || !info.dli_fname)
		xst_fatal("dladdr(xs_open) found no object");

	snprintf(copy, sizeof(copy), "%s", info.dli_fname);
	xst_check(!strcmp(basename(copy), "libxenstore.so.4"),
		  "xs_open was loaded through the name libxenstore.so.4 (got %s)", basename(copy));
	if (!realpath(info.dli_fname, real_lib) || !realpath(XST_EXPECTED_LIBDIR, real_dir))
		xst_fatal("realpath failed");
	snprintf(copy, sizeof(copy), "%s", real_lib);
	same = strcmp(dirname(copy), real_dir) == 0;
	xst_check(same, "xs_open comes from the library directory pkg-config named: %s",
		  same ? "yes" : "no");
	if (!same)
		fprintf(stderr, "loaded %s, expected a file in %s\n", real_lib, real_dir);

	for (size_t i = 0; i < sizeof(v40) / sizeof(v40[0]); i++) {
		void *p = dlvsym(RTLD_DEFAULT, v40[i], "VERS_4.0");

		xst_check(p != NULL, "%s@VERS_4.0 %s", v40[i], p ? "present" : "missing");
	}
	return xst_end();
}
