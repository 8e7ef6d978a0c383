/* trace - what every thread of a run did and when, written as Chrome trace-event JSON */
#ifndef CONCUR_TRACE_H
#define CONCUR_TRACE_H

#include "concur/wait.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * DESIGN. A traced run has one buffer, a shared anonymous mapping that the
 * supervisor makes before it forks the run, so that every process of the
 * run writes into it and whatever a process wrote survives its death (a
 * kill, a crash): the supervisor, which outlives them all, turns it into
 * JSON at the end. The buffer is cut into chunks of CC_TRACE_CHUNK_BYTES bytes;
 * each thread claims one at a time with one atomic add and fills it with
 * fixed records of its own, no lock and no system call: a record costs a
 * clock read and a few stores. A record's kind is written last, so a
 * thread killed in the middle of one leaves a record of kind 0, where the
 * reader stops reading that chunk. When the buffer is full, records are
 * counted and dropped, and the JSON says how many.
 *
 * Times are CLOCK_MONOTONIC, the one clock of every process of the
 * machine; the JSON gives them in microseconds from the start of the run.
 * Spans (a wait that slept, a lock held, a sleep, a pool task) are written
 * when they end, with their start; waits and holds are also said when they
 * begin, so that those a deadlock or a kill never ended are in the trace,
 * up to the end of their thread. Flows join a FUTEX_WAKE to the wait it
 * ended: the waker numbers its wake-up and leaves the number in a small
 * table keyed by the futex word, where the woken thread finds it.
 *
 * A lock's hold costs one record: the one written when it is taken
 * becomes its hold when it is given, if nothing came between (else a
 * second is written); holds are timed in the processor's own ticks where
 * they are steady (x86's invariant TSC, read in a third of the time of a
 * clock read), turned into the clock's time by the writer.
 *
 * Off (no --trace), every call site costs one load and a branch never
 * taken: cc__trace_on is 0.
 */

/* What a record is: its name in the JSON's code, its phase ('X' span, 'i'
 * instant, 'C' counter, 0 for what is not an event of its own). */
#define CC_TRACE_KINDS(X)                                                      \
  X(CHUNK, 0)   /* a chunk's first record: a = pid, b = tid */                \
  X(TEXT, 0)    /* a string for the next record: a = its length */            \
  X(PROCESS, 0) /* the process's name (the text) */                           \
  X(THREAD, 0)  /* the thread's name (the text); its life begins */           \
  X(NAMED, 0)   /* an object's name (the text) */                             \
  X(END, 0)     /* the thread's life ends */                                  \
  X(BEGIN, 0)   /* a wait begins to sleep: its WAIT, from ts, follows */      \
  X(TAKE, 0)    /* a lock taken: its HOLD, from ts, follows */                \
  X(GIVE, 0)    /* a lock given by another thread than its holder */           \
  X(WAIT, 'X')  /* a wait that slept: sub = CC_WAIT_*, b = flow in */         \
  X(HOLD, 'X')  /* a lock held */                                             \
  X(SLEEP, 'X') /* concur.sleep */                                            \
  X(GIL, 'X')   /* a wait for the GIL */                                      \
  X(TASK, 'X')  /* a pool task (the text: what runs) */                       \
  X(WAKE, 'X')  /* a FUTEX_WAKE that woke b >> 32 waiters: flow b & ~0u */     \
  X(FORK, 'i')  /* a process started: a = its pid (the text: its name) */     \
  X(EXIT, 'i')  /* the process ends: a = its exit code */                     \
  X(REAP, 'i')  /* a child reaped: a = its pid, b = its exit code */          \
  X(SET, 'i')   /* an Event set */                                            \
  X(CLEAR, 'i') /* an Event cleared */                                        \
  X(PUT, 'i')   /* a Queue put: a = its length after */                       \
  X(GET, 'i')   /* a Queue get: a = its length after */                       \
  X(VALUE, 'C') /* a Semaphore's value: a */

