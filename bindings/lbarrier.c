/* lbarrier - Lua binding of Barrier */
#include "concur/barrier.h"
#include "concur/error.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <math.h>

/* The wrapper's user value holds {action = fn, timeout = seconds}: they are
 * Lua values of the process that made the barrier (and of its children). */
static cc_barrier *check_barrier(lua_State *L, int idx) {
  return (cc_barrier *)cc__lcheck_obj(L, idx, "Barrier");
}

static int l_barrier(lua_State *L) {
  cc_lopts opts;
  cc__ltake_options(L, 4, cc__lname_only, &opts);
  lua_Integer parties = luaL_checkinteger(L, 1);
  luaL_argcheck(L, parties >= 1 && parties <= 1000000, 1,
                "parties must be from 1 to 1000000");
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!lua_isnoneornil(L, 3))
    luaL_argcheck(L, luaL_checknumber(L, 3) >= 0, 3, "timeout must not be negative");
  lua_settop(L, 3); /* the wrapper goes at 4, after the optional arguments */
  cc_barrier *b = cc__lcheck_alloc(L, cc_barrier_new((uint32_t)parties));
  cc__lpush_obj(L, &b->hdr, 1);
  cc__lname_obj(L, &b->hdr, &opts);
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "action");
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "timeout");
  lua_setiuservalue(L, -2, 1);
  return 1;
}

typedef struct action_call {
  lua_State *L;
  int failed;
} action_call;

/* Runs the action; on an error leaves the error value on the stack. */
static int run_action(void *ud) {
  action_call *a = ud;
  lua_State *L = a->L;
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "action");
  lua_remove(L, -2);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    a->failed = 1;
    return 1;
  }
  return 0;
}

static int barrier_wait(lua_State *L) {
  cc_barrier *b = check_barrier(L, 1);
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "timeout");
    lua_replace(L, 2);
    lua_pop(L, 1);
  }
  int64_t dl = cc__ldeadline(L, 2);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "action");
  int has_action = !lua_isnil(L, -1);
  lua_pop(L, 2);
  action_call a = {L, 0};
  cc_wrapper *w = cc__lbusy(L, 1); /* the action runs in a protected call */
  int r = cc_barrier_wait(b, dl, has_action ? run_action : NULL, &a);
  cc__lidle(w, &b->hdr);
  if (a.failed)
    return lua_error(L);
  if (r == CC_EBROKEN)
    return cc__lraise_code(L, CC_EBROKEN, "barrier is broken (aborted, reset, "
                      "or a party timed out)");
  if (r < 0)
    return cc__lraise_code(L, r, NULL);
  lua_pushinteger(L, r);
  return 1;
}

static int barrier_reset(lua_State *L) {
  int r = cc_barrier_reset(check_barrier(L, 1));
  return r ? cc__lraise_code(L, r, NULL) : 0;
}

static int barrier_abort(lua_State *L) {
  int r = cc_barrier_abort(check_barrier(L, 1));
  return r ? cc__lraise_code(L, r, NULL) : 0;
}

static int barrier_parties(lua_State *L) {
  lua_pushinteger(L, check_barrier(L, 1)->parties);
  return 1;
}

static int barrier_n_waiting(lua_State *L) {
  lua_pushinteger(L, cc_barrier_n_waiting(check_barrier(L, 1)));
  return 1;
}

static int barrier_broken(lua_State *L) {
  lua_pushboolean(L, cc_barrier_broken(check_barrier(L, 1)));
  return 1;
}

static int barrier_tostring(lua_State *L) {
  cc_barrier *b = check_barrier(L, 1);
  char nm[CC_OBJ_NAME_MAX];
  lua_pushfstring(L, "Barrier(%s, parties=%d, waiting=%d%s)", cc_obj_name(&b->hdr, nm),
                  (int)b->parties, (int)cc_barrier_n_waiting(b),
                  cc_barrier_broken(b) ? ", broken" : "");
  return 1;
}

static const luaL_Reg methods[] = {
    {"wait", barrier_wait},         {"reset", barrier_reset},
    {"abort", barrier_abort},       {"parties", barrier_parties},
    {"n_waiting", barrier_n_waiting}, {"broken", barrier_broken},
    {NULL, NULL}};

static const luaL_Reg meta[] = {{"__tostring", barrier_tostring}, {NULL, NULL}};

void cc__open_barrier(lua_State *L) {
  cc__lnew_class(L, "Barrier", methods, meta);
  lua_pushcfunction(L, l_barrier);
  lua_setfield(L, -2, "Barrier");
}
