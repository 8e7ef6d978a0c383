/* test_cond - Condition across processes and threads: exact wakes, timeouts, dead waiters */
#include "helpers.h"

#include "concur/cond.h"
#include "concur/error.h"

#include <stdint.h>

typedef struct box {
  cc_cond *c;
  _Atomic int sleeping;
  _Atomic int woken;
  _Atomic int timedout;
} box;

static box *box_new(void) {
  box *b = cc_arena_alloc(sizeof *b);
  memset(b, 0, sizeof *b);
  b->c = cc_cond_new(NULL);
  return b;
}

static void box_free(box *b) {
  cc_obj_unref(&b->c->hdr);
  cc_arena_free(b);
}

/* Waits once, at most `seconds` (i / 10). 0 when notified. */
static int sleeper(void *arg, int i) {
  box *b = arg;
  if (cc_lock_acquire(b->c->lock, CC_FOREVER))
    return 1;
  /* Counted under the lock, which the wait lets go of only once the
   * waiter is on the list: a notifier that sees the count finds it. */
  atomic_fetch_add(&b->sleeping, 1);
  int r = cc_cond_wait(b->c, cc_now() + (int64_t)i * 100 * MS);
  if (r == 0)
    atomic_fetch_add(&b->woken, 1);
  else if (r == CC_ETIMEDOUT)
    atomic_fetch_add(&b->timedout, 1);
  int mine = cc_lock_is_mine(b->c->lock);
  cc_lock_release(b->c->lock);
  return !mine ? 20 : r == 0 ? 0 : 10;
}

static void until_sleeping(box *b, int n) {
  int64_t end = cc_now() + 10000 * MS;
  while (atomic_load(&b->sleeping) < n) {
    if (cc_now() > end)
      fail_msg("%d of %d sleepers are waiting after 10 s", atomic_load(&b->sleeping), n);
    cc_sleep_until(cc_now() + MS);
  }
}

static int notify(box *b, int n) {
  assert_int_equal(cc_lock_acquire(b->c->lock, CC_FOREVER), 0);
  int r = cc_cond_notify(b->c, n);
  cc_lock_release(b->c->lock);
  return r;
}

static void notify_wakes_exactly_n(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    size_t live = cc_arena_live_blocks();
    box *b = box_new();
    party *p[5];
    for (int i = 0; i < 5; i++)
      p[i] = party_start(kind, sleeper, b, 100); /* 10 s */
    until_sleeping(b, 5);
    assert_int_equal(notify(b, 2), 2);
    cc_sleep_until(cc_now() + 200 * MS);
    assert_int_equal(atomic_load(&b->woken), 2);
    assert_int_equal(notify(b, INT32_MAX), 3);
    for (int i = 0; i < 5; i++)
      assert_int_equal(party_join(p[i], 10), 0);
    assert_int_equal(atomic_load(&b->woken), 5);
    assert_int_equal(notify(b, INT32_MAX), 0); /* nobody left */
    box_free(b);
    assert_int_equal(cc_arena_live_blocks(), live); /* every node freed */
  }
}

static void twenty_processes_and_their_threads_all_wake(void **state) {
  (void)state;
  box *b = box_new();
  party *p[24];
  for (int i = 0; i < 24; i++)
    p[i] = party_start(i % PARTY_KINDS, sleeper, b, 100);
  until_sleeping(b, 24);
  assert_int_equal(notify(b, 7), 7);
  assert_int_equal(notify(b, INT32_MAX), 17);
  for (int i = 0; i < 24; i++)
    assert_int_equal(party_join(p[i], 10), 0);
  assert_int_equal(atomic_load(&b->woken), 24);
  box_free(b);
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

/* Waiters that timed out are not woken again: a notify(1) after two timed
 * out reaches the one still there. */
static void timed_out_waiters_are_not_counted(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    box *b = box_new();
    party *quick[2], *slow = party_start(kind, sleeper, b, 100);
    for (int i = 0; i < 2; i++)
      quick[i] = party_start(kind, sleeper, b, 1); /* 0.1 s */
    until_sleeping(b, 3);
    for (int i = 0; i < 2; i++)
      assert_int_equal(party_join(quick[i], 10), 10);
    assert_int_equal(notify(b, 1), 1);
    assert_int_equal(party_join(slow, 10), 0);
    assert_int_equal(atomic_load(&b->timedout), 2);
    assert_int_equal(atomic_load(&b->woken), 1);
    box_free(b);
  }
}

