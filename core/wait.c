/* wait - the one place where concur blocks: futexes, descriptors, sleeps */
#include "concur/wait.h"
#include "concur/error.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Threads: the flag is the process's, and says whose waits it stops: 0
 * nobody's, -1 every thread's, else one thread's (its tid: Ctrl-C is the
 * main thread's, as in Python). The hooks are set once, before a second
 * thread exists, and only read after. */
static volatile sig_atomic_t interrupted;
static const cc_wait_hooks *hooks;
static const cc_wait_observer *observer;
static const cc_wait_tracer *tracer;
const cc_wait_sched *cc__wait_sched;
#define sched cc__wait_sched
/* The calling thread's begun wait: each thread's own. */
static _Thread_local cc_waiting *current;

static const char *const verbs[] = {
#define CC__WAIT_VERB(name, verb) verb,
    CC_WAIT_KINDS(CC__WAIT_VERB)
#undef CC__WAIT_VERB
};

const char *cc_wait_verb(int kind) {
  return kind >= 0 && kind < CC_WAIT_KIND_COUNT ? verbs[kind] : "for";
}

void cc_wait_set_observer(const cc_wait_observer *o) { observer = o; }
void cc_wait_set_tracer(const cc_wait_tracer *t) { tracer = t; }

void cc_wait_begin(cc_waiting *w) {
  if (current == w)
    return;
  w->mine = !current;
  if (w->mine) {
    w->since = cc_now();
    w->traced = 0;
    current = w;
  }
}

void cc_wait_end(cc_waiting *w) {
  if (!w->mine)
    return;
  current = NULL;
  if (observer)
    observer->ended(w);
  if (tracer && w->traced)
    tracer->ended(w);
}

/* Before a sleep: what the observer says of the thread's wait (0: sleep). */
static int observe(void) {
  if (tracer && current && !current->traced) {
    current->traced = 1;
    tracer->began(current);
  }
  return observer && current ? observer->sleeping(current) : 0;
}

static int may_spin(int local) {
  /* Under the scheduler nobody else runs while this thread spins. */
  if (sched)
    return 0;
  return !hooks || !hooks->may_spin || hooks->may_spin(local);
}

static void around(const void *word, int begin) {
  if (hooks && hooks->around)
    hooks->around(word, begin);
}

int64_t cc_now(void) {
  if (sched)
    return sched->now();
  return cc_now_real();
}

int64_t cc_now_real(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int cc_spin_while(_Atomic uint32_t *word, uint32_t seen, int64_t deadline) {
  int64_t end = 0;
  for (int i = 1;; i++) {
    if (atomic_load_explicit(word, memory_order_acquire) != seen)
      return 1;
    /* The thread that may change the word cannot run meanwhile (it waits
     * for the GIL this one holds): better sleep, which lets go. */
    if (!may_spin(0))
      return 0;
    if (i % 16 == 0) { /* the clock costs a few looks: read it now and then */
      int64_t now = cc_now();
      if (!end)
        end = now + CC_SPIN_NS;
      if (now >= end || now >= deadline)
        return 0;
    }
    cc_cpu_relax();
  }
}

/* Pauses between two looks at a held word, at most. */
#define TAKE_BACKOFF_MAX 16

int cc_spin_take(_Atomic uint32_t *word, uint32_t mine, int64_t deadline, int local) {
  if (!may_spin(local))
    return 0;
  int64_t end = 0;
  for (int pause = 1;; pause = pause < TAKE_BACKOFF_MAX ? pause * 2 : pause) {
    uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
    if (w == 0 && atomic_compare_exchange_weak(word, &w, mine))
      return 1;
    if (!may_spin(0))
      return 0;
    if (pause >= TAKE_BACKOFF_MAX) {
      int64_t now = cc_now();
      if (!end)
        end = now + CC_SPIN_NS;
      else if (now >= end || now >= deadline)
        return 0;
    }
    for (int i = 0; i < pause; i++)
      cc_cpu_relax();
  }
}

int64_t cc_deadline(double seconds) {
  if (isnan(seconds) || seconds < 0 || seconds > 1e9)
    return CC_FOREVER;
  return cc_now() + (int64_t)(seconds * 1e9);
}

void cc_interrupt(void) { interrupted = -1; }
void cc_interrupt_thread(int tid) { interrupted = tid; }
int cc_interrupted(void) {
  int v = interrupted;
  /* gettid only while an interrupt is aimed at one thread (rarely): wait.c
   * stays below ident.c, which caches it. */
  return v == -1 || (v > 0 && v == gettid());
}
int cc_interrupt_clear(void) {
  int v = interrupted;
  interrupted = 0;
  return v;
}
void cc_interrupt_restore(int was) { interrupted = was; }
void cc_wait_set_hooks(const cc_wait_hooks *h) { hooks = h; }
void cc_wait_set_sched(const cc_wait_sched *s) { sched = s; }
int cc_wait_simulated(void) { return sched != NULL; }

void cc__wait_point(void) {
  if (!sched->decide())
    return;
  around(NULL, 1);
  sched->handoff();
  around(NULL, 0);
}

/* A futex wait under the scheduler: the wait's own deadline, not a
 * shorter one its caller looks around at (a lock's probe for a dead
 * holder): the scheduler tells it when to look around (a death, a round
 * of looks when nothing can run), and virtual time would otherwise run on
 * to each probe. */
static int sched_futex_wait(_Atomic uint32_t *word, uint32_t expect, int64_t deadline,
                            int *woken) {
  if (current && current->deadline > deadline)
    deadline = current->deadline;
  if (atomic_load(word) != expect)
    return 0;
  if (cc_now() >= deadline)
    return CC_ETIMEDOUT;
  int o = observe();
  if (o < 0)
    return o;
  around(word, 1);
  int r = sched->block(word, expect, deadline, woken);
  around(word, 0);
  if (*woken && tracer && current)
    tracer->woken(word);
  return r;
}

static struct timespec to_ts(int64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000LL), (long)(t % 1000000000LL)};
  return ts;
}

