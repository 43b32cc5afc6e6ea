// Issue 13 asks whether io_uring would cut the proxy's cost per request. This is the smallest server that
// answers the question on this kernel: a keep-alive HTTP server that answers every request head with a
// fixed 200, built three ways around the same two system calls per request (a read, a write).
//
//   io-model epoll PORT      edge-triggered epoll, recv() and send() per request (Vigil's model)
//   io-model uring PORT      io_uring, one recv per request re-armed after each, sends batched
//   io-model multishot PORT  io_uring, one multishot recv per connection into a provided-buffer ring,
//                            sends batched: one io_uring_enter per loop pass instead of two calls per request
//   io-model syscall         prints what a trivial system call costs here (getppid, in ns)
//
// Built and driven by Benchmarks/io-model.
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char response[] = "HTTP/1.1 200 OK\r\nServer: io-model\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 23\r\nConnection: keep-alive\r\n\r\nhello from the backend\n";
enum { maxFd = 4096, ringBuffers = 1024, ringBufferSize = 2048 };
enum { accepted = 1, received = 2, sent = 3 };
static char connectionBuffer[maxFd][ringBufferSize];
static char ringStorage[ringBuffers][ringBufferSize];

static int listener(int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 1024)) { perror("io-model: bind/listen"); exit(1); }
    return s;
}

static void noDelay(int fd) { int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }

// wrk sends one small request at a time: a read that ends with CRLFCRLF holds a whole head.
static int isHead(const char *b, int n) { return n >= 4 && memcmp(b + n - 4, "\r\n\r\n", 4) == 0; }

static unsigned long long tag(int kind, int fd) { return (unsigned long long)kind << 32 | (unsigned)fd; }

static void serveEpoll(int ls) {
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, events[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, events, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ls) {
                for (int c; (c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0;) {
                    noDelay(c);
                    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                }
                continue;
            }
            int r = recv(fd, connectionBuffer[fd], ringBufferSize, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN)) { close(fd); continue; }
            if (r > 0 && isHead(connectionBuffer[fd], r)) send(fd, response, sizeof response - 1, MSG_NOSIGNAL);
        }
    }
}

static struct io_uring ring;
static struct io_uring_buf_ring *bufferRing;

static void initRing(int multishot) {
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    if (io_uring_queue_init_params(4096, &ring, &p)) { fprintf(stderr, "io-model: io_uring unavailable\n"); exit(2); }
    if (!multishot) return;
    void *mem;
    if (posix_memalign(&mem, 4096, ringBuffers * sizeof(struct io_uring_buf))) exit(1);
    bufferRing = mem;
    io_uring_buf_ring_init(bufferRing);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)bufferRing, .ring_entries = ringBuffers, .bgid = 0};
    if (io_uring_register_buf_ring(&ring, &reg, 0)) { fprintf(stderr, "io-model: no provided-buffer rings\n"); exit(2); }
    for (int i = 0; i < ringBuffers; i++)
        io_uring_buf_ring_add(bufferRing, ringStorage[i], ringBufferSize, i, io_uring_buf_ring_mask(ringBuffers), i);
    io_uring_buf_ring_advance(bufferRing, ringBuffers);
}

static void armReceive(int fd, int multishot) {
    struct io_uring_sqe *r = io_uring_get_sqe(&ring);
    if (multishot) {
        io_uring_prep_recv_multishot(r, fd, NULL, 0, 0);
        r->flags |= IOSQE_BUFFER_SELECT;
        r->buf_group = 0;
    } else {
        io_uring_prep_recv(r, fd, connectionBuffer[fd], ringBufferSize, 0);
    }
    io_uring_sqe_set_data64(r, tag(received, fd));
}

static void serveUring(int ls, int multishot) {
    initRing(multishot);
    struct io_uring_sqe *a = io_uring_get_sqe(&ring);
    io_uring_prep_multishot_accept(a, ls, NULL, NULL, 0);
    io_uring_sqe_set_data64(a, tag(accepted, ls));
    for (;;) {
        io_uring_submit_and_wait(&ring, 1);   // this pass's sends and receives, and the wait: one call
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            int kind = (int)(cqe->user_data >> 32), fd = (int)(cqe->user_data & 0xffffffff);
            if (kind == accepted) {
                if (cqe->res >= 0) { noDelay(cqe->res); armReceive(cqe->res, multishot); }
                continue;
            }
            if (kind != received) continue;
            if (cqe->res <= 0) { close(fd); continue; }
            const char *data = connectionBuffer[fd];
            int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            if (multishot) data = ringStorage[bid];
            if (isHead(data, cqe->res)) {
                struct io_uring_sqe *w = io_uring_get_sqe(&ring);
                io_uring_prep_send(w, fd, response, sizeof response - 1, MSG_NOSIGNAL);
                io_uring_sqe_set_data64(w, tag(sent, fd));
                w->flags |= IOSQE_CQE_SKIP_SUCCESS;
            }
            if (multishot) {
                io_uring_buf_ring_add(bufferRing, ringStorage[bid], ringBufferSize, bid, io_uring_buf_ring_mask(ringBuffers), 0);
                io_uring_buf_ring_advance(bufferRing, 1);
            }
            if (!multishot || !(cqe->flags & IORING_CQE_F_MORE)) armReceive(fd, multishot);
        }
        io_uring_cq_advance(&ring, seen);
    }
}

static void syscallCost(void) {
    struct timespec a, b;
    const int n = 2000000;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.0f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "syscall")) { syscallCost(); return 0; }
    if (argc != 3) { fprintf(stderr, "usage: io-model epoll|uring|multishot PORT | io-model syscall\n"); return 2; }
    int ls = listener(atoi(argv[2]));
    if (!strcmp(argv[1], "epoll")) serveEpoll(ls);
    else serveUring(ls, !strcmp(argv[1], "multishot"));
}
