/* llock - Lua binding of Lock and RLock */
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/lock.h"
#include "concur/proctab.h"
#include "concur/wait.h"
#include "concur/sched.h"
#include "lconcur.h"

#include <stdio.h>
#include <unistd.h>

static cc_lock *check_lock(lua_State *L, int idx) {
  cc_obj *o = cc__ltest_type(L, idx, &cc_lock_type, &cc_rlock_type);
  if (!o)
    o = cc__lcheck_obj(L, idx, "Lock"); /* raises the right error */
  return (cc_lock *)o;
}

/* The one-line warning of DESIGN: who died holding it, who has it now.
 * `of` is the object whose lock it is (a Condition's, a Value's), or the
 * lock itself. */
void cc__lwarn_owner_died(cc_lock *l, const cc_obj *of) {
  cc__lwarn_died(of, of == &l->hdr ? "" : "'s lock", cc_lock_dead_owner(l));
}

void cc__lwarn_died(const cc_obj *of, const char *part, int dead) {
  char name[CC_PROC_NAME_MAX], what[CC_OBJ_NAME_MAX + 24];
  cc_proctab_name_of(dead, name, sizeof name);
  cc_procent *me = cc_proc_self();
  /* A process that lives on lost a thread that ended holding it. */
  int thread = dead == getpid() || (dead > 0 && cc__tid_alive(dead)); /* not a zombie */
  fprintf(stderr,
          "concur: warning: OwnerDied: %s%s: its holder%s %s (pid %d) %s holding it; %s (pid %d) "
          "has it now\n",
          cc_obj_describe(of, what), part, thread ? ", a thread of" : "", name,
          cc_sched_shown_pid(dead), thread ? "ended" : "died", me ? me->name : "this process",
          cc_sched_shown_pid((int)getpid()));
  fflush(stderr);
}

static int acquire(cc_obj *o, int64_t deadline) {
  int r = cc_lock_acquire((cc_lock *)o, deadline);
  if (r == CC_EOWNERDEAD)
    cc__lwarn_owner_died((cc_lock *)o, o);
  return r;
}

static int release(cc_obj *o) {
  int r = cc_lock_release((cc_lock *)o);
  return r == CC_ENOTOWNER ? CC_EVALUE : r;
}

static const cc_acquirable lock_ops = {acquire, release};

static int new_lock(lua_State *L, int recursive) {
  cc_lopts opts;
  cc__ltake_options(L, 1, cc__lname_only, &opts);
  cc_lock *l = cc__lcheck_alloc(L, cc_lock_new(recursive));
  cc__lpush_obj(L, &l->hdr, 1);
  cc__lname_obj(L, &l->hdr, &opts);
  return 1;
}

static int l_lock(lua_State *L) { return new_lock(L, 0); }
static int l_rlock(lua_State *L) { return new_lock(L, 1); }

/* Pushes acquire's results: true, or true and "owner_died", or false. */
int cc__lpush_acquired(lua_State *L, int r) {
  if (r == 0 || r == CC_EOWNERDEAD) {
    lua_pushboolean(L, 1);
    if (r == CC_EOWNERDEAD) {
      lua_pushliteral(L, "owner_died");
      return 2;
    }
    return 1;
  }
  if (r == CC_ETIMEDOUT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return cc__lraise_code(L, r, NULL);
}

static int lock_acquire(lua_State *L) {
  cc_lock *l = check_lock(L, 1);
  int64_t dl = cc__lblock_deadline(L, 2);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = acquire(&l->hdr, dl);
  cc__lidle(w, &l->hdr);
  return cc__lpush_acquired(L, r);
}

static int lock_release(lua_State *L) {
  cc_lock *l = check_lock(L, 1);
  int r = cc_lock_release(l);
  if (r == CC_EVALUE)
    return cc__lraise_code(L, CC_EVALUE, "release of an unlocked %s",
                      cc_obj_typename(&l->hdr));
  if (r == CC_ENOTOWNER)
    return cc__lraise_code(L, CC_EVALUE,
                      "cannot release an RLock owned by another thread or process");
  return 0;
}

static int lock_locked(lua_State *L) {
  lua_pushboolean(L, cc_lock_locked(check_lock(L, 1)));
  return 1;
}

static int lock_is_mine(lua_State *L) {
  lua_pushboolean(L, cc_lock_is_mine(check_lock(L, 1)));
  return 1;
}

static int lock_hold(lua_State *L) {
  check_lock(L, 1);
  return cc__lhold(L, 1, &lock_ops);
}

static int lock_with(lua_State *L) {
  check_lock(L, 1);
  return cc__lwith(L, 1, &lock_ops);
}

/* _release_save() -> depth and _acquire_restore(depth): let go of a lock
 * held, however deep, and take it again to that depth (CPython's RLock
 * has the same pair): for the Pool, whose leading thread lets go of the
 * pool's RLock while it waits for its workers. */
static int lock_release_save(lua_State *L) {
  cc_lock *l = check_lock(L, 1);
  if (!cc_lock_is_mine(l))
    return cc__lraise_code(L, CC_EVALUE, "cannot release a lock the caller does not hold");
  lua_pushinteger(L, (lua_Integer)cc__lock_release_all(l));
  return 1;
}

static int lock_acquire_restore(lua_State *L) {
  cc_lock *l = check_lock(L, 1);
  lua_Integer depth = luaL_checkinteger(L, 2);
  luaL_argcheck(L, depth >= 1 && depth <= UINT32_MAX, 2, "a depth from _release_save");
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = cc__lock_restore(l, (uint32_t)depth, CC_FOREVER);
  if (r == CC_EOWNERDEAD)
    cc__lwarn_owner_died(l, &l->hdr);
  cc__lidle(w, &l->hdr);
  if (r && r != CC_EOWNERDEAD)
    return cc__lraise_code(L, r, NULL); /* Interrupted: the lock is held again */
  return 0;
}

static int lock_tostring(lua_State *L) {
  cc_lock *l = check_lock(L, 1);
  char nm[CC_OBJ_NAME_MAX];
  uint32_t w = atomic_load(&l->word);
  if (w & CC_LOCK_TID)
    lua_pushfstring(L, "%s(%s, locked by pid %d)", cc_obj_typename(&l->hdr),
                    cc_obj_name(&l->hdr, nm),
                    cc_sched_shown_pid((int)atomic_load(&l->owner_pid)));
  else
    lua_pushfstring(L, "%s(%s, unlocked)", cc_obj_typename(&l->hdr),
                    cc_obj_name(&l->hdr, nm));
  return 1;
}

static const luaL_Reg methods[] = {
    {"acquire", lock_acquire}, {"release", lock_release},
    {"locked", lock_locked},   {"is_mine", lock_is_mine},
    {"hold", lock_hold},       {"with", lock_with},
    {"_release_save", lock_release_save}, {"_acquire_restore", lock_acquire_restore},
    {NULL, NULL}};

static const luaL_Reg meta[] = {{"__tostring", lock_tostring}, {NULL, NULL}};

void cc__open_lock(lua_State *L) {
  cc__lnew_class(L, "Lock", methods, meta);
  cc__lnew_class(L, "RLock", methods, meta);
  lua_pushcfunction(L, l_lock);
  lua_setfield(L, -2, "Lock");
  lua_pushcfunction(L, l_rlock);
  lua_setfield(L, -2, "RLock");
}
