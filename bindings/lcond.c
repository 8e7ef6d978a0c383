/* lcond - Lua binding of Condition */
#include "concur/cond.h"
#include "concur/error.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <stdint.h>

static cc_cond *check_cond(lua_State *L, int idx) {
  return (cc_cond *)cc__lcheck_obj(L, idx, "Condition");
}

static int acquire(cc_obj *o, int64_t deadline) {
  int r = cc_lock_acquire(((cc_cond *)o)->lock, deadline);
  if (r == CC_EOWNERDEAD)
    cc__lwarn_owner_died(((cc_cond *)o)->lock, o);
  return r;
}

static int release(cc_obj *o) {
  int r = cc_lock_release(((cc_cond *)o)->lock);
  return r == CC_ENOTOWNER ? CC_EVALUE : r;
}

static const cc_acquirable cond_ops = {acquire, release};

static int l_condition(lua_State *L) {
  cc_lopts opts;
  cc__ltake_options(L, 2, cc__lname_only, &opts);
  cc_lock *lock = NULL;
  if (!lua_isnoneornil(L, 1)) {
    cc_obj *o = cc__ltest_obj(L, 1, "Lock");
    if (!o)
      o = cc__ltest_obj(L, 1, "RLock");
    luaL_argcheck(L, o != NULL, 1, "a Lock or an RLock expected");
    lock = (cc_lock *)o;
  }
  cc_cond *c = cc__lcheck_alloc(L, cc_cond_new(lock));
  cc__lpush_obj(L, &c->hdr, 1);
  cc__lname_obj(L, &c->hdr, &opts);
  return 1;
}

static int not_owner(lua_State *L, const char *what) {
  return cc__lraise_code(L, CC_EVALUE,
                    "cannot %s on an un-acquired lock: acquire the "
                    "Condition (or use cond:hold()) first",
                    what);
}

static int cond_acquire(lua_State *L) {
  cc_cond *c = check_cond(L, 1);
  int64_t dl = cc__lblock_deadline(L, 2);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = acquire(&c->hdr, dl);
  cc__lidle(w, &c->hdr);
  return cc__lpush_acquired(L, r);
}

static int cond_release(lua_State *L) {
  cc_cond *c = check_cond(L, 1);
  if (release(&c->hdr))
    return cc__lraise_code(L, CC_EVALUE, "release of an unlocked Condition");
  return 0;
}

static int cond_wait(lua_State *L) {
  cc_cond *c = check_cond(L, 1);
  int64_t dl = cc__ldeadline(L, 2);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = cc_cond_wait(c, dl);
  cc__lidle(w, &c->hdr);
  if (r == CC_ENOTOWNER)
    return not_owner(L, "wait");
  if (r && r != CC_ETIMEDOUT)
    return cc__lraise_code(L, r, NULL);
  lua_pushboolean(L, r == 0);
  return 1;
}

/* wait_for(predicate, [timeout]): waits until predicate() is true or the
 * timeout passes; returns predicate's last result. */
static int cond_wait_for(lua_State *L) {
  check_cond(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int64_t dl = cc__ldeadline(L, 3);
  for (;;) {
    lua_pushvalue(L, 2);
    lua_call(L, 0, 1);
    if (lua_toboolean(L, -1))
      return 1;
    if (cc_now() >= dl)
      return 1;
    lua_pop(L, 1);
    /* Checked again each time: the predicate, or another thread while this
     * one waited, may have closed it. */
    cc_cond *c = check_cond(L, 1);
    cc_wrapper *w = cc__lbusy(L, 1);
    int r = cc_cond_wait(c, dl);
    cc__lidle(w, &c->hdr);
    if (r == CC_ENOTOWNER)
      return not_owner(L, "wait");
    if (r && r != CC_ETIMEDOUT)
      return cc__lraise_code(L, r, NULL);
  }
}

static int notify(lua_State *L, int n) {
  cc_cond *c = check_cond(L, 1);
  if (cc_cond_notify(c, n) == CC_ENOTOWNER) /* it never waits */
    return not_owner(L, "notify");
  return 0;
}

static int cond_notify(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, n >= 0, 2, "n must not be negative");
  return notify(L, n > INT32_MAX ? INT32_MAX : (int)n);
}

static int cond_notify_all(lua_State *L) { return notify(L, INT32_MAX); }

static int cond_hold(lua_State *L) {
  check_cond(L, 1);
  return cc__lhold(L, 1, &cond_ops);
}

static int cond_with(lua_State *L) {
  check_cond(L, 1);
  return cc__lwith(L, 1, &cond_ops);
}

static const luaL_Reg methods[] = {
    {"acquire", cond_acquire}, {"release", cond_release},
    {"wait", cond_wait},       {"wait_for", cond_wait_for},
    {"notify", cond_notify},   {"notify_all", cond_notify_all},
    {"hold", cond_hold},       {"with", cond_with},
    {NULL, NULL}};

static const luaL_Reg meta[] = {{NULL, NULL}};

void cc__open_cond(lua_State *L) {
  cc__lnew_class(L, "Condition", methods, meta);
  lua_pushcfunction(L, l_condition);
  lua_setfield(L, -2, "Condition");
}
