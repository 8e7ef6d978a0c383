/* test_ready - the run's doorbell: one wait for many objects, and descriptors */
#include "helpers.h"

#include "concur/error.h"
#include "concur/event.h"
#include "concur/ready.h"
#include "concur/sem.h"

#include <poll.h>

typedef struct shared {
  cc_event *e;
  cc_sem *s;
  int pipe[2];
  _Atomic int waiting;
} shared;

static shared *shared_new(void) {
  shared *x = cc_arena_alloc(sizeof *x);
  memset(x, 0, sizeof *x);
  x->e = cc_event_new();
  x->s = cc_sem_new(0, 0);
  assert_int_equal(pipe(x->pipe), 0);
  return x;
}

static void shared_free(shared *x) {
  close(x->pipe[0]);
  close(x->pipe[1]);
  cc_obj_unref(&x->e->hdr);
  cc_obj_unref(&x->s->hdr);
  cc_arena_free(x);
}

/* What the waiter looks at: the Event, the Semaphore (through their
 * types' ready, as concur.wait does) and, polled, the pipe. */
typedef struct seen {
  shared *x;
  int event, sem, fd, looks;
} seen;

static int check(void *ctx, struct pollfd *fds, int nfds) {
  seen *s = ctx;
  s->looks++;
  s->event = cc_type_get(s->x->e->hdr.type)->ready(&s->x->e->hdr);
  s->sem = cc_type_get(s->x->s->hdr.type)->ready(&s->x->s->hdr);
  s->fd = nfds && (fds[0].revents & POLLIN);
  return s->event + s->sem + s->fd;
}

/* Party i, once the waiter waits: 0 sets the Event, 1 releases the
 * Semaphore, 2 writes to the pipe. */
static int change(void *arg, int i) {
  shared *x = arg;
  while (!atomic_load(&x->waiting))
    cc_sleep_until(cc_now() + MS);
  cc_sleep_until(cc_now() + 20 * MS);
  if (i == 0)
    cc_event_set(x->e);
  else if (i == 1)
    cc_sem_post(x->s);
  else if (write(x->pipe[1], "x", 1) != 1)
    return 1;
  return 0;
}

/* Each change, made by a party of each kind, ends one wait on all three
 * (with the pipe polled, or not when the change is to an object), which
 * sees exactly that one ready. */
static void a_change_ends_the_wait_on_all(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    for (int i = 0; i < 3; i++) {
      for (int polled = i == 2; polled <= 1; polled++) {
        shared *x = shared_new();
        uint32_t epoch = atomic_load(&cc__the_bell->epoch);
        party *p = party_start(kind, change, x, i);
        seen s = {.x = x};
        struct pollfd fd = {.fd = x->pipe[0], .events = POLLIN};
        atomic_store(&x->waiting, 1);
        int64_t t0 = cc_now();
        int r = cc_ready_wait(check, &s, polled ? &fd : NULL, polled, NULL, cc_now() + 10000 * MS);
        assert_true(elapsed_ms(t0) < 5000);
        assert_int_equal(r, 1);
        assert_int_equal(s.event, i == 0);
        assert_int_equal(s.sem, i == 1);
        assert_int_equal(s.fd, i == 2);
        assert_int_equal(party_join(p, 10), 0);
        if (i < 2) /* rung while watched */
          assert_true(atomic_load(&cc__the_bell->epoch) != epoch);
        assert_int_equal(atomic_load(&cc__the_bell->watchers), 0);
        assert_int_equal(atomic_load(&cc__the_bell->pollers), 0);
        shared_free(x);
      }
    }
  }
}

static int wait_event(void *arg, int i) {
  (void)i;
  shared *x = arg;
  seen s = {.x = x};
  atomic_fetch_add(&x->waiting, 1);
  struct pollfd fd = {.fd = x->pipe[0], .events = POLLIN};
  int r = cc_ready_wait(check, &s, &fd, i % 2, NULL, cc_now() + 10000 * MS);
  return r == 1 && s.event ? 0 : 1;
}

/* One set ends the waits of twelve parties of all kinds, polling or not. */
static void one_ring_wakes_every_waiter(void **state) {
  (void)state;
  enum { N = 12 };
  shared *x = shared_new();
  party *p[N];
  for (int i = 0; i < N; i++)
    p[i] = party_start(i % PARTY_KINDS, wait_event, x, i);
  while (atomic_load(&cc__the_bell->watchers) < N)
    cc_sleep_until(cc_now() + MS);
  cc_event_set(x->e);
  for (int i = 0; i < N; i++)
    assert_int_equal(party_join(p[i], 10), 0);
  assert_int_equal(atomic_load(&cc__the_bell->watchers), 0);
  shared_free(x);
}

/* Nothing changes: the deadline ends it with 0, after one look when it is
 * now; an interrupt ends it with CC_EINTR. The counts are given back. */
static void the_deadline_and_an_interrupt_end_it(void **state) {
  (void)state;
  shared *x = shared_new();
  seen s = {.x = x};
  struct pollfd fd = {.fd = x->pipe[0], .events = POLLIN};
  for (int polled = 0; polled <= 1; polled++) {
    s.looks = 0;
    assert_int_equal(cc_ready_wait(check, &s, &fd, polled, NULL, 0), 0);
    assert_int_equal(s.looks, 1);
    int64_t t0 = cc_now();
    assert_int_equal(cc_ready_wait(check, &s, &fd, polled, NULL, cc_now() + 200 * MS), 0);
    double ms = elapsed_ms(t0);
    assert_true(ms >= 200 && ms < 1000);
    cc_interrupt();
    assert_int_equal(cc_ready_wait(check, &s, &fd, polled, NULL, CC_FOREVER), CC_EINTR);
    cc_interrupt_clear();
    assert_int_equal(atomic_load(&cc__the_bell->watchers), 0);
    assert_int_equal(atomic_load(&cc__the_bell->pollers), 0);
  }
  shared_free(x);
}

/* A process killed while it waits, polling or not, is counted out when it
 * is reaped: rings do not pay for it ever after. */
static void a_killed_waiter_is_counted_out(void **state) {
  (void)state;
  shared *x = shared_new();
  pid_t w[2];
  for (int i = 0; i < 2; i++)
    w[i] = spawn(wait_event, x, i);
  while (atomic_load(&cc__the_bell->watchers) < 2 || atomic_load(&cc__the_bell->pollers) < 1)
    cc_sleep_until(cc_now() + MS);
  for (int i = 0; i < 2; i++) {
    kill(w[i], SIGKILL);
    assert_int_equal(await(w[i], 10), 128 + SIGKILL);
  }
  assert_int_equal(atomic_load(&cc__the_bell->watchers), 0);
  assert_int_equal(atomic_load(&cc__the_bell->pollers), 0);
  shared_free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_change_ends_the_wait_on_all),
      cmocka_unit_test(one_ring_wakes_every_waiter),
      cmocka_unit_test(the_deadline_and_an_interrupt_end_it),
      cmocka_unit_test(a_killed_waiter_is_counted_out),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
