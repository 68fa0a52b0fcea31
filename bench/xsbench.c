/*
 * xsbench: one workload through whatever libxenstore.so.4 the dynamic linker finds, so the
 * same binary measures Debian's library and ours (LD_LIBRARY_PATH decides). Prints one line:
 * "<workload> <operations per second> <client CPU us/op> <daemon CPU us/op>", all over the
 * timed loop only. The daemon is found the usual way (XENSTORED_PATH); its CPU time is read
 * from /proc/PID/task/TID/schedstat when XSBENCH_DAEMON_PID names it (else reported as 0).
 */
#define _GNU_SOURCE
#include <xenstore.h>
#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dlfcn.h>
#include "clock.h"

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static struct xs_handle *open_or_die(void)
{
    struct xs_handle *h = xs_open(0);
    if (!h)
        die("xs_open");
    return h;
}

static void must_write(struct xs_handle *h, xs_transaction_t t, const char *p, const char *v)
{
    if (!xs_write(h, t, p, v, strlen(v)))
        die(p);
}

static void read_loop(struct xs_handle *h, const char *path, long n)
{
    for (long i = 0; i < n; i++) {
        unsigned int len;
        void *v = xs_read(h, XBT_NULL, path, &len);
        if (!v)
            die("xs_read");
        free(v);
    }
}

struct thread_arg { struct xs_handle *h; long n; int id; };

static void *reader_thread(void *p)
{
    struct thread_arg *a = p;
    char path[64];
    snprintf(path, sizeof(path), "/bench/t%d", a->id);
    read_loop(a->h, path, a->n);
    return NULL;
}

/* Each of 64 clients has its own connection and mixes reads, writes and directory listings. */
static void *mixed_client(void *p)
{
    struct thread_arg *a = p;
    struct xs_handle *h = open_or_die();
    char path[64], val[32];
    for (long i = 0; i < a->n; i++) {
        snprintf(path, sizeof(path), "/bench/c%d/k%ld", a->id, i % 8);
        switch (i % 4) {
        case 0:
            snprintf(val, sizeof(val), "%ld", i);
            must_write(h, XBT_NULL, path, val);
            break;
        case 3: {
            unsigned int num;
            snprintf(path, sizeof(path), "/bench/c%d", a->id);
            char **d = xs_directory(h, XBT_NULL, path, &num);
            if (!d)
                die("xs_directory");
            free(d);
            break;
        }
        default: {
            unsigned int len;
            void *v = xs_read(h, XBT_NULL, path, &len);
            free(v); /* may be missing on the first pass */
        }
        }
    }
    xs_close(h);
    return NULL;
}

