/* wait - the one place where concur blocks: futexes, descriptors, sleeps */
#ifndef CONCUR_WAIT_H
#define CONCUR_WAIT_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

/*
 * DESIGN. Every wait of concur, in the core and in the bindings, is one of
 * these calls: nothing else spins, sleeps, polls, futex-waits or waits for a
 * child. They know nothing of what runs above them (Lua, the GIL): they ask
 * it through hooks (cc_wait_hooks) whether a spin may pay, and tell it
 * before and after each sleep, so that the bindings let go of the GIL while
 * a thread sleeps, and later tracing, deadlock detection and a scheduler
 * see every wait. Every wait takes an absolute deadline, returns CC_EINTR
 * once the interrupt flag is set (Ctrl-C), and wakes at least every
 * CC_WAIT_SLICE_NS to look around, so that no wait outlives what it waits
 * for.
 */

/* Deadlines are absolute CLOCK_MONOTONIC nanoseconds. */
#define CC_FOREVER INT64_MAX

/* cc_futex_wait returns this (not an error) when a periodic slice ended with
 * nothing seen; callers re-check their condition, and owners of locks use it
 * to look for a dead holder. */
#define CC_WAIT_SLICE 1
/* The scheduler's child hook returns this when the child's tasks ended. */
#define CC_WAIT_ENDED 2

/* The run's clock: CLOCK_MONOTONIC, or the scheduler's virtual time while
 * one is set (cc_wait_set_sched). */
int64_t cc_now(void);
/* CLOCK_MONOTONIC always: for what must not stop with virtual time (the
 * GIL's switch interval, the supervisor's timeout, the scheduler's own). */
int64_t cc_now_real(void);
/* now + seconds; a negative or NaN timeout means no deadline. */
int64_t cc_deadline(double seconds);

/* Blocks while *word == expect, until woken, the deadline or an interrupt.
 * Returns 0 (woken or the value changed: re-check), CC_WAIT_SLICE,
 * CC_ETIMEDOUT, CC_EINTR, or the observer's code (CC_EDEADLK). The word may
 * be shared between processes. */
int cc_futex_wait(_Atomic uint32_t *word, uint32_t expect, int64_t deadline);
/* The same with no hook and no interrupt: for the GIL, which decides who
 * runs and must be taken whatever happens. 0 or CC_ETIMEDOUT. */
int cc_futex_wait_plain(_Atomic uint32_t *word, uint32_t expect, int64_t deadline);
/* Wakes up to n waiters of word (INT32_MAX: all). */
void cc_futex_wake(_Atomic uint32_t *word, int n);
/* The same, untold to the tracer: for the GIL's own words. */
void cc_futex_wake_plain(_Atomic uint32_t *word, int n);

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
/* The same for up to n sleepers (those there, at most). */
void cc_futex_wake_some(_Atomic uint32_t *word, _Atomic uint32_t *sleepers, uint32_t n);

/* Waits until fd is ready for `events` (POLLIN, ...). 0, CC_ETIMEDOUT,
 * CC_EINTR, or the observer's code. */
int cc_wait_fd(int fd, short events, int64_t deadline);
/* The same for an answer that often comes within microseconds (a reply on
 * a pipe): looks for about CC_SPIN_NS without sleeping first, as a wake-up
 * on another core costs tens of microseconds. */
int cc_wait_fd_soon(int fd, short events, int64_t deadline);
/* The same with no hook and no interrupt, on the real clock, even under the
 * scheduler: for what the kernel finishes on its own (a killed process's
 * end), which no task of the run does. 0, CC_ETIMEDOUT or CC_ESYS. */
int cc_wait_fd_plain(int fd, short events, int64_t real_deadline);
/* Waits until one of n descriptors is ready (poll's revents are filled in).
 * The number ready, CC_ETIMEDOUT, CC_EINTR, CC_ESYS or the observer's code. */
struct pollfd;
int cc_wait_fds(struct pollfd *fds, int n, int64_t deadline);
/* Sleeps until the deadline. 0, CC_EINTR, or the observer's code. */
int cc_sleep_until(int64_t deadline);
/* Waits for one of the blocked signals in set. Returns the signal number,
 * CC_ETIMEDOUT or CC_ESYS. For the host's supervisor. */
