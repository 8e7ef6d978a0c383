/* dict - Manager dicts, lists and Namespaces: encoded values in the arena */
#include "concur/dict.h"
#include "concur/error.h"
#include "concur/fault.h"
#include "concur/wait.h"

#include <stdlib.h>
#include <string.h>

/*
 * DESIGN. A table is one arena block: a header, an index of int32 slots
 * (open addressing over key hashes; -1 empty) and an array of entries in
 * insertion order {hash, key blob, value blob}. A deleted entry has key 0
 * and its slot stays as a tombstone. Replacing a value stores the new blob's
 * offset in one go; adding an entry writes it past `used`, then commits by
 * storing used + 1; growing or removing from the middle of a list builds a
 * new table and switches the container to it with one store. What follows
 * a commit (an index slot, the `live` count) is mended by the next holder
 * of the lock when the last one died (repair). Lists use the entries alone.
 * The CC_FAULT points are where tests kill a holder.
 */

typedef struct blob {
  uint32_t len;
  uint32_t nrefs;
  /* uint32_t refs[nrefs]; char data[len]; */
} blob;

typedef struct dent {
  uint32_t hash;
  _Atomic uint32_t key;
  _Atomic uint32_t val;
  uint32_t pad;
} dent;

typedef struct dtab {
  uint32_t cap;            /* index slots, a power of two (0 for lists) */
  uint32_t ecap;           /* room for entries */
  _Atomic uint32_t used;   /* entries written, deleted ones included */
  _Atomic uint32_t live;
} dtab;

static void dict_destroy(cc_obj *o);
static void free_orphans(cc_dict *d);

const cc_type cc_dict_type = {.name = "Dict", .size = sizeof(cc_dict), .destroy = dict_destroy};
const cc_type cc_list_type = {.name = "List", .size = sizeof(cc_dict), .destroy = dict_destroy};
const cc_type cc_namespace_type = {
    .name = "Namespace", .size = sizeof(cc_dict), .destroy = dict_destroy};

static int32_t *slots(dtab *t) { return (int32_t *)(t + 1); }
static dent *ents(dtab *t) { return (dent *)(slots(t) + t->cap); }
static dtab *tab(cc_dict *d) { return cc_arena_ptr(atomic_load(&d->table)); }

static uint32_t hash(const char *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)k[i]) * 16777619u;
  return h;
}

static dtab *tab_new(uint32_t cap, uint32_t ecap) {
  size_t size = sizeof(dtab) + cap * sizeof(int32_t) + ecap * sizeof(dent);
  dtab *t = cc_arena_alloc(size);
  if (!t)
    return NULL;
  memset(t, 0, size);
  t->cap = cap;
  t->ecap = ecap;
  atomic_init(&t->used, 0);
  atomic_init(&t->live, 0);
  for (uint32_t i = 0; i < cap; i++)
    slots(t)[i] = -1;
  return t;
}

/* Blobs: a message's bytes and refs in the arena (blob_pending). */
static uint32_t *blob_refs(blob *b) { return (uint32_t *)(b + 1); }
static char *blob_data(blob *b) { return (char *)(blob_refs(b) + b->nrefs); }

/* Frees a value blob and drops its references: the block first, so that a
 * death in between leaks references at worst, where the next holder, seeing
 * the block still there, would otherwise drop them twice. */
static void blob_drop(uint32_t off) {
  blob *b = cc_arena_ptr(off);
  if (!b)
    return;
  uint32_t n = b->nrefs, small[16], *refs = n <= 16 ? small : malloc(n * sizeof *refs);
  if (!refs) {
    cc_refs_unref(blob_refs(b), n); /* no room to copy them: the old order */
    cc_arena_free(b);
    return;
  }
  memcpy(refs, blob_refs(b), n * sizeof *refs);
  cc_arena_free(b);
  cc_refs_unref(refs, n);
  if (refs != small)
    free(refs);
}

/* Copies a blob out, taking a reference per object for the caller. */
static int blob_copy(uint32_t off, cc_msg *out) {
  blob *b = cc_arena_ptr(off);
  int r = cc_msg_reserve(out, b->len, b->nrefs);
  if (r)
    return r;
  if (b->len)
    memcpy(out->data, blob_data(b), b->len);
  out->len = b->len;
  for (uint32_t i = 0; i < b->nrefs; i++) {
    out->refs[i] = blob_refs(b)[i];
    cc_obj *o = cc_obj_from_off(out->refs[i]);
    if (o)
      cc_obj_ref(o);
  }
  out->nrefs = b->nrefs;
  return 0;
}

