/*
 * domain_create: replays a domain-creation sequence (bench/domain_create.trace, its format is
 * described there) for TOTAL domains, N at a time: N workers (a toolstack each, creating
 * domains one after the other), each domain's parts (`conn`: xl, xenconsoled, the kernel's
 * backend watch ...) replayed at once by threads of their own, each on its own connection.
 * Whatever libxenstore.so.4 the dynamic linker finds is used, so the same binary measures
 * Debian's library and ours.
 *
 *   domain_create TRACE N TOTAL
 *
 * Prints "domains <domains/s> <median ms> <p90 ms> <max ms> <client CPU ms/domain>
 * <daemon CPU ms/domain> <transactions retried per domain>": the latency is that of one
 * domain's whole sequence, from its first request to the last of its parts; CPU times as in
 * clock.h. The nodes are removed afterwards (the trace's cleanup part, not timed).
 */
#define _GNU_SOURCE
#include <xenstore.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"

enum kind { START, COMMIT, ABORT, MKDIR, WRITE, RM, READ, DIR_, GETPERMS, GETDOMAINPATH, PERMS,
            WATCH, UNWATCH, PREWATCH, WAITFOR, SIGNAL, AWAIT, CONN, CLEANUP };

static const char *const names[] = { "start", "commit", "abort", "mkdir", "write", "rm", "read",
                                     "dir", "getperms", "getdomainpath", "perms", "watch",
                                     "unwatch", "prewatch", "waitfor", "signal", "await", "conn",
                                     "cleanup" };

struct op {
    enum kind kind;
    char *path; /* with $D / $U still in it; a signal's name */
    char *rest; /* value, token or permission strings; "" if none */
    int line;
};

/* One connection's part: ops[from, to). */
struct part {
    int from, to;
    int fresh; /* `new`: a connection of its own for each domain, opened in the timed part */
};

#define MAX_PARTS 16
#define MAX_SIGNALS 32

static struct op *ops;
static int nops, cleanup_at;
static struct part parts[MAX_PARTS];
static int nparts;
static char *signal_names[MAX_SIGNALS];
static int nsignals;
static int first_domid = 1000;
static _Atomic long retries; /* transactions that ended in EAGAIN */

static void fail(int line, const char *what, const char *path)
{
    fprintf(stderr, "trace line %d: %s %s: %s\n", line, what, path ? path : "",
            strerror(errno));
    exit(1);
}

static int signal_index(const char *name, int line)
{
    for (int i = 0; i < nsignals; i++)
        if (!strcmp(signal_names[i], name))
            return i;
    if (nsignals == MAX_SIGNALS) {
        fprintf(stderr, "trace line %d: more than %d signals\n", line, MAX_SIGNALS);
        exit(1);
    }
    signal_names[nsignals] = strdup(name);
    return nsignals++;
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
        if (k > CLEANUP || (k > ABORT && k <= CONN && !path) ||
            (k < CONN && !nparts && cleanup_at < 0) ||
            (k == CONN && (nparts == MAX_PARTS || cleanup_at >= 0))) {
            fprintf(stderr, "trace line %d: cannot parse\n", line);
            exit(1);
        }
        if (k == CLEANUP || k == CONN) {
            if (nparts)
                parts[nparts - 1].to = nops;
            if (k == CLEANUP)
                cleanup_at = nops;
            else
                parts[nparts++] = (struct part){ nops, nops, rest && !strcmp(rest, "new") };
            continue;
        }
        if (k == SIGNAL || k == AWAIT)
            signal_index(path, line);
        if (nops == cap)
            ops = realloc(ops, (cap = cap ? 2 * cap : 256) * sizeof(*ops));
        ops[nops++] = (struct op){ k, strdup(path ? path : ""), strdup(rest ? rest : ""), line };
    }
    fclose(f);
    if (!nparts) {
        fprintf(stderr, "%s: no `conn` part\n", file);
        exit(1);
    }
    if (cleanup_at < 0) {
        parts[nparts - 1].to = nops;
        cleanup_at = nops;
    }
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
    char *save;
    for (char *s = strtok_r(acl, " ", &save); s && n < 16; s = strtok_r(NULL, " ", &save)) {
        unsigned int bits = s[0] == 'r' ? XS_PERM_READ : s[0] == 'w' ? XS_PERM_WRITE
                          : s[0] == 'b' ? XS_PERM_READ | XS_PERM_WRITE : XS_PERM_NONE;
        p[n++] = (struct xs_permissions){ .id = atoi(s + 1), .perms = bits };
    }
    if (!xs_set_permissions(h, t, path, p, n))
        fail(line, "perms", path);
}

/* One domain being created: which signals its parts have sent. */
struct domain {
    int domid;
    unsigned int signalled; /* bit i: signal_names[i] */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct xs_handle *fresh[MAX_PARTS]; /* the `new` parts' connections, closed untimed */
};

static void send_signal(struct domain *dom, int i)
{
    pthread_mutex_lock(&dom->lock);
    dom->signalled |= 1u << i;
    pthread_cond_broadcast(&dom->cond);
    pthread_mutex_unlock(&dom->lock);
}

static void await_signal(struct domain *dom, int i)
{
    pthread_mutex_lock(&dom->lock);
    while (!(dom->signalled & (1u << i)))
        pthread_cond_wait(&dom->cond, &dom->lock);
    pthread_mutex_unlock(&dom->lock);
}

