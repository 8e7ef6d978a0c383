/* lruntime - concur's functions: sleep, time, cpu_count, getpid, params, report */
#include "codec.h"
#include "concur/error.h"
#include "concur/gil.h"
#include "concur/lock.h"
#include "concur/proc.h"
#include "concur/trace.h"
#include "concur/wait.h"
#include "concur/sched.h"
#include "lconcur.h"

#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Threads: set at luaopen_concur, before any thread, and read after; a
 * report is one write(2), so lines of several threads never mix. */
static const char *metrics_path;
static lua_State *sig_state;
static struct sigaction prev_sigint;

void cc__lset_metrics_path(const char *path) { metrics_path = path; }

static int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && !isnan(s), 1, "seconds must not be negative");
  int r = cc_sleep_until(cc_deadline(s * cc__ltime_scale()));
  if (r)
    return cc__lraise_code(L, r, NULL);
  return 0;
}

static int l_time(lua_State *L) {
  lua_pushnumber(L, (double)cc_now() / 1e9);
  return 1;
}

static int l_cpu_count(lua_State *L) {
  lua_pushinteger(L, cc_cpu_count());
  return 1;
}

/* arena_stats(): the shared arena's size, the bytes of its live blocks and
 * how many there are: what a run has made and not freed, in every process. */
static int l_arena_stats(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)cc_arena_size());
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)cc_arena_used());
  lua_setfield(L, -2, "used");
  lua_pushinteger(L, (lua_Integer)cc_arena_live_blocks());
  lua_setfield(L, -2, "blocks");
  return 1;
}

/* P.pid_alive(pid): the process exists and is not a zombie. */
static int l_pid_alive(lua_State *L) {
  lua_pushboolean(L, cc__tid_alive(cc_sched_real_pid((int)luaL_checkinteger(L, 1))));
  return 1;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, cc_sched_shown_pid(cc_pid()));
  return 1;
}

/* concur.report{name = value, ...}: one JSON line appended to the metrics
 * file the host was given (the batch runner reads it). Values are numbers,
 * booleans or strings. */
static int l_report(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  json_t *obj = json_object();
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      json_decref(obj);
      return luaL_argerror(L, 1, "metric names must be strings");
    }
    const char *k = lua_tostring(L, -2);
    json_t *v;
    switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
      v = lua_isinteger(L, -1) ? json_integer(lua_tointeger(L, -1))
                               : json_real(lua_tonumber(L, -1));
      break;
    case LUA_TBOOLEAN:
      v = json_boolean(lua_toboolean(L, -1));
      break;
    case LUA_TSTRING:
      v = json_string(lua_tostring(L, -1));
      break;
    default:
      json_decref(obj);
      return luaL_error(L, "metric '%s' must be a number, boolean or string, not %s",
                        k, luaL_typename(L, -1));
    }
    json_object_set_new(obj, k, v);
    lua_pop(L, 1);
  }
  if (metrics_path) {
    char *line = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    int fd = open(metrics_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (line && fd >= 0) {
      /* One write with O_APPEND: lines from several processes never mix. */
      size_t n = strlen(line);
      line[n] = '\n';
      ssize_t w = write(fd, line, n + 1);
      (void)w;
    }
    if (fd >= 0)
      close(fd);
    free(line);
  }
  json_decref(obj);
  return 0;
}

/* The interpreter's hook: Ctrl-C stops the running Lua code at its next
 * instruction (as lua.c does), and a waiting thread gets the GIL. Ctrl-C
 * is the main thread's, as Python's KeyboardInterrupt: it stops that
 * thread's wait (the signal is blocked in the others) or its Lua code,
 * once; the first to see it raises Interrupted and takes it, so that a
 * pcall around the call returns with it and cleanup code runs. */
void cc__lhook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (cc__linterrupt_pending() && L == sig_state) {
    cc_linterrupt_take();
    cc__lraise_code(L, CC_EINTR, "interrupted (Ctrl-C)");
  }
  /* A one-shot hook (a poke for the GIL): the next poke sets it again. */
  cc__lhook_restore(L);
  cc_gil_check();
}

