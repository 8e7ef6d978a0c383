/* test_event - Event across real processes */
#include "helpers.h"

#include "concur/error.h"
#include "concur/event.h"

typedef struct gate {
  cc_event *ev;
  _Atomic int waiting;
} gate;

static int waiter(void *arg, int i) {
  (void)i;
  gate *g = arg;
  atomic_fetch_add(&g->waiting, 1);
  return cc_event_wait(g->ev, cc_now() + 10000 * MS) == 0 ? 0 : 1;
}

static void set_wakes_every_waiter(void **state) {
  (void)state;
  gate *g = cc_arena_alloc(sizeof *g);
  g->ev = cc_event_new();
  atomic_store(&g->waiting, 0);
  pid_t p[10];
  for (int i = 0; i < 10; i++)
    p[i] = spawn(waiter, g, i);
  while (atomic_load(&g->waiting) < 10)
    cc_sleep_until(cc_now() + MS);
  cc_sleep_until(cc_now() + 20 * MS);
  cc_event_set(g->ev);
  for (int i = 0; i < 10; i++)
    assert_int_equal(await(p[i], 5), 0);
  cc_obj_unref(&g->ev->hdr);
  cc_arena_free(g);
}

static void wait_times_out_and_clear_rearms(void **state) {
  (void)state;
  cc_event *e = cc_event_new();
  int64_t t0 = cc_now();
  assert_int_equal(cc_event_wait(e, cc_now() + 100 * MS), CC_ETIMEDOUT);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 100 && ms < 150);
  cc_event_set(e);
  assert_true(cc_event_is_set(e));
  assert_int_equal(cc_event_wait(e, 0), 0);
  cc_event_clear(e);
  assert_false(cc_event_is_set(e));
  assert_int_equal(cc_event_wait(e, 0), CC_ETIMEDOUT);
  cc_obj_unref(&e->hdr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(set_wakes_every_waiter),
      cmocka_unit_test(wait_times_out_and_clear_rearms),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
