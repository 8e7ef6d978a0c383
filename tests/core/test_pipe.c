/* test_pipe - the pipe transport: frames whole and in order, descriptors, EOF, threads */
#include "helpers.h"

#include "concur/error.h"
#include "concur/lock.h"
#include "concur/pipe.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

enum { FRAMES = 300 };

/* The size of frame k: 1.5 KB to 100 KB, so that a sender fills the pipe
 * and waits. */
static size_t frame_size(int k) { return 1536 + (size_t)(k * 7919) % (100 * 1024 - 1536); }

/* Frame k: its number, then bytes that say it. */
static void make_frame(cc_msg *m, int k) {
  size_t n = frame_size(k);
  assert_int_equal(cc_msg_reserve(m, n, 0), 0);
  memset(m->data, 'a' + k % 26, n);
  memcpy(m->data, &k, sizeof k);
  m->len = n;
  m->nrefs = 0;
}

/* 0 when m is frame k, whole. */
static int check_frame(const cc_msg *m, int k) {
  int got;
  if (m->len != frame_size(k))
    return 1;
  memcpy(&got, m->data, sizeof got);
  if (got != k)
    return 2;
  for (size_t i = sizeof got; i < m->len; i++)
    if (m->data[i] != 'a' + k % 26)
      return 3;
  return 0;
}

typedef struct pair {
  cc_conn in_r, in_w;   /* to the test's main */
  cc_conn out_r, out_w; /* from it */
  pid_t main_pid;
} pair;

static int send_frames(void *arg, int n) {
  pair *p = arg;
  cc_msg m = {0};
  for (int k = 0; k < n; k++) {
    make_frame(&m, k);
    int went;
    if (cc_conn_send(&p->in_w, &m, 0, NULL, CC_FOREVER, &went))
      return 1;
  }
  cc_msg_free(&m);
  return 0;
}

static int recv_frames(void *arg, int n) {
  pair *p = arg;
  cc_msg m = {0};
  cc_fds fds;
  for (int k = 0; k < n; k++) {
    if (cc_conn_recv(&p->out_r, &m, &fds, SIZE_MAX, cc_deadline(60)) != 0)
      return 10;
    if (check_frame(&m, k))
      return 20 + check_frame(&m, k);
  }
  cc_msg_free(&m);
  return 0;
}

/* One party sends while another receives, and this one does both, frame
 * for frame: everything once, in order, whole, both ways at once. */
static void each_way_at_once(int duplex) {
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    pair *p = calloc(1, sizeof *p);
    assert_int_equal(cc_pipe_new(&p->in_r, &p->in_w, duplex), 0);
    assert_int_equal(cc_pipe_new(&p->out_r, &p->out_w, duplex), 0);
    party *s = party_start(kind, send_frames, p, FRAMES);
    party *r = party_start(kind, recv_frames, p, FRAMES);
    cc_msg m = {0}, got = {0};
    cc_fds fds;
    for (int k = 0; k < FRAMES; k++) {
      make_frame(&m, k);
      int went;
      assert_int_equal(cc_conn_send(&p->out_w, &m, 0, NULL, CC_FOREVER, &went), 0);
      assert_int_equal(cc_conn_recv(&p->in_r, &got, &fds, SIZE_MAX, cc_deadline(60)), 0);
      assert_int_equal(check_frame(&got, k), 0);
    }
    assert_int_equal(party_join(s, 60), 0);
    assert_int_equal(party_join(r, 60), 0);
    print_message("%s pipe, other parties as %s: %d frames each way\n",
                  duplex ? "duplex" : "one-way", party_kind_names[kind], FRAMES);
    cc_msg_free(&m);
    cc_msg_free(&got);
    cc_conn_close(&p->in_r);
    cc_conn_close(&p->in_w);
    cc_conn_close(&p->out_r);
    cc_conn_close(&p->out_w);
    free(p);
  }
}

static void duplex_frames_each_way(void **state) {
  (void)state;
  each_way_at_once(1);
}

static void one_way_frames_each_way(void **state) {
  (void)state;
  each_way_at_once(0);
}

/* Two threads receive from one end, and two send into the other: every
 * frame comes once and whole (each thread takes its turn for a frame). */
typedef struct shared_end {
  cc_conn r, w;
  _Atomic uint8_t seen[4 * FRAMES];
  _Atomic int bad;
} shared_end;

