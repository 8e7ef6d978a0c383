/* test_queue - the shared queue: exactness, order, timeouts, growth, kills */
#include "helpers.h"

#include "concur/error.h"
#include "concur/event.h"
#include "concur/queue.h"

#include <string.h>

enum { PRODUCERS = 4, CONSUMERS = 4, PER_PRODUCER = 250000 };

typedef struct board {
  cc_queue *q;
  _Atomic uint8_t seen[PRODUCERS * PER_PRODUCER];
  _Atomic int out_of_order;
} board;

static int producer(void *arg, int id) {
  board *b = arg;
  cc_msg m = {0};
  uint32_t v[2] = {(uint32_t)id, 0};
  m.data = (char *)v;
  m.len = sizeof v;
  for (uint32_t k = 0; k < PER_PRODUCER; k++) {
    v[1] = k;
    if (cc_queue_put(b->q, &m, CC_FOREVER))
      return 1;
  }
  return 0;
}

static int consumer(void *arg, int id) {
  (void)id;
  board *b = arg;
  cc_msg m = {0};
  int64_t last[PRODUCERS];
  for (int i = 0; i < PRODUCERS; i++)
    last[i] = -1;
  for (;;) {
    if (cc_queue_get(b->q, &m, CC_FOREVER))
      return 1;
    uint32_t v[2];
    memcpy(v, m.data, sizeof v);
    if (v[0] == UINT32_MAX)
      break; /* the sentinel */
    if ((int64_t)v[1] <= last[v[0]])
      atomic_fetch_add(&b->out_of_order, 1);
    last[v[0]] = v[1];
    atomic_fetch_add(&b->seen[v[0] * PER_PRODUCER + v[1]], 1);
  }
  cc_msg_free(&m);
  return 0;
}

static void four_by_four_exactly_once_in_order(void **state) {
  (void)state;
  board *b = cc_arena_alloc(sizeof *b);
  memset(b, 0, sizeof *b);
  b->q = cc_queue_new(CC_QUEUE_PLAIN, 1000);
  pid_t c[CONSUMERS], p[PRODUCERS];
  for (int i = 0; i < CONSUMERS; i++)
    c[i] = spawn(consumer, b, i);
  for (int i = 0; i < PRODUCERS; i++)
    p[i] = spawn(producer, b, i);
  for (int i = 0; i < PRODUCERS; i++)
    assert_int_equal(await(p[i], 100), 0);
  uint32_t stop[2] = {UINT32_MAX, 0};
  cc_msg m = {.data = (char *)stop, .len = sizeof stop};
  for (int i = 0; i < CONSUMERS; i++)
    assert_int_equal(cc_queue_put(b->q, &m, CC_FOREVER), 0);
  for (int i = 0; i < CONSUMERS; i++)
    assert_int_equal(await(c[i], 100), 0);
  for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
    if (atomic_load(&b->seen[i]) != 1)
      fail_msg("message %d delivered %d times", i, (int)atomic_load(&b->seen[i]));
  assert_int_equal(atomic_load(&b->out_of_order), 0);
  assert_int_equal(cc_queue_qsize(b->q), 0);
  cc_obj_unref(&b->q->hdr);
  cc_arena_free(b);
}

/* Fills a queue with n-byte messages numbered from 0 until the arena is
 * full; returns how many went in. */
static uint32_t fill(cc_queue *q, size_t n) {
  char *data = calloc(1, n);
  cc_msg m = {.data = data, .len = n};
  uint32_t k = 0;
  for (;; k++) {
    memcpy(data, &k, sizeof k);
    int r = cc_queue_put(q, &m, 0);
    if (r == CC_EARENAFULL)
      break;
    assert_int_equal(r, 0);
  }
  free(data);
  return k;
}

/* Last in the group: what it fills is left in blocks of a segment's size.
 * An unbounded queue of small messages grows until the arena is full (a
 * ring that doubled stopped at a quarter of it), whatever another queue
 * holds, then gives every message back in order and all its blocks back. */
