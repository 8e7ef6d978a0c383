/* test_proctab - the process table: entries, limits, holds, and their release at reaping */
#include "helpers.h"

#include "concur/error.h"
#include "concur/fault.h"
#include "concur/event.h"
#include "concur/lock.h"
#include "concur/proctab.h"

#include <string.h>

/* Pids that no process can have (pid_max is at most 2^22), for entries that
 * are allocated without a fork. */
#define FAKE_PID(i) (0x7ffff000 + (i))

enum { MANY = 5000, THREADS = 4, PER_THREAD = 2500 };

static uint32_t refs_of(const void *o) {
  return atomic_load(&((const cc_obj *)o)->refs);
}

/* True while the block at off is a live object: false once it is freed (as
 * long as nothing has been allocated since, which could reuse the block). */
static int is_live(uint32_t off) { return cc_obj_from_off(off) != NULL; }

static uint32_t self_holds_len(void) { return cc_proc_self()->holds_len; }

/* A process's hold table is made by its first hold and then stays (it does
 * not shrink): made here, block counts that follow need not care. */
static void ensure_table(void) {
  cc_lock *l = cc_lock_new(0);
  assert_non_null(l);
  assert_int_equal(cc_hold_adopt(&l->hdr), 0);
  cc_unhold(&l->hdr);
  assert_true(cc_proc_self()->holds != 0);
}

/* Waits at most `seconds` for p to be a zombie: ended, not reaped yet. */
static void await_zombie(cc_proc *p, double seconds) {
  int64_t end = cc_now() + (int64_t)(seconds * 1e9);
  while (strcmp(cc_proc_status(p), "zombie") != 0) {
    if (cc_now() > end) {
      cc_proc_signal(p, SIGKILL);
      cc_proc_join(p, cc_now() + 5000 * MS);
      fail_msg("child %d did not end within %.1f s", p->pid, seconds);
    }
    cc_sleep_until(cc_now() + MS);
  }
}

/* 1. Entries */

static void the_main_process_is_slot_zero(void **state) {
  (void)state;
  assert_int_equal(cc_proctab_capacity(), 65); /* 64 children and the main */
  assert_int_equal(cc_proc_self_slot(), 0);
  cc_procent *m = cc_proctab_get(0);
  assert_ptr_equal(cc_proc_self(), m);
  assert_ptr_equal(cc_proctab_find(getpid()), m);
  assert_int_equal(cc_proctab_slot_of(m), 0);
  assert_int_equal(atomic_load(&m->state), CC_PS_RUNNING);
  assert_int_equal(atomic_load(&m->pid), getpid());
  assert_int_equal(m->ppid, getppid());
  assert_string_equal(m->name, "MainProcess");
  assert_string_equal(m->ident, "");
  assert_int_equal(cc_proctab_live(), 1);
  /* Out of range is no entry at all. */
  assert_null(cc_proctab_get(-1));
  assert_null(cc_proctab_get(65));
  /* The main entry is never freed: only a reaper frees entries, and nobody
   * reaps the main process. */
  cc_proctab_free(0);
  assert_int_equal(atomic_load(&m->state), CC_PS_RUNNING);
  assert_int_equal(cc_proctab_live(), 1);
}

static void alloc_gives_distinct_slots_until_the_limit_then_elimit(void **state) {
  (void)state;
  int slot[64];
  uint8_t seen[65] = {0};
  for (int i = 0; i < 64; i++) {
    slot[i] = cc_proctab_alloc();
    assert_in_range(slot[i], 1, 64);
    assert_int_equal(seen[slot[i]], 0);
    seen[slot[i]] = 1;
    cc_procent *e = cc_proctab_get(slot[i]);
    assert_int_equal(atomic_load(&e->state), CC_PS_STARTING);
    assert_int_equal(atomic_load(&e->pid), 0);
    assert_int_equal(e->holds, 0);
    assert_int_equal(cc_proctab_live(), (unsigned)i + 2);
    atomic_store(&e->pid, FAKE_PID(i));
  }
  assert_int_equal(cc_proctab_alloc(), CC_ELIMIT);
  assert_int_equal(cc_proctab_alloc(), CC_ELIMIT);
  assert_int_equal(cc_proctab_live(), 65);
  /* A full table stops a start before it forks. */
  cc_proc p;
  cc_proc_init(&p, NULL, 0);
  assert_int_equal(cc_proc_start(&p), CC_ELIMIT);
  assert_int_equal(p.state, CC_PROC_NEW);
  assert_null(cc_proc_children());

  /* Every live entry is found by its pid. */
  for (int i = 0; i < 64; i++) {
    cc_procent *e = cc_proctab_find(FAKE_PID(i));
    assert_ptr_equal(e, cc_proctab_get(slot[i]));
    assert_int_equal(cc_proctab_slot_of(e), slot[i]);
  }

  /* A freed entry is not found any more, and its slot is the one given next,
   * with nothing left of what it held before. */
  cc_procent *e = cc_proctab_get(slot[17]);
  snprintf(e->name, sizeof e->name, "stale");
  snprintf(e->ident, sizeof e->ident, "9:9");
  e->ppid = 12345;
  e->daemon = 1;
  e->nchildren = 5;
  cc_proctab_free(slot[17]);
  assert_int_equal(atomic_load(&e->state), CC_PS_FREE);
  assert_int_equal(atomic_load(&e->pid), 0);
  assert_null(cc_proctab_find(FAKE_PID(17)));
  assert_int_equal(cc_proctab_live(), 64);
  int again = cc_proctab_alloc();
  assert_int_equal(again, slot[17]);
  assert_int_equal(atomic_load(&e->state), CC_PS_STARTING);
  assert_string_equal(e->name, "");
  assert_string_equal(e->ident, "");
  assert_int_equal(e->ppid, 0);
  assert_int_equal(e->daemon, 0);
  assert_int_equal(e->nchildren, 0);
  assert_int_equal(e->holds_len, 0);
  assert_int_equal(cc_proctab_alloc(), CC_ELIMIT);

  for (int i = 0; i < 64; i++)
    cc_proctab_free(slot[i]);
  assert_int_equal(cc_proctab_live(), 1);
  for (int i = 0; i < 64; i++)
    assert_null(cc_proctab_find(FAKE_PID(i)));
  /* All of them are free again: the lowest comes first. */
  int first = cc_proctab_alloc();
  assert_int_equal(first, 1);
  cc_proctab_free(first);
  assert_int_equal(cc_proctab_live(), 1);
}

