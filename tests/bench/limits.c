/* limits - what the machine allows, in plain C with no Lua: the bound of the
 * performance table. Prints one JSON line per operation: {"op":, "ops":}. */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void report(const char *op, long n, double secs) {
  printf("{\"op\": \"%s\", \"ops\": %.0f}\n", op, (double)n / secs);
  fflush(stdout);
}

static void *shared(size_t n) {
  return mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
}

static void fwait(_Atomic uint32_t *w, uint32_t v) {
  while (atomic_load(w) == v)
    syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void fwake(_Atomic uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0); }

static void fork_wait(long n) {
  double t0 = now();
  for (long i = 0; i < n; i++) {
    pid_t p = fork();
    if (p == 0)
      _exit(0);
    waitpid(p, NULL, 0);
  }
  report("start_join", n, now() - t0);
}

/* A pipe(2), as concur's and CPython's one-way Pipe. */
static void pipe_oneway(long n) {
  int sv[2];
  if (pipe(sv) != 0)
    return;
  char b[16] = {0};
  double t0 = now();
  if (fork() == 0) {
    for (long i = 0; i < n; i++)
      if (write(sv[1], b, 8) != 8)
        _exit(1);
    _exit(0);
  }
  long got = 0;
  char buf[65536];
  while (got < n * 8) {
    ssize_t k = read(sv[0], buf, sizeof buf);
    if (k <= 0)
      break;
    got += k;
  }
  wait(NULL);
  report("pipe_oneway", n, now() - t0);
}

static void pipe_rtt(long n) {
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  char b[16] = {0};
  if (fork() == 0) {
    for (long i = 0; i < n; i++)
      if (read(sv[1], b, 8) != 8 || write(sv[1], b, 8) != 8)
        _exit(1);
    _exit(0);
  }
  double t0 = now();
  for (long i = 0; i < n; i++)
    if (write(sv[0], b, 8) != 8 || read(sv[0], b, 8) != 8)
      break;
  report("pipe_rtt", n, now() - t0);
  wait(NULL);
}

/* Event-style ping-pong on two futex words in shared memory. */
static void futex_rtt(long n) {
  _Atomic uint32_t *w = shared(4096);
  atomic_store(&w[0], 0);
  atomic_store(&w[1], 0);
  if (fork() == 0) {
    for (uint32_t i = 0; i < (uint32_t)n; i++) {
      fwait(&w[0], i);
      atomic_store(&w[1], i + 1);
      fwake(&w[1]);
    }
    _exit(0);
  }
  double t0 = now();
  for (uint32_t i = 0; i < (uint32_t)n; i++) {
    atomic_store(&w[0], i + 1);
    fwake(&w[0]);
    fwait(&w[1], i);
  }
  report("event_rtt", n, now() - t0);
  wait(NULL);
}

/* A single-producer, single-consumer ring of 8-byte items in shared memory. */
static void ring(long n) {
  enum { CAP = 1 << 16 };
  struct r {
    _Atomic uint64_t head, tail;
    uint64_t items[CAP];
  } *q = shared(sizeof(struct r));
  double t0 = now();
  if (fork() == 0) {
    for (uint64_t i = 0; i < (uint64_t)n; i++) {
      while (atomic_load_explicit(&q->tail, memory_order_relaxed) -
                 atomic_load_explicit(&q->head, memory_order_acquire) == CAP)
        ;
      q->items[i % CAP] = i;
      atomic_store_explicit(&q->tail, i + 1, memory_order_release);
    }
    _exit(0);
  }
  uint64_t sum = 0;
  for (uint64_t i = 0; i < (uint64_t)n; i++) {
    while (atomic_load_explicit(&q->tail, memory_order_acquire) == i)
      ;
    sum += q->items[i % CAP];
    atomic_store_explicit(&q->head, i + 1, memory_order_release);
  }
  wait(NULL);
  report("queue_int", n, now() - t0);
  if (sum == 1)
    puts("");
}

static void mutex(long n) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutex_t *m = shared(sizeof *m);
  pthread_mutex_init(m, &a);
  double t0 = now();
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(m);
    pthread_mutex_unlock(m);
  }
  report("lock", n, now() - t0);
}

/* Value increment: a shared int under a process-shared mutex, from two
 * processes at once. */
static void value_incr(long n) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  struct {
    pthread_mutex_t m;
    volatile int value;
  } *v = shared(sizeof *v);
  pthread_mutex_init(&v->m, &a);
  double t0 = now();
  pid_t p = fork();
  for (long i = 0; i < n / 2; i++) {
    pthread_mutex_lock(&v->m);
    v->value = v->value + 1;
    pthread_mutex_unlock(&v->m);
  }
  if (p == 0)
    _exit(0);
  waitpid(p, NULL, 0);
  if (v->value != (int)(n / 2 * 2))
    fprintf(stderr, "limits: value_incr counted %d of %ld\n", v->value, n / 2 * 2);
  report("value_incr", n, now() - t0);
}

static void *noop(void *x) { return x; }

static void thread_start_join(long n) {
  double t0 = now();
  for (long i = 0; i < n; i++) {
    pthread_t t;
    pthread_create(&t, NULL, noop, NULL);
    pthread_join(t, NULL);
  }
  report("thread_start_join", n, now() - t0);
}

int main(void) {
  fork_wait(2000);
  pipe_oneway(1000000);
  pipe_rtt(30000);
  futex_rtt(30000);
  ring(20000000);
  mutex(20000000);
  value_incr(20000000);
  thread_start_join(20000);
  return 0;
}
