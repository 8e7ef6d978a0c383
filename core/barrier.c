/* barrier - Barrier: parties wait for each other, generation after generation */
#include "concur/barrier.h"
#include "concur/error.h"
#include "concur/wait.h"

#include <stdint.h>

enum { FILLING = 0, DRAINING = 1, RESETTING = -1, BROKEN = -2 };

const cc_type cc_barrier_type = {"Barrier", sizeof(cc_barrier), NULL};

cc_barrier *cc_barrier_new(uint32_t parties) {
  if (parties < 1)
    return NULL;
  cc_barrier *b = cc_obj_new(&cc_barrier_type);
  if (!b)
    return NULL;
  cc_cond_init(&b->cond);
  b->parties = parties;
  b->state = FILLING;
  b->count = 0;
  return b;
}

static void breaks(cc_barrier *b) {
  b->state = BROKEN;
  cc_cond_notify(&b->cond, INT32_MAX);
}

/* Lets the last generation's parties leave before new ones come in. */
static void leave(cc_barrier *b) {
  if (b->count == 0 && (b->state == RESETTING || b->state == DRAINING)) {
    b->state = FILLING;
    cc_cond_notify(&b->cond, INT32_MAX);
  }
}

/* Leaves after an interrupt, with the lock released if it is held. */
static int interrupted(cc_barrier *b, int counted) {
  if (cc_lock_is_mine(b->cond.lock)) {
    b->count -= (uint32_t)counted;
    cc_lock_release(b->cond.lock);
  }
  return CC_EINTR;
}

int cc_barrier_wait(cc_barrier *b, int64_t deadline, cc_barrier_action action,
                    void *ud) {
  int r = cc_lock_acquire(b->cond.lock, CC_FOREVER);
  if (r == CC_EINTR)
    return r;
  while (b->state == DRAINING || b->state == RESETTING) {
    r = cc_cond_wait(&b->cond, CC_FOREVER);
    if (r == CC_EINTR)
      return interrupted(b, 0);
  }
  if (b->state == BROKEN) {
    cc_lock_release(b->cond.lock);
    return CC_EBROKEN;
  }
  int index = (int)b->count++;
  if ((uint32_t)index + 1 == b->parties) {
    if (action && action(ud) != 0) {
      breaks(b);
      r = CC_EBROKEN;
    } else {
      b->state = DRAINING;
      cc_cond_notify(&b->cond, INT32_MAX);
      r = index;
    }
  } else {
    r = index;
    while (b->state == FILLING) {
      int w = cc_cond_wait(&b->cond, deadline);
      if (w == CC_EINTR)
        return interrupted(b, 1);
      if (w == CC_ETIMEDOUT && b->state == FILLING) {
        breaks(b);
        break;
      }
    }
    if (b->state < 0)
      r = CC_EBROKEN;
  }
  b->count--;
  leave(b);
  cc_lock_release(b->cond.lock);
  return r;
}

int cc_barrier_reset(cc_barrier *b) {
  int r = cc_lock_acquire(b->cond.lock, CC_FOREVER);
  if (r == CC_EINTR)
    return r;
  if (b->count > 0) {
    if (b->state == FILLING || b->state == BROKEN)
      b->state = RESETTING;
  } else {
    b->state = FILLING;
  }
  cc_cond_notify(&b->cond, INT32_MAX);
  cc_lock_release(b->cond.lock);
  return 0;
}

int cc_barrier_abort(cc_barrier *b) {
  int r = cc_lock_acquire(b->cond.lock, CC_FOREVER);
  if (r == CC_EINTR)
    return r;
  breaks(b);
  cc_lock_release(b->cond.lock);
  return 0;
}

uint32_t cc_barrier_n_waiting(cc_barrier *b) {
  return b->state == FILLING ? b->count : 0;
}

int cc_barrier_broken(cc_barrier *b) { return b->state == BROKEN; }
