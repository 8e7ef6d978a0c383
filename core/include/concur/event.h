/* event - Event: a flag that processes and threads wait for */
#ifndef CONCUR_EVENT_H
#define CONCUR_EVENT_H

#include "concur/arena.h"

#include <stdatomic.h>
#include <stdint.h>

typedef struct cc_event {
  cc_obj hdr;
  _Atomic uint32_t flag;
  _Atomic uint32_t waiters;
} cc_event;

extern const cc_type cc_event_type;

/* A new, clear event with one reference owned by the caller; NULL when the
 * arena is full. */
cc_event *cc_event_new(void);
/* Sets the flag and wakes every waiter. */
void cc_event_set(cc_event *e);
void cc_event_clear(cc_event *e);
int cc_event_is_set(cc_event *e);
/* Waits until the flag is set: 0, CC_ETIMEDOUT or CC_EINTR. */
int cc_event_wait(cc_event *e, int64_t deadline);

#endif
