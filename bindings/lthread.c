/* lthread - threads of one Lua state under the GIL: handles and the hook */
#include "concur/deadlock.h"
#include "concur/config.h"
#include "concur/error.h"
#include "concur/event.h"
#include "concur/gil.h"
#include "concur/ident.h"
#include "concur/lock.h"
#include "concur/proctab.h"
#include "concur/sched.h"
#include "concur/trace.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <lualib.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * A Thread runs a function on a Lua thread (lua_newthread) of the process's
 * one Lua state, in a pthread of its own, holding the GIL while it runs Lua.
 * The GIL is let go in every blocking call (through wait.c's hook) and, on
 * request, from the interpreter's hook.
 *
 * DESIGN. No hook is set while Lua runs: Lua 5.4 traps every instruction
 * while any hook is, which made threads three times slower than one thread
 * alone. A thread that has waited a switch interval for the GIL pokes its
 * holder instead (gil.h): a signal to the holder's pthread, whose handler
 * sets a one-shot count hook on the Lua state that pthread runs now, as
 * lua.c does for Ctrl-C. The hook hands the GIL over and removes itself.
 * The state a pthread runs is its Lua thread, or the coroutine it resumed:
 * coroutine.resume and coroutine.wrap are replaced by the same functions
 * that also keep track of it.
 */

#define HANDLE_MT "concur.ThreadHandle"
#define RUNNING_KEY "concur.threads"
/* The poke: SIGURG is ignored by default, so a stray one harms nobody. */
#define POKE_SIGNAL SIGURG

/* A thread's handle. Once its function has returned and it has let go of
 * the GIL, the pthread still has its end to run (its thread-local
 * destructors free memory): it is joined (reaped) after that, before this
 * process forks (a child must not inherit an allocator's lock taken by a
 * thread that is not there) and when its handle is collected. Threads not
 * yet reaped are in a list of this process's, changed with the GIL held. */
typedef struct thr {
  cc_event begun; /* set when its pthread has begun (its start is over) */
  cc_event done;  /* set when its function has returned */
  _Atomic int tid;
  int started;
  int daemon;
  int reaped;
  pthread_t pt;
  lua_State *L1;
  struct thr *next; /* in `unreaped` */
  int task;         /* its task under the scheduler, or -1 */
  char name[64];
} thr;

/* Threads: `unreaped` and `zombies` are changed with the GIL held, and a
 * wait (before a fork) holds no pointer into them; switch_ns is set before
 * the first thread; current and running_L are each thread's own. */
static thr *unreaped;
static int64_t switch_ns; /* set at luaopen_concur, from the settings */
static _Thread_local thr *current;
/* The Lua state this pthread runs now, for the poke's handler. */
static _Thread_local lua_State *running_L;

/* Where the calling pthread's Lua waits: the innermost Lua line of the
 * state it runs now, not of concur's own Lua (chunks named "=..."). The
 * state cannot run meanwhile: this thread runs it, and is in a call. */
static void lua_where(char *buf, size_t n) {
  lua_State *L = running_L;
  lua_Debug ar;
  buf[0] = '\0';
  for (int level = 1; L && lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || ar.source[0] == '=')
      continue;
    snprintf(buf, n, "%s:%d", ar.short_src, ar.currentline);
    return;
  }
}

void cc__lset_switch_interval(double seconds) {
  switch_ns = (int64_t)((seconds > 0 ? seconds : cc_config_default_switch_interval()) * 1e9);
}

/* The interpreter's hook: Ctrl-C, and giving the GIL away on request. */
void cc__lhook(lua_State *L, lua_Debug *ar);

void cc__lhook_restore(lua_State *L) { cc__lsched_sethook(L); }

static void on_poke(int sig) {
  (void)sig;
  lua_State *L = running_L;
  if (L)
    lua_sethook(L, cc__lhook, LUA_MASKCOUNT, 1);
}

static void poke(int tid) { syscall(SYS_tgkill, cc_pid(), tid, POKE_SIGNAL); }

static void enable_gil(void) {
  /* Calls the poked thread makes without letting go of the GIL (a read,
   * a socket's) go on after the handler. */
  cc__lcatch(POKE_SIGNAL, on_poke, 1, NULL);
  cc_gil_set_poke(poke);
  cc_gil_enable(switch_ns);
}

/* coroutine.resume and coroutine.wrap, as lcorolib.c's, with running_L
 * set to the coroutine while it runs. */
