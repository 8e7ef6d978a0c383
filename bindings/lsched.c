/* lsched - the scheduler seen from Lua: scheduling points, the count hook, seeds, pairs' order */
#include "concur/sched.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <stdint.h>
#include <string.h>

/*
 * Under `concur run --sim` (and only then: nothing here costs anything
 * otherwise) every C function of every concur class and of the module is
 * wrapped so that its call is a scheduling point, and a count hook makes
 * one every `quantum` Lua instructions, so that Lua code between two
 * operations interleaves too (a read of a Value and the write after it),
 * the same way in every run of a seed.
 */

/* Threads: set before any thread, at luaopen_concur. */
static int quantum;

/* A function without upvalues is called as if it were the one called (its
 * errors name it as before); a closure through a call of its own. */
static int point_call(lua_State *L) {
  cc_sched_note_where();
  cc_wait_point();
  lua_CFunction f = lua_tocfunction(L, lua_upvalueindex(1));
  return f(L);
}

static int point_closure(lua_State *L) {
  cc_sched_note_where();
  cc_wait_point();
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Who is not a scheduling point: what the collector and to-be-closed
 * variables call (they may run at any allocation), and words. */
static int unwrapped(const char *name) {
  static const char *const skip[] = {"__gc", "__close", "__tostring", "__eq", "__name",
                                     "__mode", "__metatable", NULL};
  for (int i = 0; skip[i]; i++)
    if (!strcmp(name, skip[i]))
      return 1;
  return 0;
}

/* Wraps the C functions of the table at idx (and of its __index table). */
static void wrap_table(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && !unwrapped(lua_tostring(L, -2))) {
      lua_CFunction f = lua_tocfunction(L, -1);
      if (f && f != point_call && f != point_closure) {
        int closure = lua_getupvalue(L, -1, 1) != NULL;
        if (closure)
          lua_pop(L, 1);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, closure ? point_closure : point_call, 1);
        lua_rawset(L, idx);
      } else if (depth == 0 && lua_istable(L, -1) && !strcmp(lua_tostring(L, -2), "__index")) {
        wrap_table(L, -1, 1);
      }
    }
    lua_pop(L, 1);
  }
}

static void hook(lua_State *L, lua_Debug *ar) {
  (void)L;
  (void)ar;
  cc_wait_point();
}

void cc__lsched_sethook(lua_State *L) {
  if (cc_sched_on() && quantum > 0)
    lua_sethook(L, hook, LUA_MASKCOUNT, quantum);
  else
    lua_sethook(L, NULL, 0, 0);
}

static void seed_random(lua_State *L, lua_Integer a, lua_Integer b) {
  if (lua_getglobal(L, "math") == LUA_TTABLE &&
      lua_getfield(L, -1, "randomseed") == LUA_TFUNCTION) {
    lua_pushinteger(L, a);
    lua_pushinteger(L, b);
    lua_pcall(L, 2, 0, 0);
    lua_pop(L, 1);
  } else {
    lua_pop(L, 2);
  }
}

int cc__lsched_seed_child(lua_State *L) {
  if (!cc_sched_on())
    return 0;
  cc_sched_result r;
  cc_sched_result_get(&r, NULL, 0);
  seed_random(L, (lua_Integer)r.seed, cc_sched_task());
  return 1;
}

/* Under the scheduler pairs() visits a table's keys in one order in every
 * run. Lua seeds its string hashes from addresses and the time of day, so
 * next() gives the keys of one table in another order in each run, and a
 * script that acts in that order (puts on a Queue of each name) would run
 * differently from the same seed. The order: numbers by value, then strings
 * byte by byte, then false and true, then the rest in the order they were
 * made (by address, which keeps that order from run to run). next() is
 * Lua's own. */
static int key_rank(int type) {
  switch (type) {
  case LUA_TNUMBER: return 0;
  case LUA_TSTRING: return 1;
  case LUA_TBOOLEAN: return 2;
  default: return 3;
  }
}

static int key_less(lua_State *L) {
  int ra = key_rank(lua_type(L, 1)), rb = key_rank(lua_type(L, 2));
  int less;
  if (ra != rb) {
    less = ra < rb;
  } else if (ra == 0) {
    less = lua_compare(L, 1, 2, LUA_OPLT);
  } else if (ra == 1) {
    size_t na, nb;
    const char *a = lua_tolstring(L, 1, &na), *b = lua_tolstring(L, 2, &nb);
    int c = memcmp(a, b, na < nb ? na : nb);
    less = c < 0 || (c == 0 && na < nb);
  } else if (ra == 2) {
    less = !lua_toboolean(L, 1) && lua_toboolean(L, 2);
  } else {
    less = (uintptr_t)lua_topointer(L, 1) < (uintptr_t)lua_topointer(L, 2);
  }
  lua_pushboolean(L, less);
  return 1;
}

/* The iterator: upvalues the table, its sorted keys and how many were
 * given. A key whose value was set to nil meanwhile is passed over. */
static int sorted_next(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(3));
  for (;;) {
    i++;
    if (lua_rawgeti(L, lua_upvalueindex(2), i) == LUA_TNIL)
      return 1;
    lua_pushvalue(L, -1);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) {
      lua_pushinteger(L, i);
      lua_replace(L, lua_upvalueindex(3));
      return 2;
    }
    lua_pop(L, 2);
  }
}

/* pairs(t), as Lua's (a __pairs metamethod is called), in that order.
 * Upvalue: table.sort as it was at the start. */
static int sorted_pairs(lua_State *L) {
  if (luaL_getmetafield(L, 1, "__pairs") != LUA_TNIL) {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 3);
    return 3;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_newtable(L);
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, 2, ++n);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 2);
  lua_pushcfunction(L, key_less);
  lua_call(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, sorted_next, 3);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

static void order_pairs(lua_State *L) {
  if (lua_getglobal(L, "table") == LUA_TTABLE && lua_getfield(L, -1, "sort") == LUA_TFUNCTION) {
    lua_pushcclosure(L, sorted_pairs, 1);
    lua_setglobal(L, "pairs");
    lua_pop(L, 1);
  } else {
    lua_pop(L, 2);
  }
}

void cc__lsched_open(lua_State *L, int module, int q) {
  if (!cc_sched_on())
    return;
  quantum = q;
  module = lua_absindex(L, module);
  wrap_table(L, module, 1);
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1) &&
        !strncmp(lua_tostring(L, -2), "concur.", 7))
      wrap_table(L, -1, 0);
    lua_pop(L, 1);
  }
  order_pairs(L);
  cc__lsched_seed_child(L);
  cc__lsched_sethook(L);
}
