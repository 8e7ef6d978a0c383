/* sched - the run's deterministic scheduler: one task at a time, virtual time */
#include "concur/sched.h"
#include "concur/arena.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/wait.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* What a task does: runs (or can), waits for a word or a deadline (word
 * NULL), for descriptors, for a child's tasks, or has ended. */
enum { T_FREE, T_RUN, T_FUTEX, T_FD, T_CHILD, T_DONE };
static const char *const state_words[] = {"free", "can run", "waits", "waits on descriptors",
                                          "joins a process", "ended"};

typedef struct task {
  _Atomic uint32_t go; /* 1 while it holds the token: it waits on this */
  uint32_t state;
  _Atomic int32_t pid, tid;
  uint32_t woken;  /* a wake of its word came */
  uint32_t look;   /* told to look around once */
  _Atomic uint32_t intr; /* its wait for the token was interrupted */
  uint32_t probed; /* T_FD: the epoch its last poll found nothing in */
  const _Atomic uint32_t *word;
  uint32_t expect;
  int32_t child;
  int64_t deadline;
  int64_t prio; /* pct */
  int32_t vpid; /* a process's main task: the pid it is shown by, or 0 */
  char name[32];
  char where[96];
} task;

typedef struct pick {
  uint64_t at;
  uint32_t task;
} pick;

typedef struct sched {
  cc_sched_opts opts;
  uint64_t rng;
  int64_t vnow;
  _Atomic uint64_t decisions; /* read by the supervisor */
  uint64_t preemptions, epoch;
  uint32_t ntasks, idle_rounds, halted, nprocs;
  int32_t next; /* handoff's target */
  /* pct: the decisions at which the running task's priority drops. */
  uint64_t change[16];
  int nchange;
  /* The picks that were not the default (made), and those to replay. */
  uint32_t nmade, nreplay, replayed;
  int overflow;
  pick made[CC_SCHED_PICKS];
  pick replay[CC_SCHED_PICKS];
  task tasks[CC_SCHED_TASKS];
} sched;

/* Threads: S is set once before any fork and never changes; `me` is each
 * thread's own. */
static sched *S;
static _Thread_local int me = -1;

static const char *const strategy_words[] = {
#define CC__SCHED_WORD(name, word) word,
    CC_SCHED_STRATEGIES(CC__SCHED_WORD)
#undef CC__SCHED_WORD
};

int cc_sched_strategy(const char *word) {
  for (int i = 0; i < CC_SCHED_STRATEGY_COUNT; i++)
    if (!strcmp(word, strategy_words[i]))
      return i;
  return -1;
}

const char *cc_sched_strategy_name(int s) {
  return s >= 0 && s < CC_SCHED_STRATEGY_COUNT ? strategy_words[s] : "?";
}

/* splitmix64: small, and the same everywhere. */
static uint64_t next_random(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) { return n ? next_random(&S->rng) % n : 0; }

int cc_sched_on(void) { return S && me >= 0; }
int cc_sched_task(void) { return S ? me : -1; }

/* ---- Parsing and writing schedules ---- */

static int parse_schedule(const char *s) {
  S->nreplay = 0;
  uint64_t last = 0;
  while (s && *s) {
    char *end;
    errno = 0;
    unsigned long long at = strtoull(s, &end, 10);
    if (end == s || *end != ':' || errno)
      return CC_EVALUE;
    s = end + 1;
    unsigned long t = strtoul(s, &end, 10);
    if (end == s || t >= CC_SCHED_TASKS || (S->nreplay && at <= last))
      return CC_EVALUE;
    if (S->nreplay == CC_SCHED_PICKS)
      return CC_EVALUE;
    S->replay[S->nreplay++] = (pick){at, (uint32_t)t};
    last = at;
    s = end;
    if (*s == ',')
      s++;
    else if (*s)
      return CC_EVALUE;
  }
  return 0;
}

