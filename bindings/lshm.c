/* lshm - Lua binding of Value, RawValue, Array and RawArray */
#include "concur/error.h"
#include "concur/shm.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <math.h>
#include <string.h>

static cc_shm *check_shm(lua_State *L, int idx) {
  cc_obj *o = cc__ltest_type(L, idx, &cc_value_type, &cc_array_type);
  if (!o) {
    /* The error names what the wrapper was: a closed Array is no Value. */
    cc_wrapper *w = cc__lwrapper_any(L, idx);
    o = cc__lcheck_obj(L, idx, w && cc_type_get(w->type) == &cc_array_type ? "Array" : "Value");
  }
  return (cc_shm *)o;
}

static int acquire(cc_obj *o, int64_t deadline) {
  cc_shm *s = (cc_shm *)o;
  if (!s->lock)
    return CC_EVALUE;
  int r = cc_lock_acquire(s->lock, deadline);
  if (r == CC_EOWNERDEAD)
    cc__lwarn_owner_died(s->lock, o);
  return r;
}

static int release(cc_obj *o) {
  cc_shm *s = (cc_shm *)o;
  if (!s->lock)
    return CC_EVALUE;
  int r = cc_lock_release(s->lock);
  return r == CC_ENOTOWNER ? CC_EVALUE : r;
}

static const cc_acquirable shm_ops = {acquire, release};

/* Reads item i (0-based) onto the stack. */
static void push_item(lua_State *L, cc_shm *s, uint32_t i) {
  union {
    int8_t b; uint8_t B; int16_t h; uint16_t H; int32_t i; uint32_t I;
    int64_t q; uint64_t Q; float f; double d; char c; uint64_t raw;
  } u = {.raw = 0};
  cc_shm_load(s, i, &u);
  switch (s->typecode) {
  case 'b': lua_pushinteger(L, u.b); break;
  case 'B': lua_pushinteger(L, u.B); break;
  case 'h': lua_pushinteger(L, u.h); break;
  case 'H': lua_pushinteger(L, u.H); break;
  case 'i': lua_pushinteger(L, u.i); break;
  case 'I': lua_pushinteger(L, u.I); break;
  case 'l': case 'q': lua_pushinteger(L, u.q); break;
  case 'L': case 'Q': lua_pushinteger(L, (lua_Integer)u.Q); break;
  case 'f': lua_pushnumber(L, u.f); break;
  case 'd': lua_pushnumber(L, u.d); break;
  case 'c': lua_pushlstring(L, &u.c, 1); break;
  }
}

/* Raises unless v fits the integer typecode t: a switch, as every store of
 * an integer asks. */
static void check_range(lua_State *L, char t, lua_Integer v) {
  lua_Integer min = 0, max = LUA_MAXINTEGER;
  switch (t) {
  case 'b': min = INT8_MIN; max = INT8_MAX; break;
  case 'B': max = UINT8_MAX; break;
  case 'h': min = INT16_MIN; max = INT16_MAX; break;
  case 'H': max = UINT16_MAX; break;
  case 'i': min = INT32_MIN; max = INT32_MAX; break;
  case 'I': max = UINT32_MAX; break;
  case 'L': case 'Q': break;
  default: return; /* l, q: every Lua integer */
  }
  if (v < min || v > max)
    cc__lraise_code(L, CC_EVALUE, "%lld is out of range for typecode '%c' (%lld to %lld)",
               (long long)v, t, (long long)min, (long long)max);
}

