/* lock - Lock and RLock between processes and threads, with owner-death recovery */
#ifndef CONCUR_LOCK_H
#define CONCUR_LOCK_H

#include "concur/arena.h"
#include "concur/ident.h"

#include <stdatomic.h>
#include <stdint.h>

/* word: 0 when free, else the owner's thread id with CC_LOCK_WAITERS set
 * while somebody may sleep on it. Owner ids are kernel tids, so a holder that
 * died can be recognised by looking its tid up in /proc. */
#define CC_LOCK_WAITERS 0x80000000u
#define CC_LOCK_TID CC_TID_MASK

typedef struct cc_lock {
  cc_obj hdr;
  _Atomic uint32_t word;
  _Atomic int32_t owner_pid; /* process of the owner thread, for messages */
  uint32_t count;            /* recursion depth of an RLock's owner */
  uint16_t recursive;
  /* 0: a lock inside another object, whose order is not recorded; else
   * 1 + how many bytes before the lock its user's object begins (itself,
   * a Condition), by which lockorder.c names it. */
  uint16_t known;
  int32_t dead_pid; /* the holder that died, after CC_EOWNERDEAD */
} cc_lock;

extern const cc_type cc_lock_type;
extern const cc_type cc_rlock_type;

/* A new Lock (recursive = 0) or RLock in the arena with one reference owned by
 * the caller; NULL when the arena is full. */
cc_lock *cc_lock_new(int recursive);
/* Sets up a lock embedded in another object; its order is not recorded
 * (lockorder.h) unless cc_lock_set_known says by what its user knows it. */
void cc_lock_init(cc_lock *l, int recursive);
/* The object (l itself, or the one l is inside, at most 64 KiB before it)
 * by which l's user knows it: from now on the order in which threads take
 * l and other locks is recorded. */
void cc_lock_set_known(cc_lock *l, const cc_obj *by);

/* Acquires l before the deadline (0: try once). Returns 0; CC_EOWNERDEAD when
 * acquired from a holder that died (the caller now owns it; the protected
 * state may be inconsistent); CC_ETIMEDOUT; CC_EINTR; CC_EDEADLK when the
 * wait has no deadline, is part of a deadlock, and no supervisor ends the
 * run (deadlock.h). An RLock's owner acquires again at once. */
int cc_lock_acquire(cc_lock *l, int64_t deadline);
/* Releases l. A Lock may be released by anybody while locked (as in CPython);
 * an RLock only by its owner. CC_EVALUE when not locked, CC_ENOTOWNER when an
 * RLock is released by another thread. */
int cc_lock_release(cc_lock *l);
int cc_lock_locked(cc_lock *l);
/* True when the calling thread owns l. */
int cc_lock_is_mine(cc_lock *l);
/* The pid of the process whose holder died, after CC_EOWNERDEAD. */
int cc_lock_dead_owner(cc_lock *l);

/* Releases an RLock completely (Condition.wait), returning its depth. */
uint32_t cc__lock_release_all(cc_lock *l);
/* Acquires again to the depth returned by cc__lock_release_all. An
 * interrupt meanwhile does not stop it: it returns CC_EINTR once it holds
 * the lock again (0, CC_EOWNERDEAD, CC_ETIMEDOUT, CC_EDEADLK otherwise). */
int cc__lock_restore(cc_lock *l, uint32_t depth, int64_t deadline);

#endif