static int share_send(void *arg, int id) {
  shared_end *e = arg;
  cc_msg m = {0};
  for (int k = 0; k < FRAMES; k++) {
    make_frame(&m, id * FRAMES + k);
    int went;
    if (cc_conn_send(&e->w, &m, 0, NULL, CC_FOREVER, &went))
      return 1;
  }
  cc_msg_free(&m);
  return 0;
}

static int share_recv(void *arg, int n) {
  shared_end *e = arg;
  cc_msg m = {0};
  cc_fds fds;
  for (int k = 0; k < n; k++) {
    if (cc_conn_recv(&e->r, &m, &fds, SIZE_MAX, cc_deadline(60)))
      return 1;
    int id;
    memcpy(&id, m.data, sizeof id);
    if (id < 0 || id >= 2 * FRAMES || check_frame(&m, id))
      atomic_fetch_add(&e->bad, 1);
    else
      atomic_fetch_add(&e->seen[id], 1);
  }
  cc_msg_free(&m);
  return 0;
}

static void threads_share_an_end(void **state) {
  (void)state;
  for (int duplex = 0; duplex < 2; duplex++) {
    shared_end *e = calloc(1, sizeof *e);
    assert_int_equal(cc_pipe_new(&e->r, &e->w, duplex), 0);
    party *s0 = party_start(PARTY_THREAD, share_send, e, 0);
    party *s1 = party_start(PARTY_THREAD, share_send, e, 1);
    party *r0 = party_start(PARTY_THREAD, share_recv, e, FRAMES);
    party *r1 = party_start(PARTY_THREAD, share_recv, e, FRAMES);
    assert_int_equal(party_join(s0, 60), 0);
    assert_int_equal(party_join(s1, 60), 0);
    assert_int_equal(party_join(r0, 60), 0);
    assert_int_equal(party_join(r1, 60), 0);
    assert_int_equal(atomic_load(&e->bad), 0);
    for (int i = 0; i < 2 * FRAMES; i++)
      assert_int_equal(atomic_load(&e->seen[i]), 1);
    cc_conn_close(&e->r);
    cc_conn_close(&e->w);
    free(e);
  }
}

/* A descriptor travels beside its frame, to a party of each kind. */
typedef struct fd_board {
  cc_conn a, b;
} fd_board;

static int recv_fd(void *arg, int i) {
  (void)i;
  fd_board *x = arg;
  cc_msg m = {0};
  cc_fds fds;
  if (cc_conn_recv(&x->b, &m, &fds, SIZE_MAX, cc_deadline(60)) != 0 || fds.n != 1)
    return 1;
  char buf[16] = {0};
  ssize_t n = read(fds.fd[0], buf, sizeof buf - 1);
  close(fds.fd[0]);
  cc_msg_free(&m);
  return n == 5 && strcmp(buf, "hello") == 0 ? 0 : 2;
}

static void descriptors_travel(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    fd_board *x = calloc(1, sizeof *x);
    assert_int_equal(cc_pipe_new(&x->a, &x->b, 1), 0);
    party *r = party_start(kind, recv_fd, x, 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "hello", 5), 5);
    close(p[1]);
    cc_fds fds = {.fd = {p[0]}, .n = 1};
    cc_msg m = {.data = "x", .len = 1};
    int went;
    assert_int_equal(cc_conn_send(&x->a, &m, 0, &fds, CC_FOREVER, &went), 0);
    close(p[0]);
    assert_int_equal(party_join(r, 30), 0);
    cc_conn_close(&x->a);
    cc_conn_close(&x->b);
    free(x);
  }
  /* A one-way pipe carries none: refused, nothing sent. */
  cc_conn r, w;
  assert_int_equal(cc_pipe_new(&r, &w, 0), 0);
  cc_fds fds = {.fd = {0}, .n = 1};
  cc_msg m = {.data = "x", .len = 1};
  int went;
  assert_int_equal(cc_conn_send(&w, &m, 0, &fds, CC_FOREVER, &went), CC_EVALUE);
  assert_int_equal(went, 0);
  assert_int_equal(cc_conn_poll(&r, 0), CC_ETIMEDOUT);
  cc_conn_close(&r);
  cc_conn_close(&w);
}

/* The bytes of a real frame of m, as a sender writes them (through a pipe
 * of their own): *n gets how many. */
static char *raw_frame(const cc_msg *m, size_t *n) {
  cc_conn r, w;
  assert_int_equal(cc_pipe_new(&r, &w, 0), 0);
  int went;
  assert_int_equal(cc_conn_send(&w, m, 0, NULL, CC_FOREVER, &went), 0);
  cc_conn_close(&w);
  static char buf[64 * 1024];
  ssize_t k = read(r.fd, buf, sizeof buf);
  assert_true(k > 16);
  cc_conn_close(&r);
  *n = (size_t)k;
  return buf;
}

