/* SPDX-License-Identifier: LGPL-2.1-only */
/*
 * Small helpers shared by the C test programs.
 *
 * Every program prints a transcript: one line per call made and its result, with nothing in
 * it that changes from run to run (no pids, times or temp paths), so that the transcripts made
 * with two builds of libxenstore against the same daemon can be compared line by line. A
 * failed expectation prints "FAIL:" and makes the program exit 1; xst_skip() exits 77, which
 * CTest reports as skipped.
 *
 * Only the main thread prints: worker threads report back through their own structures.
 */
#ifndef XST_H
#define XST_H

#include <stdbool.h>
#include <stdarg.h>
#include <xenstore.h>

/* Exit status CTest maps to "skipped" (SKIP_RETURN_CODE in CMakeLists.txt). */
#define XST_SKIP 77

/* Start the transcript of test `name`; also copied to $XST_TRANSCRIPT_DIR/<name>.txt if set. */
void xst_begin(const char *name);
/* One transcript line. */
void xst_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An expectation: prints "ok: ..." or "FAIL: ...". Returns cond. */
bool xst_check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Abort the test: prints "FAIL: ..." and exits 1 (for states the rest cannot run from). */
void xst_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* The whole test is not applicable here: prints "skipped: ..." and exits XST_SKIP. */
void xst_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/*
 * Lines about behaviour beyond the reference library (e.g. NULL arguments it crashes on) start
 * with "ext ": they are left out of the comparison between libraries, and their checks are not
 * in the count of the summary line (their failures are).
 */
bool xst_ext_check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void xst_ext_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the summary line and return the exit status for main(). */
int xst_end(void);

/* Symbolic name of an errno value ("ENOENT"), or "E<number>". */
const char *xst_errname(int e);
/* "ok" or the errno name, for a boolean result (errno read at call time). */
const char *xst_res(bool ok);
/*
 * Printable form of a value: bytes 0x20..0x7e other than '\\' as they are, others as \xNN;
 * values over 64 bytes are cut to their first 32 and their length. Returns a static buffer
 * reused by the next call with the same slot (0..3).
 */
const char *xst_show(int slot, const void *data, unsigned int len);

/*
 * Whether this run uses our library's embedded store (XENSTORE_EMBEDDED set to anything but
 * "" or "0"): every xs_open() of the process then shares one in-process store, no daemon.
 */
bool xst_embedded(void);

/* xs_open(flags) or xst_fatal(); says where it tried to connect on failure. */
struct xs_handle *xst_open(unsigned long flags);
/* Remove path, ignoring "not there"; fatal on any other failure. */
void xst_clean(struct xs_handle *h, const char *path);

/* Wait up to timeout_ms for fd to poll readable. */
bool xst_readable(int fd, int timeout_ms);

/* Sort an array of strings in place (directory listings come in the daemon's order). */
void xst_sort(char **v, unsigned int n);

#endif /* XST_H */
