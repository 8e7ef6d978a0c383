/* test_sem - Semaphore and BoundedSemaphore across real processes */
#include "helpers.h"

#include "concur/error.h"
#include "concur/sem.h"

typedef struct room {
  cc_sem *sem;
  _Atomic int inside;
  _Atomic int most;
  _Atomic int visits;
} room;

static int visitor(void *arg, int i) {
  room *r = arg;
  for (int k = 0; k < 200; k++) {
    if (cc_sem_wait(r->sem, CC_FOREVER))
      return 1;
    int now = atomic_fetch_add(&r->inside, 1) + 1;
    int m = atomic_load(&r->most);
    while (now > m && !atomic_compare_exchange_weak(&r->most, &m, now))
      ;
    atomic_fetch_add(&r->visits, 1);
    /* Stay a moment so that others pile up at the door. */
    struct timespec ts = {0, (long)(10000 + 1000 * i)};
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&r->inside, 1);
    if (cc_sem_post(r->sem))
      return 2;
  }
  return 0;
}

static void never_a_fifth(void **state) {
  (void)state;
  room *r = cc_arena_alloc(sizeof *r);
  r->sem = cc_sem_new(4, 0);
  atomic_store(&r->inside, 0);
  atomic_store(&r->most, 0);
  atomic_store(&r->visits, 0);
  pid_t p[12];
  for (int i = 0; i < 12; i++)
    p[i] = spawn(visitor, r, i);
  for (int i = 0; i < 12; i++)
    assert_int_equal(await(p[i], 60), 0);
  assert_int_equal(atomic_load(&r->most), 4);
  assert_int_equal(atomic_load(&r->visits), 12 * 200);
  assert_int_equal(cc_sem_value(r->sem), 4);
  cc_obj_unref(&r->sem->hdr);
  cc_arena_free(r);
}

static void timeouts_and_try(void **state) {
  (void)state;
  cc_sem *s = cc_sem_new(1, 0);
  assert_int_equal(cc_sem_trywait(s), 0);
  assert_int_equal(cc_sem_trywait(s), CC_ETIMEDOUT);
  int64_t t0 = cc_now();
  assert_int_equal(cc_sem_wait(s, cc_now() + 100 * MS), CC_ETIMEDOUT);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 100 && ms < 150);
  assert_int_equal(cc_sem_post(s), 0);
  assert_int_equal(cc_sem_post(s), 0); /* unbounded: may go above the start */
  assert_int_equal(cc_sem_value(s), 2);
  cc_obj_unref(&s->hdr);
}

static void bounded_refuses_too_many_releases(void **state) {
  (void)state;
  cc_sem *b = cc_sem_new(2, 1);
  assert_int_equal(cc_sem_post(b), CC_EVALUE);
  assert_int_equal(cc_sem_wait(b, 0), 0);
  assert_int_equal(cc_sem_post(b), 0);
  assert_int_equal(cc_sem_post(b), CC_EVALUE);
  assert_int_equal(cc_sem_value(b), 2);
  cc_obj_unref(&b->hdr);
}

static int poster(void *arg, int i) {
  (void)i;
  cc_sleep_until(cc_now() + 50 * MS);
  return cc_sem_post(arg) ? 1 : 0;
}

static void post_from_another_process_wakes(void **state) {
  (void)state;
  cc_sem *s = cc_sem_new(0, 0);
  pid_t p = spawn(poster, s, 0);
  assert_int_equal(cc_sem_wait(s, cc_now() + 5000 * MS), 0);
  assert_int_equal(await(p, 5), 0);
  cc_obj_unref(&s->hdr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(never_a_fifth),
      cmocka_unit_test(timeouts_and_try),
      cmocka_unit_test(bounded_refuses_too_many_releases),
      cmocka_unit_test(post_from_another_process_wakes),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
