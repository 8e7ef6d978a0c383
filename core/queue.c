/* queue - Queue, JoinableQueue and SimpleQueue: messages in a shared ring */
#include "concur/queue.h"
#include "concur/error.h"
#include "concur/wait.h"

#include <stdlib.h>
#include <string.h>

/*
 * DESIGN. A message is a record in the ring: a header {payload length,
 * number of refs}, the refs (arena offsets), the payload, padded to 8 bytes.
 * Every change happens under the queue's lock, and is made visible by one
 * 64-bit store: a put writes the record into free space, then stores the new
 * tail; a get copies the record out, then stores the new head. A process
 * killed in between leaves the ring as it was, and the lock's owner-death
 * recovery lets the next caller in: no half-written message, none taken
 * twice, and all but one dead consumer's message still there. Growing builds
 * a bigger ring, copies the records, and switches with one store.
 *
 * Waiting is outside the lock: getters sleep on put_seq, putters on get_seq,
 * counted (cc_futex_wait_counted), and a waker only makes the syscall while
 * somebody sleeps that no wake-up has reached: a consumer that runs ahead of
 * a just-woken producer does not pay a syscall per message. There is no
 * feeder thread: a put is in the queue when it returns.
 *
 * A message over INLINE_MAX goes in a block of its own, and the ring holds
 * a record that points at it (OUTLINE): a big message never makes the ring
 * double (a ring's block is twice its size, for the arena's header), so one
 * message goes as far as the arena holds it.
 */

#define MIN_CAP 4096u
#define MAX_CAP (1u << 30)
#define INLINE_MAX (64u << 10)
#define OUTLINE 0x80000000u /* in rec.nrefs: the refs and bytes are at `off` */

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

const cc_type cc_queue_type = {"Queue", sizeof(cc_queue), queue_destroy};
const cc_type cc_jqueue_type = {"JoinableQueue", sizeof(cc_queue), queue_destroy};
const cc_type cc_squeue_type = {"SimpleQueue", sizeof(cc_queue), queue_destroy};

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

static cc_ring *ring_of(cc_queue *q) { return cc_arena_ptr(atomic_load(&q->ring)); }
static char *bytes(cc_ring *r) { return cc_arena_ptr(r->buf); }
static uint32_t pos(uint64_t v) { return (uint32_t)v; }
static uint32_t count(uint64_t v) { return (uint32_t)(v >> 32); }
static uint64_t pack(uint32_t n, uint32_t p) { return (uint64_t)n << 32 | p; }

static void ring_write(cc_ring *r, uint32_t at, const void *src, size_t n) {
  if (!n)
    return;
  uint32_t i = at & (r->cap - 1);
  size_t first = r->cap - i < n ? r->cap - i : n;
  memcpy(bytes(r) + i, src, first);
  memcpy(bytes(r), (const char *)src + first, n - first);
}

static void ring_read(cc_ring *r, uint32_t at, void *dst, size_t n) {
  if (!n)
    return;
  uint32_t i = at & (r->cap - 1);
  size_t first = r->cap - i < n ? r->cap - i : n;
  memcpy(dst, bytes(r) + i, first);
  memcpy((char *)dst + first, bytes(r), n - first);
}

static cc_ring *ring_new(uint32_t cap) {
  cc_ring *r = cc_arena_alloc(sizeof *r);
  void *b = r ? cc_arena_alloc(cap) : NULL;
  if (!b) {
    cc_arena_free(r);
    return NULL;
  }
  r->buf = cc_arena_off(b);
  r->cap = cap;
  atomic_init(&r->head, 0);
  atomic_init(&r->tail, 0);
  return r;
}

static void ring_free(cc_ring *r) {
  cc_arena_free(bytes(r));
  cc_arena_free(r);
}

cc_queue *cc_queue_new(int kind, uint32_t maxsize) {
  const cc_type *t = kind == CC_QUEUE_JOINABLE ? &cc_jqueue_type
                     : kind == CC_QUEUE_SIMPLE ? &cc_squeue_type
                                               : &cc_queue_type;
  cc_queue *q = cc_obj_new(t);
  if (!q)
    return NULL;
  cc_ring *r = ring_new(MIN_CAP);
  if (!r) {
    cc_arena_free(q);
    return NULL;
  }
  cc_lock_init(&q->lock, 0);
  atomic_store(&q->ring, cc_arena_off(r));
  q->maxsize = maxsize;
  q->joinable = kind == CC_QUEUE_JOINABLE;
  return q;
}

