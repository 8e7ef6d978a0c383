/* types - the one list of the types of objects in the arena */
#ifndef CONCUR_TYPES_H
#define CONCUR_TYPES_H

#include "concur/arena.h"

/* Every type whose objects live in the arena, by its cc_type's name, in
 * the order of their tags: cc_runtime_init registers them in this order
 * before any fork, so that a tag means one type in every process. A new
 * type is one line here (and its cc_type in its own file). */
#define CC_TYPE_MAP(X)                                                         \
  X(cc_lock_type)   /* Lock: lock.c */                                         \
  X(cc_rlock_type)  /* RLock */                                                \
  X(cc_sem_type)    /* Semaphore: sem.c */                                     \
  X(cc_bsem_type)   /* BoundedSemaphore */                                     \
  X(cc_event_type)  /* Event: event.c */                                       \
  X(cc_cond_type)   /* Condition: cond.c */                                    \
  X(cc_barrier_type) /* Barrier: barrier.c */                                  \
  X(cc_queue_type)  /* Queue: queue.c */                                       \
  X(cc_jqueue_type) /* JoinableQueue */                                        \
  X(cc_squeue_type) /* SimpleQueue */                                          \
  X(cc_value_type)  /* Value: shm.c */                                         \
  X(cc_array_type)  /* Array */                                                \
  X(cc_dict_type)   /* a Manager's dict: dict.c */                             \
  X(cc_list_type)   /* a Manager's list */                                     \
  X(cc_namespace_type) /* a Manager's Namespace */                        \
  X(cc_rwlock_type) /* RWLock: rwlock.c */

#define CC__TYPE_DECL(sym) extern const cc_type sym;
CC_TYPE_MAP(CC__TYPE_DECL)
#undef CC__TYPE_DECL

#endif
