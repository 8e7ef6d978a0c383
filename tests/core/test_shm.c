/* test_shm - Value and Array in shared memory, across real processes */
#include "helpers.h"

#include "concur/error.h"
#include "concur/shm.h"

enum { WORKERS = 20, INCREMENTS = 20000 };

/* Room for any item: loads and stores write the item's size, up to 8. */
typedef union item {
  int32_t i;
  uint64_t raw;
} item;

static int incrementer(void *arg, int i) {
  (void)i;
  cc_shm *v = arg;
  for (int k = 0; k < INCREMENTS; k++) {
    if (cc_lock_acquire(v->lock, CC_FOREVER) != 0)
      return 2;
    item x = {.raw = 0};
    cc_shm_load(v, 0, &x);
    x.i++;
    cc_shm_store(v, 0, &x);
    if (cc_lock_release(v->lock) != 0)
      return 3;
  }
  return 0;
}

/* A Value with a lock of its own keeps its item in the lock's cache line,
 * and twenty processes taking turns at it count exactly. */
static void a_locked_value_shares_its_locks_line(void **state) {
  (void)state;
  cc_shm *v = cc_shm_new_locked('i');
  assert_non_null(v);
  assert_true(cc_obj_is(&v->lock->hdr, &cc_rlock_type));
  assert_true(v->lock->recursive);
  uintptr_t word = (uintptr_t)&v->lock->word, at = (uintptr_t)cc_shm_item(v, 0);
  assert_int_equal(word / CC_CACHE_LINE, at / CC_CACHE_LINE);
  assert_int_equal(at % 8, 0);
  pid_t pids[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    pids[i] = spawn(incrementer, v, i);
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(await(pids[i], 60), 0);
  item x = {.raw = 0};
  cc_shm_load(v, 0, &x);
  assert_int_equal(x.i, WORKERS * INCREMENTS);
  assert_false(cc_lock_locked(v->lock));
  /* The Value holds the only reference to its lock: both go together. */
  size_t live = cc_arena_live_blocks();
  cc_obj_unref(&v->hdr);
  assert_int_equal(cc_arena_live_blocks(), live - 2);
}

/* A lock given to a Value stays the caller's; the item stays in the Value. */
static void a_given_lock_is_shared_not_owned(void **state) {
  (void)state;
  cc_lock *l = cc_lock_new(0);
  cc_shm *a = cc_shm_new('q', 0, 1, l), *b = cc_shm_new('d', 1, 3, l);
  assert_ptr_equal(a->lock, l);
  assert_ptr_equal(b->lock, l);
  assert_ptr_equal(cc_shm_item(a, 0), a->items);
  assert_ptr_equal(cc_shm_item(b, 2), (char *)b->items + 16);
  int64_t q = -5;
  cc_shm_store(a, 0, &q);
  double d = 2.5;
  cc_shm_store(b, 2, &d);
  q = 0;
  d = 0;
  cc_shm_load(a, 0, &q);
  cc_shm_load(b, 2, &d);
  assert_int_equal(q, -5);
  assert_true(d == 2.5);
  cc_obj_unref(&a->hdr);
  cc_obj_unref(&b->hdr);
  assert_int_equal(atomic_load(&l->hdr.refs), 1);
  cc_obj_unref(&l->hdr);
}

static void unknown_typecodes_are_refused(void **state) {
  (void)state;
  assert_int_equal(cc_shm_itemsize('z'), 0);
  assert_null(cc_shm_new('z', 0, 1, NULL));
  assert_null(cc_shm_new_locked('z'));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_locked_value_shares_its_locks_line),
      cmocka_unit_test(a_given_lock_is_shared_not_owned),
      cmocka_unit_test(unknown_typecodes_are_refused),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