/* 2. Holds */

static void first_hold_takes_one_reference_last_unhold_frees(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  int had_table = cc_proc_self()->holds != 0;
  size_t live = cc_arena_live_blocks();
  cc_lock *l = cc_lock_new(0);
  assert_non_null(l);
  uint32_t off = cc_arena_off(l);
  assert_int_equal(refs_of(l), 1);
  assert_int_equal(cc_hold_count(&l->hdr), 0);

  assert_int_equal(cc_hold(&l->hdr), 0);
  assert_int_equal(refs_of(l), 2);
  assert_int_equal(cc_hold_count(&l->hdr), 1);
  assert_int_equal(self_holds_len(), 1);
  /* The lock, and the hold table if this is the process's first hold. */
  size_t table = had_table ? 0 : 1;
  assert_int_equal(cc_arena_live_blocks(), live + 1 + table);
  if (!had_table)
    assert_int_equal(cc_proc_self()->holds_cap, 16);

  /* Further holds only count. */
  for (uint32_t n = 2; n <= 10; n++) {
    assert_int_equal(cc_hold(&l->hdr), 0);
    assert_int_equal(cc_hold_count(&l->hdr), n);
    assert_int_equal(refs_of(l), 2);
  }
  assert_int_equal(self_holds_len(), 1);
  for (uint32_t n = 9; n >= 1; n--) {
    cc_unhold(&l->hdr);
    assert_int_equal(cc_hold_count(&l->hdr), n);
    assert_int_equal(refs_of(l), 2);
  }

  /* The creation reference goes: the hold alone keeps the lock. */
  cc_obj_unref(&l->hdr);
  assert_int_equal(refs_of(l), 1);
  assert_true(is_live(off));

  cc_unhold(&l->hdr);
  assert_int_equal(cc_hold_count(&l->hdr), 0);
  assert_int_equal(self_holds_len(), 0);
  assert_false(is_live(off));
  /* The table stays for the next hold; the lock is gone. */
  assert_int_equal(cc_arena_live_blocks(), live + table);

  /* Unholding what is not held changes nothing. */
  cc_lock *m = cc_lock_new(0);
  cc_unhold(&m->hdr);
  assert_int_equal(refs_of(m), 1);
  assert_int_equal(self_holds_len(), 0);
  cc_obj_unref(&m->hdr);
  assert_int_equal(cc_arena_live_blocks(), live + table);
}

static void last_unhold_keeps_what_another_object_refers_to(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  ensure_table();
  size_t live = cc_arena_live_blocks();

  cc_lock *l = cc_lock_new(0);
  uint32_t off = cc_arena_off(l);
  assert_int_equal(cc_hold_adopt(&l->hdr), 0);
  /* A reference from another object, as a Condition has on its Lock. */
  cc_obj_ref(&l->hdr);
  assert_int_equal(refs_of(l), 2);
  cc_unhold(&l->hdr);
  assert_int_equal(cc_hold_count(&l->hdr), 0);
  assert_int_equal(refs_of(l), 1);
  assert_true(is_live(off));
  cc_obj_unref(&l->hdr);
  assert_false(is_live(off));
  assert_int_equal(cc_arena_live_blocks(), live);
}

