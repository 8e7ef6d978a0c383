/* lproc - Lua binding of Process: classes, start, join, and the process tree */
#include "concur/error.h"
#include "concur/lock.h"
#include "concur/proc.h"
#include "concur/wait.h"
#include "concur/sched.h"
#include "lconcur.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/*
 * A Process is a userdata (its cc_proc) whose user value holds its Lua fields
 * (target, args, and whatever a subclass's constructor was given). Classes
 * are plain tables: concur.Process, and those made by :extend(), which
 * inherit through __index. Each class has its own instance metatable, whose
 * __index looks in the fields, then the attributes (pid, name, ...), then
 * the class.
 */

enum role { ROLE_CHILD, ROLE_SELF, ROLE_OTHER };

typedef struct lproc {
  cc_proc p;
  int role;
  int started_here; /* pid of the process that made it */
} lproc;

#define CHILDREN_KEY "concur.children"
#define CURRENT_KEY "concur.current"
#define CLASS_KEY "concur.ProcessClass"
#define BASE_KEY "concur.Process.base" /* the base class, whose fields are checked */

static lproc *test_proc(lua_State *L, int idx) {
  return cc__lmetaflag(L, idx, "__concur_process") ? lua_touserdata(L, idx) : NULL;
}

static lproc *check_proc(lua_State *L, int idx) {
  lproc *p = test_proc(L, idx);
  if (!p)
    luaL_typeerror(L, idx, "Process");
  return p;
}

/* concur.wait's: ended (reaped by the look, as is_alive does). */
static int proc_ready(cc_lwatch *w, short revents) {
  (void)revents;
  cc_proc *p = w->p;
  return p->state == CC_PROC_REAPED || !cc_proc_poll(p);
}

static void proc_watch(lua_State *L, int idx, cc_lwatch *w) {
  lproc *p = check_proc(L, idx);
  if (p->role != ROLE_CHILD || p->p.state == CC_PROC_NEW)
    cc__lraise_code(L, CC_EPROC, "can only wait for a started process");
  if (p->p.state == CC_PROC_STARTED && p->p.parent_pid != getpid())
    cc__lraise_code(L, CC_EPROC, "can only wait for a child process");
  w->p = &p->p;
  w->ready = proc_ready;
  w->what = p->p.name;
  /* Its pidfd is readable once it ends; a copy, as a join by another
   * thread closes it. Without one (before Linux 5.3), it is looked at
   * every wait slice. */
  w->events = POLLIN;
  if (p->p.state == CC_PROC_STARTED && p->p.pidfd >= 0)
    w->fd = fcntl(p->p.pidfd, F_DUPFD_CLOEXEC, 0);
}

static const cc_lwaitable proc_waitable = {"Process", proc_watch};

static int proc_index(lua_State *L);
static int proc_newindex(lua_State *L);
static int proc_gc(lua_State *L);
static int proc_tostring(lua_State *L);

/* The instance metatable of the class at idx, made on first use. */
static void push_instance_mt(lua_State *L, int cls) {
  cls = lua_absindex(L, cls);
  if (lua_getfield(L, LUA_REGISTRYINDEX, CLASS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CLASS_KEY);
  }
  lua_pushvalue(L, cls);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 8);
  lua_pushvalue(L, cls);
  lua_pushcclosure(L, proc_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, proc_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, proc_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, proc_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, proc_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "concur.Process");
  lua_setfield(L, -2, "__name");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "__concur_process");
  cc__lwaitable(L, -1, &proc_waitable);
  lua_pushvalue(L, cls);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

/* A new instance of the class at cls, its fields table empty. */
static lproc *new_instance(lua_State *L, int cls, const char *name, int role) {
  cls = lua_absindex(L, cls);
  lproc *p = lua_newuserdatauv(L, sizeof *p, 1);
  memset(p, 0, sizeof *p);
  p->p.pidfd = -1;
  p->role = role;
  p->started_here = getpid();
  if (role == ROLE_CHILD)
    cc_proc_init(&p->p, name, 0);
  else if (name)
    snprintf(p->p.name, sizeof p->p.name, "%s", name);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  push_instance_mt(L, cls);
  lua_setmetatable(L, -2);
  return p;
}