static void small_messages_fill_the_arena(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  size_t room = cc_arena_untouched();
  cc_queue *other = cc_queue_new(CC_QUEUE_PLAIN, 0), *q = cc_queue_new(CC_QUEUE_PLAIN, 0);
  cc_msg hold = {.data = "held", .len = 4};
  for (int i = 0; i < 10000; i++)
    assert_int_equal(cc_queue_put(other, &hold, 0), 0);
  uint32_t n = fill(q, 1000);
  double bytes = (double)n * 1000;
  print_message("%u messages of 1000 bytes: %.1f MB of %.1f MB of room\n", n, bytes / 1e6,
                (double)room / 1e6);
  assert_true(bytes > 0.9 * (double)room);
  assert_int_equal(cc_queue_qsize(q), n);
  cc_msg out = {0};
  for (uint32_t k = 0; k < n; k++) {
    assert_int_equal(cc_queue_get(q, &out, 0), 0);
    uint32_t id;
    memcpy(&id, out.data, sizeof id);
    assert_int_equal(out.len, 1000);
    assert_int_equal(id, k);
  }
  assert_int_equal(cc_queue_get(q, &out, 0), CC_EEMPTY);
  for (int i = 0; i < 10000; i++)
    assert_int_equal(cc_queue_get(other, &out, 0), 0);
  cc_obj_unref(&q->hdr);
  /* Another queue fills the same room: nothing was lost to the first. */
  uint32_t again = fill(other, 1000);
  print_message("then %u in the other queue\n", again);
  assert_true(again >= n - n / 100);
  cc_obj_unref(&other->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
  cc_msg_free(&out);
}

/* A queue that streams with a small backlog reuses its segments: the
 * number of blocks stays the same while a million messages go through. */
static void streaming_does_not_allocate(void **state) {
  (void)state;
  cc_queue *q = cc_queue_new(CC_QUEUE_PLAIN, 0);
  char data[100] = {0};
  cc_msg m = {.data = data, .len = sizeof data}, out = {0};
  size_t blocks = 0;
  for (uint32_t k = 0; k < 1000000; k++) {
    memcpy(data, &k, sizeof k);
    assert_int_equal(cc_queue_put(q, &m, 0), 0);
    if (k >= 10) {
      assert_int_equal(cc_queue_get(q, &out, 0), 0);
      uint32_t id;
      memcpy(&id, out.data, sizeof id);
      assert_int_equal(id, k - 10);
    }
    if (k == 10000)
      blocks = cc_arena_live_blocks();
  }
  assert_int_equal(cc_arena_live_blocks(), blocks);
  cc_obj_unref(&q->hdr);
  cc_msg_free(&out);
}

static void full_and_empty_time_out(void **state) {
  (void)state;
  cc_queue *q = cc_queue_new(CC_QUEUE_PLAIN, 2);
  cc_msg m = {.data = "ab", .len = 2}, out = {0};
  assert_int_equal(cc_queue_put(q, &m, 0), 0);
  assert_int_equal(cc_queue_put(q, &m, 0), 0);
  assert_int_equal(cc_queue_qsize(q), 2);
  int64_t t0 = cc_now();
  assert_int_equal(cc_queue_put(q, &m, cc_now() + 100 * MS), CC_EFULL);
  double ms = elapsed_ms(t0);
  assert_true(ms >= 100 && ms < 150);
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  t0 = cc_now();
  assert_int_equal(cc_queue_get(q, &out, cc_now() + 100 * MS), CC_EEMPTY);
  ms = elapsed_ms(t0);
  assert_true(ms >= 100 && ms < 150);
  cc_msg_free(&out);
  cc_obj_unref(&q->hdr);
}

static void grows_and_carries_big_messages(void **state) {
  (void)state;
  cc_queue *q = cc_queue_new(CC_QUEUE_PLAIN, 0);
  size_t big = 10u << 20;
  char *data = malloc(big);
  for (size_t i = 0; i < big; i++)
    data[i] = (char)(i * 7 + 3);
  cc_msg small = {.data = "x", .len = 1}, large = {.data = data, .len = big}, out = {0};
  for (int i = 0; i < 1000; i++)
    assert_int_equal(cc_queue_put(q, &small, 0), 0);
  assert_int_equal(cc_queue_put(q, &large, 0), 0);
  assert_int_equal(cc_queue_qsize(q), 1001);
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(cc_queue_get(q, &out, 0), 0);
    assert_int_equal(out.len, 1);
  }
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  assert_int_equal(out.len, big);
  assert_memory_equal(out.data, data, big);
  free(data);
  cc_msg_free(&out);
  cc_obj_unref(&q->hdr);
}

static void refs_keep_objects_alive(void **state) {
  (void)state;
  cc_queue *q = cc_queue_new(CC_QUEUE_PLAIN, 0);
  cc_event *e = cc_event_new();
  uint32_t ref = cc_arena_off(e);
  cc_msg m = {.data = "e", .len = 1, .refs = &ref, .nrefs = 1}, out = {0};
  assert_int_equal(cc_queue_put(q, &m, 0), 0); /* the creation ref travels */
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  assert_int_equal(out.nrefs, 1);
  assert_ptr_equal(cc_obj_from_off(out.refs[0]), &e->hdr);
  /* A message left in a dropped queue gives its refs back. */
  size_t live = cc_arena_live_blocks();
  assert_int_equal(cc_queue_put(q, &out, 0), 0);
  cc_obj_unref(&q->hdr);
  /* The event, the queue's one segment, the queue. */
  assert_int_equal(cc_arena_live_blocks(), live - 3);
  cc_msg_free(&out);
}