/* EOF at a frame's end; torn when the writer goes inside one; a write to
 * a pipe nobody reads is EOF, not SIGPIPE; a receiver that only sends is
 * refused. */
static void eof_torn_and_broken(void **state) {
  (void)state;
  cc_msg m = {0};
  cc_fds fds;
  for (int duplex = 0; duplex < 2; duplex++) {
    cc_conn r, w;
    assert_int_equal(cc_pipe_new(&r, &w, duplex), 0);
    make_frame(&m, 1);
    int went;
    assert_int_equal(cc_conn_send(&w, &m, 0, NULL, CC_FOREVER, &went), 0);
    cc_conn_close(&w);
    assert_int_equal(cc_conn_recv(&r, &m, &fds, SIZE_MAX, CC_FOREVER), 0);
    assert_int_equal(check_frame(&m, 1), 0);
    assert_int_equal(cc_conn_recv(&r, &m, &fds, SIZE_MAX, CC_FOREVER), CC_EEOF);
    cc_conn_close(&r);
    /* Half a frame, then the end. */
    assert_int_equal(cc_pipe_new(&r, &w, duplex), 0);
    cc_msg small = {.data = "a frame of 23 bytes....", .len = 23};
    size_t n;
    char *bytes = raw_frame(&small, &n);
    assert_int_equal(write(w.fd, bytes, n - 5), (ssize_t)(n - 5));
    cc_conn_close(&w);
    assert_int_equal(cc_conn_recv(&r, &m, &fds, SIZE_MAX, CC_FOREVER), CC_ETORN);
    cc_conn_close(&r);
    /* Nobody reads. */
    assert_int_equal(cc_pipe_new(&r, &w, duplex), 0);
    cc_conn_close(&r);
    assert_int_equal(cc_conn_send(&w, &m, 0, NULL, CC_FOREVER, &went), CC_EEOF);
    cc_conn_close(&w);
  }
  cc_conn r, w;
  assert_int_equal(cc_pipe_new(&r, &w, 0), 0);
  assert_int_equal(cc_conn_recv(&w, &m, &fds, SIZE_MAX, CC_FOREVER), CC_EVALUE);
  int went;
  assert_int_equal(cc_conn_send(&r, &m, 0, NULL, CC_FOREVER, &went), CC_EVALUE);
  /* Bytes that are no frame's header are refused, not believed (a length
   * they say is never waited for), at every receive. */
  uint32_t bogus[4] = {10, 999999, 0, 0};
  assert_int_equal(write(w.fd, bogus, sizeof bogus), (ssize_t)sizeof bogus);
  assert_int_equal(cc_conn_recv(&r, &m, &fds, SIZE_MAX, CC_FOREVER), CC_ETORN);
  assert_int_equal(cc_conn_recv(&r, &m, &fds, SIZE_MAX, CC_FOREVER), CC_ETORN);
  cc_conn_close(&r);
  cc_conn_close(&w);
  cc_msg_free(&m);
}

/* A writer killed in the middle of a frame longer than the pipe holds,
 * while another writer goes on: the reader gets CC_ETORN (at every
 * receive from then on), never the other's bytes as the rest of the
 * frame. The victim is a process or a thread's process; the other writer
 * is each kind in turn. */
typedef struct torn_board {
  cc_conn r, w; /* in this process's memory: each child has its copy */
  pid_t reader;
} torn_board;

static int big_sender(void *arg, int i) {
  torn_board *b = arg;
  if (getpid() != b->reader)
    cc_conn_close(&b->r); /* its copy would keep the pipe from ending */
  cc_msg m = {0};
  make_frame(&m, 0);
  assert_int_equal(cc_msg_reserve(&m, 300 * 1024, 0), 0);
  memset(m.data, 'v', 300 * 1024);
  m.len = 300 * 1024;
  int went, r = 0;
  for (int k = 0; k < i && !r; k++) {
    r = cc_conn_send(&b->w, &m, 0, NULL, cc_deadline(30), &went);
  }
  cc_msg_free(&m);
  return r == 0 || r == CC_EEOF ? 0 : 1;
}

