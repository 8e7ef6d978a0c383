/* proctab - the table of a run's processes and the objects each one holds */
#ifndef CONCUR_PROCTAB_H
#define CONCUR_PROCTAB_H

#include "concur/arena.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum { CC_PS_FREE, CC_PS_STARTING, CC_PS_RUNNING, CC_PS_EXITED };

/* The most limits.max_processes may be: its table fits the arena's
 * reserved room (proctab.c checks it as it compiles). */
#define CC_MAX_PROCESSES 8192
#define CC_PROC_NAME_MAX 64
#define CC_PROC_IDENT_MAX 40

/* One entry per process of the run that has not been reaped yet. Its holds
 * table is written only by the process itself, by its parent before the fork
 * and by whoever reaps it, so it needs no lock. */
typedef struct cc_procent {
  _Atomic uint32_t state;
  _Atomic int32_t pid;
  int32_t ppid;
  uint32_t daemon;
  uint32_t holds;              /* arena offset of the hold table, or 0 */
  uint32_t holds_cap;
  uint32_t holds_len;
  uint32_t nchildren;          /* children started, for names Process-1:N */
  _Atomic uint32_t threads;    /* its threads that run Lua; 0 once it ends */
  char ident[CC_PROC_IDENT_MAX]; /* "1:2" for Process-1:2; "" for main */
  char name[CC_PROC_NAME_MAX];
} cc_procent;

/* Lays out the table in the arena's reserved room with one entry for this
 * (the main) process and `max_processes` more. CC_EVALUE when they do not fit. */
int cc_proctab_init(unsigned max_processes);
unsigned cc_proctab_capacity(void);
cc_procent *cc_proctab_get(int slot);
/* The live entry of pid, or NULL. */
cc_procent *cc_proctab_find(int pid);
int cc_proctab_slot_of(const cc_procent *e);
/* The name of pid, alive or among the last 64 reaped, into buf: 1; else
 * "a process": 0. */
int cc_proctab_name_of(int pid, char *buf, size_t n);
/* Processes started and not yet reaped, this one included. */
unsigned cc_proctab_live(void);

/* Takes a free entry, state STARTING. CC_ELIMIT when limits.max_processes
 * are alive. */
int cc_proctab_alloc(void);
/* Releases the entry's holds and frees it. */
void cc_proctab_free(int slot);

/* Counts n more (or fewer) threads of this process: one that starts is
 * counted before it exists, one that ends after its last wait. */
void cc_proc_threads_add(int n);
/* This process ends: none of its threads will do anything more. */
void cc_proc_threads_end(void);

/* This process's entry. */
int cc_proc_self_slot(void);
cc_procent *cc_proc_self(void);
/* Called in a new child: its entry becomes `slot`. */
void cc__proc_set_self(int slot);

/* Holds: the references a process has on arena objects. The first hold of an
 * object by a process takes one object reference; the last unhold drops it. */
/* Records one more hold of o by this process. CC_EARENAFULL when the table
 * cannot grow. */
int cc_hold(cc_obj *o);
/* Like cc_hold for an object just made by cc_obj_new: its creation reference
 * becomes this process's hold instead of taking another. */
int cc_hold_adopt(cc_obj *o);
/* Drops one hold of o by this process. */
void cc_unhold(cc_obj *o);
/* How many holds this process has on o. */
uint32_t cc_hold_count(const cc_obj *o);
/* Gives the entry `to` the holds `from` has (the same counts, since a forked
 * child inherits every handle), taking one reference per object. Done before
 * a fork, for the child, so that nothing is freed under it. */
int cc_holds_copy(int from, int to);
/* The objects the process in `slot` holds, one per call from *cursor (0
 * first), NULL after the last. Another process's table may change under
 * the reader: for reports, which check what they read. */
cc_obj *cc_holds_next(int slot, uint32_t *cursor);
/* Drops every hold of the entry `slot` (a process that ended). */
void cc_holds_release(int slot);

#endif
