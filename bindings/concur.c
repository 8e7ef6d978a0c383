/* concur - luaopen_concur: the module, its runtime, and every primitive's file */
#include "concur/config.h"
#include "concur/error.h"
#include "concur/fault.h"
#include "concur/gil.h"
#include "concur/proc.h"
#include "concur/wait.h"
#include "concur/sched.h"
#include "lconcur.h"

#include <stdio.h>
#include <stdlib.h>

#include "class_lua.h"
#include "manager_lua.h"
#include "pool_lua.h"
#include "thread_lua.h"

/* The module's Lua chunks (bindings/lua/), in the order they load: each is
 * called with the module and the private table, and its result becomes the
 * module's field. */
static const struct chunk {
  const char *name;
  const unsigned char *code, *bc; /* the source; its bytecode, for the host's Lua */
  size_t len, bclen;
  const char *field;
} chunks[] = {
#define CC__CHUNK(name, field) {#name, name##_lua, name##_lua_bc, sizeof name##_lua, sizeof name##_lua_bc, field}
    CC__CHUNK(class, "class"),
    CC__CHUNK(pool, "Pool"),
    CC__CHUNK(thread, "Thread"),
    CC__CHUNK(manager, "Manager"),
#undef CC__CHUNK
};

/* Threads: the host's settings, written before luaopen_concur, read after. */
static cc_lhost host;
static int hosted; /* threads: set by the host before luaopen_concur, then only read */

/* A stock lua5.4's settings: the defaults (config.h). */
static void defaults(void) {
  cc_config c;
  cc_config_defaults(&c);
  host = (cc_lhost){c.arena_size, c.max_processes, c.time_scale, NULL, c.switch_interval,
                    c.pool_processes, 0};
}

void cc_lhost_configure(const cc_lhost *h) {
  host = *h;
  hosted = 1;
}

void cc_lclose(lua_State *L) {
  cc_gil_freeze();
  cc_sched_forget_others();
  lua_close(L);
}

/* require "concur.private" */
static int open_private(lua_State *L) {
  cc__lpush_private(L);
  return 1;
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
  if (!hosted)
    defaults();
  runtime(L);
  cc__lset_time_scale(host.time_scale);
  cc__lset_metrics_path(host.metrics_path);
  cc__lset_switch_interval(host.switch_interval);
  lua_newtable(L);
#define CC__LOPEN_CALL(name) cc__open_##name(L);
  CC_LMODULE_MAP(CC__LOPEN_CALL)
#undef CC__LOPEN_CALL
  if (host.pool_processes) {
    lua_pushinteger(L, host.pool_processes);
    cc__lset_private(L, "pool_processes");
  }
  /* The codec's decoders of the Lua types that travel (concur.class). */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "concur.codec.types");
  cc__lset_private(L, "codec_types");
  for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
    const struct chunk *c = &chunks[i];
    char name[32];
    snprintf(name, sizeof name, "=%s", c->name);
    /* The host links the Lua its bytecode was made by (luadump); a stock
     * lua5.4 may be another build: it compiles the source. */
    int r = hosted ? luaL_loadbufferx(L, (const char *)c->bc, c->bclen, name, "b")
                   : luaL_loadbufferx(L, (const char *)c->code, c->len, name, "t");
    if (r)
      lua_error(L);
    lua_pushvalue(L, -2);
    cc__lpush_private(L);
    lua_call(L, 2, 1);
    lua_setfield(L, -2, c->field);
  }
  /* What loading left behind is collected now, once: the script's first
   * objects then come from the memory it freed, beside the module's, as
   * when the chunks were compiled here (whose garbage the collector took
   * as it went). Without it two processes incrementing a Value under its
   * Lock ran 13% slower (farm-bench, paired), with no more instructions. */
  lua_gc(L, LUA_GCCOLLECT);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open_private);
  lua_setfield(L, -2, "concur.private");
  lua_pop(L, 1);
  lua_pushliteral(L, "concur " CONCUR_VERSION_STRING);
  lua_setfield(L, -2, "_VERSION");
  cc__linstall_sigint(L);
  if (!hosted)
    cc__lsentinel_enable(cc_lfinish);
  cc__lsentinel_renew(L);
  cc__lsched_open(L, -1, host.sim_quantum);
  return 1;
}
