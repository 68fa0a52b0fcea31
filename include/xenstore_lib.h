/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * libxenstore: helpers that need no connection (permission strings, daemon paths).
 * Declaration-compatible with Xen's xenstore_lib.h.
 */
#ifndef XENSTORE_LIB_H
#define XENSTORE_LIB_H

#include <stddef.h>
#include <stdbool.h>
#include <limits.h>
#include <errno.h>
#include <stdint.h>
#include <xen/io/xs_wire.h>

/* One entry of a node's access list: a domain and what it may do. */
struct xs_permissions
{
	unsigned int id;
	unsigned int perms;	/* XS_PERM_* bits */
#define XS_PERM_NONE		0x00
#define XS_PERM_READ		0x01
#define XS_PERM_WRITE		0x02
	/* Used inside the daemon only. */
#define XS_PERM_ENOENT_OK	0x04
#define XS_PERM_OWNER		0x08
#define XS_PERM_IGNORE		0x10
};

/* Room for the decimal form of an integer of x's type, sign and NUL included. */
#define MAX_STRLEN(x) ((sizeof(x) * CHAR_BIT + CHAR_BIT-1) / 10 * 3 + 2)

/* Where the daemon lives; XENSTORED_RUNDIR and XENSTORED_PATH override. */
const char *xs_daemon_rundir(void);
const char *xs_daemon_socket(void);
const char *xs_daemon_socket_ro(void);

/* write(2) until all len bytes are out; false (errno set) on error. */
bool xs_write_all(int fd, const void *data, unsigned int len);

/* Parse num permission strings ("r0\0w5\0...") into perms; false if malformed. */
bool xs_strings_to_perms(struct xs_permissions *perms, unsigned int num,
			 const char *strings);

#endif /* XENSTORE_LIB_H */
