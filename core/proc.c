/* proc - processes: fork, join, signals, reaping, and the run's runtime */
#include "concur/proc.h"
#include "concur/sched.h"
#include "concur/deadlock.h"
#include "concur/error.h"
#include "concur/lock.h"
#include "concur/lockorder.h"
#include "concur/ready.h"
#include "concur/trace.h"
#include "concur/types.h"
#include "concur/wait.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Threads: the list is changed with the process's calls serialized (the
 * bindings' GIL); a join that waits holds no pointer into it (proc.h). */
static cc_proc *children;
static int subreaper; /* only a subreaper has orphans to reap; set before any thread */
static int tether = -1, tether_pid; /* set before any thread; the same in every child */

/* Gives this process its own description of the tether and arms it (a
 * forked child shares its parent's, which signals the parent). It is
 * opened through the supervisor's descriptor of the same pipe: a new
 * process's own /proc entry costs a tenth of a fork to look up the first
 * time. If the supervisor is gone already, the open fails or the pipe has
 * hung up, and no signal will come: the process ends itself. */
static int arm_tether(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd/%d", tether_pid, tether);
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && (errno == ENOENT || errno == ESRCH))
    _exit(128 + SIGKILL);
  if (fd < 0)
    return CC_ESYS;
  int ok = dup3(fd, tether, O_CLOEXEC) == tether;
  close(fd);
  ok = ok && fcntl(tether, F_SETOWN, getpid()) == 0 && fcntl(tether, F_SETSIG, SIGKILL) == 0 &&
       fcntl(tether, F_SETFL, O_NONBLOCK | O_ASYNC) == 0;
  if (!ok)
    return CC_ESYS;
  struct pollfd pf = {tether, POLLIN, 0};
  if (poll(&pf, 1, 0) == 1 && (pf.revents & (POLLHUP | POLLERR)))
    _exit(128 + SIGKILL);
  return 0;
}

int cc_runtime_tether(int read_fd, int supervisor) {
  tether = read_fd;
  tether_pid = supervisor;
  return arm_tether();
}

int cc_runtime_init(size_t arena_size, unsigned max_processes) {
  int r = cc_arena_init(arena_size);
  if (r)
    return r;
  r = cc_proctab_init(max_processes);
  if (!r)
    r = cc_deadlock_init();
  if (!r)
    r = cc_lockorder_init();
  if (!r)
    r = cc_ready_init();
  if (r) {
    cc_arena_fini();
    return r;
  }
  /* Registered in a fixed order before any fork, so tags agree everywhere. */
  static const cc_type *const core_types[] = {
#define CC__TYPE_ADDR(sym) &sym,
      CC_TYPE_MAP(CC__TYPE_ADDR)
#undef CC__TYPE_ADDR
  };
  for (size_t i = 0; i < sizeof core_types / sizeof *core_types; i++)
    cc_type_register(core_types[i]);
  return 0;
}

int cc_runtime_subreaper(void) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    return CC_ESYS;
  subreaper = 1;
  return 0;
}

void cc_runtime_become_main(void) {
  cc_procent *m = cc_proctab_get(0);
  atomic_store(&m->pid, getpid());
  m->ppid = getppid();
  cc__proc_set_self(0);
  cc__tid_reset();
}

void cc_proc_init(cc_proc *p, const char *name, int daemon) {
  memset(p, 0, sizeof *p);
  p->pidfd = -1;
  p->daemon = daemon;
  cc_procent *self = cc_proc_self();
  unsigned n = ++self->nchildren;
  if (self->ident[0])
    snprintf(p->ident, sizeof p->ident, "%.28s:%u", self->ident, n);
  else
    snprintf(p->ident, sizeof p->ident, "%u", n);
  if (name)
    snprintf(p->name, sizeof p->name, "%s", name);
  else
    snprintf(p->name, sizeof p->name, "Process-%.40s", p->ident);
}

static void link_child(cc_proc *p) {
  p->prev = NULL;
  p->next = children;
  if (children)
    children->prev = p;
  children = p;
}

