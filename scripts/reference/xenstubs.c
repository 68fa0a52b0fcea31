/*
 * xenstubs.c - LD_PRELOAD shim that lets Debian's Xen 4.17 xenstore daemons
 * (C xenstored and oxenstored) run on a plain Linux host without a hypervisor.
 *
 * The daemons only need a handful of hypervisor services at start-up and when
 * domains are introduced.  We answer them with ordinary Linux objects:
 *
 *   - libxenctrl:  a dummy handle; every domain id below the reserved range is
 *                  reported running (or only those listed in the file named by
 *                  XENSTUBS_ALIVE_FILE, re-read on every query, when it exists).
 *                  xc_map_foreign_range hands out an anonymous zeroed page.
 *   - libxenevtchn: ports are plain counters; the handle's fd is a pipe that
 *                  stays silent unless XENSTUBS_EVTCHN_FIFO names a FIFO, in
 *                  which case each byte written to it is delivered as the most
 *                  recently bound VIRQ (e.g. VIRQ_DOM_EXC, so a test can make
 *                  the daemon re-check which domains are alive).
 *   - libxengnttab: grant maps are anonymous shared pages.
 *   - /proc/xen/xsd_kva and /proc/xen/xsd_port, whose paths are compiled into
 *     the C daemon, are redirected to a 4096-byte memfd and to a memfd holding
 *     the text "1".
 *   - setrlimit always succeeds (oxenstored raises RLIMIT_NOFILE and dies on
 *     EPERM in containers).
 *
 * Built against Debian's own headers (libxen-dev) so the structure layouts
 * match the real libraries.  The preloaded definitions carry no symbol
 * versions, so they satisfy the daemons' versioned references ahead of the
 * real libraries, which still have to be present for the loader.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

#define PAGE 4096

/* ---------------------------------------------------------------- domains */

/* Domain ids at or above this value are reserved by Xen (DOMID_FIRST_RESERVED). */
#define FIRST_RESERVED 0x7FF0U

static int domain_alive(uint32_t domid)
{
    const char *path = getenv("XENSTUBS_ALIVE_FILE");
    FILE *f;
    unsigned long id;
    int found = 0;

    if (domid >= FIRST_RESERVED)
        return 0;
    if (!path || !(f = fopen(path, "r")))
        return 1;
    while (fscanf(f, "%lu", &id) == 1) {
        if (id == domid) {
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Next live domain id >= first, or -1 if there is none. */
static long next_alive(uint32_t first)
{
    const char *path = getenv("XENSTUBS_ALIVE_FILE");
    uint32_t d;

    /* Without a list every id is alive: no need to scan. */
    if (!path || access(path, R_OK) != 0)
        return first < FIRST_RESERVED ? (long)first : -1;
    for (d = first; d < FIRST_RESERVED; d++)
        if (domain_alive(d))
            return d;
    return -1;
}

static int dummy_xc;

xc_interface *xc_interface_open(xentoollog_logger *logger,
                                xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return (xc_interface *)&dummy_xc;
}

int xc_interface_close(xc_interface *xch)
{
    (void)xch;
    return 0;
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
                      unsigned int max_doms, xc_dominfo_t *info)
{
    unsigned int n = 0;
    long d = first_domid;

    (void)xch;
    while (n < max_doms && (d = next_alive((uint32_t)d)) >= 0) {
        memset(&info[n], 0, sizeof(info[n]));
        info[n].domid = (uint32_t)d;
        info[n].running = 1;
        info[n].nr_online_vcpus = 1;
        n++;
        d++;
    }
    return (int)n;
}

int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain,
                          unsigned int max_domains, xc_domaininfo_t *info)
{
    unsigned int n = 0;
    long d = first_domain;

    (void)xch;
    while (n < max_domains && (d = next_alive((uint32_t)d)) >= 0) {
        memset(&info[n], 0, sizeof(info[n]));
        info[n].domain = (domid_t)d;
        info[n].flags = XEN_DOMINF_running;
        info[n].nr_online_vcpus = 1;
        n++;
        d++;
    }
    return (int)n;
}

static void *zero_page(void)
{
    void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *xc_map_foreign_range(xc_interface *xch, uint32_t dom, int size,
                           int prot, unsigned long mfn)
{
    void *p;

    (void)xch; (void)dom; (void)prot; (void)mfn;
    p = mmap(NULL, size > 0 ? (size_t)size : PAGE, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* ------------------------------------------------------------ event channels */

struct xenevtchn_handle {
    int rfd;                 /* what the daemon polls */
    int wfd;                 /* other end of the pipe, or -1 for a FIFO */
    evtchn_port_t virq_port; /* delivered when the fd becomes readable */
};

static evtchn_port_t next_port = 10;

static xenevtchn_handle *evtchn_new(void)
{
    xenevtchn_handle *h = calloc(1, sizeof(*h));
    const char *fifo = getenv("XENSTUBS_EVTCHN_FIFO");
    int p[2];

    if (!h)
        return NULL;
    h->wfd = -1;
    if (fifo && *fifo) {
        /* O_RDWR keeps the FIFO open even while no writer is attached. */
        h->rfd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (h->rfd >= 0)
            return h;
    }
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(h);
        return NULL;
    }
    h->rfd = p[0];
    h->wfd = p[1];
    return h;
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger,
                                 unsigned int flags)
{
    (void)logger; (void)flags;
    return evtchn_new();
}

xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger,
                                   int fd, unsigned int flags)
{
    /* Only used across live update, which we never perform. */
    (void)logger; (void)fd; (void)flags;
    return evtchn_new();
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    if (!xce)
        return 0;
    close(xce->rfd);
    if (xce->wfd >= 0)
        close(xce->wfd);
    free(xce);
    return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->rfd;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce; (void)port;
    return 0;
}

xenevtchn_port_or_error_t
xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid)
{
    (void)xce; (void)domid;
    return (xenevtchn_port_or_error_t)next_port++;
}

xenevtchn_port_or_error_t
xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
                           evtchn_port_t remote_port)
{
    (void)xce; (void)domid; (void)remote_port;
    return (xenevtchn_port_or_error_t)next_port++;
}

xenevtchn_port_or_error_t
xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq)
{
    (void)virq;
    xce->virq_port = next_port++;
    return (xenevtchn_port_or_error_t)xce->virq_port;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce; (void)port;
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    char c;

    if (read(xce->rfd, &c, 1) == 1 && xce->virq_port)
        return (xenevtchn_port_or_error_t)xce->virq_port;
    errno = EAGAIN;
    return -1;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce; (void)port;
    return 0;
}

