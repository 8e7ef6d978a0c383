/* ready - the run's doorbell: waiting for any of many objects at once */
#ifndef CONCUR_READY_H
#define CONCUR_READY_H

#include "concur/wait.h"

#include <stdatomic.h>
#include <stdint.h>

/*
 * DESIGN. A wait for any of several objects (concur.wait) cannot sleep on
 * all their words at once, so it sleeps on one word of the run's, `epoch`.
 * Every change that can make an object ready (a put on a Queue, a
 * Semaphore's release, an Event's set) rings the bell: while anybody waits
 * so (`watchers`), it bumps `epoch` and wakes its sleepers; otherwise it
 * costs the load of a word nobody writes. A wait that also polls
 * descriptors (a Connection, a socket, a child's pidfd) cannot sleep on a
 * futex: it polls them beside an epoll set of its own that holds the run's
 * eventfd, edge-triggered, which the bell writes to while such a wait is
 * on (`pollers`). Each write makes every such set ready once, so no waiter
 * resets anything another waiter needs. The waiter counts itself in before
 * it looks at the objects, and the ringer changes the object before it
 * looks at the count (both sequentially consistent): either the waiter
 * sees the change, or the ringer sees the waiter.
 */
typedef struct cc__bell {
  _Atomic uint32_t watchers; /* waits on the bell now */
  _Atomic uint32_t pollers;  /* of them, those that poll descriptors */
  _Atomic uint32_t epoch;    /* bumped at every ring while watched */
  int fd;                    /* the eventfd, made before any fork */
  uint32_t nslots;           /* the process table's */
  /* The same counts by process slot: a process killed while it waits is
   * counted out when it is reaped, or every ring would pay for it. */
  struct { _Atomic uint32_t watchers, pollers; } *by_slot;
} cc__bell;

extern cc__bell *cc__the_bell;

/* Makes the bell (in the arena) and its eventfd: once, before any fork,
 * after the process table. 0, CC_EARENAFULL or CC_ESYS. */
int cc_ready_init(void);
/* The process of that slot was reaped: what its waits counted goes. */
void cc__ready_forget_slot(int slot);

void cc__ready_ring(void);
/* Says that an object may have become ready: call it after the change. */
static inline void cc_ready_ring(void) {
  cc__bell *b = cc__the_bell;
  if (b && atomic_load(&b->watchers))
    cc__ready_ring();
}

/* Tells whether what is waited for is ready: the number of ready objects
 * (> 0), 0, or a negative CC_E* code that ends the wait. It is given the
 * descriptors with their revents of the last poll (0 before the first),
 * and may change their events. */
typedef int (*cc_ready_check)(void *ctx, struct pollfd *fds, int nfds);

/* Waits until check(ctx, fds, nfds) is not 0: it is called first, then
 * after every ring of the bell, every readiness of the descriptors and at
 * least every wait slice. w, when not NULL, is begun for the observer
 * (deadlock reports) and the tracer. Returns check's result, 0 at the
 * deadline, CC_EINTR, the observer's code (CC_EDEADLK), CC_ENOMEM or
 * CC_ESYS. The caller owns fds. */
int cc_ready_wait(cc_ready_check check, void *ctx, struct pollfd *fds, int nfds, cc_waiting *w,
                  int64_t deadline);

#endif