size_t cc_sched_result_get(cc_sched_result *r, char *buf, size_t n) {
  memset(r, 0, sizeof *r);
  if (n)
    buf[0] = '\0';
  if (!S)
    return 0;
  r->seed = S->opts.seed;
  r->strategy = S->opts.strategy;
  r->decisions = atomic_load(&S->decisions);
  r->preemptions = S->preemptions;
  r->vnow = S->vnow;
  r->overflow = S->overflow;
  r->tasks = S->ntasks;
  size_t at = 0;
  for (uint32_t i = 0; i < S->nmade && n; i++) {
    char one[48];
    int k = snprintf(one, sizeof one, "%s%llu:%u", i ? "," : "",
                     (unsigned long long)S->made[i].at, S->made[i].task);
    if (at + (size_t)k + 4 >= n) {
      snprintf(buf + at, n - at, "...");
      return at + 3 < n ? at + 3 : n - 1;
    }
    memcpy(buf + at, one, (size_t)k + 1);
    at += (size_t)k;
  }
  return at;
}

uint64_t cc_sched_steps(void) { return S ? atomic_load(&S->decisions) : 0; }

int cc_sched_holder_asleep(void) {
  int h = S ? S->next : -1;
  if (h < 0 || (uint32_t)h >= S->ntasks)
    return 0;
  return cc__tid_state((int)atomic_load(&S->tasks[h].tid)) == 'S';
}

void cc_sched_holder(char *buf, size_t n) {
  int h = S ? S->next : -1;
  if (h < 0 || (uint32_t)h >= S->ntasks) {
    snprintf(buf, n, "no task");
    return;
  }
  task *t = &S->tasks[h];
  snprintf(buf, n, "task %d (%s, pid %d)%s%s", h, t->name[0] ? t->name : "a thread",
           cc_sched_shown_pid((int)atomic_load(&t->pid)), t->where[0] ? " after " : "", t->where);
}

/* ---- Who can run ---- */

static int readable(const task *t) {
  return cc_arena_contains((const void *)t->word) || atomic_load(&t->pid) == cc_pid();
}

static int pid_done(int pid) {
  int known = 0;
  for (uint32_t i = 0; i < S->ntasks; i++) {
    task *t = &S->tasks[i];
    if (atomic_load(&t->pid) != pid)
      continue;
    known = 1;
    if (t->state != T_DONE)
      return 0;
  }
  return known;
}

static int pid_known(int pid) {
  for (uint32_t i = 0; i < S->ntasks; i++)
    if (atomic_load(&S->tasks[i].pid) == pid)
      return 1;
  return 0;
}

static int can_run(const task *t) {
  if (atomic_load(&t->intr) && t->state != T_DONE && t->state != T_FREE)
    return 1;
  switch (t->state) {
  case T_RUN:
    return 1;
  case T_FUTEX:
    return t->woken || t->look || t->deadline <= S->vnow ||
           (t->word && readable(t) && atomic_load(t->word) != t->expect);
  case T_FD:
    return t->look || t->deadline <= S->vnow || t->probed != S->epoch;
  case T_CHILD:
    return t->look || t->deadline <= S->vnow || pid_done(t->child);
  default:
    return 0;
  }
}

/* ---- Deciding ---- */

/* Nobody can run, and no deadline is left. Says what each task waits
 * for and ends the run as a deadlock does. */
static _Noreturn void stuck(void) {
  fflush(stdout);
  char buf[8192];
  size_t at = (size_t)snprintf(buf, sizeof buf,
                               "concur: no task of the run can go on (--sim):\n");
  for (uint32_t i = 0; i < S->ntasks && at < sizeof buf - 200; i++) {
    task *t = &S->tasks[i];
    if (t->state == T_DONE || t->state == T_FREE)
      continue;
    at += (size_t)snprintf(buf + at, sizeof buf - at, "  task %u (%s, pid %d) %s%s%s\n", i,
                           t->name[0] ? t->name : "a thread",
                           cc_sched_shown_pid((int)atomic_load(&t->pid)),
                           state_words[t->state], t->where[0] ? " at " : "", t->where);
  }
  at += (size_t)snprintf(buf + at, sizeof buf - at, "concur: the run ends (exit 3)\n");
  ssize_t w = write(STDERR_FILENO, buf, at < sizeof buf ? at : sizeof buf - 1);
  (void)w;
  S->halted = 1;
  if (S->opts.supervisor > 0)
    kill(S->opts.supervisor, SIGUSR1);
  else
    _exit(3);
  for (;;)
    pause();
}

/* Looks around this many slices with nothing able to run before the
 * scheduler gives up on the deadlock detector. */
#define IDLE_ROUNDS 40

/* Who runs next, from the tasks that can; the caller holds the token and
 * has said what it does (its state). */
