/* cond - Condition variables between processes and threads */
#include "concur/cond.h"
#include "concur/error.h"
#include "concur/wait.h"

static void cond_destroy(cc_obj *o) {
  cc_cond *c = (cc_cond *)o;
  if (c->lock != &c->own)
    cc_obj_unref(&c->lock->hdr);
}

const cc_type cc_cond_type = {"Condition", sizeof(cc_cond), cond_destroy};

void cc_cond_init(cc_cond *c) {
  cc_lock_init(&c->own, 1);
  c->lock = &c->own;
  cc_sem_init(&c->sleeping, 0, 0);
  cc_sem_init(&c->woken, 0, 0);
  cc_sem_init(&c->wait_sem, 0, 0);
}

cc_cond *cc_cond_new(cc_lock *lock) {
  cc_cond *c = cc_obj_new(&cc_cond_type);
  if (!c)
    return NULL;
  cc_cond_init(c);
  if (lock) {
    cc_obj_ref(&lock->hdr);
    c->lock = lock;
  }
  return c;
}

int cc_cond_wait(cc_cond *c, int64_t deadline) {
  if (!cc_lock_is_mine(c->lock))
    return CC_ENOTOWNER;
  cc_sem_post(&c->sleeping);
  uint32_t depth = cc__lock_release_all(c->lock);
  int r = cc_sem_wait(&c->wait_sem, deadline);
  cc_sem_post(&c->woken);
  /* The lock is taken back whatever happened, without a deadline, as in
   * CPython, an interrupt included (returned with the lock held). */
  int q = cc__lock_restore(c->lock, depth, CC_FOREVER);
  return q == CC_EINTR ? CC_EINTR : r;
}

int cc_cond_notify(cc_cond *c, int n) {
  if (!cc_lock_is_mine(c->lock))
    return CC_ENOTOWNER;
  /* Waiters that timed out since the last notify confirmed on `woken`
   * without being woken: take them off the sleepers' count. */
  while (cc_sem_trywait(&c->woken) == 0)
    cc_sem_trywait(&c->sleeping);
  int sleepers = 0;
  while (sleepers < n && cc_sem_trywait(&c->sleeping) == 0) {
    cc_sem_post(&c->wait_sem);
    sleepers++;
  }
  for (int i = 0; i < sleepers; i++) {
    int r = cc_sem_wait(&c->woken, CC_FOREVER);
    if (r)
      return r;
  }
  /* Posts nobody took because their waiter timed out just now. */
  while (cc_sem_trywait(&c->wait_sem) == 0)
    ;
  return 0;
}