static void adopt_takes_over_the_creation_reference(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  ensure_table();
  size_t live = cc_arena_live_blocks();

  cc_lock *l = cc_lock_new(1);
  uint32_t off = cc_arena_off(l);
  assert_int_equal(cc_hold_adopt(&l->hdr), 0);
  assert_int_equal(refs_of(l), 1); /* no second reference */
  assert_int_equal(cc_hold_count(&l->hdr), 1);
  assert_int_equal(cc_hold(&l->hdr), 0);
  assert_int_equal(refs_of(l), 1);
  assert_int_equal(cc_hold_count(&l->hdr), 2);

  /* Adopting a reference to an object already held drops it: the process
   * keeps its one reference, with one more hold counted. */
  cc_obj_ref(&l->hdr);
  assert_int_equal(refs_of(l), 2);
  assert_int_equal(cc_hold_adopt(&l->hdr), 0);
  assert_int_equal(refs_of(l), 1);
  assert_int_equal(cc_hold_count(&l->hdr), 3);
  assert_int_equal(self_holds_len(), 1);

  cc_unhold(&l->hdr);
  cc_unhold(&l->hdr);
  assert_true(is_live(off));
  assert_int_equal(refs_of(l), 1);
  cc_unhold(&l->hdr);
  assert_false(is_live(off));
  assert_int_equal(self_holds_len(), 0);
  assert_int_equal(cc_arena_live_blocks(), live);
}

static void five_thousand_holds_grow_the_table_and_leave_nothing(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  ensure_table();
  uint32_t cap0 = cc_proc_self()->holds_cap;
  size_t live = cc_arena_live_blocks();

  cc_lock **l = calloc(MANY, sizeof *l);
  assert_non_null(l);
  for (int i = 0; i < MANY; i++) {
    l[i] = cc_lock_new(0);
    assert_non_null(l[i]);
    assert_int_equal(cc_hold_adopt(&l[i]->hdr), 0);
    if (i % 3 == 0)
      assert_int_equal(cc_hold(&l[i]->hdr), 0);
  }
  assert_int_equal(self_holds_len(), MANY);
  /* Kept at most three quarters full, in powers of two: 5000 need 8192. */
  assert_int_equal(cc_proc_self()->holds_cap, 8192);
  /* One table block, however often it grew. */
  assert_int_equal(cc_arena_live_blocks(), live + MANY);
  for (int i = 0; i < MANY; i++) {
    assert_int_equal(cc_hold_count(&l[i]->hdr), i % 3 == 0 ? 2 : 1);
    assert_int_equal(refs_of(l[i]), 1);
  }

  /* Drop them in a scattered order (7919 is prime to 5000), half first: the
   * rest must still be found with their exact counts after each deletion has
   * shifted its neighbours back. */
  uint32_t *off = calloc(MANY, sizeof *off);
  assert_non_null(off);
  for (int i = 0; i < MANY; i++)
    off[i] = cc_arena_off(l[i]);
  uint8_t *gone = calloc(MANY, 1);
  assert_non_null(gone);
  for (int k = 0; k < MANY / 2; k++) {
    int i = (int)((k * 7919L) % MANY);
    if (i % 3 == 0)
      cc_unhold(&l[i]->hdr);
    cc_unhold(&l[i]->hdr);
    gone[i] = 1;
  }
  assert_int_equal(self_holds_len(), MANY - MANY / 2);
  assert_int_equal(cc_arena_live_blocks(), live + MANY - MANY / 2);
  for (int i = 0; i < MANY; i++) {
    if (gone[i]) {
      assert_false(is_live(off[i]));
      assert_int_equal(cc_hold_count(&l[i]->hdr), 0);
    } else {
      assert_true(is_live(off[i]));
      assert_int_equal(cc_hold_count(&l[i]->hdr), i % 3 == 0 ? 2 : 1);
    }
  }
  for (int k = MANY / 2; k < MANY; k++) {
    int i = (int)((k * 7919L) % MANY);
    assert_false(gone[i]);
    if (i % 3 == 0)
      cc_unhold(&l[i]->hdr);
    cc_unhold(&l[i]->hdr);
    gone[i] = 1;
  }
  assert_int_equal(self_holds_len(), 0);
  assert_int_equal(cc_arena_live_blocks(), live);
  print_message("5000 holds: table grew from %u to %u slots, nothing left\n",
                (unsigned)cap0, (unsigned)cc_proc_self()->holds_cap);
  free(gone);
  free(off);
  free(l);
}

/* 3. Holds across a fork */

