/* lprivate - the module's private table: what its own Lua chunks use of C */
#include "lconcur.h"

#include <lauxlib.h>

#define PRIVATE "concur.private"

void cc__lpush_private(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, PRIVATE);
}

void cc__lset_private(lua_State *L, const char *name) {
  cc__lpush_private(L);
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

void cc__lprivate_funcs(lua_State *L, const luaL_Reg *funcs) {
  cc__lpush_private(L);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
