#define _GNU_SOURCE
#include "CShim.h"
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

int vigil_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int vigil_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int vigil_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        events[i] = evs[i].events;
        data[i] = evs[i].data.u64;
    }
    return n;
}

int vigil_signalfd(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int vigil_signalfd_read(int fd, int32_t *pid) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n != (ssize_t)sizeof info) return -1;
    if (pid) *pid = (int32_t)info.ssi_pid;
    return (int)info.ssi_signo;
}

int vigil_sigmask_all(int how) {
    sigset_t set;
    sigfillset(&set);
    return sigprocmask(how, &set, NULL);
}

void vigil_signals_reset(const int *keep_blocked, int count) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        sigaction(s, &sa, NULL);
    }
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, keep_blocked[i]);
    sigprocmask(SIG_SETMASK, &set, NULL);
}

void vigil_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

int vigil_timerfd_create(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }

int vigil_timerfd_set_ms(int fd, int64_t first_ms, int64_t interval_ms) {
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = first_ms / 1000;
    its.it_value.tv_nsec = (first_ms % 1000) * 1000000;
    if (first_ms > 0 && its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    its.it_interval.tv_sec = interval_ms / 1000;
    its.it_interval.tv_nsec = (interval_ms % 1000) * 1000000;
    return timerfd_settime(fd, 0, &its, NULL);
}

int vigil_eventfd(unsigned int initval) { return eventfd(initval, EFD_NONBLOCK | EFD_CLOEXEC); }
void vigil_eventfd_signal(int fd) { (void)eventfd_write(fd, 1); }
void vigil_eventfd_drain(int fd) { eventfd_t count; (void)eventfd_read(fd, &count); }

int vigil_accept4(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int vigil_pipe2(int fds[2], int nonblock) { return pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)); }

pid_t vigil_fork(void) {
    fflush(NULL);
    return fork();
}

pid_t vigil_reap(int *exited, int *signaled, int *code, int *core) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    *exited = 0; *signaled = 0; *code = 0; *core = 0;
    if (pid <= 0) return pid;
    if (WIFEXITED(status)) { *exited = 1; *code = WEXITSTATUS(status); }
    else if (WIFSIGNALED(status)) { *signaled = 1; *code = WTERMSIG(status); *core = WCOREDUMP(status) ? 1 : 0; }
    return pid;
}

int vigil_gettid(void) { return (int)gettid(); }

int vigil_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
int vigil_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int vigil_set_dumpable(int on) { return prctl(PR_SET_DUMPABLE, on, 0, 0, 0); }

int vigil_set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int vigil_set_cloexec(int fd, int on) {
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFD, on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC));
}

int vigil_shm_open(const char *name, int oflag, mode_t mode) { return shm_open(name, oflag, mode); }
int vigil_shm_unlink(const char *name) { return shm_unlink(name); }

uint64_t vigil_monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t vigil_monotonic_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t vigil_realtime_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t vigil_shared_mutex_size(void) { return sizeof(pthread_mutex_t); }

int vigil_shared_mutex_init(void *m) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

int vigil_shared_mutex_lock(void *m) {
    int rc = pthread_mutex_lock((pthread_mutex_t *)m);
    if (rc == EOWNERDEAD) rc = pthread_mutex_consistent((pthread_mutex_t *)m);
    return rc;
}

void vigil_shared_mutex_unlock(void *m) { pthread_mutex_unlock((pthread_mutex_t *)m); }
