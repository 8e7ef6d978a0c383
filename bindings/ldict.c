/* ldict - Lua binding of the Manager's Dict, List and Namespace */
#include "codec.h"
#include "concur/dict.h"
#include "concur/error.h"
#include "lconcur.h"

#include <math.h>
#include <string.h>

static cc_dict *check_dict(lua_State *L, int idx) {
  cc_obj *o = cc__ltest_obj(L, idx, "Namespace");
  if (!o)
    o = cc__lcheck_obj(L, idx, "Dict");
  return (cc_dict *)o;
}

static cc_dict *check_list(lua_State *L, int idx) {
  return (cc_dict *)cc__lcheck_obj(L, idx, "List");
}

/*
 * Every operation encodes its key and value into buffers of its own, taken
 * for the call (codec.h) and given back before it returns or raises: an
 * operation waits for the container's lock, letting go of the GIL, and
 * another thread's operation must not write over them meanwhile.
 */

/* Every operation waits for the container's lock: the wrapper at 1 is busy
 * for the length of the core call (lconcur.h). */
static cc_wrapper *busy(lua_State *L) { return cc__lbusy(L, 1); }
static int idle(cc_wrapper *w, cc_dict *d, int r) {
  cc__lidle(w, &d->hdr);
  return r;
}

/* The container's length (raises Interrupted). */
static uint32_t length(lua_State *L, cc_dict *d) {
  uint32_t n;
  cc_wrapper *w = busy(L);
  int r = idle(w, d, cc_dict_len(d, &n));
  if (r)
    cc__lraise_code(L, r, NULL);
  return n;
}

/* Encodes the value at idx into a buffer of the caller's; raises
 * (Unsendable) with nothing taken: `also`, a buffer the caller took
 * before (a key's), or NULL, is given back then too. */
static cc_msg *encode(lua_State *L, int idx, const char *root, cc_msg *also) {
  cc_msg *m = cc__lmsg_take(L);
  if (cc__lencode(L, idx, 1, m, NULL, root) != LUA_OK) {
    cc__lmsg_give(m);
    if (also)
      cc__lmsg_give(also);
    lua_error(L);
  }
  return m;
}

/* Encodes the key at idx: strings, numbers (1.0 is 1, as in a Lua table)
 * and booleans. */
static cc_msg *key(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int t = lua_type(L, idx);
  if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
    cc__lraise_code(L, CC_EVALUE, "keys must be strings, numbers or booleans, not %s",
               luaL_typename(L, idx));
  if (t == LUA_TNUMBER && !lua_isinteger(L, idx)) {
    double d = lua_tonumber(L, idx);
    if (isnan(d))
      cc__lraise_code(L, CC_EVALUE, "a key may not be NaN");
    lua_Integer i;
    if (lua_numbertointeger(floor(d), &i) && (double)i == d) {
      lua_pushinteger(L, i);
      cc_msg *m = encode(L, -1, "key", NULL);
      lua_pop(L, 1);
      return m;
    }
  }
  return encode(L, idx, "key", NULL);
}

/* After an operation that put `val` in (or not): gives the buffers back and
 * raises for a failure, whose references stay the caller's to drop. */
static void finish(lua_State *L, int r, cc_msg *k, cc_msg *val) {
  if (r && val)
    cc_msg_unref(val);
  if (k)
    cc__lmsg_give(k);
  if (val)
    cc__lmsg_give(val);
  if (r)
    cc__lraise_code(L, r, NULL);
}

/* Pushes the value an operation copied out into `out` (when r is 0; its
 * references become this process's), gives the buffers back, and raises
 * for bad bytes and for a failed wait (Interrupted). True when there was a
 * value, false when there was none (CC_EEMPTY). */
static int push_out(lua_State *L, int r, cc_msg *k, cc_msg *out) {
  int n = r == 0 ? cc__ldecode(L, out, NULL) : 0;
  if (k)
    cc__lmsg_give(k);
  cc__lmsg_give(out);
  if (n < 0)
    lua_error(L);
  if (r && r != CC_EEMPTY)
    cc__lraise_code(L, r, NULL);
  return r == 0;
}

