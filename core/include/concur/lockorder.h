/* lockorder - the orders in which threads take locks; the deadlocks they could make */
#ifndef CONCUR_LOCKORDER_H
#define CONCUR_LOCKORDER_H

#include <stdint.h>
#include <stdio.h>

/* DESIGN. Each thread keeps the locks it holds on a short stack of its own
 * (thread-local: taking the first lock and giving the last cost a store).
 * When it goes for a lock while it holds others (and not with a try, which
 * cannot wait forever), each pair "held, then wanted" is an edge of one
 * graph of the whole run, kept in a table in the arena, so that every
 * process's edges meet: the first thread to take a pair writes the edge,
 * with the names of both locks, its own and its process's names and where
 * (the Lua file:line) it went for the second. The edge is written before
 * the thread waits, so that a run that does deadlock has both. At the end
 * of the run, a cycle in the graph (A then B here, B then A there) is a
 * deadlock that this run escaped by luck or timing, and is reported with
 * its places and a scenario, a column per thread, of how it would happen.
 *
 * A lock is known by the object its user made (a Lock, an RLock, the
 * Condition whose own lock it is) through its type and serial, not its
 * address, which a freed lock's successor may reuse. A Lock released by
 * another thread than its holder (CPython allows it) stays on the holder's
 * stack until that thread next goes for a lock while it holds one, when
 * entries whose lock word no longer names the thread are dropped. Locks
 * inside other objects (a Queue's, a Dict's, a Barrier's) are not recorded:
 * nothing else is taken while they are held. */

struct cc_lock;

#define CC_LOCKORDER_HELD_MAX 32

typedef struct cc__lockorder_held {
  uint32_t n;
  struct cc_lock *l[CC_LOCKORDER_HELD_MAX];
  int64_t at[CC_LOCKORDER_HELD_MAX]; /* traced: when each was taken */
} cc__lockorder_held;

/* The calling thread's stack (read by the inline calls below). */
extern _Thread_local cc__lockorder_held cc__held;

/* Makes the table in the arena; after cc_proctab_init, before any fork.
 * Without it (an arena made by a test alone) nothing is recorded. Returns
 * CC_EARENAFULL when the arena has no room for it. */
int cc_lockorder_init(void);
/* Forgets every recorded order and the calling thread's stack (between
 * cases of a test that share an arena). */
void cc_lockorder_clear(void);
/* Writes a warning for each cycle of the run's lock orders to f (if not
 * NULL), and says when some orders went unrecorded; returns the number of
 * cycles. */
int cc_lockorder_report(FILE *f);

/* lock.c's: the calling thread goes for l, which it may wait for, while it
 * holds others: writes the edges from each to l. */
void cc__lockorder_want(struct cc_lock *l);
/* lock.c's: the slow parts of cc__lockorder_took and cc__lockorder_gave. */
void cc__lockorder_push(struct cc_lock *l, int want);
void cc__lockorder_drop(struct cc_lock *l);

/* lock.c's: the calling thread took l (want: and it could have waited, so
 * the edges to it are written unless they were before it waited). */
static inline void cc__lockorder_took(struct cc_lock *l, int want) {
  if (cc__held.n == 0) {
    cc__held.l[0] = l;
    cc__held.n = 1;
    return;
  }
  cc__lockorder_push(l, want);
}

/* lock.c's, tracing: l, just taken, was taken at t. */
static inline void cc__lockorder_stamp(struct cc_lock *l, int64_t t) {
  uint32_t n = cc__held.n;
  if (n && cc__held.l[n - 1] == l)
    cc__held.at[n - 1] = t;
}

/* lock.c's, tracing: when the calling thread took l (0: not known). */
static inline int64_t cc__lockorder_taken_at(const struct cc_lock *l) {
  for (uint32_t i = cc__held.n; i-- > 0;)
    if (cc__held.l[i] == l)
      return cc__held.at[i];
  return 0;
}

/* lock.c's: l is free again, released by the calling thread. */
static inline void cc__lockorder_gave(struct cc_lock *l) {
  uint32_t n = cc__held.n;
  if (n && cc__held.l[n - 1] == l)
    cc__held.n = n - 1;
  else if (n)
    cc__lockorder_drop(l);
}

#endif