/* A bad fields table: the user's argument #1 (the class is #1 of the
 * __call Lua makes of Process{...}). */
static int bad_fields(lua_State *L, int ok, const char *why) {
  if (!ok)
    luaL_error(L, "bad argument #1 to 'Process' (%s)", why);
  return ok;
}

/* Class(t): t's fields become the instance's. */
static int class_call(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int has = !lua_isnoneornil(L, 2);
  if (has && !lua_istable(L, 2))
    return luaL_error(L, "bad argument #1 to 'Process' (a table of fields expected, got %s: "
                      "Process{target = f, args = {...}})", luaL_typename(L, 2));
  /* The base class takes its own fields only (a subclass's instances may
   * take any: its run() reads them). */
  lua_getfield(L, LUA_REGISTRYINDEX, BASE_KEY);
  if (has && lua_rawequal(L, 1, -1)) {
    static const char *const known[] = {"target", "args", "name", "daemon", NULL};
    cc__lcheck_fields(L, 2, "Process", 1, known);
  }
  lua_pop(L, 1);
  const char *name = NULL;
  if (has && lua_getfield(L, 2, "name") != LUA_TNIL) {
    bad_fields(L, lua_type(L, -1) == LUA_TSTRING, "name must be a string");
    name = lua_tostring(L, -1);
  }
  if (has && lua_getfield(L, 2, "target") != LUA_TNIL)
    bad_fields(L, lua_isfunction(L, -1) || luaL_getmetafield(L, -1, "__call"),
               "target must be a function");
  if (has && lua_getfield(L, 2, "args") != LUA_TNIL)
    bad_fields(L, lua_istable(L, -1), "args must be a table");
  int daemon = 0;
  if (has && lua_getfield(L, 2, "daemon") != LUA_TNIL) {
    bad_fields(L, lua_isboolean(L, -1), "daemon must be a boolean");
    daemon = lua_toboolean(L, -1);
  }
  lua_settop(L, 2);
  lproc *p = new_instance(L, 1, name, ROLE_CHILD);
  p->p.daemon = daemon;
  if (has) {
    lua_getiuservalue(L, -1, 1);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      if (strcmp(k, "name") && strcmp(k, "daemon")) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
      } else {
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  return 1;
}

static void set_class_mt(lua_State *L, int base) {
  lua_createtable(L, 0, 2);
  if (base) {
    lua_pushvalue(L, base);
    lua_setfield(L, -2, "__index");
  }
  lua_pushcfunction(L, class_call);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
}

/* Process:extend(): a subclass; define its run with function P:run() end. */
static int proc_extend(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_newtable(L);
  set_class_mt(L, 1);
  return 1;
}

static int proc_index(lua_State *L) {
  lproc *p = lua_touserdata(L, 1);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL)
    return 1;
  const char *k = lua_tostring(L, 2);
  if (k && lua_type(L, 2) == LUA_TSTRING) {
    if (!strcmp(k, "pid") || !strcmp(k, "ident")) {
      if (p->p.pid)
        lua_pushinteger(L, cc_sched_shown_pid(p->p.pid));
      else
        lua_pushnil(L);
      return 1;
    }
    if (!strcmp(k, "name")) {
      lua_pushstring(L, p->p.name);
      return 1;
    }
    if (!strcmp(k, "daemon")) {
      lua_pushboolean(L, p->p.daemon);
      return 1;
    }
    if (!strcmp(k, "exitcode")) {
      if (p->role == ROLE_CHILD && p->p.state == CC_PROC_STARTED &&
          p->p.parent_pid == getpid())
        cc_proc_poll(&p->p);
      if (p->p.state == CC_PROC_REAPED)
        lua_pushinteger(L, p->p.exitcode);
      else
        lua_pushnil(L);
      return 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_gettable(L, lua_upvalueindex(1));
  return 1;
}

static int proc_newindex(lua_State *L) {
  lproc *p = lua_touserdata(L, 1);
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
  if (!strcmp(k, "name")) {
    snprintf(p->p.name, sizeof p->p.name, "%s", luaL_checkstring(L, 3));
    return 0;
  }
  if (!strcmp(k, "daemon")) {
    if (p->p.state != CC_PROC_NEW)
      return cc__lraise_code(L, CC_EPROC, "process has already started: set "
                        "daemon before start()");
    luaL_argcheck(L, lua_isboolean(L, 3), 3, "daemon must be a boolean");
    p->p.daemon = lua_toboolean(L, 3);
    return 0;
  }
  if (!strcmp(k, "pid") || !strcmp(k, "exitcode") || !strcmp(k, "ident"))
    return luaL_error(L, "Process.%s is read-only", k);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static void children_table(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, CHILDREN_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CHILDREN_KEY);
  }
}

/* Drops the registry's reference to a reaped child. */
static void untrack(lua_State *L, lproc *p) {
  children_table(L);
  lua_pushlightuserdata(L, p);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int proc_start(lua_State *L);

/* The level of the start call that forked this child, in msgh's frame, or
 * 0 (not in a child's run). The child runs on top of its parent's stack,
 * so what is from there down is the parent's. */
static int start_level(lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "f", &ar);
    int at_start = lua_tocfunction(L, -1) == proc_start;
    lua_pop(L, 1);
    if (at_start)
      return level;
  }
  return 0;
}

