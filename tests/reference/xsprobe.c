/*
 * xsprobe - drives libxenstore through calls the command line tools never
 * make (domain management, several connections, transaction conflicts, watch
 * tokens, permissions, error cases) and prints one line per call: what was
 * called and what came back, with errno names.  conformance.sh compares this
 * transcript across libraries and daemons, like the tools' one.
 *
 * Built against Debian's headers and library; at run time LD_LIBRARY_PATH
 * decides which libxenstore.so.4 answers.  Everything it creates lives under
 * PROBE_ROOT (/probe unless built with another) or /local/domain/<id> of the
 * domains it introduces, and is removed at the end.  The output must not
 * depend on timing or on the machine, nor on another xsprobe running at once
 * with another PROBE_ROOT (under real Xen, dom0's and the guests' run at
 * once: a guest's watch under dom0's root would see dom0's changes).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xenstore.h>

#ifndef PROBE_ROOT
#define PROBE_ROOT "/probe"
#endif

static const char *ename(int e)
{
    const char *n = e ? strerrorname_np(e) : "0";
    return n ? n : "E?";
}

static void line(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void section(const char *name)
{
    line("\n## %s", name);
}

/* Prints "what = true" or "what = false (ERRNO)". */
static bool show_bool(const char *what, bool ok)
{
    int e = errno;

    if (ok)
        line("%s = true", what);
    else
        line("%s = false (%s)", what, ename(e));
    return ok;
}

/* Value with escapes for anything unprintable, as "len:text". */
static void show_value(const char *what, const char *val, unsigned int len)
{
    char out[512];
    size_t o = 0;
    unsigned int i;

    if (!val) {
        line("%s = NULL (%s)", what, ename(errno));
        return;
    }
    for (i = 0; i < len && o < sizeof(out) - 8; i++) {
        unsigned char c = (unsigned char)val[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
    }
    out[o] = 0;
    line("%s = %u:\"%s\"%s", what, len, out, i < len ? "..." : "");
    /* The library promises a terminating NUL after the data. */
    if (val[len] != 0)
        line("  (no terminating NUL after the value)");
}

/* For yes/no questions, where errno after "no" means nothing. */
static void show_answer(const char *what, bool yes)
{
    line("%s = %s", what, yes ? "yes" : "no");
}

static void show_read(struct xs_handle *h, xs_transaction_t t, const char *path)
{
    char what[300];
    unsigned int len = 0;
    char *v;

    errno = 0;
    v = xs_read(h, t, path, &len);
    snprintf(what, sizeof(what), "read(%s%s)", path, t ? ", in transaction" : "");
    show_value(what, v, len);
    free(v);
}

static void show_dir(struct xs_handle *h, xs_transaction_t t, const char *path)
{
    unsigned int num = 0, i;
    char **d = xs_directory(h, t, path, &num);
    char buf[1024];
    size_t o = 0;

    if (!d) {
        line("directory(%s) = NULL (%s)", path, ename(errno));
        return;
    }
    buf[0] = 0;
    for (i = 0; i < num && o < sizeof(buf) - 64; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? " " : "", d[i]);
    line("directory(%s) = %u [%s]", path, num, buf);
    free(d);
}

/* Same letters as the tools use: n, r, w, b (read and write), then the id. */
static void perm_text(const struct xs_permissions *p, char *buf, size_t len)
{
    static const char letter[] = { 'n', 'r', 'w', 'b' };
    unsigned int bits = p->perms & (XS_PERM_READ | XS_PERM_WRITE);
    unsigned int other = p->perms & ~(unsigned int)(XS_PERM_READ | XS_PERM_WRITE);

    if (other)
        snprintf(buf, len, "%c%u+0x%x", letter[bits], p->id, other);
    else
        snprintf(buf, len, "%c%u", letter[bits], p->id);
}

static void show_perms(struct xs_handle *h, const char *path)
{
    unsigned int num = 0, i;
    struct xs_permissions *p = xs_get_permissions(h, XBT_NULL, path, &num);
    char buf[512], one[32];
    size_t o = 0;

    if (!p) {
        line("get_permissions(%s) = NULL (%s)", path, ename(errno));
        return;
    }
    buf[0] = 0;
    for (i = 0; i < num && o < sizeof(buf) - 40; i++) {
        perm_text(&p[i], one, sizeof(one));
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? "," : "", one);
    }
    line("get_permissions(%s) = %s", path, buf);
    free(p);
}