/* A waiter killed in its wait (a process, or a thread's process) is never
 * what a notify spends itself on, and its node is freed: notify(1) wakes a
 * live waiter of every kind, at once. */
static void a_killed_waiter_is_skipped(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    size_t live = cc_arena_live_blocks();
    box *b = box_new();
    party *victim = party_start(kind == PARTY_THREAD ? PARTY_PROCESS : PARTY_THREAD_OF_PROCESS,
                                sleeper, b, 300);
    until_sleeping(b, 1);
    party *other = party_start(kind, sleeper, b, 100);
    until_sleeping(b, 2);
    kill(victim->pid, SIGKILL);
    assert_int_equal(party_join(victim, 10), 128 + SIGKILL);
    assert_int_equal(cc_lock_acquire(b->c->lock, CC_FOREVER), 0);
    assert_int_equal(cc_cond_waiters(b->c), 1); /* the dead one is taken off */
    int64_t t0 = cc_now();
    assert_int_equal(cc_cond_notify(b->c, 1), 1);
    assert_true(elapsed_ms(t0) < 100);
    cc_lock_release(b->c->lock);
    assert_int_equal(party_join(other, 10), 0);
    assert_int_equal(atomic_load(&b->woken), 1);
    box_free(b);
    assert_int_equal(cc_arena_live_blocks(), live);
  }
}

/* A waiter killed after the notify marked it, before it took the lock
 * back: the notify was its, and the next notify still reaches the next
 * waiter. */
static int holder_then_notify(void *arg, int i) {
  (void)i;
  box *b = arg;
  cc_lock_acquire(b->c->lock, CC_FOREVER);
  int r = cc_cond_notify(b->c, 1);
  atomic_store(&b->timedout, 99); /* the sign that it has notified */
  for (;;)
    cc_sleep_until(cc_now() + 1000 * MS); /* dies holding the lock */
  return r;
}

static void a_notifier_killed_holding_the_lock_leaves_it_usable(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    box *b = box_new();
    party *w = party_start(kind, sleeper, b, 100);
    until_sleeping(b, 1);
    party *n = party_start(kind == PARTY_THREAD ? PARTY_PROCESS : PARTY_THREAD_OF_PROCESS,
                           holder_then_notify, b, 0);
    while (atomic_load(&b->timedout) != 99)
      cc_sleep_until(cc_now() + MS);
    kill(n->pid, SIGKILL);
    assert_int_equal(party_join(n, 10), 128 + SIGKILL);
    /* The waiter takes the lock over from the dead notifier. */
    assert_int_equal(party_join(w, 10), 0);
    assert_int_equal(atomic_load(&b->woken), 1);
    int r = cc_lock_acquire(b->c->lock, CC_FOREVER);
    assert_true(r == 0 || r == CC_EOWNERDEAD);
    assert_int_equal(cc_cond_waiters(b->c), 0);
    cc_lock_release(b->c->lock);
    box_free(b);
  }
}

/* Ctrl-C in a wait: CC_EINTR, with the lock held again. */
static int interrupted_sleeper(void *arg, int i) {
  (void)i;
  box *b = arg;
  cc_lock_acquire(b->c->lock, CC_FOREVER);
  cc_interrupt();
  int r = cc_cond_wait(b->c, cc_now() + 5000 * MS);
  cc_interrupt_clear();
  int mine = cc_lock_is_mine(b->c->lock);
  int waiters = cc_cond_waiters(b->c);
  cc_lock_release(b->c->lock);
  return r == CC_EINTR && mine && waiters == 0 ? 0 : 1;
}

static void an_interrupted_wait_returns_with_the_lock(void **state) {
  (void)state;
  box *b = box_new();
  assert_int_equal(party_join(party_start(PARTY_PROCESS, interrupted_sleeper, b, 0), 10), 0);
  assert_int_equal(party_join(party_start(PARTY_THREAD_OF_PROCESS, interrupted_sleeper, b, 0),
                              10), 0);
  box_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(notify_wakes_exactly_n),
      cmocka_unit_test(twenty_processes_and_their_threads_all_wake),
      cmocka_unit_test(wait_needs_the_lock_and_times_out),
      cmocka_unit_test(timed_out_waiters_are_not_counted),
      cmocka_unit_test(a_killed_waiter_is_skipped),
      cmocka_unit_test(a_notifier_killed_holding_the_lock_leaves_it_usable),
      cmocka_unit_test(an_interrupted_wait_returns_with_the_lock),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