/* Writes the value at idx into item i, checking its type and range. */
static void store_item(lua_State *L, cc_shm *s, uint32_t i, int idx) {
  union {
    int8_t b; int16_t h; int32_t i; int64_t q; float f; double d; char c; uint64_t raw;
  } u = {.raw = 0};
  char t = s->typecode;
  if (t == 'c') {
    size_t n;
    const char *c = lua_tolstring(L, idx, &n);
    if (lua_type(L, idx) != LUA_TSTRING || n != 1)
      cc__lraise_code(L, CC_EVALUE, "typecode 'c' takes a string of one byte, not %s",
                 lua_type(L, idx) == LUA_TSTRING ? "a longer string" : luaL_typename(L, idx));
    u.c = c[0];
  } else if (t == 'f' || t == 'd') {
    if (lua_type(L, idx) != LUA_TNUMBER)
      cc__lraise_code(L, CC_EVALUE, "typecode '%c' takes a number, not %s", t,
                 luaL_typename(L, idx));
    if (t == 'f')
      u.f = (float)lua_tonumber(L, idx);
    else
      u.d = lua_tonumber(L, idx);
  } else {
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (!isint || lua_type(L, idx) != LUA_TNUMBER)
      cc__lraise_code(L, CC_EVALUE, "typecode '%c' takes an integer, not %s", t,
                 lua_type(L, idx) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, idx));
    check_range(L, t, v);
    switch (s->itemsize) {
    case 1: u.b = (int8_t)v; break;
    case 2: u.h = (int16_t)v; break;
    case 4: u.i = (int32_t)v; break;
    default: u.q = v; break;
    }
  }
  cc_shm_store(s, i, &u);
}

/* {lock = true | false | a Lock or RLock, name = ...}: the lock given, or
 * NULL; *own says the object is to make an RLock of its own. A Raw one
 * takes a name only. */
static cc_lock *lock_option(lua_State *L, int idx, int raw, int *own) {
  *own = 0;
  if (raw) {
    if (!lua_isnoneornil(L, idx)) {
      luaL_checktype(L, idx, LUA_TTABLE);
      cc__lcheck_fields_at(L, idx, NULL, idx, cc__lname_only, 0);
    }
    return NULL;
  }
  if (!lua_isnoneornil(L, idx)) {
    static const char *const known[] = {"lock", "name", NULL};
    luaL_checktype(L, idx, LUA_TTABLE);
    cc__lcheck_fields_at(L, idx, NULL, idx, known, 0);
    lua_getfield(L, idx, "lock");
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
      lua_pop(L, 1);
      return NULL;
    }
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) {
      cc_obj *o = cc__ltest_obj(L, -1, "RLock");
      if (!o)
        o = cc__ltest_obj(L, -1, "Lock");
      luaL_argcheck(L, o != NULL, idx, "lock must be true, false, a Lock or an RLock");
      lua_pop(L, 1);
      return (cc_lock *)o;
    }
    lua_pop(L, 1);
  }
  *own = 1;
  return NULL;
}

static char check_typecode(lua_State *L, int idx) {
  size_t n;
  const char *t = luaL_checklstring(L, idx, &n);
  luaL_argcheck(L, n == 1 && cc_shm_itemsize(t[0]), idx,
                "typecode must be one of b B h H i I l L q Q f d c");
  return t[0];
}

static cc_shm *make(lua_State *L, char t, int is_array, uint32_t n, int opts, int raw) {
  int own;
  cc_lock *lock = lock_option(L, opts, raw, &own);
  cc_shm *s;
  if (own && !is_array) {
    s = cc_shm_new_locked(t);
  } else {
    if (own)
      lock = cc__lcheck_alloc(L, cc_lock_new(1)); /* CPython's default: an RLock */
    s = cc_shm_new(t, is_array, n, lock);
    if (own)
      cc_obj_unref(&lock->hdr);
  }
  cc__lcheck_alloc(L, s);
  cc__lpush_obj(L, &s->hdr, 1);
  if (lua_istable(L, opts)) {
    cc_lopts o;
    cc__lread_name(L, opts, &o);
    cc__lname_obj(L, &s->hdr, &o);
  }
  return s;
}

static int new_value(lua_State *L, int raw) {
  char t = check_typecode(L, 1);
  lua_settop(L, 3); /* the wrapper goes at 4: Value('i') starts at 0, as in Python */
  cc_shm *s = make(L, t, 0, 1, 3, raw);
  if (!lua_isnoneornil(L, 2))
    store_item(L, s, 0, 2);
  return 1;
}