/* Calls fn on every record between head and tail. */
static void each_record(cc_ring *r, void (*fn)(cc_ring *, uint32_t, const rec *, void *),
                        void *ud) {
  uint64_t h = atomic_load(&r->head), t = atomic_load(&r->tail);
  for (uint32_t p = pos(h); p != pos(t);) {
    rec hd;
    ring_read(r, p, &hd, sizeof hd);
    fn(r, p, &hd, ud);
    p += (uint32_t)rec_size(hd.len, hd.nrefs);
  }
}

static void unref_record(cc_ring *r, uint32_t p, const rec *hd, void *ud) {
  (void)ud;
  if (hd->nrefs & OUTLINE) {
    outrec o;
    ring_read(r, p, &o, sizeof o);
    uint32_t *refs = cc_arena_ptr(o.off);
    cc_refs_unref(refs, hd->nrefs & ~OUTLINE);
    cc_arena_free(refs);
    return;
  }
  for (uint32_t i = 0; i < hd->nrefs; i++) {
    uint32_t off;
    ring_read(r, p + (uint32_t)sizeof *hd + i * 4u, &off, sizeof off);
    cc_obj *o = cc_obj_from_off(off);
    if (o)
      cc_obj_unref(o);
  }
}

static void queue_destroy(cc_obj *o) {
  cc_queue *q = (cc_queue *)o;
  cc_ring *r = ring_of(q);
  each_record(r, unref_record, NULL);
  ring_free(r);
}

static void copy_record(cc_ring *from, uint32_t p, const rec *hd, void *ud) {
  cc_ring *to = ud;
  uint32_t n = (uint32_t)rec_size(hd->len, hd->nrefs);
  uint32_t at = pos(atomic_load(&to->tail));
  for (uint32_t done = 0; done < n;) {
    char chunk[256];
    uint32_t k = n - done < sizeof chunk ? n - done : (uint32_t)sizeof chunk;
    ring_read(from, p + done, chunk, k);
    ring_write(to, at + done, chunk, k);
    done += k;
  }
  atomic_store(&to->tail, pack(count(atomic_load(&to->tail)) + 1, at + n));
}

/* Replaces the ring by one with room for `need` more bytes. Lock held. */
static int grow(cc_queue *q, cc_ring *r, size_t need) {
  uint64_t h = atomic_load(&r->head), t = atomic_load(&r->tail);
  size_t used = pos(t) - pos(h);
  size_t cap = r->cap;
  while (cap - used < need) {
    if (cap >= MAX_CAP)
      return CC_EARENAFULL;
    cap *= 2;
  }
  cc_ring *n = ring_new((uint32_t)cap);
  if (!n)
    return CC_EARENAFULL;
  /* The counts carry over, so that qsize stays right. */
  atomic_store(&n->head, pack(count(h), 0));
  atomic_store(&n->tail, pack(count(h), 0));
  each_record(r, copy_record, n);
  atomic_store(&q->ring, cc_arena_off(n)); /* the commit */
  ring_free(r);
  return 0;
}

static int lock(cc_queue *q, int64_t deadline) {
  int r = cc_lock_acquire(&q->lock, deadline);
  return r == CC_EOWNERDEAD ? 0 : r;
}

static void unlock(cc_queue *q) { cc_lock_release(&q->lock); }

static void bump(_Atomic uint32_t *seq, _Atomic uint32_t *sleepers) {
  atomic_fetch_add(seq, 1);
  cc_futex_wake_one(seq, sleepers);
}

