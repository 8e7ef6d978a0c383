/* test_deadlock - cycles of lock waits, runs all asleep, between threads and processes */
#include "helpers.h"

#include "concur/deadlock.h"
#include "concur/error.h"
#include "concur/event.h"
#include "concur/lock.h"
#include "concur/queue.h"

#include <pthread.h>
#include <stdatomic.h>

enum { RING_MAX = 4 };

/* A ring: member i holds lock[i], then, once every member holds its own,
 * waits for lock[i + 1] (until deadline[i]). Each one's result and, for
 * the one that found the deadlock, its report. Lives in the arena, so that
 * forked members fill it too. */
typedef struct ring {
  int n;
  cc_lock *lock[RING_MAX];
  int64_t deadline[RING_MAX];
  _Atomic int holding;
  int result[RING_MAX];
  char report[2048];
} ring;

static ring *ring_new(int n) {
  ring *r = cc_arena_alloc(sizeof *r);
  memset(r, 0, sizeof *r);
  r->n = n;
  for (int i = 0; i < n; i++) {
    r->lock[i] = cc_lock_new(0);
    r->deadline[i] = CC_FOREVER;
    /* This process's, as a handle makes it: reports find holds so. */
    cc_hold_adopt(&r->lock[i]->hdr);
  }
  return r;
}

static void ring_free(ring *r) {
  for (int i = 0; i < r->n; i++)
    cc_unhold(&r->lock[i]->hdr);
  cc_arena_free(r);
}

static int member(void *arg, int i) {
  ring *r = arg;
  cc_lock *mine = r->lock[i], *next = r->lock[(i + 1) % r->n];
  if (cc_lock_acquire(mine, CC_FOREVER) != 0)
    return 1;
  atomic_fetch_add(&r->holding, 1);
  while (atomic_load(&r->holding) < r->n) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  int res = cc_lock_acquire(next, r->deadline[i]);
  r->result[i] = res;
  if (res == CC_EDEADLK)
    snprintf(r->report, sizeof r->report, "%s", cc_deadlock_report());
  if (res == 0)
    cc_lock_release(next);
  cc_lock_release(mine);
  return 0;
}

typedef struct thread_arg {
  ring *r;
  int i;
} thread_arg;

static void *member_thread(void *p) {
  thread_arg *a = p;
  member(a->r, a->i);
  return NULL;
}

static void run_threads(ring *r) {
  pthread_t t[RING_MAX];
  thread_arg a[RING_MAX];
  for (int i = 0; i < r->n; i++) {
    a[i] = (thread_arg){r, i};
    assert_int_equal(thread_start(&t[i], member_thread, &a[i]), 0);
  }
  for (int i = 0; i < r->n; i++)
    thread_join(t[i]);
}

static int count(const ring *r, int result) {
  int n = 0;
  for (int i = 0; i < r->n; i++)
    n += r->result[i] == result;
  return n;
}

static void two_threads_one_finds_the_cycle(void **state) {
  (void)state;
  ring *r = ring_new(2);
  int64_t t0 = cc_now();
  run_threads(r);
  /* One gives up, and the other then gets its lock. */
  assert_int_equal(count(r, CC_EDEADLK), 1);
  assert_int_equal(count(r, 0), 1);
  assert_true(elapsed_ms(t0) >= CC_DEADLOCK_AFTER_NS / MS);
  assert_non_null(strstr(r->report, "deadlock: 2 threads wait for each other's locks, forever:"));
  char line[128];
  snprintf(line, sizeof line, "holds Lock-%u and waits to acquire Lock-%u",
           (unsigned)r->lock[0]->hdr.id, (unsigned)r->lock[1]->hdr.id);
  assert_non_null(strstr(r->report, line));
  snprintf(line, sizeof line, "holds Lock-%u and waits to acquire Lock-%u",
           (unsigned)r->lock[1]->hdr.id, (unsigned)r->lock[0]->hdr.id);
  assert_non_null(strstr(r->report, line));
  ring_free(r);
}

static void three_processes_one_finds_the_cycle(void **state) {
  (void)state;
  ring *r = ring_new(3);
  pid_t pids[3];
  for (int i = 0; i < 3; i++)
    pids[i] = spawn(member, r, i);
  for (int i = 0; i < 3; i++)
    assert_int_equal(await(pids[i], 30), 0);
  assert_int_equal(count(r, CC_EDEADLK), 1);
  assert_int_equal(count(r, 0), 2);
  assert_non_null(strstr(r->report, "deadlock: 3 threads"));
  assert_non_null(strstr(r->report, "(pid "));
  ring_free(r);
}

static void a_wait_with_a_deadline_is_no_deadlock(void **state) {
  (void)state;
  ring *r = ring_new(2);
  r->deadline[0] = cc_now() + 1500 * MS;
  run_threads(r);
  assert_int_equal(r->result[0], CC_ETIMEDOUT);
  assert_int_equal(r->result[1], 0);
  ring_free(r);
}

typedef struct later {
  cc_lock *l;
  int64_t after_ns;
} later;

static void *release_later(void *p) {
  later *x = p;
  cc_sleep_until(cc_now() + x->after_ns);
  cc_lock_release(x->l);
  return NULL;
}

