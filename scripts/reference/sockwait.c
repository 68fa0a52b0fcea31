/*
 * sockwait PATH TIMEOUT_MS [PID]
 *
 * Waits until the Unix stream socket PATH accepts a connection.  Exits 0 once
 * it does, 1 on timeout, 2 as soon as process PID (if given) is gone, so a
 * daemon that dies during start-up is reported at once instead of after the
 * whole timeout.  Shell has no way to connect to a Unix socket by itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int alive(pid_t pid)
{
    char path[64], state = 0;
    FILE *f;

    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    /* A zombie nobody reaps still answers kill(); look at its state. */
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
        state = 0;
    fclose(f);
    return state != 'Z' && state != 'X';
}

int main(int argc, char **argv)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct timespec nap = { 0, 20 * 1000 * 1000 };
    long waited = 0, timeout;
    pid_t pid = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: %s PATH TIMEOUT_MS [PID]\n", argv[0]);
        return 64;
    }
    if (strlen(argv[1]) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "%s: socket path too long: %s\n", argv[0], argv[1]);
        return 64;
    }
    strcpy(addr.sun_path, argv[1]);
    timeout = atol(argv[2]);
    if (argc > 3)
        pid = (pid_t)atol(argv[3]);

    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            perror("socket");
            return 1;
        }
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            close(fd);
            return 0;
        }
        close(fd);
        if (pid > 0 && !alive(pid))
            return 2;
        if (waited >= timeout)
            return 1;
        nanosleep(&nap, NULL);
        waited += 20;
    }
}
