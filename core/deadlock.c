/* deadlock - finds threads that wait forever for locks held by each other */
#include "concur/deadlock.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/proctab.h"
#include "concur/wait.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WAITERS_MAX 1024
#define WAITER_NAME 32
#define CYCLE_MAX 32

/* One long wait for a lock. tid is written last when the entry is taken
 * (-1 while it is being filled) and the lock first when it is left, so a
 * reader that sees a tid and a lock sees the rest of that wait. The arena
 * has one address everywhere, so its pointers mean the same to all. */
typedef struct waiter {
  _Atomic int32_t tid; /* 0: free */
  int32_t pid;
  _Atomic uintptr_t lock; /* the object waited for */
  uintptr_t owner;        /* its word that holds its owner's tid */
  _Atomic uint64_t seq;   /* which wait this is, unique in the run */
  char name[WAITER_NAME];
} waiter;

typedef struct table {
  _Atomic int32_t supervisor;
  _Atomic uint64_t next_seq;
  waiter w[WAITERS_MAX];
} table;

static table *D; /* threads: set before any thread or fork, read after */

/* The calling thread's long wait: its entry, the cycle it saw last and
 * since when, and whether it reported this wait's cycle already. Per
 * thread, as the waits are. */
static _Thread_local int slot = -1;
static _Thread_local uint64_t seen_sig;
static _Thread_local int64_t seen_since;
static _Thread_local int reported;
static _Thread_local char my_name[WAITER_NAME] = "MainThread";
static _Thread_local char report[2048];

int cc_deadlock_init(void) {
  D = cc_arena_alloc(sizeof *D);
  if (!D)
    return CC_EARENAFULL;
  memset(D, 0, sizeof *D);
  return 0;
}

void cc_deadlock_set_supervisor(int pid) {
  if (D)
    atomic_store(&D->supervisor, pid);
}

void cc_deadlock_set_name(const char *name) {
  snprintf(my_name, sizeof my_name, "%s", name);
}

const char *cc_deadlock_report(void) { return report; }

static int enter(const cc_obj *l, const _Atomic uint32_t *owner) {
  int32_t tid = cc_tid();
  unsigned h = (unsigned)tid % WAITERS_MAX;
  for (unsigned i = 0; i < WAITERS_MAX; i++) {
    unsigned k = (h + i) % WAITERS_MAX;
    waiter *w = &D->w[k];
    int32_t free_ = 0;
    if (atomic_load_explicit(&w->tid, memory_order_relaxed) != 0 ||
        !atomic_compare_exchange_strong(&w->tid, &free_, -1))
      continue;
    w->pid = cc_pid();
    memcpy(w->name, my_name, sizeof w->name);
    atomic_store(&w->seq, atomic_fetch_add(&D->next_seq, 1) + 1);
    w->owner = (uintptr_t)owner;
    atomic_store(&w->lock, (uintptr_t)l);
    atomic_store(&w->tid, tid);
    slot = (int)k;
    return 1;
  }
  return 0; /* the table is full: this wait goes unwatched */
}

void cc__deadlock_done(void) {
  if (slot < 0)
    return;
  waiter *w = &D->w[slot];
  atomic_store(&w->lock, 0);
  atomic_store(&w->tid, 0);
  slot = -1;
  seen_sig = 0;
  reported = 0;
}

/* The live entry of thread tid in a long wait, or NULL. A process killed
 * while it waited leaves its entries behind: a tid whose thread is gone
 * from its process is not waiting. */
static waiter *find(int32_t tid) {
  unsigned h = (unsigned)tid % WAITERS_MAX;
  for (unsigned i = 0; i < WAITERS_MAX; i++) {
    waiter *w = &D->w[(h + i) % WAITERS_MAX];
    if (atomic_load(&w->tid) == tid && atomic_load(&w->lock)) {
      char path[64];
      snprintf(path, sizeof path, "/proc/%d/task/%d", (int)w->pid, (int)tid);
      return access(path, F_OK) == 0 ? w : NULL;
    }
  }
  return NULL;
}

