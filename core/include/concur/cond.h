/* cond - Condition variables between processes and threads */
#ifndef CONCUR_COND_H
#define CONCUR_COND_H

#include "concur/lock.h"
#include "concur/sem.h"

/* CPython's multiprocessing algorithm: sleepers announce themselves on
 * `sleeping`, a notifier posts `wait_sem` once per sleeper it wakes and waits
 * for each to confirm on `woken`. notify(n) wakes exactly up to n waiters. */
typedef struct cc_cond {
  cc_obj hdr;
  cc_lock *lock; /* the user's lock (a reference is held) or &own */
  cc_lock own;
  cc_sem sleeping, woken, wait_sem;
} cc_cond;

extern const cc_type cc_cond_type;

/* A new condition over `lock` (a Lock or RLock, referenced), or over a new
 * RLock of its own when lock is NULL. NULL when the arena is full. */
cc_cond *cc_cond_new(cc_lock *lock);
/* Sets up a condition embedded in another object, over its own RLock. */
void cc_cond_init(cc_cond *c);
/* Releases the lock, waits for a notify or the deadline, acquires the lock
 * again. 0 when notified; CC_ETIMEDOUT; CC_ENOTOWNER when the caller does not
 * hold the lock; CC_EINTR (then the lock may not be held: the run is being
 * interrupted). */
int cc_cond_wait(cc_cond *c, int64_t deadline);
/* Wakes up to n waiters (INT32_MAX: all) and waits until they are awake.
 * CC_ENOTOWNER when the caller does not hold the lock; CC_EINTR. */
int cc_cond_notify(cc_cond *c, int n);

#endif
