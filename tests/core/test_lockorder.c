/* test_lockorder - orders of locks recorded across threads and processes; the cycles among them */
#include "helpers.h"

#include "concur/cond.h"
#include "concur/error.h"
#include "concur/lock.h"
#include "concur/lockorder.h"
#include "concur/queue.h"

/* The report, as the end of a run writes it, and its number of cycles. */
static char report[16384];

static int reported(void) {
  memset(report, 0, sizeof report);
  FILE *f = fmemopen(report, sizeof report - 1, "w");
  assert_non_null(f);
  int n = cc_lockorder_report(f);
  fclose(f);
  return n;
}

static cc_lock *named(const char *name) {
  cc_lock *l = cc_lock_new(0);
  assert_non_null(l);
  assert_int_equal(cc_obj_set_name(&l->hdr, name, strlen(name)), 0);
  return l;
}

/* What a party does: take locks[0], then locks[1] (each with no deadline),
 * and let go of both. Lives in the arena, so that a forked party reads it. */
typedef struct pair {
  cc_lock *first, *second;
} pair;

static int take_in_order(void *arg, int i) {
  (void)i;
  pair *p = arg;
  if (cc_lock_acquire(p->first, CC_FOREVER) || cc_lock_acquire(p->second, CC_FOREVER))
    return 1;
  return cc_lock_release(p->second) || cc_lock_release(p->first);
}

static pair *pair_new(cc_lock *first, cc_lock *second) {
  pair *p = cc_arena_alloc(sizeof *p);
  assert_non_null(p);
  p->first = first;
  p->second = second;
  return p;
}

static void both_orders_are_found_whoever_takes_them(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    cc_lockorder_clear();
    cc_lock *fork_ = named("fork"), *knife = named("knife");
    /* This thread takes fork then knife; the party, after, knife then
     * fork: no deadlock, but one was possible. */
    assert_int_equal(take_in_order(pair_new(fork_, knife), 0), 0);
    assert_int_equal(reported(), 0);
    party *p = party_start(kind, take_in_order, pair_new(knife, fork_), 1);
    assert_int_equal(party_join(p, 30), 0);
    assert_int_equal(reported(), 1);
    assert_non_null(strstr(report, "Lock 'fork' and Lock 'knife' are taken in both orders"));
    assert_non_null(strstr(report, "takes Lock 'knife' while it holds Lock 'fork'"));
    assert_non_null(strstr(report, "takes Lock 'fork' while it holds Lock 'knife'"));
    assert_non_null(strstr(report, "holds Lock 'fork'\n"));
    assert_non_null(strstr(report, "takes Lock 'fork': waits\n"));
    /* Said once, however often it happens. */
    party *q = party_start(kind, take_in_order, pair_new(knife, fork_), 2);
    assert_int_equal(party_join(q, 30), 0);
    assert_int_equal(reported(), 1);
    cc_obj_unref(&fork_->hdr);
    cc_obj_unref(&knife->hdr);
  }
}

static void one_order_everywhere_is_no_warning(void **state) {
  (void)state;
  cc_lockorder_clear();
  cc_lock *a = named("a"), *b = named("b");
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    party *p = party_start(kind, take_in_order, pair_new(a, b), 1);
    assert_int_equal(take_in_order(pair_new(a, b), 0), 0);
    assert_int_equal(party_join(p, 30), 0);
  }
  assert_int_equal(reported(), 0);
  assert_string_equal(report, "");
  cc_obj_unref(&a->hdr);
  cc_obj_unref(&b->hdr);
}

static void a_circle_of_three_is_found(void **state) {
  (void)state;
  cc_lockorder_clear();
  cc_lock *l[3] = {named("x"), named("y"), named("z")};
  party *p[3];
  for (int i = 0; i < 3; i++) {
    /* One after another: none of them waits. */
    p[i] = party_start(i, take_in_order, pair_new(l[i], l[(i + 1) % 3]), i);
    assert_int_equal(party_join(p[i], 30), 0);
  }
  assert_int_equal(reported(), 1);
  assert_non_null(strstr(report, "Lock 'x', Lock 'y' and Lock 'z' are taken in a circle"));
  for (int i = 0; i < 3; i++)
    cc_obj_unref(&l[i]->hdr);
}

static int try_second(void *arg, int i) {
  (void)i;
  pair *p = arg;
  if (cc_lock_acquire(p->first, CC_FOREVER) || cc_lock_acquire(p->second, 0))
    return 1;
  return cc_lock_release(p->second) || cc_lock_release(p->first);
}

static void a_try_cannot_wait_so_makes_no_order(void **state) {
  (void)state;
  cc_lockorder_clear();
  cc_lock *a = named("a"), *b = named("b");
  assert_int_equal(take_in_order(pair_new(a, b), 0), 0);
  for (int kind = 0; kind < PARTY_KINDS; kind++)
    assert_int_equal(party_join(party_start(kind, try_second, pair_new(b, a), 1), 30), 0);
  assert_int_equal(reported(), 0);
  cc_obj_unref(&a->hdr);
  cc_obj_unref(&b->hdr);
}

