/* lwait - concur.wait: the ready ones of many objects, of any kind */
#include "concur/error.h"
#include "concur/pipe.h"
#include "concur/ready.h"
#include "lconcur.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WATCH_KEY "__concur_watch"

/* The userdata types registered, for the refusal that lists what it takes:
 * set while the module opens, before any thread. */
#define WAITABLES_MAX 16
static const cc_lwaitable *waitables[WAITABLES_MAX];
static int nwaitables; /* threads: set while the module opens, then only read */

void cc__lwaitable(lua_State *L, int idx, const cc_lwaitable *wt) {
  int i = 0;
  while (i < nwaitables && waitables[i] != wt)
    i++;
  if (i == nwaitables) {
    if (nwaitables == WAITABLES_MAX)
      luaL_error(L, "more than %d types of userdata that concur.wait takes", WAITABLES_MAX);
    waitables[nwaitables++] = wt;
  }
  idx = lua_absindex(L, idx);
  lua_pushlightuserdata(L, (void *)wt);
  lua_setfield(L, idx, WATCH_KEY);
}

/* One object of a call. */
typedef struct item {
  cc_lwatch w;
  cc_wrapper *busy; /* an arena object's wrapper, busy while this waits */
  int slot;         /* its descriptor's place in fds, or -1 */
  int ready;
} item;

/* One call's state: a userdata of the call's, whose user values keep the
 * objects alive while it waits, whatever another thread does to the table;
 * nothing of it outlives the call. */
typedef struct call {
  int n, nfds;
  item *items;
  struct pollfd *fds;
} call;

static int obj_ready(cc_lwatch *w, short revents) {
  (void)revents;
  const cc_obj *o = w->p;
  return cc_type_get(o->type)->ready(o);
}