static void unlink_child(cc_proc *p) {
  if (p->prev)
    p->prev->next = p->next;
  else if (children == p)
    children = p->next;
  if (p->next)
    p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

/* In a new child: the parent's children are not ours. */
static void forget_siblings(void) {
  for (cc_proc *c = children, *n; c; c = n) {
    n = c->next;
    if (c->pidfd >= 0)
      close(c->pidfd);
    c->pidfd = -1;
    c->prev = c->next = NULL;
  }
  children = NULL;
}

/* Reaps the children that ended without a join (and orphans, in the
 * subreaper), as CPython's start() does, so that they no longer count. */
static void reap_ended(void) {
  for (cc_proc *c = children, *n; c; c = n) {
    n = c->next;
    cc_proc_poll(c);
  }
  cc_proc_reap_orphans();
}

int cc_proc_start(cc_proc *p) {
  cc_procent *self = cc_proc_self();
  if (p->state != CC_PROC_NEW || self->daemon)
    return CC_EPROC;
  int slot = cc_proctab_alloc();
  if (slot == CC_ELIMIT) {
    /* Only when the table is full: a waitpid per child on every start
     * would cost what a start costs. */
    reap_ended();
    slot = cc_proctab_alloc();
  }
  if (slot < 0)
    return slot;
  cc_procent *e = cc_proctab_get(slot);
  memcpy(e->ident, p->ident, sizeof e->ident);
  memcpy(e->name, p->name, sizeof e->name);
  e->ppid = getpid();
  e->daemon = (uint32_t)p->daemon;
  int r = cc_holds_copy(cc_proc_self_slot(), slot);
  if (r) {
    cc_proctab_free(slot);
    return r;
  }
  int task = cc_sched_spawn();
  if (task == CC_ELIMIT) {
    cc_proctab_free(slot);
    return CC_ELIMIT;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    cc_sched_unspawn(task);
    cc_proctab_free(slot);
    return CC_ESYS;
  }
  if (pid == 0) {
    subreaper = 0; /* the flag is not inherited by a forked child */
    if (tether >= 0 && arm_tether() != 0)
      _exit(128 + SIGKILL); /* it could not be tied to the run */
    cc__proc_set_self(slot);
    cc__tid_reset();
    forget_siblings();
    atomic_store(&e->pid, getpid());
    atomic_store(&e->state, CC_PS_RUNNING);
    p->pid = getpid();
    p->state = CC_PROC_STARTED;
    p->parent_pid = (int)e->ppid;
    cc__trace_process(p->name);
    cc__trace_thread("MainThread");
    cc_sched_start(task);
    return 0;
  }
  cc_sched_set_pid(task, pid);
  cc__trace_event(CC_TRACE_FORK, NULL, pid, 0, p->name);
  atomic_store(&e->pid, pid);
  p->pid = pid;
  p->slot = slot;
  p->parent_pid = getpid();
  p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  p->state = CC_PROC_STARTED;
  link_child(p);
  return pid;
}

/* Entry of a reaped pid: drop its holds, free it. */
static void release_pid(int pid) {
  cc__deadlock_forget_pid(pid);
  cc_procent *e = cc_proctab_find(pid);
  if (e) {
    cc__ready_forget_slot(cc_proctab_slot_of(e));
    cc_proctab_free(cc_proctab_slot_of(e));
  }
}

static int exitcode_of(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return -WTERMSIG(status);
  return 1;
}

/* p has been reaped with this status (found, or -1: not a child any more,
 * reaped elsewhere, its status unknown). Its pidfd is closed by the last
 * thread that waits on it. */
static void reaped(cc_proc *p, int status, int found) {
  p->exitcode = found ? exitcode_of(status) : -SIGKILL;
  cc__trace_event(CC_TRACE_REAP, NULL, p->pid, p->exitcode, NULL);
  /* Whoever reaped it released its entry; reaped elsewhere, its pid may
   * already be another process's of the run. */
  if (found)
    release_pid(p->pid);
  if (p->pidfd >= 0 && p->joiners == 0) {
    close(p->pidfd);
    p->pidfd = -1;
  }
  p->state = CC_PROC_REAPED;
  unlink_child(p);
}

int cc_proc_join(cc_proc *p, int64_t deadline) {
  if (p->state == CC_PROC_REAPED)
    return 0;
  if (p->state != CC_PROC_STARTED || p->parent_pid != getpid())
    return CC_EPROC;
  int status;
  p->joiners++;
  cc_waiting w = {.kind = CC_WAIT_JOIN, .target = p->pid, .label = p->name, .deadline = deadline};
  cc_wait_begin(&w);
  int r = cc_wait_child(p->pid, p->pidfd, &status, NULL, deadline);
  cc_wait_end(&w);
  p->joiners--;
  if (p->state == CC_PROC_REAPED) {
    /* Another thread reaped it while this one waited. */
    if (p->joiners == 0 && p->pidfd >= 0) {
      close(p->pidfd);
      p->pidfd = -1;
    }
    return 0;
  }
  if (r == CC_ETIMEDOUT || r == CC_EINTR || r == CC_EDEADLK)
    return r;
  reaped(p, status, r == 0);
  return 0;
}

int cc_proc_poll(cc_proc *p) {
  if (p->state != CC_PROC_STARTED || p->parent_pid != getpid())
    return 0;
  int status;
  /* Scheduled, a process is over when its tasks are, whether or not the
   * kernel has finished it yet. */
  int sim = cc_sched_pid_state(p->pid);
  if (sim == 0)
    return 1;
  pid_t r;
  while ((r = waitpid(p->pid, &status, sim == 1 ? 0 : WNOHANG)) < 0 && errno == EINTR)
    ;
  if (r == 0)
    return 1;
  reaped(p, status, r == p->pid);
  return 0;
}

void cc_proc_signal(cc_proc *p, int sig) {
  if (p->state == CC_PROC_STARTED && p->parent_pid == getpid()) {
    int ends = sig == SIGTERM || sig == SIGKILL;
    if (ends)
      cc_sched_forget_pid(p->pid);
    kill(p->pid, sig);
    /* Scheduled, what the run does next must not depend on how soon the
     * kernel finishes the process: once its pidfd is readable its
     * descriptors are closed, and its pipes' other ends see the end. One
     * that does not die of sig is waited for 1 s at most. */
    if (ends && cc_sched_on() && p->pidfd >= 0)
      cc_wait_fd_plain(p->pidfd, POLLIN, cc_now_real() + 1000000000LL);
  }
}

const char *cc_proc_status(const cc_proc *p) {
  if (p->state == CC_PROC_NEW)
    return "new";
  if (p->state == CC_PROC_REAPED)
    return "dead";
  /* Scheduled, what the kernel says would depend on real time: a task
   * that can run is running, one that waits is sleeping, and one whose
   * tasks have ended is a zombie (once the kernel has finished it). */
  int sim = cc_sched_pid_state(p->pid);
  if (sim == 0)
    return cc_sched_pid_waits(p->pid) ? "sleeping" : "running";
  if (sim == 1 && p->parent_pid == getpid()) {
    siginfo_t info;
    while (waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOWAIT) < 0 && errno == EINTR)
      ;
  }
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", p->pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return "dead";
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return "dead";
  buf[n] = '\0';
  char *s = strrchr(buf, ')');
  if (!s || s[1] != ' ')
    return "dead";
  switch (s[2]) {
  case 'R':
    return "running";
  case 'S':
  case 'D':
  case 'I':
    return "sleeping";
  case 'Z':
    return "zombie";
  case 'T':
  case 't':
    return "stopped";
  default:
    return "dead";
  }
}

