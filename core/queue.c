/* queue - Queue, JoinableQueue and SimpleQueue: messages in shared segments */
#include "concur/queue.h"
#include "concur/error.h"
#include "concur/ready.h"
#include "concur/trace.h"
#include "concur/wait.h"

#include <stdlib.h>
#include <string.h>

/*
 * DESIGN. A message is a record: a header {payload length, number of refs},
 * the refs (arena offsets), the payload, padded to 8 bytes. Records lie one
 * after another in segments, blocks of the arena of 4 KiB to 256 KiB; a put
 * that finds no room at the end of the tail's segment leaves a mark there
 * (a header whose nrefs is NEXTSEG), links a new segment and writes its
 * record at that one's start. A get that finds the mark goes on to the next
 * segment and lets the one it left go. So a queue grows until the arena is
 * full, a segment at a time, with no copy and no doubling, whatever else the
 * arena holds; a segment that a get lets go of is kept as the spare for the
 * next link (a queue that streams does not allocate), and a backlog in more
 * than one segment makes the next segment twice as big (fewer links).
 *
 * Every change happens under the queue's lock and is made visible by one
 * 64-bit store: a put writes its record (and the mark, and the link) past
 * the tail, then stores the new tail; a get copies the record out, then
 * stores the new head. hseg and tseg, the segments of head and tail, change
 * after those stores, and the segment a put links is kept in fresh until
 * its store: a process killed anywhere in between is mended by the next
 * holder of the lock (repair: the segment of each position is found again,
 * a link that did not commit is undone, a segment left is let go). No half
 * message, none taken twice, and all but one dead consumer's message there.
 *
 * Waiting is outside the lock: getters sleep on put_seq, putters on get_seq,
 * counted (cc_futex_wait_counted), and a waker only makes the syscall while
 * somebody sleeps that no wake-up has reached: a consumer that runs ahead of
 * a just-woken producer does not pay a syscall per message. There is no
 * feeder thread: a put is in the queue when it returns.
 *
 * A message over INLINE_MAX goes in a block of its own, and its segment
 * holds a record that points at it (OUTLINE): one message goes as far as
 * the arena holds it.
 */

#define SEG_MIN (4u << 10)
#define SEG_MAX (256u << 10)
#define INLINE_MAX (64u << 10)
#define OUTLINE 0x80000000u /* in rec.nrefs: the refs and bytes are at `off` */
#define NEXTSEG 0xffffffffu /* rec.nrefs of the mark that ends a segment */

typedef struct rec {
  uint32_t len;
  uint32_t nrefs;
} rec;

typedef struct outrec {
  rec hd;       /* nrefs | OUTLINE */
  uint32_t off; /* a block: the refs, then the bytes */
  uint32_t pad;
} outrec;

static void queue_destroy(cc_obj *o);
static int ready(const cc_obj *o) { return cc_queue_qsize((cc_queue *)o) != 0; }

const cc_type cc_queue_type = {
    .name = "Queue", .size = sizeof(cc_queue), .destroy = queue_destroy, .ready = ready};
const cc_type cc_jqueue_type = {
    .name = "JoinableQueue", .size = sizeof(cc_queue), .destroy = queue_destroy, .ready = ready};
const cc_type cc_squeue_type = {
    .name = "SimpleQueue", .size = sizeof(cc_queue), .destroy = queue_destroy, .ready = ready};

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }
static size_t rec_size(size_t len, uint32_t nrefs) {
  return nrefs & OUTLINE ? sizeof(outrec) : pad8(sizeof(rec) + nrefs * sizeof(uint32_t) + len);
}

/* A message's refs and bytes in a block of their own (an OUTLINE record's).
 * 0 when the arena is full. */
