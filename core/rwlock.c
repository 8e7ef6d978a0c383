/* rwlock - RWLock: many readers or one writer, between processes and threads */
#include "concur/rwlock.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/trace.h"
#include "concur/wait.h"

static int held_by(const cc_obj *o, int32_t tid);

const cc_type cc_rwlock_type = {.name = "RWLock", .size = sizeof(cc_rwlock), .held_by = held_by};

cc_rwlock *cc_rwlock_new(int prefer_writers) {
  cc_rwlock *rw = cc_obj_new(&cc_rwlock_type);
  if (rw) {
    cc_lock_init(&rw->mu, 0);
    rw->prefer_writers = prefer_writers != 0;
  }
  return rw;
}

/* Who waiters wait for, after a change (mu held). */
static void set_holder(cc_rwlock *rw) {
  uint32_t h = rw->writer ? rw->writer : rw->nreaders ? (uint32_t)rw->readers[0].tid : 0;
  atomic_store(&rw->holder, h);
}

/* Reader i leaves (mu held): the last takes its slot. */
static void drop_reader(cc_rwlock *rw, uint32_t i) {
  rw->readers[i] = rw->readers[rw->nreaders - 1];
  rw->nreaders--;
}

static void drop_wwait(cc_rwlock *rw, uint32_t i) {
  rw->wwait[i] = rw->wwait[rw->writers_waiting - 1];
  rw->writers_waiting--;
}

/* After a holder of mu died in it: a slot it was moving may be there twice
 * or not be filled in, a count may be past the end. */
static void repair(cc_rwlock *rw) {
  if (rw->nreaders > CC_RWLOCK_MAX)
    rw->nreaders = CC_RWLOCK_MAX;
  if (rw->writers_waiting > CC_RWLOCK_MAX)
    rw->writers_waiting = CC_RWLOCK_MAX;
  for (uint32_t i = 0; i < rw->nreaders;) {
    int twice = 0;
    for (uint32_t j = 0; j < i && !twice; j++)
      twice = rw->readers[j].tid == rw->readers[i].tid;
    if (rw->readers[i].tid <= 0 || twice)
      drop_reader(rw, i);
    else
      i++;
  }
  for (uint32_t i = 0; i < rw->writers_waiting;) {
    int twice = 0;
    for (uint32_t j = 0; j < i && !twice; j++)
      twice = rw->wwait[j] == rw->wwait[i];
    if (rw->wwait[i] <= 0 || twice)
      drop_wwait(rw, i);
    else
      i++;
  }
  set_holder(rw);
}

/* Takes mu, which is held for a few instructions at a time: 0, or CC_EINTR
 * when may_stop (else an interrupt is held back until mu is taken). */
static int lock(cc_rwlock *rw, int may_stop) {
  /* A try only when it is free: a try of a held lock looks in /proc. */
  int r = atomic_load_explicit(&rw->mu.word, memory_order_relaxed) == 0
              ? cc_lock_acquire(&rw->mu, 0)
              : CC_ETIMEDOUT;
  if (r != 0 && r != CC_EOWNERDEAD) {
    /* Reported as a wait for the RWLock (a wait begun already, the
     * caller's, stays the one said). */
    cc_waiting w = {.kind = CC_WAIT_ACQUIRE, .obj = &rw->hdr, .owner = &rw->mu.word,
                    .deadline = CC_FOREVER};
    int interrupted = 0;
    cc_wait_begin(&w);
    while ((r = cc_lock_acquire(&rw->mu, CC_FOREVER)) != 0 && r != CC_EOWNERDEAD) {
      if (r == CC_EINTR && may_stop)
        break;
      if (r == CC_EINTR)
        interrupted = cc_interrupt_clear();
    }
    cc_wait_end(&w);
    if (interrupted)
      cc_interrupt_restore(interrupted);
    if (r == CC_EINTR)
      return r;
  }
  if (r == CC_EOWNERDEAD)
    repair(rw);
  return 0;
}

static void unlock(cc_rwlock *rw) { cc_lock_release(&rw->mu); }