cc_proc *cc_proc_children(void) { return children; }

void cc_proc_forget(cc_proc *p) {
  if (p->state == CC_PROC_STARTED && p->parent_pid == getpid())
    cc_proc_poll(p);
  if (p->state == CC_PROC_STARTED && p->parent_pid == getpid()) {
    /* Still running: stop tracking it; the subreaper reaps it later. (A
     * handle is forgotten when it is collected, so no thread waits on it.) */
    unlink_child(p);
    if (p->pidfd >= 0)
      close(p->pidfd);
    p->pidfd = -1;
  }
}

int cc_proc_finish_children(void) {
  for (cc_proc *c = children; c; c = c->next)
    if (c->daemon)
      cc_proc_signal(c, SIGTERM);
  /* The list is looked at again after each join: while one waits, another
   * thread may start or reap children. */
  while (children) {
    int r = cc_proc_join(children, CC_FOREVER);
    if (r)
      return r;
  }
  return 0;
}

_Noreturn void cc_proc_exit(int code) {
  fflush(NULL);
  cc__trace_event(CC_TRACE_EXIT, NULL, code, 0, NULL);
  cc__trace_end();
  cc_proc_threads_end();
  cc_holds_release(cc_proc_self_slot());
  cc_sched_exit_process();
  _exit(code);
}

static int is_tracked(int pid) {
  for (cc_proc *c = children; c; c = c->next)
    if (c->pid == pid)
      return 1;
  return 0;
}

/* Calls fn(pid, ppid, ud) for every process of the machine that we can see. */
static void each_process(void (*fn)(int, int, void *), void *ud) {
  DIR *d = opendir("/proc");
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d))) {
    char *end;
    long pid = strtol(de->d_name, &end, 10);
    if (*end || pid <= 0)
      continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
      continue;
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    int ppid;
    char st;
    if (s && sscanf(s + 1, " %c %d", &st, &ppid) == 2)
      fn((int)pid, ppid, ud);
  }
  closedir(d);
}

typedef struct pidset {
  int *v;
  size_t n, cap;
} pidset;

