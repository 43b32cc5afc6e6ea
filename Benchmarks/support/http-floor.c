// The kernel's and libc's own cost of one http probe on this machine, as Vigil's checker makes it: socket(),
// connect() to 127.0.a.b:PORT, send() of the request, recv() of the reply, close() — or, with keep-alive, only
// the send() and recv() on a connection kept per peer. Blocking calls: no event loop, nothing but the probe's
// own system calls. Prints microseconds of CPU per probe (user + system), for Benchmarks/checks-cpu-http.
// Usage: http-floor PORT PEERS PROBES KEEPALIVE(0|1) [BURST GAP_US]: with BURST, the probes go BURST at a time
// with GAP_US of sleep between bursts, at the checker's cadence (see connect-floor.c).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_peer(int k, int port) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl((127u << 24) | ((unsigned)(k / 250 % 250 + 1) << 8) | (unsigned)(k % 250 + 1));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("connect"); exit(1); }
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: http-floor PORT PEERS PROBES KEEPALIVE\n"); return 2; }
    int port = atoi(argv[1]), peers = atoi(argv[2]), probes = atoi(argv[3]), keepalive = atoi(argv[4]);
    int burst = argc > 6 ? atoi(argv[5]) : 0, gap_us = argc > 6 ? atoi(argv[6]) : 0;
    const char *req = keepalive ? "GET / HTTP/1.1\r\nHost: check\r\n\r\n" : "GET / HTTP/1.0\r\n\r\n";
    int *fds = calloc(peers, sizeof(int));
    char buf[4096];
    if (keepalive) for (int k = 0; k < peers; k++) fds[k] = open_peer(k, port);
    struct rusage r0;
    getrusage(RUSAGE_SELF, &r0);
    for (int i = 0; i < probes; i++) {
        if (burst > 0 && i > 0 && i % burst == 0) usleep(gap_us);
        int k = i % peers;
        int fd = keepalive ? fds[k] : open_peer(k, port);
        if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) { perror("send"); return 1; }
        if (recv(fd, buf, sizeof buf, 0) <= 0) { perror("recv"); return 1; }
        if (!keepalive) close(fd);
    }
    struct rusage r1;
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6
               + (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    printf("%.2f\n", cpu / probes * 1e6);
    return 0;
}
