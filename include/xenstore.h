/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * libxenstore: the client library for XenStore.
 *
 * Declaration-compatible with Xen's xenstore.h: same functions, macros and types. Unless stated
 * otherwise a function returns false or NULL on failure and sets errno. Every pointer returned
 * is one malloc'd block: release it with free().
 */
#ifndef XENSTORE_H
#define XENSTORE_H

#include <xenstore_lib.h>

#define XBT_NULL 0

/* Accepted for compatibility; they change nothing. */
#define XS_OPEN_READONLY	(1UL<<0)
#define XS_OPEN_SOCKETONLY      (1UL<<1)

/*
 * With XS_UNWATCH_FILTER, once xs_unwatch() returns no event for that (token, path or
 * subpath) is handed out any more, queued ones included. Without it, stale events may still
 * arrive. The filter assumes a token is not shared by a path and one of its subpaths.
 */
#define XS_UNWATCH_FILTER     (1UL<<2)

struct xs_handle;
typedef uint32_t xs_transaction_t;

/* Limits: see XENSTORE_*_MAX in xen/io/xs_wire.h. */

/*
 * Connect: the daemon's socket first, then the xenbus device. flags take XS_OPEN_* bits.
 * A handle may be shared by any number of threads.
 */
struct xs_handle *xs_open(unsigned long flags);
/* Disconnect and free everything; NULL is fine. */
void xs_close(struct xs_handle *xsh /* NULL ok */);

/* Old names for xs_open(0) and xs_close(). */
struct xs_handle *xs_daemon_open(void);
struct xs_handle *xs_domain_open(void);
struct xs_handle *xs_daemon_open_readonly(void);
void xs_daemon_close(struct xs_handle *);

/* In a forked child: drop the parent's handle without touching the connection. */
void xs_daemon_destroy_postfork(struct xs_handle *);

/* Children of path; *num gets their count. */
char **xs_directory(struct xs_handle *h, xs_transaction_t t,
		    const char *path, unsigned int *num);

/* Value of path, NUL-terminated; *len (if not NULL) gets its length without the NUL. */
void *xs_read(struct xs_handle *h, xs_transaction_t t,
	      const char *path, unsigned int *len);

/* Set the value of path, creating it (and missing parents). */
bool xs_write(struct xs_handle *h, xs_transaction_t t,
	      const char *path, const void *data, unsigned int len);

/* Create path with an empty value; succeeds if it exists already. */
bool xs_mkdir(struct xs_handle *h, xs_transaction_t t,
	      const char *path);

/* Remove path and everything under it. */
bool xs_rm(struct xs_handle *h, xs_transaction_t t,
	   const char *path);

/* Always false: kept so the ABI stays whole. */
bool xs_restrict(struct xs_handle *h, unsigned domid);

/* Access list of path: element 0 is the owner and the default for other domains. */
struct xs_permissions *xs_get_permissions(struct xs_handle *h,
					  xs_transaction_t t,
					  const char *path, unsigned int *num);

/* Replace the access list of path (same layout as above). */
bool xs_set_permissions(struct xs_handle *h, xs_transaction_t t,
			const char *path, struct xs_permissions *perms,
			unsigned int num_perms);

/* Watch path and everything below it; events carry token. */
bool xs_watch(struct xs_handle *h, const char *path, const char *token);

/*
 * As xs_watch(), but only depth levels below path (0: path itself). Needs
 * XENSTORE_SERVER_FEATURE_WATCHDEPTH from xs_get_features_supported().
 */
bool xs_watch_depth(struct xs_handle *h, const char *path, const char *token,
		    unsigned int depth);

/* xs_watch_depth() where the server supports it, else xs_watch(). Not for special watches. */
bool xs_watch_try_depth(struct xs_handle *h, const char *path,
			const char *token, unsigned int depth);

/* A descriptor that polls readable while watch events are waiting. */
int xs_fileno(struct xs_handle *h);

/*
 * Next pending event without blocking: ret[XS_WATCH_PATH], ret[XS_WATCH_TOKEN], one block to
 * free(). NULL with errno EAGAIN when none is waiting. Call until EAGAIN after xs_fileno()
 * polls readable.
 */
char **xs_check_watch(struct xs_handle *h);

/* Next event, blocking until one arrives; *num gets the string count. */
char **xs_read_watch(struct xs_handle *h, unsigned int *num);

/* Remove a watch. */
bool xs_unwatch(struct xs_handle *h, const char *path, const char *token);

/* Start a transaction; XBT_NULL on failure. */
xs_transaction_t xs_transaction_start(struct xs_handle *h);

/* Commit (abort false) or discard a transaction; errno EAGAIN means retry it. */
bool xs_transaction_end(struct xs_handle *h, xs_transaction_t t,
			bool abort);

/* Tell the store about a domain's ring page and event channel. */
bool xs_introduce_domain(struct xs_handle *h,
			 unsigned int domid,
			 unsigned long mfn,
			 unsigned int eventchn);

/* Let domid act on target's nodes as target. */
bool xs_set_target(struct xs_handle *h,
		   unsigned int domid,
		   unsigned int target);

/* Clear the domain's shutdown state. */
bool xs_resume_domain(struct xs_handle *h, unsigned int domid);

/* Forget a domain; fires @releaseDomain. */
bool xs_release_domain(struct xs_handle *h, unsigned int domid);

/* Home path of a domain ("/local/domain/N"). */
char *xs_get_domain_path(struct xs_handle *h, unsigned int domid);

/* child equals parent or lies below it, by string comparison. Cannot fail. */
bool xs_path_is_subpath(const char *parent, const char *child);

/* Whether the domain has been introduced. */
bool xs_is_domain_introduced(struct xs_handle *h, unsigned int domid);

/* XENSTORE_SERVER_FEATURE_* bits the server supports. */
bool xs_get_features_supported(struct xs_handle *h, unsigned int *features);

/* Feature bits of one domain. */
bool xs_get_features_domain(struct xs_handle *h, unsigned int domid,
			    unsigned int *features);

/* Set the feature bits of one domain. */
bool xs_set_features_domain(struct xs_handle *h, unsigned int domid,
			    unsigned int features);

/* Names of the quotas the server knows; one block to free(). */
const char **xs_get_quota_names(struct xs_handle *h, unsigned int *num);

/* Global quota by name. */
bool xs_get_global_quota(struct xs_handle *h, const char *quota,
			 unsigned int *value);
bool xs_set_global_quota(struct xs_handle *h, const char *quota,
			 unsigned int value);

/* One domain's quota by name. */
bool xs_get_domain_quota(struct xs_handle *h, unsigned int domid,
			 const char *quota, unsigned int *value);
bool xs_set_domain_quota(struct xs_handle *h, unsigned int domid,
			 const char *quota, unsigned int value);

/* Send a CONTROL command with data; returns the reply. */
char *xs_control_command(struct xs_handle *h, const char *cmd,
			 void *data, unsigned int len);
/* Old name of xs_control_command(). */
char *xs_debug_command(struct xs_handle *h, const char *cmd,
		       void *data, unsigned int len);

/* The suspend event channel port a domain published, or -1. */
int xs_suspend_evtchn_port(int domid);

#endif /* XENSTORE_H */