static int new_array(lua_State *L, int raw) {
  char t = check_typecode(L, 1);
  int kind = lua_type(L, 2);
  uint32_t n;
  if (kind == LUA_TNUMBER) {
    lua_Integer k = luaL_checkinteger(L, 2);
    luaL_argcheck(L, k >= 0 && k <= 100000000, 2, "size must be from 0 to 100000000");
    n = (uint32_t)k;
  } else if (kind == LUA_TTABLE) {
    n = (uint32_t)luaL_len(L, 2);
  } else if (kind == LUA_TSTRING && t == 'c') {
    n = (uint32_t)lua_rawlen(L, 2);
  } else {
    return luaL_argerror(L, 2, t == 'c' ? "a size, a table or a string expected"
                                        : "a size or a table expected");
  }
  cc_shm *s = make(L, t, 1, n, 3, raw);
  if (kind == LUA_TTABLE) {
    for (uint32_t i = 0; i < n; i++) {
      lua_geti(L, 2, (lua_Integer)i + 1);
      store_item(L, s, i, lua_gettop(L));
      lua_pop(L, 1);
    }
  } else if (kind == LUA_TSTRING) {
    memcpy(s->data, lua_tostring(L, 2), n);
  }
  return 1;
}

static int l_value(lua_State *L) { return new_value(L, 0); }
static int l_rawvalue(lua_State *L) { return new_value(L, 1); }
static int l_array(lua_State *L) { return new_array(L, 0); }
static int l_rawarray(lua_State *L) { return new_array(L, 1); }

/* The bytes of a "c" array up to its first NUL, as CPython's .value. */
static void push_cvalue(lua_State *L, cc_shm *s) {
  const char *p = (const char *)s->data;
  lua_pushlstring(L, p, strnlen(p, s->length));
}

static int shm_totable(lua_State *L);

static int shm_index(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  if (s->is_array && lua_type(L, 2) == LUA_TNUMBER) {
    int isint;
    lua_Integer i = lua_tointegerx(L, 2, &isint);
    if (isint && i >= 1 && i <= (lua_Integer)s->length)
      push_item(L, s, (uint32_t)(i - 1));
    else
      lua_pushnil(L); /* as a table: ipairs stops at the end */
    return 1;
  }
  /* Upvalue 1 is the string "value" (interned: compared as a pointer). */
  if (lua_rawequal(L, 2, lua_upvalueindex(1))) {
    if (!s->is_array)
      push_item(L, s, 0);
    else if (s->typecode == 'c')
      push_cvalue(L, s);
    else
      return cc__lraise_code(L, CC_EVALUE, "only a 'c' Array has .value; use a[i] or a:totable()");
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2)); /* the methods */
  /* Without a lock (Raw, or lock=false) there are no lock methods at all,
   * as CPython's raw ctypes objects have no get_lock. */
  if (!s->lock && lua_tocfunction(L, -1) && lua_tocfunction(L, -1) != shm_totable)
    lua_pushnil(L);
  return 1;
}

static int shm_newindex(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  if (s->is_array && lua_type(L, 2) == LUA_TNUMBER) {
    int isint;
    lua_Integer i = lua_tointegerx(L, 2, &isint);
    if (!isint || i < 1 || i > (lua_Integer)s->length)
      return cc__lraise_code(L, CC_EVALUE, "index %s is out of range 1..%d",
                        luaL_tolstring(L, 2, NULL), (int)s->length);
    store_item(L, s, (uint32_t)(i - 1), 3);
    return 0;
  }
  if (lua_rawequal(L, 2, lua_upvalueindex(1))) {
    if (!s->is_array) {
      store_item(L, s, 0, 3);
    } else if (s->typecode == 'c') {
      size_t n;
      const char *v = luaL_checklstring(L, 3, &n);
      if (n > s->length)
        return cc__lraise_code(L, CC_EVALUE, "a string of %d bytes does not fit in %d",
                          (int)n, (int)s->length);
      memcpy(s->data, v, n);
      if (n < s->length)
        ((char *)s->data)[n] = '\0';
    } else {
      return cc__lraise_code(L, CC_EVALUE, "only a 'c' Array has .value");
    }
    return 0;
  }
  const char *k = lua_tostring(L, 2);
  return luaL_error(L, "cannot set field '%s' of a %s", k ? k : "?",
                    cc_obj_typename(&s->hdr));
}

