/* test_cond - Condition across real processes */
#include "helpers.h"

#include "concur/cond.h"
#include "concur/error.h"

#include <stdint.h>

typedef struct box {
  cc_cond *c;
  _Atomic int sleeping;
  _Atomic int woken;
} box;

static int sleeper(void *arg, int i) {
  (void)i;
  box *b = arg;
  if (cc_lock_acquire(b->c->lock, CC_FOREVER))
    return 1;
  atomic_fetch_add(&b->sleeping, 1);
  int r = cc_cond_wait(b->c, cc_now() + 3000 * MS);
  if (r == 0)
    atomic_fetch_add(&b->woken, 1);
  cc_lock_release(b->c->lock);
  return r == 0 ? 0 : 10;
}

static void notify_wakes_exactly_n(void **state) {
  (void)state;
  box *b = cc_arena_alloc(sizeof *b);
  b->c = cc_cond_new(NULL);
  atomic_store(&b->sleeping, 0);
  atomic_store(&b->woken, 0);
  pid_t p[5];
  for (int i = 0; i < 5; i++)
    p[i] = spawn(sleeper, b, i);
  while (atomic_load(&b->sleeping) < 5)
    cc_sleep_until(cc_now() + MS);
  assert_int_equal(cc_lock_acquire(b->c->lock, CC_FOREVER), 0);
  assert_int_equal(cc_cond_notify(b->c, 2), 0);
  cc_lock_release(b->c->lock);
  cc_sleep_until(cc_now() + 200 * MS);
  assert_int_equal(atomic_load(&b->woken), 2);
  assert_int_equal(cc_lock_acquire(b->c->lock, CC_FOREVER), 0);
  assert_int_equal(cc_cond_notify(b->c, INT32_MAX), 0);
  cc_lock_release(b->c->lock);
  for (int i = 0; i < 5; i++)
    assert_int_equal(await(p[i], 5), 0);
  assert_int_equal(atomic_load(&b->woken), 5);
  cc_obj_unref(&b->c->hdr);
  cc_arena_free(b);
}

static void wait_needs_the_lock_and_times_out(void **state) {
  (void)state;
  cc_lock *l = cc_lock_new(0);
  cc_cond *c = cc_cond_new(l);
  cc_obj_unref(&l->hdr); /* the condition keeps its lock alive */
  assert_int_equal(cc_cond_wait(c, 0), CC_ENOTOWNER);
  assert_int_equal(cc_cond_notify(c, 1), CC_ENOTOWNER);
  assert_int_equal(cc_lock_acquire(c->lock, 0), 0);
  int64_t t0 = cc_now();
  assert_int_equal(cc_cond_wait(c, cc_now() + 100 * MS), CC_ETIMEDOUT);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 100 && ms < 150);
  assert_true(cc_lock_is_mine(c->lock)); /* held again after the wait */
  /* A notify after a timed-out waiter wakes nobody and does not block. */
  assert_int_equal(cc_cond_notify(c, 1), 0);
  cc_lock_release(c->lock);
  size_t live = cc_arena_live_blocks();
  cc_obj_unref(&c->hdr);
  assert_int_equal(cc_arena_live_blocks(), live - 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(notify_wakes_exactly_n),
      cmocka_unit_test(wait_needs_the_lock_and_times_out),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