static uint32_t outline_new(const cc_msg *m) {
  char *b = cc_arena_alloc(m->nrefs * sizeof(uint32_t) + m->len + 1);
  if (!b)
    return 0;
  if (m->nrefs)
    memcpy(b, m->refs, m->nrefs * sizeof(uint32_t));
  if (m->len)
    memcpy(b + m->nrefs * sizeof(uint32_t), m->data, m->len);
  return cc_arena_off(b);
}

static uint32_t pos(uint64_t v) { return (uint32_t)v; }
static uint32_t count(uint64_t v) { return (uint32_t)(v >> 32); }
static uint64_t pack(uint32_t n, uint32_t p) { return (uint64_t)n << 32 | p; }

static cc_qseg *seg(uint32_t off) { return cc_arena_ptr(off); }
static char *seg_start(cc_qseg *s) { return (char *)(s + 1); }
/* A record ends at most here: a mark still fits after it. */
static char *seg_room_end(cc_qseg *s) { return (char *)s + s->size - sizeof(rec); }
static int seg_holds(cc_qseg *s, uint32_t p) {
  return p >= cc_arena_pos(seg_start(s)) && p <= cc_arena_pos((char *)s + s->size);
}

/* A segment of at least `size` bytes (a power of two) with nothing linked
 * after it; NULL when the arena is full. */
static cc_qseg *seg_new(size_t size) {
  cc_qseg *s = cc_arena_alloc(size - 16); /* the arena's header makes it `size` */
  if (!s)
    return NULL;
  s->size = (uint32_t)cc_arena_block_size(s);
  atomic_init(&s->next, 0);
  return s;
}

/* The same, or a bigger one when the arena has no more of that size: the
 * blocks that an earlier backlog left are of the biggest. */
static cc_qseg *seg_new_at_least(size_t size) {
  cc_qseg *s = seg_new(size);
  for (size_t bigger = size * 2; !s && bigger <= SEG_MAX; bigger *= 2)
    s = seg_new(bigger);
  return s;
}

/* A segment the head left: kept as the spare (the bigger of two), or let
 * go. The spare is changed before a block is freed, so that a death in
 * between leaks a segment and never leaves a freed one in use. Lock held. */
static void retire(cc_queue *q, cc_qseg *s) {
  cc_qseg *old = seg(q->spare);
  if (old && old->size >= s->size) {
    cc_arena_free(s);
    return;
  }
  q->spare = cc_arena_off(s);
  cc_arena_free(old);
}

/* Mends what a holder of the lock that died left (see DESIGN). Lock held. */
static void repair(cc_queue *q) {
  cc_qseg *ts = seg(q->tseg);
  uint32_t t = pos(atomic_load(&q->tail));
  uint32_t after = atomic_load(&ts->next);
  if (!seg_holds(ts, t) && after && seg_holds(seg(after), t))
    q->tseg = after; /* a link committed */
  if (q->fresh && q->fresh != q->tseg) {
    /* A link that did not commit: its segment goes back. */
    if (atomic_load(&seg(q->tseg)->next) == q->fresh)
      atomic_store(&seg(q->tseg)->next, 0);
    if (q->fresh != q->spare)
      retire(q, seg(q->fresh));
  }
  q->fresh = 0;
  cc_qseg *hs = seg(q->hseg);
  uint32_t h = pos(atomic_load(&q->head));
  after = atomic_load(&hs->next);
  if (!seg_holds(hs, h) && after && seg_holds(seg(after), h)) {
    q->hseg = after; /* a get left hs */
    retire(q, hs);
  }
}

/* Links a segment after ts, whose room ends before a record of `need` bytes
 * at `at` would: a mark at `at`, the link, and fresh. The caller writes its
 * record at the new segment's start, then commits. NULL when the arena is
 * full. Lock held. */