typedef struct member {
  int32_t tid, pid;
  uint64_t seq;
  const cc_obj *wants;
  char name[WAITER_NAME];
} member;

static void describe_lock(char *buf, size_t n, const cc_obj *l) {
  const cc_type *t = cc_type_get(l->type);
  char name[CC_OBJ_NAME_MAX + 24];
  if (t && l->id)
    snprintf(buf, n, "%s", cc_obj_describe(l, name));
  else
    snprintf(buf, n, "the lock of a shared object at %p", (const void *)l);
}

/* Writes the cycle in words into `report`: each member holds what the one
 * before it waits for. */
static void write_report(const member *m, int n) {
  size_t at = (size_t)snprintf(report, sizeof report,
                               "deadlock: %d threads wait for each other's locks, forever:", n);
  for (int k = 0; k < n && at < sizeof report; k++) {
    char holds[96], wants[96];
    describe_lock(holds, sizeof holds, m[(k + n - 1) % n].wants);
    describe_lock(wants, sizeof wants, m[k].wants);
    cc_procent *p = cc_proctab_find(m[k].pid);
    at += (size_t)snprintf(report + at, sizeof report - at,
                           "\n  %s of %s (pid %d) holds %s and waits for %s", m[k].name,
                           p ? p->name : "a process", (int)m[k].pid, holds, wants);
  }
}

static int forget(void) {
  seen_sig = 0;
  return 0;
}

int cc__deadlock_check(const cc_obj *l, const _Atomic uint32_t *owner_word, int64_t since) {
  if (!D)
    return 0;
  int64_t now = cc_now();
  if (now - since < CC_DEADLOCK_AFTER_NS)
    return 0;
  if (slot < 0) {
    enter(l, owner_word);
    return 0; /* the others may not be in the table yet: look next time */
  }
  /* Follow the chain: the lock's owner, the lock it waits for, ... */
  member m[CYCLE_MAX];
  int n = 0;
  int32_t me = cc_tid(), lowest = me;
  uint64_t sig = 14695981039346656037ull;
  waiter *w = &D->w[slot];
  for (;;) {
    const cc_obj *wants = (const cc_obj *)atomic_load(&w->lock);
    if (!wants || n == CYCLE_MAX)
      return forget();
    member *x = &m[n++];
    x->tid = atomic_load(&w->tid);
    x->pid = w->pid;
    x->seq = atomic_load(&w->seq);
    x->wants = wants;
    memcpy(x->name, w->name, sizeof x->name);
    x->name[WAITER_NAME - 1] = '\0';
    sig = (sig ^ x->seq) * 1099511628211ull;
    int32_t owner = (int32_t)(atomic_load((const _Atomic uint32_t *)w->owner) & CC_TID_MASK);
    if (owner == me)
      break;
    if (!owner)
      return forget(); /* free: somebody takes it now */
    for (int k = 1; k < n; k++)
      if (m[k].tid == owner)
        return forget(); /* a cycle that I only wait on: its own members report it */
    w = find(owner);
    if (!w)
      return forget(); /* the owner is not stuck: it may release */
    if (owner < lowest)
      lowest = owner;
  }
  /* A Lock waited for by its own holder may be released by another thread. */
  if (n < 2)
    return forget();
  if (sig != seen_sig) {
    seen_sig = sig;
    seen_since = now;
    return 0;
  }
  if (now - seen_since < CC_DEADLOCK_STABLE_NS || lowest != me || reported)
    return 0;
  reported = 1;
  write_report(m, n);
  int sup = atomic_load(&D->supervisor);
  if (sup <= 0)
    return CC_EDEADLK;
  /* What this process printed goes out before the run is killed; one
   * write, so that the lines of the report stay together. */
  fflush(stdout);
  char out[sizeof report + 64];
  int len = snprintf(out, sizeof out, "concur: %s\nconcur: the run ends (exit 3)\n", report);
  if (len > (int)sizeof out - 1)
    len = (int)sizeof out - 1;
  ssize_t wrote = write(STDERR_FILENO, out, (size_t)len);
  (void)wrote; /* if stderr is gone, the exit status still says it */
  kill(sup, SIGUSR1);
  return 0;
}