static int decide_next(void) {
  for (;;) {
    int cand[CC_SCHED_TASKS], n = 0, mine = 0;
    int64_t earliest = CC_FOREVER;
    for (uint32_t i = 0; i < S->ntasks; i++) {
      task *t = &S->tasks[i];
      if (can_run(t)) {
        mine |= (int)i == me;
        cand[n++] = (int)i;
      } else if (t->state >= T_FUTEX && t->state <= T_CHILD && t->deadline < earliest) {
        earliest = t->deadline;
      }
    }
    if (S->halted) {
      /* A deadlock was reported: the run is being ended. */
      fflush(NULL);
      for (;;)
        pause();
    }
    if (n == 0) {
      if (earliest != CC_FOREVER) {
        S->vnow = earliest;
        S->epoch++;
        continue;
      }
      if (S->idle_rounds++ >= IDLE_ROUNDS)
        stuck();
      /* A slice of time passes, and every waiter looks around. */
      S->vnow += CC_WAIT_SLICE_NS;
      for (uint32_t i = 0; i < S->ntasks; i++)
        if (S->tasks[i].state >= T_FUTEX && S->tasks[i].state <= T_CHILD)
          S->tasks[i].look = 1;
      continue;
    }
    uint64_t d = atomic_fetch_add(&S->decisions, 1);
    S->vnow += 1000; /* each step takes a microsecond of virtual time */
    int dflt = mine ? me : cand[0];
    int p = dflt;
    switch (S->opts.strategy) {
    case CC_SCHED_RANDOM:
      p = cand[below((uint64_t)n)];
      break;
    case CC_SCHED_PCT:
      for (int c = 0; c < S->nchange; c++)
        if (S->change[c] == d && me >= 0)
          S->tasks[me].prio = c - S->nchange; /* below every first priority */
      p = cand[0];
      for (int i = 1; i < n; i++)
        if (S->tasks[cand[i]].prio > S->tasks[p].prio)
          p = cand[i];
      break;
    case CC_SCHED_REPLAY:
      while (S->replayed < S->nreplay && S->replay[S->replayed].at < d)
        S->replayed++;
      if (S->replayed < S->nreplay && S->replay[S->replayed].at == d) {
        int want = (int)S->replay[S->replayed++].task;
        for (int i = 0; i < n; i++)
          if (cand[i] == want)
            p = want;
      }
      break;
    default:
      break;
    }
    if (p != dflt) {
      if (S->nmade < CC_SCHED_PICKS)
        S->made[S->nmade++] = (pick){d, (uint32_t)p};
      else
        S->overflow = 1;
      if (mine)
        S->preemptions++;
    }
    return p;
  }
}

/* Waits until the calling task holds the token. */
static void await_token(void) {
  task *t = &S->tasks[me];
  while (!atomic_load_explicit(&t->go, memory_order_acquire)) {
    cc_futex_wait_plain(&t->go, 0, cc_now_real() + CC_WAIT_SLICE_NS);
    if (cc_interrupted())
      atomic_store(&t->intr, 1);
  }
}

/* Gives the token to task `to` (not the caller). */
static void give(int to) {
  S->next = to;
  /* What this task wrote goes out before the next one writes. */
  fflush(NULL);
  task *t = &S->tasks[to];
  atomic_store_explicit(&t->go, 1, memory_order_release);
  cc_futex_wake_plain(&t->go, 1);
}

static void switch_to(int to) {
  if (to == me)
    return;
  atomic_store(&S->tasks[me].go, 0);
  give(to);
  await_token();
  S->next = me;
}

/* Something happened: the waits on descriptors may have news. */
static void progress(void) {
  S->epoch++;
  S->idle_rounds = 0;
}

/* ---- wait.c's hooks ---- */

static int64_t now(void) { return S->vnow; }

static int decide(void) {
  if (me < 0)
    return 0;
  task *t = &S->tasks[me];
  t->state = T_RUN;
  progress();
  int p = decide_next();
  if (p == me)
    return 0;
  S->next = p;
  return 1;
}

static void handoff(void) { switch_to(S->next); }

void cc_sched_note_where(void) {
  if (cc_sched_on())
    cc_ident_where(S->tasks[me].where, sizeof S->tasks[me].where);
}

/* The calling task waits as it said; returns when it runs again, and
 * says why: 1 interrupted, 2 told to look around, 0 else. */
