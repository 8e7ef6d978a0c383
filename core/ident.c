/* ident - who the caller is: its process and thread ids, name and place; whether a thread lives */
#include "concur/ident.h"
#include "concur/wait.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Threads: the tid is per thread; the pid is the process's, the same for
 * all of its threads, and written only with the same value (or 0 in a new
 * child, which has one thread). */
static _Thread_local int cached_tid;
static int cached_pid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
/* Threads: each thread's name is its own; the hook is set before a second
 * thread exists and only read after. */
static _Thread_local char my_name[CC_IDENT_NAME_MAX] = "MainThread";
static void (*where_hook)(char *buf, size_t n);

void cc_ident_set_name(const char *name) { snprintf(my_name, sizeof my_name, "%s", name); }

const char *cc_ident_name(void) { return my_name; }

void cc_ident_set_where(void (*where)(char *buf, size_t n)) { where_hook = where; }

void cc_ident_where(char *buf, size_t n) {
  if (n)
    buf[0] = '\0';
  if (where_hook && n)
    where_hook(buf, n);
}

static void forget(void) {
  cached_tid = 0;
  cached_pid = 0;
}

static void register_atfork(void) { pthread_atfork(NULL, NULL, forget); }

int cc_tid(void) {
  if (!cached_tid) {
    pthread_once(&atfork_once, register_atfork);
    cached_tid = gettid();
  }
  return cached_tid;
}

int cc_pid(void) {
  if (!cached_pid) {
    pthread_once(&atfork_once, register_atfork);
    cached_pid = getpid();
  }
  return cached_pid;
}

void cc__tid_reset(void) { forget(); }

int cc__tid_alive(int tid) {
  /* Scheduled, a task is over when the scheduler says so: a killed one
   * may take a while longer to go from the kernel's tables. */
  if (cc__wait_sched) {
    int a = cc__wait_sched->tid_alive(tid);
    if (a >= 0)
      return a;
  }
  int c = cc__tid_state(tid);
  return c == '?' || (c && c != 'Z' && c != 'X' && c != 'x');
}

int cc__tid_state(int tid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", tid);
  /* Only "no such task" says it is gone: out of descriptors (EMFILE), a
   * holder that lives would be taken over. */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno != ENOENT && errno != ESRCH ? '?' : 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int err = errno;
  close(fd);
  if (n < 0)
    return err != ESRCH && err != ENOENT ? '?' : 0;
  if (n == 0)
    return 0;
  buf[n] = '\0';
  /* The state follows the command name, which is in parentheses and may
   * itself contain ") ". */
  char *p = strrchr(buf, ')');
  return p && p[1] == ' ' ? (unsigned char)p[2] : 0;
}

void cc_life_init(cc_life *t) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&t->m, &a);
  pthread_mutexattr_destroy(&a);
}

void cc_life_fini(cc_life *t) { pthread_mutex_destroy(&t->m); }

int cc_life_claim(cc_life *t) {
  int r = pthread_mutex_trylock(&t->m);
  if (r == EOWNERDEAD) {
    pthread_mutex_consistent(&t->m);
    r = 0;
  }
  return r == 0;
}

/* Unlocking also takes the mutex off the thread's robust list, which the
 * kernel reads when the thread ends: a token must be let go of before its
 * memory is freed or reused. */
void cc_life_drop(cc_life *t) { pthread_mutex_unlock(&t->m); }

int cc_life_gone(cc_life *t) {
  if (!cc_life_claim(t))
    return 0;
  cc_life_drop(t);
  return 1;
}
