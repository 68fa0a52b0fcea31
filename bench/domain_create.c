/*
 * domain_create: replays a domain-creation sequence (bench/domain_create.trace, its format is
 * described there) for TOTAL domains, N at a time: N threads, each with its own connection
 * (a toolstack thread per domain being created), each creating domains one after the other.
 * Whatever libxenstore.so.4 the dynamic linker finds is used, so the same binary measures
 * Debian's library and ours.
 *
 *   domain_create TRACE N TOTAL
 *
 * Prints "domains <domains/s> <median ms> <p90 ms> <max ms> <client CPU ms/domain>
 * <daemon CPU ms/domain> <transactions retried per domain>": the latency is that of one
 * domain's whole sequence; CPU times as in clock.h. The nodes are removed afterwards (the trace's cleanup part, not timed).
 */
#define _GNU_SOURCE
#include <xenstore.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"

enum kind { START, COMMIT, MKDIR, WRITE, RM, READ, DIR_, GETPERMS, PERMS, WATCH, UNWATCH,
            WAITFOR, CLEANUP };

static const char *const names[] = { "start", "commit", "mkdir", "write", "rm", "read", "dir",
                                     "getperms", "perms", "watch", "unwatch", "waitfor",
                                     "cleanup" };

struct op {
    enum kind kind;
    char *path; /* with $D / $U still in it */
    char *rest; /* value, token or permission strings; "" if none */
    int line;
};

static struct op *ops;
static int nops, cleanup_at;
static int first_domid = 1000;
static _Atomic long retries; /* transactions that ended in EAGAIN */

static void fail(int line, const char *what, const char *path)
{
    fprintf(stderr, "trace line %d: %s %s: %s\n", line, what, path ? path : "",
            strerror(errno));
    exit(1);
}

static void load(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        fail(0, "open", file);
    char buf[1024];
    int line = 0, cap = 0;
    cleanup_at = -1;
    while (fgets(buf, sizeof(buf), f)) {
        line++;
        buf[strcspn(buf, "\n")] = 0;
        if (!buf[0] || buf[0] == '#')
            continue;
        char *word = strtok(buf, " "), *path = strtok(NULL, " "), *rest = strtok(NULL, "");
        int k;
        for (k = 0; k <= CLEANUP && strcmp(word, names[k]); k++)
            ;
        if (k > CLEANUP || (k > COMMIT && k != CLEANUP && !path)) {
            fprintf(stderr, "trace line %d: cannot parse\n", line);
            exit(1);
        }
        if (k == CLEANUP) {
            cleanup_at = nops;
            continue;
        }
        if (nops == cap)
            ops = realloc(ops, (cap = cap ? 2 * cap : 256) * sizeof(*ops));
        ops[nops++] = (struct op){ k, strdup(path ? path : ""), strdup(rest ? rest : ""), line };
    }
    fclose(f);
    if (cleanup_at < 0)
        cleanup_at = nops;
}

/* `in` with $D and $U replaced for domain `domid`. */
static void expand(char *out, size_t len, const char *in, int domid)
{
    size_t o = 0;
    for (; *in && o + 40 < len; in++) {
        if (in[0] == '$' && in[1] == 'D') {
            o += snprintf(out + o, len - o, "%d", domid);
            in++;
        } else if (in[0] == '$' && in[1] == 'U') {
            o += snprintf(out + o, len - o, "%08x-0000-4000-8000-%012x", domid, domid);
            in++;
        } else {
            out[o++] = *in;
        }
    }
    out[o] = 0;
}

static void set_perms(struct xs_handle *h, xs_transaction_t t, const char *path, char *acl,
                      int line)
{
    struct xs_permissions p[16];
    int n = 0;
    for (char *s = strtok(acl, " "); s && n < 16; s = strtok(NULL, " ")) {
        unsigned int bits = s[0] == 'r' ? XS_PERM_READ : s[0] == 'w' ? XS_PERM_WRITE
                          : s[0] == 'b' ? XS_PERM_READ | XS_PERM_WRITE : XS_PERM_NONE;
        p[n++] = (struct xs_permissions){ .id = atoi(s + 1), .perms = bits };
    }
    if (!xs_set_permissions(h, t, path, p, n))
        fail(line, "perms", path);
}

