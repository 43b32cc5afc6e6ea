// The kernel's own cost of one refused tcp probe on this machine: socket(), a non-blocking connect() to a
// loopback address that refuses, getsockopt(SO_ERROR) and close(): exactly the calls Vigil's checker makes
// for such a peer. Prints microseconds of CPU per probe, so Benchmarks/checks-cpu can show how much of the
// checker's time is the kernel's floor and how much is Vigil's own.
// Usage: connect-floor PEERS PROBES [BURST GAP_US]: with BURST, the probes go BURST at a time with GAP_US of sleep
// between bursts, as the checker sends them (a tenth of the peers every 100 ms): a CPU that idles between bursts
// starts each one on colder caches than a tight loop does, and no prober at that rate can avoid the idling.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int peers = argc > 1 ? atoi(argv[1]) : 10000, probes = argc > 2 ? atoi(argv[2]) : 50000;
    int burst = argc > 4 ? atoi(argv[3]) : 0, gap_us = argc > 4 ? atoi(argv[4]) : 0;
    for (int i = 0; i < probes; i++) {
        if (burst > 0 && i > 0 && i % burst == 0) usleep(gap_us);
        int k = i % peers;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9)};
        sa.sin_addr.s_addr = htonl((127u << 24) | ((unsigned)(k / 250 % 250 + 1) << 8) | (unsigned)(k % 250 + 1));
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) { perror("socket"); return 1; }
        int err = 0;
        socklen_t len = sizeof err;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        close(fd);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("%.2f\n", cpu / probes * 1e6);
    return 0;
}