/* Pushes traceback tb (a "stack traceback:" and one line a level) with only
 * its first `keep` levels, and not a C call left at their bottom. */
static void push_cut(lua_State *L, const char *tb, int keep) {
  const char *p = strstr(tb, "stack traceback:");
  if (!p || keep < 0) {
    lua_pushstring(L, tb);
    return;
  }
  const char *end = strchr(p, '\n'), *last = end;
  for (int i = 0; end && i < keep; i++) {
    last = end;
    end = strchr(end + 1, '\n');
  }
  if (!end)
    end = tb + strlen(tb);
  if (last && last < end && (size_t)(end - last) == 11 && strncmp(last, "\n\t[C]: in ?", 11) == 0)
    end = last;
  lua_pushlstring(L, tb, (size_t)(end - tb));
}

static int msgh(lua_State *L) {
  int start = start_level(L);
  if (luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL && lua_istable(L, 1)) {
    lua_pop(L, 1);
    lua_getfield(L, 1, "traceback");
    const char *tb = lua_tostring(L, -1);
    const char *s = luaL_tolstring(L, 1, NULL);
    if (tb) {
      /* Made where it was raised: its levels are msgh's from 2 on. */
      lua_pushfstring(L, "%s\n", s);
      push_cut(L, tb, start ? start - 2 : -1);
      lua_concat(L, 2);
      return 1;
    }
    luaL_traceback(L, L, s, 1);
    push_cut(L, lua_tostring(L, -1), start ? start - 1 : -1);
    return 1;
  }
  const char *s = lua_tostring(L, 1);
  if (!s)
    s = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, s, 1);
  push_cut(L, lua_tostring(L, -1), start ? start - 1 : -1);
  return 1;
}

/* The life of a child: run, report an error as CPython does, finish. */
static _Noreturn void child_main(lua_State *L, int self) {
  cc__lthreads_after_fork(L);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, CHILDREN_KEY);
  lua_pushvalue(L, self);
  lua_setfield(L, LUA_REGISTRYINDEX, CURRENT_KEY);
  lproc *p = lua_touserdata(L, self);
  p->role = ROLE_SELF;
  /* Children must not share their parent's random sequence. */
  if (!cc__lsched_seed_child(L) && lua_getglobal(L, "math") == LUA_TTABLE &&
      lua_getfield(L, -1, "randomseed") == LUA_TFUNCTION) {
    lua_pushinteger(L, (lua_Integer)getpid() * 2654435761u);
    lua_pushinteger(L, (lua_Integer)cc_now());
    lua_pcall(L, 2, 0, 0);
  }
  lua_settop(L, self);
  int code = 0;
  lua_pushcfunction(L, msgh);
  lua_getfield(L, self, "run");
  lua_pushvalue(L, self);
  if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
    fflush(stdout);
    fprintf(stderr, "Process %s:\n%s\n", p->p.name, lua_tostring(L, -1));
    code = 1;
  }
  if (cc_lfinish(L) != 0 && code == 0)
    code = 1;
  cc_proc_exit(code);
}

