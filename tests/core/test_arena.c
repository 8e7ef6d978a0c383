/* test_arena - the shared allocator: reuse, exhaustion, no leaks */
#include "helpers.h"

#include "concur/error.h"
#include "concur/lock.h"
#include "concur/proctab.h"

static void ten_thousand_cycles_leak_nothing(void **state) {
  (void)state;
  /* The first hold makes this process's hold table: one block that stays. */
  cc_lock *first = cc_lock_new(0);
  assert_int_equal(cc_hold_adopt(&first->hdr), 0);
  cc_unhold(&first->hdr);
  size_t used = cc_arena_used(), live = cc_arena_live_blocks();
  for (int i = 0; i < 10000; i++) {
    cc_lock *l = cc_lock_new(i & 1);
    assert_non_null(l);
    assert_int_equal(cc_hold_adopt(&l->hdr), 0);
    assert_int_equal(cc_hold(&l->hdr), 0);
    assert_int_equal(cc_hold_count(&l->hdr), 2);
    cc_unhold(&l->hdr);
    cc_unhold(&l->hdr);
  }
  assert_int_equal(cc_arena_live_blocks(), live);
  assert_int_equal(cc_arena_used(), used);
}

static void exhaustion_is_reported_not_fatal(void **state) {
  (void)state;
  void *blocks[4096];
  int n = 0;
  while (n < 4096 && (blocks[n] = cc_arena_alloc(1 << 20)))
    n++;
  /* 64 MiB hold fewer than 64 blocks of 1 MiB (each takes a 2 MiB class). */
  assert_true(n > 10 && n < 64);
  assert_null(cc_arena_alloc(1 << 20));
  for (int i = 0; i < n; i++)
    cc_arena_free(blocks[i]);
  /* Freed blocks are reused: the same number fits again. */
  int again = 0;
  while (again < n && (blocks[again] = cc_arena_alloc(1 << 20)))
    again++;
  assert_int_equal(again, n);
  for (int i = 0; i < again; i++)
    cc_arena_free(blocks[i]);
  assert_non_null(strstr(cc_arena_full_message(), "arena.size = 64 MiB"));
}

static void offsets_round_trip_and_validate(void **state) {
  (void)state;
  cc_lock *l = cc_lock_new(0);
  uint32_t off = cc_arena_off(l);
  assert_ptr_equal(cc_obj_from_off(off), &l->hdr);
  assert_null(cc_obj_from_off(0));
  assert_null(cc_obj_from_off(0xffffffffu));
  assert_null(cc_obj_from_off(off + 1));
  cc_obj_unref(&l->hdr);
  assert_null(cc_obj_from_off(off)); /* freed: no longer an object */
}

/* Blocks of 64 bytes and more start on a cache line, whatever was cut
 * before them, so no two objects share a line. */
static void big_blocks_own_their_cache_lines(void **state) {
  (void)state;
  void *p[64];
  for (int i = 0; i < 64; i++) {
    /* 16-byte and bigger objects in turn, to leave the bump unaligned. */
    size_t n = i % 3 == 0 ? 16 : i % 3 == 1 ? 40 : 200;
    p[i] = cc_arena_alloc(n);
    assert_non_null(p[i]);
    if (n > 16) /* with its 16-byte header, a block of 64 bytes or more */
      assert_int_equal(((uintptr_t)p[i] - 16) % CC_CACHE_LINE, 0);
    else
      assert_int_equal((uintptr_t)p[i] % 16, 0);
  }
  for (int i = 0; i < 64; i++)
    cc_arena_free(p[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ten_thousand_cycles_leak_nothing),
      cmocka_unit_test(exhaustion_is_reported_not_fatal),
      cmocka_unit_test(offsets_round_trip_and_validate),
      cmocka_unit_test(big_blocks_own_their_cache_lines),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
