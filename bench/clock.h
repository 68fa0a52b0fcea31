/*
 * Clocks shared by the bench programs: wall time, this process's CPU time and the daemon's
 * (XSBENCH_DAEMON_PID), so that CPU time per operation is measured over the timed part only.
 */
#ifndef XSBENCH_CLOCK_H
#define XSBENCH_CLOCK_H
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds of this process, all threads. */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds of the daemon (all its threads, nanosecond accounting), 0 if unknown. */
static double daemon_cpu(void)
{
    const char *pid = getenv("XSBENCH_DAEMON_PID");
    if (!pid)
        return 0;
    char path[512];
    snprintf(path, sizeof(path), "/proc/%s/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long ns;
        if (f && fscanf(f, "%llu", &ns) == 1)
            total += ns / 1e9;
        if (f)
            fclose(f);
    }
    closedir(d);
    return total;
}


/* The timed section: mark() starts it, since() ends it (wall time; CPU kept aside). */
static double cpu_self0, cpu_daemon0, cpu_self, cpu_daemon;

static double mark(void)
{
    cpu_self0 = self_cpu();
    cpu_daemon0 = daemon_cpu();
    return now();
}

static double since(double t0)
{
    double dt = now() - t0;
    cpu_self = self_cpu() - cpu_self0;
    cpu_daemon = daemon_cpu() - cpu_daemon0;
    return dt;
}

#endif
