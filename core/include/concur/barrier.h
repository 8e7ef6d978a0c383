/* barrier - Barrier: parties wait for each other, generation after generation */
#ifndef CONCUR_BARRIER_H
#define CONCUR_BARRIER_H

#include "concur/cond.h"
#include "concur/ident.h"

/* CPython's threading.Barrier over a process-shared Condition: state is
 * filling (0), draining (1), resetting (-1) or broken (-2). Each party in
 * the barrier holds one of `parties` tokens (cc_life) from its arrival to
 * its leaving, so that one that died inside is seen: the others look every
 * so often while they wait, and break the barrier (as its timeout would)
 * or, once it was let go, count the dead one out. */
typedef struct cc_barrier {
  cc_obj hdr;
  cc_cond cond;
  uint32_t parties;
  int32_t state;
  uint32_t count;
  uint32_t lives; /* arena offset of cc_life[parties] */
} cc_barrier;

extern const cc_type cc_barrier_type;

/* The action run by the last party to arrive, before the others are let go;
 * a non-zero return breaks the barrier. */
typedef int (*cc_barrier_action)(void *ud);

/* A new barrier for `parties` (>= 1) with one reference owned by the caller;
 * NULL when the arena is full. */
cc_barrier *cc_barrier_new(uint32_t parties);
/* Waits until `parties` callers are waiting. Returns the caller's arrival
 * index (0 .. parties-1), or CC_EBROKEN (broken, aborted, reset while
 * waiting, the action failed, a party died in it, or this wait timed out:
 * a timeout breaks the barrier, as in CPython), or CC_EINTR. `action` may
 * be NULL. */
int cc_barrier_wait(cc_barrier *b, int64_t deadline, cc_barrier_action action,
                    void *ud);
/* Back to the empty state; current waiters get CC_EBROKEN. CC_EINTR. */
int cc_barrier_reset(cc_barrier *b);
/* Breaks the barrier: current and future waiters get CC_EBROKEN. CC_EINTR. */
int cc_barrier_abort(cc_barrier *b);
uint32_t cc_barrier_n_waiting(cc_barrier *b);
int cc_barrier_broken(cc_barrier *b);

#endif
