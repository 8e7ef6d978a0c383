/* wait - the one place where concur blocks: futexes, descriptors, sleeps */
#ifndef CONCUR_WAIT_H
#define CONCUR_WAIT_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

/* Deadlines are absolute CLOCK_MONOTONIC nanoseconds. */
#define CC_FOREVER INT64_MAX

/* cc_futex_wait returns this (not an error) when a periodic slice ended with
 * nothing seen; callers re-check their condition, and owners of locks use it
 * to look for a dead holder. */
#define CC_WAIT_SLICE 1

int64_t cc_now(void);
/* now + seconds; a negative or NaN timeout means no deadline. */
int64_t cc_deadline(double seconds);

/* Blocks while *word == expect, until woken, the deadline or an interrupt.
 * Returns 0 (woken or the value changed: re-check), CC_WAIT_SLICE,
 * CC_ETIMEDOUT or CC_EINTR. The word may be shared between processes. */
int cc_futex_wait(_Atomic uint32_t *word, uint32_t expect, int64_t deadline);
/* The same with no hook and no interrupt: for the GIL, which decides who
 * runs and must be taken whatever happens. 0 or CC_ETIMEDOUT. */
int cc_futex_wait_plain(_Atomic uint32_t *word, uint32_t expect, int64_t deadline);
/* Wakes up to n waiters of word (INT32_MAX: all). */
void cc_futex_wake(_Atomic uint32_t *word, int n);

/* Waits on a word that wakers change one at a time (a queue's sequence, a
 * semaphore), counted in *sleepers so that cc_futex_wake_one makes a system
 * call only while a sleeper is there that no wake-up has reached yet: a
 * woken process takes microseconds to run again, and a fast other side
 * would otherwise pay a syscall for every change until it does. Returns as
 * cc_futex_wait. */
int cc_futex_wait_counted(_Atomic uint32_t *word, uint32_t expect, _Atomic uint32_t *sleepers,
                          int64_t deadline);
/* Wakes one sleeper of cc_futex_wait_counted after the caller changed word. */
void cc_futex_wake_one(_Atomic uint32_t *word, _Atomic uint32_t *sleepers);

/* Waits until fd is ready for `events` (POLLIN, ...). 0, CC_ETIMEDOUT, CC_EINTR. */
int cc_wait_fd(int fd, short events, int64_t deadline);
/* Waits until one of n descriptors is ready (poll's revents are filled in).
 * The number ready, CC_ETIMEDOUT, CC_EINTR or CC_ESYS. */
struct pollfd;
int cc_wait_fds(struct pollfd *fds, int n, int64_t deadline);
/* Sleeps until the deadline. 0 or CC_EINTR. */
int cc_sleep_until(int64_t deadline);
/* Waits for one of the blocked signals in set. Returns the signal number,
 * CC_ETIMEDOUT or CC_ESYS. For the host's supervisor. */
int cc_wait_signal(const sigset_t *set, int64_t deadline);

/* The interrupt flag, set from a signal handler (async-signal-safe): every
 * wait then returns CC_EINTR until it is cleared. */
void cc_interrupt(void);
int cc_interrupted(void);
void cc_interrupt_clear(void);

/* The slice after which a wait with a far deadline wakes to look around
 * (interrupt set between its check and the syscall, a holder that died). */
#define CC_WAIT_SLICE_NS 100000000LL

/* How long a waiter spins before it sleeps in the kernel: about what going
 * to sleep and being woken on another core costs, so that spinning never
 * wastes more than twice what the best choice made in hindsight would. A
 * time, not a count of pauses: a pause takes 3 ns on some processors and
 * 140 on others. */
#define CC_SPIN_NS 20000LL

/* Spins while *word == seen, for about CC_SPIN_NS and not past the deadline.
 * True when the word changed (no need to sleep). */
int cc_spin_while(_Atomic uint32_t *word, uint32_t seen, int64_t deadline);

/* The pause between two looks at a word another core is about to change. */
static inline void cc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Called around every wait that may sleep (futexes, descriptors, sleeps)
 * with the word waited on, or NULL (begin = 1), and after it (begin = 0):
 * the hook for the GIL, tracing and deadlock detection. */
typedef void (*cc_wait_hook)(const void *word, int begin);
void cc_wait_set_hook(cc_wait_hook hook);

#endif