static void pidset_add(pidset *s, int pid) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    int *v = realloc(s->v, cap * sizeof *v);
    if (!v)
      return;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = pid;
}

static int pidset_has(const pidset *s, int pid) {
  for (size_t i = 0; i < s->n; i++)
    if (s->v[i] == pid)
      return 1;
  return 0;
}

typedef struct pairs {
  pidset pid, ppid;
} pairs;

static void collect(int pid, int ppid, void *ud) {
  pairs *p = ud;
  pidset_add(&p->pid, pid);
  pidset_add(&p->ppid, ppid);
}

/* Adds the children of pid (of each of its threads) that out does not
 * have yet, from the kernel's lists of them: a few reads, where a look at
 * every process of the machine costs one open and read each. */
static void add_children(int pid, pidset *out) {
  char path[80];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d)
    return; /* gone: no children */
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "/proc/%d/task/%.16s/children", pid, de->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    char buf[4096];
    size_t have = 0;
    ssize_t n;
    while ((n = read(fd, buf + have, sizeof buf - 1 - have)) > 0) {
      have += (size_t)n;
      buf[have] = '\0';
      /* Every whole number so far; a cut one is kept for the next read. */
      char *at = buf, *end;
      for (;;) {
        long child = strtol(at, &end, 10);
        if (end == at || (*end == '\0' && have == sizeof buf - 1))
          break;
        if (child > 0 && !pidset_has(out, (int)child))
          pidset_add(out, (int)child);
        at = end;
      }
      have = strlen(at);
      memmove(buf, at, have);
    }
    close(fd);
  }
  closedir(d);
}

/* Whether the kernel lists a thread's children (CONFIG_PROC_CHILDREN). */
static int lists_children(void) {
  static _Atomic int known; /* 0 not yet, 1 yes, 2 no; threads: any may ask */
  int k = atomic_load(&known);
  if (!k) {
    k = access("/proc/thread-self/children", R_OK) == 0 ? 1 : 2;
    atomic_store(&known, k);
  }
  return k == 1;
}

/* The descendants of root, parents before children. */
static pidset descendants(int root) {
  if (lists_children()) {
    pidset out = {0};
    pidset_add(&out, root);
    for (size_t i = 0; i < out.n; i++)
      add_children(out.v[i], &out);
    return out;
  }
  pairs all = {{0}, {0}};
  each_process(collect, &all);
  pidset out = {0};
  pidset_add(&out, root);
  for (size_t i = 0; i < out.n; i++)
    for (size_t j = 0; j < all.pid.n; j++)
      if (all.ppid.v[j] == out.v[i] && !pidset_has(&out, all.pid.v[j]))
        pidset_add(&out, all.pid.v[j]);
  free(all.pid.v);
  free(all.ppid.v);
  return out;
}

int cc_proc_kill_tree(int root, int sig) {
  pidset d = descendants(root);
  int n = 0;
  for (size_t i = 1; i < d.n; i++)
    n += kill(d.v[i], sig) == 0;
  free(d.v);
  return n;
}

int cc_proc_stop_tree(int root) {
  pidset stopped = {0};
  for (int round = 0, fresh = 1; fresh && round < 100; round++) {
    /* A process may have forked before it was stopped: look again until
     * every descendant is one stopped already. */
    pidset d = descendants(root);
    fresh = 0;
    for (size_t i = 1; i < d.n; i++)
      if (!pidset_has(&stopped, d.v[i]) && kill(d.v[i], SIGSTOP) == 0) {
        pidset_add(&stopped, d.v[i]);
        fresh = 1;
      }
    free(d.v);
  }
  int n = (int)stopped.n;
  free(stopped.v);
  return n;
}

int cc_proc_reap_orphans(void) {
  if (!subreaper)
    return 0;
  pidset d = descendants(getpid());
  int n = 0;
  for (size_t i = 1; i < d.n; i++) {
    int status;
    if (is_tracked(d.v[i]))
      continue;
    if (waitpid(d.v[i], &status, WNOHANG) == d.v[i]) {
      release_pid(d.v[i]);
      n++;
    }
  }
  free(d.v);
  return n;
}

int cc_proc_reap_any(int *status) {
  int st;
  pid_t r = waitpid(-1, &st, WNOHANG);
  if (r < 0)
    return CC_ESYS;
  if (r == 0)
    return 0;
  if (status)
    *status = st;
  for (cc_proc *c = children; c; c = c->next)
    if (c->pid == r) {
      reaped(c, st, 1);
      return r;
    }
  release_pid(r);
  return r;
}

int cc_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
