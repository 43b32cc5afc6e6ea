// Thin wrappers for the Linux syscalls and macros that Glibc's Swift overlay does not import,
// plus the few atomics that must operate on raw shared memory.
#ifndef VIGIL_CSHIM_H
#define VIGIL_CSHIM_H

#include <stdint.h>
#include <stddef.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/socket.h>

// epoll (struct epoll_event is packed; keep it opaque to Swift and pass fields).
int vigil_epoll_create(void);
int vigil_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
// Fills parallel arrays instead of exposing the packed struct.
int vigil_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int max, int timeout_ms);
// Operation and event values are the kernel ABI constants (EPOLL_CTL_ADD=1, DEL=2, MOD=3; EPOLLIN=1 ...).

// signalfd over a set built from a list of signal numbers; returns the fd.
int vigil_signalfd(const int *signals, int count);
// Reads one signal from a signalfd: returns the signal number and the sender's pid, -1 on EAGAIN/error.
int vigil_signalfd_read(int fd, int32_t *pid);
// Block (how=SIG_BLOCK) or unblock every signal; used around fork and for the master's loop.
int vigil_sigmask_all(int how);
// In a freshly forked child: default dispositions, and a mask that blocks exactly `keep_blocked`
// (those stay blocked throughout, so none is lost or takes its default action in between).
void vigil_signals_reset(const int *keep_blocked, int count);
void vigil_ignore_sigpipe(void);

int vigil_timerfd_create(void);
int vigil_timerfd_set_ms(int fd, int64_t first_ms, int64_t interval_ms);
int vigil_eventfd(unsigned int initval);
/// Adds one to an eventfd's count (wakes whoever polls it); takes the count back to zero.
void vigil_eventfd_signal(int fd);
void vigil_eventfd_drain(int fd);

int vigil_accept4(int fd, struct sockaddr *addr, socklen_t *len);
int vigil_pipe2(int fds[2], int nonblock);

// fork after flushing stdio so buffered output is not written twice.
pid_t vigil_fork(void);
// waitpid(-1, WNOHANG) decoded: returns pid (0 none, -1 error); *exited 1 with *code, or *signaled 1 with *code = signal.
pid_t vigil_reap(int *exited, int *signaled, int *code, int *core);
int vigil_set_pdeathsig(int sig);
// A worker's way back to root closed: no execve can grant privileges (PR_SET_NO_NEW_PRIVS).
int vigil_set_no_new_privs(void);
// Whether the process may dump core (and be ptraced by its user) after it changed uid.
int vigil_set_dumpable(int on);
// The calling thread's id, as nginx prints it after "pid#".
int vigil_gettid(void);
int vigil_set_nonblock(int fd);
int vigil_set_cloexec(int fd, int on);

int vigil_shm_open(const char *name, int oflag, mode_t mode);
int vigil_shm_unlink(const char *name);

uint64_t vigil_monotonic_ms(void);
uint64_t vigil_monotonic_us(void);
int64_t vigil_realtime_ms(void);

// A robust, process-shared mutex placed in a shared mapping (the TLS session cache). A holder that dies is
// noticed by the next locker, which takes the mutex over instead of waiting forever.
size_t vigil_shared_mutex_size(void);
int vigil_shared_mutex_init(void *m);
int vigil_shared_mutex_lock(void *m);
void vigil_shared_mutex_unlock(void *m);

// Atomics on shared memory (the mapping is shared by separately forked processes).
static inline uint64_t vigil_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void vigil_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t vigil_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void vigil_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int vigil_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline uint32_t vigil_fetch_or_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_or(p, v, __ATOMIC_ACQ_REL); }
static inline void vigil_fetch_and_u32(uint32_t *p, uint32_t v) { __atomic_fetch_and(p, v, __ATOMIC_ACQ_REL); }
static inline uint64_t vigil_fetch_add_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline void vigil_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void vigil_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }

#endif