static int proc_start(lua_State *L) {
  lproc *p = check_proc(L, 1);
  /* First, as it may wait (another thread may start p meanwhile). */
  cc__lthreads_before_fork();
  if (p->role != ROLE_CHILD || p->p.state != CC_PROC_NEW)
    return cc__lraise_code(L, CC_EPROC, "cannot start a process twice");
  if (p->started_here != getpid())
    return cc__lraise_code(L, CC_EPROC, "can only start a process object "
                      "created by the current process");
  lua_settop(L, 1);
  int r = cc_proc_start(&p->p);
  if (r == 0)
    child_main(L, 1);
  if (r == CC_ELIMIT)
    return cc__lraise_code(L, CC_EPROC,
                      "too many processes: limits.max_processes (%u) are alive; "
                      "raise it in concur.yaml if this is intended",
                      cc_proctab_capacity() - 1);
  if (r == CC_EPROC)
    return cc__lraise_code(L, CC_EPROC,
                      "daemonic processes are not allowed to have children");
  if (r < 0)
    return cc__lraise_code(L, r, "cannot start %s: %s", p->p.name, cc_strerror(r));
  children_table(L);
  lua_pushlightuserdata(L, p);
  lua_pushvalue(L, 1);
  lua_rawset(L, -3);
  cc__lsentinel_renew(L);
  return 0;
}

static int proc_join(lua_State *L) {
  lproc *p = check_proc(L, 1);
  int64_t dl = cc__ldeadline(L, 2);
  if (p->role == ROLE_SELF)
    return cc__lraise_code(L, CC_EPROC, "a process cannot join itself");
  if (p->p.state == CC_PROC_NEW)
    return cc__lraise_code(L, CC_EPROC, "can only join a started process");
  if (p->role != ROLE_CHILD || p->p.parent_pid != getpid())
    return cc__lraise_code(L, CC_EPROC, "can only join a child process");
  int r = cc_proc_join(&p->p, dl);
  if (r == CC_ETIMEDOUT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (r)
    return cc__lraise_code(L, r, NULL);
  untrack(L, p);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_is_alive(lua_State *L) {
  lproc *p = check_proc(L, 1);
  if (p->role == ROLE_SELF) {
    lua_pushboolean(L, 1);
  } else if (p->role == ROLE_OTHER) {
    lua_pushboolean(L, p->p.pid > 0 && cc__tid_alive(p->p.pid));
  } else if (p->p.state == CC_PROC_STARTED && p->p.parent_pid != getpid()) {
    return cc__lraise_code(L, CC_EPROC, "can only test a child process");
  } else {
    int alive = cc_proc_poll(&p->p);
    if (!alive && p->p.state == CC_PROC_REAPED)
      untrack(L, p);
    lua_pushboolean(L, alive);
  }
  return 1;
}

static int signal_proc(lua_State *L, int sig) {
  lproc *p = check_proc(L, 1);
  if (p->role != ROLE_CHILD)
    return cc__lraise_code(L, CC_EPROC, "can only %s a child process, not %s (to end this "
                      "one, use os.exit)", sig == SIGKILL ? "kill" : "terminate",
                      p->role == ROLE_SELF ? "the current one" : "this one's parent");
  cc_proc_signal(&p->p, sig);
  return 0;
}

static int proc_terminate(lua_State *L) { return signal_proc(L, SIGTERM); }
static int proc_kill(lua_State *L) { return signal_proc(L, SIGKILL); }

static int proc_status(lua_State *L) {
  lproc *p = check_proc(L, 1);
  if (p->role == ROLE_SELF)
    lua_pushstring(L, "running");
  else
    lua_pushstring(L, cc_proc_status(&p->p));
  return 1;
}

/* The default run: target(table.unpack(args)). */
static int proc_run(lua_State *L) {
  check_proc(L, 1);
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "target") == LUA_TNIL)
    return 0;
  int n = 0;
  if (lua_getfield(L, 1, "args") == LUA_TTABLE) {
    n = (int)luaL_len(L, 3);
    luaL_checkstack(L, n, "too many arguments");
    for (int i = 1; i <= n; i++)
      lua_geti(L, 3, i);
  }
  lua_remove(L, 3);
  lua_call(L, n, 0);
  return 0;
}

