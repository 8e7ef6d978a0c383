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

/* Parties of every kind at once: each kind in turn as the others. */
static void generations(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    size_t live = cc_arena_live_blocks();
    meet *m = cc_arena_alloc(sizeof *m);
    memset(m, 0, sizeof *m);
    m->b = cc_barrier_new(PARTIES);
    party *p[PARTIES];
    for (int i = 0; i < PARTIES; i++)
      p[i] = party_start(i == 0 ? kind : (kind + i) % PARTY_KINDS, barrier_party, m, i);
    for (int i = 0; i < PARTIES; i++)
      assert_int_equal(party_join(p[i], 20), 0);
    assert_int_equal(atomic_load(&m->early), 0);
    assert_int_equal(atomic_load(&m->zero), ROUNDS); /* one index 0 a round */
    assert_false(cc_barrier_broken(m->b));
    cc_obj_unref(&m->b->hdr);
    cc_arena_free(m);
    assert_int_equal(cc_arena_live_blocks(), live);
  }
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
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    cc_barrier *b = cc_barrier_new(3);
    party *p[2] = {party_start(kind, aborted_wait, b, 0), party_start(kind, aborted_wait, b, 1)};
    while (cc_barrier_n_waiting(b) < 2)
      cc_sleep_until(cc_now() + MS);
    assert_int_equal(cc_barrier_abort(b), 0);
    assert_int_equal(party_join(p[0], 5), 0);
    assert_int_equal(party_join(p[1], 5), 0);
    assert_true(cc_barrier_broken(b));
    cc_obj_unref(&b->hdr);
  }
}

/* A party killed inside wait(), as a process or a thread's process, breaks
 * the barrier for the others at once (not at their timeout), and after a
 * reset the barrier serves a full set of parties again. */
static int broken_soon(void *arg, int i) {
  (void)i;
  int64_t t0 = cc_now();
  int r = cc_barrier_wait(arg, cc_now() + 10000 * MS, NULL, NULL);
  return r != CC_EBROKEN ? 1 : cc_now() - t0 > 5000 * MS ? 2 : 0;
}

static int meets(void *arg, int i) {
  (void)i;
  return cc_barrier_wait(arg, cc_now() + 10000 * MS, NULL, NULL) >= 0 ? 0 : 1;
}

static int forever(void *ud) {
  (void)ud;
  for (;;)
    cc_sleep_until(cc_now() + 1000 * MS);
  return 0;
}

static int last_in_a_stuck_action(void *arg, int i) {
  (void)i;
  return cc_barrier_wait(arg, CC_FOREVER, forever, NULL);
}

static int waits_forever(void *arg, int i) {
  (void)i;
  return cc_barrier_wait(arg, CC_FOREVER, NULL, NULL);
}

static void a_party_killed_inside_breaks_it(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    int victim_kind = kind == PARTY_THREAD ? PARTY_PROCESS : PARTY_THREAD_OF_PROCESS;
    for (int in_action = 0; in_action < 2; in_action++) {
      size_t live = cc_arena_live_blocks();
      /* Killed while it waits for a fourth party, or as the third, in the
       * action, holding the barrier's lock. */
      uint32_t n = in_action ? 3 : 4;
      cc_barrier *b = cc_barrier_new(n);
      party *p[4], *victim = NULL;
      if (!in_action) {
        victim = party_start(victim_kind, waits_forever, b, 0);
        while (cc_barrier_n_waiting(b) < 1)
          cc_sleep_until(cc_now() + MS);
      }
      for (int i = 0; i < 2; i++)
        p[i] = party_start(kind, broken_soon, b, i);
      while (cc_barrier_n_waiting(b) < (in_action ? 2u : 3u))
        cc_sleep_until(cc_now() + MS);
      if (in_action) {
        victim = party_start(victim_kind, last_in_a_stuck_action, b, 0);
        while (cc_barrier_n_waiting(b) < 3)
          cc_sleep_until(cc_now() + MS);
      }
      kill(victim->pid, SIGKILL);
      assert_int_equal(party_join(victim, 10), 128 + SIGKILL);
      for (int i = 0; i < 2; i++)
        assert_int_equal(party_join(p[i], 10), 0);
      assert_true(cc_barrier_broken(b));
      assert_int_equal(cc_barrier_reset(b), 0);
      for (uint32_t i = 0; i < n; i++)
        p[i] = party_start((kind + (int)i) % PARTY_KINDS, meets, b, (int)i);
      for (uint32_t i = 0; i < n; i++)
        assert_int_equal(party_join(p[i], 10), 0);
      assert_false(cc_barrier_broken(b));
      cc_obj_unref(&b->hdr);
      assert_int_equal(cc_arena_live_blocks(), live);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(generations),
      cmocka_unit_test(timeout_breaks_and_reset_mends),
      cmocka_unit_test(abort_releases_waiters),
      cmocka_unit_test(a_party_killed_inside_breaks_it),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
