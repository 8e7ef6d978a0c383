/* lqueue - Lua binding of Queue, JoinableQueue and SimpleQueue */
#include "codec.h"
#include "concur/error.h"
#include "concur/queue.h"
#include "concur/wait.h"
#include "lconcur.h"

static cc_queue *check_queue(lua_State *L, int idx) {
  cc_wrapper *w = cc__lwrapper(L, idx);
  const cc_type *t = w ? cc_type_get(w->type) : NULL;
  if (t != &cc_queue_type && t != &cc_jqueue_type && t != &cc_squeue_type)
    return (cc_queue *)cc__lcheck_obj(L, idx, "Queue"); /* raises the right error */
  return (cc_queue *)w->o;
}

static int new_queue(lua_State *L, int kind) {
  cc_lopts opts;
  cc__ltake_options(L, kind == CC_QUEUE_SIMPLE ? 1 : 2, cc__lname_only, &opts);
  lua_Integer max = kind == CC_QUEUE_SIMPLE ? 0 : luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, max <= 0x7fffffff, 1, "maxsize is too large");
  cc_queue *q = cc__lcheck_alloc(L, cc_queue_new(kind, max > 0 ? (uint32_t)max : 0));
  cc__lpush_obj(L, &q->hdr, 1);
  cc__lname_obj(L, &q->hdr, &opts);
  return 1;
}

static int l_queue(lua_State *L) { return new_queue(L, CC_QUEUE_PLAIN); }
static int l_jqueue(lua_State *L) { return new_queue(L, CC_QUEUE_JOINABLE); }
static int l_squeue(lua_State *L) { return new_queue(L, CC_QUEUE_SIMPLE); }

/* The message goes in a buffer of this call's own (codec.h): a put that
 * waits lets go of the GIL, and another thread's put must not write over it. */
static int put(lua_State *L, cc_queue *q, int64_t deadline) {
  cc_msg *m = cc__lmsg_take(L);
  if (cc__lencode(L, 2, 1, m, NULL, "item") != LUA_OK) {
    cc__lmsg_give(m);
    return lua_error(L);
  }
  int maxsize = (int)q->maxsize; /* for the message: q may be gone after idle */
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = cc_queue_put(q, m, deadline);
  cc__lidle(w, &q->hdr);
  if (r)
    cc_msg_unref(m);
  cc__lmsg_give(m);
  if (r == CC_EFULL)
    return cc__lraise_code(L, CC_EFULL, "queue is full (maxsize %d)", maxsize);
  if (r)
    return cc__lraise_code(L, r, NULL);
  return 0;
}

static int get(lua_State *L, cc_queue *q, int64_t deadline) {
  cc_msg *m = cc__lmsg_take(L);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = cc_queue_get(q, m, deadline);
  cc__lidle(w, &q->hdr);
  int n = r ? 0 : cc__ldecode(L, m, NULL);
  cc__lmsg_give(m);
  if (r == CC_EEMPTY)
    return cc__lraise_code(L, CC_EEMPTY, "queue is empty");
  if (r)
    return cc__lraise_code(L, r, NULL);
  if (n < 0)
    return lua_error(L);
  if (n != 1)
    return cc__lraise_code(L, CC_EVALUE, "corrupt message: %d values instead of 1", n);
  return 1;
}

static int queue_put(lua_State *L) {
  cc_queue *q = check_queue(L, 1);
  luaL_checkany(L, 2);
  return put(L, q, cc__lblock_deadline(L, 3));
}

static int queue_get(lua_State *L) {
  cc_queue *q = check_queue(L, 1);
  return get(L, q, cc__lblock_deadline(L, 2));
}

static int queue_put_nowait(lua_State *L) {
  cc_queue *q = check_queue(L, 1);
  luaL_checkany(L, 2);
  return put(L, q, 0);
}

static int queue_get_nowait(lua_State *L) { return get(L, check_queue(L, 1), 0); }

static int queue_qsize(lua_State *L) {
  lua_pushinteger(L, cc_queue_qsize(check_queue(L, 1)));
  return 1;
}

static int queue_empty(lua_State *L) {
  lua_pushboolean(L, cc_queue_qsize(check_queue(L, 1)) == 0);
  return 1;
}

static int queue_full(lua_State *L) {
  cc_queue *q = check_queue(L, 1);
  lua_pushboolean(L, q->maxsize && cc_queue_qsize(q) >= q->maxsize);
  return 1;
}

static int queue_task_done(lua_State *L) {
  cc_queue *q = (cc_queue *)cc__lcheck_obj(L, 1, "JoinableQueue");
  if (cc_queue_task_done(q))
    return cc__lraise_code(L, CC_EVALUE, "task_done() called more times than there were items");
  return 0;
}

static int queue_join(lua_State *L) {
  cc_queue *q = (cc_queue *)cc__lcheck_obj(L, 1, "JoinableQueue");
  int64_t dl = cc__ldeadline(L, 2);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = cc_queue_join(q, dl);
  cc__lidle(w, &q->hdr);
  if (r != 0 && r != CC_ETIMEDOUT) /* Interrupted, Deadlock */
    return cc__lraise_code(L, r, NULL);
  lua_pushboolean(L, r == 0);
  return 1;
}

static int queue_tostring(lua_State *L) {
  cc_queue *q = check_queue(L, 1);
  char nm[CC_OBJ_NAME_MAX];
  if (q->maxsize)
    lua_pushfstring(L, "%s(%s, size=%d, maxsize=%d)", cc_obj_typename(&q->hdr),
                    cc_obj_name(&q->hdr, nm), (int)cc_queue_qsize(q), (int)q->maxsize);
  else
    lua_pushfstring(L, "%s(%s, size=%d)", cc_obj_typename(&q->hdr),
                    cc_obj_name(&q->hdr, nm), (int)cc_queue_qsize(q));
  return 1;
}

static const luaL_Reg methods[] = {
    {"put", queue_put},       {"get", queue_get},
    {"put_nowait", queue_put_nowait}, {"get_nowait", queue_get_nowait},
    {"qsize", queue_qsize},   {"empty", queue_empty},
    {"full", queue_full},     {"close", cc__lobj_close},
    {NULL, NULL}};

static const luaL_Reg jmethods[] = {
    {"put", queue_put},       {"get", queue_get},
    {"put_nowait", queue_put_nowait}, {"get_nowait", queue_get_nowait},
    {"qsize", queue_qsize},   {"empty", queue_empty},
    {"full", queue_full},     {"close", cc__lobj_close},
    {"task_done", queue_task_done}, {"join", queue_join},
    {NULL, NULL}};

static const luaL_Reg smethods[] = {
    {"put", queue_put}, {"get", queue_get}, {"empty", queue_empty},
    {"close", cc__lobj_close}, {NULL, NULL}};

static const luaL_Reg meta[] = {{"__tostring", queue_tostring}, {NULL, NULL}};

void cc__open_queue(lua_State *L) {
  cc__lnew_class(L, "Queue", methods, meta);
  cc__lnew_class(L, "JoinableQueue", jmethods, meta);
  cc__lnew_class(L, "SimpleQueue", smethods, meta);
  lua_pushcfunction(L, l_queue);
  lua_setfield(L, -2, "Queue");
  lua_pushcfunction(L, l_jqueue);
  lua_setfield(L, -2, "JoinableQueue");
  lua_pushcfunction(L, l_squeue);
  lua_setfield(L, -2, "SimpleQueue");
}
