/* test_sched - the run's scheduler: one task at a time, the same order for a seed, virtual time */
#include "helpers.h"

#include <errno.h>

#include "concur/error.h"
#include "concur/event.h"
#include "concur/lock.h"
#include "concur/sched.h"

/* What a scheduled run leaves for the test: the order in which its
 * parties took the Lock. */
#define TURNS 5
#define PARTIES 4
typedef struct shared {
  cc_lock *lock;
  _Atomic int n;
  int order[PARTIES * TURNS];
  int64_t waited; /* virtual ns a timed acquire waited */
  int timed;      /* what it returned */
} shared;

static shared *X;

/* The calling process (a worker of the test's) begins a scheduled run
 * with seed and strategy, as its main task 0. */
static void scheduled(uint64_t seed, int strategy) {
  cc_sched_opts o = {.seed = seed, .strategy = strategy};
  assert_int_equal(cc_sched_init(&o), 0);
  cc_sched_start(0);
}

/* The state a test shares with its runs, and its Lock. */
static void shared_make(void) {
  X = cc_arena_zalloc(sizeof *X);
  assert_non_null(X);
  X->lock = cc_lock_new(0);
}

static void shared_drop(void) {
  cc_obj_unref(&X->lock->hdr);
  cc_arena_free(X);
}

static void turns(int who) {
  for (int i = 0; i < TURNS; i++) {
    assert_int_equal(cc_lock_acquire(X->lock, CC_FOREVER), 0);
    int at = atomic_fetch_add(&X->n, 1);
    X->order[at] = who;
    cc_wait_point();
    assert_int_equal(cc_lock_release(X->lock), 0);
    cc_wait_point();
  }
}

typedef struct runner {
  int who, task;
  cc_event *done;
} runner;

static void *thread_main(void *arg) {
  runner *p = arg;
  cc_sched_start(p->task);
  turns(p->who);
  cc_event_set(p->done);
  cc_sched_exit();
  return NULL;
}

/* A thread of the calling process, scheduled: it takes its turns as who. */
static pthread_t thread_party(runner *p, int who) {
  p->who = who;
  p->task = cc_sched_spawn();
  p->done = cc_event_new();
  assert_true(p->task > 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, thread_main, p), 0);
  return t;
}

/* Its end, waited for as the scheduler sees it; then its pthread. */
static void thread_end(pthread_t t, runner *p) {
  assert_int_equal(cc_event_wait(p->done, CC_FOREVER), 0);
  pthread_join(t, NULL);
  cc_obj_unref(&p->done->hdr);
}

/* A scheduled run with seed: the main task, a process, and a thread of
 * each take the Lock in turn. In a process of its own (a scheduled
 * process's clock is virtual for good). */
static void run_seed(uint64_t seed) {
  scheduled(seed, CC_SCHED_RANDOM);
  cc_proc p;
  cc_proc_init(&p, "P", 0);
  int r = cc_proc_start(&p);
  assert_true(r >= 0);
  if (r == 0) {
    runner tp;
    pthread_t t = thread_party(&tp, 3);
    turns(2);
    thread_end(t, &tp);
    cc_proc_exit(0);
  }
  runner tp;
  pthread_t t = thread_party(&tp, 1);
  turns(0);
  thread_end(t, &tp);
  assert_int_equal(cc_proc_join(&p, CC_FOREVER), 0);
  assert_int_equal(p.exitcode, 0);
}

static int seeded(void *arg, int seed) {
  (void)arg;
  run_seed((uint64_t)seed);
  return 0;
}

/* The order of a run with seed, run in a process of its own. */
static void order_of(int seed, int *out) {
  memset(X->order, -1, sizeof X->order);
  atomic_store(&X->n, 0);
  assert_int_equal(await(spawn(seeded, NULL, seed), 30), 0);
  assert_int_equal(atomic_load(&X->n), PARTIES * TURNS);
  memcpy(out, X->order, sizeof X->order);
}

static void a_seed_gives_one_order_and_seeds_differ(void **state) {
  (void)state;
  shared_make();
  int first[PARTIES * TURNS], again[PARTIES * TURNS];
  int distinct = 0, prev[PARTIES * TURNS];
  for (int seed = 1; seed <= 6; seed++) {
    order_of(seed, first);
    order_of(seed, again);
    assert_memory_equal(first, again, sizeof first);
    /* Every party took each of its turns. */
    int count[PARTIES] = {0};
    for (int i = 0; i < PARTIES * TURNS; i++)
      count[first[i]]++;
    for (int k = 0; k < PARTIES; k++)
      assert_int_equal(count[k], TURNS);
    if (seed == 1 || memcmp(first, prev, sizeof first) != 0)
      distinct++;
    memcpy(prev, first, sizeof first);
  }
  assert_true(distinct >= 3);
  shared_drop();
}

/* The other party holds the Lock through 10 virtual seconds of sleep;
 * the main task's acquire with a 1 s timeout times out after exactly 1 s
 * of virtual time, in much less real time. */
static int timed(void *arg, int i) {
  (void)arg;
  (void)i;
  scheduled(1, CC_SCHED_FIRST);
  cc_event *held = cc_event_new();
  cc_proc p;
  cc_proc_init(&p, "holder", 0);
  int r = cc_proc_start(&p);
  if (r == 0) {
    assert_int_equal(cc_lock_acquire(X->lock, CC_FOREVER), 0);
    cc_event_set(held);
    cc_sleep_until(cc_now() + 10000 * MS);
    cc_lock_release(X->lock);
    cc_proc_exit(0);
  }
  assert_int_equal(cc_event_wait(held, CC_FOREVER), 0);
  int64_t t0 = cc_now();
  X->timed = cc_lock_acquire(X->lock, t0 + 1000 * MS);
  X->waited = cc_now() - t0;
  assert_int_equal(cc_proc_join(&p, CC_FOREVER), 0);
  return 0;
}

