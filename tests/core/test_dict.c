/* test_dict - Manager dicts, lists and Namespaces: contents, growth, updates, refs, kills */
#include "helpers.h"

#include "concur/dict.h"
#include "concur/error.h"
#include "concur/fault.h"
#include "concur/lock.h"

#include <sched.h>
#include <string.h>

/* A message over bytes the test owns (nothing is freed through it). */
static cc_msg bytes(const void *p, size_t n) {
  cc_msg m = {.data = (char *)p, .len = n};
  return m;
}

static int set_str(cc_dict *d, const char *key, const char *val) {
  cc_msg m = bytes(val, strlen(val));
  return cc_dict_set(d, key, strlen(key), &m);
}

/* True when out holds exactly the bytes of s and no references. */
static int is_str(const cc_msg *out, const char *s) {
  return out->len == strlen(s) && out->nrefs == 0 && memcmp(out->data, s, out->len) == 0;
}

/* The length, which nothing in these tests interrupts. */
static uint32_t len_of(cc_dict *d) {
  uint32_t n = UINT32_MAX;
  assert_int_equal(cc_dict_len(d, &n), 0);
  return n;
}

/* ---- Dicts: contents ---- */

static void set_get_del_round_trip_and_overwrite(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks(), used0 = cc_arena_used();
  cc_dict *d = cc_dict_new(CC_DICT);
  assert_non_null(d);
  assert_true(cc_obj_is(&d->hdr, &cc_dict_type));
  cc_msg out = {0};
  assert_int_equal(len_of(d), 0);
  assert_int_equal(cc_dict_get(d, "a", 1, &out), CC_EEMPTY);
  assert_int_equal(cc_dict_del(d, "a", 1, NULL), CC_EEMPTY);

  assert_int_equal(set_str(d, "a", "alpha"), 0);
  assert_int_equal(set_str(d, "b", "beta"), 0);
  assert_int_equal(len_of(d), 2);
  assert_int_equal(cc_dict_get(d, "a", 1, &out), 0);
  assert_true(is_str(&out, "alpha"));
  assert_int_equal(cc_dict_get(d, "b", 1, &out), 0);
  assert_true(is_str(&out, "beta"));

  /* An overwrite replaces the value and adds no entry. */
  assert_int_equal(set_str(d, "a", "a much longer value than before"), 0);
  assert_int_equal(len_of(d), 2);
  assert_int_equal(cc_dict_get(d, "a", 1, &out), 0);
  assert_true(is_str(&out, "a much longer value than before"));

  /* del hands the value out, then the key is gone. */
  assert_int_equal(cc_dict_del(d, "a", 1, &out), 0);
  assert_true(is_str(&out, "a much longer value than before"));
  assert_int_equal(len_of(d), 1);
  assert_int_equal(cc_dict_get(d, "a", 1, &out), CC_EEMPTY);
  assert_int_equal(cc_dict_del(d, "a", 1, &out), CC_EEMPTY);
  /* A deleted key may come back (into its tombstone's slot). */
  assert_int_equal(set_str(d, "a", "again"), 0);
  assert_int_equal(cc_dict_get(d, "a", 1, &out), 0);
  assert_true(is_str(&out, "again"));
  assert_int_equal(len_of(d), 2);

  /* Keys and values are bytes, not C strings: NULs inside count, and an
   * empty key and an empty value are keys and values like any other. */
  cc_msg v1 = bytes("x\0y", 3), v2 = bytes("x\0z", 3), empty = bytes("", 0);
  assert_int_equal(cc_dict_set(d, "k\0" "1", 3, &v1), 0);
  assert_int_equal(cc_dict_set(d, "k\0" "2", 3, &v2), 0);
  assert_int_equal(cc_dict_set(d, "", 0, &empty), 0);
  assert_int_equal(len_of(d), 5);
  assert_int_equal(cc_dict_get(d, "k\0" "1", 3, &out), 0);
  assert_int_equal(out.len, 3);
  assert_memory_equal(out.data, "x\0y", 3);
  assert_int_equal(cc_dict_get(d, "k\0" "2", 3, &out), 0);
  assert_int_equal(out.len, 3);
  assert_memory_equal(out.data, "x\0z", 3);
  assert_int_equal(cc_dict_get(d, "k", 1, &out), CC_EEMPTY);
  assert_int_equal(cc_dict_get(d, "", 0, &out), 0);
  assert_int_equal(out.len, 0);
  assert_int_equal(cc_dict_del(d, "", 0, NULL), 0);
  assert_int_equal(cc_dict_get(d, "", 0, &out), CC_EEMPTY);
  assert_int_equal(len_of(d), 4);

  cc_obj_unref(&d->hdr);
  /* Every blob, the table and the dict itself are gone. */
  assert_int_equal(cc_arena_live_blocks(), live0);
  assert_int_equal(cc_arena_used(), used0);

  /* A Namespace is a dict by key under another type. */
  cc_dict *ns = cc_dict_new(CC_NAMESPACE);
  assert_non_null(ns);
  assert_true(cc_obj_is(&ns->hdr, &cc_namespace_type));
  assert_int_equal(set_str(ns, "attr", "value"), 0);
  assert_int_equal(cc_dict_get(ns, "attr", 4, &out), 0);
  assert_true(is_str(&out, "value"));
  assert_int_equal(len_of(ns), 1);
  cc_obj_unref(&ns->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
  cc_msg_free(&out);
}

/* Values far larger than a small block (and than the caller's first
 * buffer) come back whole, and an overwrite with a small one frees them. */
enum { BIG = 100 * 1024, BIGS = 16 };

static void fill_big(char *p, int k) {
  for (size_t i = 0; i < BIG; i++)
    p[i] = (char)(i * 31 + (size_t)k * 7 + 1);
}

static void big_values_come_back_whole(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  cc_dict *d = cc_dict_new(CC_DICT);
  char *buf = malloc(BIG), key[16];
  cc_msg out = {0};
  for (int k = 0; k < BIGS; k++) {
    fill_big(buf, k);
    cc_msg m = bytes(buf, BIG);
    snprintf(key, sizeof key, "big%d", k);
    assert_int_equal(cc_dict_set(d, key, strlen(key), &m), 0);
  }
  for (int k = 0; k < BIGS; k++) {
    fill_big(buf, k);
    snprintf(key, sizeof key, "big%d", k);
    assert_int_equal(cc_dict_get(d, key, strlen(key), &out), 0);
    assert_int_equal(out.len, BIG);
    assert_memory_equal(out.data, buf, BIG);
  }
  size_t used = cc_arena_used();
  for (int k = 0; k < BIGS; k++) {
    snprintf(key, sizeof key, "big%d", k);
    assert_int_equal(set_str(d, key, "small"), 0);
  }
  /* Each 100 KB blob went back to the arena. */
  assert_true(cc_arena_used() + (size_t)BIGS * BIG <= used);
  assert_int_equal(len_of(d), BIGS);
  cc_obj_unref(&d->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
  free(buf);
  cc_msg_free(&out);
}

/* 10,000 keys: the table is rebuilt many times (8 entries to 16384), with
 * tombstones reused and compacted away; every key reads back exactly. */
enum { MANY = 10000 };

static int many_key(char *buf, size_t n, int i) { return snprintf(buf, n, "key-%05d", i); }

static void many_val(uint32_t v[3], int i, int generation) {
  v[0] = (uint32_t)i;
  v[1] = (uint32_t)generation;
  v[2] = (uint32_t)i * 2654435761u;
}

static void expect_many(cc_dict *d, int i, int generation, cc_msg *out) {
  char key[16];
  int kl = many_key(key, sizeof key, i);
  assert_int_equal(cc_dict_get(d, key, (size_t)kl, out), 0);
  uint32_t want[3];
  many_val(want, i, generation);
  assert_int_equal(out->len, sizeof want);
  assert_memory_equal(out->data, want, sizeof want);
}

static void ten_thousand_keys_grow_the_table_and_come_back_exactly(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks(), used0 = cc_arena_used();
  cc_dict *d = cc_dict_new(CC_DICT);
  cc_msg out = {0};
  char key[16];
  uint32_t v[3];
  for (int i = 0; i < MANY; i++) {
    many_val(v, i, 0);
    cc_msg m = bytes(v, sizeof v);
    int kl = many_key(key, sizeof key, i);
    assert_int_equal(cc_dict_set(d, key, (size_t)kl, &m), 0);
  }
  assert_int_equal(len_of(d), MANY);
  for (int i = 0; i < MANY; i++)
    expect_many(d, i, 0, &out);
  assert_int_equal(cc_dict_get(d, "key-10000", 9, &out), CC_EEMPTY);

  /* Delete the even keys, overwrite the odd ones. */
  for (int i = 0; i < MANY; i += 2) {
    int kl = many_key(key, sizeof key, i);
    assert_int_equal(cc_dict_del(d, key, (size_t)kl, &out), 0);
    many_val(v, i, 0);
    assert_int_equal(out.len, sizeof v);
    assert_memory_equal(out.data, v, sizeof v);
  }
  for (int i = 1; i < MANY; i += 2) {
    many_val(v, i, 1);
    cc_msg m = bytes(v, sizeof v);
    int kl = many_key(key, sizeof key, i);
    assert_int_equal(cc_dict_set(d, key, (size_t)kl, &m), 0);
  }
  assert_int_equal(len_of(d), MANY / 2);
  for (int i = 0; i < MANY; i++) {
    if (i & 1) {
      expect_many(d, i, 1, &out);
    } else {
      int kl = many_key(key, sizeof key, i);
      assert_int_equal(cc_dict_get(d, key, (size_t)kl, &out), CC_EEMPTY);
    }
  }
  /* The even keys come back, as new entries past the tombstones. */
  for (int i = 0; i < MANY; i += 2) {
    many_val(v, i, 2);
    cc_msg m = bytes(v, sizeof v);
    int kl = many_key(key, sizeof key, i);
    assert_int_equal(cc_dict_set(d, key, (size_t)kl, &m), 0);
  }
  assert_int_equal(len_of(d), MANY);
  for (int i = 0; i < MANY; i++)
    expect_many(d, i, i & 1 ? 1 : 2, &out);

  /* And all go. */
  for (int i = 0; i < MANY; i++) {
    int kl = many_key(key, sizeof key, i);
    assert_int_equal(cc_dict_del(d, key, (size_t)kl, NULL), 0);
  }
  assert_int_equal(len_of(d), 0);
  for (int i = 0; i < MANY; i += 97) {
    int kl = many_key(key, sizeof key, i);
    assert_int_equal(cc_dict_get(d, key, (size_t)kl, &out), CC_EEMPTY);
  }
  cc_snapshot s;
  assert_int_equal(cc_dict_snapshot(d, &s), 0);
  assert_int_equal(s.n, 0);
  cc_dict_snapshot_free(&s);
  cc_obj_unref(&d->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
  assert_int_equal(cc_arena_used(), used0);
  cc_msg_free(&out);
}

static void snapshot_gives_every_key_and_value_once(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  cc_dict *d = cc_dict_new(CC_DICT);
  char key[16];
  uint32_t v[3];
  for (int i = 0; i < MANY; i++) {
    many_val(v, i, 0);
    cc_msg m = bytes(v, sizeof v);
    int kl = many_key(key, sizeof key, i);
    assert_int_equal(cc_dict_set(d, key, (size_t)kl, &m), 0);
  }
  /* Every third key goes, so the snapshot has tombstones to skip. */
  for (int i = 0; i < MANY; i += 3) {
    int kl = many_key(key, sizeof key, i);
    assert_int_equal(cc_dict_del(d, key, (size_t)kl, NULL), 0);
  }
  uint32_t want = MANY - (MANY + 2) / 3;
  assert_int_equal(len_of(d), want);
  cc_snapshot s;
  assert_int_equal(cc_dict_snapshot(d, &s), 0);
  assert_int_equal(s.n, want);
  assert_non_null(s.keys);
  uint8_t *seen = calloc(MANY, 1);
  for (uint32_t j = 0; j < s.n; j++) {
    assert_int_equal(s.keys[j].len, 9);
    assert_int_equal(s.keys[j].nrefs, 0);
    memcpy(key, s.keys[j].data, 9);
    key[9] = '\0';
    int i = atoi(key + 4);
    assert_true(i >= 0 && i < MANY && i % 3 != 0);
    assert_int_equal(seen[i], 0);
    seen[i] = 1;
    many_val(v, i, 0);
    assert_int_equal(s.vals[j].len, sizeof v);
    assert_memory_equal(s.vals[j].data, v, sizeof v);
  }
  cc_dict_snapshot_free(&s);
  assert_int_equal(s.n, 0);
  free(seen);
  /* The snapshot is a copy: the dict still has everything. */
  assert_int_equal(len_of(d), want);
  cc_obj_unref(&d->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
}

/* ---- Dicts: read-modify-write ---- */

enum { UPDATERS = 4, UPDATES = 2000 };

typedef struct counter_board {
  cc_dict *d;
  _Atomic int go;            /* the start gate: all parties start together */
  _Atomic int last;          /* the party of the last increment */
  _Atomic uint32_t handoffs; /* increments by another party than the one before */
  _Atomic uint32_t calls;    /* fn calls that produced a new value */
  _Atomic uint32_t absent;   /* fn calls that saw no old value */
  _Atomic uint32_t inside;   /* fns running now */
  _Atomic uint32_t overlap;  /* fns that found another one running */
} counter_board;

/* old + 1, as a uint64; counts what it saw. */
static int add_one(void *ud, const cc_msg *old, cc_msg *val) {
  counter_board *b = ud;
  if (atomic_fetch_add(&b->inside, 1) != 0)
    atomic_fetch_add(&b->overlap, 1);
  uint64_t n = 0;
  int r = 0;
  if (!old)
    atomic_fetch_add(&b->absent, 1);
  else if (old->len != sizeof n)
    r = CC_ECORRUPT;
  else
    memcpy(&n, old->data, sizeof n);
  /* Now and then give the processor away between the read and the write:
   * without the lock, another party would increment meanwhile and one of
   * the two increments would be lost. */
  if (!r && n % 32 == 0)
    sched_yield();
  if (!r)
    r = cc_msg_reserve(val, sizeof n, 0);
  if (!r) {
    n++;
    memcpy(val->data, &n, sizeof n);
    val->len = sizeof n;
    atomic_fetch_add(&b->calls, 1);
  }
  atomic_fetch_sub(&b->inside, 1);
  return r;
}

/* Waits (at most 30 s) until the test opens the gate. 0 when open. */
static int wait_gate(_Atomic int *go) {
  int64_t end = cc_now() + 30 * 1000 * MS;
  while (!atomic_load(go))
    if (cc_now() > end)
      return 1;
  return 0;
}

static int updater(void *arg, int id) {
  counter_board *b = arg;
  if (wait_gate(&b->go))
    return 2;
  for (int k = 0; k < UPDATES; k++) {
    if (cc_dict_update(b->d, "count", 5, add_one, b) != 0)
      return 1;
    if (atomic_exchange(&b->last, id) != id)
      atomic_fetch_add(&b->handoffs, 1);
  }
  return 0;
}

static uint64_t counter_value(cc_dict *d) {
  cc_msg out = {0};
  uint64_t n = 0;
  assert_int_equal(cc_dict_get(d, "count", 5, &out), 0);
  assert_int_equal(out.len, sizeof n);
  memcpy(&n, out.data, sizeof n);
  cc_msg_free(&out);
  return n;
}

static void four_parties_count_exactly_with_update(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    /* In the arena, so that parties in other processes see the same board. */
    counter_board *b = cc_arena_alloc(sizeof *b);
    assert_non_null(b);
    memset(b, 0, sizeof *b);
    b->d = cc_dict_new(CC_DICT);
    atomic_store(&b->last, -1);
    party *p[UPDATERS];
    for (int i = 0; i < UPDATERS; i++)
      p[i] = party_start(kind, updater, b, i);
    int64_t t0 = cc_now();
    atomic_store(&b->go, 1);
    for (int i = 0; i < UPDATERS; i++)
      assert_int_equal(party_join(p[i], 60), 0);
    double ms = elapsed_ms(t0);
    assert_int_equal(counter_value(b->d), (uint64_t)UPDATERS * UPDATES);
    assert_int_equal(atomic_load(&b->calls), UPDATERS * UPDATES);
    /* Only the very first update found no counter. */
    assert_int_equal(atomic_load(&b->absent), 1);
    /* No two fns ever ran at once: each ran under the container's lock. */
    assert_int_equal(atomic_load(&b->overlap), 0);
    assert_int_equal(len_of(b->d), 1);
    assert_false(cc_lock_locked(&b->d->lock));
    print_message("update, parties as %s: %d x %d increments exact in %.0f ms "
                  "(%u handoffs between parties)\n",
                  party_kind_names[kind], UPDATERS, UPDATES, ms, atomic_load(&b->handoffs));
    cc_obj_unref(&b->d->hdr);
    cc_arena_free(b);
  }
}

typedef struct abort_info {
  int code;
  int calls;
  int saw_old;
} abort_info;

/* Writes a new value, then refuses it. */
static int refuse(void *ud, const cc_msg *old, cc_msg *val) {
  abort_info *a = ud;
  a->calls++;
  a->saw_old = old != NULL && is_str(old, "seven");
  if (cc_msg_reserve(val, 5, 0) == 0) {
    memcpy(val->data, "eight", 5);
    val->len = 5;
  }
  return a->code;
}

/* Reads another key of the same dict: the lock is recursive for this. */
static int copy_other(void *ud, const cc_msg *old, cc_msg *val) {
  cc_dict *d = ud;
  (void)old;
  return cc_dict_get(d, "src", 3, val);
}

static void update_aborts_with_the_fn_code_and_keeps_the_old_value(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  cc_dict *d = cc_dict_new(CC_DICT);
  cc_msg out = {0};
  assert_int_equal(set_str(d, "x", "seven"), 0);
  int codes[] = {42, 1, CC_EVALUE, CC_EEMPTY};
  for (size_t c = 0; c < sizeof codes / sizeof *codes; c++) {
    abort_info a = {.code = codes[c]};
    assert_int_equal(cc_dict_update(d, "x", 1, refuse, &a), codes[c]);
    assert_int_equal(a.calls, 1);
    assert_true(a.saw_old);
    assert_int_equal(cc_dict_get(d, "x", 1, &out), 0);
    assert_true(is_str(&out, "seven"));
  }
  /* An aborted update of a missing key leaves it missing. */
  abort_info a = {.code = 5};
  assert_int_equal(cc_dict_update(d, "y", 1, refuse, &a), 5);
  assert_int_equal(a.calls, 1);
  assert_false(a.saw_old);
  assert_int_equal(cc_dict_get(d, "y", 1, &out), CC_EEMPTY);
  assert_int_equal(len_of(d), 1);
  /* And one that goes through replaces it. */
  a.code = 0;
  assert_int_equal(cc_dict_update(d, "x", 1, refuse, &a), 0);
  assert_int_equal(cc_dict_get(d, "x", 1, &out), 0);
  assert_true(is_str(&out, "eight"));
  /* fn may read the container it updates (under the same, recursive lock). */
  assert_int_equal(set_str(d, "src", "copied"), 0);
  assert_int_equal(cc_dict_update(d, "dst", 3, copy_other, d), 0);
  assert_int_equal(cc_dict_get(d, "dst", 3, &out), 0);
  assert_true(is_str(&out, "copied"));
  /* A missing source: fn's CC_EEMPTY is the update's, and nothing is made. */
  assert_int_equal(cc_dict_del(d, "src", 3, NULL), 0);
  assert_int_equal(cc_dict_update(d, "none", 4, copy_other, d), CC_EEMPTY);
  assert_int_equal(cc_dict_get(d, "none", 4, &out), CC_EEMPTY);
  assert_int_equal(len_of(d), 2);
  assert_false(cc_lock_locked(&d->lock));
  cc_obj_unref(&d->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
  cc_msg_free(&out);
}

/* ---- Lists ---- */

enum { APPENDERS = 4, APPENDS = 2000 };

typedef struct list_board {
  cc_dict *l;
  _Atomic int go;
} list_board;

static int appender(void *arg, int id) {
  list_board *lb = arg;
  cc_dict *l = lb->l;
  if (wait_gate(&lb->go))
    return 2;
  uint32_t v[2] = {(uint32_t)id, 0};
  cc_msg m = bytes(v, sizeof v);
  for (uint32_t k = 0; k < APPENDS; k++) {
    v[1] = k;
    if (cc_list_insert(l, CC_LIST_END, &m) != 0)
      return 1;
    /* Now and then let the others in, so that the appends interleave. */
    if (k % 64 == 63)
      sched_yield();
  }
  return 0;
}

static void four_parties_append_and_each_keeps_its_order(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    size_t live0 = cc_arena_live_blocks();
    list_board *lb = cc_arena_alloc(sizeof *lb);
    assert_non_null(lb);
    memset(lb, 0, sizeof *lb);
    cc_dict *l = lb->l = cc_dict_new(CC_LIST);
    assert_true(cc_obj_is(&l->hdr, &cc_list_type));
    party *p[APPENDERS];
    for (int i = 0; i < APPENDERS; i++)
      p[i] = party_start(kind, appender, lb, i);
    atomic_store(&lb->go, 1);
    for (int i = 0; i < APPENDERS; i++)
      assert_int_equal(party_join(p[i], 60), 0);
    assert_int_equal(len_of(l), APPENDERS * APPENDS);
    cc_snapshot s;
    assert_int_equal(cc_dict_snapshot(l, &s), 0);
    assert_null(s.keys);
    assert_int_equal(s.n, APPENDERS * APPENDS);
    /* Each party's items: all there, once, in the order it appended them. */
    uint32_t next[APPENDERS] = {0};
    int switches = 0;
    uint32_t prev = UINT32_MAX;
    for (uint32_t j = 0; j < s.n; j++) {
      uint32_t v[2];
      assert_int_equal(s.vals[j].len, sizeof v);
      memcpy(v, s.vals[j].data, sizeof v);
      assert_true(v[0] < APPENDERS);
      assert_int_equal(v[1], next[v[0]]);
      next[v[0]]++;
      switches += prev != UINT32_MAX && prev != v[0];
      prev = v[0];
    }
    for (int i = 0; i < APPENDERS; i++)
      assert_int_equal(next[i], APPENDS);
    cc_dict_snapshot_free(&s);
    print_message("list appends, parties as %s: %d x %d in order (%d switches between parties)\n",
                  party_kind_names[kind], APPENDERS, APPENDS, switches);
    cc_obj_unref(&l->hdr);
    cc_arena_free(lb);
    assert_int_equal(cc_arena_live_blocks(), live0);
  }
}

/* The list holds exactly these strings, in this order. */
static void expect_list(cc_dict *l, const char *const *want, uint32_t n) {
  cc_msg out = {0};
  assert_int_equal(len_of(l), n);
  for (uint32_t i = 0; i < n; i++) {
    assert_int_equal(cc_list_get(l, i, &out), 0);
    if (!is_str(&out, want[i]))
      fail_msg("item %u is '%.*s', not '%s'", i, (int)out.len, out.data, want[i]);
  }
  assert_int_equal(cc_list_get(l, n, &out), CC_EEMPTY);
  cc_msg_free(&out);
}

/* Pops item i, which must be the string s. */
static void expect_pop(cc_dict *l, uint32_t i, cc_msg *out, const char *s) {
  assert_int_equal(cc_list_pop(l, i, out), 0);
  assert_true(is_str(out, s));
}

static int insert_str(cc_dict *l, uint32_t i, const char *s) {
  cc_msg m = bytes(s, strlen(s));
  return cc_list_insert(l, i, &m);
}

static void list_insert_set_get_and_pop_by_index(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  cc_dict *l = cc_dict_new(CC_LIST);
  cc_msg out = {0}, m = bytes("z", 1);
  assert_int_equal(len_of(l), 0);
  assert_int_equal(cc_list_get(l, 0, &out), CC_EEMPTY);
  assert_int_equal(cc_list_pop(l, 0, &out), CC_EEMPTY);
  assert_int_equal(cc_list_set(l, 0, &m), CC_EEMPTY);
  assert_int_equal(insert_str(l, 1, "z"), CC_EEMPTY); /* past the end */
  assert_int_equal(len_of(l), 0);

  const char *const abcde[] = {"a", "b", "c", "d", "e"};
  for (int i = 0; i < 5; i++)
    assert_int_equal(insert_str(l, CC_LIST_END, abcde[i]), 0);
  expect_list(l, abcde, 5);
  /* Into the middle, at the front, and at len (an append). */
  assert_int_equal(insert_str(l, 2, "M"), 0);
  assert_int_equal(insert_str(l, 0, "F"), 0);
  assert_int_equal(insert_str(l, 7, "L"), 0);
  const char *const w1[] = {"F", "a", "b", "M", "c", "d", "e", "L"};
  expect_list(l, w1, 8);
  assert_int_equal(insert_str(l, 9, "no"), CC_EEMPTY);
  /* set replaces in place; out of range changes nothing. */
  cc_msg s = bytes("S", 1);
  assert_int_equal(cc_list_set(l, 4, &s), 0);
  assert_int_equal(cc_list_set(l, 8, &s), CC_EEMPTY);
  assert_int_equal(cc_list_set(l, CC_LIST_END, &s), CC_EEMPTY);
  assert_int_equal(cc_list_get(l, 8, &out), CC_EEMPTY);
  assert_int_equal(cc_list_get(l, CC_LIST_END, &out), CC_EEMPTY);
  const char *const w2[] = {"F", "a", "b", "M", "S", "d", "e", "L"};
  expect_list(l, w2, 8);
  /* Pops from the front, the back and the middle hand out those items. */
  expect_pop(l, 0, &out, "F");
  expect_pop(l, 6, &out, "L");
  expect_pop(l, 2, &out, "M");
  assert_int_equal(cc_list_pop(l, 5, &out), CC_EEMPTY);
  const char *const w3[] = {"a", "b", "S", "d", "e"};
  expect_list(l, w3, 5);
  assert_int_equal(cc_list_pop(l, 3, NULL), 0); /* dropped */
  const char *const w4[] = {"a", "b", "S", "e"};
  expect_list(l, w4, 4);
  /* Emptied from the back and the front, then usable again. */
  expect_pop(l, 3, &out, "e");
  expect_pop(l, 0, &out, "a");
  expect_pop(l, 1, &out, "S");
  expect_pop(l, 0, &out, "b");
  assert_int_equal(cc_list_pop(l, 0, &out), CC_EEMPTY);
  expect_list(l, NULL, 0);
  assert_int_equal(insert_str(l, 0, "again"), 0);
  const char *const w5[] = {"again"};
  expect_list(l, w5, 1);
  cc_obj_unref(&l->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
  cc_msg_free(&out);
}

/* Random inserts, pops, sets and gets against an array that does the same:
 * the list agrees after every step (which covers rebuilds at every index). */
enum { MODEL_OPS = 20000, MODEL_MAX = 600 };

static void list_agrees_with_a_model_over_random_operations(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  cc_dict *l = cc_dict_new(CC_LIST);
  uint32_t *model = malloc(MODEL_MAX * sizeof *model), n = 0, next = 0;
  cc_msg out = {0};
  unsigned seed = 20240611;
  int inserts = 0, pops = 0, sets = 0;
  for (int op = 0; op < MODEL_OPS; op++) {
    uint32_t r = (uint32_t)rand_r(&seed);
    uint32_t i = n ? r / 7 % (n + 1) : 0;
    uint32_t what = r % 7;
    if ((what < 3 && n < MODEL_MAX) || n == 0) {
      uint32_t v = next++;
      cc_msg m = bytes(&v, sizeof v);
      assert_int_equal(cc_list_insert(l, i, &m), 0);
      memmove(model + i + 1, model + i, (n - i) * sizeof *model);
      model[i] = v;
      n++;
      inserts++;
    } else if (what < 5) {
      if (i == n) {
        assert_int_equal(cc_list_pop(l, i, &out), CC_EEMPTY);
        i = n - 1;
      }
      assert_int_equal(cc_list_pop(l, i, &out), 0);
      assert_int_equal(out.len, sizeof(uint32_t));
      uint32_t got;
      memcpy(&got, out.data, sizeof got);
      assert_int_equal(got, model[i]);
      memmove(model + i, model + i + 1, (n - i - 1) * sizeof *model);
      n--;
      pops++;
    } else if (what == 5 && i < n) {
      uint32_t v = next++;
      cc_msg m = bytes(&v, sizeof v);
      assert_int_equal(cc_list_set(l, i, &m), 0);
      model[i] = v;
      sets++;
    } else {
      int rc = cc_list_get(l, i, &out);
      if (i == n) {
        assert_int_equal(rc, CC_EEMPTY);
      } else {
        assert_int_equal(rc, 0);
        uint32_t got;
        memcpy(&got, out.data, sizeof got);
        assert_int_equal(got, model[i]);
      }
    }
    if (op % 1000 == 999) {
      cc_snapshot s;
      assert_int_equal(cc_dict_snapshot(l, &s), 0);
      assert_int_equal(s.n, n);
      for (uint32_t j = 0; j < n; j++) {
        uint32_t got;
        memcpy(&got, s.vals[j].data, sizeof got);
        assert_int_equal(got, model[j]);
      }
      cc_dict_snapshot_free(&s);
    }
  }
  assert_int_equal(len_of(l), n);
  print_message("list model: %d inserts, %d pops, %d sets; %u items at the end\n", inserts,
                pops, sets, n);
  cc_obj_unref(&l->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
  free(model);
  cc_msg_free(&out);
}

/* ---- References ---- */

enum { NLOCKS = 3 };

/* NLOCKS new Locks, their offsets in refs (each with its one creation
 * reference, which the message will carry). */
static void new_locks(uint32_t refs[NLOCKS]) {
  for (int i = 0; i < NLOCKS; i++) {
    cc_lock *k = cc_lock_new(0);
    assert_non_null(k);
    refs[i] = cc_arena_off(k);
  }
}

/* Each object of refs is alive with exactly `n` references (0: gone). */
static void expect_refs(const uint32_t refs[NLOCKS], uint32_t n) {
  for (int i = 0; i < NLOCKS; i++) {
    cc_obj *o = cc_obj_from_off(refs[i]);
    if (n == 0) {
      assert_null(o);
    } else {
      assert_non_null(o);
      assert_int_equal(atomic_load(&o->refs), n);
    }
  }
}

static int replace_with_locks(void *ud, const cc_msg *old, cc_msg *val) {
  uint32_t *refs = ud;
  /* The old value's references are fn's: it drops them. */
  for (uint32_t i = 0; old && i < old->nrefs; i++)
    cc_obj_unref(cc_obj_from_off(old->refs[i]));
  if (cc_msg_reserve(val, 3, NLOCKS))
    return CC_ENOMEM;
  memcpy(val->data, "new", 3);
  val->len = 3;
  memcpy(val->refs, refs, NLOCKS * sizeof *refs);
  val->nrefs = NLOCKS;
  return 0;
}

static void references_live_in_the_container_and_go_with_their_value(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  cc_dict *d = cc_dict_new(CC_DICT);
  cc_msg out = {0};
  uint32_t a[NLOCKS], b[NLOCKS], c[NLOCKS];

  /* In: the creation references go to the container. */
  new_locks(a);
  cc_msg m = {.data = "locks", .len = 5, .refs = a, .nrefs = NLOCKS};
  assert_int_equal(cc_dict_set(d, "a", 1, &m), 0);
  expect_refs(a, 1);
  /* Out: a copy comes with references of its own, in order. */
  assert_int_equal(cc_dict_get(d, "a", 1, &out), 0);
  assert_int_equal(out.nrefs, NLOCKS);
  assert_memory_equal(out.refs, a, sizeof a);
  expect_refs(a, 2);
  cc_msg_unref(&out);
  expect_refs(a, 1);
  /* Deleting the value (dropped) releases them. */
  assert_int_equal(cc_dict_del(d, "a", 1, NULL), 0);
  expect_refs(a, 0);

  /* Deleting into out hands the container's references over. */
  new_locks(a);
  m.refs = a;
  assert_int_equal(cc_dict_set(d, "a", 1, &m), 0);
  assert_int_equal(cc_dict_del(d, "a", 1, &out), 0);
  assert_int_equal(out.nrefs, NLOCKS);
  expect_refs(a, 1);
  cc_msg_unref(&out);
  expect_refs(a, 0);

  /* Overwriting releases the old value's objects. */
  new_locks(a);
  m.refs = a;
  assert_int_equal(cc_dict_set(d, "a", 1, &m), 0);
  assert_int_equal(set_str(d, "a", "plain"), 0);
  expect_refs(a, 0);

  /* update: the old value's references go to fn, the new one's to the
   * container. */
  new_locks(a);
  m.refs = a;
  assert_int_equal(cc_dict_set(d, "u", 1, &m), 0);
  new_locks(b);
  assert_int_equal(cc_dict_update(d, "u", 1, replace_with_locks, b), 0);
  expect_refs(a, 0);
  expect_refs(b, 1);

  /* A snapshot holds references until it is freed. */
  cc_snapshot s;
  assert_int_equal(cc_dict_snapshot(d, &s), 0);
  assert_int_equal(s.n, 2);
  expect_refs(b, 2);
  cc_dict_snapshot_free(&s);
  expect_refs(b, 1);

  /* A value the arena cannot take leaves its references the caller's. */
  size_t huge = cc_arena_size() + 1;
  char *hbuf = calloc(1, huge);
  assert_non_null(hbuf);
  new_locks(c);
  cc_msg h = {.data = hbuf, .len = huge, .refs = c, .nrefs = NLOCKS};
  size_t live1 = cc_arena_live_blocks();
  assert_int_equal(cc_dict_set(d, "h", 1, &h), CC_EARENAFULL);
  assert_int_equal(cc_dict_set(d, "u", 1, &h), CC_EARENAFULL);
  assert_int_equal(cc_arena_live_blocks(), live1);
  expect_refs(c, 1);
  expect_refs(b, 1); /* u kept its value */
  assert_int_equal(cc_dict_get(d, "h", 1, &out), CC_EEMPTY);
  assert_int_equal(cc_dict_get(d, "u", 1, &out), 0);
  assert_int_equal(out.len, 3);
  assert_memory_equal(out.data, "new", 3);
  cc_msg_unref(&out);
  free(hbuf);

  /* Destroying the container releases what its values hold. */
  m.refs = c; /* c's creation references go in */
  assert_int_equal(cc_dict_set(d, "c", 1, &m), 0);
  new_locks(a);
  m.refs = a;
  assert_int_equal(cc_dict_set(d, "del-me", 6, &m), 0);
  assert_int_equal(cc_dict_del(d, "del-me", 6, NULL), 0); /* a tombstone */
  expect_refs(a, 0);
  cc_obj_unref(&d->hdr);
  expect_refs(b, 0);
  expect_refs(c, 0);
  assert_int_equal(cc_arena_live_blocks(), live0);

  /* The same for a list: set, pop and destroy release, a failed insert
   * leaves the references the caller's. */
  cc_dict *l = cc_dict_new(CC_LIST);
  new_locks(a);
  new_locks(b);
  new_locks(c);
  cc_msg ma = {.data = "a", .len = 1, .refs = a, .nrefs = NLOCKS};
  cc_msg mb = {.data = "b", .len = 1, .refs = b, .nrefs = NLOCKS};
  cc_msg mc = {.data = "c", .len = 1, .refs = c, .nrefs = NLOCKS};
  assert_int_equal(cc_list_insert(l, CC_LIST_END, &ma), 0);
  assert_int_equal(cc_list_insert(l, CC_LIST_END, &mb), 0);
  assert_int_equal(cc_list_get(l, 1, &out), 0);
  expect_refs(b, 2);
  cc_msg_unref(&out);
  assert_int_equal(cc_list_set(l, 0, &mc), 0); /* a's go, c's come in */
  expect_refs(a, 0);
  expect_refs(c, 1);
  assert_int_equal(cc_list_pop(l, 0, &out), 0);
  assert_int_equal(out.nrefs, NLOCKS);
  assert_memory_equal(out.refs, c, sizeof c);
  expect_refs(c, 1);
  cc_msg_unref(&out);
  expect_refs(c, 0);
  new_locks(a);
  h.refs = a;
  hbuf = calloc(1, huge);
  h.data = hbuf;
  assert_int_equal(cc_list_insert(l, 0, &h), CC_EARENAFULL);
  assert_int_equal(cc_list_set(l, 0, &h), CC_EARENAFULL);
  free(hbuf);
  expect_refs(a, 1);
  ma.refs = a;
  assert_int_equal(cc_list_insert(l, 0, &ma), 0); /* a rebuild: a in front of b */
  assert_int_equal(len_of(l), 2);
  cc_obj_unref(&l->hdr);
  expect_refs(a, 0);
  expect_refs(b, 0);
  assert_int_equal(cc_arena_live_blocks(), live0);
  cc_msg_free(&out);
}

/* ---- Kills ---- */

/* A process sets (and now and then deletes) keys v0..v<VKEYS-1> in a loop,
 * each value naming its key, until it is SIGKILLed; meanwhile a survivor of
 * each kind in turn sets and reads its own keys. After each kill the dict
 * must be whole: base keys exact, the survivor's keys exact, every v key
 * either absent or with a value of its own, len equal to the keys found,
 * and a snapshot with each of them once. */
enum { KILL_ROUNDS = 150, BASE_KEYS = 500, VKEYS = 700, SKEYS = 200, SURVIVOR_OPS = 2000 };

typedef struct kill_board {
  cc_dict *d;
  _Atomic uint32_t started; /* the victim's first operation is done */
  _Atomic uint64_t victim_ops;
} kill_board;

/* "<key>=<n>" then n % 61 bytes of padding, so that values vary in size. */
static size_t victim_value(char *buf, size_t cap, const char *key, uint32_t n) {
  int len = snprintf(buf, cap, "%s=%u:", key, n);
  size_t pad = n % 61;
  memset(buf + len, 'p', pad);
  return (size_t)len + pad;
}

/* True when val is a value victim_value could have made for key. */
static int victim_value_ok(const cc_msg *val, const char *key) {
  size_t kl = strlen(key);
  if (val->len < kl + 3 || memcmp(val->data, key, kl) != 0 || val->data[kl] != '=')
    return 0;
  char buf[160];
  if (val->len >= sizeof buf)
    return 0;
  unsigned n;
  memcpy(buf, val->data, val->len);
  buf[val->len] = '\0';
  if (sscanf(buf + kl + 1, "%u:", &n) != 1)
    return 0;
  char want[160];
  size_t wl = victim_value(want, sizeof want, key, n);
  return wl == val->len && memcmp(want, val->data, wl) == 0;
}

static int hammer(void *arg, int round) {
  kill_board *b = arg;
  char key[32], val[160];
  for (uint32_t k = (uint32_t)round * 1000003u;; k++) {
    snprintf(key, sizeof key, "v%u", k * 7919u % VKEYS);
    int r;
    if (k % 5 == 4) {
      r = cc_dict_del(b->d, key, strlen(key), NULL);
      if (r == CC_EEMPTY)
        r = 0;
    } else {
      size_t n = victim_value(val, sizeof val, key, k);
      cc_msg m = bytes(val, n);
      r = cc_dict_set(b->d, key, strlen(key), &m);
    }
    if (r)
      return 1;
    atomic_fetch_add(&b->victim_ops, 1);
    atomic_store(&b->started, 1);
  }
}

static int survivor(void *arg, int round) {
  kill_board *b = arg;
  char key[32], val[64];
  cc_msg out = {0};
  int bad = 0;
  for (int op = 0; op < SURVIVOR_OPS && !bad; op++) {
    snprintf(key, sizeof key, "s%d", op % SKEYS);
    snprintf(val, sizeof val, "s%d=%d:%d", op % SKEYS, round, op);
    if (set_str(b->d, key, val) != 0)
      bad = 1;
    else if (cc_dict_get(b->d, key, strlen(key), &out) != 0 || !is_str(&out, val))
      bad = 2;
  }
  cc_msg_free(&out);
  return bad;
}

static int cmp_msg(const void *x, const void *y) {
  const cc_msg *a = x, *b = y;
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->data, b->data, n);
  return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* The whole-dict check, run as a party so that it is bounded by a timeout
 * (a lock left by the dead victim must not hold it up). 0 when whole. */
static int check_whole(void *arg, int round) {
  kill_board *b = arg;
  cc_dict *d = b->d;
  char key[32], val[64];
  cc_msg out = {0};
  int bad = 0;
  uint32_t found = 0;
  for (int i = 0; i < BASE_KEYS && !bad; i++, found++) {
    snprintf(key, sizeof key, "base%d", i);
    snprintf(val, sizeof val, "base value %d", i);
    if (cc_dict_get(d, key, strlen(key), &out) != 0 || !is_str(&out, val))
      bad = 1;
  }
  for (int i = 0; i < SKEYS && !bad; i++, found++) {
    snprintf(key, sizeof key, "s%d", i);
    snprintf(val, sizeof val, "s%d=%d:%d", i, round, SURVIVOR_OPS - SKEYS + i);
    if (cc_dict_get(d, key, strlen(key), &out) != 0 || !is_str(&out, val))
      bad = 2;
  }
  for (int i = 0; i < VKEYS && !bad; i++) {
    snprintf(key, sizeof key, "v%d", i);
    int r = cc_dict_get(d, key, strlen(key), &out);
    if (r == 0 && victim_value_ok(&out, key))
      found++;
    else if (r != CC_EEMPTY)
      bad = 3;
  }
  cc_msg_free(&out);
  if (bad)
    return bad;
  if (len_of(d) != found)
    return 4;
  cc_snapshot s;
  if (cc_dict_snapshot(d, &s) != 0)
    return 5;
  if (s.n != found)
    bad = 6;
  qsort(s.keys, s.n, sizeof *s.keys, cmp_msg);
  for (uint32_t j = 1; j < s.n && !bad; j++)
    if (cmp_msg(&s.keys[j - 1], &s.keys[j]) == 0)
      bad = 7; /* a key twice */
  cc_dict_snapshot_free(&s);
  return bad;
}

static void a_killed_setter_leaves_the_dict_usable(void **state) {
  (void)state;
  kill_board *b = cc_arena_alloc(sizeof *b);
  assert_non_null(b);
  memset(b, 0, sizeof *b);
  b->d = cc_dict_new(CC_DICT);
  char key[32], val[64];
  for (int i = 0; i < BASE_KEYS; i++) {
    snprintf(key, sizeof key, "base%d", i);
    snprintf(val, sizeof val, "base value %d", i);
    assert_int_equal(set_str(b->d, key, val), 0);
  }
  unsigned seed = 777;
  int held_by_the_dead = 0;
  int64_t t0 = cc_now();
  for (int round = 0; round < KILL_ROUNDS; round++) {
    atomic_store(&b->started, 0);
    pid_t victim = spawn(hammer, b, round);
    party *other = party_start(round % PARTY_KINDS, survivor, b, round);
    int64_t end = cc_now() + 10 * 1000 * MS;
    while (!atomic_load(&b->started)) {
      if (cc_now() > end)
        fail_msg("round %d: the victim made no operation within 10 s", round);
      cc_sleep_until(cc_now() + MS / 10);
    }
    cc_sleep_until(cc_now() + (int64_t)(rand_r(&seed) % 3000) * 1000);
    kill(victim, SIGKILL);
    assert_int_equal(await(victim, 10), 128 + SIGKILL);
    /* Did it die inside an operation? (Only a statistic: the survivor may
     * hold the lock instead, or take it over at any moment.) */
    held_by_the_dead += cc_lock_locked(&b->d->lock) &&
                        atomic_load(&b->d->lock.owner_pid) == victim;
    int r = party_join(other, 60);
    if (r)
      fail_msg("round %d: the survivor (%s) failed with %d", round,
               party_kind_names[round % PARTY_KINDS], r);
    party *checker = party_start(PARTY_THREAD, check_whole, b, round);
    r = party_join(checker, 60);
    if (r)
      fail_msg("round %d: the dict is not whole after the kill (check %d)", round, r);
  }
  /* Still usable from here, with the lock free. */
  assert_int_equal(set_str(b->d, "after", "all"), 0);
  cc_msg out = {0};
  assert_int_equal(cc_dict_get(b->d, "after", 5, &out), 0);
  assert_true(is_str(&out, "all"));
  assert_int_equal(cc_dict_del(b->d, "after", 5, NULL), 0);
  assert_false(cc_lock_locked(&b->d->lock));
  print_message("%d kills in %.0f ms: the victims made %llu operations, %d died holding the "
                "dict's lock; the dict stayed whole\n",
                KILL_ROUNDS, elapsed_ms(t0), (unsigned long long)atomic_load(&b->victim_ops),
                held_by_the_dead);
  cc_msg_free(&out);
  /* What a victim had allocated when it died may be lost to the arena, so
   * no exact count here; the container itself goes cleanly. */
  cc_obj_unref(&b->d->hdr);
  cc_arena_free(b);
}

/* A holder killed at each fault point of dict.c: the next holder mends
 * what it left and frees what it had made, and the operation is either
 * done or not, never half. The
 * victim is a process or a thread of one (a kill takes the whole process);
 * the one that mends is a process, a thread of this one, or a thread of
 * another process. */
typedef struct fault_board {
  cc_dict *d;
  int point;
} fault_board;

enum { FAULT_KEYS = 8 }; /* a dict's first table holds 8 entries: a 9th grows it */

static int fault_victim(void *arg, int i) {
  (void)i;
  fault_board *b = arg;
  cc_msg v = bytes("new value", 9), out = {0};
  cc_fault_arm(b->point, 1);
  switch (b->point) {
  case CC_FAULT_DICT_VALUE_MADE:
  case CC_FAULT_DICT_ADD_COUNTED:
  case CC_FAULT_DICT_ADD_INDEXED:
  case CC_FAULT_DICT_GROWN:
    cc_dict_set(b->d, "new", 3, &v);
    break;
  case CC_FAULT_DICT_SET_SWAPPED:
    cc_dict_set(b->d, "k0", 2, &v);
    break;
  case CC_FAULT_DICT_DEL_UNKEYED:
    cc_dict_del(b->d, "k1", 2, &out);
    break;
  case CC_FAULT_LIST_APPEND_LIVE:
    cc_list_insert(b->d, CC_LIST_END, &v);
    break;
  case CC_FAULT_LIST_POP_USED:
    cc_list_pop(b->d, FAULT_KEYS - 2, &out); /* the last of a list's 7 */
    break;
  }
  return 99; /* the point was not reached */
}

/* 0 when the dict holds exactly what the operation left (done or not, as
 * the point says), and goes on working; else which check failed. */
static int fault_check(void *arg, int i) {
  (void)i;
  fault_board *b = arg;
  cc_dict *d = b->d;
  cc_msg out = {0};
  int p = b->point, bad = 0;
  uint32_t n = UINT32_MAX;
  if (p == CC_FAULT_LIST_APPEND_LIVE || p == CC_FAULT_LIST_POP_USED) {
    /* The append was not committed; the pop was. */
    uint32_t want = p == CC_FAULT_LIST_APPEND_LIVE ? FAULT_KEYS - 1 : FAULT_KEYS - 2;
    if (cc_dict_len(d, &n) || n != want)
      return 1;
    cc_snapshot s;
    if (cc_dict_snapshot(d, &s) || s.n != want)
      return 2;
    cc_dict_snapshot_free(&s);
    cc_msg v = bytes("more", 4);
    if (cc_list_insert(d, CC_LIST_END, &v) || cc_dict_len(d, &n) || n != want + 1)
      return 3;
    if (cc_list_get(d, want, &out) || !is_str(&out, "more"))
      bad = 4;
    cc_msg_free(&out);
    return bad;
  }
  /* What each point leaves: the new key in (its entry was whole when
   * counted), k0's new value, k1 gone; a grown table without the key yet. */
  int has_new = p == CC_FAULT_DICT_ADD_COUNTED || p == CC_FAULT_DICT_ADD_INDEXED;
  uint32_t want = FAULT_KEYS + (uint32_t)has_new - (p == CC_FAULT_DICT_DEL_UNKEYED);
  if (p == CC_FAULT_DICT_GROWN)
    want = FAULT_KEYS;
  if (cc_dict_len(d, &n) || n != want)
    return 10;
  int r = cc_dict_get(d, "new", 3, &out);
  if (has_new ? r != 0 || !is_str(&out, "new value") : r != CC_EEMPTY)
    bad = 11;
  r = cc_dict_get(d, "k0", 2, &out);
  if (!bad && (r || !is_str(&out, p == CC_FAULT_DICT_SET_SWAPPED ? "new value" : "v0")))
    bad = 12;
  r = cc_dict_get(d, "k1", 2, &out);
  if (!bad && (p == CC_FAULT_DICT_DEL_UNKEYED ? r != CC_EEMPTY : r != 0))
    bad = 13;
  /* Setting the key again replaces it (no second entry), and the snapshot
   * agrees with the length. */
  cc_msg v = bytes("again", 5);
  if (!bad && (cc_dict_set(d, "new", 3, &v) || cc_dict_len(d, &n) ||
               n != FAULT_KEYS + 1 - (p == CC_FAULT_DICT_DEL_UNKEYED)))
    bad = 14;
  cc_snapshot s;
  if (!bad && cc_dict_snapshot(d, &s) == 0) {
    if (s.n != n)
      bad = 15;
    for (uint32_t j = 0; j < s.n && !bad; j++)
      if (s.keys[j].len == 3 && memcmp(s.keys[j].data, "new", 3) == 0 &&
          !is_str(&s.vals[j], "again"))
        bad = 16;
    cc_dict_snapshot_free(&s);
  } else if (!bad) {
    bad = 17;
  }
  cc_msg_free(&out);
  return bad;
}

static void a_holder_killed_at_each_fault_point_leaves_it_whole(void **state) {
  (void)state;
  char key[16], val[16];
  for (int p = CC_FAULT_DICT_VALUE_MADE; p <= CC_FAULT_LIST_POP_USED; p++) {
    for (int kind = 0; kind < PARTY_KINDS; kind++) {
      size_t live = cc_arena_live_blocks();
      fault_board *b = cc_arena_alloc(sizeof *b);
      assert_non_null(b);
      int list = p == CC_FAULT_LIST_APPEND_LIVE || p == CC_FAULT_LIST_POP_USED;
      b->d = cc_dict_new(list ? CC_LIST : CC_DICT);
      b->point = p;
      /* 8 keys (the add grows the table first), or 7 items (room to append
       * in place). */
      for (int k = 0; k < FAULT_KEYS - list; k++) {
        snprintf(key, sizeof key, "k%d", k);
        snprintf(val, sizeof val, "v%d", k);
        cc_msg m = bytes(val, strlen(val));
        assert_int_equal(list ? cc_list_insert(b->d, CC_LIST_END, &m) : set_str(b->d, key, val),
                         0);
      }
      party *victim = party_start(kind == PARTY_THREAD ? PARTY_PROCESS : PARTY_THREAD_OF_PROCESS,
                                  fault_victim, b, 0);
      int r = party_join(victim, 10);
      if (r != 128 + SIGKILL)
        fail_msg("%s: the victim ended with %d, not killed at the point", cc_fault_name(p), r);
      assert_true(cc_lock_locked(&b->d->lock)); /* it died holding the lock */
      r = party_join(party_start(kind, fault_check, b, 0), 30);
      if (r)
        fail_msg("%s (%s): %s; check %d failed", cc_fault_name(p), party_kind_names[kind],
                 cc_fault_what(p), r);
      assert_false(cc_lock_locked(&b->d->lock));
      cc_obj_unref(&b->d->hdr);
      cc_arena_free(b);
      /* What the victim had made or was letting go of was freed by the one
       * that mended it: nothing leaked. */
      if (cc_arena_live_blocks() != live)
        fail_msg("%s (%s): %zd blocks leaked", cc_fault_name(p), party_kind_names[kind],
                 (ssize_t)(cc_arena_live_blocks() - live));
    }
  }
}

/* Ctrl-C while an operation waits for the container's lock: it gives up
 * with CC_EINTR and changes nothing (it must not go on without the lock). */
typedef struct holder {
  cc_dict *d;
  _Atomic int held, go;
} holder;

static int hold_lock(void *arg, int i) {
  (void)i;
  holder *h = arg;
  cc_lock_acquire(&h->d->lock, CC_FOREVER);
  atomic_store(&h->held, 1);
  int64_t end = cc_now() + 30 * 1000 * MS;
  while (!atomic_load(&h->go) && cc_now() < end)
    cc_sleep_until(cc_now() + MS);
  cc_lock_release(&h->d->lock);
  return 0;
}

static void an_interrupted_wait_for_the_lock_changes_nothing(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    holder *h = cc_arena_alloc(sizeof *h);
    memset(h, 0, sizeof *h);
    h->d = cc_dict_new(CC_DICT);
    party *p = party_start(kind, hold_lock, h, 0);
    while (!atomic_load(&h->held))
      cc_sleep_until(cc_now() + MS);
    cc_interrupt();
    cc_msg v = bytes("v", 1), out = {0};
    uint32_t n;
    assert_int_equal(cc_dict_set(h->d, "k", 1, &v), CC_EINTR);
    assert_int_equal(cc_dict_get(h->d, "k", 1, &out), CC_EINTR);
    assert_int_equal(cc_dict_len(h->d, &n), CC_EINTR);
    cc_interrupt_clear();
    atomic_store(&h->go, 1);
    assert_int_equal(party_join(p, 30), 0);
    assert_int_equal(len_of(h->d), 0);
    assert_int_equal(cc_dict_get(h->d, "k", 1, &out), CC_EEMPTY);
    assert_int_equal(cc_dict_set(h->d, "k", 1, &v), 0);
    assert_int_equal(len_of(h->d), 1);
    cc_msg_free(&out);
    cc_obj_unref(&h->d->hdr);
    cc_arena_free(h);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_interrupted_wait_for_the_lock_changes_nothing),
      cmocka_unit_test(set_get_del_round_trip_and_overwrite),
      cmocka_unit_test(big_values_come_back_whole),
      cmocka_unit_test(ten_thousand_keys_grow_the_table_and_come_back_exactly),
      cmocka_unit_test(snapshot_gives_every_key_and_value_once),
      cmocka_unit_test(four_parties_count_exactly_with_update),
      cmocka_unit_test(update_aborts_with_the_fn_code_and_keeps_the_old_value),
      cmocka_unit_test(four_parties_append_and_each_keeps_its_order),
      cmocka_unit_test(list_insert_set_get_and_pop_by_index),
      cmocka_unit_test(list_agrees_with_a_model_over_random_operations),
      cmocka_unit_test(references_live_in_the_container_and_go_with_their_value),
      cmocka_unit_test(a_killed_setter_leaves_the_dict_usable),
      cmocka_unit_test(a_holder_killed_at_each_fault_point_leaves_it_whole),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
