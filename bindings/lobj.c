/* lobj - Lua wrappers of arena objects, deadlines, and lock guards */
#include "concur/error.h"
#include "concur/proctab.h"
#include "concur/trace.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <math.h>
#include <string.h>

typedef cc_wrapper wrapper;

static int is_type(const wrapper *w, const char *tname) {
  const cc_type *t = cc_type_get(w->type);
  const char *name = t ? t->name : "?";
  return name == tname || strcmp(name, tname) == 0;
}

static double time_scale; /* threads: set at luaopen_concur (settings), before any */

double cc__ltime_scale(void) { return time_scale; }
void cc__lset_time_scale(double s) { time_scale = s; }

/* A timeout in seconds: the value at idx (nil: none), checked as argument
 * #arg. */
static int64_t timeout_at(lua_State *L, int idx, int arg) {
  if (lua_isnoneornil(L, idx))
    return CC_FOREVER;
  if (!lua_isnumber(L, idx))
    luaL_argerror(L, arg, lua_pushfstring(L, "timeout must be a number of seconds, not %s",
                                          luaL_typename(L, idx)));
  double t = lua_tonumber(L, idx);
  luaL_argcheck(L, t >= 0 && !isnan(t), arg, "timeout must not be negative");
  return cc_deadline(t * time_scale);
}

/* The rule of every blocking method, as Python's keywords: its trailing
 * block and timeout arguments may instead be one table, {timeout = s} or
 * {block = b, timeout = s}; an unknown name in it is refused. */
int64_t cc__ldeadline(lua_State *L, int idx) {
  if (lua_istable(L, idx)) {
    static const char *const known[] = {"timeout", NULL};
    cc__lcheck_fields_at(L, idx, NULL, idx, known, 0);
    lua_getfield(L, idx, "timeout");
    int64_t dl = timeout_at(L, -1, idx);
    lua_pop(L, 1);
    return dl;
  }
  return timeout_at(L, idx, idx);
}

int64_t cc__lblock_deadline(lua_State *L, int idx) {
  if (lua_gettop(L) < idx)
    return CC_FOREVER; /* acquire(): the usual call, answered at once */
  if (lua_istable(L, idx)) {
    static const char *const known[] = {"block", "timeout", NULL};
    cc__lcheck_fields_at(L, idx, NULL, idx, known, 0);
    lua_getfield(L, idx, "block");
    int block = lua_isnil(L, -1) || lua_toboolean(L, -1);
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
      luaL_argerror(L, idx, "block must be a boolean");
    lua_pop(L, 1);
    if (!block)
      return 0;
    lua_getfield(L, idx, "timeout");
    int64_t dl = timeout_at(L, -1, idx);
    lua_pop(L, 1);
    return dl;
  }
  if (!lua_isnoneornil(L, idx) && !lua_isboolean(L, idx))
    luaL_argerror(L, idx, lua_pushfstring(L, "block must be a boolean, not %s (a timeout goes "
                                          "after it, or as {timeout = seconds})",
                                          luaL_typename(L, idx)));
  if (lua_isboolean(L, idx) && !lua_toboolean(L, idx))
    return 0;
  return timeout_at(L, idx + 1, idx + 1);
}

static void push_mt(lua_State *L, const cc_obj *o) {
  lua_pushfstring(L, "concur.%s", cc_obj_typename(o));
  if (luaL_getmetatable(L, lua_tostring(L, -1)) == LUA_TNIL)
    luaL_error(L, "concur: no Lua type for arena objects of type %s",
               cc_obj_typename(o));
  lua_remove(L, -2);
}

void cc__lpush_obj(lua_State *L, cc_obj *o, int adopt) {
  wrapper *w = lua_newuserdatauv(L, sizeof *w, 2); /* 2: the name, once closed */
  w->magic = CC_WRAPPER_MAGIC;
  w->o = NULL;
  w->type = o->type;
  w->busy = 0;
  w->closed = 0;
  w->spare = 0;
  push_mt(L, o);
  lua_setmetatable(L, -2);
  int r = adopt ? cc_hold_adopt(o) : cc_hold(o);
  if (r) {
    if (adopt)
      cc_obj_unref(o);
    cc__lraise_code(L, r, NULL);
  }
  w->o = o;
}

const char *const cc__lname_only[] = {"name", NULL};

