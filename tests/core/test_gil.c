/* test_gil - the global interpreter lock: who holds it, who wants it */
#include "helpers.h"

#include "concur/gil.h"
#include "concur/lock.h"

#include <pthread.h>
#include <stdatomic.h>

static _Atomic int has_it;

static void *take_and_give_back(void *arg) {
  (void)arg;
  cc_gil_acquire();
  atomic_store(&has_it, 1);
  cc_gil_release();
  return NULL;
}

/* A thread that waits for the GIL makes its holder's spins stop early:
 * cc_gil_wanted says so, and cc_spin_while gives up on a word that no
 * other thread can change while the holder keeps it. */
static void a_waiting_thread_is_seen(void **state) {
  (void)state;
  cc_gil_enable(0);
  assert_true(cc_gil_enabled());
  assert_true(cc_gil_held());
  assert_false(cc_gil_wanted()); /* nobody else here */
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, take_and_give_back, NULL), 0);
  int64_t end = cc_now() + 10000 * MS;
  while (!cc_gil_wanted())
    assert_true(cc_now() < end);
  _Atomic uint32_t word = 0;
  assert_false(cc_spin_while(&word, 0, CC_FOREVER));
  assert_false(atomic_load(&has_it)); /* it waited all along */
  cc_gil_release();
  assert_false(cc_gil_wanted()); /* not held */
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(atomic_load(&has_it));
  cc_gil_acquire();
  assert_true(cc_gil_held());
  assert_false(cc_gil_wanted());
}

static _Atomic int poked_tid;

static void record_poke(int tid) { atomic_store(&poked_tid, tid); }

/* A thread that waits a whole interval pokes the holder, by its tid; the
 * holder's check then hands the GIL over and takes it back after. */
static void a_waiter_pokes_the_holder(void **state) {
  (void)state;
  cc_gil_enable(0);
  assert_true(cc_gil_held());
  cc_gil_set_poke(record_poke);
  atomic_store(&has_it, 0);
  atomic_store(&poked_tid, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, take_and_give_back, NULL), 0);
  int64_t end = cc_now() + 10000 * MS;
  while (!atomic_load(&poked_tid))
    assert_true(cc_now() < end);
  assert_int_equal(atomic_load(&poked_tid), cc_tid());
  assert_false(atomic_load(&has_it));
  cc_gil_check(); /* lets go, waits for the switch, takes it again */
  assert_true(cc_gil_held());
  assert_true(atomic_load(&has_it)); /* the switch happened */
  cc_gil_release(); /* a join never waits holding the GIL */
  assert_int_equal(pthread_join(t, NULL), 0);
  cc_gil_acquire();
  cc_gil_set_poke(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_waiting_thread_is_seen),
      cmocka_unit_test(a_waiter_pokes_the_holder),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