cc_dict *cc_dict_new(int kind) {
  const cc_type *t = kind == CC_LIST ? &cc_list_type
                     : kind == CC_NAMESPACE ? &cc_namespace_type
                                           : &cc_dict_type;
  cc_dict *d = cc_obj_new(t);
  if (!d)
    return NULL;
  dtab *tb = kind == CC_LIST ? tab_new(0, 8) : tab_new(16, 8);
  if (!tb) {
    cc_arena_free(d);
    return NULL;
  }
  /* Recursive: apply's function may read the same container. */
  cc_lock_init(&d->lock, 1);
  for (int i = 0; i < CC_DICT_PENDING; i++)
    atomic_init(&d->pending[i], 0);
  atomic_store(&d->table, cc_arena_off(tb));
  d->is_list = kind == CC_LIST;
  return d;
}

static void dict_destroy(cc_obj *o) {
  free_orphans((cc_dict *)o); /* a holder that died, and nobody since */
  dtab *t = tab((cc_dict *)o);
  dent *e = ents(t);
  int list = ((cc_dict *)o)->is_list;
  for (uint32_t i = 0; i < atomic_load(&t->used); i++) {
    if (!list) {
      uint32_t key = atomic_load(&e[i].key);
      if (!key)
        continue; /* deleted */
      cc_arena_free(cc_arena_ptr(key));
    }
    blob_drop(atomic_load(&e[i].val));
  }
  cc_arena_free(t);
}

static int32_t find(dtab *t, const char *k, size_t n, uint32_t h, uint32_t *slot);

/* The pending blocks (dict.h): a value made, a key made, an old value let
 * go, a table made, a table let go. */
enum { P_VAL, P_KEY, P_OLD, P_NEW_TAB, P_OLD_TAB };

/* Records off (with its generation, so that a block freed and made again
 * elsewhere since is never taken for it) or nothing (0). */
static uint32_t pend(cc_dict *d, int which, uint32_t off) {
  uint64_t gen = off ? cc_arena_gen(cc_arena_ptr(off)) : 0;
  /* A release is enough (a plain store on x86): the next holder reads it
   * after it takes the lock, and the commit that follows is a release too,
   * so it is never seen before this. */
  atomic_store_explicit(&d->pending[which], (uint64_t)off | gen << 32, memory_order_release);
  return off;
}

/* A pending block, if it is still the one recorded: 0 once it was freed
 * (and perhaps made again for another use). */
static uint32_t pending_at(cc_dict *d, int which) {
  uint64_t v = atomic_load(&d->pending[which]);
  uint32_t off = (uint32_t)v;
  return off && cc_arena_is_gen(cc_arena_ptr(off), (uint32_t)(v >> 32)) ? off : 0;
}

/* The operation is over (lock held): nothing of it is pending. */
static void settle(cc_dict *d) {
  for (int i = 0; i < CC_DICT_PENDING; i++)
    if (atomic_load_explicit(&d->pending[i], memory_order_relaxed))
      atomic_store_explicit(&d->pending[i], 0, memory_order_release);
}

/* True when off is a key or value of an entry of t (a deleted entry of a
 * dict, key 0, keeps its old value's offset: not one of them). */
static int referenced(cc_dict *d, dtab *t, uint32_t off) {
  for (uint32_t i = 0; i < atomic_load(&t->used); i++) {
    uint32_t key = atomic_load(&ents(t)[i].key);
    if ((d->is_list || key) && (key == off || atomic_load(&ents(t)[i].val) == off))
      return 1;
  }
  return 0;
}

static void blob_drop(uint32_t off);

/* Frees what a dead holder's operation had made or was letting go of and
 * the table does not have (lock held, after the table is mended). */