/* A message over 64 KiB goes in a block of its own (the ring keeps a
 * record of it): in order with the others, its refs with it, the block
 * freed when it is got or when the queue goes with it unread. */
static void big_messages_go_in_blocks_of_their_own(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  cc_queue *q = cc_queue_new(CC_QUEUE_PLAIN, 0);
  size_t big = 300u << 10;
  char *data = malloc(big);
  for (size_t i = 0; i < big; i++)
    data[i] = (char)(i * 13 + 1);
  cc_event *e = cc_event_new();
  uint32_t ref = cc_arena_off(e);
  cc_msg a = {.data = "a", .len = 1}, large = {.data = data, .len = big, .refs = &ref, .nrefs = 1};
  cc_msg out = {0};
  size_t ring_blocks = cc_arena_live_blocks();
  assert_int_equal(cc_queue_put(q, &a, 0), 0);
  assert_int_equal(cc_queue_put(q, &large, 0), 0); /* the creation ref travels */
  assert_int_equal(cc_queue_put(q, &a, 0), 0);
  assert_int_equal(cc_arena_live_blocks(), ring_blocks + 1); /* its block; the ring stayed */
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  assert_int_equal(out.len, 1);
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  assert_int_equal(out.len, big);
  assert_memory_equal(out.data, data, big);
  assert_int_equal(out.nrefs, 1);
  assert_ptr_equal(cc_obj_from_off(out.refs[0]), &e->hdr);
  assert_int_equal(cc_arena_live_blocks(), ring_blocks); /* the block went */
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  assert_int_equal(out.len, 1);
  /* One left unread in a queue that goes: its block and its ref go too. */
  large.refs = &ref; /* the ref got back, sent again */
  assert_int_equal(cc_queue_put(q, &large, 0), 0);
  cc_obj_unref(&q->hdr);
  assert_int_equal(cc_arena_live_blocks(), live0);
  free(data);
  cc_msg_free(&out);
}

static void joinable(void **state) {
  (void)state;
  cc_queue *q = cc_queue_new(CC_QUEUE_JOINABLE, 0);
  cc_msg m = {.data = "j", .len = 1}, out = {0};
  assert_int_equal(cc_queue_join(q, 0), 0);
  assert_int_equal(cc_queue_put(q, &m, 0), 0);
  assert_int_equal(cc_queue_put(q, &m, 0), 0);
  assert_int_equal(cc_queue_join(q, cc_now() + 50 * MS), CC_ETIMEDOUT);
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  assert_int_equal(cc_queue_task_done(q), 0);
  assert_int_equal(cc_queue_get(q, &out, 0), 0);
  assert_int_equal(cc_queue_task_done(q), 0);
  assert_int_equal(cc_queue_task_done(q), CC_EVALUE);
  assert_int_equal(cc_queue_join(q, 0), 0);
  cc_msg_free(&out);
  cc_obj_unref(&q->hdr);
}

/* Kills: messages carry (id, size, checksum) and a variable body. */
enum { KILLS = 1000, IDS = 1 << 20 };

typedef struct killboard {
  cc_queue *q;
  _Atomic uint32_t next_id;
  _Atomic uint8_t taken[IDS];
  _Atomic uint8_t put_done[IDS];
} killboard;