static int auxresume(lua_State *L, lua_State *co, int narg) {
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  lua_State *outer = running_L;
  running_L = co;
  int nres;
  int status = lua_resume(co, L, narg, &nres);
  running_L = outer;
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1); /* the error */
  return -1;
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "thread");
  int r = auxresume(L, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int co_auxwrap(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = auxresume(L, co, lua_gettop(L));
  if (r >= 0)
    return r;
  int stat = lua_status(co);
  if (stat != LUA_OK && stat != LUA_YIELD) { /* an error in the coroutine */
#if LUA_VERSION_RELEASE_NUM >= 50406
    stat = lua_closethread(co, L);
#else
    stat = lua_resetthread(co);
#endif
    lua_xmove(co, L, 1);
  }
  if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_auxwrap, 1);
  return 1;
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
  cc_sched_start(t->task);
  atomic_store(&t->tid, (int)gettid()); /* known once it has begun: joins wait for it */
  cc_event_set(&t->begun);
  cc_gil_acquire();
  current = t;
  running_L = t->L1;
  cc_ident_set_name(t->name);
  cc__trace_thread(t->name);
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
  cc_event_set(&t->done);
  cc__trace_end(); /* after the wake-up of its joiners, which it made */
  current = NULL;
  running_L = NULL;
  cc_deadlock_thread_end();
  cc_proc_threads_add(-1);
  cc_gil_release();
  cc_sched_exit();
  return NULL;
}

/* P.thread_start(fn, name, daemon) -> handle */
static int l_thread_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  const char *name = luaL_checkstring(L, 2);
  int daemon = lua_toboolean(L, 3);
  if (!cc_gil_enabled())
    enable_gil();
  thr *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->daemon = daemon;
  luaL_setmetatable(L, HANDLE_MT);
  t->L1 = lua_newthread(L);
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
  /* Ctrl-C is the main thread's (as in Python): the new thread starts
   * with SIGINT blocked, so that the kernel gives it to the main thread,
   * whose wait it then ends at once. */
  sigset_t intr, old;
  sigemptyset(&intr);
  sigaddset(&intr, SIGINT);
  pthread_sigmask(SIG_BLOCK, &intr, &old);
  /* Counted before it exists: until it waits, the run is not all asleep. */
  cc_proc_threads_add(1);
  t->task = cc_sched_spawn();
  int r = t->task == CC_ELIMIT ? EAGAIN : pthread_create(&t->pt, NULL, thread_main, t);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) {
    cc_sched_unspawn(t->task);
    cc_proc_threads_add(-1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
    lua_pushlightuserdata(L, t);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return cc__lraise_code(L, CC_ESYS, "cannot start a thread: %s", strerror(r));
  }
  t->started = 1;
  t->next = unreaped;
  unreaped = t;
  cc__lsentinel_renew(L);
  return 1;
}

static void unlink_thread(thr *t) {
  for (thr **p = &unreaped; *p; p = &(*p)->next)
    if (*p == t) {
      *p = t->next;
      return;
    }
}

/* The pthreads of ended threads not joined yet: each pthread is either
 * a handle's (not reaped) or a zombie, and is moved from one to the other
 * with the GIL held, so that only one thread ever joins it. */
typedef struct zombie {
  pthread_t pt;
  struct zombie *next;
} zombie;
static zombie *zombies;

/* Reaps the pthread of a thread whose function has returned: joined now if
 * its end is over, else made a zombie (joined before the next fork). */
static void reap(thr *t) {
  if (t->reaped)
    return;
  t->reaped = 1;
  unlink_thread(t);
  if (pthread_tryjoin_np(t->pt, NULL) == 0)
    return;
  zombie *z = malloc(sizeof *z);
  if (z) {
    z->pt = t->pt;
    z->next = zombies;
    zombies = z;
  } else {
    pthread_detach(t->pt);
  }
}

/* Joins the pthreads whose function has returned (their end takes
 * microseconds). Each is taken off the list before the wait, during which
 * another thread may add more. */
static void join_zombies(void) {
  while (zombies) {
    zombie *z = zombies;
    zombies = z->next;
    /* Microseconds, not the program's sleep: a plain wait, untraced. */
    _Atomic uint32_t never = 0;
    while (pthread_tryjoin_np(z->pt, NULL) == EBUSY)
      cc_futex_wait_plain(&never, 0, cc_now_real() + 20000);
    free(z);
  }
}

/* Reaps every thread whose function has returned, and joins the pthreads
 * (their end takes microseconds). */
static void reap_ended(void) {
  for (thr *t = unreaped, *n; t; t = n) {
    n = t->next;
    if (cc_event_is_set(&t->done))
      reap(t);
  }
  join_zombies();
}

void cc__lthreads_before_fork(void) {
  /* A thread just made may still be in its start (the sanitizers' runtime
   * allocates there): the fork waits until each has begun. A running
   * thread is anchored, so its handle stays while this waits. */
  for (;;) {
    thr *t = unreaped;
    while (t && cc_event_is_set(&t->begun))
      t = t->next;
    if (!t || cc_event_wait(&t->begun, CC_FOREVER) == CC_EINTR)
      break; /* (the list is looked at anew after a wait) */
  }
  reap_ended();
}

/* A handle is collected only once its thread's function has returned (a
 * running thread is anchored); a pthread still ending is reaped later. */
static int handle_gc(lua_State *L) {
  thr *t = lua_touserdata(L, 1);
  if (t->started)
    reap(t);
  return 0;
}

static thr *check_handle(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, HANDLE_MT);
}

