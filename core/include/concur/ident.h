/* ident - who the caller is: its process and thread ids, and whether a thread lives */
#ifndef CONCUR_IDENT_H
#define CONCUR_IDENT_H

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
/* True when the thread (or process) tid exists and is not a zombie. */
int cc__tid_alive(int tid);

#endif