/* The end of this wait's slice: the deadline or one slice from now. Sets
 * *sliced when the slice ends first. */
static int64_t slice_end(int64_t deadline, int64_t now, int *sliced) {
  int64_t end = now + CC_WAIT_SLICE_NS;
  *sliced = deadline > end;
  return *sliced ? end : deadline;
}

/* cc_futex_wait, telling in *woken whether a FUTEX_WAKE ended the wait (the
 * kernel returns 0 then, and only then, even when a timeout or a signal
 * came at the same time). */
static int futex_wait(_Atomic uint32_t *word, uint32_t expect, int64_t deadline, int *woken) {
  *woken = 0;
  if (cc_interrupted())
    return CC_EINTR;
  if (sched)
    return sched_futex_wait(word, expect, deadline, woken);
  int64_t now = cc_now();
  if (now >= deadline)
    return atomic_load(word) == expect ? CC_ETIMEDOUT : 0;
  int sliced;
  struct timespec ts = to_ts(slice_end(deadline, now, &sliced));
  int o = observe();
  if (o < 0)
    return o;
  around(word, 1);
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time; no PRIVATE
   * flag, since the word may be shared with other processes. */
  long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expect, &ts, NULL,
                   FUTEX_BITSET_MATCH_ANY);
  int e = errno;
  around(word, 0);
  if (r == 0) {
    *woken = 1;
    if (tracer && current)
      tracer->woken(word);
    return 0;
  }
  if (e == EINTR)
    return cc_interrupted() ? CC_EINTR : 0;
  if (e == ETIMEDOUT)
    return sliced ? CC_WAIT_SLICE
                  : (atomic_load(word) == expect ? CC_ETIMEDOUT : 0);
  return 0; /* EAGAIN: the value had changed already */
}

int cc_futex_wait(_Atomic uint32_t *word, uint32_t expect, int64_t deadline) {
  int woken;
  return futex_wait(word, expect, deadline, &woken);
}

/* *sleepers counts the sleepers no wake-up has reached: each one adds
 * itself, and is taken off again exactly once, by the waker whose
 * FUTEX_WAKE woke it or by itself when something else ended its wait. So
 * while one sleeps in the kernel unreached, the count is not 0 and the next
 * change wakes it; once it is reached, the changes after cost nothing. */
int cc_futex_wait_counted(_Atomic uint32_t *word, uint32_t expect, _Atomic uint32_t *sleepers,
                          int64_t deadline) {
  int woken;
  atomic_fetch_add(sleepers, 1);
  int r = futex_wait(word, expect, deadline, &woken);
  if (!woken)
    atomic_fetch_sub(sleepers, 1);
  return r;
}