int cc_queue_put(cc_queue *q, const cc_msg *m, int64_t deadline) {
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
    cc_ring *ring = ring_of(q);
    uint64_t h = atomic_load(&ring->head), t = atomic_load(&ring->tail);
    if (!q->maxsize || count(t) - count(h) < q->maxsize) {
      if (ring->cap - (pos(t) - pos(h)) < need) {
        r = grow(q, ring, need);
        if (r) {
          unlock(q);
          if (out)
            cc_arena_free(cc_arena_ptr(out)); /* its refs stay the caller's */
          return r;
        }
        ring = ring_of(q);
        h = atomic_load(&ring->head);
        t = atomic_load(&ring->tail);
      }
      uint32_t at = pos(t);
      if (out) {
        outrec o = {{(uint32_t)m->len, m->nrefs | OUTLINE}, out, 0};
        ring_write(ring, at, &o, sizeof o);
      } else {
        rec hd = {(uint32_t)m->len, m->nrefs};
        ring_write(ring, at, &hd, sizeof hd);
        ring_write(ring, at + (uint32_t)sizeof hd, m->refs, m->nrefs * sizeof(uint32_t));
        ring_write(ring, at + (uint32_t)(sizeof hd + m->nrefs * sizeof(uint32_t)), m->data,
                   m->len);
      }
      if (q->joinable)
        atomic_fetch_add(&q->unfinished, 1);
      atomic_store(&ring->tail, pack(count(t) + 1, at + (uint32_t)need)); /* the commit */
      unlock(q);
      bump(&q->put_seq, &q->get_waiters);
      return 0;
    }
    unlock(q);
    /* The other side is often about to move: look before sleeping. */
    if (cc_spin_while(&q->get_seq, seen, deadline))
      continue;
    r = cc_futex_wait_counted(&q->get_seq, seen, &q->put_waiters, deadline);
    if (r == CC_ETIMEDOUT || r == CC_EINTR) {
      if (out)
        cc_arena_free(cc_arena_ptr(out)); /* its refs stay the caller's */
      return r == CC_ETIMEDOUT ? CC_EFULL : r;
    }
  }
}

int cc_queue_get(cc_queue *q, cc_msg *m, int64_t deadline) {
  for (;;) {
    uint32_t seen = atomic_load(&q->put_seq);
    int r = lock(q, CC_FOREVER);
    if (r)
      return r;
    cc_ring *ring = ring_of(q);
    uint64_t h = atomic_load(&ring->head), t = atomic_load(&ring->tail);
    if (count(t) != count(h)) {
      rec hd;
      uint32_t at = pos(h);
      ring_read(ring, at, &hd, sizeof hd);
      uint32_t nrefs = hd.nrefs & ~OUTLINE, out = 0;
      r = cc_msg_reserve(m, hd.len, nrefs);
      if (r) {
        unlock(q);
        return r;
      }
      if (hd.nrefs & OUTLINE) {
        outrec o;
        ring_read(ring, at, &o, sizeof o);
        out = o.off;
        const char *b = cc_arena_ptr(out);
        if (nrefs)
          memcpy(m->refs, b, nrefs * sizeof(uint32_t));
        if (hd.len)
          memcpy(m->data, b + nrefs * sizeof(uint32_t), hd.len);
      } else {
        ring_read(ring, at + (uint32_t)sizeof hd, m->refs, nrefs * sizeof(uint32_t));
        ring_read(ring, at + (uint32_t)(sizeof hd + nrefs * sizeof(uint32_t)), m->data,
                  hd.len);
      }
      m->len = hd.len;
      m->nrefs = nrefs;
      atomic_store(&ring->head,
                   pack(count(h) + 1, at + (uint32_t)rec_size(hd.len, hd.nrefs)));
      unlock(q);
      if (out)
        cc_arena_free(cc_arena_ptr(out));
      bump(&q->get_seq, &q->put_waiters);
      return 0;
    }
    unlock(q);
    if (cc_spin_while(&q->put_seq, seen, deadline))
      continue;
    r = cc_futex_wait_counted(&q->put_seq, seen, &q->get_waiters, deadline);
    if (r == CC_ETIMEDOUT)
      return CC_EEMPTY;
    if (r == CC_EINTR)
      return r;
  }
}

uint32_t cc_queue_qsize(cc_queue *q) {
  cc_ring *r = ring_of(q);
  return count(atomic_load(&r->tail)) - count(atomic_load(&r->head));
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
  for (;;) {
    uint32_t v = atomic_load(&q->unfinished);
    if (v == 0)
      return 0;
    atomic_fetch_add(&q->join_waiters, 1);
    int r = cc_futex_wait(&q->unfinished, v, deadline);
    atomic_fetch_sub(&q->join_waiters, 1);
    if (r == CC_ETIMEDOUT || r == CC_EINTR)
      return atomic_load(&q->unfinished) == 0 ? 0 : r;
  }
}