int cc__ltake_options(lua_State *L, int most, const char *const *known, cc_lopts *opts) {
  opts->len = 0;
  int idx = lua_gettop(L);
  if (idx > most)
    luaL_argerror(L, most + 1, lua_pushfstring(L, "%d arguments at most, the last an options "
                                               "table such as {name = ...}", most));
  if (idx == most && !lua_isnil(L, idx) && lua_type(L, idx) != LUA_TTABLE)
    luaL_argerror(L, idx, lua_pushfstring(L, "options must be a table such as {name = ...}, "
                                          "not %s", luaL_typename(L, idx)));
  if (idx < 1 || lua_type(L, idx) != LUA_TTABLE)
    return 0;
  if (lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    return 0; /* an instance of a class: a positional argument */
  }
  cc__lcheck_fields_at(L, idx, NULL, idx, known, 0);
  cc__lread_name(L, idx, opts);
  lua_settop(L, idx - 1);
  return idx;
}

void cc__lread_name(lua_State *L, int idx, cc_lopts *opts) {
  opts->len = 0;
  if (lua_getfield(L, idx, "name") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, idx, lua_pushfstring(L, "name must be a string, not %s",
                                            luaL_typename(L, -1)));
    size_t n;
    const char *name = lua_tolstring(L, -1, &n);
    luaL_argcheck(L, n >= 1 && n < CC_OBJ_NAME_MAX && !memchr(name, '\0', n), idx,
                  "name must be 1 to 63 bytes, with no NUL");
    memcpy(opts->name, name, n + 1);
    opts->len = n;
  }
  lua_pop(L, 1);
}

void cc__lname_obj(lua_State *L, cc_obj *o, const cc_lopts *opts) {
  if (opts->len) {
    int r = cc_obj_set_name(o, opts->name, opts->len);
    if (r)
      cc__lraise_code(L, r, NULL);
    cc__trace_named(o);
  }
}

void *cc__lcheck_alloc(lua_State *L, void *o) {
  if (!o)
    cc__lraise_code(L, CC_EARENAFULL, NULL);
  return o;
}

int cc__lmetaflag(lua_State *L, int idx, const char *flag) {
  if (!lua_touserdata(L, idx) || !lua_getmetatable(L, idx))
    return 0;
  lua_getfield(L, -1, flag);
  int set = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return set;
}

cc_obj *cc__ltest_obj(lua_State *L, int idx, const char *tname) {
  wrapper *w = cc__lwrapper(L, idx);
  if (!w || (tname && !is_type(w, tname)))
    return NULL;
  return w->o;
}

cc_obj *cc__lcheck_obj(lua_State *L, int idx, const char *tname) {
  wrapper *w = cc__lwrapper_any(L, idx);
  if (!w)
    luaL_typeerror(L, idx, tname ? tname : "concur object");
  if (!w->o)
    luaL_error(L, "attempt to use a closed %s", tname ? tname : "object");
  if (tname && !is_type(w, tname))
    luaL_typeerror(L, idx, tname);
  return w->o;
}

int cc__lobj_close(lua_State *L) {
  wrapper *w = cc__lwrapper_any(L, 1);
  if (w && w->o) {
    cc_obj *o = w->o;
    char name[CC_OBJ_NAME_MAX];
    lua_pushstring(L, cc_obj_name(o, name));
    lua_setiuservalue(L, 1, 2);
    w->o = NULL;
    if (w->busy)
      w->closed = 1; /* another thread waits on it: it lets go when done */
    else
      cc_unhold(o);
  }
  return 0;
}

void cc__lidle(cc_wrapper *w, cc_obj *o) {
  if (--w->busy == 0 && w->closed) {
    w->closed = 0;
    cc_unhold(o);
  }
}

/* tostring of a closed wrapper: Queue(orders, closed). True when it was
 * one. */
static int closed_tostring(lua_State *L) {
  wrapper *w = cc__lwrapper_any(L, 1);
  if (!w || w->o)
    return 0;
  const cc_type *t = cc_type_get(w->type);
  lua_getiuservalue(L, 1, 2); /* its name, kept by the close */
  lua_pushfstring(L, "%s(%s, closed)", t ? t->name : "object", lua_tostring(L, -1));
  return 1;
}

static int obj_tostring(lua_State *L) {
  if (closed_tostring(L))
    return 1;
  wrapper *w = cc__lwrapper_any(L, 1);
  if (!w)
    return luaL_typeerror(L, 1, "concur object");
  char name[CC_OBJ_NAME_MAX];
  lua_pushfstring(L, "%s(%s)", cc_obj_typename(w->o), cc_obj_name(w->o, name));
  return 1;
}