static cc_qseg *link_seg(cc_queue *q, cc_qseg *ts, char *at, size_t need) {
  /* A backlog that spans segments makes the next one twice as big. */
  size_t want = q->hseg == q->tseg ? SEG_MIN : (size_t)ts->size * 2;
  if (want > SEG_MAX)
    want = SEG_MAX;
  while (want < need + sizeof(cc_qseg) + sizeof(rec) + 16)
    want *= 2;
  cc_qseg *n = seg(q->spare);
  if (n && (size_t)n->size + 16 >= want) {
    q->fresh = q->spare;
    q->spare = 0;
  } else if ((n = seg_new_at_least(want)) != NULL) {
    q->fresh = cc_arena_off(n);
  } else if ((n = seg(q->spare)) != NULL &&
             (size_t)n->size >= need + sizeof(cc_qseg) + sizeof(rec)) {
    q->fresh = q->spare; /* smaller than wanted, and all there is */
    q->spare = 0;
  } else {
    return NULL;
  }
  atomic_store(&n->next, 0);
  rec mark = {0, NEXTSEG};
  memcpy(at, &mark, sizeof mark);
  atomic_store(&ts->next, q->fresh);
  return n;
}

cc_queue *cc_queue_new(int kind, uint32_t maxsize) {
  const cc_type *t = kind == CC_QUEUE_JOINABLE ? &cc_jqueue_type
                     : kind == CC_QUEUE_SIMPLE ? &cc_squeue_type
                                               : &cc_queue_type;
  cc_queue *q = cc_obj_new(t);
  if (!q)
    return NULL;
  cc_qseg *s = seg_new(SEG_MIN);
  if (!s) {
    cc_arena_free(q);
    return NULL;
  }
  cc_lock_init(&q->lock, 0);
  q->hseg = q->tseg = cc_arena_off(s);
  q->fresh = q->spare = 0;
  atomic_store(&q->head, pack(0, cc_arena_pos(seg_start(s))));
  atomic_store(&q->tail, pack(0, cc_arena_pos(seg_start(s))));
  q->maxsize = maxsize;
  q->joinable = kind == CC_QUEUE_JOINABLE;
  return q;
}

/* The record at position p of segment *s, past a mark (which moves *s on). */
static char *record_at(cc_qseg **s, uint32_t p, rec *hd) {
  char *at = cc_arena_at(p);
  memcpy(hd, at, sizeof *hd);
  if (hd->nrefs == NEXTSEG) {
    *s = seg(atomic_load(&(*s)->next));
    at = seg_start(*s);
    memcpy(hd, at, sizeof *hd);
  }
  return at;
}

static void unref_record(char *at, const rec *hd) {
  if (hd->nrefs & OUTLINE) {
    outrec o;
    memcpy(&o, at, sizeof o);
    uint32_t *refs = cc_arena_ptr(o.off);
    cc_refs_unref(refs, hd->nrefs & ~OUTLINE);
    cc_arena_free(refs);
    return;
  }
  for (uint32_t i = 0; i < hd->nrefs; i++) {
    uint32_t off;
    memcpy(&off, at + sizeof *hd + i * sizeof off, sizeof off);
    cc_obj *o = cc_obj_from_off(off);
    if (o)
      cc_obj_unref(o);
  }
}

static void queue_destroy(cc_obj *o) {
  cc_queue *q = (cc_queue *)o;
  repair(q); /* in case the last holder of its lock died */
  uint64_t h = atomic_load(&q->head), t = atomic_load(&q->tail);
  cc_qseg *s = seg(q->hseg);
  for (uint32_t n = count(t) - count(h), p = pos(h); n > 0; n--) {
    rec hd;
    char *at = record_at(&s, p, &hd);
    unref_record(at, &hd);
    p = cc_arena_pos(at + rec_size(hd.len, hd.nrefs));
  }
  for (s = seg(q->hseg); s;) {
    cc_qseg *next = s == seg(q->tseg) ? NULL : seg(atomic_load(&s->next));
    cc_arena_free(s);
    s = next;
  }
  cc_arena_free(seg(q->spare));
}