/* Pushes a snapshot's key or value; on bad bytes frees the snapshot (with
 * the references not yet taken over) and raises. */
static void push_snapshot(lua_State *L, cc_snapshot *s, cc_msg *m) {
  int n = cc__ldecode(L, m, NULL);
  m->nrefs = 0; /* taken over by the decoder, or dropped */
  if (n < 0) {
    cc_dict_snapshot_free(s);
    lua_error(L);
  }
}

static int get_or_nil(lua_State *L, cc_dict *d, int k) {
  cc_msg *km = key(L, k), *out = cc__lmsg_take(L);
  cc_wrapper *w = busy(L);
  if (!push_out(L, idle(w, d, cc_dict_get(d, km->data, km->len, out)), km, out))
    lua_pushnil(L);
  return 1;
}

static int set_or_del(lua_State *L, cc_dict *d, int k, int v) {
  cc_msg *km = key(L, k);
  if (lua_isnil(L, v)) {
    cc_wrapper *w = busy(L);
    int r = idle(w, d, cc_dict_del(d, km->data, km->len, NULL));
    cc__lmsg_give(km);
    if (r && r != CC_EEMPTY)
      cc__lraise_code(L, r, NULL);
    return 0;
  }
  cc_msg *vm = encode(L, v, "value", km);
  cc_wrapper *w = busy(L);
  finish(L, idle(w, d, cc_dict_set(d, km->data, km->len, vm)), km, vm);
  return 0;
}

static void append(lua_State *L, cc_dict *d, int v) {
  cc_msg *vm = encode(L, v, "value", NULL);
  cc_wrapper *w = busy(L);
  finish(L, idle(w, d, cc_list_insert(d, CC_LIST_END, vm)), NULL, vm);
}

static int fill(lua_State *L, cc_dict *d, int t) {
  if (lua_isnoneornil(L, t))
    return 0;
  luaL_checktype(L, t, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int top = lua_gettop(L);
    if (d->is_list)
      append(L, d, top);
    else
      set_or_del(L, d, top - 1, top);
    lua_pop(L, 1);
  }
  return 0;
}

/* Lists are filled in order, not in pairs() order. */
static void fill_list(lua_State *L, cc_dict *d, int t) {
  if (lua_isnoneornil(L, t))
    return;
  luaL_checktype(L, t, LUA_TTABLE);
  lua_Integer n = luaL_len(L, t);
  /* A list is made from a sequence: other keys would be lost. */
  for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) {
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) {
      lua_pop(L, 1);
      luaL_argerror(L, 1, lua_pushfstring(L, "a list is made from a sequence {v1, v2, ...}; "
                                          "this table has the key %s", luaL_tolstring(L, -1, NULL)));
    }
  }
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, t, i);
    append(L, d, lua_gettop(L));
    lua_pop(L, 1);
  }
}

static int new_container(lua_State *L, int kind) {
  lua_settop(L, 1); /* the optional table goes at 2, after the wrapper */
  if (!lua_isnil(L, 1))
    luaL_argcheck(L, lua_istable(L, 1), 1, kind == CC_LIST ? "a list is made from a table {v1, ...}"
                                                           : "a table of its first items expected");
  cc_dict *d = cc__lcheck_alloc(L, cc_dict_new(kind));
  cc__lpush_obj(L, &d->hdr, 1);
  lua_insert(L, 1);
  if (kind == CC_LIST)
    fill_list(L, d, 2);
  else
    fill(L, d, 2);
  lua_settop(L, 1);
  return 1;
}

static int l_dict(lua_State *L) { return new_container(L, CC_DICT); }
static int l_list(lua_State *L) { return new_container(L, CC_LIST); }
static int l_namespace(lua_State *L) { return new_container(L, CC_NAMESPACE); }

/* ---- Dict */

static int dict_index(lua_State *L) {
  cc_dict *d = check_dict(L, 1);
  if (lua_type(L, 2) == LUA_TSTRING && luaL_getmetafield(L, 1, "__methods") == LUA_TTABLE) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL)
      return 1;
    lua_pop(L, 2);
  }
  return get_or_nil(L, d, 2);
}

static int dict_newindex(lua_State *L) { return set_or_del(L, check_dict(L, 1), 2, 3); }