enum {
#define CC__TRACE_KIND(name, ph) CC_TRACE_##name,
  CC__TRACE_PAD,
  CC_TRACE_KINDS(CC__TRACE_KIND)
#undef CC__TRACE_KIND
  CC_TRACE_KIND_COUNT
};

/* One record: 32 bytes. `a` is a span's duration or an instant's value. */
typedef struct cc__trace_rec {
  int64_t ts; /* when (a span: its start) */
  int64_t a, b;
  uint32_t obj; /* the object's serial, or 0 */
  uint8_t type; /* the object's type tag, or 0 */
  uint8_t sub;
  _Atomic uint16_t kind; /* written last */
} cc__trace_rec;

#define CC_TRACE_CHUNK_BYTES 16384
/* The buffer's size when none is given: 8 Mi records. Untouched pages cost
 * nothing. */
#define CC_TRACE_SIZE_DEFAULT (256u << 20)

/* Set in every process of a traced run (inherited through fork). Hidden:
 * read with one load, not through the global offset table. */
extern int cc__trace_on __attribute__((visibility("hidden")));
/* The processor's time stamp counter is steady (set by cc_trace_init). */
extern int cc__trace_tsc __attribute__((visibility("hidden")));
/* The branch every place that records takes: not taken while off. */
#define CC_TRACING() __builtin_expect(cc__trace_on, 0)

/* The time of a hold's ends: ticks of the TSC, or the clock's time. */
static inline int64_t cc__trace_ticks(void) {
#if defined(__x86_64__)
  if (cc__trace_tsc)
    return (int64_t)__builtin_ia32_rdtsc();
#endif
  return cc_now();
}

/* Makes the buffer (size bytes, 0 for the default). Call once, before the
 * first fork of the run: the processes forked after share it. 0, CC_EVALUE
 * (size too small), CC_ESYS (mmap). */
int cc_trace_init(size_t size);
/* Turns tracing on in the calling process and every one it forks after
 * (not in the supervisor, which only writes the JSON). 0, or CC_EVALUE
 * without a buffer. */
int cc_trace_start(void);
/* Turns tracing off and unmaps the buffer (tests that make several, with
 * no other thread that writes). */
void cc_trace_fini(void);

/* Writes the trace as JSON to f: every record so far, with the names of
 * processes, threads and objects. Counters go on the track of main_pid's
 * process (one track for each, whoever changed it). Call when nobody else
 * writes (every process of the run has ended). Returns the number of
 * events written, CC_ESYS when f fails, CC_ENOMEM, or CC_EVALUE with no
 * buffer. */
long cc_trace_write(FILE *f, int main_pid);
/* Records dropped because the buffer was full. */
uint64_t cc_trace_dropped(void);

/* Emitters: each writes one record of the calling thread, and does nothing
 * when tracing is off or the buffer is full. Objects are cc_obj pointers
 * (or NULL), names NUL-terminated strings (copied). */
struct cc_obj;
/* The calling process is `name` (a new child names itself first). */
void cc__trace_process(const char *name);
/* The calling thread's life begins, as `name`; cc__trace_end ends it. */
void cc__trace_thread(const char *name);
void cc__trace_end(void);
/* o was given a name. */
void cc__trace_named(const struct cc_obj *o);
void cc__trace_span(int kind, const struct cc_obj *o, int64_t since, const char *text);
/* lock.c's: o's lock was taken at `ticks`; and given at `given` (ticks 0:
 * by another thread than the one that took it). */
void cc__trace_take(const struct cc_obj *o, int64_t ticks);
void cc__trace_give(const struct cc_obj *o, int64_t ticks, int64_t given);
void cc__trace_event(int kind, const struct cc_obj *o, int64_t a, int64_t b, const char *text);
/* The time now, for a span's start, or 0 when tracing is off. */
int64_t cc__trace_now(void);

#endif