static void *hold_then_release(void *p) {
  later *x = p;
  cc_lock_acquire(x->l, CC_FOREVER);
  cc_sleep_until(cc_now() + x->after_ns);
  cc_lock_release(x->l);
  return NULL;
}

static void holders_that_are_not_stuck_are_no_deadlock(void **state) {
  (void)state;
  /* A holder that sleeps, then releases. */
  later x = {cc_lock_new(0), 1500 * MS};
  pthread_t t;
  assert_int_equal(thread_start(&t, hold_then_release, &x), 0);
  while (!cc_lock_locked(x.l))
    sched_yield();
  assert_int_equal(cc_lock_acquire(x.l, CC_FOREVER), 0);
  thread_join(t);
  cc_lock_release(x.l);
  /* A Lock waited for by its own holder, released by another thread. */
  assert_int_equal(cc_lock_acquire(x.l, CC_FOREVER), 0);
  assert_int_equal(thread_start(&t, release_later, &x), 0);
  assert_int_equal(cc_lock_acquire(x.l, CC_FOREVER), 0);
  thread_join(t);
  cc_lock_release(x.l);
  cc_obj_unref(&x.l->hdr);
}

/* Two parties that wait with no timeout, one on a Queue get, one on an
 * Event, each for what only the other could do. The one that finds it
 * all asleep wakes the other. */
typedef struct sleepers {
  cc_queue *q;
  cc_event *e;
  int64_t party_sleeps_ns; /* before it waits; for the test that is no deadlock */
  int result[2];
  char report[4096];
} sleepers;

static int sleeper(void *arg, int i) {
  sleepers *s = arg;
  int r;
  if (i == 0) {
    cc_msg m = {0};
    r = cc_queue_get(s->q, &m, CC_FOREVER);
    cc_msg_free(&m);
  } else {
    cc_sleep_until(cc_now() + s->party_sleeps_ns);
    r = cc_event_wait(s->e, CC_FOREVER);
  }
  s->result[i] = r;
  if (r == CC_EDEADLK) {
    snprintf(s->report, sizeof s->report, "%s", cc_deadlock_report());
    if (i == 0) {
      cc_event_set(s->e);
    } else {
      cc_msg m = {0};
      cc_queue_put(s->q, &m, CC_FOREVER);
    }
  }
  return 0;
}

static sleepers *sleepers_new(void) {
  sleepers *s = cc_arena_alloc(sizeof *s);
  memset(s, 0, sizeof *s);
  s->q = cc_queue_new(0, 0);
  s->e = cc_event_new();
  return s;
}

static void sleepers_free(sleepers *s) {
  cc_obj_unref(&s->q->hdr);
  cc_obj_unref(&s->e->hdr);
  cc_arena_free(s);
}

static void all_asleep_is_found(void **state) {
  (void)state;
  for (int kind = PARTY_PROCESS; kind <= PARTY_THREAD; kind++) {
    sleepers *s = sleepers_new();
    int64_t t0 = cc_now();
    party *p = party_start(kind, sleeper, s, 1);
    sleeper(s, 0);
    assert_int_equal(party_join(p, 30), 0);
    /* One finds it, within a second, and wakes the other. */
    assert_true(elapsed_ms(t0) < 1500);
    assert_int_equal((s->result[0] == CC_EDEADLK) + (s->result[1] == CC_EDEADLK), 1);
    assert_int_equal((s->result[0] == 0) + (s->result[1] == 0), 1);
    assert_non_null(strstr(s->report, "deadlock: all 2 threads are asleep"));
    char line[96];
    snprintf(line, sizeof line, "waits to get from Queue-%u", (unsigned)s->q->hdr.id);
    assert_non_null(strstr(s->report, line));
    snprintf(line, sizeof line, "waits on Event-%u", (unsigned)s->e->hdr.id);
    assert_non_null(strstr(s->report, line));
    sleepers_free(s);
  }
}

static int late_putter(void *arg, int i) {
  (void)i;
  sleepers *s = arg;
  cc_sleep_until(cc_now() + s->party_sleeps_ns);
  cc_msg m = {0};
  return cc_queue_put(s->q, &m, CC_FOREVER);
}

static void a_party_that_can_still_act_is_no_deadlock(void **state) {
  (void)state;
  for (int kind = PARTY_PROCESS; kind <= PARTY_THREAD; kind++) {
    /* The party sleeps (a wait with a deadline), then puts: while it
     * sleeps, the getter, which waits with none, is in no deadlock. */
    sleepers *s = sleepers_new();
    s->party_sleeps_ns = 1500 * MS;
    party *p = party_start(kind, late_putter, s, 1);
    cc_msg m = {0};
    assert_int_equal(cc_queue_get(s->q, &m, CC_FOREVER), 0);
    cc_msg_free(&m);
    assert_int_equal(party_join(p, 30), 0);
    sleepers_free(s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(two_threads_one_finds_the_cycle),
      cmocka_unit_test(three_processes_one_finds_the_cycle),
      cmocka_unit_test(a_wait_with_a_deadline_is_no_deadlock),
      cmocka_unit_test(holders_that_are_not_stuck_are_no_deadlock),
      cmocka_unit_test(all_asleep_is_found),
      cmocka_unit_test(a_party_that_can_still_act_is_no_deadlock),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
