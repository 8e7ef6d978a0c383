/* ident - who the caller is: its process and thread ids, name and place; whether a thread lives */
#ifndef CONCUR_IDENT_H
#define CONCUR_IDENT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Words that name their owner (a lock's, a waiter's) hold its kernel tid
 * in these bits: 30 bits, as Linux's tids (pid_max is at most 2^22). */
#define CC_TID_MASK 0x3fffffffu

/* The calling thread's kernel id, cached per thread. */
int cc_tid(void);
/* The calling process's id, cached: getpid() is a system call in glibc, and
 * a pool asks for it on every task. Both are forgotten in a new child,
 * whoever forks it (concur, a test, a library): it would otherwise own its
 * parent's locks. */
int cc_pid(void);
/* Forgets the cached ids (in a new child). */
void cc__tid_reset(void);
/* True when the thread (or process) tid exists and is not a zombie (reads
 * /proc: microseconds; for what is looked at rarely). */
int cc__tid_alive(int tid);
/* The state letter of /proc/TID/stat ('R', 'S', 'Z', ...), 0 when the task
 * is gone, '?' when it cannot be read (out of descriptors). */
int cc__tid_state(int tid);

/* The calling thread's name, for reports and warnings ("MainThread" until
 * set); copied, cut at CC_IDENT_NAME_MAX - 1 bytes. */
#define CC_IDENT_NAME_MAX 32
void cc_ident_set_name(const char *name);
const char *cc_ident_name(void);
/* Where the calling thread is, in words ("deadlock.lua:14"), written into
 * buf ("" when nowhere is said). The hook is set by the layer above (the
 * Lua bindings) before a second thread exists, and is called only by a
 * thread that may run it (one holding the GIL). */
void cc_ident_set_where(void (*where)(char *buf, size_t n));
void cc_ident_where(char *buf, size_t n);

/* A token a thread holds while it is in a shared place (a Condition's wait,
 * a Barrier): a robust process-shared mutex in the arena, which the kernel
 * lets go when its holder dies, so that others find out in nanoseconds,
 * with no system call, whether it is still there. Claims and looks at one
 * token are made under the same lock (a look takes the token for an
 * instant). */
typedef struct cc_life {
  pthread_mutex_t m;
} cc_life;

void cc_life_init(cc_life *t);
void cc_life_fini(cc_life *t);
/* Takes a free token for the calling thread: true, or false when it is held. */
int cc_life_claim(cc_life *t);
/* Lets go of a token the calling thread holds. */
void cc_life_drop(cc_life *t);
/* True when nobody holds the token (its holder let go of it or died); it is
 * then free to claim. */
int cc_life_gone(cc_life *t);

#endif