/* A FUTEX_WAKE that the tracer is told about (sleepers may be NULL). */
static void traced_wake(_Atomic uint32_t *word, int n, _Atomic uint32_t *sleepers) {
  int64_t since = cc_now();
  uint32_t flow = tracer->wake(word);
  long woken = sched ? sched->wake(word, n) : syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
  if (woken > 0) {
    if (sleepers)
      atomic_fetch_sub(sleepers, (uint32_t)woken);
    tracer->woke(flow, since, (int)woken);
  }
}

void cc_futex_wake_one(_Atomic uint32_t *word, _Atomic uint32_t *sleepers) {
  cc_futex_wake_some(word, sleepers, 1);
}

void cc_futex_wake_some(_Atomic uint32_t *word, _Atomic uint32_t *sleepers, uint32_t n) {
  uint32_t asleep = atomic_load(sleepers);
  if (!asleep)
    return;
  if (tracer) {
    traced_wake(word, (int)(n < asleep ? n : asleep), sleepers);
    return;
  }
  int k = (int)(n < asleep ? n : asleep);
  long woken = sched ? sched->wake(word, k) : syscall(SYS_futex, word, FUTEX_WAKE, k, NULL, NULL, 0);
  if (woken > 0)
    atomic_fetch_sub(sleepers, (uint32_t)woken);
}

int cc_futex_wait_plain(_Atomic uint32_t *word, uint32_t expect, int64_t deadline) {
  struct timespec ts = to_ts(deadline);
  long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expect,
                   deadline == CC_FOREVER ? NULL : &ts, NULL, FUTEX_BITSET_MATCH_ANY);
  return r != 0 && errno == ETIMEDOUT ? CC_ETIMEDOUT : 0;
}

