/* test_rwlock - RWLock across processes, threads and threads of processes */
#include "helpers.h"

#include "concur/error.h"
#include "concur/rwlock.h"

typedef struct shared {
  cc_rwlock *rw;
  _Atomic int reading, writing; /* inside now */
  _Atomic int most_reading, broken, held;
  _Atomic int go; /* the parties begin together */
  long counter; /* a plain long: only the write lock protects it */
  int64_t deadline;
} shared;

static shared *shared_new(int prefer_writers) {
  shared *s = cc_arena_alloc(sizeof *s);
  memset(s, 0, sizeof *s);
  s->rw = cc_rwlock_new(prefer_writers);
  assert_non_null(s->rw);
  return s;
}

static void shared_free(shared *s) {
  assert_int_equal(cc_rwlock_readers(s->rw), 0);
  assert_false(cc_rwlock_written(s->rw));
  cc_obj_unref(&s->rw->hdr);
  cc_arena_free(s);
}

enum { ROUNDS = 3000 };

/* Party i writes when i % 3 == 0, else reads; each looks that nobody else
 * is inside while it writes, and that no writer is while it reads. */
static int worker(void *arg, int i) {
  shared *s = arg;
  /* No thread of this process ends while the others are forked: a child
   * forked then would inherit the locks its end holds (the sanitizer's
   * allocator's), and hang on them. */
  while (!atomic_load(&s->go))
    cc_sleep_until(cc_now() + MS);
  for (int k = 0; k < ROUNDS; k++) {
    if (i % 3 == 0) {
      if (cc_rwlock_write(s->rw, CC_FOREVER))
        return 1;
      if (atomic_fetch_add(&s->writing, 1) != 0 || atomic_load(&s->reading) != 0)
        atomic_fetch_add(&s->broken, 1);
      s->counter++;
      atomic_fetch_sub(&s->writing, 1);
    } else {
      if (cc_rwlock_read(s->rw, CC_FOREVER))
        return 2;
      int now = atomic_fetch_add(&s->reading, 1) + 1;
      int m = atomic_load(&s->most_reading);
      while (now > m && !atomic_compare_exchange_weak(&s->most_reading, &m, now))
        ;
      if (atomic_load(&s->writing) != 0)
        atomic_fetch_add(&s->broken, 1);
      atomic_fetch_sub(&s->reading, 1);
    }
    if (cc_rwlock_release(s->rw))
      return 3;
  }
  return 0;
}

/* Twenty parties of each kind, and of all kinds at once: the writers'
 * count is exact and no one was ever inside beside a writer. */
static void twenty_parties_exclude_writers(void **state) {
  (void)state;
  enum { N = 20 };
  for (int kind = 0; kind <= PARTY_KINDS; kind++) {
    for (int prefer = 0; prefer <= 1; prefer++) {
      shared *s = shared_new(prefer);
      party *p[N];
      for (int i = 0; i < N; i++)
        p[i] = party_start(kind == PARTY_KINDS ? i % PARTY_KINDS : kind, worker, s, i);
      atomic_store(&s->go, 1);
      for (int i = 0; i < N; i++)
        assert_int_equal(party_join(p[i], 100), 0);
      assert_int_equal(atomic_load(&s->broken), 0);
      assert_int_equal(s->counter, 7L * ROUNDS); /* parties 0, 3, ..., 18 write */
      shared_free(s);
    }
  }
}

/* A try to read (write 0) or to write: 0 when it had it, 10 at once
 * refused, 11 taken over from a dead holder, 12 anything else. */
static int try_take(void *arg, int write) {
  shared *s = arg;
  int r = write ? cc_rwlock_write(s->rw, 0) : cc_rwlock_read(s->rw, 0);
  if (r == 0)
    cc_rwlock_release(s->rw);
  return r == 0 ? 0 : r == CC_ETIMEDOUT ? 10 : r == CC_EOWNERDEAD ? 11 : 12;
}

/* While this thread reads, another party may read and may not write; while
 * it writes, the other may do neither. */
static void readers_share_and_a_writer_is_alone(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    shared *s = shared_new(0);
    assert_int_equal(cc_rwlock_read(s->rw, 0), 0);
    assert_int_equal(party_join(party_start(kind, try_take, s, 0), 10), 0);
    assert_int_equal(party_join(party_start(kind, try_take, s, 1), 10), 10);
    assert_int_equal(cc_rwlock_release(s->rw), 0);
    assert_int_equal(cc_rwlock_write(s->rw, 0), 0);
    assert_int_equal(party_join(party_start(kind, try_take, s, 0), 10), 10);
    assert_int_equal(party_join(party_start(kind, try_take, s, 1), 10), 10);
    assert_int_equal(cc_rwlock_release(s->rw), 0);
    assert_int_equal(party_join(party_start(kind, try_take, s, 1), 10), 0);
    shared_free(s);
  }
}