static bool write_str(struct xs_handle *h, xs_transaction_t t, const char *path,
                      const char *val)
{
    char what[300];

    snprintf(what, sizeof(what), "write(%s, \"%s\"%s)", path, val,
             t ? ", in transaction" : "");
    return show_bool(what, xs_write(h, t, path, val, (unsigned int)strlen(val)));
}

/* Waits up to ms for a watch event on h and prints it; "none" otherwise. */
static void show_event(struct xs_handle *h, const char *who, int ms)
{
    struct pollfd pfd = { .fd = xs_fileno(h), .events = POLLIN };
    unsigned int num = 0;
    char **ev;

    ev = xs_check_watch(h);
    if (!ev) {
        if (poll(&pfd, 1, ms) <= 0) {
            line("%s event: none", who);
            return;
        }
        ev = xs_read_watch(h, &num);
    }
    if (!ev) {
        line("%s event: NULL (%s)", who, ename(errno));
        return;
    }
    line("%s event: path=%s token=%s", who, ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
    free(ev);
}

/* Expected silence is checked for this long; a late event would show up in
 * the next check instead, so a slow machine cannot turn a pass into a fail. */
#define QUIET_MS 150
#define EVENT_MS 5000

static void basics(struct xs_handle *h)
{
    static const char nul_value[] = { 'a', 0, 'b', 0 };
    char big[4100];
    char what[64];

    section("basic calls");
    show_bool("mkdir(" PROBE_ROOT ")", xs_mkdir(h, XBT_NULL, PROBE_ROOT));
    show_bool("mkdir(" PROBE_ROOT ") again", xs_mkdir(h, XBT_NULL, PROBE_ROOT));
    show_read(h, XBT_NULL, PROBE_ROOT);
    write_str(h, XBT_NULL, PROBE_ROOT "/a", "1");
    show_bool("write(" PROBE_ROOT "/nul, 3 bytes with NUL)",
              xs_write(h, XBT_NULL, PROBE_ROOT "/nul", nul_value, 3));
    show_read(h, XBT_NULL, PROBE_ROOT "/nul");
    show_bool("write(" PROBE_ROOT "/empty, 0 bytes)", xs_write(h, XBT_NULL, PROBE_ROOT "/empty", "", 0));
    show_read(h, XBT_NULL, PROBE_ROOT "/empty");
    show_dir(h, XBT_NULL, PROBE_ROOT);
    show_bool("mkdir(" PROBE_ROOT "/a) over a value", xs_mkdir(h, XBT_NULL, PROBE_ROOT "/a"));
    show_read(h, XBT_NULL, PROBE_ROOT "/a");

    section("errors");
    show_read(h, XBT_NULL, PROBE_ROOT "/missing");
    show_read(h, XBT_NULL, PROBE_ROOT "/missing/deeper");
    show_read(h, XBT_NULL, "no-such-relative-node");
    show_dir(h, XBT_NULL, PROBE_ROOT "/missing");
    show_perms(h, PROBE_ROOT "/missing");
    write_str(h, XBT_NULL, PROBE_ROOT "/bad name", "x");
    write_str(h, XBT_NULL, PROBE_ROOT "/bad//name", "x");
    write_str(h, XBT_NULL, PROBE_ROOT "/trailing/", "x");
    write_str(h, XBT_NULL, "", "x");
    show_bool("mkdir(" PROBE_ROOT "/bad name)", xs_mkdir(h, XBT_NULL, PROBE_ROOT "/bad name"));
    show_bool("rm(" PROBE_ROOT "/missing)", xs_rm(h, XBT_NULL, PROBE_ROOT "/missing"));
    show_bool("rm(" PROBE_ROOT "/missing/deeper)", xs_rm(h, XBT_NULL, PROBE_ROOT "/missing/deeper"));
    memset(big, 'v', sizeof(big));
    for (unsigned int n = 2048; n <= 4100; n += 1024) {
        unsigned int len = n > sizeof(big) ? (unsigned int)sizeof(big) : n;
        snprintf(what, sizeof(what), "write(" PROBE_ROOT "/big, %u bytes)", len);
        show_bool(what, xs_write(h, XBT_NULL, PROBE_ROOT "/big", big, len));
    }
    show_bool("write(" PROBE_ROOT "/big, 4100 bytes)", xs_write(h, XBT_NULL, PROBE_ROOT "/big", big, 4100));
    show_read(h, 12345, PROBE_ROOT "/a");
    show_bool("transaction_end(12345, commit)", xs_transaction_end(h, 12345, false));
    show_bool("unwatch(" PROBE_ROOT ", never-set)", xs_unwatch(h, PROBE_ROOT, "never-set"));
    show_bool("watch(" PROBE_ROOT "/bad name)", xs_watch(h, PROBE_ROOT "/bad name", "t"));
}

static void permissions(struct xs_handle *h)
{
    struct xs_permissions p[4];
    char spec[] = "n0\0r5\0w7\0b9";
    char what[64];

    section("permissions");
    write_str(h, XBT_NULL, PROBE_ROOT "/perm", "p");
    show_perms(h, PROBE_ROOT "/perm");
    show_bool("strings_to_perms(n0 r5 w7 b9)", xs_strings_to_perms(p, 4, spec));
    show_bool("set_permissions(" PROBE_ROOT "/perm, n0 r5 w7 b9)",
              xs_set_permissions(h, XBT_NULL, PROBE_ROOT "/perm", p, 4));
    show_perms(h, PROBE_ROOT "/perm");
    write_str(h, XBT_NULL, PROBE_ROOT "/perm/child", "c");
    show_perms(h, PROBE_ROOT "/perm/child");
    p[0].id = 3;
    p[0].perms = XS_PERM_READ;
    show_bool("set_permissions(" PROBE_ROOT "/perm, r3)",
              xs_set_permissions(h, XBT_NULL, PROBE_ROOT "/perm", p, 1));
    show_perms(h, PROBE_ROOT "/perm");
    show_bool("set_permissions(" PROBE_ROOT "/perm, none)",
              xs_set_permissions(h, XBT_NULL, PROBE_ROOT "/perm", p, 0));
    show_perms(h, PROBE_ROOT "/perm");
    show_bool("set_permissions(" PROBE_ROOT "/missing, r3)",
              xs_set_permissions(h, XBT_NULL, PROBE_ROOT "/missing", p, 1));
    p[0].id = 0;
    p[0].perms = XS_PERM_NONE;
    for (unsigned int n = 1; n <= 4; n++) {
        p[n - 1].id = n - 1;
        p[n - 1].perms = XS_PERM_READ;
    }
    p[0].perms = XS_PERM_NONE;
    snprintf(what, sizeof(what), "set_permissions(" PROBE_ROOT "/perm, n0 r1 r2 r3)");
    show_bool(what, xs_set_permissions(h, XBT_NULL, PROBE_ROOT "/perm", p, 4));
    show_perms(h, PROBE_ROOT "/perm");
}

static void transactions(struct xs_handle *h1, struct xs_handle *h2)
{
    xs_transaction_t t;

    section("transactions");
    write_str(h1, XBT_NULL, PROBE_ROOT "/tx", "0");

    t = xs_transaction_start(h1);
    line("transaction_start = %s", t ? "id" : "0");
    write_str(h1, t, PROBE_ROOT "/tx", "inside");
    show_read(h1, t, PROBE_ROOT "/tx");
    show_read(h2, XBT_NULL, PROBE_ROOT "/tx");
    write_str(h1, t, PROBE_ROOT "/tx-new", "new");
    show_dir(h1, t, PROBE_ROOT);
    show_bool("transaction_end(commit)", xs_transaction_end(h1, t, false));
    show_read(h2, XBT_NULL, PROBE_ROOT "/tx");
    show_read(h2, XBT_NULL, PROBE_ROOT "/tx-new");

    t = xs_transaction_start(h1);
    write_str(h1, t, PROBE_ROOT "/tx", "aborted");
    show_bool("transaction_end(abort)", xs_transaction_end(h1, t, true));
    show_read(h1, XBT_NULL, PROBE_ROOT "/tx");

    t = xs_transaction_start(h1);
    show_read(h1, t, PROBE_ROOT "/tx");
    write_str(h2, XBT_NULL, PROBE_ROOT "/tx", "other");
    write_str(h1, t, PROBE_ROOT "/tx", "mine");
    show_bool("transaction_end(commit) after a conflicting write",
              xs_transaction_end(h1, t, false));
    show_read(h1, XBT_NULL, PROBE_ROOT "/tx");

    t = xs_transaction_start(h1);
    show_read(h1, t, PROBE_ROOT "/tx");
    write_str(h2, XBT_NULL, PROBE_ROOT "/tx-unrelated", "x");
    write_str(h1, t, PROBE_ROOT "/tx", "mine");
    show_bool("transaction_end(commit) after an unrelated write",
              xs_transaction_end(h1, t, false));
    show_read(h1, XBT_NULL, PROBE_ROOT "/tx");

    t = xs_transaction_start(h1);
    show_bool("rm(" PROBE_ROOT "/tx, in transaction)", xs_rm(h1, t, PROBE_ROOT "/tx"));
    show_read(h1, t, PROBE_ROOT "/tx");
    show_read(h2, XBT_NULL, PROBE_ROOT "/tx");
    show_bool("transaction_end(commit)", xs_transaction_end(h1, t, false));
    show_read(h2, XBT_NULL, PROBE_ROOT "/tx");
    show_bool("transaction_end(same id again)", xs_transaction_end(h1, t, false));
}

static void watches(struct xs_handle *h1, struct xs_handle *h2)
{
    section("watches");
    show_bool("watch(" PROBE_ROOT "/w, tok1)", xs_watch(h2, PROBE_ROOT "/w", "tok1"));
    show_event(h2, "h2", EVENT_MS);
    show_event(h2, "h2", QUIET_MS);
    write_str(h1, XBT_NULL, PROBE_ROOT "/w", "1");
    show_event(h2, "h2", EVENT_MS);
    write_str(h1, XBT_NULL, PROBE_ROOT "/w/child/grandchild", "2");
    show_event(h2, "h2", EVENT_MS);
    show_event(h2, "h2", QUIET_MS);
    write_str(h1, XBT_NULL, PROBE_ROOT "/wx", "not below " PROBE_ROOT "/w");
    show_event(h2, "h2", QUIET_MS);

    show_bool("watch(" PROBE_ROOT "/w, tok2)", xs_watch(h2, PROBE_ROOT "/w", "tok2"));
    show_event(h2, "h2", EVENT_MS);
    show_bool("watch(" PROBE_ROOT "/w, tok2) again", xs_watch(h2, PROBE_ROOT "/w", "tok2"));
    write_str(h1, XBT_NULL, PROBE_ROOT "/w", "3");
    show_event(h2, "h2", EVENT_MS);
    show_event(h2, "h2", EVENT_MS);
    show_event(h2, "h2", QUIET_MS);

    show_bool("unwatch(" PROBE_ROOT "/w, tok1)", xs_unwatch(h2, PROBE_ROOT "/w", "tok1"));
    show_bool("unwatch(" PROBE_ROOT "/w, tok1) again", xs_unwatch(h2, PROBE_ROOT "/w", "tok1"));
    show_bool("rm(" PROBE_ROOT "/w)", xs_rm(h1, XBT_NULL, PROBE_ROOT "/w"));
    show_event(h2, "h2", EVENT_MS);
    show_event(h2, "h2", QUIET_MS);
    show_bool("unwatch(" PROBE_ROOT "/w, tok2)", xs_unwatch(h2, PROBE_ROOT "/w", "tok2"));
    write_str(h1, XBT_NULL, PROBE_ROOT "/w", "4");
    show_event(h2, "h2", QUIET_MS);

    show_bool("watch(probe-rel, rel)", xs_watch(h2, "probe-rel", "rel"));
    show_event(h2, "h2", EVENT_MS);
    write_str(h1, XBT_NULL, "probe-rel/x", "5");
    show_event(h2, "h2", EVENT_MS);
    show_bool("unwatch(probe-rel, rel)", xs_unwatch(h2, "probe-rel", "rel"));
    show_bool("rm(probe-rel)", xs_rm(h1, XBT_NULL, "probe-rel"));

    /* A watch fires for changes made inside a transaction only at commit. */
    show_bool("watch(" PROBE_ROOT "/tw, tw)", xs_watch(h2, PROBE_ROOT "/tw", "tw"));
    show_event(h2, "h2", EVENT_MS);
    {
        xs_transaction_t t = xs_transaction_start(h1);
        write_str(h1, t, PROBE_ROOT "/tw", "in transaction");
        show_event(h2, "h2", QUIET_MS);
        show_bool("transaction_end(commit)", xs_transaction_end(h1, t, false));
        show_event(h2, "h2", EVENT_MS);
        t = xs_transaction_start(h1);
        write_str(h1, t, PROBE_ROOT "/tw", "aborted");
        show_bool("transaction_end(abort)", xs_transaction_end(h1, t, true));
        show_event(h2, "h2", QUIET_MS);
    }
    show_bool("unwatch(" PROBE_ROOT "/tw, tw)", xs_unwatch(h2, PROBE_ROOT "/tw", "tw"));

    /* Permission changes fire watches too. */
    show_bool("watch(" PROBE_ROOT "/perm, perm)", xs_watch(h2, PROBE_ROOT "/perm", "perm"));
    show_event(h2, "h2", EVENT_MS);
    {
        struct xs_permissions p = { .id = 0, .perms = XS_PERM_NONE };
        show_bool("set_permissions(" PROBE_ROOT "/perm, n0)",
                  xs_set_permissions(h1, XBT_NULL, PROBE_ROOT "/perm", &p, 1));
    }
    show_event(h2, "h2", EVENT_MS);
    show_bool("unwatch(" PROBE_ROOT "/perm, perm)", xs_unwatch(h2, PROBE_ROOT "/perm", "perm"));
}

static void domains(struct xs_handle *h1, struct xs_handle *h2)
{
    char *s;

    section("domains");
    show_bool("watch(@introduceDomain, intro)", xs_watch(h2, "@introduceDomain", "intro"));
    show_event(h2, "h2", EVENT_MS);
    show_bool("watch(@releaseDomain, release)", xs_watch(h2, "@releaseDomain", "release"));
    show_event(h2, "h2", EVENT_MS);

    show_answer("is_domain_introduced(0)", xs_is_domain_introduced(h1, 0));
    show_answer("is_domain_introduced(5)", xs_is_domain_introduced(h1, 5));
    s = xs_get_domain_path(h1, 5);
    line("get_domain_path(5) = %s", s ? s : ename(errno));
    free(s);
    s = xs_get_domain_path(h1, 0);
    line("get_domain_path(0) = %s", s ? s : ename(errno));
    free(s);

    show_bool("introduce_domain(5, mfn 0x1234, port 7)",
              xs_introduce_domain(h1, 5, 0x1234, 7));
    show_event(h2, "h2", EVENT_MS);
    show_event(h2, "h2", QUIET_MS);
    show_answer("is_domain_introduced(5)", xs_is_domain_introduced(h1, 5));
    show_bool("introduce_domain(5, same again)", xs_introduce_domain(h1, 5, 0x1234, 7));
    show_event(h2, "h2", QUIET_MS);
    show_bool("resume_domain(5)", xs_resume_domain(h1, 5));
    show_bool("resume_domain(6) (not introduced)", xs_resume_domain(h1, 6));
    show_bool("set_target(5, 6) (target not introduced)", xs_set_target(h1, 5, 6));
    show_bool("introduce_domain(6, mfn 0x2345, port 8)",
              xs_introduce_domain(h1, 6, 0x2345, 8));
    show_event(h2, "h2", EVENT_MS);
    show_bool("set_target(5, 6)", xs_set_target(h1, 5, 6));

    write_str(h1, XBT_NULL, "/local/domain/5/probe", "owned by 5");
    {
        struct xs_permissions p = { .id = 5, .perms = XS_PERM_NONE };
        show_bool("set_permissions(/local/domain/5, n5)",
                  xs_set_permissions(h1, XBT_NULL, "/local/domain/5", &p, 1));
        show_bool("set_permissions(/local/domain/5/probe, n5)",
                  xs_set_permissions(h1, XBT_NULL, "/local/domain/5/probe", &p, 1));
    }

    show_bool("release_domain(6)", xs_release_domain(h1, 6));
    show_event(h2, "h2", EVENT_MS);
    show_bool("release_domain(5)", xs_release_domain(h1, 5));
    show_event(h2, "h2", EVENT_MS);
    show_event(h2, "h2", QUIET_MS);
    show_answer("is_domain_introduced(5)", xs_is_domain_introduced(h1, 5));
    show_bool("release_domain(5) again", xs_release_domain(h1, 5));
    show_read(h1, XBT_NULL, "/local/domain/5/probe");
    show_bool("release_domain(0)", xs_release_domain(h1, 0));
    show_answer("is_domain_introduced(0)", xs_is_domain_introduced(h1, 0));
    xs_rm(h1, XBT_NULL, "/local/domain/5");
    xs_rm(h1, XBT_NULL, "/local/domain/6");
    show_bool("unwatch(@introduceDomain, intro)", xs_unwatch(h2, "@introduceDomain", "intro"));
    show_bool("unwatch(@releaseDomain, release)", xs_unwatch(h2, "@releaseDomain", "release"));
}

static void misc(struct xs_handle *h)
{
    static const struct { const char *parent, *child; } sub[] = {
        { "/a", "/a" }, { "/a", "/a/b" }, { "/a", "/ab" }, { "/a/", "/a/b" },
        { "/", "/a" }, { "/a/b", "/a" },
    };
    struct xs_handle *ro;
    char *s;
    unsigned int len;

    section("library helpers");
    for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++)
        line("path_is_subpath(%s, %s) = %s", sub[i].parent, sub[i].child,
             xs_path_is_subpath(sub[i].parent, sub[i].child) ? "true" : "false");

    section("read-only open");
    show_read(h, XBT_NULL, PROBE_ROOT "/a");
    ro = xs_open(XS_OPEN_READONLY);
    line("open(XS_OPEN_READONLY) = %s", ro ? "handle" : ename(errno));
    if (ro) {
        show_read(ro, XBT_NULL, PROBE_ROOT "/a");
        write_str(ro, XBT_NULL, PROBE_ROOT "/ro", "written through a read-only handle");
        xs_close(ro);
        show_read(h, XBT_NULL, PROBE_ROOT "/ro");
    }

    section("control");
    s = xs_control_command(h, "check", "", 0);
    line("control_command(check) = %s", s ? s : ename(errno));
    free(s);
    s = xs_control_command(h, "print", "probe-marker", strlen("probe-marker") + 1);
    line("control_command(print) = %s", s ? s : ename(errno));
    free(s);

    section("cleanup");
    show_bool("rm(" PROBE_ROOT ")", xs_rm(h, XBT_NULL, PROBE_ROOT));
    s = xs_read(h, XBT_NULL, PROBE_ROOT, &len);
    line("read(" PROBE_ROOT ") = %s", s ? "still there" : ename(errno));
    free(s);
    /* Last, as a daemon that allows it empties the whole store. */
    show_bool("rm(/)", xs_rm(h, XBT_NULL, "/"));
    show_dir(h, XBT_NULL, "/");
}

int main(void)
{
    struct xs_handle *h1, *h2;

    h1 = xs_open(0);
    h2 = xs_open(0);
    if (!h1 || !h2) {
        printf("xs_open failed: %s\n", ename(errno));
        return 2;
    }
    basics(h1);
    permissions(h1);
    transactions(h1, h2);
    watches(h1, h2);
    domains(h1, h2);
    misc(h1);
    xs_close(h2);
    xs_close(h1);
    return 0;
}