/* 1 when tid reads it, 2 when it writes it, else 0 (mu held, or a look). */
static int holds(const cc_rwlock *rw, int32_t tid) {
  if ((int32_t)rw->writer == tid)
    return 2;
  uint32_t n = rw->nreaders < CC_RWLOCK_MAX ? rw->nreaders : CC_RWLOCK_MAX;
  for (uint32_t i = 0; i < n; i++)
    if (rw->readers[i].tid == tid)
      return 1;
  return 0;
}

static int held_by(const cc_obj *o, int32_t tid) { return holds((const cc_rwlock *)o, tid) != 0; }

/* Counts out the holders and waiting writers that died (mu held); a dead
 * holder's pid is kept for the next taker, and those who wait look again
 * at once. True when any was found. */
static int bury(cc_rwlock *rw) {
  int found = 0;
  if (rw->writer && !cc__tid_alive((int)rw->writer)) {
    rw->orphan = rw->writer_pid;
    rw->writer = 0;
    found = 1;
  }
  for (uint32_t i = 0; i < rw->nreaders;) {
    if (!cc__tid_alive(rw->readers[i].tid)) {
      rw->orphan = rw->readers[i].pid;
      drop_reader(rw, i);
      found = 1;
    } else {
      i++;
    }
  }
  for (uint32_t i = 0; i < rw->writers_waiting;) {
    if (!cc__tid_alive(rw->wwait[i])) {
      drop_wwait(rw, i);
      found = 1;
    } else
      i++;
  }
  set_holder(rw);
  if (found && rw->waiting) {
    atomic_fetch_add(&rw->seq, 1);
    cc_futex_wake(&rw->seq, INT32_MAX);
  }
  return found;
}

/* Whether the caller may have it now (mu held). A waiting writer counts
 * itself in writers_waiting, which keeps only readers back. */
static int can(const cc_rwlock *rw, int write) {
  if (rw->writer)
    return 0;
  if (write)
    return rw->nreaders == 0;
  return rw->nreaders < CC_RWLOCK_MAX && !(rw->prefer_writers && rw->writers_waiting);
}

/* The caller has it (mu held): 0, or CC_EOWNERDEAD for the first taker
 * after a holder died. */
static int got(cc_rwlock *rw, int write, int32_t me) {
  int64_t now = CC_TRACING() ? cc__trace_ticks() : 0;
  if (write) {
    rw->writer = (uint32_t)me;
    rw->writer_pid = cc_pid();
    rw->writer_since = now;
  } else {
    uint32_t i = rw->nreaders;
    rw->readers[i].tid = me;
    rw->readers[i].pid = cc_pid();
    rw->readers[i].since = now;
    rw->nreaders = i + 1; /* after the slot: a kill between leaves no half slot */
  }
  set_holder(rw);
  if (now)
    cc__trace_take(&rw->hdr, now);
  if (rw->orphan) {
    rw->dead_pid = rw->orphan;
    rw->orphan = 0;
    return CC_EOWNERDEAD;
  }
  return 0;
}

/* Sleeps (mu held, and held again on return) until the caller may have
 * it, the deadline, an interrupt or a deadlock; a dead holder is looked
 * for after 1 ms, then 2, 4, ... up to the wait slice. */
static int sleep_for(cc_rwlock *rw, int write, int32_t me, int64_t deadline) {
  cc_waiting wt = {.kind = CC_WAIT_ACQUIRE, .obj = &rw->hdr, .owner = &rw->holder,
                   .deadline = deadline};
  int64_t probe_ns = 1000000;
  int r;
  cc_wait_begin(&wt);
  for (;;) {
    uint32_t seen = atomic_load(&rw->seq);
    unlock(rw);
    int64_t probe = cc_now() + probe_ns;
    r = cc_futex_wait(&rw->seq, seen, probe < deadline ? probe : deadline);
    if (r == CC_ETIMEDOUT && probe < deadline)
      r = CC_WAIT_SLICE; /* the probe's time, not the caller's deadline */
    if (probe_ns < CC_WAIT_SLICE_NS)
      probe_ns *= 2;
    lock(rw, 0);
    if (r == CC_WAIT_SLICE || r == CC_ETIMEDOUT)
      bury(rw);
    if (can(rw, write)) {
      r = got(rw, write, me);
      break;
    }
    if (r == CC_ETIMEDOUT || r == CC_EINTR || r == CC_EDEADLK)
      break;
  }
  cc_wait_end(&wt);
  return r;
}

