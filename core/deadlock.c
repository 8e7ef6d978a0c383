/* deadlock - what every thread of a run holds and waits for; waits that cannot end */
#include "concur/deadlock.h"
#include "concur/sched.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/proctab.h"
#include "concur/wait.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define PARTIES_MAX 1024
#define PARTY_NAME 32
#define WHERE_MAX 48
#define CYCLE_MAX 32
#define REPORT_LINES 40

/* One thread of the run. tid is written last when the entry is taken (-1
 * while it is filled); a wait's seq last when it is written and first when
 * it ends, so that a reader that sees a seq before and after its reads read
 * that wait. The arena has one address everywhere, so its pointers mean
 * the same to all. Only the thread writes its entry, but for the marks. */
typedef struct party {
  _Atomic int32_t tid; /* 0: free */
  int32_t pid;
  int32_t slot; /* its process's, in the process table */
  int32_t rank; /* who comes first in a report: see rank_of */
  char name[PARTY_NAME];
  _Atomic uint64_t seq; /* its long wait with no deadline; 0: none */
  uintptr_t obj;        /* the cc_obj waited on, or 0 */
  uintptr_t owner;      /* a lock's owner word, or 0 */
  int kind;
  int32_t target; /* a join's tid, or 0 */
  _Atomic uint32_t sleeps;
  /* A finder's marks: the wait it saw and its sleeps then. */
  _Atomic uint32_t mark;
  _Atomic uint64_t mark_seq;
  char label[PARTY_NAME];
  char where[WHERE_MAX];
} party;

typedef struct table {
  _Atomic int32_t supervisor;
  _Atomic uint32_t high; /* entries beyond are never taken */
  _Atomic uint64_t next_seq;
  party p[PARTIES_MAX];
} table;

_Static_assert(sizeof(table) <= 256 << 10, "the table is one arena block of 256 KiB");

/* Threads: D and the hook are set before any thread or fork, read after;
 * the rest is each thread's own. */
static table *D;
static _Thread_local party *me;
static _Thread_local const cc_waiting *recorded; /* the wait written in me */
static _Thread_local int reported;
static _Thread_local char report[8192];

const char *cc_deadlock_report(void) { return report; }

void cc_deadlock_set_supervisor(int pid) {
  if (D)
    atomic_store(&D->supervisor, pid);
}

/* A thread's place in the order of reports: its tid, but under the
 * scheduler its task number first, so that the thread that reports a
 * deadlock, the member its cycle starts from and the order of a list are
 * the same in every run (tids are the kernel's, and wrap). */
static int32_t rank_of(int32_t tid) {
  int task = cc_sched_task();
  return task >= 0 ? task : CC_SCHED_TASKS + tid;
}

/* The calling thread's entry, taken at its first need; NULL when the table
 * is full (the thread goes unwatched, and the run is never all asleep). */
static party *mine(void) {
  if (me || !D)
    return me;
  int32_t tid = cc_tid();
  unsigned h = (unsigned)tid % PARTIES_MAX;
  for (unsigned i = 0; i < PARTIES_MAX; i++) {
    unsigned k = (h + i) % PARTIES_MAX;
    party *p = &D->p[k];
    int32_t free_ = 0;
    if (atomic_load_explicit(&p->tid, memory_order_relaxed) != 0 ||
        !atomic_compare_exchange_strong(&p->tid, &free_, -1))
      continue;
    p->pid = cc_pid();
    p->slot = cc_proc_self_slot();
    p->rank = rank_of(tid);
    atomic_store(&p->seq, 0);
    atomic_store(&p->sleeps, 0);
    atomic_store(&p->mark_seq, 0);
    uint32_t hi = atomic_load(&D->high);
    while (hi < k + 1 && !atomic_compare_exchange_weak(&D->high, &hi, k + 1))
      ;
    atomic_store(&p->tid, tid);
    me = p;
    return p;
  }
  return NULL;
}

static void leave(party *p) {
  atomic_store(&p->seq, 0);
  atomic_store(&p->tid, 0);
}

void cc_deadlock_thread_end(void) {
  if (me)
    leave(me);
  me = NULL;
  recorded = NULL;
}

