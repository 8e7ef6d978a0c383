/* sem - Semaphore and BoundedSemaphore between processes and threads */
#include "concur/sem.h"
#include "concur/error.h"
#include "concur/ready.h"
#include "concur/trace.h"
#include "concur/wait.h"

static int ready(const cc_obj *o) { return atomic_load(&((const cc_sem *)o)->value) != 0; }

const cc_type cc_sem_type = {.name = "Semaphore", .size = sizeof(cc_sem), .ready = ready};
const cc_type cc_bsem_type = {.name = "BoundedSemaphore", .size = sizeof(cc_sem), .ready = ready};

cc_sem *cc_sem_new(uint32_t value, int bounded) {
  cc_sem *s = cc_obj_new(bounded ? &cc_bsem_type : &cc_sem_type);
  if (s)
    cc_sem_init(s, value, bounded);
  return s;
}

void cc_sem_init(cc_sem *s, uint32_t value, int bounded) {
  atomic_store(&s->value, value);
  atomic_store(&s->waiters, 0);
  s->bound = value;
  s->bounded = (uint32_t)bounded;
}

int cc_sem_trywait(cc_sem *s) {
  uint32_t v = atomic_load(&s->value);
  while (v > 0)
    if (atomic_compare_exchange_weak(&s->value, &v, v - 1)) {
      /* Traced: the value it made, said just after; two changes at once
       * may be said in the other order. */
      if (CC_TRACING())
        cc__trace_event(CC_TRACE_VALUE, &s->hdr, v - 1, 0, NULL);
      return 0;
    }
  return CC_ETIMEDOUT;
}

int cc_sem_wait(cc_sem *s, int64_t deadline) {
  if (cc_sem_trywait(s) == 0)
    return 0;
  cc_waiting w = {.kind = CC_WAIT_ACQUIRE, .obj = &s->hdr, .deadline = deadline};
  cc_wait_begin(&w);
  int r;
  for (;;) {
    /* The sleeper is counted before it sleeps; the futex compares the value,
     * so a post between the two is never missed (both sides are seq_cst). */
    r = cc_futex_wait_counted(&s->value, 0, &s->waiters, deadline);
    if (r == CC_ETIMEDOUT || r == CC_EINTR || r == CC_EDEADLK)
      break;
    if (cc_sem_trywait(s) == 0) {
      r = 0;
      break;
    }
  }
  cc_wait_end(&w);
  return r;
}

int cc_sem_post(cc_sem *s) { return cc_sem_post_n(s, 1); }

int cc_sem_post_n(cc_sem *s, uint32_t n) {
  uint32_t v = atomic_load(&s->value);
  uint32_t most = s->bounded ? s->bound : CC_SEM_MAX;
  do {
    if (n > most || v > most - n)
      return CC_EVALUE;
  } while (!atomic_compare_exchange_weak(&s->value, &v, v + n));
  if (CC_TRACING())
    cc__trace_event(CC_TRACE_VALUE, &s->hdr, v + n, 0, NULL);
  cc_futex_wake_some(&s->value, &s->waiters, n);
  cc_ready_ring();
  return 0;
}

uint32_t cc_sem_value(cc_sem *s) { return atomic_load(&s->value); }
