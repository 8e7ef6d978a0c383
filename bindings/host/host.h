/* host - the concur binary's pieces: CLI, run, YAML for Lua */
#ifndef CONCUR_HOST_H
#define CONCUR_HOST_H

#include "concur/config.h"

#include <lua.h>

/* Documented exit codes of the binary. */
enum {
  EXIT_OK = 0,
  EXIT_SCRIPT = 1,
  EXIT_USAGE = 2,
  EXIT_DEADLOCK = 3,
  EXIT_TIMEOUT = 4,
  EXIT_INTERRUPTED = 130
};

typedef struct run_opts {
  const char *script;
  const char **params; /* "k=v" strings */
  int nparams;
  char **argv;   /* the whole command line, for `arg` as lua.c makes it */
  int script_at; /* argv[script_at] is the script */
  const char **args; /* the script's own arguments, in order */
  int nargs;
  const char *metrics;
  int strict_locks; /* a lock-order warning fails the run */
  const char *trace; /* where the trace goes, or NULL */
  int timeline;      /* print the trace's timeline after the run */
  const char *width; /* its width (columns), or NULL */
  int sim;                /* --sim: the run's scheduler decides who runs */
  double seed;            /* --seed */
  int strategy;           /* --strategy (CC_SCHED_*) */
  int depth;              /* --depth (pct) */
  const char *replay;     /* --replay SCHEDULE */
  int quantum;            /* --quantum: Lua instructions between two points */
  long long steps;        /* --steps: pct's estimate of the run's decisions */
  cc_config cfg;
} run_opts;

/* Overrides c with the settings of the YAML file at path. On failure returns
 * CC_ECONFIG and writes "path:line:col: what is wrong and what to do" to err;
 * c may then be partly overridden. */
int host_config_load(cc_config *c, const char *path, char *err, size_t errlen);
/* concur run: supervises the run and returns the exit code. */
int host_run(const run_opts *o);
/* Opens "concur.yaml": load(path) -> the document as Lua values. */
int host_open_yaml(lua_State *L);
/* Opens "concur.host": spawn, wait_any, reap, JSON, the check sandbox. */
int host_open_host(lua_State *L);
/* Takes SIGINT and SIGTERM for the batch runner that runs in L. */
int host_catch_signals(lua_State *L);
/* concur batch / concur report: runs the embedded batch runner. */
int host_batch(int argc, char **argv);
/* concur timeline FILE [--width N]: argv[0] is "timeline". */
int host_timeline(int argc, char **argv);

#endif
