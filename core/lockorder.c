/* lockorder - the orders in which threads take locks; the deadlocks they could make */
#include "concur/lockorder.h"
#include "concur/sched.h"
#include "concur/arena.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/lock.h"
#include "concur/proctab.h"

#include <stdlib.h>
#include <string.h>

#define EDGES_MAX 512
#define LOCK_WORDS 72 /* a lock's description, cut */
#define WHERE_MAX 48
#define CYCLE_MAX 6
#define COLUMNS_MAX 3 /* a scenario wider would not fit 80 columns */

/* One pair "held, then wanted". key is written first, when the entry is
 * taken; ready last, when the rest is. */
typedef struct edge {
  _Atomic uint64_t key; /* from's identity << 32 | to's; 0: free */
  _Atomic uint32_t ready;
  int32_t pid;
  char from[LOCK_WORDS], to[LOCK_WORDS];
  char thread[CC_IDENT_NAME_MAX];
  char proc[CC_PROC_NAME_MAX];
  char where[WHERE_MAX];
} edge;

typedef struct table {
  _Atomic uint32_t full;  /* edges not written: no room */
  _Atomic uint32_t deep;  /* locks not put on a stack: too many held */
  edge e[EDGES_MAX];
} table;

_Static_assert(sizeof(table) <= 256 << 10, "the table is one arena block of 256 KiB");

/* Threads: T is set before any thread or fork and read after; the stack
 * is each thread's own. */
static table *T;
_Thread_local cc__lockorder_held cc__held;

int cc_lockorder_init(void) {
  T = cc_arena_zalloc(sizeof *T);
  return T ? 0 : CC_EARENAFULL;
}

void cc_lockorder_clear(void) {
  cc__held.n = 0;
  if (T)
    memset(T, 0, sizeof *T);
}

/* The object by which l's user knows it. */
static const cc_obj *known_by(const cc_lock *l) {
  return (const cc_obj *)((const char *)l - (l->known - 1));
}

/* l's identity in the graph: its object's type and serial (never 0). */
static uint32_t identity(const cc_lock *l) {
  const cc_obj *o = known_by(l);
  return (o->type & 0x3fu) << 26 | (o->id & 0x3ffffffu) | (o->id == 0);
}

static uint32_t hash(uint64_t key) {
  key ^= key >> 29;
  key *= 0xbf58476d1ce4e5b9ull;
  key ^= key >> 32;
  return (uint32_t)key;
}

/* Writes the edge from held to l, unless some thread did before. */
static void write_edge(const cc_lock *held, const cc_lock *l) {
  uint64_t key = (uint64_t)identity(held) << 32 | identity(l);
  uint32_t h = hash(key);
  for (uint32_t i = 0; i < EDGES_MAX; i++) {
    edge *e = &T->e[(h + i) % EDGES_MAX];
    uint64_t k = atomic_load_explicit(&e->key, memory_order_acquire);
    if (k == key)
      return;
    if (k != 0 || !atomic_compare_exchange_strong(&e->key, &k, key)) {
      if (k == key)
        return; /* another thread took this pair just now */
      continue;
    }
    char buf[CC_OBJ_NAME_MAX + 24];
    snprintf(e->from, sizeof e->from, "%s", cc_obj_describe(known_by(held), buf));
    snprintf(e->to, sizeof e->to, "%s", cc_obj_describe(known_by(l), buf));
    snprintf(e->thread, sizeof e->thread, "%s", cc_ident_name());
    cc_procent *p = cc_proc_self();
    snprintf(e->proc, sizeof e->proc, "%s", p ? p->name : "MainProcess");
    e->pid = cc_pid();
    cc_ident_where(e->where, sizeof e->where);
    atomic_store_explicit(&e->ready, 1, memory_order_release);
    return;
  }
  atomic_fetch_add(&T->full, 1);
}

/* Drops from the stack the locks the calling thread no longer holds
 * (released by another thread). */
static void prune(void) {
  uint32_t me = (uint32_t)cc_tid(), k = 0;
  for (uint32_t i = 0; i < cc__held.n; i++) {
    cc_lock *h = cc__held.l[i];
    if ((atomic_load_explicit(&h->word, memory_order_relaxed) & CC_LOCK_TID) == me) {
      cc__held.at[k] = cc__held.at[i];
      cc__held.l[k++] = h;
    }
  }
  cc__held.n = k;
}

void cc__lockorder_want(cc_lock *l) {
  if (!T)
    return;
  prune();
  for (uint32_t i = 0; i < cc__held.n; i++)
    if (cc__held.l[i] != l && identity(cc__held.l[i]) != identity(l))
      write_edge(cc__held.l[i], l);
}

void cc__lockorder_push(cc_lock *l, int want) {
  if (want)
    cc__lockorder_want(l);
  else
    prune();
  for (uint32_t i = 0; i < cc__held.n; i++)
    if (cc__held.l[i] == l)
      return; /* a Lock released by another thread, and taken again */
  if (cc__held.n == CC_LOCKORDER_HELD_MAX) {
    if (T)
      atomic_fetch_add(&T->deep, 1);
    return;
  }
  cc__held.l[cc__held.n++] = l;
}

void cc__lockorder_drop(cc_lock *l) {
  for (uint32_t i = cc__held.n; i-- > 0;) {
    if (cc__held.l[i] != l)
      continue;
    memmove(&cc__held.l[i], &cc__held.l[i + 1], (cc__held.n - i - 1) * sizeof *cc__held.l);
    memmove(&cc__held.at[i], &cc__held.at[i + 1], (cc__held.n - i - 1) * sizeof *cc__held.at);
    cc__held.n--;
    return;
  }
}