int cc_wait_signal(const sigset_t *set, int64_t deadline);
/* Waits for the child pid to end and reaps it: through pidfd when it is
 * not -1, else by looking every few milliseconds. 0 (*status and, when not
 * NULL, *usage filled in), CC_ETIMEDOUT, CC_EINTR, the observer's code, or
 * CC_ESYS (not a child of this process, or reaped already). */
struct rusage;
int cc_wait_child(int pid, int pidfd, int *status, struct rusage *usage, int64_t deadline);

/* The interrupt flag, set from a signal handler (async-signal-safe): every
 * wait of every thread (cc_interrupt), or of the thread tid alone
 * (cc_interrupt_thread: Ctrl-C is the main thread's), then returns CC_EINTR
 * until it is cleared. cc_interrupted tells whether the calling thread's
 * waits are stopped. cc_interrupt_clear returns what was set, for
 * cc_interrupt_restore (a wait that must end before it gives up: taking a
 * Condition's lock back). */
void cc_interrupt(void);
void cc_interrupt_thread(int tid);
int cc_interrupted(void);
int cc_interrupt_clear(void);
void cc_interrupt_restore(int was);

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
/* Spins for *word to be 0 and takes it, setting it to `mine`, for about
 * CC_SPIN_NS or until the deadline; true when it has it. The looks come
 * further and further apart: each takes the cache line from the holder,
 * and a holder that releases and takes it again at once (a loop of short
 * critical sections) then goes on for many turns without a miss instead
 * of handing over every time, which costs both sides a miss. `local`: the
 * holder is a thread of this process. */
int cc_spin_take(_Atomic uint32_t *word, uint32_t mine, int64_t deadline, int local);

/* The pause between two looks at a word another core is about to change. */
static inline void cc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* What the waits ask of the layer above them; a NULL member, or no hooks,
 * answers yes and does nothing. */
typedef struct cc_wait_hooks {
  /* Before and during a spin: false when spinning cannot pay, because the
   * thread that would change the word cannot run meanwhile (it waits for
   * the GIL this thread holds). local: that thread is known to be of this
   * process (a lock's holder). */
  int (*may_spin)(int local);
  /* Around every sleep (futexes, descriptors, sleeps): before it (begin 1,
   * with the word waited on, or NULL) and after it (begin 0). */
  void (*around)(const void *word, int begin);
} cc_wait_hooks;
/* hooks (kept, not copied), or NULL for none. */
void cc_wait_set_hooks(const cc_wait_hooks *hooks);

/* What a thread can wait for, each with the words that follow "waits" in
 * a report ("waits to acquire Lock 'fork'"). */
#define CC_WAIT_KINDS(X)                                                       \
  X(ACQUIRE, "to acquire")   /* a Lock, RLock or Semaphore */                  \
  X(WAIT, "on")              /* an Event, Condition or Barrier */              \
  X(GET, "to get from")      /* a Queue */                                     \
  X(PUT, "to put on")        /* a Queue */                                     \
  X(JOIN, "to join")         /* a Process, a Thread, a JoinableQueue */        \
  X(RECV, "to receive on")   /* a Connection (or several: concur.wait) */      \
  X(SEND, "to send on")      /* a Connection */

enum {
#define CC__WAIT_KIND(name, verb) CC_WAIT_##name,
  CC_WAIT_KINDS(CC__WAIT_KIND)
#undef CC__WAIT_KIND
  CC_WAIT_KIND_COUNT
};
/* The words of a kind ("to acquire"); never NULL. */
const char *cc_wait_verb(int kind);

/* One wait of a primitive, said before it first sleeps (cc_wait_begin) and
 * ended when it returns (cc_wait_end), on the caller's stack: the observer
 * (deadlock detection, tracing) is told about it at each of its sleeps. A
 * wait begun inside another (a Thread's join, which waits on an Event) is
 * the outer one's: the outer says what is waited for. */
typedef struct cc_waiting {
  int kind;                      /* CC_WAIT_* */
  const void *obj;               /* the cc_obj waited on (in the arena), or NULL */
  const _Atomic uint32_t *owner; /* a lock's word: its holder's tid (CC_TID_MASK) */
  int32_t target;                /* a join's: the tid waited for, or 0 */
  const char *label;             /* without obj: what it is, in words */
  int64_t deadline;              /* the caller's, CC_FOREVER for none */
  int64_t since;                 /* set by cc_wait_begin */
  int mine;                      /* set by cc_wait_begin: 1 when it is the thread's */
  int traced;                    /* the tracer was told it began */
} cc_waiting;