/* Runs ops[from, to) for `domid` on `h`. */
static void replay(struct xs_handle *h, int domid, int from, int to)
{
    xs_transaction_t t = XBT_NULL;
    int started_at = 0;
    char path[512], rest[512];
    unsigned int len;
    for (int i = from; i < to; i++) {
        struct op *op = &ops[i];
        expand(path, sizeof(path), op->path, domid);
        expand(rest, sizeof(rest), op->rest, domid);
        switch (op->kind) {
        case START:
            t = xs_transaction_start(h);
            if (!t)
                fail(op->line, "start", NULL);
            started_at = i;
            break;
        case COMMIT:
            if (!xs_transaction_end(h, t, false)) {
                if (errno != EAGAIN)
                    fail(op->line, "commit", NULL);
                retries++;
                i = started_at - 1; /* the whole transaction again, as libxl does */
            }
            t = XBT_NULL;
            break;
        case MKDIR:
            if (!xs_mkdir(h, t, path))
                fail(op->line, "mkdir", path);
            break;
        case WRITE:
            if (!xs_write(h, t, path, rest, strlen(rest)))
                fail(op->line, "write", path);
            break;
        case RM:
            if (!xs_rm(h, t, path) && errno != ENOENT)
                fail(op->line, "rm", path);
            break;
        case READ:
            free(xs_read(h, t, path, &len));
            break;
        case DIR_:
            free(xs_directory(h, t, path, &len));
            break;
        case GETPERMS:
            free(xs_get_permissions(h, t, path, &len));
            break;
        case PERMS:
            set_perms(h, t, path, rest, op->line);
            break;
        case WATCH:
            if (!xs_watch(h, path, rest))
                fail(op->line, "watch", path);
            break;
        case UNWATCH:
            if (!xs_unwatch(h, path, rest))
                fail(op->line, "unwatch", path);
            break;
        case WAITFOR:
            for (;;) {
                char *v = xs_read(h, XBT_NULL, path, &len);
                int done = v && !strcmp(v, rest);
                free(v);
                if (done)
                    break;
                char **ev = xs_read_watch(h, &len);
                if (!ev)
                    fail(op->line, "waiting for", path);
                free(ev);
            }
            break;
        case CLEANUP:
            break;
        }
    }
    /* Events the sequence did not wait for (libxl's event loop takes them all). */
    char **ev;
    while ((ev = xs_check_watch(h)))
        free(ev);
}

struct worker {
    pthread_t thr;
    int index, nthreads, total;
    double *latency; /* per domain, indexed by domain number */
};

static void *work(void *p)
{
    struct worker *w = p;
    struct xs_handle *h = xs_open(0);
    if (!h)
        fail(0, "xs_open", NULL);
    for (int d = w->index; d < w->total; d += w->nthreads) {
        double t0 = now();
        replay(h, first_domid + d, 0, cleanup_at);
        w->latency[d] = now() - t0;
    }
    xs_close(h);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: domain_create TRACE N TOTAL\n");
        return 2;
    }
    load(argv[1]);
    int n = atoi(argv[2]), total = atoi(argv[3]);
    if (n < 1 || total < n) {
        fprintf(stderr, "need 1 <= N <= TOTAL\n");
        return 2;
    }
    double *latency = calloc(total, sizeof(double));
    struct worker *ws = calloc(n, sizeof(*ws));
    double t0 = mark();
    for (int i = 0; i < n; i++) {
        ws[i] = (struct worker){ .index = i, .nthreads = n, .total = total, .latency = latency };
        if (pthread_create(&ws[i].thr, NULL, work, &ws[i]))
            fail(0, "pthread_create", NULL);
    }
    for (int i = 0; i < n; i++)
        pthread_join(ws[i].thr, NULL);
    double dt = since(t0);
    struct xs_handle *h = xs_open(0);
    if (!h)
        fail(0, "xs_open", NULL);
    for (int d = 0; d < total; d++)
        replay(h, first_domid + d, cleanup_at, nops);
    xs_close(h);
    qsort(latency, total, sizeof(double), cmp);
    printf("domains %.1f %.3f %.3f %.3f %.3f %.3f %.2f\n", total / dt,
           latency[total / 2] * 1e3, latency[total * 9 / 10] * 1e3, latency[total - 1] * 1e3,
           cpu_self * 1e3 / total, cpu_daemon * 1e3 / total, (double)retries / total);
    return 0;
}