void cc_futex_wake_plain(_Atomic uint32_t *word, int n) {
  syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

void cc_futex_wake(_Atomic uint32_t *word, int n) {
  if (tracer)
    traced_wake(word, n, NULL);
  else if (sched)
    sched->wake(word, n);
  else
    cc_futex_wake_plain(word, n);
}

/* cc_wait_fds under the scheduler: it polls at each turn it is given,
 * until the wait's own deadline (as sched_futex_wait); told to look
 * around, it returns as at the end of its caller's slice. */
static int sched_wait_fds(struct pollfd *fds, int n, int64_t slice) {
  int64_t deadline = current && current->deadline > slice ? current->deadline : slice;
  for (;;) {
    if (cc_interrupted())
      return CC_EINTR;
    int r = poll(fds, (nfds_t)n, 0);
    if (r > 0)
      return r;
    if (r < 0 && errno != EINTR)
      return CC_ESYS;
    if (cc_now() >= deadline)
      return CC_ETIMEDOUT;
    int o = observe();
    if (o < 0)
      return o;
    around(NULL, 1);
    r = sched->fds(fds, n, deadline);
    around(NULL, 0);
    if (r != 0)
      return r;
    if (cc_now() >= slice)
      return CC_ETIMEDOUT;
  }
}

int cc_wait_fds(struct pollfd *fds, int n, int64_t deadline) {
  if (sched)
    return sched_wait_fds(fds, n, deadline);
  for (;;) {
    if (cc_interrupted())
      return CC_EINTR;
    int64_t now = cc_now();
    int sliced;
    int64_t end = slice_end(deadline, now, &sliced);
    int ms = end <= now ? 0 : (int)((end - now + 999999) / 1000000);
    int o = ms ? observe() : 0;
    if (o < 0)
      return o;
    if (ms)
      around(NULL, 1);
    int r = poll(fds, (nfds_t)n, ms);
    int e = errno;
    if (ms)
      around(NULL, 0);
    errno = e;
    if (r > 0)
      return r;
    if (r < 0 && errno != EINTR)
      return CC_ESYS;
    if (r == 0 && !sliced && cc_now() >= deadline)
      return CC_ETIMEDOUT;
  }
}

int cc_wait_fd(int fd, short events, int64_t deadline) {
  struct pollfd p = {.fd = fd, .events = events};
  int r = cc_wait_fds(&p, 1, deadline);
  return r > 0 ? 0 : r;
}

int cc_wait_fd_plain(int fd, short events, int64_t real_deadline) {
  struct pollfd p = {.fd = fd, .events = events};
  for (;;) {
    int64_t now = cc_now_real();
    int ms = real_deadline == CC_FOREVER ? -1
             : now >= real_deadline      ? 0
                                         : (int)((real_deadline - now + 999999) / 1000000);
    int r = poll(&p, 1, ms);
    if (r > 0)
      return 0;
    if (r < 0 && errno != EINTR)
      return CC_ESYS;
    if (r == 0 && cc_now_real() >= real_deadline)
      return CC_ETIMEDOUT;
  }
}

int cc_wait_fd_soon(int fd, short events, int64_t deadline) {
  struct pollfd p = {.fd = fd, .events = events};
  int64_t until = cc_now() + CC_SPIN_NS;
  if (until > deadline)
    until = deadline;
  while (may_spin(0) && cc_now() < until) {
    if (poll(&p, 1, 0) > 0)
      return 0;
    cc_cpu_relax();
  }
  return cc_wait_fd(fd, events, deadline);
}

static int sleep_until(int64_t deadline);

int cc_sleep_until(int64_t deadline) {
  if (!tracer)
    return sleep_until(deadline);
  int64_t since = cc_now();
  int r = sleep_until(deadline);
  tracer->slept(since);
  return r;
}

static int sleep_until(int64_t deadline) {
  for (;;) {
    if (cc_interrupted())
      return CC_EINTR;
    int64_t now = cc_now();
    if (now >= deadline)
      return 0;
    if (sched) {
      int o = observe(), woken;
      if (o < 0)
        return o;
      around(NULL, 1);
      int r = sched->block(NULL, 0, deadline, &woken);
      around(NULL, 0);
      if (r == CC_EINTR)
        return r;
      continue;
    }
    int sliced;
    struct timespec ts = to_ts(slice_end(deadline, now, &sliced));
    int o = observe();
    if (o < 0)
      return o;
    around(NULL, 1);
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    around(NULL, 0);
  }
}

int cc_wait_signal(const sigset_t *set, int64_t deadline) {
  for (;;) {
    int64_t now = cc_now();
    if (now >= deadline)
      return CC_ETIMEDOUT;
    int sliced;
    int64_t left = slice_end(deadline, now, &sliced) - now;
    struct timespec ts = to_ts(left);
    int s = sigtimedwait(set, NULL, &ts);
    if (s > 0)
      return s;
    if (errno != EAGAIN && errno != EINTR)
      return CC_ESYS;
  }
}

/* How often a child is looked at when there is no pidfd to wait on. */
#define CHILD_LOOK_NS 5000000LL

/* cc_wait_child under the scheduler: 0 (reaped), 1 (not a task of it:
 * wait as without), or an error. */
static int sched_wait_child(int pid, int *status, struct rusage *usage, int64_t deadline) {
  for (;;) {
    int o = observe();
    if (o < 0)
      return o;
    around(NULL, 1);
    int r = sched->child(pid, deadline);
    around(NULL, 0);
    if (r == 0)
      return 1;
    if (r == CC_WAIT_ENDED) {
      /* Its last task has handed the run on and is about to exit. */
      pid_t got;
      while ((got = wait4(pid, status, 0, usage)) < 0 && errno == EINTR)
        ;
      return got == pid ? 0 : CC_ESYS;
    }
    if (r != CC_WAIT_SLICE)
      return r;
  }
}

int cc_wait_child(int pid, int pidfd, int *status, struct rusage *usage, int64_t deadline) {
  if (sched) {
    int r = sched_wait_child(pid, status, usage, deadline);
    if (r != 1)
      return r;
  }
  for (;;) {
    pid_t r = wait4(pid, status, WNOHANG, usage);
    if (r == pid)
      return 0;
    if (r < 0 && errno != EINTR)
      return CC_ESYS;
    if (r < 0)
      continue;
    int64_t now = cc_now();
    if (now >= deadline)
      return CC_ETIMEDOUT;
    int w;
    if (pidfd >= 0) {
      w = cc_wait_fd(pidfd, POLLIN, deadline);
    } else {
      int64_t next = now + CHILD_LOOK_NS;
      w = sleep_until(next < deadline ? next : deadline);
    }
    if (w == CC_EINTR || w == CC_EDEADLK)
      return w;
  }
}
