/* fuzz_codec - libFuzzer target: the decoder on arbitrary bytes (make fuzz) */
#include "codec.h"
#include "concur/lock.h"
#include "concur/proc.h"
#include "lconcur.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static lua_State *L;
static uint32_t lock_off;

static int decode_fn(lua_State *S) {
  int n = cc__ldecode(S, lua_touserdata(S, 1), NULL);
  return n < 0 ? lua_error(S) : n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) {
    if (cc_runtime_init((size_t)64 << 20, 16))
      abort();
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "concur", luaopen_concur, 1);
    lua_pop(L, 1);
    lock_off = cc_arena_off(cc_lock_new(0)); /* one live object to refer to */
  }
  /* The message may refer to one object; the decoder takes the ref over. */
  cc_obj_ref(cc_obj_from_off(lock_off));
  uint32_t refs[1] = {lock_off};
  cc_msg m = {.data = (char *)data, .len = size, .refs = refs, .nrefs = 1};
  lua_pushcfunction(L, decode_fn);
  lua_pushlightuserdata(L, &m);
  lua_pcall(L, 1, LUA_MULTRET, 0);
  lua_settop(L, 0);
  static unsigned n;
  if (++n % 1000 == 0)
    lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