static int proc_gc(lua_State *L) {
  lproc *p = lua_touserdata(L, 1);
  if (p->role == ROLE_CHILD && p->p.state == CC_PROC_STARTED)
    cc_proc_forget(&p->p);
  return 0;
}

static int proc_tostring(lua_State *L) {
  lproc *p = lua_touserdata(L, 1);
  const char *st = p->role == ROLE_SELF ? "started"
                   : p->p.state == CC_PROC_NEW ? "initial"
                   : p->p.state == CC_PROC_REAPED ? "stopped"
                                                   : "started";
  if (p->p.state == CC_PROC_REAPED)
    lua_pushfstring(L, "<Process name=%s pid=%d %s exitcode=%d%s>", p->p.name,
                    cc_sched_shown_pid(p->p.pid), st, p->p.exitcode, p->p.daemon ? " daemon" : "");
  else if (p->p.pid)
    lua_pushfstring(L, "<Process name=%s pid=%d %s%s>", p->p.name,
                    cc_sched_shown_pid(p->p.pid), st,
                    p->p.daemon ? " daemon" : "");
  else
    lua_pushfstring(L, "<Process name=%s %s%s>", p->p.name, st,
                    p->p.daemon ? " daemon" : "");
  return 1;
}

static int l_current_process(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, CURRENT_KEY) != LUA_TNIL)
    return 1;
  lua_pop(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "Process");
  lproc *p = new_instance(L, -1, "MainProcess", ROLE_SELF);
  p->p.pid = getpid();
  p->p.state = CC_PROC_STARTED;
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, CURRENT_KEY);
  return 1;
}

static int l_parent_process(lua_State *L) {
  cc_procent *self = cc_proc_self();
  if (!self || cc_proc_self_slot() == 0) {
    lua_pushnil(L);
    return 1;
  }
  cc_procent *pe = cc_proctab_find(self->ppid);
  lua_getfield(L, lua_upvalueindex(1), "Process");
  lproc *p = new_instance(L, -1, pe ? pe->name : "MainProcess", ROLE_OTHER);
  p->p.pid = self->ppid;
  p->p.state = CC_PROC_STARTED;
  return 1;
}

static int l_active_children(lua_State *L) {
  lua_newtable(L);
  children_table(L);
  int n = 0;
  cc_proc *c = cc_proc_children();
  while (c && c->next)
    c = c->next;
  /* The list is newest first: walk it backwards, in start order. */
  for (cc_proc *prev; c; c = prev) {
    prev = c->prev;
    if (cc_proc_poll(c)) {
      lua_pushlightuserdata(L, c);
      lua_rawget(L, -2);
      lua_rawseti(L, -3, ++n);
    } else {
      lua_pushlightuserdata(L, c);
      lua_pushnil(L);
      lua_rawset(L, -3);
    }
  }
  lua_pop(L, 1);
  return 1;
}

int cc_lfinish(lua_State *L) {
  int r = cc__ljoin_threads(L);
  if (r == 0)
    r = cc_proc_finish_children();
  if (r == 0) {
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, CHILDREN_KEY);
  }
  cc_proc_reap_orphans();
  return r;
}

static const luaL_Reg methods[] = {
    {"start", proc_start},         {"join", proc_join},
    {"is_alive", proc_is_alive},   {"terminate", proc_terminate},
    {"kill", proc_kill},           {"status", proc_status},
    {"run", proc_run},             {"extend", proc_extend},
    {NULL, NULL}};

void cc__open_proc(lua_State *L) {
  luaL_newlib(L, methods);
  set_class_mt(L, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, BASE_KEY);
  lua_setfield(L, -2, "Process");
  static const luaL_Reg funcs[] = {{"current_process", l_current_process},
                                   {"parent_process", l_parent_process},
                                   {NULL, NULL}};
  lua_pushvalue(L, -1);
  luaL_setfuncs(L, funcs, 1);
  lua_pushcfunction(L, l_active_children);
  lua_setfield(L, -2, "active_children");
}