static int lock(cc_queue *q, int64_t deadline) {
  int r = cc_lock_acquire(&q->lock, deadline);
  if (r == CC_EOWNERDEAD) {
    repair(q);
    return 0;
  }
  return r;
}

static void unlock(cc_queue *q) { cc_lock_release(&q->lock); }

static void bump(_Atomic uint32_t *seq, _Atomic uint32_t *sleepers) {
  atomic_fetch_add(seq, 1);
  cc_futex_wake_one(seq, sleepers);
}

static int put(cc_queue *q, const cc_msg *m, int64_t deadline, cc_waiting *w) {
  size_t need = rec_size(m->len, m->nrefs);
  /* A big message is copied into its own block before the lock. */
  uint32_t out = 0;
  if (need > INLINE_MAX) {
    if (m->nrefs >= OUTLINE || !(out = outline_new(m)))
      return CC_EARENAFULL;
    need = sizeof(outrec);
  }
  for (;;) {
    uint32_t seen = atomic_load(&q->get_seq);
    int r = lock(q, CC_FOREVER);
    if (r) {
      if (out)
        cc_arena_free(cc_arena_ptr(out));
      return r;
    }
    uint64_t h = atomic_load(&q->head), t = atomic_load(&q->tail);
    if (!q->maxsize || count(t) - count(h) < q->maxsize) {
      cc_qseg *ts = seg(q->tseg), *linked = NULL;
      char *at = cc_arena_at(pos(t));
      if (at + need > seg_room_end(ts)) {
        linked = link_seg(q, ts, at, need);
        if (!linked) {
          unlock(q);
          if (out)
            cc_arena_free(cc_arena_ptr(out)); /* its refs stay the caller's */
          return CC_EARENAFULL;
        }
        at = seg_start(linked);
      }
      if (out) {
        outrec o = {{(uint32_t)m->len, m->nrefs | OUTLINE}, out, 0};
        memcpy(at, &o, sizeof o);
      } else {
        rec hd = {(uint32_t)m->len, m->nrefs};
        memcpy(at, &hd, sizeof hd);
        if (m->nrefs)
          memcpy(at + sizeof hd, m->refs, m->nrefs * sizeof(uint32_t));
        if (m->len)
          memcpy(at + sizeof hd + m->nrefs * sizeof(uint32_t), m->data, m->len);
      }
      if (q->joinable)
        atomic_fetch_add(&q->unfinished, 1);
      atomic_store(&q->tail, pack(count(t) + 1, cc_arena_pos(at + need))); /* the commit */
      if (linked) {
        q->tseg = q->fresh;
        q->fresh = 0;
      }
      /* Said under the lock, so that the lengths come in their order. */
      if (CC_TRACING())
        cc__trace_event(CC_TRACE_PUT, &q->hdr, count(t) + 1 - count(atomic_load(&q->head)), 0,
                        NULL);
      unlock(q);
      bump(&q->put_seq, &q->get_waiters);
      cc_ready_ring();
      return 0;
    }
    unlock(q);
    /* The other side is often about to move: look before sleeping. */
    if (cc_spin_while(&q->get_seq, seen, deadline))
      continue;
    cc_wait_begin(w);
    r = cc_futex_wait_counted(&q->get_seq, seen, &q->put_waiters, deadline);
    if (r == CC_ETIMEDOUT || r == CC_EINTR || r == CC_EDEADLK) {
      if (out)
        cc_arena_free(cc_arena_ptr(out)); /* its refs stay the caller's */
      return r == CC_ETIMEDOUT ? CC_EFULL : r;
    }
  }
}

int cc_queue_put(cc_queue *q, const cc_msg *m, int64_t deadline) {
  cc_waiting w = {.kind = CC_WAIT_PUT, .obj = &q->hdr, .deadline = deadline};
  int r = put(q, m, deadline, &w);
  cc_wait_end(&w);
  return r;
}

