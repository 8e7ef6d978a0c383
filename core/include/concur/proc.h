/* proc - processes: fork, join, signals, reaping, and the run's runtime */
#ifndef CONCUR_PROC_H
#define CONCUR_PROC_H

#include "concur/proctab.h"

#include <stddef.h>

enum { CC_PROC_NEW, CC_PROC_STARTED, CC_PROC_REAPED };

/* A handle on a child process, in the memory of the process that started it
 * (the caller owns it; it is not shared with other processes). Started
 * children are linked in a per-process list until they are reaped.
 * Threads: calls on handles and on the list come one at a time (the
 * bindings hold the GIL), but joins may wait at once, in several threads:
 * the first reaps, the others see it reaped. */
typedef struct cc_proc {
  int state;
  int pid;
  int pidfd;
  int joiners; /* threads waiting in cc_proc_join: the last closes pidfd */
  int slot;
  int parent_pid;  /* the process that started it: the only one that may join */
  int exitcode;    /* once reaped: the exit status, or -signal */
  int daemon;
  struct cc_proc *prev, *next;
  char ident[CC_PROC_IDENT_MAX];
  char name[CC_PROC_NAME_MAX];
} cc_proc;

/* Makes the run's arena and process table and registers the core types.
 * Call once, before the first fork. CC_EVALUE for sizes out of range,
 * CC_ESYS when the mapping fails. */
int cc_runtime_init(size_t arena_size, unsigned max_processes);
/* Makes the calling process a child subreaper: orphans of the run are
 * re-parented to it, so that it can reap them. */
int cc_runtime_subreaper(void);
/* In a child forked by the host's supervisor: this process becomes the run's
 * main process (entry 0). */
void cc_runtime_become_main(void);
/* Ties every process of the run to the supervisor, so that none outlives
 * it, SIGKILLed or not. The supervisor makes a pipe and keeps its write
 * end alone; each process of the run holds the read end through an open
 * file description of its own, armed to send SIGKILL to it (O_ASYNC,
 * F_SETSIG) when the pipe's last writer goes. The supervisor's runner calls
 * this with the read end, which the supervisor keeps open too (each process
 * opens its own description through it); cc_proc_start arms each child.
 * 0 or CC_ESYS. */
int cc_runtime_tether(int read_fd, int supervisor);

/* Sets p up for cc_proc_start and gives it the next identity of this process
 * (as CPython does at construction): `name` NULL gives Process-N, or
 * Process-N:M in a child. */
void cc_proc_init(cc_proc *p, const char *name, int daemon);
/* Forks. Returns the child's pid in the parent and 0 in the child, or
 * CC_EPROC (a daemon may not have children; p started already), CC_ELIMIT
 * (limits.max_processes alive), CC_EARENAFULL, CC_ESYS (fork failed).
 * Before the fork stdio is flushed and the child's holds are taken, so an
 * object the parent drops afterwards stays alive for the child. */
int cc_proc_start(cc_proc *p);
/* Waits for p to end and reaps it. 0 (p->exitcode is set), CC_ETIMEDOUT,
 * CC_EINTR, CC_EPROC (not started, or not this process's child). */
int cc_proc_join(cc_proc *p, int64_t deadline);
/* Reaps p if it has ended. 1 while it runs, 0 once reaped or never started. */
int cc_proc_poll(cc_proc *p);
/* Sends sig to a started, unreaped p; nothing otherwise. */
void cc_proc_signal(cc_proc *p, int sig);
/* "running", "sleeping", "zombie", "stopped", "dead" or "new". */
const char *cc_proc_status(const cc_proc *p);
/* The first of this process's unreaped children (then p->next). */
cc_proc *cc_proc_children(void);
/* Forgets p when its owner frees it (reaps it first if it has ended). */
void cc_proc_forget(cc_proc *p);
/* The end of a process's script: terminates its daemon children, then joins
 * every child. CC_EINTR if interrupted while joining. */
int cc_proc_finish_children(void);

/* Ends a child process: flushes stdio, drops its holds, _exit(code). */
_Noreturn void cc_proc_exit(int code);

/* In a subreaper: reaps ended children that are not in this process's list
 * (adopted orphans), dropping their holds. Returns how many. Elsewhere there
 * are none, and it costs nothing. */
int cc_proc_reap_orphans(void);
/* Reaps one ended child, any, dropping its holds: its pid (and *status), 0
 * when none has ended, CC_ESYS when there are no children. */
int cc_proc_reap_any(int *status);
/* Sends sig to every descendant of root (not root itself). Returns how many. */
int cc_proc_kill_tree(int root, int sig);
/* Stops every descendant of root (SIGSTOP), those forked meanwhile too, so
 * that none runs on while the others are killed. Returns how many. */
int cc_proc_stop_tree(int root);

int cc_cpu_count(void);

#endif
