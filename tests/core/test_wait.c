/* test_wait - spinning, and futex waits counted so that wakers syscall only when needed */
#include "helpers.h"

#include "concur/arena.h"
#include "concur/error.h"

#include <stdatomic.h>

typedef struct shared {
  _Atomic uint32_t word;
  _Atomic uint32_t sleepers;
} shared;

enum { SLEEPERS = 20 };

static int counted_sleeper(void *arg, int i) {
  (void)i;
  shared *s = arg;
  int r = cc_futex_wait_counted(&s->word, 0, &s->sleepers, cc_now() + 10000 * MS);
  return r == 0 ? 0 : 1;
}

/* Twenty sleepers and twenty changes, each followed by one wake-up: every
 * sleeper wakes (none is lost), and the count ends at 0. */
static void counted_waits_lose_no_sleeper(void **state) {
  (void)state;
  shared *s = cc_arena_alloc(sizeof *s);
  atomic_init(&s->word, 0);
  atomic_init(&s->sleepers, 0);
  pid_t pids[SLEEPERS];
  for (int i = 0; i < SLEEPERS; i++)
    pids[i] = spawn(counted_sleeper, s, i);
  while (atomic_load(&s->sleepers) < SLEEPERS)
    cc_sleep_until(cc_now() + MS);
  cc_sleep_until(cc_now() + 50 * MS); /* most of them asleep in the kernel */
  for (int i = 0; i < SLEEPERS; i++) {
    atomic_fetch_add(&s->word, 1);
    cc_futex_wake_one(&s->word, &s->sleepers);
  }
  int64_t t0 = cc_now();
  for (int i = 0; i < SLEEPERS; i++)
    assert_int_equal(await(pids[i], 10), 0);
  assert_true(elapsed_ms(t0) < 5000); /* woken, not timed out */
  assert_int_equal(atomic_load(&s->sleepers), 0);
  cc_arena_free(s);
}

static int sleep_then_count(void *arg, int i) {
  (void)i;
  shared *s = arg;
  if (cc_futex_wait_counted(&s->word, 0, &s->sleepers, CC_FOREVER) != 0)
    return 1;
  /* The waker takes this sleeper off the count once its FUTEX_WAKE has
   * returned, which may be after this process runs again; it never adds. */
  int64_t end = cc_now() + 5000 * MS;
  while (atomic_load(&s->sleepers) != 0)
    if (cc_now() > end)
      return 2;
  return 0;
}

/* True once process pid sleeps (state S in /proc): here, in the futex. */
static int asleep(pid_t pid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  return p && p[1] == ' ' && p[2] == 'S';
}

/* Once a sleeper is reached, more changes make no system call: the count
 * is 0 before the woken sleeper even runs. */
static void a_reached_sleeper_is_no_longer_counted(void **state) {
  (void)state;
  shared *s = cc_arena_alloc(sizeof *s);
  atomic_init(&s->word, 0);
  atomic_init(&s->sleepers, 0);
  pid_t p = spawn(sleep_then_count, s, 0);
  while (atomic_load(&s->sleepers) < 1 || !asleep(p))
    cc_sleep_until(cc_now() + MS);
  atomic_fetch_add(&s->word, 1);
  cc_futex_wake_one(&s->word, &s->sleepers);
  assert_int_equal(atomic_load(&s->sleepers), 0);
  assert_int_equal(await(p, 10), 0);
  cc_arena_free(s);
}

/* A sleeper that times out, or finds the word changed, takes itself off. */
static void timeouts_and_changes_uncount_themselves(void **state) {
  (void)state;
  _Atomic uint32_t word = 0, sleepers = 0;
  int64_t t0 = cc_now();
  assert_int_equal(cc_futex_wait_counted(&word, 0, &sleepers, cc_now() + 100 * MS),
                   CC_ETIMEDOUT);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 100 && ms < 150);
  assert_int_equal(atomic_load(&sleepers), 0);
  assert_int_equal(cc_futex_wait_counted(&word, 7, &sleepers, cc_now() + 100 * MS), 0);
  assert_int_equal(atomic_load(&sleepers), 0);
  cc_futex_wake_one(&word, &sleepers); /* nobody: no change to the count */
  assert_int_equal(atomic_load(&sleepers), 0);
}

static int change_later(void *arg, int i) {
  (void)i;
  cc_sleep_until(cc_now() + 5 * 1000LL); /* 5 us: within the spin */
  atomic_store((_Atomic uint32_t *)arg, 1);
  return 0;
}

/* cc_spin_while sees a change made meanwhile, and gives up after about
 * CC_SPIN_NS, or at once when the deadline has passed. */
static void spinning_sees_changes_and_gives_up(void **state) {
  (void)state;
  _Atomic uint32_t *w = cc_arena_alloc(sizeof *w);
  atomic_init(w, 0);
  pid_t p = spawn(change_later, w, 0);
  int64_t t0 = cc_now();
  while (!cc_spin_while(w, 0, CC_FOREVER))
    assert_true(cc_now() - t0 < 10000 * MS);
  assert_int_equal(await(p, 10), 0);
  t0 = cc_now();
  assert_false(cc_spin_while(w, 1, CC_FOREVER));
  int64_t spun = cc_now() - t0;
  assert_true(spun >= CC_SPIN_NS && spun < 1000 * MS);
  t0 = cc_now();
  assert_false(cc_spin_while(w, 1, cc_now()));
  assert_true(cc_now() - t0 < CC_SPIN_NS);
  cc_arena_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counted_waits_lose_no_sleeper),
      cmocka_unit_test(a_reached_sleeper_is_no_longer_counted),
      cmocka_unit_test(timeouts_and_changes_uncount_themselves),
      cmocka_unit_test(spinning_sees_changes_and_gives_up),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
