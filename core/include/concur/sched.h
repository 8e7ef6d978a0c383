/* sched - the run's deterministic scheduler: one task at a time, virtual time */
#ifndef CONCUR_SCHED_H
#define CONCUR_SCHED_H

#include <stddef.h>
#include <stdint.h>

/*
 * DESIGN. Under `concur run --sim`, every thread of every process of the
 * run is a task in a table in the arena, and exactly one task runs: the
 * one holding the run token. A task gives the token away only at a
 * scheduling point (an operation of a primitive, a Lua count hook) or when
 * it waits (wait.c's hooks: a futex word and its value, descriptors, a
 * child, a deadline); the task that gives it picks who runs next, from the
 * tasks that can run, with the run's seeded strategy, and hands the token
 * through that task's own futex word. A waiting task can run when its word
 * was woken or changed, its deadline has come (virtual time), or it is
 * told to look around; one waiting on descriptors is given the token to
 * poll them again once another task has done anything. When none can run,
 * the clock jumps to the earliest deadline; with no deadline left, every
 * waiting task is told to look around, one slice of virtual time at a
 * time, so that the deadlock detector (deadlock.h) sees every wait last
 * and reports it as in a run of real time; if it does not, the scheduler
 * reports what each task waits for. Only the token's holder reads or
 * writes the table (its creator writes a new task's entry), so it needs no
 * lock: the hand-over orders it.
 *
 * A schedule is the list of decisions where the pick was not the default
 * (the task that gave the token, when it can go on, else the lowest
 * that can run): "12:3,40:1" is task 3 at decision 12 and task 1 at
 * decision 40. Replaying it makes the same run; dropping entries makes a
 * shorter schedule that may still fail (explore's shrinking).
 */

/* The strategies, by name. */
#define CC_SCHED_STRATEGIES(X)                                                 \
  X(RANDOM, "random") /* a uniform pick at every decision */                   \
  X(PCT, "pct")       /* priorities with depth-1 change points (PCT) */        \
  X(REPLAY, "replay") /* a recorded schedule; the default elsewhere */         \
  X(FIRST, "first")   /* always the default: no preemption at all */

enum {
#define CC__SCHED_STRATEGY(name, word) CC_SCHED_##name,
  CC_SCHED_STRATEGIES(CC__SCHED_STRATEGY)
#undef CC__SCHED_STRATEGY
  CC_SCHED_STRATEGY_COUNT
};
/* The strategy named word, or -1. */
int cc_sched_strategy(const char *word);
const char *cc_sched_strategy_name(int strategy);

#define CC_SCHED_TASKS 2048
/* A schedule's longest string, and most entries. */
#define CC_SCHED_PICKS 4096

typedef struct cc_sched_opts {
  uint64_t seed;
  int strategy;         /* CC_SCHED_* */
  int depth;            /* pct: change points + 1 (default 3) */
  int64_t steps;        /* pct: about how many decisions a run makes (default 2000) */
  const char *schedule; /* replay: the schedule string, or NULL */
  int supervisor;       /* told with SIGUSR1 when the run cannot go on, or 0 */
} cc_sched_opts;

/* Makes the scheduler's table in the arena (after cc_runtime_init, before
 * any fork), with task 0, which holds the token, for the process that runs
 * the script: it calls cc_sched_start(0). CC_EVALUE for a schedule that
 * does not parse, CC_EARENAFULL. */
int cc_sched_init(const cc_sched_opts *opts);
/* True in a process whose tasks are scheduled. */
int cc_sched_on(void);

/* A new task for a process or thread about to be made by the caller
 * (before fork or pthread_create): its number, or CC_ELIMIT. Under no
 * scheduler, -1. It can run from now on: it waits for the token in
 * cc_sched_start, its first call. */
int cc_sched_spawn(void);
/* The calling thread is task `task` (from cc_sched_spawn; nothing when
 * negative): it takes the scheduler's hooks in a new process, and waits
 * until it holds the token. */
void cc_sched_start(int task);
/* A spawned task that was not made after all (pthread_create failed). */
void cc_sched_unspawn(int task);
/* pid's tasks: -1 not known (or no scheduler), 0 some still run, 1 all ended. */
int cc_sched_pid_state(int pid);
/* True when no task of pid can run without being woken (they all wait). */
int cc_sched_pid_waits(int pid);
/* The process of a task spawned before a fork is pid (told by the parent,
 * so that a join knows it before the child has run). */
void cc_sched_set_pid(int task, int pid);
/* The calling task ends: it hands the token on and never runs again. In a
 * process, call it last: what the process does after it (its exit) is
 * not scheduled. */
void cc_sched_exit(void);
/* The calling process ends: its other tasks will not run again; its
 * descriptors are closed, so that their other ends see it at once; then
 * cc_sched_exit. */
void cc_sched_exit_process(void);
/* Every task of pid is over (the caller is about to kill it). */
void cc_sched_forget_pid(int pid);
/* The other tasks of the calling process will not run again (it ends). */
void cc_sched_forget_others(void);
/* A deadlock was reported: no more looking around, nothing more is
 * scheduled; whoever would run waits for the run to be ended. */
void cc_sched_halt(void);

/* Under the scheduler a pid is shown as a number of the run's own, the
 * same in every run: the main process is CC_SCHED_VPID_BASE, the next one
 * started one more, and so on. cc_sched_shown_pid gives it for a real pid
 * (the pid itself when no scheduler runs or the pid is not of the run);
 * cc_sched_real_pid is the other way. */
#define CC_SCHED_VPID_BASE 1000
int cc_sched_shown_pid(int pid);
int cc_sched_real_pid(int shown);

/* Notes where the calling task's Lua is (an operation's call), for a
 * report of a task that never came back. */
void cc_sched_note_where(void);

/* The task number of the calling thread, or -1. */
int cc_sched_task(void);

/* What the run made: decisions, preemptions, the schedule (its picks
 * that were not the default) as a string into buf. Readable by the
 * supervisor after the run. Returns the string's length (it is cut, and
 * ends in "...", when longer than n-1). */
typedef struct cc_sched_result {
  uint64_t seed;
  int strategy;
  uint64_t decisions, preemptions, steps;
  int64_t vnow;
  int overflow; /* more picks than CC_SCHED_PICKS: the schedule is partial */
  unsigned tasks; /* how many tasks the run made */
} cc_sched_result;
size_t cc_sched_result_get(cc_sched_result *r, char *buf, size_t n);
/* The number of decisions made so far (the supervisor's watch). */
uint64_t cc_sched_steps(void);
/* True when the token's holder sleeps in the kernel (not running, nor
 * waiting for a processor: a loaded machine's delays are not a stall). */
int cc_sched_holder_asleep(void);
/* Writes, into buf, which task holds the token and where its Lua was at
 * its last scheduling point. */
void cc_sched_holder(char *buf, size_t n);

#endif