static void on_sigint(int sig) {
  (void)sig;
  cc_interrupt_thread(getpid()); /* the main thread's tid is the pid */
  cc__linterrupt_pend();
  if (sig_state)
    lua_sethook(sig_state, cc__lhook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void cc__lcatch(int sig, void (*handler)(int), int restart, struct sigaction *prev) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = restart ? SA_RESTART : 0;
  sigaction(sig, &sa, prev);
}

void cc__linstall_sigint(lua_State *L) {
  sig_state = L;
  cc__linterrupt_state(L);
  /* No SA_RESTART: blocking calls must come back to look at the flag. */
  cc__lcatch(SIGINT, on_sigint, 0, &prev_sigint);
}

/* os.exit in a child process ends it at once, as os._exit does in Python
 * (its children are not joined: that is how orphans are made). In the main
 * process it raises SystemExit, so that the run still ends cleanly. */
static int l_os_exit(lua_State *L) {
  int code;
  if (lua_isnoneornil(L, 1) || lua_isboolean(L, 1))
    code = lua_isnoneornil(L, 1) || lua_toboolean(L, 1) ? 0 : 1;
  else
    code = (int)luaL_checkinteger(L, 1);
  if (cc_proc_self_slot() != 0)
    cc_proc_exit(code);
  lua_pushinteger(L, code);
  lua_setfield(L, LUA_REGISTRYINDEX, "concur.exitcode");
  cc__lpush_error(L, CC_EEXIT, "os.exit");
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  return lua_error(L);
}

/* P.slice(t, i, j): a new list of t[i..j], made at its final size. For the
 * Pool, which cuts long lists into tasks (table.move would grow the copy
 * step by step). */
static int l_slice(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer i = luaL_checkinteger(L, 2), j = luaL_checkinteger(L, 3);
  luaL_argcheck(L, i >= 1 && j - i < INT_MAX, 2, "a slice from 1 to at most INT_MAX items");
  int n = j >= i ? (int)(j - i + 1) : 0;
  lua_createtable(L, n, 0);
  for (int k = 1; k <= n; k++) {
    lua_rawgeti(L, 1, i + k - 1);
    lua_rawseti(L, -2, k);
  }
  return 1;
}

/* P.view(t, i, j): t[i..j] as the codec sends it, without a copy. */
static int l_view(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer i = luaL_checkinteger(L, 2), j = luaL_checkinteger(L, 3);
  luaL_argcheck(L, i >= 1 && j - i < INT_MAX, 2, "a view from 1 to at most INT_MAX items");
  cc_lview *v = lua_newuserdatauv(L, sizeof *v, 1);
  v->first = i;
  v->last = j;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, CC_LVIEW);
  return 1;
}

/* P.newtable(n, [rec]): an empty table with room for a list of n and rec fields. */
static int l_newtable(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1), rec = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, n >= 0 && n < INT_MAX, 1, "a size from 0 to INT_MAX");
  luaL_argcheck(L, rec >= 0 && rec < INT_MAX, 2, "a size from 0 to INT_MAX");
  lua_createtable(L, (int)n, (int)rec);
  return 1;
}

/* P.trace_now() -> the time now in ns, or nil when the run is not traced. */
static int l_trace_now(lua_State *L) {
  int64_t t = cc__trace_now();
  if (t)
    lua_pushinteger(L, (lua_Integer)t);
  else
    lua_pushnil(L);
  return 1;
}

/* P.trace_task(since, fn): a pool task that ran fn from since (ns) to now;
 * the span says where fn was written. */
static int l_trace_task(lua_State *L) {
  lua_Integer since = luaL_checkinteger(L, 1);
  char what[160] = "";
  lua_Debug ar;
  if (lua_type(L, 2) == LUA_TFUNCTION) {
    lua_pushvalue(L, 2);
    if (lua_getinfo(L, ">S", &ar))
      snprintf(what, sizeof what, "%s:%d", ar.short_src, ar.linedefined);
  }
  cc__trace_span(CC_TRACE_TASK, NULL, (int64_t)since, what);
  return 0;
}

/* P.type_names() -> the names of the types of arena objects (CC_TYPE_MAP),
 * in their order: what a Manager makes. */
static int l_type_names(lua_State *L) {
  lua_createtable(L, cc__ntypes, 0);
  for (int i = 1; i <= cc__ntypes; i++) {
    lua_pushstring(L, cc_type_get((uint32_t)i)->name);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* The send protocol: a view goes as the list it shows (its items, nil
 * ones too), and arrives as that list. */
static void view_encode(cc_lenc *e, lua_State *L, int idx) {
  const cc_lview *v = lua_touserdata(L, idx);
  lua_Integer n = v->last >= v->first ? v->last - v->first + 1 : 0;
  if (!cc__lput_list(e, idx, n))
    return;
  lua_getiuservalue(L, idx, 1);
  int t = lua_gettop(L);
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, t, v->first + i);
    cc__lput_item(e, i + 1, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  cc__lput_list_end(e);
}

static const cc_lsendable view_sendable = {CC_LVIEW, view_encode, NULL};

void cc__open_runtime(lua_State *L) {
  static const luaL_Reg funcs[] = {{"sleep", l_sleep},
                                   {"time", l_time},
                                   {"cpu_count", l_cpu_count},
                                   {"getpid", l_getpid},
                                   {"arena_stats", l_arena_stats},
                                   {"report", l_report},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  static const luaL_Reg internal[] = {{"pid_alive", l_pid_alive},
                                      {"slice", l_slice},
                                      {"newtable", l_newtable},
                                      {"view", l_view},
                                      {"trace_now", l_trace_now},
                                      {"trace_task", l_trace_task},
                                      {"type_names", l_type_names},
                                      {NULL, NULL}};
  cc__lprivate_funcs(L, internal);
  luaL_newmetatable(L, CC_LVIEW);
  lua_pushliteral(L, "concur.view");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  cc__lcodec_register(L, &view_sendable);
  if (lua_getfield(L, -1, "params") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_setfield(L, -2, "params");
  } else {
    lua_pop(L, 1);
  }
  lua_pushnumber(L, cc__ltime_scale());
  lua_setfield(L, -2, "time_scale");
}

void cc_lhost_os_exit(lua_State *L) {
  if (lua_getglobal(L, "os") == LUA_TTABLE) {
    lua_pushcfunction(L, l_os_exit);
    lua_setfield(L, -2, "exit");
  }
  lua_pop(L, 1);
}