/* The report. The graph's nodes are identities; a cycle is found from its
 * lowest node, so that each is told once. */

typedef struct graph {
  edge *e[EDGES_MAX];
  int n;
} graph;

static uint32_t from_of(const edge *e) { return (uint32_t)(atomic_load(&e->key) >> 32); }
static uint32_t to_of(const edge *e) { return (uint32_t)atomic_load(&e->key); }

/* Who took an edge, for a column's head: a process's main thread by its
 * process's name. */
static void who(char *buf, size_t n, const edge *e) {
  if (!strcmp(e->thread, "MainThread"))
    snprintf(buf, n, "%s", e->proc);
  else
    snprintf(buf, n, "%s", e->thread);
}

/* One scenario line: text in column col of ncol. */
static void column_line(FILE *f, int col, int ncol, const char *text) {
  int width = 76 / ncol;
  fprintf(f, "    %*s%.*s\n", col * width, "", width - 2, text);
}

static void write_cycle(FILE *f, edge *const *c, int n) {
  fprintf(f, "concur: warning: lock order: ");
  for (int k = 0; k < n; k++)
    fprintf(f, "%s%s", k == 0 ? "" : k == n - 1 ? " and " : ", ", c[k]->from);
  fprintf(f, n == 2 ? " are taken in both orders" : " are taken in a circle");
  fprintf(f, "; run at once, these threads can wait for each other forever:\n");
  for (int k = 0; k < n; k++) {
    char name[CC_IDENT_NAME_MAX + CC_PROC_NAME_MAX + 8];
    if (!strcmp(c[k]->thread, "MainThread"))
      snprintf(name, sizeof name, "%s", c[k]->proc);
    else
      snprintf(name, sizeof name, "%s of %s", c[k]->thread, c[k]->proc);
    fprintf(f, "  %s (pid %d) takes %s while it holds %s", name, cc_sched_shown_pid((int)c[k]->pid), c[k]->to,
            c[k]->from);
    if (c[k]->where[0])
      fprintf(f, ", at %.*s", WHERE_MAX, c[k]->where);
    fprintf(f, "\n");
  }
  if (n > COLUMNS_MAX)
    return;
  fprintf(f, "\n");
  char line[128], heads[COLUMNS_MAX][64];
  for (int k = 0; k < n; k++) {
    who(heads[k], sizeof heads[k], c[k]);
    for (int j = 0; j < k; j++)
      if (!strcmp(heads[j], heads[k])) /* one thread in both orders */
        snprintf(heads[k] + strlen(heads[k]), sizeof heads[k] - strlen(heads[k]), " again");
  }
  int width = 76 / n;
  fprintf(f, "    ");
  for (int k = 0; k < n; k++)
    fprintf(f, "%-*.*s", k == n - 1 ? 0 : width, width - 2, heads[k]);
  fprintf(f, "\n    ");
  for (int k = 0; k < n; k++) {
    size_t len = strlen(heads[k]);
    memset(line, '-', len < sizeof line ? len : sizeof line - 1);
    line[len < sizeof line ? len : sizeof line - 1] = '\0';
    fprintf(f, "%-*.*s", k == n - 1 ? 0 : width, width - 2, line);
  }
  fprintf(f, "\n");
  for (int k = 0; k < n; k++) {
    snprintf(line, sizeof line, "holds %s", c[k]->from);
    column_line(f, k, n, line);
  }
  for (int k = 0; k < n; k++) {
    snprintf(line, sizeof line, "takes %s: waits", c[k]->to);
    column_line(f, k, n, line);
  }
}

/* Depth-first from path[0] through nodes above it; reports each cycle back
 * to it. Returns the cycles found. */
static int search(FILE *f, const graph *g, edge **path, int depth) {
  uint32_t start = from_of(path[0]), at = to_of(path[depth - 1]);
  if (at == start) {
    if (f)
      write_cycle(f, path, depth);
    return 1;
  }
  if (at < start || depth == CYCLE_MAX)
    return 0;
  for (int k = 0; k < depth; k++)
    if (from_of(path[k]) == at)
      return 0; /* a smaller cycle, found from its own lowest node */
  int found = 0;
  for (int i = 0; i < g->n; i++) {
    if (from_of(g->e[i]) != at)
      continue;
    path[depth] = g->e[i];
    found += search(f, g, path, depth + 1);
  }
  return found;
}

int cc_lockorder_report(FILE *f) {
  if (!T || !cc_arena_ready() || !cc_arena_contains(T))
    return 0; /* the arena was let go of (a test's end) */
  graph *g = malloc(sizeof *g);
  if (!g)
    return 0;
  g->n = 0;
  for (int i = 0; i < EDGES_MAX; i++)
    if (atomic_load(&T->e[i].key) && atomic_load_explicit(&T->e[i].ready, memory_order_acquire))
      g->e[g->n++] = &T->e[i];
  int found = 0;
  edge *path[CYCLE_MAX];
  for (int i = 0; i < g->n; i++) {
    if (to_of(g->e[i]) < from_of(g->e[i]))
      continue; /* a cycle through it starts at a lower node */
    path[0] = g->e[i];
    found += search(f, g, path, 1);
  }
  free(g);
  uint32_t full = atomic_load(&T->full), deep = atomic_load(&T->deep);
  if (f && full)
    fprintf(f, "concur: warning: lock order: %u orders of locks were not recorded (the table "
               "holds %d); a cycle among them is not reported\n", full, EDGES_MAX);
  if (f && deep)
    fprintf(f, "concur: warning: lock order: %u locks were taken with %d or more held and not "
               "recorded\n", deep, CC_LOCKORDER_HELD_MAX);
  if (f)
    fflush(f);
  return found;
}