static void copied_holds_take_one_reference_and_freeing_the_entry_returns_it(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  ensure_table();
  size_t live = cc_arena_live_blocks();
  cc_lock *a = cc_lock_new(0), *b = cc_lock_new(0);
  uint32_t aoff = cc_arena_off(a), boff = cc_arena_off(b);
  assert_int_equal(cc_hold_adopt(&a->hdr), 0);
  assert_int_equal(cc_hold(&a->hdr), 0);
  assert_int_equal(cc_hold(&a->hdr), 0);
  assert_int_equal(cc_hold_adopt(&b->hdr), 0);

  /* What cc_proc_start does before it forks, without the fork. */
  int slot = cc_proctab_alloc();
  assert_true(slot > 0);
  assert_int_equal(cc_holds_copy(0, slot), 0);
  cc_procent *e = cc_proctab_get(slot);
  assert_int_equal(e->holds_len, 2);
  assert_int_equal(refs_of(a), 2); /* three holds copied, one reference */
  assert_int_equal(refs_of(b), 2);
  assert_int_equal(cc_arena_live_blocks(), live + 2 + 1); /* and its table */

  /* Copying from an entry that holds nothing gives nothing. */
  int empty = cc_proctab_alloc(), other = cc_proctab_alloc();
  assert_int_equal(cc_holds_copy(empty, other), 0);
  assert_int_equal(cc_proctab_get(other)->holds, 0);
  cc_proctab_free(other);
  cc_proctab_free(empty);

  /* The parent drops b: the entry alone keeps it, until the entry is freed. */
  cc_unhold(&b->hdr);
  assert_int_equal(refs_of(b), 1);
  assert_true(is_live(boff));
  cc_proctab_free(slot);
  assert_false(is_live(boff));
  assert_int_equal(refs_of(a), 1);
  assert_int_equal(cc_hold_count(&a->hdr), 3);
  assert_int_equal(cc_arena_live_blocks(), live + 1);
  assert_int_equal(cc_proctab_live(), 1);
  for (int i = 0; i < 3; i++)
    cc_unhold(&a->hdr);
  assert_false(is_live(aoff));
  assert_int_equal(cc_arena_live_blocks(), live);
}

static void a_child_keeps_what_its_parent_drops_until_it_exits(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  ensure_table();
  size_t live = cc_arena_live_blocks();
  cc_event *go = cc_event_new(), *done = cc_event_new(), *quit = cc_event_new();
  cc_lock *l = cc_lock_new(0);
  uint32_t off = cc_arena_off(l);
  assert_int_equal(cc_hold_adopt(&go->hdr), 0);
  assert_int_equal(cc_hold_adopt(&done->hdr), 0);
  assert_int_equal(cc_hold_adopt(&quit->hdr), 0);
  assert_int_equal(cc_hold_adopt(&l->hdr), 0);
  assert_int_equal(cc_hold(&l->hdr), 0);

  cc_proc p;
  cc_proc_init(&p, NULL, 0);
  if (cc_proc_start(&p) == 0) {
    /* The child has its parent's holds, with the same counts. */
    if (cc_hold_count(&l->hdr) != 2 || cc_hold_count(&go->hdr) != 1 ||
        cc_proc_self()->holds_len != 4)
      cc_proc_exit(1);
    if (cc_event_wait(go, cc_now() + 5000 * MS))
      cc_proc_exit(2);
    /* The parent has dropped the lock: this process's hold keeps it. */
    if (!cc_obj_is(&l->hdr, &cc_lock_type) || refs_of(l) != 1)
      cc_proc_exit(3);
    if (cc_lock_acquire(l, 0) || cc_lock_release(l))
      cc_proc_exit(4);
    cc_event_set(done);
    if (cc_event_wait(quit, cc_now() + 5000 * MS))
      cc_proc_exit(5);
    cc_proc_exit(0);
  }
  assert_true(p.pid > 0);
  cc_procent *e = cc_proctab_get(p.slot);
  assert_ptr_equal(cc_proctab_find(p.pid), e);
  assert_int_equal(e->ppid, getpid());
  assert_string_equal(e->name, p.name);
  assert_int_equal(e->holds_len, 4);
  assert_int_equal(refs_of(l), 2); /* the parent's and the child's */
  assert_int_equal(cc_proctab_live(), 2);
  /* Four objects and the child's hold table. */
  assert_int_equal(cc_arena_live_blocks(), live + 4 + 1);

  cc_unhold(&l->hdr);
  cc_unhold(&l->hdr);
  assert_int_equal(cc_hold_count(&l->hdr), 0);
  assert_int_equal(refs_of(l), 1);
  assert_true(is_live(off));
  cc_event_set(go);
  assert_int_equal(cc_event_wait(done, cc_now() + 5000 * MS), 0);
  assert_true(is_live(off)); /* the child has not ended */

  /* A normal exit drops the child's holds in the child (cc_proc_exit): the
   * lock is gone as soon as it has ended, while its entry waits for the
   * reaper. */
  cc_event_set(quit);
  await_zombie(&p, 5);
  assert_false(is_live(off));
  assert_int_equal(e->holds, 0);
  assert_int_equal(atomic_load(&e->state), CC_PS_RUNNING);
  assert_int_equal(cc_proctab_live(), 2);
  assert_int_equal(cc_arena_live_blocks(), live + 3);

  assert_int_equal(cc_proc_join(&p, cc_now() + 5000 * MS), 0);
  assert_int_equal(p.exitcode, 0);
  assert_int_equal(atomic_load(&e->state), CC_PS_FREE);
  assert_null(cc_proctab_find(p.pid));
  assert_int_equal(cc_proctab_live(), 1);
  cc_unhold(&go->hdr);
  cc_unhold(&done->hdr);
  cc_unhold(&quit->hdr);
  assert_int_equal(self_holds_len(), 0);
  assert_int_equal(cc_arena_live_blocks(), live);
}

