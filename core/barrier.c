/* barrier - Barrier: parties wait for each other, generation after generation */
#include "concur/barrier.h"
#include "concur/error.h"
#include "concur/wait.h"

#include <stdint.h>

enum { FILLING = 0, DRAINING = 1, RESETTING = -1, BROKEN = -2 };

static void barrier_destroy(cc_obj *o);

const cc_type cc_barrier_type = {
    .name = "Barrier", .size = sizeof(cc_barrier), .destroy = barrier_destroy};

static cc_life *lives(cc_barrier *b) { return cc_arena_ptr(b->lives); }

cc_barrier *cc_barrier_new(uint32_t parties) {
  if (parties < 1)
    return NULL;
  cc_life *l = cc_arena_alloc(parties * sizeof *l);
  if (!l)
    return NULL;
  cc_barrier *b = cc_obj_new(&cc_barrier_type);
  if (!b) {
    cc_arena_free(l);
    return NULL;
  }
  for (uint32_t i = 0; i < parties; i++)
    cc_life_init(&l[i]);
  cc_cond_init(&b->cond);
  b->lives = cc_arena_off(l);
  b->parties = parties;
  b->state = FILLING;
  b->count = 0;
  return b;
}

static void barrier_destroy(cc_obj *o) {
  cc_barrier *b = (cc_barrier *)o;
  cc_cond_fini(&b->cond);
  for (uint32_t i = 0; i < b->parties; i++)
    cc_life_fini(&lives(b)[i]);
  cc_arena_free(lives(b));
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

/* Counts the parties inside again from their tokens (lock held): one that
 * died there is counted out, and breaks a filling barrier, as leaving it
 * any other way than through the last arrival does. */
static void look(cc_barrier *b) {
  uint32_t live = 0;
  for (uint32_t i = 0; i < b->parties; i++)
    live += !cc_life_gone(&lives(b)[i]);
  if (live == b->count)
    return;
  b->count = live;
  if (b->state == FILLING)
    breaks(b);
  else
    leave(b);
}

/* The barrier's lock; a holder that died is counted out. 0 or CC_EINTR. */
static int lock(cc_barrier *b) {
  int r = cc_lock_acquire(b->cond.lock, CC_FOREVER);
  if (r == CC_EOWNERDEAD) {
    look(b);
    r = 0;
  }
  return r;
}

/* A wait on the condition that wakes every so often to look for a party
 * that died inside (after 1 ms, then 2, 4, ... up to the wait slice).
 * Returns as cc_cond_wait, CC_ETIMEDOUT only at the caller's deadline. */
static int wait_looking(cc_barrier *b, int64_t deadline, int64_t *probe_ns) {
  int64_t probe = cc_now() + *probe_ns;
  if (*probe_ns < CC_WAIT_SLICE_NS)
    *probe_ns *= 2;
  int r = cc_cond_wait(&b->cond, probe < deadline ? probe : deadline);
  if (r == CC_ETIMEDOUT && probe < deadline) {
    look(b);
    r = 0;
  }
  return r;
}

/* Leaves after an interrupt or a deadlock (code), with the lock released
 * if it is held. */
static int interrupted(cc_barrier *b, cc_life *mine, int code) {
  if (cc_lock_is_mine(b->cond.lock)) {
    if (mine) {
      cc_life_drop(mine);
      b->count--;
    }
    cc_lock_release(b->cond.lock);
  }
  return code;
}

static int barrier_wait(cc_barrier *b, int64_t deadline, cc_barrier_action action, void *ud);

int cc_barrier_wait(cc_barrier *b, int64_t deadline, cc_barrier_action action,
                    void *ud) {
  cc_waiting w = {.kind = CC_WAIT_WAIT, .obj = &b->hdr, .deadline = deadline};
  cc_wait_begin(&w);
  int r = barrier_wait(b, deadline, action, ud);
  cc_wait_end(&w);
  return r;
}

static int barrier_wait(cc_barrier *b, int64_t deadline, cc_barrier_action action,
                        void *ud) {
  int64_t probe_ns = 1000000;
  int r = lock(b);
  if (r)
    return r; /* CC_EINTR, CC_EDEADLK */
  while (b->state == DRAINING || b->state == RESETTING) {
    r = wait_looking(b, CC_FOREVER, &probe_ns);
    if (r == CC_EINTR || r == CC_EDEADLK)
      return interrupted(b, NULL, r);
  }
  if (b->state == BROKEN) {
    cc_lock_release(b->cond.lock);
    return CC_EBROKEN;
  }
  /* A token first, then the count: a death between the two is counted
   * out by the next look. */
  cc_life *mine = NULL;
  for (uint32_t i = 0; !mine && i < b->parties; i++)
    if (cc_life_claim(&lives(b)[i]))
      mine = &lives(b)[i];
  if (!mine) {
    /* Every token is held by a party still inside (a generation leaving). */
    look(b);
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
      int w = wait_looking(b, deadline, &probe_ns);
      if (w == CC_EINTR || w == CC_EDEADLK)
        return interrupted(b, mine, w);
      if (w == CC_ETIMEDOUT && b->state == FILLING) {
        breaks(b);
        break;
      }
    }
    if (b->state < 0)
      r = CC_EBROKEN;
  }
  cc_life_drop(mine);
  b->count--;
  leave(b);
  cc_lock_release(b->cond.lock);
  return r;
}

int cc_barrier_reset(cc_barrier *b) {
  int r = lock(b);
  if (r)
    return r; /* CC_EINTR, CC_EDEADLK */
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
  int r = lock(b);
  if (r)
    return r; /* CC_EINTR, CC_EDEADLK */
  breaks(b);
  cc_lock_release(b->cond.lock);
  return 0;
}

uint32_t cc_barrier_n_waiting(cc_barrier *b) {
  return b->state == FILLING ? b->count : 0;
}

int cc_barrier_broken(cc_barrier *b) { return b->state == BROKEN; }
