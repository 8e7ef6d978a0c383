/* lock - Lock and RLock between processes and threads, with owner-death recovery */
#include "concur/lock.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/lockorder.h"
#include "concur/trace.h"
#include "concur/wait.h"

static int held_by(const cc_obj *o, int32_t tid) {
  return (int32_t)(atomic_load(&((const cc_lock *)o)->word) & CC_LOCK_TID) == tid;
}

const cc_type cc_lock_type = {.name = "Lock", .size = sizeof(cc_lock), .held_by = held_by};
const cc_type cc_rlock_type = {.name = "RLock", .size = sizeof(cc_lock), .held_by = held_by};

cc_lock *cc_lock_new(int recursive) {
  cc_lock *l = cc_obj_new(recursive ? &cc_rlock_type : &cc_lock_type);
  if (l) {
    cc_lock_init(l, recursive);
    cc_lock_set_known(l, &l->hdr);
  }
  return l;
}

void cc_lock_init(cc_lock *l, int recursive) {
  atomic_store(&l->word, 0);
  atomic_store(&l->owner_pid, 0);
  l->count = 0;
  l->recursive = (uint16_t)(recursive != 0);
  l->known = 0;
}

void cc_lock_set_known(cc_lock *l, const cc_obj *by) {
  l->known = (uint16_t)((const char *)l - (const char *)by + 1);
}

/* The object its user knows l by (itself, a Condition, a Value). */
static const cc_obj *user_object(const cc_lock *l) {
  return (const cc_obj *)((const char *)l - (l->known - 1));
}

/* l is the calling thread's now; want: it could have waited for it, and
 * the order of l after the locks it holds is yet to be written. */
static void owned(cc_lock *l, int want) {
  atomic_store_explicit(&l->owner_pid, cc_pid(), memory_order_relaxed);
  l->count = 1;
  if (l->known) {
    cc__lockorder_took(l, want);
    if (CC_TRACING()) {
      int64_t now = cc__trace_ticks();
      cc__lockorder_stamp(l, now);
      cc__trace_take(user_object(l), now);
    }
  }
}


/* Spins for the lock (cc_spin_take): a holder usually lets go within a few
 * hundred nanoseconds, sooner than sleeping in the kernel and being woken. */
static int spin(cc_lock *l, uint32_t mine, int64_t deadline) {
  int local = atomic_load_explicit(&l->owner_pid, memory_order_relaxed) == cc_pid();
  return cc_spin_take(&l->word, mine, deadline, local);
}

static int sleep_for(cc_lock *l, uint32_t me, int64_t deadline);

int cc_lock_acquire(cc_lock *l, int64_t deadline) {
  uint32_t me = (uint32_t)cc_tid();
  uint32_t w = 0;
  if (atomic_compare_exchange_strong(&l->word, &w, me)) {
    owned(l, deadline != 0);
    return 0;
  }
  if (l->recursive && (w & CC_LOCK_TID) == me) {
    l->count++;
    return 0;
  }
  if (deadline == 0) {
    /* A try: no spin and no sleep, but a holder that died is taken over. */
    if (w & CC_LOCK_TID && !cc__tid_alive((int)(w & CC_LOCK_TID))) {
      int dead = atomic_load(&l->owner_pid);
      if (atomic_compare_exchange_strong(&l->word, &w, me | (w & CC_LOCK_WAITERS))) {
        owned(l, 0);
        l->dead_pid = dead;
        return CC_EOWNERDEAD;
      }
    }
    return CC_ETIMEDOUT;
  }
  /* The order is written before the wait: a run that deadlocks has it. */
  if (l->known && cc__held.n)
    cc__lockorder_want(l);
  if (spin(l, me, deadline)) {
    owned(l, 0);
    return 0;
  }
  /* A Condition's lock is waited for as the Condition, its user's name. */
  cc_waiting wt = {.kind = CC_WAIT_ACQUIRE, .obj = l->known ? user_object(l) : &l->hdr,
                   .owner = &l->word, .deadline = deadline};
  cc_wait_begin(&wt);
  int r = sleep_for(l, me, deadline);
  cc_wait_end(&wt);
  return r;
}

/* The slow part of cc_lock_acquire: sleeps until l is free, the deadline,
 * an interrupt, a holder's death, or (with no deadline) a deadlock (the
 * observer's CC_EDEADLK). */