static int wait_turn(task *t) {
  snprintf(t->name, sizeof t->name, "%s", cc_ident_name());
  cc_ident_where(t->where, sizeof t->where);
  switch_to(decide_next());
  t->state = T_RUN;
  if (atomic_exchange(&t->intr, 0) && cc_interrupted())
    return 1;
  if (t->look) {
    t->look = 0;
    return 2;
  }
  return 0;
}

static int block(_Atomic uint32_t *word, uint32_t expect, int64_t deadline, int *woken) {
  *woken = 0;
  if (me < 0)
    return CC_EINTR;
  task *t = &S->tasks[me];
  t->state = T_FUTEX;
  t->word = word;
  t->expect = expect;
  t->deadline = deadline;
  t->woken = 0;
  t->look = 0;
  int why = wait_turn(t);
  if (t->woken) {
    *woken = 1;
    progress();
    return 0;
  }
  if (word && atomic_load(word) != expect) {
    progress();
    return 0;
  }
  if (why == 1)
    return CC_EINTR;
  if (why == 2)
    return CC_WAIT_SLICE;
  if (deadline <= S->vnow) {
    progress();
    return word ? CC_ETIMEDOUT : 0;
  }
  return 0;
}

static int wake(_Atomic uint32_t *word, int n) {
  int woken = 0, pid = cc_pid(), shared = cc_arena_contains(word);
  for (uint32_t i = 0; i < S->ntasks && woken < n; i++) {
    task *t = &S->tasks[i];
    if (t->state == T_FUTEX && t->word == word && !t->woken &&
        (shared || atomic_load(&t->pid) == pid)) {
      t->woken = 1;
      woken++;
    }
  }
  return woken;
}

static int fds(struct pollfd *f, int n, int64_t deadline) {
  if (me < 0)
    return CC_EINTR;
  task *t = &S->tasks[me];
  for (;;) {
    t->state = T_FD;
    t->deadline = deadline;
    t->probed = S->epoch;
    t->look = 0;
    int why = wait_turn(t);
    if (why == 1)
      return CC_EINTR;
    int r = poll(f, (nfds_t)n, 0);
    if (r > 0) {
      progress();
      return r;
    }
    if (r < 0 && errno != EINTR)
      return CC_ESYS;
    if (deadline <= S->vnow) {
      progress();
      return CC_ETIMEDOUT;
    }
    if (why == 2)
      return 0;
  }
}

static int child(int pid, int64_t deadline) {
  if (me < 0 || !pid_known(pid))
    return 0;
  task *t = &S->tasks[me];
  for (;;) {
    if (pid_done(pid)) {
      progress();
      return CC_WAIT_ENDED;
    }
    if (deadline <= S->vnow) {
      progress();
      return CC_ETIMEDOUT;
    }
    t->state = T_CHILD;
    t->child = pid;
    t->deadline = deadline;
    t->look = 0;
    int why = wait_turn(t);
    if (why == 1)
      return CC_EINTR;
    if (why == 2 && !pid_done(pid))
      return CC_WAIT_SLICE;
  }
}

static int tid_alive(int tid) {
  for (uint32_t i = S->ntasks; i-- > 0;)
    if (atomic_load(&S->tasks[i].tid) == tid)
      return S->tasks[i].state != T_DONE;
  return -1;
}

static const cc_wait_sched hooks = {block, wake, fds, decide, handoff, child, tid_alive, now};

/* ---- Tasks ---- */

int cc_sched_init(const cc_sched_opts *o) {
  sched *s = cc_arena_zalloc(sizeof *s);
  if (!s)
    return CC_EARENAFULL;
  S = s;
  S->opts = *o;
  S->opts.schedule = NULL;
  if (S->opts.depth <= 0)
    S->opts.depth = 3;
  if (S->opts.depth > 16)
    S->opts.depth = 16;
  if (S->opts.steps <= 0)
    S->opts.steps = 2000;
  S->rng = o->seed * 0x2545f4914f6cdd1dULL + 1;
  if (o->strategy == CC_SCHED_REPLAY && parse_schedule(o->schedule) != 0) {
    S = NULL;
    cc_arena_free(s);
    return CC_EVALUE;
  }
  S->nchange = S->opts.depth - 1;
  for (int i = 0; i < S->nchange; i++)
    S->change[i] = 1 + below((uint64_t)S->opts.steps);
  S->vnow = 0;
  S->next = 0;
  int t = cc_sched_spawn();
  (void)t;
  S->tasks[0].vpid = CC_SCHED_VPID_BASE;
  atomic_store(&S->tasks[0].go, 1);
  return 0;
}