static int fd_ready(cc_lwatch *w, short revents) {
  (void)w;
  return (revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static int always(cc_lwatch *w, short revents) {
  (void)w;
  (void)revents;
  return 1;
}

static int check(void *ctx, struct pollfd *fds, int nfds) {
  (void)nfds;
  call *c = ctx;
  int k = 0;
  for (int i = 0; i < c->n; i++) {
    item *it = &c->items[i];
    short rev = it->slot >= 0 ? fds[it->slot].revents : 0;
    it->ready = it->w.ready(&it->w, rev) != 0;
    if (it->slot >= 0)
      fds[it->slot].events = it->w.events;
    k += it->ready;
  }
  return k;
}

/* A LuaSocket object's descriptor (a copy, for this call), or -1 when it
 * has none (closed); *buffered: it holds read data already. */
static int socket_fd(lua_State *L, int v, int *buffered) {
  *buffered = 0;
  if (lua_getfield(L, v, "dirty") == LUA_TFUNCTION) {
    lua_pushvalue(L, v);
    lua_call(L, 1, 1);
    *buffered = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  lua_getfield(L, v, "getfd");
  lua_pushvalue(L, v);
  lua_call(L, 1, 1);
  /* LuaSocket gives it as a float. */
  int isint;
  lua_Integer fd = lua_tointegerx(L, -1, &isint);
  if (!isint)
    fd = -1;
  lua_pop(L, 1);
  return fd >= 0 && fd <= INT32_MAX ? fcntl((int)fd, F_DUPFD_CLOEXEC, 0) : -1;
}

static int has_method(lua_State *L, int v, const char *name) {
  if (lua_type(L, v) != LUA_TUSERDATA && lua_type(L, v) != LUA_TTABLE)
    return 0;
  int t = luaL_getmetafield(L, v, "__index");
  if (t == LUA_TNIL)
    return 0;
  lua_pop(L, 1);
  t = lua_getfield(L, v, name);
  lua_pop(L, 1);
  return t == LUA_TFUNCTION;
}

/* Raises: objects[i] (a `what`) cannot be waited on; says what can, from
 * the types there are. */
static int refuse(lua_State *L, int i, const char *what) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int t = 1; t <= cc__ntypes; t++)
    if (cc_type_get((uint32_t)t)->ready) {
      luaL_addstring(&b, cc_type_get((uint32_t)t)->name);
      luaL_addstring(&b, ", ");
    }
  for (int k = 0; k < nwaitables; k++) {
    luaL_addstring(&b, waitables[k]->name);
    luaL_addstring(&b, ", ");
  }
  luaL_addstring(&b, "a socket or a value whose metatable has __waitable");
  luaL_pushresult(&b);
  return luaL_argerror(L, 1, lua_pushfstring(L, "objects[%d] is a %s, which concur.wait cannot "
                                             "wait on (it waits for a %s)", i + 1, what,
                                             lua_tostring(L, -1)));
}

/* Fills in it for objects[i], the value at v (which stays where it is):
 * raises for what cannot be waited on. */
static void watch(lua_State *L, int v, int i, item *it) {
  it->w.fd = -1;
  it->slot = -1;
  /* A Lua value that stands for another (a Thread for its handle). */
  if (luaL_getmetafield(L, v, "__waitable") != LUA_TNIL) {
    lua_pushvalue(L, v);
    lua_call(L, 1, 1);
    lua_replace(L, v);
  }
  cc_wrapper *wr = cc__lwrapper_any(L, v);
  if (wr) {
    cc_obj *o = cc__lcheck_obj(L, v, NULL); /* raises for a closed one */
    const cc_type *t = cc_type_get(o->type);
    if (!t->ready)
      refuse(L, i, t->name);
    it->w.ready = obj_ready;
    it->w.p = o;
    it->w.what = t->name;
    /* Busy from now: a later item's __waitable, or a raise, cannot free it
     * under the wait (finish gives the mark back). */
    it->busy = wr;
    wr->busy++;
    return;
  }
  int t = luaL_getmetafield(L, v, WATCH_KEY);
  if (t != LUA_TNIL) {
    const cc_lwaitable *wt = t == LUA_TLIGHTUSERDATA ? lua_touserdata(L, -1) : NULL;
    lua_pop(L, 1);
    if (wt) {
      wt->watch(L, v, &it->w);
      return;
    }
  }
  if (has_method(L, v, "getfd")) {
    int buffered;
    it->w.fd = socket_fd(L, v, &buffered);
    it->w.events = POLLIN;
    it->w.outside = 1;
    it->w.ready = buffered || it->w.fd < 0 ? always : fd_ready;
    it->w.what = "a socket";
    return;
  }
  refuse(L, i, luaL_typename(L, v));
}

/* Gives back what a call took: the descriptors it polled, its busy marks.
 * Its __gc too, for a call that raised before its end. */
static void finish(call *c) {
  for (int i = 0; i < c->n; i++) {
    item *it = &c->items[i];
    if (it->w.fd >= 0)
      close(it->w.fd);
    it->w.fd = -1;
    if (it->busy)
      cc__lidle(it->busy, it->w.p);
    it->busy = NULL;
  }
}

static int call_gc(lua_State *L) {
  finish(lua_touserdata(L, 1));
  return 0;
}

static call *new_call(lua_State *L, int n) {
  size_t size = sizeof(call) + (sizeof(item) + sizeof(struct pollfd)) * (size_t)(n > 0 ? n : 1);
  call *c = lua_newuserdatauv(L, size, 2 * n);
  memset(c, 0, size);
  c->items = (item *)(c + 1);
  c->fds = (struct pollfd *)(c->items + (n > 0 ? n : 1));
  for (int i = 0; i < n; i++)
    c->items[i].w.fd = -1;
  if (luaL_newmetatable(L, "concur.wait's call")) {
    lua_pushcfunction(L, call_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return c;
}

/* What a wait on n objects, the first of them `first`, is said to wait on
 * in reports: "Connection (fd 5) (concur.wait)", "any of 3 objects ...". */
static const char *describe(char *buf, size_t size, int n, const char *first) {
  if (n == 1)
    snprintf(buf, size, "%s (concur.wait)", first);
  else
    snprintf(buf, size, "any of %d objects (concur.wait)", n);
  return buf;
}

/* concur.wait(objects, [timeout]): those of objects that are ready, in
 * their order (Queues not empty, Events set, Semaphores above 0,
 * Connections with something to receive or at their end, Processes and
 * Threads ended, sockets readable), as multiprocessing.connection.wait.
 * No timeout waits until one is; 0 looks without waiting. What it returns
 * was ready when it looked: another party may take it first. */
static int l_wait(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer len = luaL_len(L, 1);
  luaL_argcheck(L, len >= 0 && len <= 4096, 1, "at most 4096 objects");
  int n = (int)len;
  int64_t dl = cc__ldeadline(L, 2);
  lua_settop(L, 2);
  /* Connections only: their own wait, which sends what waits in them. */
  int conns = n > 0;
  for (int i = 0; i < n && conns; i++) {
    lua_geti(L, 1, i + 1);
    conns = luaL_testudata(L, -1, CC_LCONN_MT) != NULL;
    lua_pop(L, 1);
  }
  if (conns) {
    char label[48];
    lua_geti(L, 1, 1);
    describe(label, sizeof label, n, ((const cc_conn *)lua_touserdata(L, -1))->label);
    lua_settop(L, 2);
    return cc__lwait_connections(L, 1, n, label, dl);
  }
  call *c = new_call(L, n); /* at 3 */
  /* First what may raise: the values, looked at and kept. */
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 3, i + 1); /* the value given: what is returned */
    watch(L, 4, i, &c->items[i]);
    c->n = i + 1;
    lua_setiuservalue(L, 3, n + i + 1); /* what it stands for (a handle) */
  }
  lua_newtable(L); /* the result, at 4 */
  if (n == 0)
    return 1;
  int outside = 0;
  for (int i = 0; i < n; i++) {
    item *it = &c->items[i];
    if (it->w.fd >= 0) {
      it->slot = c->nfds++;
      c->fds[it->slot] = (struct pollfd){.fd = it->w.fd, .events = it->w.events};
    }
    outside |= it->w.outside;
  }
  char label[48];
  cc_waiting w = {.kind = CC_WAIT_WAIT, .label = label, .deadline = dl};
  if (n == 1 && c->items[0].busy)
    w.obj = c->items[0].w.p; /* an arena object says its own name */
  else
    describe(label, sizeof label, n, c->items[0].w.what);
  int r = cc_ready_wait(check, c, c->fds, c->nfds, outside ? NULL : &w, dl);
  finish(c);
  if (r < 0)
    return cc__lraise_code(L, r, NULL);
  int k = 0;
  for (int i = 0; i < n; i++)
    if (r > 0 && c->items[i].ready) {
      lua_getiuservalue(L, 3, i + 1);
      lua_rawseti(L, 4, ++k);
    }
  return 1;
}

/* P.wait_results(conns, [timeout]): a Pool's wait for its workers'
 * Connections, said so in reports. */
static int l_wait_results(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int64_t dl = cc__ldeadline(L, 2);
  lua_settop(L, 2);
  return cc__lwait_connections(L, 1, (int)luaL_len(L, 1), "the results of a Pool", dl);
}

void cc__open_wait(lua_State *L) {
  lua_pushcfunction(L, l_wait);
  lua_setfield(L, -2, "wait");
  static const luaL_Reg internal[] = {{"wait_results", l_wait_results}, {NULL, NULL}};
  cc__lprivate_funcs(L, internal);
}
