/* deadlock - finds threads that wait forever for locks held by each other */
#ifndef CONCUR_DEADLOCK_H
#define CONCUR_DEADLOCK_H

#include "concur/arena.h"

#include <stddef.h>
#include <stdint.h>

/* DESIGN. A thread that has waited CC_DEADLOCK_AFTER_NS for a lock, with no
 * deadline, writes itself into a table in the arena (who it is, the lock it
 * waits for, and a number for this one wait), and while it goes on waiting
 * it follows the chain now and then: the lock's owner (a tid, from the lock
 * word), the lock that owner waits for, its owner... A chain that comes back
 * to the thread is a cycle; one that stays the same, wait for wait, for
 * CC_DEADLOCK_STABLE_NS is a deadlock: none of its threads can move, since
 * each waits for a lock only another of them can release. Nothing is written
 * while locks are taken quickly: the table costs only waits that are long
 * already. A cycle of one thread waiting for a plain Lock it holds itself is
 * not reported: another thread may release a Lock (as in CPython), and that
 * idiom is common.
 *
 * The cycle's thread with the lowest tid reports it, once: under the host,
 * it writes the cycle to stderr and tells the supervisor (SIGUSR1), which
 * ends the run with exit 3 and keeps waiting to be killed meanwhile;
 * elsewhere (a stock lua5.4, the core's own tests), its acquire returns
 * CC_EDEADLK, and cc_deadlock_report() says what the cycle was. */

#define CC_DEADLOCK_AFTER_NS 100000000LL  /* 0.1 s */
#define CC_DEADLOCK_STABLE_NS 1000000000LL /* 1 s */

/* Makes the table in the arena; after cc_arena_init, before any fork. Without
 * it (an arena made by a test alone) nothing is ever detected.
 * CC_EARENAFULL when the arena has no room for it. */
int cc_deadlock_init(void);
/* The process the reporter tells, with SIGUSR1; 0 (the default): nobody,
 * the acquire fails with CC_EDEADLK instead. */
void cc_deadlock_set_supervisor(int pid);
/* The calling thread's name in reports ("MainThread" until set); copied. */
void cc_deadlock_set_name(const char *name);

/* For cc_lock_acquire, in its wait with no deadline for the lock l, whose
 * word owner_word holds its owner's tid (CC_TID_MASK): `since` is when the
 * wait began. Registers the thread once the wait is long enough, and looks
 * for a cycle through it. Returns 0 (go on waiting) or CC_EDEADLK (give up:
 * reported, and no supervisor to end the run). */
int cc__deadlock_check(const cc_obj *l, const _Atomic uint32_t *owner_word, int64_t since);
/* Ends the calling thread's registered wait, if any. */
void cc__deadlock_done(void);

/* The last cycle reported by this thread, in words; "" when none. */
const char *cc_deadlock_report(void);

#endif