/* The party releases the Lock this thread holds (CPython allows it). */
static int release_it(void *arg, int i) {
  (void)i;
  return cc_lock_release(arg);
}

static void a_lock_released_by_another_is_not_held(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    cc_lockorder_clear();
    cc_lock *a = named("a"), *b = named("b");
    assert_int_equal(cc_lock_acquire(a, CC_FOREVER), 0);
    assert_int_equal(party_join(party_start(kind, release_it, a, 1), 30), 0);
    /* This thread no longer holds a: taking b makes no order a, b. */
    assert_int_equal(take_in_order(pair_new(b, a), 0), 0);
    assert_int_equal(cc_lock_acquire(b, CC_FOREVER), 0);
    assert_int_equal(cc_lock_release(b), 0);
    assert_int_equal(reported(), 0);
    cc_obj_unref(&a->hdr);
    cc_obj_unref(&b->hdr);
  }
}

static void a_freed_locks_successor_is_another_lock(void **state) {
  (void)state;
  cc_lockorder_clear();
  cc_lock *a = named("a"), *b = named("b");
  assert_int_equal(take_in_order(pair_new(a, b), 0), 0);
  cc_obj_unref(&a->hdr);
  cc_obj_unref(&b->hdr);
  /* The blocks are reused, most likely by these two. */
  cc_lock *c = named("c"), *d = named("d");
  assert_int_equal(take_in_order(pair_new(d, c), 0), 0);
  assert_int_equal(reported(), 0);
  cc_obj_unref(&c->hdr);
  cc_obj_unref(&d->hdr);
}

static void rlocks_and_conditions_are_in_it_queues_are_not(void **state) {
  (void)state;
  cc_lockorder_clear();
  cc_lock *r = cc_lock_new(1), *a = named("a");
  cc_cond *c = cc_cond_new(NULL);
  assert_int_equal(cc_obj_set_name(&c->hdr, "ready", 5), 0);
  cc_queue *q = cc_queue_new(CC_QUEUE_PLAIN, 0);
  assert_non_null(q);
  /* r twice (its owner takes it again at once), then the Condition's own
   * lock: orders r, ready; and a put on a Queue with both held. */
  assert_int_equal(cc_lock_acquire(r, CC_FOREVER), 0);
  assert_int_equal(cc_lock_acquire(r, CC_FOREVER), 0);
  assert_int_equal(cc_lock_acquire(c->lock, CC_FOREVER), 0);
  cc_msg m = {0};
  assert_int_equal(cc_queue_put(q, &m, CC_FOREVER), 0);
  assert_int_equal(cc_lock_release(c->lock), 0);
  assert_int_equal(cc_lock_release(r), 0);
  assert_int_equal(cc_lock_release(r), 0);
  /* Then a party: ready, then a (no cycle yet); a, then r (none: r, ready,
   * a is one order); then ready, then r: a cycle. */
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    assert_int_equal(party_join(party_start(kind, take_in_order, pair_new(c->lock, a), 1), 30), 0);
    assert_int_equal(party_join(party_start(kind, take_in_order, pair_new(a, r), 1), 30), 0);
  }
  assert_int_equal(reported(), 1); /* r, ready, a, r */
  assert_non_null(strstr(report, "are taken in a circle"));
  assert_non_null(strstr(report, "Condition 'ready'"));
  assert_null(strstr(report, "Queue"));
  assert_int_equal(cc_queue_get(q, &m, 0), 0);
  cc_msg_free(&m);
  cc_obj_unref(&q->hdr);
  cc_obj_unref(&c->hdr);
  cc_obj_unref(&r->hdr);
  cc_obj_unref(&a->hdr);
}

static void a_full_table_says_so(void **state) {
  (void)state;
  cc_lockorder_clear();
  enum { PAIRS = 600 };
  cc_lock *l[2 * PAIRS];
  for (int i = 0; i < 2 * PAIRS; i++)
    l[i] = cc_lock_new(0);
  for (int i = 0; i < PAIRS; i++)
    assert_int_equal(take_in_order(pair_new(l[2 * i], l[2 * i + 1]), 0), 0);
  assert_int_equal(reported(), 0);
  assert_non_null(strstr(report, "orders of locks were not recorded"));
  for (int i = 0; i < 2 * PAIRS; i++)
    cc_obj_unref(&l[i]->hdr);
  cc_lockorder_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(both_orders_are_found_whoever_takes_them),
      cmocka_unit_test(one_order_everywhere_is_no_warning),
      cmocka_unit_test(a_circle_of_three_is_found),
      cmocka_unit_test(a_try_cannot_wait_so_makes_no_order),
      cmocka_unit_test(a_lock_released_by_another_is_not_held),
      cmocka_unit_test(a_freed_locks_successor_is_another_lock),
      cmocka_unit_test(rlocks_and_conditions_are_in_it_queues_are_not),
      cmocka_unit_test(a_full_table_says_so),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