static int shm_len(lua_State *L) {
  lua_pushinteger(L, check_shm(L, 1)->length);
  return 1;
}

static int shm_totable(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  lua_createtable(L, (int)s->length, 0);
  for (uint32_t i = 0; i < s->length; i++) {
    push_item(L, s, i);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int no_lock(lua_State *L, cc_shm *s) {
  return cc__lraise_code(L, CC_EVALUE, "this %s has no lock (it was made Raw or with lock=false)",
                    cc_obj_typename(&s->hdr));
}

/* get_lock(): the same wrapper every time (kept in this one's user value),
 * so that `with v:get_lock()` in a loop makes nothing new. */
static int shm_get_lock(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  if (!s->lock)
    return no_lock(L, s);
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA)
    return 1;
  lua_pop(L, 1);
  cc__lpush_obj(L, &s->lock->hdr, 0);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, 1);
  return 1;
}

static int shm_acquire(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  if (!s->lock)
    return no_lock(L, s);
  int64_t dl = cc__lblock_deadline(L, 2);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = acquire(&s->hdr, dl);
  cc__lidle(w, &s->hdr);
  return cc__lpush_acquired(L, r);
}

static int shm_release(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  if (!s->lock)
    return no_lock(L, s);
  if (release(&s->hdr))
    return cc__lraise_code(L, CC_EVALUE, "release of a lock that is not held");
  return 0;
}

static int shm_hold(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  if (!s->lock)
    return no_lock(L, s);
  return cc__lhold(L, 1, &shm_ops);
}

static int shm_with(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  if (!s->lock)
    return no_lock(L, s);
  return cc__lwith(L, 1, &shm_ops);
}

static int shm_tostring(lua_State *L) {
  cc_shm *s = check_shm(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char nm[CC_OBJ_NAME_MAX];
  lua_pushfstring(L, "%s(%s, '%c', ", cc_obj_typename(&s->hdr), cc_obj_name(&s->hdr, nm),
                  s->typecode);
  luaL_addvalue(&b);
  if (s->is_array && s->typecode == 'c') {
    luaL_addchar(&b, '"');
    push_cvalue(L, s);
    luaL_addvalue(&b);
    luaL_addchar(&b, '"');
  } else {
    if (s->is_array)
      luaL_addchar(&b, '{');
    for (uint32_t i = 0; i < s->length && i < 10; i++) {
      if (i)
        luaL_addstring(&b, ", ");
      push_item(L, s, i);
      luaL_tolstring(L, -1, NULL);
      lua_remove(L, -2);
      luaL_addvalue(&b);
    }
    if (s->length > 10)
      luaL_addstring(&b, ", ...");
    if (s->is_array)
      luaL_addchar(&b, '}');
  }
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}

static const luaL_Reg methods[] = {
    {"get_lock", shm_get_lock}, {"acquire", shm_acquire},
    {"release", shm_release},   {"hold", shm_hold},
    {"with", shm_with},         {"totable", shm_totable},
    {NULL, NULL}};

static const luaL_Reg meta[] = {{"__len", shm_len},
                                {"__tostring", shm_tostring},
                                {NULL, NULL}};

void cc__open_shm(lua_State *L) {
  const char *names[] = {"Value", "Array"};
  for (int i = 0; i < 2; i++) {
    cc__lnew_class(L, names[i], methods, meta);
    lua_pushfstring(L, "concur.%s", names[i]);
    luaL_getmetatable(L, lua_tostring(L, -1));
    /* __index and __newindex run on every access: their look-ups are
     * upvalues, "value" and the methods. */
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushliteral(L, "value");
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, shm_index, 2);
    lua_setfield(L, -3, "__index");
    lua_pushliteral(L, "value");
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, shm_newindex, 2);
    lua_setfield(L, -3, "__newindex");
    lua_setfield(L, -2, "__methods");
    lua_pop(L, 2);
  }
  static const luaL_Reg ctors[] = {{"Value", l_value}, {"RawValue", l_rawvalue},
                                   {"Array", l_array}, {"RawArray", l_rawarray},
                                   {NULL, NULL}};
  luaL_setfuncs(L, ctors, 0);
}
