/* concur - the module's public face: luaopen_concur, and what a host calls around it */
#ifndef CONCUR_MODULE_H
#define CONCUR_MODULE_H

#include <lua.h>
#include <stddef.h>

/* The host's settings passed to the module before luaopen_concur. */
typedef struct cc_lhost {
  size_t arena_size;
  unsigned max_processes;
  double time_scale;
  const char *metrics_path; /* where concur.report appends; NULL: nowhere */
  double switch_interval;   /* seconds a thread waits for the GIL before it asks */
  unsigned pool_processes;  /* 0: cpu_count() */
  int sim_quantum;          /* under --sim: Lua instructions between two scheduling points */
} cc_lhost;

/* Called by the host before luaopen_concur (and not by a stock lua5.4, where
 * the defaults and the CONCUR_* environment apply). */
void cc_lhost_configure(const cc_lhost *h);
/* require "concur": the module (and its runtime, made at the first call). */
int luaopen_concur(lua_State *L);
/* For the host: os.exit raises SystemExit in the main process and ends a
 * child at once. */
void cc_lhost_os_exit(lua_State *L);
/* The end of the main script: terminate daemon children, join the others,
 * reap adopted orphans. Returns 0 or CC_EINTR. */
int cc_lfinish(lua_State *L);
/* Closes L: the process's other threads are stopped first, whatever ended
 * the script: none runs Lua again, and one that waits for the GIL or wakes
 * from a wait waits for good, as CPython's daemon threads at interpreter
 * exit. */
void cc_lclose(lua_State *L);
/* Ctrl-C, raised as Interrupted: take marks it taken (once), taken says
 * whether it was, for the end of the run (exit 130). */
void cc_linterrupt_take(void);
int cc_linterrupt_taken(void);

#endif