static void free_orphans(cc_dict *d) {
  dtab *t = tab(d);
  uint32_t cur = atomic_load(&d->table);
  for (int i = P_NEW_TAB; i <= P_OLD_TAB; i++) {
    uint32_t off = pending_at(d, i);
    if (off && off != cur)
      cc_arena_free(cc_arena_ptr(off)); /* its blobs are the current table's */
  }
  for (int i = P_VAL; i <= P_OLD; i++) {
    uint32_t off = pending_at(d, i);
    if (!off || referenced(d, t, off))
      continue;
    if (i == P_KEY)
      cc_arena_free(cc_arena_ptr(off));
    else
      blob_drop(off); /* the dead caller's references with it */
  }
  settle(d);
}

/* Mends what a holder killed in the middle of an operation left; lock held.
 * Each operation commits with one store, but what follows the commit may be
 * missing: an added entry counted in `used` whose index slot was not yet
 * stored (only the last one can be so; it is whole, so it is kept), and
 * `live`, which is counted again. Blocks the dead holder had allocated and
 * not yet linked are lost to the arena. */
static void repair(cc_dict *d) {
  dtab *t = tab(d);
  uint32_t used = atomic_load(&t->used), live = 0;
  if (d->is_list) {
    atomic_store(&t->live, used);
    free_orphans(d);
    return;
  }
  if (used > 0) {
    dent *e = &ents(t)[used - 1];
    uint32_t key = atomic_load(&e->key), slot;
    if (key) {
      blob *kb = cc_arena_ptr(key);
      if (find(t, blob_data(kb), kb->len, e->hash, &slot) < 0 && slot != UINT32_MAX)
        slots(t)[slot] = (int32_t)(used - 1);
    }
  }
  for (uint32_t i = 0; i < used; i++)
    live += atomic_load(&ents(t)[i].key) != 0;
  atomic_store(&t->live, live);
  free_orphans(d);
}

/* 0 with the lock held (also from a holder that died, after mending what it
 * left), or the wait's error (CC_EINTR, CC_EDEADLK) without it. */
static int lock(cc_dict *d) {
  int r = cc_lock_acquire(&d->lock, CC_FOREVER);
  if (r == CC_EOWNERDEAD) {
    repair(d);
    r = 0;
  }
  return r;
}

static void unlock(cc_dict *d) { cc_lock_release(&d->lock); }

int cc_dict_len(cc_dict *d, uint32_t *n) {
  int r = lock(d);
  if (r)
    return r;
  *n = atomic_load(&tab(d)->live);
  unlock(d);
  return 0;
}

/* The entry of a key, or -1; *slot gets the slot where it is or would go. */
static int32_t find(dtab *t, const char *k, size_t n, uint32_t h, uint32_t *slot) {
  uint32_t mask = t->cap - 1, free_slot = UINT32_MAX;
  for (uint32_t i = h & mask, probes = 0; probes < t->cap; i = (i + 1) & mask, probes++) {
    int32_t s = slots(t)[i];
    if (s < 0) {
      *slot = free_slot != UINT32_MAX ? free_slot : i;
      return -1;
    }
    dent *e = &ents(t)[s];
    uint32_t key = atomic_load(&e->key);
    if (!key) {
      if (free_slot == UINT32_MAX)
        free_slot = i; /* a tombstone may be reused */
      continue;
    }
    blob *kb = cc_arena_ptr(key);
    if (e->hash == h && kb->len == n && memcmp(blob_data(kb), k, n) == 0) {
      *slot = i;
      return s;
    }
  }
  *slot = free_slot;
  return -1;
}

/* A copy of t with room for `extra` more entries, live entries compacted
 * (or, for lists, every entry but `skip`, with a gap left at `gap`). */
static dtab *rebuild(cc_dict *d, dtab *t, uint32_t extra, uint32_t skip, uint32_t gap) {
  uint32_t live = atomic_load(&t->live);
  uint32_t ecap = 8;
  while (ecap < live + extra)
    ecap *= 2;
  uint32_t cap = 0;
  if (!d->is_list) {
    cap = 16;
    while (cap * 2 < ecap * 3)
      cap *= 2;
  }
  dtab *n = tab_new(cap, ecap);
  if (!n)
    return NULL;
  pend(d, P_NEW_TAB, cc_arena_off(n));
  uint32_t j = 0;
  for (uint32_t i = 0; i < atomic_load(&t->used); i++) {
    dent *e = &ents(t)[i];
    if (d->is_list) {
      if (i == skip)
        continue;
      if (j == gap)
        j++;
    } else if (!atomic_load(&e->key)) {
      continue;
    }
    dent *f = &ents(n)[j];
    f->hash = e->hash;
    atomic_store(&f->key, atomic_load(&e->key));
    atomic_store(&f->val, atomic_load(&e->val));
    if (!d->is_list) {
      uint32_t slot;
      blob *kb = cc_arena_ptr(f->key);
      find(n, blob_data(kb), kb->len, f->hash, &slot);
      slots(n)[slot] = (int32_t)j;
    }
    j++;
  }
  atomic_store(&n->used, j);
  atomic_store(&n->live, j);
  return n;
}