static void a_killed_child_holds_until_it_is_reaped(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  cc_event *ready = cc_event_new();
  assert_int_equal(cc_hold_adopt(&ready->hdr), 0); /* the table exists now */
  size_t live = cc_arena_live_blocks();
  cc_lock *l = cc_lock_new(0);
  uint32_t off = cc_arena_off(l);
  assert_int_equal(cc_hold_adopt(&l->hdr), 0);

  cc_proc p;
  cc_proc_init(&p, NULL, 0);
  if (cc_proc_start(&p) == 0) {
    if (cc_lock_acquire(l, 0) || cc_lock_release(l))
      cc_proc_exit(1);
    cc_event_set(ready);
    idle_child();
  }
  cc_procent *e = cc_proctab_get(p.slot);
  assert_int_equal(cc_event_wait(ready, cc_now() + 5000 * MS), 0);
  cc_unhold(&l->hdr);
  assert_int_equal(refs_of(l), 1);
  assert_int_equal(cc_arena_live_blocks(), live + 1 + 1); /* lock, child's table */

  /* Killed, it cannot drop anything: its holds stay until it is reaped. */
  cc_proc_signal(&p, SIGKILL);
  await_zombie(&p, 5);
  assert_true(is_live(off));
  assert_int_equal(refs_of(l), 1);
  assert_int_equal(e->holds_len, 2);
  assert_int_equal(cc_proctab_live(), 2);

  assert_int_equal(cc_proc_join(&p, cc_now() + 5000 * MS), 0);
  assert_int_equal(p.exitcode, -SIGKILL);
  assert_false(is_live(off));
  assert_int_equal(atomic_load(&e->state), CC_PS_FREE);
  assert_null(cc_proctab_find(p.pid));
  assert_int_equal(cc_proctab_live(), 1);
  assert_int_equal(cc_arena_live_blocks(), live);
  cc_unhold(&ready->hdr);
  assert_int_equal(self_holds_len(), 0);
}

/* 4. Threads. A process's hold table has no lock: proctab.h says only the
 * process itself writes it. Its threads must take turns, as the bindings'
 * threads do under the GIL; here a mutex is the GIL, taken for each call. */

typedef struct gil_board {
  pthread_mutex_t gil;
  cc_lock *shared;
  _Atomic int held;    /* threads that hold all of theirs */
  _Atomic int release; /* set by the main thread: drop them */
} gil_board;

static int holder_thread(void *arg, int id) {
  (void)id;
  gil_board *b = arg;
  cc_lock **mine = calloc(PER_THREAD, sizeof *mine);
  if (!mine)
    return 1;
  int bad = 0;
  pthread_mutex_lock(&b->gil);
  bad |= cc_hold(&b->shared->hdr) != 0;
  pthread_mutex_unlock(&b->gil);
  for (int k = 0; k < PER_THREAD && !bad; k++) {
    /* The arena needs no lock; the hold table does. */
    mine[k] = cc_lock_new(0);
    if (!mine[k]) {
      bad = 1;
      break;
    }
    pthread_mutex_lock(&b->gil);
    bad |= cc_hold_adopt(&mine[k]->hdr) != 0;
    pthread_mutex_unlock(&b->gil);
    pthread_mutex_lock(&b->gil);
    bad |= cc_hold(&mine[k]->hdr) != 0;
    pthread_mutex_unlock(&b->gil);
    pthread_mutex_lock(&b->gil);
    bad |= cc_hold_count(&mine[k]->hdr) != 2 || refs_of(mine[k]) != 1;
    pthread_mutex_unlock(&b->gil);
  }
  if (bad) {
    free(mine);
    return 2;
  }
  atomic_fetch_add(&b->held, 1);
  int64_t end = cc_now() + 10000 * MS;
  while (!atomic_load(&b->release)) {
    if (cc_now() > end) {
      free(mine);
      return 3;
    }
    cc_sleep_until(cc_now() + MS);
  }
  for (int k = 0; k < PER_THREAD; k++) {
    pthread_mutex_lock(&b->gil);
    cc_unhold(&mine[k]->hdr);
    pthread_mutex_unlock(&b->gil);
    pthread_mutex_lock(&b->gil);
    bad |= cc_hold_count(&mine[k]->hdr) != 1;
    pthread_mutex_unlock(&b->gil);
    pthread_mutex_lock(&b->gil);
    cc_unhold(&mine[k]->hdr);
    pthread_mutex_unlock(&b->gil);
  }
  pthread_mutex_lock(&b->gil);
  cc_unhold(&b->shared->hdr);
  pthread_mutex_unlock(&b->gil);
  free(mine);
  return bad ? 4 : 0;
}