/* Waits for t's function to return: a join, for what reports say. */
static int join(thr *t, int64_t deadline) {
  int r = cc_event_wait(&t->begun, deadline);
  if (r)
    return r;
  cc_waiting w = {.kind = CC_WAIT_JOIN, .target = atomic_load(&t->tid), .label = t->name,
                  .deadline = deadline};
  cc_wait_begin(&w);
  r = cc_event_wait(&t->done, deadline);
  cc_wait_end(&w);
  return r;
}

/* handle:join([timeout]) -> true when the thread has ended. */
static int handle_join(lua_State *L) {
  thr *t = check_handle(L, 1);
  if (t == current)
    return cc__lraise_code(L, CC_EVALUE, "cannot join the current thread");
  int64_t dl = cc__ldeadline(L, 2);
  int r = t->started ? join(t, dl) : 0;
  if (r != 0 && r != CC_ETIMEDOUT) /* Interrupted, Deadlock */
    return cc__lraise_code(L, r, NULL);
  if (r == 0 && t->started)
    reap(t);
  lua_pushboolean(L, r == 0);
  return 1;
}

static int handle_is_alive(lua_State *L) {
  thr *t = check_handle(L, 1);
  lua_pushboolean(L, t->started && !cc_event_is_set(&t->done));
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

/* P.thread_number() -> 1, 2, ...: the next thread's number, for its name
 * (counted in C, where no switch of the GIL can come between the read and
 * the write). */
static int l_thread_number(lua_State *L) {
  static lua_Integer n; /* threads: changed with the GIL held */
  lua_pushinteger(L, ++n);
  return 1;
}

/* P.thread_current() -> the handle of the calling thread, or nil (main). */
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

/* P.threads() -> the handles of the threads that run. */
static int l_threads(lua_State *L) {
  lua_newtable(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    thr *t = lua_touserdata(L, -1);
    if (t && !cc_event_is_set(&t->done))
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
      if (t && t != current && !t->daemon && !cc_event_is_set(&t->done)) {
        wait_for = t;
        break; /* the handle stays on the stack, alive while it is waited for */
      }
      lua_pop(L, 1);
    }
    if (!wait_for) {
      lua_pop(L, 1);
      break;
    }
    /* A thread unanchors its handle as it ends, and another thread's GC may
     * collect it: the stack keeps it for this wait. */
    int r = join(wait_for, CC_FOREVER);
    lua_pop(L, 3);
    if (r == CC_EINTR || r == CC_EDEADLK)
      return r;
  }
  /* The joined threads' pthreads too, and those of threads that ended
   * but whose handles were never joined: each still runs the last lines of
   * its start in this library after it says it is done, and a stock
   * lua5.4 unloads the library after this (it crashed them there). */
  reap_ended();
  cc_gil_freeze();
  cc_sched_forget_others();
  return 0;
}

/* In a new child: only the forking thread goes on; the others are gone. */
void cc__lthreads_after_fork(lua_State *L) {
  cc_gil_after_fork();
  if (!cc_gil_enabled())
    return;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, RUNNING_KEY);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    thr *t = lua_touserdata(L, -1);
    if (t && t != current)
      cc_event_set(&t->done);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* The parent's pthreads are not this process's to join. */
  for (thr *t = unreaped; t; t = t->next)
    t->reaped = 1;
  unreaped = NULL;
  while (zombies) {
    zombie *z = zombies;
    zombies = z->next;
    free(z);
  }
}

/* concur.wait's: its function has returned. */
static int handle_ready(cc_lwatch *w, short revents) {
  (void)revents;
  return cc_event_is_set(&((thr *)w->p)->done);
}

static void handle_watch(lua_State *L, int idx, cc_lwatch *w) {
  thr *t = check_handle(L, idx);
  if (t == current)
    cc__lraise_code(L, CC_EVALUE, "a thread cannot wait for itself to end");
  w->p = t;
  w->ready = handle_ready;
  w->what = t->name;
}

static const cc_lwaitable handle_waitable = {"Thread", handle_watch};

static const luaL_Reg handle_methods[] = {{"join", handle_join},
                                          {"is_alive", handle_is_alive},
                                          {"ident", handle_ident},
                                          {NULL, NULL}};

void cc__open_thread(lua_State *L) {
  if (luaL_newmetatable(L, HANDLE_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, handle_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, handle_gc);
    lua_setfield(L, -2, "__gc");
    cc__lwaitable(L, -1, &handle_waitable);
  }
  lua_pop(L, 1);
  static const luaL_Reg internal[] = {{"thread_start", l_thread_start},
                                      {"thread_current", l_thread_current},
                                      {"thread_number", l_thread_number},
                                      {"threads", l_threads},
                                      {NULL, NULL}};
  cc__lprivate_funcs(L, internal);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  running_L = lua_tothread(L, -1);
  lua_pop(L, 1);
  cc_ident_set_where(lua_where);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_COLIBNAME) == LUA_TTABLE) {
    lua_pushcfunction(L, co_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, co_wrap);
    lua_setfield(L, -2, "wrap");
  }
  lua_pop(L, 2);
}
