/* lsem - Lua binding of Semaphore and BoundedSemaphore */
#include "concur/error.h"
#include "concur/sem.h"
#include "lconcur.h"

static cc_sem *check_sem(lua_State *L, int idx) {
  cc_obj *o = cc__ltest_obj(L, idx, "BoundedSemaphore");
  if (!o)
    o = cc__lcheck_obj(L, idx, "Semaphore");
  return (cc_sem *)o;
}

static int acquire(cc_obj *o, int64_t deadline) {
  return cc_sem_wait((cc_sem *)o, deadline);
}

static int release(cc_obj *o) { return cc_sem_post((cc_sem *)o); }

static const cc_acquirable sem_ops = {acquire, release};

static int new_sem(lua_State *L, int bounded) {
  cc_lopts opts;
  cc__ltake_options(L, 2, cc__lname_only, &opts);
  lua_Integer n = luaL_optinteger(L, 1, 1);
  luaL_argcheck(L, n >= 0 && n <= (lua_Integer)CC_SEM_MAX, 1,
                "semaphore value must be from 0 to 2147483647");
  cc_sem *s = cc__lcheck_alloc(L, cc_sem_new((uint32_t)n, bounded));
  cc__lpush_obj(L, &s->hdr, 1);
  cc__lname_obj(L, &s->hdr, &opts);
  return 1;
}

static int l_semaphore(lua_State *L) { return new_sem(L, 0); }
static int l_bounded(lua_State *L) { return new_sem(L, 1); }

static int sem_acquire(lua_State *L) {
  cc_sem *s = check_sem(L, 1);
  int64_t dl = cc__lblock_deadline(L, 2);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = cc_sem_wait(s, dl);
  cc__lidle(w, &s->hdr);
  return cc__lpush_acquired(L, r);
}

static int sem_release(lua_State *L) {
  cc_sem *s = check_sem(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, n >= 1, 2, "n must be at least 1");
  /* All n or none, as one change: Python's loop of n gives some before it
   * raises. */
  if (n > (lua_Integer)CC_SEM_MAX || cc_sem_post_n(s, (uint32_t)n)) {
    char nm[CC_OBJ_NAME_MAX + 24];
    return cc__lraise_code(L, CC_EVALUE, "%s released too many times (its value "
                      "may not exceed %d; it is %d)", cc_obj_describe(&s->hdr, nm),
                      s->bounded ? (int)s->bound : (int)CC_SEM_MAX, (int)cc_sem_value(s));
  }
  return 0;
}

static int sem_get_value(lua_State *L) {
  lua_pushinteger(L, cc_sem_value(check_sem(L, 1)));
  return 1;
}

static int sem_hold(lua_State *L) {
  check_sem(L, 1);
  return cc__lhold(L, 1, &sem_ops);
}

static int sem_with(lua_State *L) {
  check_sem(L, 1);
  return cc__lwith(L, 1, &sem_ops);
}

static int sem_tostring(lua_State *L) {
  cc_sem *s = check_sem(L, 1);
  char nm[CC_OBJ_NAME_MAX];
  lua_pushfstring(L, "%s(%s, value=%d)", cc_obj_typename(&s->hdr),
                  cc_obj_name(&s->hdr, nm), (int)cc_sem_value(s));
  return 1;
}

static const luaL_Reg methods[] = {
    {"acquire", sem_acquire}, {"release", sem_release},
    {"get_value", sem_get_value}, {"hold", sem_hold},
    {"with", sem_with},       {NULL, NULL}};

static const luaL_Reg meta[] = {{"__tostring", sem_tostring}, {NULL, NULL}};

void cc__open_sem(lua_State *L) {
  cc__lnew_class(L, "Semaphore", methods, meta);
  cc__lnew_class(L, "BoundedSemaphore", methods, meta);
  lua_pushcfunction(L, l_semaphore);
  lua_setfield(L, -2, "Semaphore");
  lua_pushcfunction(L, l_bounded);
  lua_setfield(L, -2, "BoundedSemaphore");
}