/* Begins w as the calling thread's wait unless one is begun already (w
 * itself: a loop may begin it at each of its sleeps). */
void cc_wait_begin(cc_waiting *w);
/* Ends w (when it was the thread's). */
void cc_wait_end(cc_waiting *w);

/* Who watches waits: told before each sleep of a begun wait, with it,
 * what it waits for; a negative code ends the wait with that code
 * (CC_EDEADLK: it can never end). Told once more when the wait ends. */
typedef struct cc_wait_observer {
  int (*sleeping)(const cc_waiting *w);
  void (*ended)(const cc_waiting *w);
} cc_wait_observer;
/* observer (kept), or NULL; set before a second thread exists. */
void cc_wait_set_observer(const cc_wait_observer *observer);

/* Who records what the waits do (tracing): told when a begun wait first
 * sleeps and when it ends (if it slept), when a sleep ends, and around each FUTEX_WAKE: before it,
 * for a number that the woken find with the word (`woken`, told to a
 * thread whose begun wait a FUTEX_WAKE ended), and after it, with how many
 * it woke (only when it woke some). `since`: when it began. */
typedef struct cc_wait_tracer {
  void (*began)(const cc_waiting *w); /* at its first sleep */
  void (*ended)(const cc_waiting *w);
  void (*slept)(int64_t since);
  uint32_t (*wake)(const void *word);
  void (*woke)(uint32_t flow, int64_t since, int n);
  void (*woken)(const void *word);
} cc_wait_tracer;
/* tracer (kept), or NULL; set before a second thread exists. */
void cc_wait_set_tracer(const cc_wait_tracer *tracer);

/* DESIGN. The scheduler (sched.h, concur run --sim) is one more layer below
 * everything that waits: while one is set, exactly one thread of the run
 * runs, and every wait of wait.c is a decision of the scheduler instead of
 * a sleep in the kernel. A futex wait says what it waits for (a word and
 * its value, a deadline) and hands the run on; a wake marks the waiters of
 * that word; a descriptor wait polls (without sleeping) each time it is
 * given the run; time is the scheduler's. cc_wait_point is a scheduling
 * point of an operation that does not block: nothing when no scheduler is
 * set, which is one predictable branch. The hooks are set once, in a
 * process with one thread, and are inherited by its children. */
typedef struct cc_wait_sched {
  /* A futex wait (word NULL: a sleep). As futex_wait's returns; *woken set
   * when a cc_futex_wake ended it. */
  int (*block)(_Atomic uint32_t *word, uint32_t expect, int64_t deadline, int *woken);
  /* Marks up to n waiters of word woken; returns how many. */
  int (*wake)(_Atomic uint32_t *word, int n);
  /* The number ready, CC_ETIMEDOUT, CC_ESYS, or 0: look around (a wait
   * slice), then call again. */
  int (*fds)(struct pollfd *fds, int n, int64_t deadline);
  /* Is a switch due? If so, handoff() gives the run away and returns when
   * it is this thread's again (the GIL let go meanwhile). */
  int (*decide)(void);
  void (*handoff)(void);
  /* Waits for the child pid's tasks to end: CC_WAIT_ENDED (they have: reap
   * it, it is about to be gone), 0 (not a task of the scheduler's),
   * CC_WAIT_SLICE, CC_ETIMEDOUT or CC_EINTR. */
  int (*child)(int pid, int64_t deadline);
  /* 1, 0 (it ended), or -1 (not known: look for it). */
  int (*tid_alive)(int tid);
  int64_t (*now)(void);
} cc_wait_sched;
/* sched (kept), or NULL; in a process with one thread. */
void cc_wait_set_sched(const cc_wait_sched *sched);
/* True while a scheduler is set. */
int cc_wait_simulated(void);

extern const cc_wait_sched *cc__wait_sched;
void cc__wait_point(void);
/* A scheduling point: another thread of the run may run here. */
static inline void cc_wait_point(void) {
  if (__builtin_expect(cc__wait_sched != NULL, 0))
    cc__wait_point();
}

#endif
