/*
 * floor: what this machine's kernel charges for the mechanisms xenstore traffic is built
 * from, with no xenstore code at all. Each mode prints "<mode> <round trips per second>", an
 * upper bound for any library or daemon built on that mechanism:
 *
 *   socket_rtt   a 32-byte request and a 32-byte reply over a Unix socket to a thread that
 *                sleeps in read() (the best a client can do with a daemon that wakes per
 *                request);
 *   hop_pipe     an event handed to another thread that sleeps until woken (eventfd), which
 *                makes a pipe readable for the first thread's poll() (the watch thread's
 *                path: writer -> watch thread -> xs_fileno pipe -> poller);
 *   spin_pipe    the same with the second thread spinning instead of sleeping (a watch thread
 *                that never sleeps: a CPU burnt for it);
 *   direct_pipe  the first thread makes the pipe readable itself, then polls and drains it
 *                (no second thread at all);
 *   socket_poll_rtt  socket_rtt with both sides polling (reads that do not wait, yielding
 *                the processor between tries) instead of sleeping: no wake-up at all, a CPU
 *                kept busy on each side (the ceiling of busy polling).
 *
 * One mode talks to a daemon (XENSTORED_PATH), with raw wire messages and no library:
 *
 *   daemon_pipeline  XS_READ requests on one connection, XS_DEPTH (default 16) always in
 *                    flight: the most a daemon serves one connection that way, whatever a
 *                    library does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void must(int ok, const char *what)
{
    if (!ok) {
        perror(what);
        exit(1);
    }
}

static int sv[2], bell, pipefd[2];
static atomic_long spin_seq;
static long count;

static void *echo(void *arg)
{
    (void)arg;
    char buf[32];
    for (long i = 0; i < count; i++) {
        must(read(sv[1], buf, sizeof(buf)) == sizeof(buf), "echo read");
        must(write(sv[1], buf, sizeof(buf)) == sizeof(buf), "echo write");
    }
    return NULL;
}

/* Reads exactly len bytes without ever sleeping. */
static void read_polling(int fd, char *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n == (ssize_t)len)
            return;
        must(n < 0 && errno == EAGAIN, "polling read");
        sched_yield();
    }
}

static void *echo_polling(void *arg)
{
    (void)arg;
    char buf[32];
    for (long i = 0; i < count; i++) {
        read_polling(sv[1], buf, sizeof(buf));
        must(write(sv[1], buf, sizeof(buf)) == sizeof(buf), "echo write");
    }
    return NULL;
}

static void *deliver_sleeping(void *arg)
{
    (void)arg;
    uint64_t v;
    for (long i = 0; i < count; i++) {
        must(read(bell, &v, sizeof(v)) == sizeof(v), "bell read");
        must(write(pipefd[1], "x", 1) == 1, "pipe write");
    }
    return NULL;
}

static void *deliver_spinning(void *arg)
{
    (void)arg;
    for (long i = 1; i <= count; i++) {
        while (atomic_load_explicit(&spin_seq, memory_order_acquire) < i)
            ;
        must(write(pipefd[1], "x", 1) == 1, "pipe write");
    }
    return NULL;
}

static void wait_pipe(void)
{
    struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
    char c;
    must(poll(&p, 1, 5000) == 1, "poll");
    must(read(pipefd[0], &c, 1) == 1, "pipe read");
}

/* struct xsd_sockmsg, spelled out so this file needs no header. */
struct msghdr16 { uint32_t type, req_id, tx_id, len; };

static void read_full(int fd, void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        must(n > 0, "daemon read");
        got += n;
    }
}

static double daemon_pipeline(long n)
{
    const char *path = getenv("XENSTORED_PATH");
    must(path != NULL, "XENSTORED_PATH");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    must(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
    static const char node[] = "/tool";
    struct { struct msghdr16 h; char p[sizeof(node)]; } req = { { 2 /* XS_READ */, 0, 0, sizeof(node) }, "" };
    memcpy(req.p, node, sizeof(node));
    long DEPTH = getenv("XS_DEPTH") ? atol(getenv("XS_DEPTH")) : 16;
    long sent = 0, done = 0;
    char body[4096];
    double t0 = now();
    while (done < n) {
        while (sent < n && sent - done < DEPTH) {
            req.h.req_id = sent++;
            size_t len = sizeof(req.h) + sizeof(node); /* not sizeof(req): padding */
            must(write(fd, &req, len) == (ssize_t)len, "daemon write");
        }
        struct msghdr16 h;
        read_full(fd, &h, sizeof(h));
        must(h.len <= sizeof(body), "reply length");
        read_full(fd, body, h.len);
        done++;
    }
    double dt = now() - t0;
    close(fd);
    return dt;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: floor socket_rtt|socket_poll_rtt|hop_pipe|spin_pipe|direct_pipe|"
                "daemon_pipeline COUNT\n");
        return 2;
    }
    const char *mode = argv[1];
    count = atol(argv[2]);
    if (!strcmp(mode, "daemon_pipeline")) {
        printf("%s %.0f\n", mode, count / daemon_pipeline(count));
        return 0;
    }
    must(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    must(pipe(pipefd) == 0, "pipe");
    must((bell = eventfd(0, 0)) >= 0, "eventfd");
    void *(*peer)(void *) = !strcmp(mode, "socket_rtt") ? echo
                            : !strcmp(mode, "socket_poll_rtt") ? echo_polling
                            : !strcmp(mode, "hop_pipe")  ? deliver_sleeping
                            : !strcmp(mode, "spin_pipe") ? deliver_spinning
                                                         : NULL;
    if (!peer && strcmp(mode, "direct_pipe")) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    pthread_t th;
    if (peer)
        must(pthread_create(&th, NULL, peer, NULL) == 0, "pthread_create");
    char buf[32] = { 0 };
    uint64_t one = 1;
    double t0 = now();
    for (long i = 1; i <= count; i++) {
        if (peer == echo) {
            must(write(sv[0], buf, sizeof(buf)) == sizeof(buf), "write");
            must(read(sv[0], buf, sizeof(buf)) == sizeof(buf), "read");
            continue;
        }
        if (peer == echo_polling) {
            must(write(sv[0], buf, sizeof(buf)) == sizeof(buf), "write");
            read_polling(sv[0], buf, sizeof(buf));
            continue;
        }
        if (peer == deliver_sleeping)
            must(write(bell, &one, sizeof(one)) == sizeof(one), "bell write");
        else if (peer == deliver_spinning)
            atomic_store_explicit(&spin_seq, i, memory_order_release);
        else
            must(write(pipefd[1], "x", 1) == 1, "pipe write");
        wait_pipe();
    }
    double dt = now() - t0;
    if (peer)
        pthread_join(th, NULL);
    printf("%s %.0f\n", mode, count / dt);
    return 0;
}
