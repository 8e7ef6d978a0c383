/* sem - Semaphore and BoundedSemaphore between processes and threads */
#ifndef CONCUR_SEM_H
#define CONCUR_SEM_H

#include "concur/arena.h"

#include <stdatomic.h>
#include <stdint.h>

typedef struct cc_sem {
  cc_obj hdr;
  _Atomic uint32_t value;
  _Atomic uint32_t waiters; /* sleepers no wake-up reached (cc_futex_wait_counted) */
  uint32_t bound; /* the start value of a BoundedSemaphore */
  uint32_t bounded;
} cc_sem;

extern const cc_type cc_sem_type;
extern const cc_type cc_bsem_type;

#define CC_SEM_MAX 0x7fffffffu

/* A new semaphore with one reference owned by the caller; NULL when the arena
 * is full. A bounded one refuses to be posted above `value`. */
cc_sem *cc_sem_new(uint32_t value, int bounded);
void cc_sem_init(cc_sem *s, uint32_t value, int bounded);
/* Takes one unit before the deadline: 0, CC_ETIMEDOUT or CC_EINTR. */
int cc_sem_wait(cc_sem *s, int64_t deadline);
/* Takes one unit if there is one: 0 or CC_ETIMEDOUT. */
int cc_sem_trywait(cc_sem *s);
/* Gives one unit back. CC_EVALUE when a bounded semaphore would exceed its
 * start value or any would exceed CC_SEM_MAX. */
int cc_sem_post(cc_sem *s);
/* Gives n units back at once, or none: CC_EVALUE as cc_sem_post. */
int cc_sem_post_n(cc_sem *s, uint32_t n);
uint32_t cc_sem_value(cc_sem *s);

#endif