static int dict_len(lua_State *L) {
  lua_pushinteger(L, length(L, check_dict(L, 1)));
  return 1;
}

static int dict_get(lua_State *L) {
  cc_dict *d = check_dict(L, 1);
  cc_msg *km = key(L, 2), *out = cc__lmsg_take(L);
  cc_wrapper *w = busy(L);
  if (!push_out(L, idle(w, d, cc_dict_get(d, km->data, km->len, out)), km, out))
    lua_pushvalue(L, 3);
  return 1;
}

static int dict_pop(lua_State *L) {
  cc_dict *d = check_dict(L, 1);
  cc_msg *km = key(L, 2), *out = cc__lmsg_take(L);
  cc_wrapper *w = busy(L);
  if (push_out(L, idle(w, d, cc_dict_del(d, km->data, km->len, out)), km, out))
    return 1;
  if (lua_gettop(L) >= 3) {
    lua_pushvalue(L, 3);
    return 1;
  }
  return cc__lraise_code(L, CC_EVALUE, "key %s not found", luaL_tolstring(L, 2, NULL));
}

static int dict_update(lua_State *L) {
  fill(L, check_dict(L, 1), 2);
  return 0;
}

/* keys(), values(), items() and pairs(): a snapshot, taken at once. */
static int listing(lua_State *L, int what) {
  cc_dict *d = check_dict(L, 1);
  cc_snapshot s;
  cc_wrapper *w = busy(L);
  int r = idle(w, d, cc_dict_snapshot(d, &s));
  if (r)
    return cc__lraise_code(L, r, NULL);
  lua_createtable(L, (int)s.n, 0);
  for (uint32_t i = 0; i < s.n; i++) {
    if (what == 0) {
      push_snapshot(L, &s, &s.keys[i]);
    } else if (what == 1) {
      push_snapshot(L, &s, &s.vals[i]);
    } else {
      lua_createtable(L, 2, 0);
      push_snapshot(L, &s, &s.keys[i]);
      lua_rawseti(L, -2, 1);
      push_snapshot(L, &s, &s.vals[i]);
      lua_rawseti(L, -2, 2);
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  cc_dict_snapshot_free(&s);
  return 1;
}

static int dict_keys(lua_State *L) { return listing(L, 0); }
static int dict_values(lua_State *L) { return listing(L, 1); }
static int dict_items(lua_State *L) { return listing(L, 2); }

static int dict_totable(lua_State *L) {
  listing(L, 2);
  lua_newtable(L);
  lua_Integer n = luaL_len(L, -2);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, -2, i);
    lua_geti(L, -1, 1);
    lua_geti(L, -2, 2);
    lua_rawset(L, -4);
    lua_pop(L, 1);
  }
  return 1;
}

static int pairs_next(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2)) + 1;
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(2));
  if (lua_geti(L, lua_upvalueindex(1), i) == LUA_TNIL)
    return 1;
  lua_geti(L, -1, 1);
  lua_geti(L, -2, 2);
  return 2;
}

static int dict_pairs(lua_State *L) {
  listing(L, 2);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, pairs_next, 2);
  return 1;
}

/* incr(k, [delta=1]) and apply(k, fn): atomic read-modify-write. */
typedef struct upd {
  lua_State *L;
  const cc_msg *old;
  cc_msg *val; /* the new value's, the container's (cc_dict_update's) */
  int mode;    /* 0 incr, 1 apply */
} upd;

/* In a protected call, under the container's lock: the new value from the
 * old one, encoded into u->val, and left on the stack. */
static int upd_body(lua_State *L) {
  upd *u = lua_touserdata(L, 1);
  if (!u->old)
    lua_pushnil(L);
  else if (cc__ldecode(L, u->old, NULL) < 0)
    return lua_error(L);
  if (u->mode == 0) {
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushinteger(L, 0);
    }
    if (lua_type(L, -1) != LUA_TNUMBER)
      cc__lraise_code(L, CC_EVALUE, "incr needs a number, the value is a %s",
                 luaL_typename(L, -1));
    lua_pushvalue(L, 2);
    lua_arith(L, LUA_OPADD);
  } else {
    lua_pushvalue(L, 2);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
  }
  if (cc__lencode(L, -1, 1, u->val, NULL, "value") != LUA_OK)
    return lua_error(L);
  return 1;
}