static void threads_taking_turns_hold_and_drop_exactly(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  ensure_table();
  size_t live = cc_arena_live_blocks();
  uint32_t cap0 = cc_proc_self()->holds_cap;

  gil_board b;
  memset(&b, 0, sizeof b);
  assert_int_equal(pthread_mutex_init(&b.gil, NULL), 0);
  b.shared = cc_lock_new(0);
  uint32_t shared_off = cc_arena_off(b.shared);
  assert_int_equal(cc_hold_adopt(&b.shared->hdr), 0);

  int64_t t0 = cc_now();
  party *t[THREADS];
  for (int i = 0; i < THREADS; i++)
    t[i] = party_start(PARTY_THREAD, holder_thread, &b, i);
  int64_t end = cc_now() + 20000 * MS;
  while (atomic_load(&b.held) < THREADS && cc_now() < end)
    cc_sleep_until(cc_now() + MS);
  int all_held = atomic_load(&b.held) == THREADS;
  uint32_t len = 0, cap = 0, shared_count = 0, shared_refs = 0;
  if (all_held) {
    pthread_mutex_lock(&b.gil);
    len = self_holds_len();
    cap = cc_proc_self()->holds_cap;
    shared_count = cc_hold_count(&b.shared->hdr);
    shared_refs = refs_of(b.shared);
    pthread_mutex_unlock(&b.gil);
  }
  atomic_store(&b.release, 1);
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(party_join(t[i], 30), 0);
  assert_true(all_held);
  assert_int_equal(len, 1 + THREADS * PER_THREAD);
  /* 10001 holds need 16384 slots: the table grew while the threads took turns. */
  assert_int_equal(cap, 16384);
  assert_int_equal(shared_count, 1 + THREADS);
  assert_int_equal(shared_refs, 1);

  assert_int_equal(self_holds_len(), 1);
  assert_int_equal(cc_hold_count(&b.shared->hdr), 1);
  assert_int_equal(refs_of(b.shared), 1);
  cc_unhold(&b.shared->hdr);
  assert_false(is_live(shared_off));
  assert_int_equal(self_holds_len(), 0);
  assert_int_equal(cc_arena_live_blocks(), live);
  pthread_mutex_destroy(&b.gil);
  print_message("%d threads x %d objects, one call at a time: table %u -> %u "
                "slots, %.0f ms\n",
                THREADS, PER_THREAD, (unsigned)cap0, (unsigned)cap, elapsed_ms(t0));
}

/* 5. A process killed holding objects, reaped by cc_proc_reap_any */

enum { KID_MADE = 100 };

typedef struct kid_board {
  uint32_t n;
  uint32_t off[KID_MADE];
} kid_board;

/* In a child: makes objects that only it holds, holds `a` twice more, tells
 * the parent, and waits to be killed. */
static _Noreturn void hold_and_wait(kid_board *b, cc_lock *a, cc_event *ready) {
  for (int k = 0; k < KID_MADE; k++) {
    cc_lock *o = cc_lock_new(k & 1);
    if (!o || cc_hold_adopt(&o->hdr))
      cc_proc_exit(1);
    if (k % 2 && cc_hold(&o->hdr))
      cc_proc_exit(2);
    b->off[k] = cc_arena_off(o);
  }
  if (cc_hold(&a->hdr) || cc_hold(&a->hdr) || cc_hold_count(&a->hdr) != 3)
    cc_proc_exit(3);
  b->n = KID_MADE;
  cc_event_set(ready);
  idle_child();
}