static int write_then_count(void *arg, int i) {
  (void)i;
  shared *s = arg;
  int r = cc_rwlock_write(s->rw, cc_now() + 10000 * MS);
  if (r)
    return 1;
  atomic_store(&s->held, 1);
  return cc_rwlock_release(s->rw) ? 2 : 0;
}

/* A writer sleeps until the last reader leaves, and not before; with
 * writer preference a reader that comes meanwhile waits behind it, and
 * without, reads. */
static void a_writer_waits_for_the_readers(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    for (int prefer = 0; prefer <= 1; prefer++) {
      shared *s = shared_new(prefer);
      assert_int_equal(cc_rwlock_read(s->rw, 0), 0);
      party *w = party_start(kind, write_then_count, s, 0);
      while (s->rw->writers_waiting == 0)
        cc_sleep_until(cc_now() + MS);
      assert_int_equal(party_join(party_start(kind, try_take, s, 0), 10), prefer ? 10 : 0);
      cc_sleep_until(cc_now() + 50 * MS);
      assert_int_equal(atomic_load(&s->held), 0);
      int64_t t0 = cc_now();
      assert_int_equal(cc_rwlock_release(s->rw), 0);
      assert_int_equal(party_join(w, 10), 0);
      assert_true(elapsed_ms(t0) < 1000); /* woken, not found at a probe */
      assert_int_equal(atomic_load(&s->held), 1);
      shared_free(s);
    }
  }
}

static int hold_and_end(void *arg, int i) {
  shared *s = arg;
  int r = i ? cc_rwlock_write(s->rw, CC_FOREVER) : cc_rwlock_read(s->rw, CC_FOREVER);
  if (r)
    return 1;
  atomic_store(&s->held, 1);
  /* A thread of this process ends holding it; a process waits to be killed. */
  return 0;
}

static _Noreturn int hold_forever(void *arg, int i) {
  hold_and_end(arg, i);
  idle_child();
}

/* A holder that dies (a process killed, a thread that ended) is taken
 * over by the next to want it, who is told: a writer after a reader, a
 * reader after a writer, waiting or trying. */
static void a_dead_holder_is_taken_over(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    for (int wrote = 0; wrote <= 1; wrote++) {
      for (int trying = 0; trying <= 1; trying++) {
        shared *s = shared_new(0);
        party *h = party_start(kind, kind == PARTY_THREAD ? hold_and_end : hold_forever, s, wrote);
        while (!atomic_load(&s->held))
          cc_sleep_until(cc_now() + MS);
        int pid = kind == PARTY_THREAD ? getpid() : h->pid;
        if (kind == PARTY_THREAD)
          assert_int_equal(party_join(h, 10), 0);
        else
          kill(h->pid, SIGKILL);
        /* A writer wants it after a reader died, a reader after a writer. */
        int want_write = !wrote;
        int r;
        if (trying) {
          if (kind != PARTY_THREAD)
            assert_int_equal(party_join(h, 10), 128 + SIGKILL);
          r = want_write ? cc_rwlock_write(s->rw, 0) : cc_rwlock_read(s->rw, 0);
        } else {
          int64_t t0 = cc_now();
          r = want_write ? cc_rwlock_write(s->rw, cc_now() + 5000 * MS)
                         : cc_rwlock_read(s->rw, cc_now() + 5000 * MS);
          assert_true(elapsed_ms(t0) < 1000);
          if (kind != PARTY_THREAD)
            assert_int_equal(party_join(h, 10), 128 + SIGKILL);
        }
        assert_int_equal(r, CC_EOWNERDEAD);
        assert_int_equal(cc_rwlock_dead_owner(s->rw), pid);
        assert_int_equal(cc_rwlock_mine(s->rw), want_write ? 2 : 1);
        assert_int_equal(cc_rwlock_release(s->rw), 0);
        /* Told once: the next taker is not. */
        assert_int_equal(cc_rwlock_write(s->rw, 0), 0);
        assert_int_equal(cc_rwlock_release(s->rw), 0);
        shared_free(s);
      }
    }
  }
}

static int wait_to_write_forever(void *arg, int i) {
  (void)i;
  shared *s = arg;
  cc_rwlock_write(s->rw, CC_FOREVER);
  return 1;
}

