/* gil - the global interpreter lock of a process's threads */
#ifndef CONCUR_GIL_H
#define CONCUR_GIL_H

#include <stdint.h>

/* DESIGN (after CPython's): one thread at a time holds the GIL. A thread that
 * wants it waits one switch interval, then sets a drop request and pokes the
 * holder (a callback: the bindings send it a signal, whose handler sets a
 * one-shot interpreter hook, so that no hook slows the interpreter down the
 * rest of the time); the hook calls cc_gil_check, which sees the request,
 * lets go and waits until somebody else has taken the GIL (so that it cannot
 * take it straight back). A release wakes one waiter. Blocking calls let go
 * of the GIL while they wait. The GIL is per process (a forked child starts
 * holding it, alone). */

/* Turns the GIL on, the caller holding it. Once on, it stays on. */
void cc_gil_enable(int64_t switch_interval_ns);
int cc_gil_enabled(void);
void cc_gil_acquire(void);
void cc_gil_release(void);
/* True when the calling thread holds it. */
int cc_gil_held(void);
/* True when the calling thread holds it and another thread waits for it:
 * a spin would only keep that thread waiting. */
int cc_gil_wanted(void);
/* fn(tid) is called by a thread that has waited a whole interval for the
 * GIL, with the holder's tid: it must make the holder call cc_gil_check
 * soon. It runs in the waiting thread. */
void cc_gil_set_poke(void (*fn)(int tid));
/* For the interpreter's hook: gives the GIL away if a waiter asked. */
void cc_gil_check(void);
/* In a new child: the calling thread holds it and nobody waits. */
void cc_gil_after_fork(void);
/* From now on blocking calls keep the GIL (the end of a process). */
void cc_gil_freeze(void);

#endif