/* Runs ops[from, to) for `dom` on `h`; prewatches only if `pre`, the rest only if not. */
static void replay(struct xs_handle *h, struct domain *dom, int from, int to, int pre)
{
    xs_transaction_t t = XBT_NULL;
    int started_at = 0, domid = dom->domid;
    char path[512], rest[512];
    unsigned int len;
    for (int i = from; i < to; i++) {
        struct op *op = &ops[i];
        if ((op->kind == PREWATCH) != pre)
            continue;
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
        case ABORT:
            xs_transaction_end(h, t, true);
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
        case GETDOMAINPATH:
            free(xs_get_domain_path(h, atoi(path)));
            break;
        case PERMS:
            set_perms(h, t, path, rest, op->line);
            break;
        case WATCH:
        case PREWATCH:
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
        case SIGNAL:
            send_signal(dom, signal_index(op->path, op->line));
            break;
        case AWAIT:
            await_signal(dom, signal_index(op->path, op->line));
            break;
        case CONN:
        case CLEANUP:
            break;
        }
    }
    /* Events the sequence did not wait for (the processes' event loops take them all). */
    char **ev;
    while ((ev = xs_check_watch(h)))
        free(ev);
}

struct worker {
    pthread_t thr;
    int index, nthreads, total;
    double *latency; /* per domain, indexed by domain number */
    struct domain *domains; /* all of them, indexed by domain number */
    pthread_barrier_t *ready, *go;
    struct xs_handle *handle[MAX_PARTS]; /* the long-lived parts' connections */
};

/* One part of one domain, on a thread of its own. */
struct part_run {
    pthread_t thr;
    struct worker *w;
    struct domain *dom;
    int part;
};

static void *run_part(void *p)
{
    struct part_run *r = p;
    struct xs_handle *h = r->w->handle[r->part];
    if (parts[r->part].fresh && !(h = r->dom->fresh[r->part] = xs_open(0)))
        fail(0, "xs_open", NULL);
    replay(h, r->dom, parts[r->part].from, parts[r->part].to, 0);
    return NULL;
}

static void *work(void *p)
{
    struct worker *w = p;
    for (int i = 0; i < nparts; i++)
        if (!parts[i].fresh && !(w->handle[i] = xs_open(0)))
            fail(0, "xs_open", NULL);
    /* Watches the long-lived processes had set before, for each of this worker's domains. */
    for (int d = w->index; d < w->total; d += w->nthreads)
        for (int i = 0; i < nparts; i++)
            if (!parts[i].fresh)
                replay(w->handle[i], &w->domains[d], parts[i].from, parts[i].to, 1);
    pthread_barrier_wait(w->ready);
    pthread_barrier_wait(w->go);
    for (int d = w->index; d < w->total; d += w->nthreads) {
        struct part_run runs[MAX_PARTS];
        double t0 = now();
        for (int i = 0; i < nparts; i++) {
            runs[i] = (struct part_run){ .w = w, .dom = &w->domains[d], .part = i };
            if (i && pthread_create(&runs[i].thr, NULL, run_part, &runs[i]))
                fail(0, "pthread_create", NULL);
        }
        run_part(&runs[0]);
        for (int i = 1; i < nparts; i++)
            pthread_join(runs[i].thr, NULL);
        w->latency[d] = now() - t0;
    }
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
    struct domain *domains = calloc(total, sizeof(*domains));
    for (int d = 0; d < total; d++) {
        domains[d].domid = first_domid + d;
        pthread_mutex_init(&domains[d].lock, NULL);
        pthread_cond_init(&domains[d].cond, NULL);
    }
    struct worker *ws = calloc(n, sizeof(*ws));
    pthread_barrier_t ready, go;
    pthread_barrier_init(&ready, NULL, n + 1);
    pthread_barrier_init(&go, NULL, n + 1);
    for (int i = 0; i < n; i++) {
        ws[i] = (struct worker){ .index = i, .nthreads = n, .total = total, .latency = latency,
                                 .domains = domains, .ready = &ready, .go = &go };
        if (pthread_create(&ws[i].thr, NULL, work, &ws[i]))
            fail(0, "pthread_create", NULL);
    }
    /* Connections opened and earlier watches set: only the creations are timed. */
    pthread_barrier_wait(&ready);
    double t0 = mark();
    pthread_barrier_wait(&go);
    for (int i = 0; i < n; i++)
        pthread_join(ws[i].thr, NULL);
    double dt = since(t0);
    for (int d = 0; d < total; d++)
        for (int i = 0; i < nparts; i++)
            if (domains[d].fresh[i])
                xs_close(domains[d].fresh[i]);
    struct xs_handle *h = xs_open(0);
    if (!h)
        fail(0, "xs_open", NULL);
    for (int d = 0; d < total; d++)
        replay(h, &domains[d], cleanup_at, nops, 0);
    xs_close(h);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < nparts; j++)
            if (ws[i].handle[j])
                xs_close(ws[i].handle[j]);
    qsort(latency, total, sizeof(double), cmp);
    printf("domains %.1f %.3f %.3f %.3f %.3f %.3f %.2f\n", total / dt,
           latency[total / 2] * 1e3, latency[total * 9 / 10] * 1e3, latency[total - 1] * 1e3,
           cpu_self * 1e3 / total, cpu_daemon * 1e3 / total, (double)retries / total);
    return 0;
}
