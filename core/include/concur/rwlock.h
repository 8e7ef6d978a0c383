/* rwlock - RWLock: many readers or one writer, between processes and threads */
#ifndef CONCUR_RWLOCK_H
#define CONCUR_RWLOCK_H

#include "concur/arena.h"
#include "concur/lock.h"

#include <stdatomic.h>
#include <stdint.h>

/* How many threads may read it at once, and how many may wait to write. */
#define CC_RWLOCK_MAX 256

/*
 * DESIGN. The state (the writer, the readers, who waits) changes under a
 * Lock of its own, `mu`, held for a few instructions. Whoever must wait
 * reads the sequence number `seq` under it, lets it go and sleeps on that
 * word, which every release bumps. Each holder is known by its tid (the
 * writer's in `writer`, each reader's in a slot of readers[0..nreaders)),
 * so a waiter that has slept a while looks whether they are alive, and
 * takes over what a dead one held, as a Lock's waiter does
 * (CC_EOWNERDEAD). A writer waits for the readers there are to leave; with
 * writer preference, readers that come while a writer waits wait behind
 * it (a writer that dies while it waits is counted out). The first to take
it after a holder died is told so. `holder` is the writer's tid, or the first reader's: the one a
 * waiter is said to wait for (a deadlock's wait-for graph has one edge per
 * waiter). A holder killed inside `mu` leaves at worst a dead or repeated
 * reader slot, which the next holder of `mu` mends.
 */
typedef struct cc_rwlock {
  cc_obj hdr;
  cc_lock mu;              /* the state's own lock */
  _Atomic uint32_t seq;    /* bumped at every change waiters may want */
  _Atomic uint32_t holder; /* the writer's tid, else the first reader's, else 0 */
  uint32_t writer;         /* the writer's tid, or 0 */
  int32_t writer_pid;
  uint32_t nreaders;
  uint32_t waiting;         /* threads asleep on seq, or about to be */
  uint32_t writers_waiting; /* of them, writers: their tids in wwait[] */
  uint32_t prefer_writers;
  int32_t orphan;       /* the pid of a holder that died, for the next taker */
  int32_t dead_pid;     /* the holder that died, after CC_EOWNERDEAD */
  int64_t writer_since; /* traced: when the writer took it */
  struct {
    int32_t tid, pid;
    int64_t since; /* traced: when it took it */
  } readers[CC_RWLOCK_MAX];
  int32_t wwait[CC_RWLOCK_MAX]; /* the writers waiting */
} cc_rwlock;

extern const cc_type cc_rwlock_type;

/* A new RWLock with one reference owned by the caller; NULL when the arena
 * is full. prefer_writers: readers that come while a writer waits wait
 * behind it (else they read, and a writer waits until none reads). */
cc_rwlock *cc_rwlock_new(int prefer_writers);
/* Takes it to read (others may read too) or to write (alone) before the
 * deadline (0: a try). 0; CC_EOWNERDEAD when a holder that died was taken
 * over to get it (the caller has it; cc_rwlock_dead_owner says whose it
 * was); CC_ETIMEDOUT; CC_EINTR; CC_EDEADLK (no deadline, and a deadlock
 * with no supervisor, as a Lock's; also at once when the calling thread
 * holds it already, as it would wait for itself); CC_ELIMIT when CC_RWLOCK_MAX
 * threads read it (or wait to write it) already. */
int cc_rwlock_read(cc_rwlock *rw, int64_t deadline);
int cc_rwlock_write(cc_rwlock *rw, int64_t deadline);
/* Gives back what the calling thread holds: 0, or CC_ENOTOWNER when it
 * holds nothing of it. */
int cc_rwlock_release(cc_rwlock *rw);
/* The readers there are, the writers that wait, and whether a writer
 * holds it. */
uint32_t cc_rwlock_readers(cc_rwlock *rw);
uint32_t cc_rwlock_writers_waiting(cc_rwlock *rw);
int cc_rwlock_written(cc_rwlock *rw);
/* 1 when the calling thread reads it, 2 when it writes it, else 0. */
int cc_rwlock_mine(cc_rwlock *rw);
/* The pid of the process whose holder died, after CC_EOWNERDEAD. */
int cc_rwlock_dead_owner(cc_rwlock *rw);

#endif