static uint32_t checksum(const unsigned char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static int make_message(cc_msg *m, uint32_t id) {
  size_t n = 12 + (id * 2654435761u) % 3000;
  if (n > m->cap) {
    m->data = realloc(m->data, n);
    m->cap = n;
  }
  for (size_t i = 12; i < n; i++)
    m->data[i] = (char)(id + i);
  uint32_t sz = (uint32_t)n, sum = checksum((unsigned char *)m->data + 12, n - 12);
  memcpy(m->data, &id, 4);
  memcpy(m->data + 4, &sz, 4);
  memcpy(m->data + 8, &sum, 4);
  m->len = n;
  return 0;
}

static int whole(const cc_msg *m, uint32_t *id) {
  uint32_t sz, sum;
  if (m->len < 12)
    return 0;
  memcpy(id, m->data, 4);
  memcpy(&sz, m->data + 4, 4);
  memcpy(&sum, m->data + 8, 4);
  return sz == m->len && sum == checksum((unsigned char *)m->data + 12, m->len - 12);
}

static int kill_producer(void *arg, int i) {
  (void)i;
  killboard *b = arg;
  cc_msg m = {0};
  for (;;) {
    uint32_t id = atomic_fetch_add(&b->next_id, 1);
    if (id >= IDS)
      return 0;
    make_message(&m, id);
    if (cc_queue_put(b->q, &m, CC_FOREVER))
      return 1;
    atomic_store(&b->put_done[id], 1);
  }
}

static int kill_consumer(void *arg, int i) {
  (void)i;
  killboard *b = arg;
  cc_msg m = {0};
  for (;;) {
    if (cc_queue_get(b->q, &m, CC_FOREVER))
      return 1;
    uint32_t id;
    if (!whole(&m, &id))
      return 2;
    atomic_fetch_add(&b->taken[id], 1);
  }
}

static void thousand_kills_lose_nothing_else(void **state) {
  (void)state;
  size_t live0 = cc_arena_live_blocks();
  killboard *b = cc_arena_alloc(sizeof *b);
  memset(b, 0, sizeof *b);
  b->q = cc_queue_new(CC_QUEUE_PLAIN, 64);
  srand(12345);
  for (int k = 0; k < KILLS; k++) {
    /* Alternately a producer and a consumer die; the other side lives. */
    int victim_is_consumer = k & 1;
    pid_t victim = spawn(victim_is_consumer ? kill_consumer : kill_producer, b, k);
    pid_t other = spawn(victim_is_consumer ? kill_producer : kill_consumer, b, k);
    struct timespec ts = {0, (long)(rand() % 5000) * 1000};
    nanosleep(&ts, NULL);
    kill(victim, SIGKILL);
    kill(other, SIGKILL);
    int a = await(victim, 10), o = await(other, 10);
    assert_true(a == 128 + SIGKILL || a == 0);
    assert_true(o == 128 + SIGKILL || o == 0);
  }
  /* Drain what is left: every message whole, none taken twice. */
  cc_msg m = {0};
  uint32_t drained = 0, lost = 0, lost_after_put = 0, produced = atomic_load(&b->next_id);
  if (produced > IDS)
    produced = IDS;
  while (cc_queue_get(b->q, &m, 0) == 0) {
    uint32_t id = 0;
    assert_true(whole(&m, &id));
    atomic_fetch_add(&b->taken[id], 1);
    drained++;
  }
  for (uint32_t id = 0; id < produced; id++) {
    uint8_t t = atomic_load(&b->taken[id]);
    assert_true(t <= 1);
    lost += t == 0;
    lost_after_put += t == 0 && atomic_load(&b->put_done[id]);
  }
  /* Lost: taken by a consumer killed before it noted it, or never put by a
   * producer killed while putting: at most one each per round, which kills
   * one of each. */
  assert_true(lost <= 2u * KILLS);
  /* A message whose put returned is lost only to a consumer killed between
   * taking it and noting it: one per round at most. */
  assert_true(lost_after_put <= KILLS);
  /* And the queue kept working between kills: a message a round at least
   * (alone, Release makes 350 a round and ASan 25; a loaded machine forks
   * slowly, and some rounds kill their parties before they start). */
  assert_true(produced > KILLS);
  /* The queue still works. */
  make_message(&m, 7);
  assert_int_equal(cc_queue_put(b->q, &m, 0), 0);
  assert_int_equal(cc_queue_get(b->q, &m, 0), 0);
  uint32_t id = 0;
  assert_true(whole(&m, &id) && id == 7);
  print_message("%u messages made, %u drained at the end, %u lost in %d kills "
                "(%u of them after their put returned)\n",
                produced, drained, lost, KILLS, lost_after_put);
  cc_msg_free(&m);
  cc_obj_unref(&b->q->hdr);
  cc_arena_free(b);
  /* A kill between a block's making and its record leaks it (the arena's
   * windows, a few instructions wide): a few in a thousand kills, never a
   * segment per link or per get. */
  size_t leaked = cc_arena_live_blocks() - live0;
  print_message("%zu blocks leaked in %d kills\n", leaked, KILLS);
  assert_true(leaked <= 2 + KILLS / 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(streaming_does_not_allocate),
      cmocka_unit_test(four_by_four_exactly_once_in_order),
      cmocka_unit_test(full_and_empty_time_out),
      cmocka_unit_test(grows_and_carries_big_messages),
      cmocka_unit_test(refs_keep_objects_alive),
      cmocka_unit_test(big_messages_go_in_blocks_of_their_own),
      cmocka_unit_test(joinable),
      cmocka_unit_test(thousand_kills_lose_nothing_else),
      cmocka_unit_test(small_messages_fill_the_arena),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
