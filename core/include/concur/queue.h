/* queue - Queue, JoinableQueue and SimpleQueue: messages in shared segments */
#ifndef CONCUR_QUEUE_H
#define CONCUR_QUEUE_H

#include "concur/arena.h"
#include "concur/lock.h"
#include "concur/msg.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A segment of a queue: a block of the arena whose records lie one after
 * another. Full, it links the next one. */
typedef struct cc_qseg {
  uint32_t size;         /* bytes of the block, this header included */
  _Atomic uint32_t next; /* the segment after this one, once linked */
} cc_qseg;

/* head and tail pack a message count (high 32 bits) with a record's position
 * (low 32 bits, cc_arena_pos), so that taking or adding a message is
 * committed by one 64-bit store. */
typedef struct cc_queue {
  cc_obj hdr;
  cc_lock lock;                 /* guards what follows; its owner may die */
  _Atomic uint64_t head;        /* the first record */
  _Atomic uint64_t tail;        /* where the next record goes */
  uint32_t hseg, tseg;          /* the segments of head and tail */
  uint32_t fresh;               /* a segment linked by a put not yet committed */
  uint32_t spare;               /* a segment kept for the next link */
  uint32_t maxsize;             /* 0: unbounded */
  uint32_t joinable;
  _Atomic uint32_t put_seq;     /* bumped after each put: getters sleep on it */
  _Atomic uint32_t get_seq;     /* bumped after each get: putters sleep on it */
  _Atomic uint32_t get_waiters;   /* sleeping getters no wake-up reached */
  _Atomic uint32_t put_waiters;   /* the same for putters */
  _Atomic uint32_t unfinished;  /* JoinableQueue: puts not yet task_done */
  _Atomic uint32_t join_waiters;
} cc_queue;

extern const cc_type cc_queue_type;
extern const cc_type cc_jqueue_type;
extern const cc_type cc_squeue_type;

enum { CC_QUEUE_PLAIN, CC_QUEUE_JOINABLE, CC_QUEUE_SIMPLE };

/* A new queue of the given kind with one reference owned by the caller;
 * maxsize 0 is unbounded (it grows until the arena is full). NULL when the
 * arena is full. */
cc_queue *cc_queue_new(int kind, uint32_t maxsize);
/* Adds a copy of m (its refs now belong to the queue) before the deadline.
 * 0, CC_EFULL (bounded and still full at the deadline), CC_EARENAFULL (no
 * room to grow; m's refs stay the caller's), CC_EINTR. */
int cc_queue_put(cc_queue *q, const cc_msg *m, int64_t deadline);
/* Takes the oldest message into m (its refs become the caller's) before
 * the deadline. 0, CC_EEMPTY, CC_EINTR, CC_ENOMEM (m could not grow). */
int cc_queue_get(cc_queue *q, cc_msg *m, int64_t deadline);
uint32_t cc_queue_qsize(cc_queue *q);
/* JoinableQueue: one put is done. CC_EVALUE when called more often than put. */
int cc_queue_task_done(cc_queue *q);
/* Waits until every put was task_done: 0, CC_ETIMEDOUT, CC_EINTR. */
int cc_queue_join(cc_queue *q, int64_t deadline);

#endif