static void a_writer_killed_in_a_frame_tears_it(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    torn_board *b = calloc(1, sizeof *b);
    assert_int_equal(cc_pipe_new(&b->r, &b->w, 0), 0);
    b->reader = getpid();
    party *victim = party_start(kind == PARTY_THREAD ? PARTY_PROCESS : PARTY_THREAD_OF_PROCESS,
                                big_sender, b, 1);
    /* The pipe holds 64 KiB: the victim waits in its frame. */
    cc_sleep_until(cc_now() + 100 * MS);
    kill(victim->pid, SIGKILL);
    assert_int_equal(party_join(victim, 10), 128 + SIGKILL);
    party *other = party_start(kind, big_sender, b, 3);
    cc_msg m = {0};
    cc_fds fds;
    assert_int_equal(cc_conn_recv(&b->r, &m, &fds, SIZE_MAX, cc_deadline(30)), CC_ETORN);
    assert_int_equal(cc_conn_recv(&b->r, &m, &fds, SIZE_MAX, cc_deadline(30)), CC_ETORN);
    cc_conn_close(&b->r); /* the other writer then gets EOF */
    assert_int_equal(party_join(other, 30), 0);
    cc_conn_close(&b->w);
    cc_msg_free(&m);
    free(b);
  }
}

/* Longer than maxlen: refused, and the connection is closed (the rest of
 * the frame cannot be skipped safely). */
static void maxlen_closes(void **state) {
  (void)state;
  cc_conn r, w;
  assert_int_equal(cc_pipe_new(&r, &w, 1), 0);
  cc_msg m = {.data = "twelve bytes", .len = 12};
  int went;
  assert_int_equal(cc_conn_send(&w, &m, CC_FRAME_RAW, NULL, CC_FOREVER, &went), 0);
  cc_msg got = {0};
  cc_fds fds;
  assert_int_equal(cc_conn_recv(&r, &got, &fds, 5, CC_FOREVER), CC_ETOOLONG);
  assert_false(cc_conn_open(&r));
  assert_int_equal(cc_conn_recv(&r, &got, &fds, 5, CC_FOREVER), CC_ECLOSED);
  cc_conn_close(&r);
  cc_conn_close(&w);
  cc_msg_free(&got);
}

/* send_nowait never waits for the other end: what it cannot take waits in
 * the connection and goes, in order, with later sends and flushes. */
static int recv_all(void *arg, int n) {
  pair *p = arg;
  /* In another process, its copy of the sending end must go, or no EOF. */
  if (getpid() != p->main_pid)
    cc_conn_close(&p->in_w);
  cc_msg m = {0};
  cc_fds fds;
  for (int k = 0; k < n; k++)
    if (cc_conn_recv(&p->in_r, &m, &fds, SIZE_MAX, cc_deadline(60)) || check_frame(&m, k))
      return 1;
  int r = cc_conn_recv(&p->in_r, &m, &fds, SIZE_MAX, cc_deadline(60));
  cc_msg_free(&m);
  return r == CC_EEOF ? 0 : 2;
}

static void send_nowait_keeps_order(void **state) {
  (void)state;
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    pair *p = calloc(1, sizeof *p);
    p->main_pid = getpid();
    assert_int_equal(cc_pipe_new(&p->in_r, &p->in_w, 1), 0);
    cc_msg m = {0};
    int waiting = 0, n = 0;
    int64_t t0 = cc_now();
    while (!waiting || n < 40) {
      make_frame(&m, n++);
      int went;
      int r = cc_conn_send_nowait(&p->in_w, &m, &went);
      assert_true(r == 0 || r == 1);
      assert_int_equal(went, 1);
      waiting |= r == 1;
    }
    assert_true(elapsed_ms(t0) < 1000); /* it never waited for a reader */
    party *reader = party_start(kind, recv_all, p, n);
    if (kind != PARTY_THREAD)
      cc_conn_close(&p->in_r); /* the reader has its own copy */
    int64_t end = cc_now() + 30 * 1000 * MS;
    while (cc_conn_flush(&p->in_w) == 1 && cc_now() < end)
      cc_sleep_until(cc_now() + MS);
    cc_conn_close(&p->in_w);
    assert_int_equal(party_join(reader, 60), 0);
    cc_conn_close(&p->in_r);
    cc_msg_free(&m);
    free(p);
  }
}

/* A close from another thread makes a receiver that waits leave, within
 * a slice, and nobody is left waiting on a descriptor that is gone. */
static int blocked_recv(void *arg, int i) {
  (void)i;
  pair *p = arg;
  cc_msg m = {0};
  cc_fds fds;
  int r = cc_conn_recv(&p->in_r, &m, &fds, SIZE_MAX, cc_deadline(30));
  cc_msg_free(&m);
  return r == CC_ECLOSED ? 0 : 1;
}