/* Makes n the container's table in place of t, whose block goes (lock
 * held; n was pended as P_NEW_TAB when made). */
static void switch_table(cc_dict *d, dtab *t, dtab *n) {
  pend(d, P_OLD_TAB, cc_arena_off(t));
  atomic_store(&d->table, cc_arena_off(n)); /* the commit */
  CC_FAULT(DICT_GROWN);
  pend(d, P_NEW_TAB, 0);
  cc_arena_free(t);
  pend(d, P_OLD_TAB, 0);
}

/* A new blob of bytes and refs, pending as `which` from the moment it is
 * made, before its bytes are copied (lock held). 0 when the arena is full. */
static uint32_t blob_pending(cc_dict *d, int which, const char *data, size_t len,
                             const uint32_t *refs, uint32_t nrefs) {
  blob *b = cc_arena_alloc(sizeof *b + nrefs * sizeof(uint32_t) + len);
  if (!b)
    return 0;
  pend(d, which, cc_arena_off(b));
  b->len = (uint32_t)len;
  b->nrefs = nrefs;
  if (nrefs)
    memcpy(b + 1, refs, nrefs * sizeof(uint32_t));
  if (len)
    memcpy((char *)(b + 1) + nrefs * sizeof(uint32_t), data, len);
  return cc_arena_off(b);
}

static uint32_t value_new(cc_dict *d, const cc_msg *val) {
  return blob_pending(d, P_VAL, val->data, val->len, val->refs, val->nrefs);
}

/* Takes the blob `off` (pending as P_OLD, out of the table) into out, or
 * drops it; pending until it is freed (a generation tells, after, that it
 * is not the block recorded any more). */
static int take_old(cc_dict *d, uint32_t off, cc_msg *out) {
  int r = out ? blob_copy(off, out) : 0;
  blob_drop(off);
  pend(d, P_OLD, 0);
  return r;
}

/* Takes the lock and finds key: *i gets its entry or -1, *t the table.
 * 0, or lock's error without the lock. */
static int locate(cc_dict *d, const char *key, size_t klen, dtab **t, int32_t *i) {
  uint32_t slot;
  if (d->is_list)
    return CC_EVALUE; /* a list has no index of keys */
  int r = lock(d);
  if (r)
    return r;
  *t = tab(d);
  *i = find(*t, key, klen, hash(key, klen), &slot);
  return 0;
}

int cc_dict_get(cc_dict *d, const char *key, size_t klen, cc_msg *out) {
  dtab *t;
  int32_t i;
  int r = locate(d, key, klen, &t, &i);
  if (r)
    return r;
  r = i < 0 ? CC_EEMPTY : blob_copy(atomic_load(&ents(t)[i].val), out);
  unlock(d);
  return r;
}

/* Sets key to a new value blob; lock held. */
static int put(cc_dict *d, const char *key, size_t klen, uint32_t vb) {
  uint32_t h = hash(key, klen), slot;
  dtab *t = tab(d);
  int32_t i = find(t, key, klen, h, &slot);
  if (i >= 0) {
    uint32_t old = pend(d, P_OLD, atomic_load(&ents(t)[i].val));
    atomic_store(&ents(t)[i].val, vb); /* the commit */
    CC_FAULT(DICT_SET_SWAPPED);
    blob_drop(old); /* pending until freed: a death here is mended */
    settle(d);
    return 0;
  }
  uint32_t used = atomic_load(&t->used);
  if (used + 1 > t->ecap || slot == UINT32_MAX || (used + 1) * 3 > t->cap * 2) {
    dtab *n = rebuild(d, t, 1, UINT32_MAX, UINT32_MAX);
    if (!n)
      return CC_EARENAFULL;
    switch_table(d, t, n);
    t = n;
    find(t, key, klen, h, &slot);
    used = atomic_load(&t->used);
  }
  uint32_t kb = blob_pending(d, P_KEY, key, klen, NULL, 0);
  if (!kb)
    return CC_EARENAFULL;
  dent *e = &ents(t)[used];
  e->hash = h;
  atomic_store(&e->val, vb);
  atomic_store(&e->key, kb);
  atomic_store(&t->used, used + 1); /* the commit */
  CC_FAULT(DICT_ADD_COUNTED);
  slots(t)[slot] = (int32_t)used; /* now it can be found */
  CC_FAULT(DICT_ADD_INDEXED);
  atomic_fetch_add(&t->live, 1);
  settle(d);
  return 0;
}