static double run_threads(void *(*fn)(void *), struct xs_handle *h, int nthreads, long n)
{
    pthread_t th[256];
    struct thread_arg args[256];
    double t0 = mark();
    for (int i = 0; i < nthreads; i++) {
        args[i] = (struct thread_arg){ h, n, i };
        pthread_create(&th[i], NULL, fn, &args[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    return since(t0);
}

static void drain_events(struct xs_handle *h)
{
    char **ev;
    while ((ev = xs_check_watch(h)))
        free(ev);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: xsbench WORKLOAD COUNT\n"
                "workloads: read write txn directory read_watched threads4 watch_events "
                "mixed64 fanout1000 fill guest_read\n");
        return 2;
    }
    const char *w = argv[1];
    long n = atol(argv[2]);
    struct xs_handle *h = open_or_die();
    double t0, dt;
    long ops = n;

    xs_rm(h, XBT_NULL, "/bench");
    must_write(h, XBT_NULL, "/bench/value", "0123456789abcdef0123456789abcdef");

    if (!strcmp(w, "read")) {
        t0 = mark();
        read_loop(h, "/bench/value", n);
        dt = since(t0);
    } else if (!strcmp(w, "write")) {
        char val[32];
        t0 = mark();
        for (long i = 0; i < n; i++) {
            snprintf(val, sizeof(val), "%ld", i);
            must_write(h, XBT_NULL, "/bench/value", val);
        }
        dt = since(t0);
    } else if (!strcmp(w, "txn")) {
        /* start, read, write, commit: one "operation" */
        t0 = mark();
        for (long i = 0; i < n; i++) {
            xs_transaction_t t = xs_transaction_start(h);
            if (!t)
                die("xs_transaction_start");
            unsigned int len;
            free(xs_read(h, t, "/bench/value", &len));
            must_write(h, t, "/bench/other", "x");
            if (!xs_transaction_end(h, t, false))
                die("xs_transaction_end");
        }
        dt = since(t0);
    } else if (!strcmp(w, "directory")) {
        char path[64];
        for (int i = 0; i < 16; i++) {
            snprintf(path, sizeof(path), "/bench/dir/entry%d", i);
            must_write(h, XBT_NULL, path, "v");
        }
        t0 = mark();
        for (long i = 0; i < n; i++) {
            unsigned int num;
            char **d = xs_directory(h, XBT_NULL, "/bench/dir", &num);
            if (!d)
                die("xs_directory");
            free(d);
        }
        dt = since(t0);
    } else if (!strcmp(w, "read_watched")) {
        if (!xs_watch(h, "/bench/watched", "tok"))
            die("xs_watch");
        t0 = mark();
        read_loop(h, "/bench/value", n);
        dt = since(t0);
    } else if (!strcmp(w, "threads4")) {
        for (int i = 0; i < 4; i++) {
            char path[64];
            snprintf(path, sizeof(path), "/bench/t%d", i);
            must_write(h, XBT_NULL, path, "value");
        }
        dt = run_threads(reader_thread, h, 4, n / 4);
        ops = (n / 4) * 4;
    } else if (!strcmp(w, "watch_events")) {
        /* Writes on one handle, events taken off another with poll + xs_check_watch. */
        struct xs_handle *w2 = open_or_die();
        if (!xs_watch(w2, "/bench/ev", "tok"))
            die("xs_watch");
        int fd = xs_fileno(w2);
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        /* the initial event */
        poll(&pfd, 1, 5000);
        drain_events(w2);
        char val[32];
        long got = 0;
        t0 = mark();
        for (long i = 0; i < n; i++) {
            snprintf(val, sizeof(val), "%ld", i);
            must_write(h, XBT_NULL, "/bench/ev", val);
            while (got <= i) {
                if (poll(&pfd, 1, 5000) != 1)
                    die("event lost");
                char **ev;
                while ((ev = xs_check_watch(w2))) {
                    free(ev);
                    got++;
                }
            }
        }
        dt = since(t0);
        xs_close(w2);
    } else if (!strcmp(w, "mixed64")) {
        dt = run_threads(mixed_client, NULL, 64, n / 64);
        ops = (n / 64) * 64;
    } else if (!strcmp(w, "fanout1000")) {
        /* 1,000 connections watch one node; each write must reach all of them. */
        enum { W = 1000 };
        static struct xs_handle *hs[W];
        static struct pollfd pfds[W];
        for (int i = 0; i < W; i++) {
            hs[i] = open_or_die();
            if (!xs_watch(hs[i], "/bench/fan", "tok"))
                die("xs_watch");
            pfds[i] = (struct pollfd){ .fd = xs_fileno(hs[i]), .events = POLLIN };
        }
        /* Initial events. */
        for (int i = 0; i < W; i++) {
            poll(&pfds[i], 1, 5000);
            drain_events(hs[i]);
        }
        t0 = mark();
        for (long k = 0; k < n; k++) {
            must_write(h, XBT_NULL, "/bench/fan", "x");
            for (int i = 0; i < W; i++) {
                char **ev;
                while (!(ev = xs_check_watch(hs[i]))) {
                    if (poll(&pfds[i], 1, 5000) != 1)
                        die("fan-out event lost");
                }
                free(ev);
            }
        }
        dt = since(t0);
        for (int i = 0; i < W; i++)
            xs_close(hs[i]);
    } else if (!strcmp(w, "guest_read")) {
        /* A guest's read through its ring: only our library has guest handles in-process. */
        struct xs_handle *(*open_domain)(unsigned int) =
            (struct xs_handle *(*)(unsigned int))dlsym(RTLD_DEFAULT, "xs_embedded_open_domain");
        if (!open_domain) {
            fprintf(stderr, "guest_read needs xs_embedded_open_domain\n");
            return 3;
        }
        if (!xs_introduce_domain(h, 7, 0x1000, 3))
            die("xs_introduce_domain");
        must_write(h, XBT_NULL, "/local/domain/7/value", "0123456789abcdef");
        struct xs_permissions perms[1] = { { .id = 7, .perms = XS_PERM_NONE } };
        if (!xs_set_permissions(h, XBT_NULL, "/local/domain/7/value", perms, 1))
            die("xs_set_permissions");
        struct xs_handle *g = open_domain(7);
        if (!g)
            die("xs_embedded_open_domain");
        t0 = mark();
        read_loop(g, "value", n);
        dt = since(t0);
        xs_close(g);
        xs_release_domain(h, 7);
        xs_rm(h, XBT_NULL, "/local/domain/7");
    } else if (!strcmp(w, "fill")) {
        /* n nodes of 16 bytes under /bench/fill, 100 per directory. */
        char path[96];
        t0 = mark();
        for (long i = 0; i < n; i++) {
            snprintf(path, sizeof(path), "/bench/fill/d%ld/n%ld", i / 100, i % 100);
            must_write(h, XBT_NULL, path, "0123456789abcdef");
        }
        dt = since(t0);
        printf("%s %.0f\n", w, ops / dt);
        fflush(stdout);
        /* Hold the nodes so the driver can measure the daemon. */
        if (getenv("XSBENCH_HOLD"))
            pause();
        xs_close(h);
        return 0;
    } else {
        fprintf(stderr, "unknown workload %s\n", w);
        return 2;
    }
    xs_rm(h, XBT_NULL, "/bench");
    xs_close(h);
    printf("%s %.0f %.3f %.3f\n", w, ops / dt, cpu_self * 1e6 / ops, cpu_daemon * 1e6 / ops);
    return 0;
}
