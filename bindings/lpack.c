/* lpack - a pool's lists of results, packed into one string and back */
#include "codec.h"
#include "concur/msg.h"
#include "lconcur.h"

#include <lauxlib.h>

/* A pool's worker sends a chunk's results as one string (no table of its
 * own on the way), which the parent decodes straight into the answer's
 * list: in the private table, for pool.lua. */

/* pack(list) -> string, or nil when the list holds objects or Connections
 * (which travel only as a message's own references). */
static int l_pack(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  cc_msg *m = cc__lmsg_take(L);
  cc_fds fds;
  if (cc__lencode(L, 1, 1, m, &fds, "list") != LUA_OK) {
    cc__lmsg_give(m);
    return lua_error(L);
  }
  int plain = m->nrefs == 0 && fds.n == 0;
  cc_msg_unref(m);
  if (plain)
    lua_pushlstring(L, m->data, m->len); /* a memory error here loses m (see above) */
  cc__lmsg_give(m);
  if (!plain)
    lua_pushnil(L);
  return 1;
}

/* unpack_into(s, target, offset): puts the list pack made into
 * target[offset + 1 ...], without a list of its own on the way. */
static int l_unpack_into(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer off = luaL_checkinteger(L, 3);
  luaL_argcheck(L, off >= 0, 3, "an offset of 0 or more");
  return cc__ldecode_list_into(L, s, len, 2, off);
}

void cc__open_pack(lua_State *L) {
  static const luaL_Reg funcs[] = {{"pack", l_pack}, {"unpack_into", l_unpack_into}, {NULL, NULL}};
  cc__lprivate_funcs(L, funcs);
}