int cc_dict_set(cc_dict *d, const char *key, size_t klen, const cc_msg *val) {
  if (d->is_list)
    return CC_EVALUE;
  int r = lock(d);
  if (r)
    return r;
  uint32_t vb = value_new(d, val);
  CC_FAULT(DICT_VALUE_MADE);
  r = vb ? put(d, key, klen, vb) : CC_EARENAFULL;
  if (r) {
    if (vb)
      cc_arena_free(cc_arena_ptr(vb)); /* its refs stay the caller's */
    settle(d);
  }
  unlock(d);
  return r;
}

int cc_dict_del(cc_dict *d, const char *key, size_t klen, cc_msg *out) {
  dtab *t;
  int32_t i;
  int r = locate(d, key, klen, &t, &i);
  if (r)
    return r;
  if (i < 0) {
    unlock(d);
    return CC_EEMPTY;
  }
  dent *e = &ents(t)[i];
  uint32_t kb = pend(d, P_KEY, atomic_load(&e->key));
  uint32_t vb = pend(d, P_OLD, atomic_load(&e->val));
  atomic_store(&e->key, 0); /* the commit */
  CC_FAULT(DICT_DEL_UNKEYED);
  atomic_fetch_sub(&t->live, 1);
  /* Out of the table: its value is taken under the lock, so that no death
   * leaves it nobody's. */
  cc_arena_free(cc_arena_ptr(kb));
  pend(d, P_KEY, 0);
  r = take_old(d, vb, out);
  settle(d);
  unlock(d);
  return r;
}

int cc_dict_update(cc_dict *d, const char *key, size_t klen, cc_dict_fn fn, void *ud) {
  cc_msg old = {0}, val = {0};
  dtab *t;
  int32_t i;
  int r = locate(d, key, klen, &t, &i);
  if (r)
    return r;
  r = i >= 0 ? blob_copy(atomic_load(&ents(t)[i].val), &old) : 0;
  if (!r)
    r = fn(ud, i >= 0 ? &old : NULL, &val);
  if (!r) {
    uint32_t vb = value_new(d, &val);
    r = vb ? put(d, key, klen, vb) : CC_EARENAFULL;
    if (r) {
      if (vb)
        cc_arena_free(cc_arena_ptr(vb));
      settle(d);
    }
  }
  unlock(d);
  if (r)
    cc_msg_unref(&val);
  cc_msg_free(&old); /* its references went to fn */
  cc_msg_free(&val);
  return r;
}

int cc_list_get(cc_dict *d, uint32_t i, cc_msg *out) {
  if (!d->is_list)
    return CC_EVALUE; /* a dict's entries have keys */
  int r = lock(d);
  if (r)
    return r;
  dtab *t = tab(d);
  r = i < atomic_load(&t->used) ? blob_copy(atomic_load(&ents(t)[i].val), out) : CC_EEMPTY;
  unlock(d);
  return r;
}

int cc_list_set(cc_dict *d, uint32_t i, const cc_msg *val) {
  if (!d->is_list)
    return CC_EVALUE; /* a dict's entries have keys */
  int r = lock(d);
  if (r)
    return r;
  dtab *t = tab(d);
  if (i >= atomic_load(&t->used)) {
    unlock(d);
    return CC_EEMPTY;
  }
  uint32_t vb = value_new(d, val);
  if (!vb) {
    unlock(d);
    return CC_EARENAFULL;
  }
  uint32_t old = pend(d, P_OLD, atomic_load(&ents(t)[i].val));
  atomic_store(&ents(t)[i].val, vb); /* the commit */
  blob_drop(old);
  settle(d);
  unlock(d);
  return 0;
}