void cc__deadlock_forget_pid(int pid) {
  if (!D || pid <= 0)
    return;
  uint32_t hi = atomic_load(&D->high);
  for (uint32_t i = 0; i < hi; i++)
    if (atomic_load(&D->p[i].tid) > 0 && D->p[i].pid == pid)
      leave(&D->p[i]);
}

/* In a new child: the parent's thread's entry is not this thread's. */
static void after_fork(void) {
  me = NULL;
  recorded = NULL;
  reported = 0;
}

/* Writes w into the thread's entry: from now on it is a long wait. */
static void record(party *p, const cc_waiting *w) {
  atomic_store(&p->seq, 0);
  p->kind = w->kind;
  p->obj = (uintptr_t)w->obj;
  p->owner = (uintptr_t)w->owner;
  p->target = w->target;
  snprintf(p->label, sizeof p->label, "%s", w->label ? w->label : "");
  snprintf(p->name, sizeof p->name, "%s", cc_ident_name());
  cc_ident_where(p->where, sizeof p->where);
  atomic_store(&p->seq, atomic_fetch_add(&D->next_seq, 1) + 1);
  recorded = w;
}

static void ended(const cc_waiting *w) {
  if (recorded == w) {
    atomic_store(&me->seq, 0);
    recorded = NULL;
    reported = 0;
  }
}

/* Whether thread tid of process pid is there; a thread of a process killed
 * while it waited leaves its entry behind. */
static int thread_alive(int32_t pid, int32_t tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d", (int)pid, (int)tid);
  return access(path, F_OK) == 0;
}

/* The live entry of thread tid in a long wait with no deadline, or NULL. */
static party *find_waiting(int32_t tid) {
  uint32_t hi = atomic_load(&D->high);
  for (uint32_t i = 0; i < hi; i++) {
    party *p = &D->p[i];
    if (atomic_load(&p->tid) == tid && atomic_load(&p->seq))
      return thread_alive(p->pid, tid) ? p : NULL;
  }
  return NULL;
}

/* The tid that p waits for: a lock's owner, a joined thread; 0 if none. */
static int32_t waits_for(const party *p) {
  if (p->owner)
    return (int32_t)(atomic_load((const _Atomic uint32_t *)p->owner) & CC_TID_MASK);
  return p->target;
}

/* Marks the members' waits and tells whether each was marked in the same
 * wait before and has slept twice since (see DESIGN). */
static int settled(party *const *m, int n) {
  int all = 1;
  for (int k = 0; k < n; k++) {
    uint64_t s = atomic_load(&m[k]->seq);
    uint32_t sl = atomic_load(&m[k]->sleeps);
    if (!s || atomic_load(&m[k]->mark_seq) != s) {
      atomic_store(&m[k]->mark, sl);
      atomic_store(&m[k]->mark_seq, s);
      all = 0;
    } else if (sl - atomic_load(&m[k]->mark) < 2) {
      all = 0;
    }
  }
  return all;
}

/* The words for what p waits on: "Queue 'orders'", "Process-1 (pid 7)". */
static void describe_wait(char *buf, size_t n, const party *p) {
  char name[CC_OBJ_NAME_MAX + 24];
  const cc_obj *o = (const cc_obj *)p->obj;
  if (o && cc_type_get(o->type) && o->id)
    snprintf(buf, n, "%s", cc_obj_describe(o, name));
  else if (p->kind == CC_WAIT_JOIN && p->target && cc_proctab_find(p->target))
    snprintf(buf, n, "%s (pid %d)", p->label, cc_sched_shown_pid((int)p->target));
  else if (p->label[0])
    snprintf(buf, n, "%s", p->label);
  else if (o)
    snprintf(buf, n, "a shared object at %p", (const void *)o);
  else
    snprintf(buf, n, "something");
}

/* Appends p's line to the report at *at: who, what it holds, what it waits
 * for and where. */