int cc_sched_spawn(void) {
  if (!S)
    return -1;
  if (S->ntasks == CC_SCHED_TASKS)
    return CC_ELIMIT;
  int i = (int)S->ntasks;
  task *t = &S->tasks[i];
  memset(t, 0, sizeof *t);
  t->state = T_RUN;
  t->deadline = CC_FOREVER;
  /* pct: a first priority above every change point's, drawn for each. */
  t->prio = S->opts.depth + (int64_t)below(1u << 30);
  S->ntasks++;
  return i;
}

void cc_sched_unspawn(int task_no) {
  if (S && task_no >= 0)
    S->tasks[task_no].state = T_DONE;
}

int cc_sched_pid_state(int pid) {
  if (!cc_sched_on() || !pid_known(pid))
    return -1;
  return pid_done(pid);
}

int cc_sched_pid_waits(int pid) {
  if (!S)
    return 0;
  for (uint32_t i = 0; i < S->ntasks; i++)
    if (atomic_load(&S->tasks[i].pid) == pid && S->tasks[i].state == T_RUN)
      return 0;
  return 1;
}

void cc_sched_set_pid(int task_no, int pid) {
  if (S && task_no >= 0) {
    atomic_store(&S->tasks[task_no].pid, pid);
    S->tasks[task_no].vpid = CC_SCHED_VPID_BASE + (int32_t)++S->nprocs;
  }
}

int cc_sched_shown_pid(int pid) {
  if (!S || pid <= 0)
    return pid;
  for (uint32_t i = 0; i < S->ntasks; i++)
    if (S->tasks[i].vpid && atomic_load(&S->tasks[i].pid) == pid)
      return S->tasks[i].vpid;
  return pid;
}

int cc_sched_real_pid(int shown) {
  if (!S || shown < CC_SCHED_VPID_BASE)
    return shown;
  for (uint32_t i = 0; i < S->ntasks; i++)
    if (S->tasks[i].vpid == shown)
      return atomic_load(&S->tasks[i].pid);
  return shown;
}

void cc_sched_start(int task_no) {
  if (!S || task_no < 0)
    return;
  me = task_no;
  task *t = &S->tasks[me];
  atomic_store(&t->pid, cc_pid());
  atomic_store(&t->tid, cc_tid());
  if (!cc_wait_simulated())
    cc_wait_set_sched(&hooks);
  await_token();
  S->next = me;
  snprintf(t->name, sizeof t->name, "%s", cc_ident_name());
}

void cc_sched_exit(void) {
  if (!cc_sched_on())
    return;
  task *t = &S->tasks[me];
  t->state = T_DONE;
  progress();
  int p = decide_next();
  me = -1;
  atomic_store(&t->go, 0);
  if (p != (int)(t - S->tasks))
    give(p);
}

void cc_sched_forget_others(void) {
  if (!cc_sched_on())
    return;
  int pid = cc_pid();
  for (uint32_t i = 0; i < S->ntasks; i++)
    if ((int)i != me && atomic_load(&S->tasks[i].pid) == pid)
      S->tasks[i].state = T_DONE;
}

void cc_sched_exit_process(void) {
  if (!cc_sched_on())
    return;
  cc_sched_forget_others();
  fflush(NULL);
  /* Its pipes' other ends see the end now, not once the kernel has
   * finished with the process, which runs on unscheduled. */
  syscall(SYS_close_range, 0U, ~0U, 0);
  cc_sched_exit();
}

void cc_sched_forget_pid(int pid) {
  if (!cc_sched_on())
    return;
  for (uint32_t i = 0; i < S->ntasks; i++)
    if (atomic_load(&S->tasks[i].pid) == pid)
      S->tasks[i].state = T_DONE;
  /* The waiters of what it held look again (a lock's dead holder). */
  for (uint32_t i = 0; i < S->ntasks; i++)
    if (S->tasks[i].state >= T_FUTEX && S->tasks[i].state <= T_CHILD)
      S->tasks[i].look = 1;
  progress();
}

void cc_sched_halt(void) {
  if (S)
    S->halted = 1;
}