static void a_process_killed_holding_objects_is_reaped_by_reap_any(void **state) {
  (void)state;
  assert_int_equal(self_holds_len(), 0);
  assert_null(cc_proc_children());
  ensure_table();
  size_t live = cc_arena_live_blocks();
  cc_lock *a = cc_lock_new(0), *bl = cc_lock_new(0);
  uint32_t aoff = cc_arena_off(a), boff = cc_arena_off(bl);
  cc_event *ready1 = cc_event_new(), *ready2 = cc_event_new();
  assert_int_equal(cc_hold_adopt(&a->hdr), 0);
  assert_int_equal(cc_hold_adopt(&bl->hdr), 0);
  assert_int_equal(cc_hold_adopt(&ready1->hdr), 0);
  assert_int_equal(cc_hold_adopt(&ready2->hdr), 0);
  kid_board *b1 = cc_arena_alloc(sizeof *b1), *b2 = cc_arena_alloc(sizeof *b2);
  assert_non_null(b1);
  assert_non_null(b2);
  memset(b1, 0, sizeof *b1);
  memset(b2, 0, sizeof *b2);

  /* p1 stays in this process's list; p2 is forgotten (as when its handle is
   * collected), so reap_any finds it by its pid in the table alone. */
  cc_proc p1, p2;
  cc_proc_init(&p1, NULL, 0);
  cc_proc_init(&p2, NULL, 0);
  if (cc_proc_start(&p1) == 0)
    hold_and_wait(b1, a, ready1);
  if (cc_proc_start(&p2) == 0)
    hold_and_wait(b2, a, ready2);
  assert_int_equal(refs_of(a), 3);
  assert_int_equal(refs_of(bl), 3);
  cc_unhold(&bl->hdr); /* the children alone hold it now */
  assert_int_equal(refs_of(bl), 2);
  assert_int_equal(cc_event_wait(ready1, cc_now() + 5000 * MS), 0);
  assert_int_equal(cc_event_wait(ready2, cc_now() + 5000 * MS), 0);
  assert_int_equal(b1->n, KID_MADE);
  assert_int_equal(b2->n, KID_MADE);
  for (int k = 0; k < KID_MADE; k++) {
    assert_true(is_live(b1->off[k]));
    assert_true(is_live(b2->off[k]));
    assert_int_equal(refs_of(cc_arena_ptr(b1->off[k])), 1);
  }
  assert_int_equal(refs_of(a), 3);
  assert_int_equal(cc_hold_count(&a->hdr), 1);
  cc_procent *e1 = cc_proctab_get(p1.slot), *e2 = cc_proctab_get(p2.slot);
  /* a, bl, the two events and their own hundred. */
  assert_int_equal(e1->holds_len, 4 + KID_MADE);
  assert_int_equal(e2->holds_len, 4 + KID_MADE);
  assert_int_equal(cc_proctab_live(), 3);
  /* a, bl, two events, two boards, 2 x 100 objects, the children's tables. */
  assert_int_equal(cc_arena_live_blocks(), live + 6 + 2 * KID_MADE + 2);

  cc_proc_forget(&p2);
  assert_ptr_equal(cc_proc_children(), &p1);
  assert_null(p1.next);
  assert_int_equal(cc_proc_reap_any(NULL), 0); /* nobody has ended */

  cc_proc_signal(&p1, SIGKILL);
  cc_proc_signal(&p2, SIGKILL);
  int got1 = 0, got2 = 0;
  int64_t end = cc_now() + 5000 * MS;
  while (!(got1 && got2)) {
    int st = 0;
    int r = cc_proc_reap_any(&st);
    assert_true(r >= 0);
    if (r > 0) {
      assert_true(r == p1.pid || r == p2.pid);
      assert_true(WIFSIGNALED(st));
      assert_int_equal(WTERMSIG(st), SIGKILL);
      if (r == p1.pid)
        got1++;
      else
        got2++;
      continue;
    }
    if (cc_now() > end) {
      kill(p1.pid, SIGKILL);
      kill(p2.pid, SIGKILL);
      while (cc_proc_reap_any(NULL) >= 0 && cc_now() < end + 5000 * MS)
        cc_sleep_until(cc_now() + MS);
      fail_msg("killed children were not reaped within 5 s");
    }
    cc_sleep_until(cc_now() + MS);
  }
  assert_int_equal(got1, 1);
  assert_int_equal(got2, 1);
  assert_int_equal(cc_proc_reap_any(NULL), CC_ESYS); /* no children left */

  /* The tracked one is reaped as a join would have. */
  assert_int_equal(p1.state, CC_PROC_REAPED);
  assert_int_equal(p1.exitcode, -SIGKILL);
  assert_null(cc_proc_children());
  /* Both entries are free, and all that the children alone held is gone. */
  assert_int_equal(atomic_load(&e1->state), CC_PS_FREE);
  assert_int_equal(atomic_load(&e2->state), CC_PS_FREE);
  assert_null(cc_proctab_find(p1.pid));
  assert_null(cc_proctab_find(p2.pid));
  assert_int_equal(cc_proctab_live(), 1);
  assert_false(is_live(boff));
  for (int k = 0; k < KID_MADE; k++) {
    assert_false(is_live(b1->off[k]));
    assert_false(is_live(b2->off[k]));
  }
  /* What the parent holds too stays, with only the parent's reference. */
  assert_true(is_live(aoff));
  assert_int_equal(refs_of(a), 1);
  assert_int_equal(cc_hold_count(&a->hdr), 1);
  assert_int_equal(cc_arena_live_blocks(), live + 5);
  print_message("2 children killed holding %d objects each: reaped, %zu blocks "
                "freed\n",
                KID_MADE + 4, (size_t)(2 * KID_MADE + 1 + 2));

  cc_unhold(&a->hdr);
  cc_unhold(&ready1->hdr);
  cc_unhold(&ready2->hdr);
  cc_arena_free(b1);
  cc_arena_free(b2);
  assert_int_equal(self_holds_len(), 0);
  assert_int_equal(cc_arena_live_blocks(), live);
}

/* 6. A process killed in the middle of a hold, a table's growth or an
 * unhold's shift (the fault points of proctab.c): its reaper drops each
 * object it held exactly once. What it had not recorded yet is leaked
 * (at most one object and one table); nothing is dropped that it did not
 * take, nothing is freed twice. */
enum { SHARED = 40 };

typedef struct fault_kid {
  uint32_t x; /* an object made after the child started: not in its table */
  uint32_t shared[SHARED]; /* held by the parent, and so by the child */
} fault_kid;