int cc_list_insert(cc_dict *d, uint32_t i, const cc_msg *val) {
  if (!d->is_list)
    return CC_EVALUE; /* a dict's entries have keys */
  int r = lock(d);
  if (r)
    return r;
  dtab *t = tab(d);
  uint32_t used = atomic_load(&t->used);
  if (i == CC_LIST_END)
    i = used; /* an append, decided under the lock */
  if (i > used) {
    unlock(d);
    return CC_EEMPTY;
  }
  uint32_t vb = value_new(d, val);
  if (!vb) {
    r = CC_EARENAFULL;
  } else if (i == used && used < t->ecap) {
    atomic_store(&ents(t)[used].val, vb);
    atomic_store(&t->live, used + 1);
    CC_FAULT(LIST_APPEND_LIVE);
    atomic_store(&t->used, used + 1); /* the commit */
  } else {
    dtab *n = rebuild(d, t, 1, UINT32_MAX, i);
    if (!n) {
      r = CC_EARENAFULL;
    } else {
      atomic_store(&ents(n)[i].val, vb);
      atomic_store(&n->used, used + 1);
      atomic_store(&n->live, used + 1);
      switch_table(d, t, n);
    }
  }
  if (r && vb)
    cc_arena_free(cc_arena_ptr(vb));
  settle(d);
  unlock(d);
  return r;
}

int cc_list_pop(cc_dict *d, uint32_t i, cc_msg *out) {
  if (!d->is_list)
    return CC_EVALUE; /* a dict's entries have keys */
  int r = lock(d);
  if (r)
    return r;
  dtab *t = tab(d);
  uint32_t used = atomic_load(&t->used);
  if (i >= used) {
    unlock(d);
    return CC_EEMPTY;
  }
  uint32_t vb = pend(d, P_OLD, atomic_load(&ents(t)[i].val));
  if (i + 1 == used) {
    atomic_store(&t->used, used - 1); /* the commit */
    CC_FAULT(LIST_POP_USED);
    atomic_store(&t->live, used - 1);
  } else {
    dtab *n = rebuild(d, t, 0, i, UINT32_MAX);
    if (!n) {
      settle(d);
      unlock(d);
      return CC_EARENAFULL;
    }
    switch_table(d, t, n);
  }
  /* Taken under the lock, so that no death leaves it nobody's. */
  r = take_old(d, vb, out);
  settle(d);
  unlock(d);
  return r;
}

int cc_dict_snapshot(cc_dict *d, cc_snapshot *s) {
  memset(s, 0, sizeof *s);
  int r = lock(d);
  if (r)
    return r;
  dtab *t = tab(d);
  uint32_t live = atomic_load(&t->live), used = atomic_load(&t->used);
  s->vals = calloc(live ? live : 1, sizeof *s->vals);
  s->keys = d->is_list ? NULL : calloc(live ? live : 1, sizeof *s->keys);
  r = s->vals && (d->is_list || s->keys) ? 0 : CC_ENOMEM;
  for (uint32_t i = 0; !r && i < used && s->n < live; i++) {
    dent *e = &ents(t)[i];
    if (!d->is_list) {
      uint32_t key = atomic_load(&e->key);
      if (!key)
        continue;
      r = blob_copy(key, &s->keys[s->n]);
    }
    if (!r)
      r = blob_copy(atomic_load(&e->val), &s->vals[s->n]);
    if (!r)
      s->n++;
    else if (s->keys)
      cc_msg_free(&s->keys[s->n]); /* a key copied whose value was not */
    if (r)
      cc_msg_free(&s->vals[s->n]);
  }
  unlock(d);
  if (r)
    cc_dict_snapshot_free(s);
  return r;
}

void cc_dict_snapshot_free(cc_snapshot *s) {
  for (uint32_t i = 0; i < s->n; i++) {
    if (s->keys)
      cc_msg_free(&s->keys[i]);
    cc_msg_unref(&s->vals[i]);
    cc_msg_free(&s->vals[i]);
  }
  free(s->keys);
  free(s->vals);
  memset(s, 0, sizeof *s);
}
