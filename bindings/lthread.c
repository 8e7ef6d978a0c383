/* lthread - threads of one Lua state under the GIL: handles and the hook */
#include "concur/deadlock.h"
#include "concur/error.h"
#include "concur/gil.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/*
 * A Thread runs a function on a Lua thread (lua_newthread) of the process's
 * one Lua state, in a pthread of its own, holding the GIL while it runs Lua.
 * The GIL is let go in every blocking call (through wait.c's hook) and, on
 * request, in the interpreter's count hook every switch_interval
 * instructions. The handle is anchored in the registry while it runs.
 */

#define HANDLE_MT "concur.ThreadHandle"
#define RUNNING_KEY "concur.threads"

typedef struct thr {
  _Atomic uint32_t done;
  _Atomic int tid;
  int started;
  int daemon;
  lua_State *L1;
  char name[64];
} thr;

static int switch_interval = 1000;
static _Thread_local thr *current;
/* Threads started and not ended (the GIL guards it). A count hook makes
 * Lua 5.4 trap every instruction, so it is set only while this is not 0. */
static int running;
static lua_State *main_state;

void cc__lset_switch_interval(int n) { switch_interval = n > 0 ? n : 1000; }

/* The interpreter's hook: Ctrl-C, and giving the GIL away on request. */
void cc__lhook(lua_State *L, lua_Debug *ar);

static void install_hook(lua_State *L) {
  lua_sethook(L, cc__lhook, LUA_MASKCOUNT, switch_interval);
}

void cc__lhook_restore(lua_State *L) {
  if (cc_gil_enabled() && running > 0)
    install_hook(L);
  else
    lua_sethook(L, NULL, 0, 0);
}

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "traceback");
    const char *tb = lua_tostring(L, -1);
    msg = luaL_tolstring(L, 1, NULL);
    if (tb) {
      lua_pushfstring(L, "%s\n%s", msg, tb);
      return 1;
    }
  }
  if (!msg)
    msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void *thread_main(void *arg) {
  thr *t = arg;
  cc_gil_acquire();
  current = t;
  atomic_store(&t->tid, (int)gettid());
  cc_deadlock_set_name(t->name);
  lua_State *L1 = t->L1;
  /* L1's stack: msgh, fn. */
  if (lua_pcall(L1, 0, 0, 1) != LUA_OK) {
    fflush(stdout);
    fprintf(stderr, "Exception in thread %s:\n%s\n", t->name, lua_tostring(L1, -1));
    fflush(stderr);
  }
  lua_settop(L1, 0);
  /* Unanchor: the handle and its Lua thread may be collected now. */
  lua_getfield(L1, LUA_REGISTRYINDEX, RUNNING_KEY);
  lua_pushlightuserdata(L1, t);
  lua_pushnil(L1);
  lua_rawset(L1, -3);
  lua_pop(L1, 1);
  atomic_store(&t->done, 1);
  cc_futex_wake(&t->done, INT32_MAX);
  if (--running == 0 && main_state)
    cc__lhook_restore(main_state); /* alone again: no more traps */
  current = NULL;
  cc_gil_release();
  return NULL;
}