/* With writer preference, a writer killed while it waits does not keep
 * readers back for ever. */
static void a_dead_waiting_writer_is_counted_out(void **state) {
  (void)state;
  shared *s = shared_new(1);
  assert_int_equal(cc_rwlock_read(s->rw, 0), 0);
  pid_t w = spawn(wait_to_write_forever, s, 0);
  while (s->rw->writers_waiting == 0)
    cc_sleep_until(cc_now() + MS);
  assert_int_equal(party_join(party_start(PARTY_THREAD, try_take, s, 0), 10), 10);
  kill(w, SIGKILL);
  assert_int_equal(await(w, 10), 128 + SIGKILL);
  assert_int_equal(party_join(party_start(PARTY_THREAD, try_take, s, 0), 10), 0);
  assert_int_equal(cc_rwlock_release(s->rw), 0);
  shared_free(s);
}

/* What the calling thread cannot do: take what it holds (it would wait
 * for itself), give what it does not hold; a timeout and an interrupt end
 * a wait. */
static void refusals_timeouts_and_interrupts(void **state) {
  (void)state;
  shared *s = shared_new(0);
  assert_int_equal(cc_rwlock_release(s->rw), CC_ENOTOWNER);
  assert_int_equal(cc_rwlock_read(s->rw, CC_FOREVER), 0);
  assert_int_equal(cc_rwlock_read(s->rw, CC_FOREVER), CC_EDEADLK);
  assert_int_equal(cc_rwlock_write(s->rw, CC_FOREVER), CC_EDEADLK);
  assert_int_equal(cc_rwlock_release(s->rw), 0);
  assert_int_equal(cc_rwlock_release(s->rw), CC_ENOTOWNER);
  party *h = party_start(PARTY_PROCESS, hold_forever, s, 1);
  while (!atomic_load(&s->held))
    cc_sleep_until(cc_now() + MS);
  int64_t t0 = cc_now();
  assert_int_equal(cc_rwlock_read(s->rw, cc_now() + 200 * MS), CC_ETIMEDOUT);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 200 && ms < 400);
  cc_interrupt();
  assert_int_equal(cc_rwlock_write(s->rw, CC_FOREVER), CC_EINTR);
  cc_interrupt_clear();
  assert_int_equal(s->rw->writers_waiting, 0);
  assert_int_equal(s->rw->waiting, 0);
  kill(h->pid, SIGKILL);
  assert_int_equal(party_join(h, 10), 128 + SIGKILL);
  assert_int_equal(cc_rwlock_read(s->rw, 0), CC_EOWNERDEAD);
  assert_int_equal(cc_rwlock_release(s->rw), 0);
  shared_free(s);
}

static int read_and_wait(void *arg, int i) {
  (void)i;
  shared *s = arg;
  if (cc_rwlock_read(s->rw, CC_FOREVER))
    return 1;
  atomic_fetch_add(&s->held, 1);
  while (atomic_load(&s->writing) == 0)
    cc_sleep_until(cc_now() + MS);
  return cc_rwlock_release(s->rw) ? 2 : 0;
}

/* CC_RWLOCK_MAX readers at once, in threads; one more is refused, not
 * made to wait for ever. */
static void as_many_readers_as_the_table_holds(void **state) {
  (void)state;
  shared *s = shared_new(0);
  party *p[CC_RWLOCK_MAX];
  for (int i = 0; i < CC_RWLOCK_MAX; i++)
    p[i] = party_start(PARTY_THREAD, read_and_wait, s, i);
  while (atomic_load(&s->held) < CC_RWLOCK_MAX)
    cc_sleep_until(cc_now() + MS);
  assert_int_equal(cc_rwlock_readers(s->rw), CC_RWLOCK_MAX);
  assert_int_equal(cc_rwlock_read(s->rw, CC_FOREVER), CC_ELIMIT);
  atomic_store(&s->writing, 1);
  for (int i = 0; i < CC_RWLOCK_MAX; i++)
    assert_int_equal(party_join(p[i], 30), 0);
  atomic_store(&s->writing, 0);
  shared_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(twenty_parties_exclude_writers),
      cmocka_unit_test(readers_share_and_a_writer_is_alone),
      cmocka_unit_test(a_writer_waits_for_the_readers),
      cmocka_unit_test(a_dead_holder_is_taken_over),
      cmocka_unit_test(a_dead_waiting_writer_is_counted_out),
      cmocka_unit_test(refusals_timeouts_and_interrupts),
      cmocka_unit_test(as_many_readers_as_the_table_holds),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
