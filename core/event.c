/* event - Event: a flag that processes and threads wait for */
#include "concur/event.h"
#include "concur/error.h"
#include "concur/ready.h"
#include "concur/trace.h"
#include "concur/wait.h"

#include <stdint.h>

static int ready(const cc_obj *o) { return atomic_load(&((const cc_event *)o)->flag) != 0; }

const cc_type cc_event_type = {.name = "Event", .size = sizeof(cc_event), .ready = ready};

cc_event *cc_event_new(void) { return cc_obj_new(&cc_event_type); }

void cc_event_set(cc_event *e) {
  atomic_store(&e->flag, 1);
  if (CC_TRACING())
    cc__trace_event(CC_TRACE_SET, &e->hdr, 0, 0, NULL);
  if (atomic_load(&e->waiters))
    cc_futex_wake(&e->flag, INT32_MAX);
  cc_ready_ring();
}

void cc_event_clear(cc_event *e) {
  atomic_store(&e->flag, 0);
  if (CC_TRACING())
    cc__trace_event(CC_TRACE_CLEAR, &e->hdr, 0, 0, NULL);
}
int cc_event_is_set(cc_event *e) { return atomic_load(&e->flag) != 0; }

int cc_event_wait(cc_event *e, int64_t deadline) {
  /* Setters often follow within microseconds: look a little before
   * sleeping (a wake-up on another core costs tens of microseconds). */
  cc_spin_while(&e->flag, 0, deadline);
  if (atomic_load(&e->flag))
    return 0;
  cc_waiting w = {.kind = CC_WAIT_WAIT, .obj = &e->hdr, .deadline = deadline};
  cc_wait_begin(&w);
  int r = 0;
  while (!atomic_load(&e->flag)) {
    atomic_fetch_add(&e->waiters, 1);
    r = cc_futex_wait(&e->flag, 0, deadline);
    atomic_fetch_sub(&e->waiters, 1);
    if (r == CC_ETIMEDOUT || r == CC_EINTR || r == CC_EDEADLK) {
      r = atomic_load(&e->flag) ? 0 : r;
      break;
    }
    r = 0;
  }
  cc_wait_end(&w);
  return r;
}
