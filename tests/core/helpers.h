/* helpers - what the core tests share: a runtime, forked workers with a timeout */
#ifndef CONCUR_TEST_HELPERS_H
#define CONCUR_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "concur/proc.h"
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

/* Forks a worker running fn(arg, i); its exit status is fn's return. */
static inline pid_t spawn(int (*fn)(void *, int), void *arg, int i) {
  fflush(NULL);
  pid_t pid = fork();
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
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (cc_now() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      fail_msg("worker %d did not finish within %.1f s", (int)pid, seconds);
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
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
