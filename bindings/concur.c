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
static int hosted; /* threads: set by the host before luaopen_concur, then only read */

void cc_lhost_configure(const cc_lhost *h) {
  host = *h;
  hosted = 1;
}

void cc_lclose(lua_State *L) {
  cc_gil_freeze();
  lua_close(L);
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
  if (!hosted)
    cc__lsentinel_enable(cc_lfinish);
  cc__lsentinel_renew(L);
  return 1;
}
