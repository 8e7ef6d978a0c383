/* lend - the end of a run under a stock lua5.4: a sentinel that ends it as the host does */
#include "concur/gil.h"
#include "concur/lockorder.h"
#include "concur/proc.h"
#include "lconcur.h"

#include <stdio.h>
#include <stdlib.h>

/*
 * Under a stock lua5.4 the end of the main script is the state's close: a
 * sentinel's __gc ends the run then (threads and children joined, daemons
 * terminated). lua_close runs the finalizers of all objects newest first,
 * and a Process's or a Thread's forgets what it ran: so each start makes a
 * new sentinel (cc__lsentinel_renew), newer than every handle, and only the
 * one the registry still names does the work (older ones are collected as
 * garbage during the run).
 */
#define SENTINEL_KEY "concur.sentinel"

/* Threads: both are set by luaopen_concur, before any thread. */
static int (*finish)(lua_State *L); /* NULL under the host, which ends the run itself */
static int atexit_set; /* (main process, before any thread: see above) */

static int sentinel_gc(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
  int current = lua_rawequal(L, 1, -1);
  lua_pop(L, 1);
  if (!current)
    return 0;
  if (cc_proc_self_slot() == 0)
    finish(L);
  cc_gil_freeze(); /* also when the joins were interrupted */
  return 0;
}

/* os.exit(n) under a stock lua5.4 exits without closing the state (no
 * sentinel runs): the children are still ended as CPython's atexit ends
 * them, daemons terminated and the others joined. A child never runs it
 * (it ends by _exit, or is not the run's main process). Every end of the
 * main process comes here last, so the lock-order warnings are written
 * here, once, as the host writes them after the run. */
static void at_exit(void) {
  if (cc_proc_self_slot() == 0 && cc_proc_children())
    cc_proc_finish_children();
  if (cc_proc_self_slot() == 0)
    cc_lockorder_report(stderr);
}

void cc__lsentinel_enable(int (*fn)(lua_State *L)) {
  finish = fn;
  if (!atexit_set && cc_proc_self_slot() == 0) {
    atexit_set = 1;
    atexit(at_exit);
  }
}

void cc__lsentinel_renew(lua_State *L) {
  if (!finish)
    return;
  lua_newuserdatauv(L, 0, 0);
  if (luaL_newmetatable(L, SENTINEL_KEY ".mt")) {
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
}
