/* cond - Condition variables between processes and threads */
#include "concur/cond.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/wait.h"

enum { WAITING, NOTIFIED, TIMEDOUT };

typedef struct node {
  _Atomic uint32_t next; /* the next waiter's node, or 0 */
  _Atomic uint32_t state;
  _Atomic uint32_t sleepers; /* cc_futex_wait_counted's */
  cc_life alive; /* held by the waiter while it waits */
} node;

static node *at(uint32_t off) { return cc_arena_ptr(off); }

/* Frees a node: its waiter let go of its token, or died. */
static void node_free(node *n) {
  cc_life_fini(&n->alive);
  cc_arena_free(n);
}

/* Takes the node at *link off the list (one store); lock held. */
static void unlink_at(_Atomic uint32_t *link) {
  atomic_store(link, atomic_load(&at(atomic_load(link))->next));
}

/* The link that points at the node `off`, or NULL when it is not on. */
static _Atomic uint32_t *link_of(cc_cond *c, uint32_t off) {
  for (_Atomic uint32_t *l = &c->head; atomic_load(l); l = &at(atomic_load(l))->next)
    if (atomic_load(l) == off)
      return l;
  return NULL;
}

/* Takes the nodes nobody waits on off, from *link on, until a live one (or
 * the end): 1 when *link then points at a live node. Lock held. */
static int live_at(_Atomic uint32_t *link) {
  while (atomic_load(link)) {
    node *w = at(atomic_load(link));
    if (!cc_life_gone(&w->alive))
      return 1;
    unlink_at(link);
    node_free(w);
  }
  return 0;
}

static void cond_destroy(cc_obj *o) {
  cc_cond *c = (cc_cond *)o;
  cc_cond_fini(c);
  if (c->lock != &c->own)
    cc_obj_unref(&c->lock->hdr);
}

const cc_type cc_cond_type = {
    .name = "Condition", .size = sizeof(cc_cond), .destroy = cond_destroy};

void cc_cond_init(cc_cond *c) {
  cc_lock_init(&c->own, 1);
  c->lock = &c->own;
  atomic_init(&c->head, 0);
}

void cc_cond_fini(cc_cond *c) {
  /* Nodes left by waiters that died (nobody else can be waiting now). */
  for (uint32_t off = atomic_load(&c->head); off;) {
    node *n = at(off);
    off = atomic_load(&n->next);
    node_free(n);
  }
  atomic_store(&c->head, 0);
}

cc_cond *cc_cond_new(cc_lock *lock) {
  cc_cond *c = cc_obj_new(&cc_cond_type);
  if (!c)
    return NULL;
  cc_cond_init(c);
  cc_lock_set_known(&c->own, &c->hdr);
  if (lock) {
    cc_obj_ref(&lock->hdr);
    c->lock = lock;
  }
  return c;
}

static node *node_new(void) {
  node *n = cc_arena_alloc(sizeof *n);
  if (!n)
    return NULL;
  atomic_init(&n->next, 0);
  atomic_init(&n->state, WAITING);
  atomic_init(&n->sleepers, 0);
  cc_life_init(&n->alive);
  cc_life_claim(&n->alive); /* a new token is free */
  return n;
}

int cc_cond_wait(cc_cond *c, int64_t deadline) {
  if (!cc_lock_is_mine(c->lock))
    return CC_ENOTOWNER;
  node *n = node_new();
  if (!n)
    return CC_EARENAFULL;
  uint32_t off = cc_arena_off(n);
  _Atomic uint32_t *end = &c->head;
  while (atomic_load(end))
    end = &at(atomic_load(end))->next;
  atomic_store(end, off); /* on the list: notifies see it from here */
  uint32_t depth = cc__lock_release_all(c->lock);
  int r = 0;
  /* A notify often comes within microseconds (a ping-pong): looked for a
   * while before sleeping, as a wake-up on another core costs more. */
  cc_spin_while(&n->state, WAITING, deadline);
  cc_waiting w = {.kind = CC_WAIT_WAIT, .obj = &c->hdr, .deadline = deadline};
  cc_wait_begin(&w);
  while (atomic_load(&n->state) == WAITING) {
    r = cc_futex_wait_counted(&n->state, WAITING, &n->sleepers, deadline);
    if (r == CC_ETIMEDOUT || r == CC_EINTR || r == CC_EDEADLK)
      break;
  }
  cc_wait_end(&w);
  /* A notify that came with the deadline or the interrupt wins: it was
   * counted as a wake-up. */
  uint32_t s = WAITING;
  if (!atomic_compare_exchange_strong(&n->state, &s, TIMEDOUT))
    r = 0;
  int q = cc__lock_restore(c->lock, depth, CC_FOREVER);
  if (q != 0 && q != CC_EOWNERDEAD && q != CC_EINTR) {
    /* Without the lock (a deadlock): a node still on the list is given up
     * to the next notify, which finds its mutex free; one a notify took
     * off is nobody else's. */
    int on = atomic_load(&n->state) != NOTIFIED;
    cc_life_drop(&n->alive);
    if (!on)
      node_free(n);
    return q;
  }
  _Atomic uint32_t *link = link_of(c, off);
  if (link)
    unlink_at(link);
  cc_life_drop(&n->alive);
  node_free(n);
  return q == CC_EINTR ? CC_EINTR : r;
}

int cc_cond_notify(cc_cond *c, int n) {
  if (!cc_lock_is_mine(c->lock))
    return CC_ENOTOWNER;
  int woken = 0;
  _Atomic uint32_t *link = &c->head;
  while (woken < n && live_at(link)) {
    node *w = at(atomic_load(link));
    uint32_t s = WAITING;
    if (!atomic_compare_exchange_strong(&w->state, &s, NOTIFIED)) {
      link = &w->next; /* timed out: it takes itself off */
      continue;
    }
    unlink_at(link);
    cc_futex_wake_one(&w->state, &w->sleepers);
    woken++;
  }
  return woken;
}

int cc_cond_waiters(cc_cond *c) {
  int count = 0;
  for (_Atomic uint32_t *link = &c->head; live_at(link);) {
    node *w = at(atomic_load(link));
    count += atomic_load(&w->state) == WAITING;
    link = &w->next;
  }
  return count;
}