static void write_member(size_t *at, const party *p) {
  size_t cap = sizeof report;
  if (*at >= cap)
    return;
  char proc[CC_PROC_NAME_MAX], what[CC_OBJ_NAME_MAX + 48];
  cc_proctab_name_of(p->pid, proc, sizeof proc);
  int32_t tid = atomic_load(&p->tid);
  *at += (size_t)snprintf(report + *at, cap - *at, "\n  %.*s of %s (pid %d)", PARTY_NAME,
                          p->name, proc, cc_sched_shown_pid((int)p->pid));
  /* What it holds: the objects of its process's that its type says it
   * holds (a table its process may change meanwhile: what is read is
   * checked). */
  int shown = 0;
  uint32_t cursor = 0;
  for (cc_obj *o; *at < cap && (o = cc_holds_next(p->slot, &cursor));) {
    const cc_type *t = cc_type_get(o->type);
    if (!t || !t->held_by || !t->held_by(o, tid))
      continue;
    char name[CC_OBJ_NAME_MAX + 24];
    *at += (size_t)snprintf(report + *at, cap - *at, "%s%s", shown++ ? ", " : " holds ",
                            cc_obj_describe(o, name));
  }
  if (*at >= cap)
    return;
  describe_wait(what, sizeof what, p);
  *at += (size_t)snprintf(report + *at, cap - *at, "%s waits %s %s", shown ? " and" : "",
                          cc_wait_verb(p->kind), what);
  if (p->where[0] && *at < cap)
    *at += (size_t)snprintf(report + *at, cap - *at, " at %.*s", WHERE_MAX, p->where);
}

/* Says it: under the host, on stderr and to the supervisor; else returns
 * CC_EDEADLK to the finder's wait. */
static int tell(void) {
  reported = 1;
  int sup = atomic_load(&D->supervisor);
  if (sup <= 0)
    return CC_EDEADLK;
  cc_sched_halt(); /* nothing more is scheduled: the run ends */
  /* What this process printed goes out before the run is killed; one
   * write, so that the lines of the report stay together. */
  fflush(stdout);
  static const char head[] = "concur: ", tail[] = "\nconcur: the run ends (exit 3)\n";
  struct iovec v[3] = {{(void *)head, sizeof head - 1},
                       {report, strlen(report)},
                       {(void *)tail, sizeof tail - 1}};
  ssize_t wrote = writev(STDERR_FILENO, v, 3);
  (void)wrote; /* if stderr is gone, the exit status still says it */
  kill(sup, SIGUSR1);
  return 0;
}

/* Follows the waits from x (a lock's owner, a joined thread, ...) into m.
 * Returns the cycle's length when they come back to x, else 0; `lowest`:
 * also 0 at a member ranked before x, which reports the cycle itself. */
static int follow(party *x, party **m, int lowest) {
  int n = 0;
  int32_t start = atomic_load(&x->tid), first = x->rank;
  for (;;) {
    m[n++] = x;
    int32_t next = waits_for(x);
    if (next == start)
      return n;
    if (!next || n == CYCLE_MAX)
      return 0;
    for (int k = 1; k < n; k++)
      if (atomic_load(&m[k]->tid) == next)
        return 0; /* a cycle that x only waits on: its own members report it */
    x = find_waiting(next);
    if (!x)
      return 0; /* not stuck: it may move */
    if (lowest && x->rank < first)
      return 0;
  }
}

/* Writes the cycle m[0..n) in words into the report. */
static void write_cycle(party *const *m, int n) {
  int locks = 1;
  for (int k = 0; k < n; k++)
    locks &= m[k]->kind == CC_WAIT_ACQUIRE && m[k]->owner != 0;
  size_t at = (size_t)snprintf(report, sizeof report,
                               locks ? "deadlock: %d threads wait for each other's locks, forever:"
                                     : "deadlock: %d threads wait for each other, forever:",
                               n);
  for (int k = 0; k < n; k++)
    write_member(&at, m[k]);
}

/* The cycle through p, if its wait is part of one that this thread is to
 * report: 1 (written into the report), else 0. A Lock waited for by its
 * own holder (a cycle of one) may be released by another thread. */
static int cycle(party *p) {
  party *m[CYCLE_MAX];
  int n = follow(p, m, 1);
  if (n < 2 || !settled(m, n))
    return 0;
  write_cycle(m, n);
  return 1;
}

static int by_rank(const void *a, const void *b) {
  int32_t x = (*(party *const *)a)->rank, y = (*(party *const *)b)->rank;
  return (x > y) - (x < y);
}