static _Noreturn void fault_child(int point, fault_kid *k) {
  cc_fault_arm(point, 1);
  if (point == CC_FAULT_HOLD_TAKEN) {
    cc_hold(cc_obj_from_off(k->x));
  } else if (point == CC_FAULT_HOLDS_GROWN) {
    /* Objects only it holds, until its table grows. */
    for (int i = 0; i < 4 * SHARED; i++) {
      cc_lock *o = cc_lock_new(0);
      if (!o || cc_hold_adopt(&o->hdr))
        cc_proc_exit(2);
    }
  } else {
    /* Unholds of what its parent holds too, until one moves another hold
     * back: a key it then has twice would be dropped twice. */
    for (int i = 0; i < SHARED; i++)
      cc_unhold(cc_obj_from_off(k->shared[i]));
  }
  cc_proc_exit(99); /* the point was not reached */
}

static void a_process_killed_in_a_hold_is_released_once(void **state) {
  (void)state;
  ensure_table();
  int points[] = {CC_FAULT_HOLD_TAKEN, CC_FAULT_HOLDS_GROWN, CC_FAULT_UNHOLD_SHIFTED};
  /* What each death leaks: the reference taken and not recorded; the old
   * table and the object whose hold grew it; (the object whose unhold was
   * under way keeps a reference: the parent's test below sees it). */
  size_t leaked[] = {0, 2, 0};
  for (int n = 0; n < 3; n++) {
    size_t live = cc_arena_live_blocks();
    fault_kid *k = cc_arena_alloc(sizeof *k);
    cc_event *go = cc_event_new();
    assert_int_equal(cc_hold_adopt(&go->hdr), 0);
    k->x = 0;
    for (int i = 0; i < SHARED; i++) {
      cc_lock *o = cc_lock_new(0);
      assert_int_equal(cc_hold_adopt(&o->hdr), 0);
      k->shared[i] = cc_arena_off(o);
    }
    cc_proc p;
    cc_proc_init(&p, NULL, 0);
    if (cc_proc_start(&p) == 0) {
      cc_event_wait(go, cc_now() + 5000 * MS);
      fault_child(points[n], k);
    }
    cc_lock *x = cc_lock_new(0); /* after the fork: not in the child's table */
    assert_int_equal(cc_hold_adopt(&x->hdr), 0);
    k->x = cc_arena_off(x);
    cc_event_set(go);
    assert_int_equal(cc_proc_join(&p, cc_now() + 10000 * MS), 0);
    if (p.exitcode != -SIGKILL)
      fail_msg("%s: the child ended with %d, not killed at the point", cc_fault_name(points[n]),
               p.exitcode);
    /* x: the parent's reference, and the child's taken and never recorded. */
    assert_true(is_live(cc_arena_off(x)));
    assert_int_equal(refs_of(x), points[n] == CC_FAULT_HOLD_TAKEN ? 2 : 1);
    assert_int_equal(cc_proctab_live(), 1);
    /* What the parent holds has its reference alone, but the one whose
     * unhold was under way: the child's, never dropped (none dropped twice
     * would show as 0, or as a freed object). */
    int extra = 0;
    for (int i = 0; i < SHARED; i++) {
      cc_obj *o = cc_obj_from_off(k->shared[i]);
      assert_non_null(o);
      uint32_t refs = refs_of(o);
      assert_true(refs == 1 || refs == 2);
      if (refs == 2) {
        extra++;
        cc_obj_unref(o);
      }
      cc_unhold(o);
    }
    assert_int_equal(extra, points[n] == CC_FAULT_UNHOLD_SHIFTED ? 1 : 0);
    if (points[n] == CC_FAULT_HOLD_TAKEN)
      cc_obj_unref(&x->hdr); /* the leaked one, by hand */
    cc_unhold(&x->hdr);
    cc_unhold(&go->hdr);
    cc_arena_free(k);
    assert_int_equal(cc_arena_live_blocks(), live + leaked[n]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_process_killed_in_a_hold_is_released_once),
      cmocka_unit_test(the_main_process_is_slot_zero),
      cmocka_unit_test(alloc_gives_distinct_slots_until_the_limit_then_elimit),
      cmocka_unit_test(first_hold_takes_one_reference_last_unhold_frees),
      cmocka_unit_test(last_unhold_keeps_what_another_object_refers_to),
      cmocka_unit_test(adopt_takes_over_the_creation_reference),
      cmocka_unit_test(five_thousand_holds_grow_the_table_and_leave_nothing),
      cmocka_unit_test(copied_holds_take_one_reference_and_freeing_the_entry_returns_it),
      cmocka_unit_test(a_child_keeps_what_its_parent_drops_until_it_exits),
      cmocka_unit_test(a_killed_child_holds_until_it_is_reaped),
      cmocka_unit_test(threads_taking_turns_hold_and_drop_exactly),
      cmocka_unit_test(a_process_killed_holding_objects_is_reaped_by_reap_any),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
