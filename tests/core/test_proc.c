/* test_proc - processes: start, join, exit codes, names, holds, limits */
#include "helpers.h"

#include "concur/error.h"
#include "concur/event.h"
#include "concur/lock.h"

#include <string.h>

static void exit_codes_and_names(void **state) {
  (void)state;
  cc_proc a, b, c;
  cc_proc_init(&a, NULL, 0);
  cc_proc_init(&b, NULL, 0);
  cc_proc_init(&c, "worker", 0);
  assert_string_equal(a.name, "Process-1");
  assert_string_equal(b.name, "Process-2");
  assert_string_equal(c.name, "worker");
  if (cc_proc_start(&a) == 0)
    cc_proc_exit(7);
  if (cc_proc_start(&b) == 0) {
    /* A grandchild's name nests. */
    cc_proc g;
    cc_proc_init(&g, NULL, 0);
    cc_proc_exit(strcmp(g.name, "Process-2:1") == 0 ? 0 : 1);
  }
  if (cc_proc_start(&c) == 0) {
    idle_child();
  }
  assert_int_equal(cc_proc_join(&a, cc_now() + 5000 * MS), 0);
  assert_int_equal(a.exitcode, 7);
  assert_int_equal(cc_proc_join(&b, cc_now() + 5000 * MS), 0);
  assert_int_equal(b.exitcode, 0);
  int64_t t0 = cc_now();
  assert_int_equal(cc_proc_join(&c, cc_now() + 100 * MS), CC_ETIMEDOUT);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 100 && ms < 150);
  assert_true(cc_proc_poll(&c));
  cc_proc_signal(&c, SIGTERM);
  assert_int_equal(cc_proc_join(&c, cc_now() + 5000 * MS), 0);
  assert_int_equal(c.exitcode, -SIGTERM);
  assert_string_equal(cc_proc_status(&c), "dead");
  assert_null(cc_proc_children());
  assert_int_equal(cc_proctab_live(), 1);
}

static void zombie_until_joined(void **state) {
  (void)state;
  cc_proc p;
  cc_proc_init(&p, NULL, 0);
  if (cc_proc_start(&p) == 0)
    cc_proc_exit(0);
  int64_t end = cc_now() + 5000 * MS;
  while (strcmp(cc_proc_status(&p), "zombie") != 0 && cc_now() < end)
    cc_sleep_until(cc_now() + MS);
  assert_string_equal(cc_proc_status(&p), "zombie");
  assert_int_equal(cc_proc_join(&p, CC_FOREVER), 0);
  assert_string_equal(cc_proc_status(&p), "dead");
}

static void child_keeps_what_parent_drops(void **state) {
  (void)state;
  cc_event *go = cc_event_new(), *done = cc_event_new();
  cc_lock *l = cc_lock_new(0);
  assert_int_equal(cc_hold_adopt(&go->hdr), 0);
  assert_int_equal(cc_hold_adopt(&done->hdr), 0);
  assert_int_equal(cc_hold_adopt(&l->hdr), 0);
  size_t before = cc_arena_live_blocks();
  cc_proc p;
  cc_proc_init(&p, NULL, 0);
  if (cc_proc_start(&p) == 0) {
    if (cc_event_wait(go, cc_now() + 5000 * MS))
      cc_proc_exit(1);
    /* The parent has dropped the lock: it must still be a lock here. */
    if (cc_lock_acquire(l, 0) || cc_lock_release(l) ||
        !cc_obj_is(&l->hdr, &cc_lock_type) || cc_hold_count(&l->hdr) != 1)
      cc_proc_exit(2);
    cc_event_set(done);
    cc_proc_exit(0);
  }
  /* The child's hold table is one more block. */
  assert_int_equal(cc_arena_live_blocks(), before + 1);
  cc_unhold(&l->hdr);
  assert_int_equal(cc_arena_live_blocks(), before + 1); /* the child holds it */
  cc_event_set(go);
  assert_int_equal(cc_proc_join(&p, cc_now() + 5000 * MS), 0);
  assert_int_equal(p.exitcode, 0);
  /* The child's exit freed the lock and its hold table. */
  assert_int_equal(cc_arena_live_blocks(), before - 1);
  cc_unhold(&go->hdr);
  cc_unhold(&done->hdr);
}

static void killed_child_releases_its_holds(void **state) {
  (void)state;
  size_t live = cc_arena_live_blocks();
  cc_event *e = cc_event_new();
  assert_int_equal(cc_hold_adopt(&e->hdr), 0);
  cc_proc p;
  cc_proc_init(&p, NULL, 0);
  if (cc_proc_start(&p) == 0) {
    idle_child();
  }
  cc_unhold(&e->hdr);
  /* The event and the child's hold table. */
  assert_int_equal(cc_arena_live_blocks(), live + 2);
  cc_proc_signal(&p, SIGKILL);
  assert_int_equal(cc_proc_join(&p, cc_now() + 5000 * MS), 0);
  assert_int_equal(p.exitcode, -SIGKILL);
  assert_int_equal(cc_arena_live_blocks(), live); /* the reaper released it */
}

static void limit_stops_a_fork_bomb(void **state) {
  (void)state;
  cc_proc p[70];
  int started = 0, r = 0;
  for (int i = 0; i < 70; i++) {
    cc_proc_init(&p[i], NULL, 0);
    r = cc_proc_start(&p[i]);
    if (r == 0) {
      for (;;)
        pause();
    }
    if (r < 0)
      break;
    started++;
  }
  assert_int_equal(r, CC_ELIMIT);
  assert_int_equal(started, 64);
  for (int i = 0; i < started; i++)
    cc_proc_signal(&p[i], SIGKILL);
  for (int i = 0; i < started; i++)
    assert_int_equal(cc_proc_join(&p[i], cc_now() + 5000 * MS), 0);
  assert_int_equal(cc_proctab_live(), 1);
}

static void daemons_may_not_have_children(void **state) {
  (void)state;
  cc_proc d;
  cc_proc_init(&d, NULL, 1);
  if (cc_proc_start(&d) == 0) {
    cc_proc c;
    cc_proc_init(&c, NULL, 0);
    cc_proc_exit(cc_proc_start(&c) == CC_EPROC ? 0 : 1);
  }
  assert_int_equal(cc_proc_join(&d, cc_now() + 5000 * MS), 0);
  assert_int_equal(d.exitcode, 0);
}

static void finish_terminates_daemons_joins_others(void **state) {
  (void)state;
  cc_proc d, n;
  cc_proc_init(&d, NULL, 1);
  cc_proc_init(&n, NULL, 0);
  if (cc_proc_start(&d) == 0) {
    idle_child();
  }
  if (cc_proc_start(&n) == 0) {
    cc_sleep_until(cc_now() + 100 * MS);
    cc_proc_exit(3);
  }
  assert_int_equal(cc_proc_finish_children(), 0);
  assert_int_equal(d.exitcode, -SIGTERM);
  assert_int_equal(n.exitcode, 3);
  assert_null(cc_proc_children());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(exit_codes_and_names),
      cmocka_unit_test(zombie_until_joined),
      cmocka_unit_test(child_keeps_what_parent_drops),
      cmocka_unit_test(killed_child_releases_its_holds),
      cmocka_unit_test(limit_stops_a_fork_bomb),
      cmocka_unit_test(daemons_may_not_have_children),
      cmocka_unit_test(finish_terminates_daemons_joins_others),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