/* Why the caller cannot wait for it (mu held): a reader when as many read
 * as can, a try, a writer when as many wait to write as can; else 0. */
static int refusal(const cc_rwlock *rw, int write, int64_t deadline) {
  if (!write && rw->nreaders == CC_RWLOCK_MAX)
    return CC_ELIMIT;
  if (deadline == 0)
    return CC_ETIMEDOUT;
  if (write && rw->writers_waiting == CC_RWLOCK_MAX)
    return CC_ELIMIT;
  return 0;
}

static int take(cc_rwlock *rw, int write, int64_t deadline) {
  int32_t me = cc_tid();
  int r = lock(rw, 1);
  if (r)
    return r;
  if (holds(rw, me)) {
    unlock(rw);
    return CC_EDEADLK;
  }
  if (can(rw, write)) {
    r = got(rw, write, me);
    unlock(rw);
    return r;
  }
  /* Refused (a try, a full table): are the holders there still? */
  if (refusal(rw, write, deadline) && bury(rw) && can(rw, write)) {
    r = got(rw, write, me);
    unlock(rw);
    return r;
  }
  if ((r = refusal(rw, write, deadline))) {
    unlock(rw);
    return r;
  }
  rw->waiting++;
  if (write)
    rw->wwait[rw->writers_waiting++] = me;
  r = sleep_for(rw, write, me, deadline);
  rw->waiting--;
  int wake = 0;
  if (write) {
    for (uint32_t i = 0; i < rw->writers_waiting; i++)
      if (rw->wwait[i] == me) {
        drop_wwait(rw, i);
        break;
      }
    /* A writer that gave up: readers it kept back may go now. */
    wake = r != 0 && r != CC_EOWNERDEAD && rw->prefer_writers && rw->writers_waiting == 0 &&
           rw->waiting;
    if (wake)
      atomic_fetch_add(&rw->seq, 1);
  }
  unlock(rw);
  if (wake)
    cc_futex_wake(&rw->seq, INT32_MAX);
  return r;
}

int cc_rwlock_read(cc_rwlock *rw, int64_t deadline) { return take(rw, 0, deadline); }
int cc_rwlock_write(cc_rwlock *rw, int64_t deadline) { return take(rw, 1, deadline); }

int cc_rwlock_release(cc_rwlock *rw) {
  int32_t me = cc_tid();
  int64_t since = 0;
  int wake = 0;
  lock(rw, 0);
  if ((int32_t)rw->writer == me) {
    since = rw->writer_since;
    rw->writer = 0;
    wake = 1;
  } else {
    uint32_t i = 0;
    while (i < rw->nreaders && rw->readers[i].tid != me)
      i++;
    if (i == rw->nreaders) {
      unlock(rw);
      return CC_ENOTOWNER;
    }
    since = rw->readers[i].since;
    drop_reader(rw, i);
    /* While others read, nobody who waits can go. */
    wake = rw->nreaders == 0;
  }
  set_holder(rw);
  wake = wake && rw->waiting;
  if (wake)
    atomic_fetch_add(&rw->seq, 1);
  unlock(rw);
  if (wake)
    cc_futex_wake(&rw->seq, INT32_MAX);
  if (CC_TRACING() && since)
    cc__trace_give(&rw->hdr, since, cc__trace_ticks());
  return 0;
}

uint32_t cc_rwlock_readers(cc_rwlock *rw) { return rw->nreaders; }
uint32_t cc_rwlock_writers_waiting(cc_rwlock *rw) { return rw->writers_waiting; }
int cc_rwlock_written(cc_rwlock *rw) { return rw->writer != 0; }
int cc_rwlock_mine(cc_rwlock *rw) { return holds(rw, cc_tid()); }
int cc_rwlock_dead_owner(cc_rwlock *rw) { return rw->dead_pid; }
