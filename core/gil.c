/* gil - the global interpreter lock of a process's threads */
#include "concur/gil.h"
#include "concur/config.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/trace.h"
#include "concur/wait.h"

#include <stdatomic.h>

/* Threads: the GIL is the process's, shared by its threads through these
 * atomics; `held` and `released_for_wait` are each thread's own; the
 * settings are written by the thread that enables the GIL, before the
 * second thread starts. */
static _Atomic uint32_t word;     /* 1 while held */
static _Atomic uint32_t waiters;
static _Atomic uint32_t drop;     /* a waiter asks the holder to let go */
static _Atomic uint32_t switches; /* bumped at every take */
static _Atomic uint32_t yielders; /* holders waiting for a switch to happen */
static _Atomic int32_t holder;    /* the holder's tid, to poke */
static void (*poke)(int tid); /* set before the first thread starts */
static int enabled;
static _Atomic int frozen; /* read by every thread's hook */
static int64_t interval; /* set by cc_gil_enable */
static _Thread_local int held;
static _Thread_local int released_for_wait;

int cc_gil_enabled(void) { return enabled; }
int cc_gil_held(void) { return held; }
int cc_gil_wanted(void) { return held && atomic_load_explicit(&waiters, memory_order_relaxed) > 0; }

void cc_gil_set_poke(void (*fn)(int tid)) { poke = fn; }

static void taken(void) {
  held = 1;
  atomic_store_explicit(&holder, cc_tid(), memory_order_relaxed);
  atomic_store(&drop, 0);
  atomic_fetch_add(&switches, 1);
  if (atomic_load(&yielders))
    cc_futex_wake_plain(&switches, INT32_MAX);
}

void cc_gil_acquire(void) {
  uint32_t z = 0;
  if (atomic_compare_exchange_strong(&word, &z, 1)) {
    taken();
    return;
  }
  /* Traced: the wait for the GIL is a span of its own (its wake-ups are
   * not: they are the GIL's, not the program's). */
  int64_t since = CC_TRACING() ? cc_now() : 0;
  atomic_fetch_add(&waiters, 1);
  for (;;) {
    z = 0;
    if (atomic_compare_exchange_strong(&word, &z, 1))
      break;
    int r = cc_futex_wait_plain(&word, 1, cc_now_real() + interval);
    if (r == CC_ETIMEDOUT && atomic_load(&word) == 1) {
      /* Waited a whole interval: ask for it, and make the holder look. */
      atomic_store(&drop, 1);
      int32_t h = atomic_load_explicit(&holder, memory_order_relaxed);
      if (poke && h)
        poke(h);
    }
  }
  atomic_fetch_sub(&waiters, 1);
  taken();
  if (since)
    cc__trace_span(CC_TRACE_GIL, NULL, since, NULL);
}

void cc_gil_release(void) {
  held = 0;
  atomic_store_explicit(&holder, 0, memory_order_relaxed);
  atomic_store(&word, 0);
  if (atomic_load(&waiters))
    cc_futex_wake_plain(&word, 1);
}

/* A spin pays only if the thread that would end it can run meanwhile: not
 * when it waits for the GIL this thread holds, nor when it is a thread of
 * this process, which needs the GIL to get on. */
static int may_spin(int local) { return !(held && local) && !cc_gil_wanted(); }

static void around_wait(const void *word, int begin);
static const cc_wait_hooks hooks = {may_spin, around_wait};

void cc_gil_enable(int64_t switch_interval_ns) {
  if (enabled)
    return;
  cc_config c;
  cc_config_defaults(&c);
  interval = switch_interval_ns > 0 ? switch_interval_ns : (int64_t)(c.switch_interval * 1e9);
  enabled = 1;
  cc_gil_acquire();
  cc_wait_set_hooks(&hooks);
}

void cc_gil_check(void) {
  if (!enabled || !held || frozen || !atomic_load_explicit(&drop, memory_order_relaxed))
    return;
  uint32_t sn = atomic_load(&switches);
  atomic_fetch_add(&yielders, 1);
  cc_gil_release();
  /* Forced switching: wait until another thread took it, or nobody wants
   * it any more, however long a loaded machine takes to run the waiter.
   * Taking it straight back after one interval would let this thread keep
   * it for good while the waiter is not yet scheduled. */
  while (atomic_load(&switches) == sn && atomic_load(&waiters) > 0)
    cc_futex_wait_plain(&switches, sn, cc_now_real() + interval);
  atomic_fetch_sub(&yielders, 1);
  cc_gil_acquire();
}

void cc_gil_after_fork(void) {
  atomic_store(&word, enabled ? 1 : 0);
  atomic_store(&waiters, 0);
  atomic_store(&drop, 0);
  atomic_store(&yielders, 0);
  held = enabled;
  atomic_store(&holder, enabled ? cc_tid() : 0);
  released_for_wait = 0;
}

void cc_gil_freeze(void) { frozen = 1; }

/* The wait hook: lets go before a sleep, takes it back after. Frozen,
 * nobody lets go any more; but a thread that let go before the freeze
 * still takes the GIL back after its wait (and so waits for good: the
 * freezer keeps it), never running Lua without it. */
static void around_wait(const void *w, int begin) {
  (void)w;
  if (!enabled)
    return;
  if (begin && held && !frozen) {
    released_for_wait = 1;
    cc_gil_release();
  } else if (!begin && released_for_wait) {
    released_for_wait = 0;
    cc_gil_acquire();
  }
}