/* _thread_start(fn, name, daemon) -> handle */
static int l_thread_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  const char *name = luaL_checkstring(L, 2);
  int daemon = lua_toboolean(L, 3);
  if (!cc_gil_enabled())
    cc_gil_enable(5000000);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main_state = lua_tothread(L, -1);
  lua_pop(L, 1);
  running++;
  install_hook(main_state);
  install_hook(L);
  thr *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->daemon = daemon;
  luaL_setmetatable(L, HANDLE_MT);
  t->L1 = lua_newthread(L); /* inherits the hook */
  install_hook(t->L1);
  lua_setiuservalue(L, -2, 1); /* the handle keeps its Lua thread */
  lua_pushcfunction(t->L1, msgh);
  lua_pushvalue(L, 1);
  lua_xmove(L, t->L1, 1);
  /* Anchored while it runs. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
  lua_pushlightuserdata(L, t);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  pthread_t pt;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int r = pthread_create(&pt, &attr, thread_main, t);
  pthread_attr_destroy(&attr);
  if (r != 0) {
    if (--running == 0)
      cc__lhook_restore(main_state);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
    lua_pushlightuserdata(L, t);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return cc__lraise(L, "OSError", "cannot start a thread: %s", strerror(r));
  }
  t->started = 1;
  return 1;
}

static thr *check_handle(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, HANDLE_MT);
}

/* handle:join([timeout]) -> true when the thread has ended. */
static int handle_join(lua_State *L) {
  thr *t = check_handle(L, 1);
  if (t == current)
    return cc__lraise(L, "ValueError", "cannot join the current thread");
  int64_t dl = cc__ldeadline(L, 2);
  while (!atomic_load(&t->done)) {
    int r = cc_futex_wait(&t->done, 0, dl);
    if (r == CC_ETIMEDOUT)
      break;
    if (r == CC_EINTR)
      return cc__lraise_code(L, r, NULL);
  }
  lua_pushboolean(L, atomic_load(&t->done) != 0);
  return 1;
}

static int handle_is_alive(lua_State *L) {
  thr *t = check_handle(L, 1);
  lua_pushboolean(L, t->started && !atomic_load(&t->done));
  return 1;
}

static int handle_ident(lua_State *L) {
  thr *t = check_handle(L, 1);
  int tid = atomic_load(&t->tid);
  if (tid)
    lua_pushinteger(L, tid);
  else
    lua_pushnil(L);
  return 1;
}

/* _thread_current() -> the handle of the calling thread, or nil (main). */
static int l_thread_current(lua_State *L) {
  if (!current) {
    lua_pushnil(L);
    return 1;
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
  lua_pushlightuserdata(L, current);
  lua_rawget(L, -2);
  return 1;
}

/* _threads() -> the handles of the threads that run. */
static int l_threads(lua_State *L) {
  lua_newtable(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    thr *t = lua_touserdata(L, -1);
    if (t && !atomic_load(&t->done))
      lua_rawseti(L, -4, ++n);
    else
      lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

/* The end of a process's script: its non-daemon threads are joined; then
 * the GIL is kept for good, so that nothing runs while the state closes. */
int cc__ljoin_threads(lua_State *L) {
  if (!cc_gil_enabled())
    return 0;
  for (;;) {
    thr *wait_for = NULL;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      thr *t = lua_touserdata(L, -1);
      lua_pop(L, 1);
      if (t && t != current && !t->daemon && !atomic_load(&t->done)) {
        wait_for = t;
        lua_pop(L, 1);
        break;
      }
    }
    lua_pop(L, 1);
    if (!wait_for)
      break;
    while (!atomic_load(&wait_for->done)) {
      int r = cc_futex_wait(&wait_for->done, 0, CC_FOREVER);
      if (r == CC_EINTR)
        return r;
    }
  }
  cc_gil_freeze();
  return 0;
}

/* In a new child: only the forking thread goes on; the others are gone. */
void cc__lthreads_after_fork(lua_State *L) {
  cc_gil_after_fork();
  if (!cc_gil_enabled())
    return;
  running = 0;
  if (main_state)
    cc__lhook_restore(main_state);
  cc__lhook_restore(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    thr *t = lua_touserdata(L, -1);
    if (t && t != current)
      atomic_store(&t->done, 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static const luaL_Reg handle_methods[] = {{"join", handle_join},
                                          {"is_alive", handle_is_alive},
                                          {"ident", handle_ident},
                                          {NULL, NULL}};

void cc__open_thread(lua_State *L) {
  if (luaL_newmetatable(L, HANDLE_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, handle_methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_thread_start);
  lua_setfield(L, -2, "_thread_start");
  lua_pushcfunction(L, l_thread_current);
  lua_setfield(L, -2, "_thread_current");
  lua_pushcfunction(L, l_threads);
  lua_setfield(L, -2, "_threads");
}