/* A type's own __tostring (the upvalue), for open wrappers only. */
static int tostring_open(lua_State *L) {
  if (closed_tostring(L))
    return 1;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

static int obj_eq(lua_State *L) {
  wrapper *a = cc__lwrapper_any(L, 1), *b = cc__lwrapper_any(L, 2);
  lua_pushboolean(L, a && b && a->o && a->o == b->o);
  return 1;
}

void cc__lnew_class(lua_State *L, const char *tname, const luaL_Reg *methods,
                    const luaL_Reg *meta) {
  lua_pushfstring(L, "concur.%s", tname);
  luaL_newmetatable(L, lua_tostring(L, -1));
  lua_remove(L, -2);
  luaL_setfuncs(L, meta, 0);
  /* A closed object prints as one, whatever its type's own tostring does. */
  if (lua_getfield(L, -1, "__tostring") == LUA_TFUNCTION) {
    lua_pushcclosure(L, tostring_open, 1);
    lua_setfield(L, -2, "__tostring");
  } else {
    lua_pop(L, 1);
  }
  static const struct {
    const char *name;
    lua_CFunction fn;
  } defaults[] = {{"__gc", cc__lobj_close},
                  {"__close", cc__lobj_close},
                  {"__tostring", obj_tostring},
                  {"__eq", obj_eq}};
  for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
    if (lua_getfield(L, -1, defaults[i].name) == LUA_TNIL) {
      lua_pushcfunction(L, defaults[i].fn);
      lua_setfield(L, -3, defaults[i].name);
    }
    lua_pop(L, 1);
  }
  if (lua_getfield(L, -1, "__index") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
  }
  lua_pop(L, 2);
}

/* Guards: a to-be-closed value that releases what hold() acquired. The
 * wrapper (the guard's user value) is busy while the guard holds: the
 * object outlives a close of the wrapper meanwhile. */
typedef struct guard {
  cc_obj *o;
  const cc_acquirable *a;
  wrapper *w;
} guard;

static int guard_close(lua_State *L) {
  guard *g = luaL_checkudata(L, 1, "concur.Guard");
  if (g->o) {
    cc_obj *o = g->o;
    g->o = NULL;
    int r = g->a->release(o);
    cc__lidle(g->w, o);
    if (r && !lua_isnoneornil(L, 2))
      return 0; /* closing on an error: the first error is the one to see */
    if (r)
      return cc__lraise_code(L, r, NULL);
  }
  return 0;
}

static int guard_tostring(lua_State *L) {
  guard *g = luaL_checkudata(L, 1, "concur.Guard");
  lua_pushstring(L, g->o ? "Guard(held)" : "Guard(released)");
  return 1;
}

/* Acquires o, the wrapper at idx busy meanwhile (and after, when keep). */
static int acquire_or_raise(lua_State *L, int idx, cc_obj *o, const cc_acquirable *a,
                            int keep) {
  wrapper *w = cc__lbusy(L, idx);
  int r = a->acquire(o, CC_FOREVER);
  int ok = r == 0 || r == CC_EOWNERDEAD;
  if (!ok || !keep)
    cc__lidle(w, o);
  if (!ok)
    return cc__lraise_code(L, r, NULL);
  return 0;
}

int cc__lhold(lua_State *L, int idx, const cc_acquirable *a) {
  cc_obj *o = cc__lcheck_obj(L, idx, NULL);
  guard *g = lua_newuserdatauv(L, sizeof *g, 1);
  g->o = NULL;
  g->a = a;
  g->w = cc__lwrapper_any(L, idx);
  if (luaL_newmetatable(L, "concur.Guard")) {
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, guard_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "release");
  }
  lua_setmetatable(L, -2);
  /* The guard keeps the wrapper, so the object outlives the guard. */
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
  acquire_or_raise(L, idx, o, a, 1);
  g->o = o;
  return 1;
}

static int with_finish(lua_State *L, int status, lua_KContext ctx) {
  cc_obj *o = lua_touserdata(L, 2);
  const cc_acquirable *a = (const cc_acquirable *)ctx;
  int r = a->release(o);
  cc__lidle(cc__lwrapper_any(L, 1), o);
  if (status != LUA_OK && status != LUA_YIELD)
    return lua_error(L);
  if (r)
    return cc__lraise_code(L, r, NULL);
  return lua_gettop(L) - 2;
}

int cc__lwith(lua_State *L, int idx, const cc_acquirable *a) {
  cc_obj *o = cc__lcheck_obj(L, idx, NULL);
  luaL_checktype(L, idx + 1, LUA_TFUNCTION);
  acquire_or_raise(L, idx, o, a, 1); /* busy until with_finish */
  /* Stack: [1] the wrapper (kept, so the object stays alive), [2] the
   * object, [3] fn, [4..] its arguments. */
  lua_pushlightuserdata(L, o);
  lua_insert(L, idx + 1);
  int nargs = lua_gettop(L) - idx - 2;
  int status = lua_pcallk(L, nargs, LUA_MULTRET, 0, (lua_KContext)a, with_finish);
  return with_finish(L, status, (lua_KContext)a);
}
