/* test_barrier - Barrier generations, timeouts, abort and reset */
#include "helpers.h"

#include "concur/barrier.h"
#include "concur/error.h"

typedef struct meet {
  cc_barrier *b;
  _Atomic int arrived[3]; /* per generation */
  _Atomic int early;      /* left a generation before all had arrived */
  _Atomic int zero;       /* how many got index 0 */
} meet;

enum { PARTIES = 4, ROUNDS = 3 };

static int barrier_party(void *arg, int i) {
  (void)i;
  meet *m = arg;
  for (int g = 0; g < ROUNDS; g++) {
    atomic_fetch_add(&m->arrived[g], 1);
    int r = cc_barrier_wait(m->b, cc_now() + 5000 * MS, NULL, NULL);
    if (r < 0)
      return 1;
    if (atomic_load(&m->arrived[g]) != PARTIES)
      atomic_fetch_add(&m->early, 1);
    if (r == 0)
      atomic_fetch_add(&m->zero, 1);
  }
  return 0;
}

static void generations(void **state) {
  (void)state;
  meet *m = cc_arena_alloc(sizeof *m);
  memset(m, 0, sizeof *m);
  m->b = cc_barrier_new(PARTIES);
  pid_t p[PARTIES];
  for (int i = 0; i < PARTIES; i++)
    p[i] = spawn(barrier_party, m, i);
  for (int i = 0; i < PARTIES; i++)
    assert_int_equal(await(p[i], 20), 0);
  assert_int_equal(atomic_load(&m->early), 0);
  assert_int_equal(atomic_load(&m->zero), ROUNDS); /* one index 0 a round */
  assert_false(cc_barrier_broken(m->b));
  cc_obj_unref(&m->b->hdr);
  cc_arena_free(m);
}

static int count = 0;
static int action(void *ud) {
  (void)ud;
  count++;
  return 0;
}

static void timeout_breaks_and_reset_mends(void **state) {
  (void)state;
  cc_barrier *b = cc_barrier_new(2);
  int64_t t0 = cc_now();
  assert_int_equal(cc_barrier_wait(b, cc_now() + 100 * MS, NULL, NULL), CC_EBROKEN);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 100 && ms < 150);
  assert_true(cc_barrier_broken(b));
  assert_int_equal(cc_barrier_wait(b, CC_FOREVER, NULL, NULL), CC_EBROKEN);
  assert_int_equal(cc_barrier_reset(b), 0);
  assert_false(cc_barrier_broken(b));
  cc_barrier *one = cc_barrier_new(1);
  assert_int_equal(cc_barrier_wait(one, CC_FOREVER, action, NULL), 0);
  assert_int_equal(count, 1);
  cc_obj_unref(&one->hdr);
  cc_obj_unref(&b->hdr);
}

static int aborted_wait(void *arg, int i) {
  (void)i;
  return cc_barrier_wait(arg, cc_now() + 5000 * MS, NULL, NULL) == CC_EBROKEN ? 0 : 1;
}

static void abort_releases_waiters(void **state) {
  (void)state;
  cc_barrier *b = cc_barrier_new(3);
  pid_t p[2] = {spawn(aborted_wait, b, 0), spawn(aborted_wait, b, 1)};
  while (cc_barrier_n_waiting(b) < 2)
    cc_sleep_until(cc_now() + MS);
  assert_int_equal(cc_barrier_abort(b), 0);
  assert_int_equal(await(p[0], 5), 0);
  assert_int_equal(await(p[1], 5), 0);
  assert_true(cc_barrier_broken(b));
  cc_obj_unref(&b->hdr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(generations),
      cmocka_unit_test(timeout_breaks_and_reset_mends),
      cmocka_unit_test(abort_releases_waiters),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