static void timeouts_are_virtual(void **state) {
  (void)state;
  shared_make();
  int64_t t0 = cc_now();
  assert_int_equal(await(spawn(timed, NULL, 0), 30), 0);
  assert_true(cc_now() - t0 < 5000 * MS); /* 11 virtual seconds */
  assert_int_equal(X->timed, CC_ETIMEDOUT);
  assert_true(X->waited >= 1000 * MS && X->waited < 1010 * MS);
  shared_drop();
}

/* Two processes each hold one Lock and take the other's: nobody can
 * run, and the deadlock detector (told by the scheduler's rounds of
 * looking around) ends one of the waits with CC_EDEADLK. */
static cc_lock *A, *B;
static int *other; /* the other process's pid, for the test to see it gone */

static int crossed(void *arg, int i) {
  (void)arg;
  (void)i;
  scheduled(2, CC_SCHED_RANDOM);
  cc_event *both = cc_event_new();
  cc_proc p;
  cc_proc_init(&p, "other", 0);
  int r = cc_proc_start(&p);
  cc_lock *mine = r == 0 ? B : A, *theirs = r == 0 ? A : B;
  assert_int_equal(cc_lock_acquire(mine, CC_FOREVER), 0);
  if (r == 0) {
    cc_event_set(both);
    int got = cc_lock_acquire(theirs, CC_FOREVER);
    cc_proc_exit(got == CC_EDEADLK ? 3 : 0);
  }
  assert_int_equal(cc_event_wait(both, CC_FOREVER), 0);
  *other = p.pid;
  int got = cc_lock_acquire(theirs, CC_FOREVER);
  if (got == CC_EDEADLK) {
    /* The other waits on, and the scheduler is halted: it is killed and
     * reaped here, as the host's supervisor would. */
    kill(p.pid, SIGKILL);
    waitpid(p.pid, NULL, 0);
    _exit(3);
  }
  cc_lock_release(theirs);
  cc_lock_release(mine);
  assert_int_equal(cc_proc_join(&p, CC_FOREVER), 0);
  return p.exitcode;
}

static void a_deadlock_is_found(void **state) {
  (void)state;
  A = cc_lock_new(0);
  B = cc_lock_new(0);
  other = cc_arena_alloc(sizeof *other);
  *other = 0;
  assert_int_equal(await(spawn(crossed, NULL, 0), 30), 3);
  /* Nothing is left running: the other process was reaped. */
  assert_true(*other > 0);
  assert_int_equal(kill(*other, 0), -1);
  assert_int_equal(errno, ESRCH);
  cc_arena_free(other);
  cc_obj_unref(&A->hdr);
  cc_obj_unref(&B->hdr);
}

/* The same cycle, where the task numbers run against the pids: the
 * process forked first is the later task. The deadlock is told to the
 * lowest task (the same in every run), not to the lowest tid (the
 * kernel's, which wraps). Each party's process exits 3 when it is the one
 * told; the run's main task leaves the schedule and watches who ends. */
static cc_event *flags[2];

static void cross(cc_lock *mine, cc_lock *theirs, int me) {
  assert_int_equal(cc_lock_acquire(mine, CC_FOREVER), 0);
  cc_event_set(flags[me]);
  assert_int_equal(cc_event_wait(flags[!me], CC_FOREVER), 0);
  int got = cc_lock_acquire(theirs, CC_FOREVER);
  fflush(NULL);
  _exit(got == CC_EDEADLK ? 3 : 1);
}

static int ranked(void *arg, int i) {
  (void)arg;
  (void)i;
  scheduled(1, CC_SCHED_FIRST);
  int low = cc_sched_spawn(), high = cc_sched_spawn();
  assert_true(low > 0 && high > low);
  pid_t first = fork_counted();
  if (first == 0) {
    cc_sched_start(high);
    cross(A, B, 0);
  }
  cc_sched_set_pid(high, first);
  pid_t second = fork_counted();
  if (second == 0) {
    cc_sched_start(low);
    cross(B, A, 1);
  }
  cc_sched_set_pid(low, second);
  assert_true(first < second); /* no wrap between two forks in a row */
  cc_sched_exit();
  int st;
  pid_t ended = waitpid(-1, &st, 0);
  pid_t other = ended == first ? second : first;
  kill(other, SIGKILL);
  waitpid(other, NULL, 0);
  return ended == second && WIFEXITED(st) && WEXITSTATUS(st) == 3 ? 0 : 1;
}

static void the_lowest_task_is_told_not_the_lowest_tid(void **state) {
  (void)state;
  A = cc_lock_new(0);
  B = cc_lock_new(0);
  flags[0] = cc_event_new();
  flags[1] = cc_event_new();
  assert_int_equal(await(spawn(ranked, NULL, 0), 30), 0);
  for (int k = 0; k < 2; k++)
    cc_obj_unref(&flags[k]->hdr);
  cc_obj_unref(&A->hdr);
  cc_obj_unref(&B->hdr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_seed_gives_one_order_and_seeds_differ),
      cmocka_unit_test(timeouts_are_virtual),
      cmocka_unit_test(a_deadlock_is_found),
      cmocka_unit_test(the_lowest_task_is_told_not_the_lowest_tid),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
