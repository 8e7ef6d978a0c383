/* test_lock - Lock and RLock across real processes */
#include "helpers.h"

#include "concur/error.h"
#include "concur/lock.h"

typedef struct shared {
  cc_lock *lock;
  long counter;
} shared;

enum { WORKERS = 8, INCREMENTS = 100000 };

static int incrementer(void *arg, int i) {
  (void)i;
  shared *s = arg;
  for (int k = 0; k < INCREMENTS; k++) {
    if (cc_lock_acquire(s->lock, CC_FOREVER) != 0)
      return 2;
    s->counter++; /* a plain int: only the lock protects it */
    if (cc_lock_release(s->lock) != 0)
      return 3;
  }
  return 0;
}

static void eight_processes_increment_exactly(void **state) {
  (void)state;
  shared *s = cc_arena_alloc(sizeof *s);
  s->lock = cc_lock_new(0);
  s->counter = 0;
  pid_t pids[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    pids[i] = spawn(incrementer, s, i);
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(await(pids[i], 60), 0);
  assert_int_equal(s->counter, (long)WORKERS * INCREMENTS);
  assert_false(cc_lock_locked(s->lock));
  cc_obj_unref(&s->lock->hdr);
  cc_arena_free(s);
}

static void try_and_timeout(void **state) {
  (void)state;
  cc_lock *l = cc_lock_new(0);
  assert_int_equal(cc_lock_acquire(l, 0), 0);
  assert_true(cc_lock_locked(l));
  /* Not recursive: the owner itself times out. */
  assert_int_equal(cc_lock_acquire(l, 0), CC_ETIMEDOUT);
  int64_t t0 = cc_now();
  assert_int_equal(cc_lock_acquire(l, cc_now() + 200 * MS), CC_ETIMEDOUT);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 200 && ms < 250);
  assert_int_equal(cc_lock_release(l), 0);
  assert_int_equal(cc_lock_release(l), CC_EVALUE);
  cc_obj_unref(&l->hdr);
}

static int release_other(void *arg, int i) {
  (void)i;
  return cc_lock_release(arg) == CC_ENOTOWNER ? 0 : 1;
}

static void rlock_recursion_and_owner(void **state) {
  (void)state;
  cc_lock *r = cc_lock_new(1);
  for (int i = 0; i < 5; i++)
    assert_int_equal(cc_lock_acquire(r, 0), 0);
  assert_int_equal(r->count, 5);
  /* Another process may not release it. */
  assert_int_equal(await(spawn(release_other, r, 0), 10), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(cc_lock_release(r), 0);
    assert_true(cc_lock_locked(r));
  }
  assert_int_equal(cc_lock_release(r), 0);
  assert_false(cc_lock_locked(r));
  assert_int_equal(cc_lock_release(r), CC_EVALUE);
  cc_obj_unref(&r->hdr);
}

static int hold_forever(void *arg, int i) {
  (void)i;
  cc_lock *l = arg;
  if (cc_lock_acquire(l, CC_FOREVER))
    return 1;
  for (;;)
    pause();
}

static void owner_death_hands_over(void **state) {
  (void)state;
  for (int recursive = 0; recursive <= 1; recursive++) {
    cc_lock *l = cc_lock_new(recursive);
    pid_t holder = spawn(hold_forever, l, 0);
    while (!cc_lock_locked(l))
      cc_sleep_until(cc_now() + MS);
    assert_int_equal(cc_lock_acquire(l, cc_now() + 50 * MS), CC_ETIMEDOUT);
    kill(holder, SIGKILL);
    /* Not reaped yet: the holder is a zombie, and still counts as dead. */
    int64_t t0 = cc_now();
    assert_int_equal(cc_lock_acquire(l, cc_now() + 5000 * MS), CC_EOWNERDEAD);
    assert_true(elapsed_ms(t0) < 1000);
    assert_int_equal(cc_lock_dead_owner(l), holder);
    assert_true(cc_lock_is_mine(l));
    assert_int_equal(cc_lock_release(l), 0);
    assert_int_equal(await(holder, 5), 128 + SIGKILL);
    assert_int_equal(cc_lock_acquire(l, 0), 0);
    cc_lock_release(l);
    cc_obj_unref(&l->hdr);
  }
}

/* A try (deadline 0) does not wait, but takes over from a dead holder. */
static void a_try_takes_over_from_a_dead_holder(void **state) {
  (void)state;
  cc_lock *l = cc_lock_new(0);
  pid_t holder = spawn(hold_forever, l, 0);
  while (!cc_lock_locked(l))
    cc_sleep_until(cc_now() + MS);
  assert_int_equal(cc_lock_acquire(l, 0), CC_ETIMEDOUT);
  kill(holder, SIGKILL);
  assert_int_equal(await(holder, 5), 128 + SIGKILL);
  assert_int_equal(cc_lock_acquire(l, 0), CC_EOWNERDEAD);
  assert_int_equal(cc_lock_dead_owner(l), holder);
  assert_true(cc_lock_is_mine(l));
  assert_int_equal(cc_lock_release(l), 0);
  cc_obj_unref(&l->hdr);
}

static int hold_briefly(void *arg, int i) {
  (void)i;
  cc_lock *l = arg;
  if (cc_lock_acquire(l, CC_FOREVER))
    return 1;
  cc_sleep_until(cc_now() + 300 * MS);
  return cc_lock_release(l) ? 2 : 0;
}

/* A waiter that has given up spinning sleeps, and the release wakes it at
 * once (not at its next look for a dead holder). */
static void a_sleeping_waiter_is_woken_by_the_release(void **state) {
  (void)state;
  cc_lock *l = cc_lock_new(0);
  pid_t holder = spawn(hold_briefly, l, 0);
  while (!cc_lock_locked(l))
    cc_sleep_until(cc_now() + MS);
  int64_t t0 = cc_now();
  assert_int_equal(cc_lock_acquire(l, cc_now() + 5000 * MS), 0);
  double ms = elapsed_ms(t0);
  assert_true(ms < 1000);
  assert_int_equal(await(holder, 5), 0);
  assert_int_equal(cc_lock_release(l), 0);
  cc_obj_unref(&l->hdr);
}

static void interrupt_wakes_a_waiter(void **state) {
  (void)state;
  cc_lock *l = cc_lock_new(0);
  assert_int_equal(cc_lock_acquire(l, 0), 0);
  cc_interrupt();
  assert_int_equal(cc_lock_acquire(l, CC_FOREVER), CC_EINTR);
  cc_interrupt_clear();
  cc_lock_release(l);
  cc_obj_unref(&l->hdr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(eight_processes_increment_exactly),
      cmocka_unit_test(try_and_timeout),
      cmocka_unit_test(rlock_recursion_and_owner),
      cmocka_unit_test(owner_death_hands_over),
      cmocka_unit_test(interrupt_wakes_a_waiter),
      cmocka_unit_test(a_try_takes_over_from_a_dead_holder),
      cmocka_unit_test(a_sleeping_waiter_is_woken_by_the_release),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