/* Whether every thread of every live process of the run is asleep in a
 * long wait with no deadline, and this thread is to report it: 1 (written
 * into the report), else 0. */
static int all_asleep(void) {
  /* First what costs no system call: as many such waits as threads, and
   * this thread the first of them by rank. */
  uint32_t hi = atomic_load(&D->high), waiting = 0;
  int32_t self = me ? me->rank : rank_of(cc_tid());
  for (uint32_t i = 0; i < hi; i++) {
    party *p = &D->p[i];
    int32_t tid = atomic_load(&p->tid);
    if (tid > 0 && atomic_load(&p->seq)) {
      if (p->rank < self && thread_alive(p->pid, tid))
        return 0;
      waiting++;
    }
  }
  unsigned cap = cc_proctab_capacity(), threads = 0;
  for (unsigned s = 0; s < cap; s++) {
    cc_procent *e = cc_proctab_get((int)s);
    uint32_t st = atomic_load(&e->state);
    if (st == CC_PS_STARTING)
      return 0;
    if (st != CC_PS_FREE)
      threads += atomic_load(&e->threads);
  }
  if (waiting < threads)
    return 0;
  /* Then each: the live ones, counted by process. */
  party **m = malloc(hi * sizeof *m);
  uint32_t *count = calloc(cap, sizeof *count);
  int n = 0, found = 0;
  if (!m || !count)
    goto out;
  for (uint32_t i = 0; i < hi; i++) {
    party *p = &D->p[i];
    int32_t tid = atomic_load(&p->tid);
    if (tid <= 0 || !atomic_load(&p->seq) || p->slot < 0 || (unsigned)p->slot >= cap ||
        !thread_alive(p->pid, tid))
      continue;
    cc_procent *e = cc_proctab_get(p->slot);
    if (atomic_load(&e->state) == CC_PS_FREE || atomic_load(&e->pid) != p->pid)
      continue;
    count[p->slot]++;
    m[n++] = p;
  }
  for (unsigned s = 0; s < cap; s++) {
    cc_procent *e = cc_proctab_get((int)s);
    if (atomic_load(&e->state) == CC_PS_FREE || count[s] >= atomic_load(&e->threads))
      continue;
    if (cc__tid_alive(atomic_load(&e->pid))) /* its main thread: not a zombie */
      goto out; /* a thread of it is awake */
  }
  if (n == 0 || !settled(m, n))
    goto out;
  qsort(m, (size_t)n, sizeof *m, by_rank);
  /* A cycle among them says more than that they all sleep. */
  found = 1;
  for (int k = 0; k < n; k++) {
    party *c[CYCLE_MAX];
    int len = follow(m[k], c, 0);
    if (len >= 2) {
      write_cycle(c, len);
      goto out;
    }
  }
  size_t at = (size_t)snprintf(report, sizeof report,
                               "deadlock: all %d threads are asleep, waiting with no timeout:",
                               n);
  for (int k = 0; k < n && k < REPORT_LINES; k++)
    write_member(&at, m[k]);
  if (n > REPORT_LINES && at < sizeof report)
    snprintf(report + at, sizeof report - at, "\n  ... and %d more", n - REPORT_LINES);
out:
  free(m);
  free(count);
  return found;
}

/* wait.c's observer: before each sleep of a wait. */
static int sleeping(const cc_waiting *w) {
  if (w->deadline != CC_FOREVER || cc_now() - w->since < CC_DEADLOCK_AFTER_NS)
    return 0;
  party *p = mine();
  if (!p)
    return 0;
  if (recorded != w) {
    record(p, w);
    return 0; /* the others may not be in the table yet: look next time */
  }
  atomic_fetch_add(&p->sleeps, 1);
  if (reported)
    return 0;
  if (cycle(p) || all_asleep())
    return tell();
  return 0;
}

static const cc_wait_observer observer = {sleeping, ended};

static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork); }

int cc_deadlock_init(void) {
  D = cc_arena_zalloc(sizeof *D);
  if (!D)
    return CC_EARENAFULL;
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, register_atfork);
  cc_wait_set_observer(&observer);
  return 0;
}
