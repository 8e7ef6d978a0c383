/* lrwlock - Lua binding of RWLock */
#include "concur/error.h"
#include "concur/proctab.h"
#include "concur/rwlock.h"
#include "concur/sched.h"
#include "lconcur.h"

static cc_rwlock *check_rwlock(lua_State *L, int idx) {
  return (cc_rwlock *)cc__lcheck_obj(L, idx, "RWLock");
}

/* concur.RWLock([{name = ..., prefer_writers = true}]) */
static int l_rwlock(lua_State *L) {
  static const char *const known[] = {"name", "prefer_writers", NULL};
  int prefer = 0;
  if (lua_type(L, 1) == LUA_TTABLE) {
    int t = lua_getfield(L, 1, "prefer_writers");
    luaL_argcheck(L, t == LUA_TNIL || t == LUA_TBOOLEAN, 1,
                  "prefer_writers must be true or false");
    prefer = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  cc_lopts opts;
  cc__ltake_options(L, 1, known, &opts);
  cc_rwlock *rw = cc__lcheck_alloc(L, cc_rwlock_new(prefer));
  cc__lpush_obj(L, &rw->hdr, 1);
  cc__lname_obj(L, &rw->hdr, &opts);
  return 1;
}

static int take(cc_obj *o, int write, int64_t deadline) {
  cc_rwlock *rw = (cc_rwlock *)o;
  int r = write ? cc_rwlock_write(rw, deadline) : cc_rwlock_read(rw, deadline);
  if (r == CC_EOWNERDEAD)
    cc__lwarn_died(o, "", cc_rwlock_dead_owner(rw));
  return r;
}

static int read_acquire(cc_obj *o, int64_t deadline) { return take(o, 0, deadline); }
static int write_acquire(cc_obj *o, int64_t deadline) { return take(o, 1, deadline); }

static int release(cc_obj *o) {
  int r = cc_rwlock_release((cc_rwlock *)o);
  return r == CC_ENOTOWNER ? CC_EVALUE : r;
}

static const cc_acquirable read_ops = {read_acquire, release};
static const cc_acquirable write_ops = {write_acquire, release};

/* Raises for what take refused, in words that say what to do. */
static int refused(lua_State *L, cc_rwlock *rw, int r, int mine) {
  char nm[CC_OBJ_NAME_MAX + 24];
  cc_obj_describe(&rw->hdr, nm);
  if (r == CC_EDEADLK && mine)
    return cc__lraise_code(L, r, "%s is held by the calling thread already (to %s): it would "
                           "wait for itself; release it first", nm, mine == 2 ? "write" : "read");
  if (r == CC_ELIMIT)
    return cc__lraise_code(L, r, "%s has %d readers or waiting writers already, the most it "
                           "takes", nm, CC_RWLOCK_MAX);
  return cc__lpush_acquired(L, r);
}

static int acquire(lua_State *L, int write) {
  cc_rwlock *rw = check_rwlock(L, 1);
  int64_t dl = cc__lblock_deadline(L, 2);
  int mine = cc_rwlock_mine(rw);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = take(&rw->hdr, write, dl);
  cc__lidle(w, &rw->hdr);
  return refused(L, rw, r, mine);
}

static int rwlock_acquire_read(lua_State *L) { return acquire(L, 0); }
static int rwlock_acquire_write(lua_State *L) { return acquire(L, 1); }

static int rwlock_release(lua_State *L) {
  cc_rwlock *rw = check_rwlock(L, 1);
  if (cc_rwlock_release(rw)) {
    char nm[CC_OBJ_NAME_MAX + 24];
    return cc__lraise_code(L, CC_EVALUE, "release of %s, which the calling thread does not "
                           "hold", cc_obj_describe(&rw->hdr, nm));
  }
  return 0;
}

/* A guard's or with's taking: a refusal explained first, as it does not
 * go away by waiting (a hold that would wait for itself, a full table). */
static const cc_acquirable *guarded(lua_State *L, cc_rwlock *rw, int write) {
  int mine = cc_rwlock_mine(rw);
  if (mine)
    refused(L, rw, CC_EDEADLK, mine);
  return write ? &write_ops : &read_ops;
}

static int rwlock_read_hold(lua_State *L) {
  return cc__lhold(L, 1, guarded(L, check_rwlock(L, 1), 0));
}

static int rwlock_write_hold(lua_State *L) {
  return cc__lhold(L, 1, guarded(L, check_rwlock(L, 1), 1));
}

static int rwlock_read_with(lua_State *L) {
  return cc__lwith(L, 1, guarded(L, check_rwlock(L, 1), 0));
}

static int rwlock_write_with(lua_State *L) {
  return cc__lwith(L, 1, guarded(L, check_rwlock(L, 1), 1));
}

static int rwlock_readers(lua_State *L) {
  lua_pushinteger(L, cc_rwlock_readers(check_rwlock(L, 1)));
  return 1;
}

static int rwlock_waiting_writers(lua_State *L) {
  lua_pushinteger(L, cc_rwlock_writers_waiting(check_rwlock(L, 1)));
  return 1;
}

static int rwlock_writing(lua_State *L) {
  lua_pushboolean(L, cc_rwlock_written(check_rwlock(L, 1)));
  return 1;
}

/* "read", "write", or nil: what the calling thread holds. */
static int rwlock_mine(lua_State *L) {
  int m = cc_rwlock_mine(check_rwlock(L, 1));
  if (m)
    lua_pushstring(L, m == 2 ? "write" : "read");
  else
    lua_pushnil(L);
  return 1;
}

static int rwlock_tostring(lua_State *L) {
  cc_rwlock *rw = check_rwlock(L, 1);
  char nm[CC_OBJ_NAME_MAX];
  cc_obj_name(&rw->hdr, nm);
  uint32_t n = cc_rwlock_readers(rw);
  if (cc_rwlock_written(rw))
    lua_pushfstring(L, "RWLock(%s, written by pid %d)", nm,
                    cc_sched_shown_pid((int)rw->writer_pid));
  else if (n)
    lua_pushfstring(L, "RWLock(%s, read by %d)", nm, (int)n);
  else
    lua_pushfstring(L, "RWLock(%s, free)", nm);
  return 1;
}

static const luaL_Reg methods[] = {
    {"acquire_read", rwlock_acquire_read}, {"acquire_write", rwlock_acquire_write},
    {"release", rwlock_release},           {"read_hold", rwlock_read_hold},
    {"write_hold", rwlock_write_hold},     {"read_with", rwlock_read_with},
    {"write_with", rwlock_write_with},     {"readers", rwlock_readers},
    {"writing", rwlock_writing},           {"mine", rwlock_mine},
    {"waiting_writers", rwlock_waiting_writers}, {NULL, NULL}};

static const luaL_Reg meta[] = {{"__tostring", rwlock_tostring}, {NULL, NULL}};

void cc__open_rwlock(lua_State *L) {
  cc__lnew_class(L, "RWLock", methods, meta);
  lua_pushcfunction(L, l_rwlock);
  lua_setfield(L, -2, "RWLock");
}
