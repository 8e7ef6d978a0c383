/* proctab - the table of a run's processes and the objects each one holds */
#include "concur/proctab.h"
#include "concur/error.h"
#include "concur/fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The names of the last processes reaped, for messages about them that
 * come later (a lock's holder that died, found once it was reaped). */
#define GONE_MAX 64

typedef struct gone {
  _Atomic int32_t pid;
  char name[CC_PROC_NAME_MAX];
} gone;

typedef struct proctab {
  unsigned cap;
  _Atomic uint32_t gone_next;
  gone gone[GONE_MAX];
  cc_procent ent[];
} proctab;

typedef struct hold {
  uint32_t key; /* object offset; 0 = empty */
  uint32_t count;
} hold;

_Static_assert(sizeof(proctab) + (CC_MAX_PROCESSES + 1) * sizeof(cc_procent) <= CC__ARENA_RESERVED,
               "the table of limits.max_processes' maximum fits the arena's reserved room");

/* Threads: the table is set before any thread or fork; self_slot is this
 * process's (all its threads'), set in a new child before it runs any. */
static proctab *T;
static int self_slot;

int cc_proctab_init(unsigned max_processes) {
  size_t room;
  void *p = cc__arena_reserved(&room);
  unsigned cap = max_processes + 1;
  if (max_processes < 1 || sizeof(proctab) + cap * sizeof(cc_procent) > room)
    return CC_EVALUE;
  /* The reserved room is the new mapping's, zero, and taken once. */
  T = p;
  T->cap = cap;
  cc_procent *m = &T->ent[0];
  atomic_store(&m->state, CC_PS_RUNNING);
  atomic_store(&m->pid, getpid());
  m->ppid = getppid();
  atomic_store(&m->threads, 1);
  strcpy(m->name, "MainProcess");
  self_slot = 0;
  return 0;
}

unsigned cc_proctab_capacity(void) { return T ? T->cap : 0; }
cc_procent *cc_proctab_get(int slot) {
  return T && slot >= 0 && (unsigned)slot < T->cap ? &T->ent[slot] : NULL;
}
int cc_proctab_slot_of(const cc_procent *e) { return (int)(e - T->ent); }
int cc_proc_self_slot(void) { return self_slot; }
cc_procent *cc_proc_self(void) { return T ? &T->ent[self_slot] : NULL; }
void cc__proc_set_self(int slot) { self_slot = slot; }

void cc_proc_threads_add(int n) {
  if (T)
    atomic_fetch_add(&T->ent[self_slot].threads, (uint32_t)n);
}

void cc_proc_threads_end(void) {
  if (T)
    atomic_store(&T->ent[self_slot].threads, 0);
}

cc_procent *cc_proctab_find(int pid) {
  for (unsigned i = 0; T && i < T->cap; i++)
    if (atomic_load(&T->ent[i].state) != CC_PS_FREE &&
        atomic_load(&T->ent[i].pid) == pid)
      return &T->ent[i];
  return NULL;
}

int cc_proctab_name_of(int pid, char *buf, size_t n) {
  cc_procent *e = cc_proctab_find(pid);
  if (e) {
    snprintf(buf, n, "%s", e->name);
    return 1;
  }
  for (unsigned i = 0; T && pid > 0 && i < GONE_MAX; i++)
    if (atomic_load(&T->gone[i].pid) == pid) {
      snprintf(buf, n, "%s", T->gone[i].name);
      return atomic_load(&T->gone[i].pid) == pid; /* not rewritten meanwhile */
    }
  snprintf(buf, n, "a process");
  return 0;
}

unsigned cc_proctab_live(void) {
  unsigned n = 0;
  for (unsigned i = 0; T && i < T->cap; i++)
    n += atomic_load(&T->ent[i].state) != CC_PS_FREE;
  return n;
}

int cc_proctab_alloc(void) {
  for (unsigned i = 1; i < T->cap; i++) {
    uint32_t want = CC_PS_FREE;
    if (atomic_compare_exchange_strong(&T->ent[i].state, &want,
                                       CC_PS_STARTING)) {
      cc_procent *e = &T->ent[i];
      atomic_store(&e->pid, 0);
      e->ppid = 0;
      e->daemon = 0;
      e->holds = e->holds_cap = e->holds_len = 0;
      e->nchildren = 0;
      atomic_store(&e->threads, 1); /* a forked child's one */
      e->ident[0] = e->name[0] = '\0';
      return (int)i;
    }
  }
  return CC_ELIMIT;
}

void cc_proctab_free(int slot) {
  cc_procent *e = cc_proctab_get(slot);
  if (!e || slot == 0)
    return;
  gone *g = &T->gone[atomic_fetch_add(&T->gone_next, 1) % GONE_MAX];
  atomic_store(&g->pid, 0); /* while its name changes */
  memcpy(g->name, e->name, sizeof g->name);
  atomic_store(&g->pid, atomic_load(&e->pid));
  cc_holds_release(slot);
  atomic_store(&e->pid, 0);
  atomic_store(&e->state, CC_PS_FREE);
}

/* Hold tables: open addressing with linear probing, power-of-two sizes,
 * backward-shift deletion (no tombstones). */

static hold *table(const cc_procent *e) { return cc_arena_ptr(e->holds); }

static hold *lookup(const cc_procent *e, uint32_t key) {
  if (!e->holds)
    return NULL;
  hold *h = table(e);
  uint32_t mask = e->holds_cap - 1;
  for (uint32_t i = (key * 2654435761u) & mask;; i = (i + 1) & mask) {
    if (h[i].key == key)
      return &h[i];
    if (!h[i].key)
      return NULL;
  }
}

static void put(hold *h, uint32_t cap, uint32_t key, uint32_t count) {
  uint32_t mask = cap - 1;
  uint32_t i = (key * 2654435761u) & mask;
  while (h[i].key)
    i = (i + 1) & mask;
  h[i].key = key;
  h[i].count = count;
}

static int grow(cc_procent *e) {
  uint32_t cap = e->holds_cap ? e->holds_cap * 2 : 16;
  hold *nh = cc_arena_alloc(cap * sizeof(hold));
  if (!nh)
    return CC_EARENAFULL;
  memset(nh, 0, cap * sizeof(hold));
  hold *old = e->holds ? table(e) : NULL;
  for (uint32_t i = 0; old && i < e->holds_cap; i++)
    if (old[i].key)
      put(nh, cap, old[i].key, old[i].count);
  /* The new table first, then its size (a reaper reads both: a kill
   * between sees the new table at the old size, whose first half has no
   * key that is not the process's), then the old one goes: a kill before
   * that leaks it rather than leaving a table freed twice. */
  e->holds = cc_arena_off(nh);
  e->holds_cap = cap;
  CC_FAULT(HOLDS_GROWN);
  if (old)
    cc_arena_free(old);
  return 0;
}

static int add(cc_procent *e, cc_obj *o, int adopt, uint32_t count) {
  uint32_t key = cc_arena_off(o);
  hold *h = lookup(e, key);
  if (h) {
    h->count += count;
    if (adopt)
      cc_obj_unref(o);
    return 0;
  }
  if ((e->holds_len + 1) * 4 > e->holds_cap * 3) {
    int r = grow(e);
    if (r)
      return r;
  }
  /* The reference before its record: a kill between leaks it, where the
   * other order would have the reaper drop one never taken. */
  if (!adopt)
    cc_obj_ref(o);
  CC_FAULT(HOLD_TAKEN);
  put(table(e), e->holds_cap, key, count);
  e->holds_len++;
  return 0;
}

int cc_hold(cc_obj *o) { return add(cc_proc_self(), o, 0, 1); }
int cc_hold_adopt(cc_obj *o) { return add(cc_proc_self(), o, 1, 1); }

uint32_t cc_hold_count(const cc_obj *o) {
  hold *h = lookup(cc_proc_self(), cc_arena_off(o));
  return h ? h->count : 0;
}

void cc_unhold(cc_obj *o) {
  cc_procent *e = cc_proc_self();
  hold *h = lookup(e, cc_arena_off(o));
  if (!h)
    return;
  if (--h->count)
    return;
  /* Backward-shift deletion keeps every probe chain unbroken. */
  hold *t = table(e);
  uint32_t mask = e->holds_cap - 1;
  uint32_t i = (uint32_t)(h - t);
  for (uint32_t j = (i + 1) & mask; t[j].key; j = (j + 1) & mask) {
    uint32_t home = (t[j].key * 2654435761u) & mask;
    if (((j - home) & mask) >= ((j - i) & mask)) {
      t[i] = t[j];
      CC_FAULT(UNHOLD_SHIFTED);
      i = j;
    }
  }
  t[i].key = 0;
  t[i].count = 0;
  e->holds_len--;
  cc_obj_unref(o);
}

int cc_holds_copy(int from, int to) {
  cc_procent *f = cc_proctab_get(from), *t = cc_proctab_get(to);
  if (!f->holds)
    return 0;
  hold *h = table(f);
  for (uint32_t i = 0; i < f->holds_cap; i++) {
    if (!h[i].key)
      continue;
    int r = add(t, cc_arena_ptr(h[i].key), 0, h[i].count);
    if (r) {
      cc_holds_release(to);
      return r;
    }
  }
  return 0;
}

cc_obj *cc_holds_next(int slot, uint32_t *cursor) {
  cc_procent *e = cc_proctab_get(slot);
  if (!e)
    return NULL;
  uint32_t off = e->holds, cap = e->holds_cap;
  if (!off)
    return NULL;
  const hold *h = cc_arena_ptr(off);
  while (*cursor < cap) {
    uint32_t key = h[(*cursor)++].key;
    if (key && cc_arena_contains(cc_arena_ptr(key)))
      return cc_arena_ptr(key);
  }
  return NULL;
}

static int key_order(const void *a, const void *b) {
  uint32_t x = ((const hold *)a)->key, y = ((const hold *)b)->key;
  return (x > y) - (x < y);
}

void cc_holds_release(int slot) {
  cc_procent *e = cc_proctab_get(slot);
  if (!e || !e->holds)
    return;
  hold *h = table(e);
  uint32_t cap = e->holds_cap;
  e->holds = e->holds_cap = e->holds_len = 0;
  /* A process killed in the middle of a deletion's backward shift leaves
   * a key in two places: each object is dropped once. */
  qsort(h, cap, sizeof *h, key_order);
  for (uint32_t i = 0; i < cap; i++)
    if (h[i].key && (i == 0 || h[i].key != h[i - 1].key))
      cc_obj_unref(cc_arena_ptr(h[i].key));
  cc_arena_free(h);
}
