/* SPDX-License-Identifier: LGPL-2.1-only */
/* Transcript and expectation helpers for the C test programs (see xst.h). */
#include "xst.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *copy;          /* transcript file, or NULL */
static const char *test_name = "?";
static unsigned int checks, failures;

static void emit(const char *prefix, const char *fmt, va_list ap)
{
	char line[8192];

	vsnprintf(line, sizeof(line), fmt, ap);
	printf("%s%s\n", prefix, line);
	fflush(stdout);
	if (copy) {
		fprintf(copy, "%s%s\n", prefix, line);
		fflush(copy);
	}
}

void xst_begin(const char *name)
{
	const char *dir = getenv("XST_TRANSCRIPT_DIR");

	test_name = name;
	if (dir && *dir) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s.txt", dir, name);
		copy = fopen(path, "w");
		if (!copy)
			fprintf(stderr, "%s: cannot write transcript %s: %s\n", name, path,
				strerror(errno));
	}
	xst_say("== %s ==", name);
}

void xst_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit("", fmt, ap);
	va_end(ap);
}

bool xst_check(bool cond, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (!cond)
		failures++;
	va_start(ap, fmt);
	emit(cond ? "ok: " : "FAIL: ", fmt, ap);
	va_end(ap);
	return cond;
}

bool xst_ext_check(bool cond, const char *fmt, ...)
{
	va_list ap;

	if (!cond)
		failures++;
	va_start(ap, fmt);
	emit(cond ? "ext ok: " : "ext FAIL: ", fmt, ap);
	va_end(ap);
	return cond;
}

void xst_ext_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit("ext ", fmt, ap);
	va_end(ap);
}

void xst_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit("FAIL: ", fmt, ap);
	va_end(ap);
	xst_say("result: %s aborted after %u checks", test_name, checks);
	exit(1);
}

void xst_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit("skipped: ", fmt, ap);
	va_end(ap);
	exit(XST_SKIP);
}

int xst_end(void)
{
	xst_say("result: %s %u checks, %u failed", test_name, checks, failures);
	if (copy)
		fclose(copy);
	copy = NULL;
	return failures ? 1 : 0;
}

const char *xst_errname(int e)
{
	static char other[32];

	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EIO: return "EIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case EROFS: return "EROFS";
	case EPIPE: return "EPIPE";
	case ERANGE: return "ERANGE";
	case ENOSYS: return "ENOSYS";
	case ENOTEMPTY: return "ENOTEMPTY";
	case ENODATA: return "ENODATA";
	case ENOTSUP: return "ENOTSUP";
	case EISCONN: return "EISCONN";
	case ECONNRESET: return "ECONNRESET";
	case EDQUOT: return "EDQUOT";
	case ECONNREFUSED: return "ECONNREFUSED";
	default:
		snprintf(other, sizeof(other), "E%d", e);
		return other;
	}
}

const char *xst_res(bool ok)
{
	return ok ? "ok" : xst_errname(errno);
}

const char *xst_show(int slot, const void *data, unsigned int len)
{
	static char buf[4][256];
	const unsigned char *p = data;
	char *out = buf[slot & 3];
	size_t o = 0;

	unsigned int shown = len > 64 ? 32 : len;

	if (!data)
		return "(null)";
	for (unsigned int i = 0; i < shown; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			out[o++] = p[i];
		else
			o += snprintf(out + o, 5, "\\x%02x", p[i]);
	}
	if (shown < len)
		o += snprintf(out + o, 48, "...(%u bytes)", len);
	out[o] = 0;
	return out;
}

bool xst_embedded(void)
{
	const char *v = getenv("XENSTORE_EMBEDDED");

	return v && *v && strcmp(v, "0") != 0;
}

struct xs_handle *xst_open(unsigned long flags)
{
	struct xs_handle *h = xs_open(flags);

	if (!h) {
		int e = errno;
		const char *where = getenv("XENSTORED_PATH");

		fprintf(stderr, "xs_open failed (XENSTORED_PATH=%s): %s\n",
			where ? where : "(unset)", strerror(e));
		xst_fatal("xs_open(%#lx): %s", flags, xst_errname(e));
	}
	return h;
}

void xst_clean(struct xs_handle *h, const char *path)
{
	if (!xs_rm(h, XBT_NULL, path) && errno != ENOENT)
		xst_fatal("cleaning %s: %s", path, xst_errname(errno));
}

bool xst_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	return n == 1 && (p.revents & POLLIN);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void xst_sort(char **v, unsigned int n)
{
	qsort(v, n, sizeof(*v), cmp_str);
}
