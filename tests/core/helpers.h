/* helpers - what the core tests share: a runtime, forked workers with a timeout */
#ifndef CONCUR_TEST_HELPERS_H
#define CONCUR_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "concur/deadlock.h"
#include "concur/ident.h"
#include "concur/proc.h"
#include "concur/proctab.h"
#include "concur/ready.h"
#include "concur/wait.h"

#define MS 1000000LL

static inline int group_setup(void **state) {
  (void)state;
  return cc_runtime_init((size_t)64 << 20, 64);
}

static inline int group_teardown(void **state) {
  (void)state;
  cc_arena_fini();
  return 0;
}

/* Forks a process of the run: in its table, as cc_proc_start's children
 * are, so that the deadlock detector counts it as a party that may still
 * act. 0 in the child. */
static inline pid_t fork_counted(void) {
  int slot = cc_proctab_alloc();
  assert_true(slot > 0);
  cc_procent *e = cc_proctab_get(slot);
  snprintf(e->name, sizeof e->name, "Worker-%d", slot);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    cc__proc_set_self(slot);
    cc__tid_reset();
    atomic_store(&e->pid, getpid());
    atomic_store(&e->state, CC_PS_RUNNING);
    return 0;
  }
  if (pid < 0)
    cc_proctab_free(slot);
  else
    atomic_store(&e->pid, pid);
  return pid;
}

/* A process of fork_counted's was reaped: its entries go. */
static inline void reaped(pid_t pid) {
  cc__deadlock_forget_pid(pid);
  cc_procent *e = cc_proctab_find(pid);
  if (e) {
    cc__ready_forget_slot(cc_proctab_slot_of(e));
    cc_proctab_free(cc_proctab_slot_of(e));
  }
}

/* Starts a thread of this process, counted as one (see fork_counted). */
static inline int thread_start(pthread_t *t, void *(*fn)(void *), void *arg) {
  cc_proc_threads_add(1);
  int r = pthread_create(t, NULL, fn, arg);
  if (r)
    cc_proc_threads_add(-1);
  return r;
}

/* Joins a thread of thread_start's. */
static inline void thread_join(pthread_t t) {
  pthread_join(t, NULL);
  cc_proc_threads_add(-1);
}

/* Forks a worker running fn(arg, i); its exit status is fn's return. */
static inline pid_t spawn(int (*fn)(void *, int), void *arg, int i) {
  pid_t pid = fork_counted();
  if (pid == 0)
    _exit(fn(arg, i));
  assert_true(pid > 0);
  return pid;
}

/* Waits for a worker at most `seconds`; kills it and fails the test after
 * that. Returns its exit status (or 128 + signal). */
static inline int await(pid_t pid, double seconds) {
  int64_t end = cc_now() + (int64_t)(seconds * 1e9);
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      reaped(pid);
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (cc_now() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      reaped(pid);
      fail_msg("worker %d did not finish within %.1f s", (int)pid, seconds);
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

/* The other party of a test: every primitive is tried with it in another
 * process, in another thread of this one, and in a thread of another
 * process. fn(arg, i) runs there; its return is the party's result. */
enum { PARTY_PROCESS, PARTY_THREAD, PARTY_THREAD_OF_PROCESS, PARTY_KINDS };
static const char *const party_kind_names[PARTY_KINDS] = {"process", "thread",
                                                           "thread of a process"};

typedef struct party {
  int kind;
  pid_t pid;
  pthread_t thread;
  int (*fn)(void *, int);
  void *arg;
  int i;
  int result;
  _Atomic int begun, done;
} party;

static inline void *party_main(void *p) {
  party *x = p;
  atomic_store(&x->begun, 1);
  x->result = x->fn(x->arg, x->i);
  atomic_store(&x->done, 1);
  return NULL;
}

/* Starts fn(arg, i) as a party of that kind (freed by party_join). */
static inline party *party_start(int kind, int (*fn)(void *, int), void *arg, int i) {
  party *x = calloc(1, sizeof *x);
  assert_non_null(x);
  x->kind = kind;
  x->fn = fn;
  x->arg = arg;
  x->i = i;
  if (kind == PARTY_THREAD) {
    assert_int_equal(thread_start(&x->thread, party_main, x), 0);
    /* Begun before anything else forks: a child forked while a thread is
     * still in its start inherits the locks it holds there (the sanitizer's
     * allocator's, under ASan), and deadlocks on them. */
    while (!atomic_load(&x->begun))
      sched_yield();
    return x;
  }
  x->pid = fork_counted();
  assert_true(x->pid >= 0);
  if (x->pid == 0) {
    if (kind == PARTY_THREAD_OF_PROCESS) {
      pthread_t t;
      if (thread_start(&t, party_main, x) != 0)
        _exit(126);
      thread_join(t);
      _exit(x->result);
    }
    _exit(fn(arg, i));
  }
  return x;
}

/* Waits for the party at most `seconds` (then the test fails; a process
 * is killed) and returns its result. */
static inline int party_join(party *x, double seconds) {
  int r;
  if (x->kind == PARTY_THREAD) {
    int64_t end = cc_now() + (int64_t)(seconds * 1e9);
    while (!atomic_load(&x->done)) {
      if (cc_now() > end)
        fail_msg("a thread party did not finish within %.1f s", seconds);
      cc_sleep_until(cc_now() + MS);
    }
    thread_join(x->thread);
    r = x->result;
  } else {
    r = await(x->pid, seconds);
  }
  free(x);
  return r;
}

/* A child that waits to be killed, but never outlives a broken test. */
static inline _Noreturn void idle_child(void) {
  alarm(30);
  for (;;)
    pause();
}

/* How long fn(arg) took, in milliseconds. */
static inline double elapsed_ms(int64_t start) {
  return (double)(cc_now() - start) / 1e6;
}

#endif
