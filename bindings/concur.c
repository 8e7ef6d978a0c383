/* concur - luaopen_concur: the module, its runtime, and every primitive's file */
#include "concur/error.h"
#include "concur/fault.h"
#include "concur/gil.h"
#include "concur/proc.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <stdlib.h>

#include "manager_lua.h"
#include "thread_lua.h"
#include "pool_lua.h"


/* Threads: the host's settings, written before luaopen_concur, read after. */
static cc_lhost host = {(size_t)256 << 20, 512, 1.0, NULL, 0.005, 0};
static int hosted;

void cc_lhost_configure(const cc_lhost *h) {
  host = *h;
  hosted = 1;
}

void cc_lclose(lua_State *L) {
  cc_gil_freeze();
  lua_close(L);
}

/* Under a stock lua5.4 the end of the main script is the state's close: a
 * sentinel's __gc joins the children then. lua_close runs the finalizers
 * of all objects newest first, and a Process's or a Thread's forgets what
 * it ran: so each start makes a new sentinel (cc__lsentinel_renew), newer
 * than every handle, and only the one the registry still names does the
 * work (older ones are collected as garbage during the run). */
#define SENTINEL_KEY "concur.sentinel"

static int sentinel_gc(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
  int current = lua_rawequal(L, 1, -1);
  lua_pop(L, 1);
  if (!current)
    return 0;
  if (cc_proc_self_slot() == 0)
    cc_lfinish(L);
  cc_gil_freeze(); /* also when the joins were interrupted */
  return 0;
}

/* os.exit(n) under a stock lua5.4 exits without closing the state (no
 * sentinel runs): the children are still ended as CPython's atexit ends
 * them, daemons terminated and the others joined. Set once, in the main
 * process before any thread; a child never runs it (it ends by _exit, or
 * is not the run's main process). */
static int atexit_set;

static void at_exit(void) {
  if (cc_proc_self_slot() == 0 && cc_proc_children())
    cc_proc_finish_children();
}

void cc__lsentinel_renew(lua_State *L) {
  if (hosted)
    return;
  if (!atexit_set && cc_proc_self_slot() == 0) {
    atexit_set = 1;
    atexit(at_exit);
  }
  lua_newuserdatauv(L, 0, 0);
  if (luaL_newmetatable(L, SENTINEL_KEY ".mt")) {
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
}

static void runtime(lua_State *L) {
  if (cc_arena_ready())
    return;
  const char *env = getenv("CONCUR_ARENA_SIZE");
  size_t size = host.arena_size;
  if (env && atoll(env) > 0)
    size = (size_t)atoll(env);
  int r = cc_runtime_init(size, host.max_processes);
  if (r)
    luaL_error(L, "concur: cannot make the arena (%d bytes): %s", (int)size,
               cc_strerror(r));
  if (cc_fault_from_env())
    luaL_error(L, "concur: CONCUR_FAULT names no fault point (they are listed above)");
  cc_runtime_subreaper();
}

int luaopen_concur(lua_State *L) {
  runtime(L);
  cc__lset_time_scale(host.time_scale);
  cc__lset_metrics_path(host.metrics_path);
  cc__lset_switch_interval(host.switch_interval);
  lua_newtable(L);
  cc__open_error(L);
  cc__open_lock(L);
  cc__open_sem(L);
  cc__open_event(L);
  cc__open_cond(L);
  cc__open_barrier(L);
  cc__open_proc(L);
  cc__open_queue(L);
  cc__open_pipe(L);
  cc__open_shm(L);
  cc__open_dict(L);
  cc__open_thread(L);
  cc__open_runtime(L);
  cc__open_codec(L);
  if (host.pool_processes) {
    lua_pushinteger(L, host.pool_processes);
    lua_setfield(L, -2, "_pool_processes");
  }
  /* Pool is Lua, on Pipes and Processes. */
  if (luaL_loadbufferx(L, (const char *)pool_lua, sizeof pool_lua, "=pool", "t"))
    lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1);
  lua_setfield(L, -2, "Pool");
  /* Thread is Lua, on top of lthread.c's handles. */
  if (luaL_loadbufferx(L, (const char *)thread_lua, sizeof thread_lua, "=thread", "t"))
    lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1);
  lua_setfield(L, -2, "Thread");
  /* The Manager is Lua, on top of the rest; it returns the class and the
   * decoder of its proxies. */
  if (luaL_loadbufferx(L, (const char *)manager_lua, sizeof manager_lua, "=manager", "t"))
    lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 2);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "concur.codec.types");
  lua_insert(L, -2);
  lua_setfield(L, -2, "concur.Proxy");
  lua_pop(L, 1);
  lua_setfield(L, -2, "Manager");
  lua_pushliteral(L, "concur " CONCUR_VERSION_STRING);
  lua_setfield(L, -2, "_VERSION");
  cc__linstall_sigint(L);
  cc__lsentinel_renew(L);
  return 1;
}
