/* cond - Condition variables between processes and threads */
#ifndef CONCUR_COND_H
#define CONCUR_COND_H

#include "concur/lock.h"

/*
 * DESIGN. Each waiter puts a node of its own (in the arena) at the end of
 * the condition's list, with the lock held, and sleeps on the node's state
 * word. notify(n) marks up to n nodes from the front notified, takes them
 * off and wakes them: a marked waiter returns 0 whatever its deadline, so
 * exactly up to n return notified, and the notifier waits for nobody. Each
 * node holds a robust process-shared mutex, locked by its waiter for the
 * whole wait: when the waiter dies the kernel marks the mutex, a notifier
 * finds it so with a try-lock (no system call) and takes the node off, so
 * a notify is never spent on the dead. A waiter takes its own node off
 * (if it is still on) and frees it once it holds the lock again. Every
 * change to the list is one store, so a death anywhere leaves it whole.
 */
typedef struct cc_cond {
  cc_obj hdr;
  cc_lock *lock; /* the user's lock (a reference is held) or &own */
  cc_lock own;
  _Atomic uint32_t head; /* arena offset of the first waiter's node, or 0 */
} cc_cond;

extern const cc_type cc_cond_type;

/* A new condition over `lock` (a Lock or RLock, referenced), or over a new
 * RLock of its own when lock is NULL. NULL when the arena is full. */
cc_cond *cc_cond_new(cc_lock *lock);
/* Sets up a condition embedded in another object, over its own RLock; the
 * object's destructor calls cc_cond_fini. */
void cc_cond_init(cc_cond *c);
void cc_cond_fini(cc_cond *c);
/* Releases the lock, waits for a notify or the deadline, acquires the lock
 * again (also when interrupted: as CPython, it returns holding it). 0 when
 * notified; CC_ETIMEDOUT; CC_EINTR; CC_ENOTOWNER when the caller does not
 * hold the lock; CC_EARENAFULL when there is no room for its node. */
int cc_cond_wait(cc_cond *c, int64_t deadline);
/* Wakes up to n live waiters (INT32_MAX: all) and returns how many it woke,
 * or CC_ENOTOWNER when the caller does not hold the lock. Never blocks. */
int cc_cond_notify(cc_cond *c, int n);
/* How many waiters there are, dead ones taken off first (lock held). */
int cc_cond_waiters(cc_cond *c);

#endif
