/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * This library's own extension: XenStore in-process.
 *
 * With XENSTORE_EMBEDDED=1 in the environment (any value but "" or "0"), xs_open() connects
 * to one in-process store shared by every handle of the process (privileged, as domain 0),
 * with no daemon, whatever XENSTORED_PATH says.
 */
#ifndef XENSTORE_EMBEDDED_H
#define XENSTORE_EMBEDDED_H

#include <xenstore.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An unprivileged connection acting as domain domid, whose every message crosses that
 * domain's ring page, as a guest's would: relative paths are under /local/domain/<domid>,
 * permissions and quotas apply. The domain must have been introduced with
 * xs_introduce_domain() on the embedded store; otherwise NULL with errno ENOENT (also when
 * XENSTORE_EMBEDDED is not set: there is no embedded store then). Domain 0: NULL, EINVAL.
 * Once the domain is released its handles fail (EBADF; xs_read_watch returns NULL). Close it
 * with xs_close().
 */
struct xs_handle *xs_embedded_open_domain(unsigned int domid);

#ifdef __cplusplus
}
#endif

#endif /* XENSTORE_EMBEDDED_H */