static int sleep_for(cc_lock *l, uint32_t me, int64_t deadline) {
  /* A holder that died is looked for after 1 ms of waiting, then after
   * 2, 4, ... up to the wait slice: quickly after a kill, rarely otherwise. */
  int64_t probe_ns = 1000000;
  uint32_t w;
  for (;;) {
    w = atomic_load(&l->word);
    if (w == 0) {
      /* Others may still sleep here: keep the waiters bit. */
      if (atomic_compare_exchange_strong(&l->word, &w, me | CC_LOCK_WAITERS)) {
        owned(l, 0);
        return 0;
      }
      continue;
    }
    if (!(w & CC_LOCK_WAITERS) &&
        !atomic_compare_exchange_strong(&l->word, &w, w | CC_LOCK_WAITERS))
      continue;
    w |= CC_LOCK_WAITERS;
    int64_t probe = cc_now() + probe_ns;
    int r = cc_futex_wait(&l->word, w, probe < deadline ? probe : deadline);
    if (r == CC_ETIMEDOUT && probe < deadline)
      r = CC_WAIT_SLICE; /* the probe's time, not the caller's deadline */
    if (probe_ns < CC_WAIT_SLICE_NS)
      probe_ns *= 2;
    if (r == CC_WAIT_SLICE || r == CC_ETIMEDOUT) {
      /* Nobody released it for a while: is the holder still there? */
      if (atomic_load(&l->word) == w && !cc__tid_alive((int)(w & CC_LOCK_TID))) {
        int dead = atomic_load(&l->owner_pid);
        if (atomic_compare_exchange_strong(&l->word, &w, me | CC_LOCK_WAITERS)) {
          owned(l, 0);
          l->dead_pid = dead;
          return CC_EOWNERDEAD;
        }
        continue;
      }
    }
    if (r == CC_ETIMEDOUT || r == CC_EINTR || r == CC_EDEADLK)
      return r;
    /* Woken (or the word changed): spin again rather than sleep at once
     * while the holder keeps taking it back, each time paying a wake-up.
     * Others may still sleep here: keep the waiters bit. */
    if (r == 0 && spin(l, me | CC_LOCK_WAITERS, deadline)) {
      owned(l, 0);
      return 0;
    }
  }
}

int cc_lock_dead_owner(cc_lock *l) { return l->dead_pid; }

/* cc_lock_release's end, traced: the hold ends when it is free (read
 * before, as the next holder's begins after). A Lock released by another
 * thread than its holder (on whose stack it is not) is said given, so that
 * the holder's hold ends. */
static int release_traced(cc_lock *l) {
  int64_t taken_at = cc__lockorder_taken_at(l), given_at = cc__trace_ticks();
  cc__lockorder_gave(l);
  if (atomic_exchange(&l->word, 0) & CC_LOCK_WAITERS)
    cc_futex_wake(&l->word, 1);
  cc__trace_give(user_object(l), taken_at, given_at);
  return 0;
}

int cc_lock_release(cc_lock *l) {
  uint32_t w = atomic_load(&l->word);
  if (!(w & CC_LOCK_TID))
    return CC_EVALUE;
  if (l->recursive) {
    if ((w & CC_LOCK_TID) != (uint32_t)cc_tid())
      return CC_ENOTOWNER;
    if (--l->count > 0)
      return 0;
  }
  if (CC_TRACING() && l->known)
    return release_traced(l);
  if (l->known) /* off the releaser's stack: found only if it held l */
    cc__lockorder_gave(l);
  if (atomic_exchange(&l->word, 0) & CC_LOCK_WAITERS)
    cc_futex_wake(&l->word, 1);
  return 0;
}

int cc_lock_locked(cc_lock *l) {
  return (atomic_load(&l->word) & CC_LOCK_TID) != 0;
}

int cc_lock_is_mine(cc_lock *l) {
  return (atomic_load(&l->word) & CC_LOCK_TID) == (uint32_t)cc_tid();
}

uint32_t cc__lock_release_all(cc_lock *l) {
  uint32_t depth = l->count;
  l->count = 1;
  cc_lock_release(l);
  return depth;
}

int cc__lock_restore(cc_lock *l, uint32_t depth, int64_t deadline) {
  /* An interrupt is held back until the lock is taken again, then
   * returned with it held: the caller's caller (a Condition's wait, a
   * guard) goes on as the owner, and releases it. */
  int interrupted = 0, r;
  while ((r = cc_lock_acquire(l, deadline)) == CC_EINTR)
    interrupted = cc_interrupt_clear();
  if (interrupted)
    cc_interrupt_restore(interrupted);
  if (r == 0 || r == CC_EOWNERDEAD)
    l->count = depth ? depth : 1;
  return interrupted && (r == 0 || r == CC_EOWNERDEAD) ? CC_EINTR : r;
}