static int upd_fn(void *ud, const cc_msg *old, cc_msg *val) {
  upd *u = ud;
  lua_State *L = u->L;
  u->old = old;
  u->val = val;
  lua_pushcfunction(L, upd_body);
  lua_pushlightuserdata(L, u);
  lua_pushvalue(L, 3);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK)
    return CC_EVALUE; /* the error stays on the stack */
  return 0;
}

static int read_modify_write(lua_State *L, int mode) {
  cc_dict *d = check_dict(L, 1);
  if (mode == 0) {
    if (lua_isnoneornil(L, 3)) {
      lua_settop(L, 2);
      lua_pushinteger(L, 1);
    }
    luaL_checknumber(L, 3);
  } else {
    luaL_checktype(L, 3, LUA_TFUNCTION);
  }
  lua_settop(L, 3);
  cc_msg *km = key(L, 2);
  upd u = {L, NULL, NULL, mode};
  cc_wrapper *w = busy(L); /* fn runs in a protected call */
  int r = idle(w, d, cc_dict_update(d, km->data, km->len, upd_fn, &u));
  cc__lmsg_give(km);
  if (r == CC_EVALUE)
    return lua_error(L);
  if (r)
    return cc__lraise_code(L, r, NULL);
  return 1; /* the new value, left by upd_body */
}

static int dict_incr(lua_State *L) { return read_modify_write(L, 0); }
static int dict_apply(lua_State *L) { return read_modify_write(L, 1); }

static int dict_tostring(lua_State *L) {
  cc_dict *d = check_dict(L, 1);
  char nm[CC_OBJ_NAME_MAX];
  lua_pushfstring(L, "%s(%s, %d items)", cc_obj_typename(&d->hdr), cc_obj_name(&d->hdr, nm),
                  (int)length(L, d));
  return 1;
}

/* ---- List */

static uint32_t list_index(lua_State *L, int idx, uint32_t len, int extra) {
  lua_Integer i = luaL_checkinteger(L, idx);
  if (i < 0)
    i += (lua_Integer)len + 1; /* -1 is the last */
  if (i < 1 || i > (lua_Integer)len + extra)
    cc__lraise_code(L, CC_EVALUE, "index %d is out of range 1..%d", (int)lua_tointeger(L, idx),
               (int)len + extra);
  return (uint32_t)(i - 1);
}