static int get(cc_queue *q, cc_msg *m, int64_t deadline, cc_waiting *w) {
  for (;;) {
    uint32_t seen = atomic_load(&q->put_seq);
    int r = lock(q, CC_FOREVER);
    if (r)
      return r;
    uint64_t h = atomic_load(&q->head), t = atomic_load(&q->tail);
    if (count(t) != count(h)) {
      cc_qseg *hs = seg(q->hseg), *s = hs;
      rec hd;
      char *at = record_at(&s, pos(h), &hd);
      uint32_t nrefs = hd.nrefs & ~OUTLINE, out = 0;
      r = cc_msg_reserve(m, hd.len, nrefs);
      if (r) {
        unlock(q);
        return r;
      }
      const char *b = at + sizeof hd;
      if (hd.nrefs & OUTLINE) {
        outrec o;
        memcpy(&o, at, sizeof o);
        out = o.off;
        b = cc_arena_ptr(out);
      }
      if (nrefs)
        memcpy(m->refs, b, nrefs * sizeof(uint32_t));
      if (hd.len)
        memcpy(m->data, b + nrefs * sizeof(uint32_t), hd.len);
      m->len = hd.len;
      m->nrefs = nrefs;
      atomic_store(&q->head, pack(count(h) + 1, cc_arena_pos(at + rec_size(hd.len, hd.nrefs))));
      if (s != hs) {
        q->hseg = cc_arena_off(s);
        retire(q, hs);
      }
      if (CC_TRACING())
        cc__trace_event(CC_TRACE_GET, &q->hdr, count(atomic_load(&q->tail)) - count(h) - 1, 0,
                        NULL);
      unlock(q);
      if (out)
        cc_arena_free(cc_arena_ptr(out));
      bump(&q->get_seq, &q->put_waiters);
      return 0;
    }
    unlock(q);
    if (cc_spin_while(&q->put_seq, seen, deadline))
      continue;
    cc_wait_begin(w);
    r = cc_futex_wait_counted(&q->put_seq, seen, &q->get_waiters, deadline);
    if (r == CC_ETIMEDOUT)
      return CC_EEMPTY;
    if (r == CC_EINTR || r == CC_EDEADLK)
      return r;
  }
}

int cc_queue_get(cc_queue *q, cc_msg *m, int64_t deadline) {
  cc_waiting w = {.kind = CC_WAIT_GET, .obj = &q->hdr, .deadline = deadline};
  int r = get(q, m, deadline, &w);
  cc_wait_end(&w);
  return r;
}

uint32_t cc_queue_qsize(cc_queue *q) {
  return count(atomic_load(&q->tail)) - count(atomic_load(&q->head));
}

int cc_queue_task_done(cc_queue *q) {
  uint32_t v = atomic_load(&q->unfinished);
  do {
    if (v == 0)
      return CC_EVALUE;
  } while (!atomic_compare_exchange_weak(&q->unfinished, &v, v - 1));
  if (v == 1 && atomic_load(&q->join_waiters))
    cc_futex_wake(&q->unfinished, INT32_MAX);
  return 0;
}

int cc_queue_join(cc_queue *q, int64_t deadline) {
  cc_waiting w = {.kind = CC_WAIT_JOIN, .obj = &q->hdr, .deadline = deadline};
  int r = 0;
  for (;;) {
    uint32_t v = atomic_load(&q->unfinished);
    if (v == 0)
      break;
    cc_wait_begin(&w);
    atomic_fetch_add(&q->join_waiters, 1);
    r = cc_futex_wait(&q->unfinished, v, deadline);
    atomic_fetch_sub(&q->join_waiters, 1);
    if (r == CC_ETIMEDOUT || r == CC_EINTR || r == CC_EDEADLK) {
      r = atomic_load(&q->unfinished) == 0 ? 0 : r;
      break;
    }
    r = 0;
  }
  cc_wait_end(&w);
  return r;
}