/* ------------------------------------------------------------ grant tables */

static int dummy_gnt;

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger,
                                 unsigned open_flags)
{
    (void)logger; (void)open_flags;
    return (xengnttab_handle *)&dummy_gnt;
}

int xengnttab_close(xengnttab_handle *xgt)
{
    (void)xgt;
    return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    (void)xgt; (void)nr_grants;
    return 0;
}

void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid,
                              uint32_t ref, int prot)
{
    (void)xgt; (void)domid; (void)ref; (void)prot;
    return zero_page();
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
    (void)xgt;
    return munmap(start_address, (size_t)count * PAGE);
}

/* ------------------------------------------------------- /proc/xen files */

#define KVA_PATH  "/proc/xen/xsd_kva"
#define PORT_PATH "/proc/xen/xsd_port"

/* Returns an fd standing in for one of the /proc/xen files, -2 if the path is
 * not one of ours. */
static int fake_proc_open(const char *path)
{
    int fd;

    if (!path)
        return -2;
    if (strcmp(path, KVA_PATH) == 0) {
        fd = memfd_create("xsd_kva", MFD_CLOEXEC);
        if (fd >= 0 && ftruncate(fd, PAGE) != 0) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    if (strcmp(path, PORT_PATH) == 0) {
        fd = memfd_create("xsd_port", MFD_CLOEXEC);
        if (fd >= 0 && (write(fd, "1", 1) != 1 || lseek(fd, 0, SEEK_SET) != 0)) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    return -2;
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef FILE *(*fopen_fn)(const char *, const char *);

static mode_t open_mode(int flags, va_list ap)
{
    /* O_TMPFILE contains O_DIRECTORY's bit: test all of it. */
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        return (mode_t)va_arg(ap, int);
    return 0;
}

#define OPEN_WRAPPER(name)                                                   \
    int name(const char *path, int flags, ...)                               \
    {                                                                        \
        static open_fn real;                                                 \
        va_list ap;                                                          \
        mode_t mode;                                                         \
        int fd = fake_proc_open(path);                                       \
        if (fd != -2)                                                        \
            return fd;                                                       \
        va_start(ap, flags);                                                 \
        mode = open_mode(flags, ap);                                         \
        va_end(ap);                                                          \
        if (!real)                                                           \
            real = (open_fn)dlsym(RTLD_NEXT, #name);                         \
        return real(path, flags, mode);                                      \
    }

OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                 \
    int name(int dirfd, const char *path, int flags, ...)                    \
    {                                                                        \
        static openat_fn real;                                               \
        va_list ap;                                                          \
        mode_t mode;                                                         \
        int fd = fake_proc_open(path);                                       \
        if (fd != -2)                                                        \
            return fd;                                                       \
        va_start(ap, flags);                                                 \
        mode = open_mode(flags, ap);                                         \
        va_end(ap);                                                          \
        if (!real)                                                           \
            real = (openat_fn)dlsym(RTLD_NEXT, #name);                       \
        return real(dirfd, path, flags, mode);                               \
    }

OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

#define FOPEN_WRAPPER(name)                                                  \
    FILE *name(const char *path, const char *mode)                           \
    {                                                                        \
        static fopen_fn real;                                                \
        int fd = fake_proc_open(path);                                       \
        if (fd >= 0)                                                         \
            return fdopen(fd, mode);                                         \
        if (fd == -1)                                                        \
            return NULL;                                                     \
        if (!real)                                                           \
            real = (fopen_fn)dlsym(RTLD_NEXT, #name);                        \
        return real(path, mode);                                             \
    }

FOPEN_WRAPPER(fopen)
FOPEN_WRAPPER(fopen64)

/* ------------------------------------------------------------- rlimits */

int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
    (void)resource; (void)rlim;
    return 0;
}
