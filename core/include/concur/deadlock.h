/* deadlock - what every thread of a run holds and waits for; waits that cannot end */
#ifndef CONCUR_DEADLOCK_H
#define CONCUR_DEADLOCK_H

#include "concur/arena.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* DESIGN. Each thread of the run that waits long has an entry in a table
 * in the arena (its party): its tid, process and name, and its long wait,
 * written by wait.c's observer once the wait has lasted
 * CC_DEADLOCK_AFTER_NS with no deadline: what it waits for (kind, object,
 * a lock's owner word or a join's tid), where (the Lua file:line,
 * cc_ident_where), and a number for this one wait. Each of its sleeps
 * after that (at most a wait slice apart) counts one, and
 * looks for two kinds of deadlock:
 *
 * - A cycle: the lock's owner (from the lock word) or the thread joined,
 *   the one that one waits for, ... back to this thread. Each can move only
 *   if another of them does.
 * - All asleep: every thread of every live process of the run (counted in
 *   the process table) is in a long wait with no deadline. Nobody is left
 *   to change what any of them waits for.
 *
 * Neither is taken from one look, whose reads are not one instant: the
 * finder marks each member's wait and sleep count, and reports only when
 * every member is still in the same wait and has slept twice since, so has
 * looked at what it waits for after the mark and found it unchanged. The
 * member with the lowest tid reports, once: under the host, it writes the
 * report to stderr and tells the supervisor (SIGUSR1), which ends the run
 * with exit 3; elsewhere (a stock lua5.4, the core's tests) its wait
 * returns CC_EDEADLK, and cc_deadlock_report() says what it was. A thread
 * waiting for a plain Lock it holds itself is not a cycle: another thread
 * may release a Lock (as in CPython), and that idiom is common. Nothing of
 * this runs while waits are short. What a thread holds is found only for
 * a report: the Locks and RLocks among its process's objects whose owner
 * word says that thread. */

#define CC_DEADLOCK_AFTER_NS 100000000LL /* 0.1 s */

/* Makes the table in the arena and watches waits (wait.c's observer);
 * after cc_proctab_init, before any fork. Without it (an arena made by a
 * test alone) nothing is ever detected. CC_EARENAFULL when the arena has
 * no room for it. */
int cc_deadlock_init(void);
/* The process the reporter tells, with SIGUSR1; 0 (the default): nobody,
 * the wait fails with CC_EDEADLK instead. */
void cc_deadlock_set_supervisor(int pid);
/* The calling thread ends: its entry goes. */
void cc_deadlock_thread_end(void);
/* The process pid was reaped: its threads' entries go. */
void cc__deadlock_forget_pid(int pid);

/* The last deadlock reported by this thread, in words; "" when none. */
const char *cc_deadlock_report(void);

#endif