static void close_from_another_thread(void **state) {
  (void)state;
  pair *p = calloc(1, sizeof *p);
  assert_int_equal(cc_pipe_new(&p->in_r, &p->in_w, 1), 0);
  party *t = party_start(PARTY_THREAD, blocked_recv, p, 0);
  while ((atomic_load(&p->in_r.inside) & ~CC_CONN_CLOSING) == 0)
    cc_sleep_until(cc_now() + MS);
  cc_sleep_until(cc_now() + 20 * MS);
  int64_t t0 = cc_now();
  cc_conn_close(&p->in_r);
  assert_false(cc_conn_open(&p->in_r));
  assert_int_equal(party_join(t, 10), 0);
  double ms = elapsed_ms(t0);
  assert_true(ms < 1000);
  assert_int_equal(p->in_r.fd, -1); /* the last user closed it */
  print_message("the waiting receiver left %.0f ms after the close\n", ms);
  cc_conn_close(&p->in_w);
  free(p);
}

/* poll and wait: timeouts, readiness, several connections at once. */
static void poll_and_wait(void **state) {
  (void)state;
  cc_conn a, b, c, d;
  assert_int_equal(cc_pipe_new(&a, &b, 1), 0);
  assert_int_equal(cc_pipe_new(&c, &d, 0), 0);
  int64_t t0 = cc_now();
  assert_int_equal(cc_conn_poll(&a, cc_deadline(0.05)), CC_ETIMEDOUT);
  assert_true(elapsed_ms(t0) >= 50);
  cc_conn *both[2] = {&a, &c};
  uint8_t ready[2];
  assert_int_equal(cc_conn_wait(both, 2, ready, "both", cc_deadline(0.05)), 0);
  cc_msg m = {.data = "x", .len = 1};
  int went;
  assert_int_equal(cc_conn_send(&d, &m, 0, NULL, CC_FOREVER, &went), 0);
  assert_int_equal(cc_conn_wait(both, 2, ready, "both", cc_deadline(5)), 1);
  assert_false(ready[0]);
  assert_true(ready[1]);
  assert_int_equal(cc_conn_poll(&c, 0), 0);
  cc_conn_close(&b); /* the end: ready, for recv to say so */
  assert_int_equal(cc_conn_wait(both, 2, ready, "both", cc_deadline(5)), 2);
  cc_conn_close(&a);
  assert_int_equal(cc_conn_poll(&a, 0), CC_ECLOSED);
  cc_conn_close(&c);
  cc_conn_close(&d);
}

/* Frames that carry object references: they travel, and those never
 * received are dropped with the connection. */
static void unsent_frames_drop_their_refs(void **state) {
  (void)state;
  size_t live = cc_arena_live_blocks();
  cc_conn r, w;
  assert_int_equal(cc_pipe_new(&r, &w, 1), 0);
  char big[60000];
  memset(big, 'z', sizeof big);
  int waiting = 0, n = 0;
  while (!waiting) {
    cc_lock *l = cc_lock_new(0);
    uint32_t off = cc_arena_off(l); /* the message's reference: the creation one */
    cc_msg m = {.data = big, .len = sizeof big, .refs = &off, .nrefs = 1};
    int went;
    int rr = cc_conn_send_nowait(&w, &m, &went);
    assert_int_equal(went, 1);
    waiting = rr == 1;
    n++;
  }
  cc_conn_close(&w); /* what waits goes, with its refs */
  cc_msg got = {0};
  cc_fds fds;
  int received = 0;
  while (cc_conn_recv(&r, &got, &fds, SIZE_MAX, cc_deadline(5)) == 0) {
    received++;
    for (uint32_t i = 0; i < got.nrefs; i++)
      cc_obj_unref(cc_obj_from_off(got.refs[i]));
  }
  cc_conn_close(&r);
  cc_msg_free(&got);
  assert_true(received < n);
  assert_int_equal(cc_arena_live_blocks(), live);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(duplex_frames_each_way),
      cmocka_unit_test(one_way_frames_each_way),
      cmocka_unit_test(threads_share_an_end),
      cmocka_unit_test(descriptors_travel),
      cmocka_unit_test(eof_torn_and_broken),
      cmocka_unit_test(a_writer_killed_in_a_frame_tears_it),
      cmocka_unit_test(maxlen_closes),
      cmocka_unit_test(send_nowait_keeps_order),
      cmocka_unit_test(close_from_another_thread),
      cmocka_unit_test(poll_and_wait),
      cmocka_unit_test(unsent_frames_drop_their_refs),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