static int list_index_mm(lua_State *L) {
  cc_dict *d = check_list(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    int isint;
    lua_Integer i = lua_tointegerx(L, 2, &isint);
    if (!isint || i < 1 || i > UINT32_MAX) {
      lua_pushnil(L);
      return 1;
    }
    cc_msg *out = cc__lmsg_take(L);
    cc_wrapper *w = busy(L);
    if (!push_out(L, idle(w, d, cc_list_get(d, (uint32_t)(i - 1), out)), NULL, out))
      lua_pushnil(L);
    return 1;
  }
  luaL_getmetafield(L, 1, "__methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int list_newindex(lua_State *L) {
  cc_dict *d = check_list(L, 1);
  uint32_t i = list_index(L, 2, length(L, d), 0);
  cc_msg *vm = encode(L, 3, "value", NULL);
  cc_wrapper *w = busy(L);
  finish(L, idle(w, d, cc_list_set(d, i, vm)), NULL, vm);
  return 0;
}

static int list_append(lua_State *L) {
  cc_dict *d = check_list(L, 1);
  luaL_checkany(L, 2);
  append(L, d, 2);
  return 0;
}

static int list_extend(lua_State *L) {
  fill_list(L, check_list(L, 1), 2);
  return 0;
}

static int list_insert(lua_State *L) {
  cc_dict *d = check_list(L, 1);
  uint32_t i = list_index(L, 2, length(L, d), 1);
  cc_msg *vm = encode(L, 3, "value", NULL);
  cc_wrapper *w = busy(L);
  finish(L, idle(w, d, cc_list_insert(d, i, vm)), NULL, vm);
  return 0;
}

static int list_pop(lua_State *L) {
  cc_dict *d = check_list(L, 1);
  uint32_t len = length(L, d);
  if (len == 0)
    return cc__lraise_code(L, CC_EVALUE, "pop from an empty List");
  uint32_t i = lua_isnoneornil(L, 2) ? len - 1 : list_index(L, 2, len, 0);
  cc_msg *out = cc__lmsg_take(L);
  cc_wrapper *w = busy(L);
  if (!push_out(L, idle(w, d, cc_list_pop(d, i, out)), NULL, out))
    return cc__lraise_code(L, CC_EVALUE, "index out of range");
  return 1;
}

static int list_totable(lua_State *L) {
  cc_dict *d = check_list(L, 1);
  cc_snapshot s;
  cc_wrapper *w = busy(L);
  int r = idle(w, d, cc_dict_snapshot(d, &s));
  if (r)
    return cc__lraise_code(L, r, NULL);
  lua_createtable(L, (int)s.n, 0);
  for (uint32_t i = 0; i < s.n; i++) {
    push_snapshot(L, &s, &s.vals[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  cc_dict_snapshot_free(&s);
  return 1;
}

static int list_len(lua_State *L) {
  lua_pushinteger(L, length(L, check_list(L, 1)));
  return 1;
}

static int list_pairs(lua_State *L) {
  list_totable(L);
  lua_getglobal(L, "ipairs");
  lua_insert(L, -2);
  lua_call(L, 1, 3);
  return 3;
}

static int list_tostring(lua_State *L) {
  cc_dict *d = check_list(L, 1);
  char nm[CC_OBJ_NAME_MAX];
  lua_pushfstring(L, "List(%s, %d items)", cc_obj_name(&d->hdr, nm), (int)length(L, d));
  return 1;
}

/* ---- Namespace: attributes only */

static int ns_index(lua_State *L) { return get_or_nil(L, check_dict(L, 1), 2); }

static const luaL_Reg dict_methods[] = {
    {"get", dict_get},     {"pop", dict_pop},       {"update", dict_update},
    {"keys", dict_keys},   {"values", dict_values}, {"items", dict_items},
    {"incr", dict_incr},   {"apply", dict_apply},   {"len", dict_len},
    {"totable", dict_totable}, {NULL, NULL}};

static const luaL_Reg dict_meta[] = {
    {"__index", dict_index}, {"__newindex", dict_newindex}, {"__len", dict_len},
    {"__pairs", dict_pairs}, {"__tostring", dict_tostring}, {NULL, NULL}};

static const luaL_Reg ns_meta[] = {
    {"__index", ns_index}, {"__newindex", dict_newindex}, {"__len", dict_len},
    {"__pairs", dict_pairs}, {"__tostring", dict_tostring}, {NULL, NULL}};

static const luaL_Reg list_methods[] = {
    {"append", list_append}, {"extend", list_extend}, {"insert", list_insert},
    {"pop", list_pop},       {"totable", list_totable}, {"len", list_len},
    {NULL, NULL}};

static const luaL_Reg list_meta[] = {
    {"__index", list_index_mm}, {"__newindex", list_newindex}, {"__len", list_len},
    {"__pairs", list_pairs},    {"__tostring", list_tostring}, {NULL, NULL}};

static void set_methods(lua_State *L, const char *tname, const luaL_Reg *methods) {
  lua_pushfstring(L, "concur.%s", tname);
  luaL_getmetatable(L, lua_tostring(L, -1));
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__methods");
  lua_pop(L, 2);
}

void cc__open_dict(lua_State *L) {
  static const luaL_Reg none[] = {{NULL, NULL}};
  cc__lnew_class(L, "Dict", dict_methods, dict_meta);
  set_methods(L, "Dict", dict_methods);
  cc__lnew_class(L, "Namespace", none, ns_meta);
  cc__lnew_class(L, "List", list_methods, list_meta);
  set_methods(L, "List", list_methods);
  static const luaL_Reg internal[] = {
      {"Dict", l_dict}, {"List", l_list}, {"Namespace", l_namespace}, {NULL, NULL}};
  cc__lprivate_funcs(L, internal);
}
