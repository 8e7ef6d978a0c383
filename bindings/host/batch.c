/* batch - concur batch, report and timeline: run the embedded Lua tools */
#include "host.h"

#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "batch_lua.h"
#include "timeline_lua.h"

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg)
    msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs an embedded chunk, bytecode (its name, for messages) with
 * arg = {command, binary, options...}; returns what it returns, its exit
 * code. */
static int run_tool(const char *name, const unsigned char *chunk, size_t len, int argc,
                    char **argv) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fprintf(stderr, "concur: cannot find the concur binary itself\n");
    return EXIT_USAGE;
  }
  self[n] = '\0';
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "concur: not enough memory for Lua\n");
    return EXIT_USAGE;
  }
  luaL_openlibs(L);
  luaL_requiref(L, "concur.yaml", host_open_yaml, 0);
  luaL_requiref(L, "concur.host", host_open_host, 0);
  lua_pop(L, 2);
  host_catch_signals(L);
  /* arg = {command, binary, options...} */
  lua_createtable(L, argc + 1, 0);
  lua_pushstring(L, argv[0]);
  lua_rawseti(L, -2, 1);
  lua_pushstring(L, self);
  lua_rawseti(L, -2, 2);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 2);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, msgh);
  int code = EXIT_SCRIPT;
  char chunkname[64];
  snprintf(chunkname, sizeof chunkname, "=%s", name);
  if (luaL_loadbufferx(L, (const char *)chunk, len, chunkname, "b") ||
      lua_pcall(L, 0, 1, -2)) {
    fprintf(stderr, "concur: internal error in the %s: %s\n", name, lua_tostring(L, -1));
  } else {
    code = (int)luaL_optinteger(L, -1, EXIT_SCRIPT);
  }
  lua_close(L);
  fflush(NULL);
  return code;
}

int host_batch(int argc, char **argv) {
  return run_tool("batch runner", batch_lua_bc, sizeof batch_lua_bc, argc, argv);
}

int host_timeline(int argc, char **argv) {
  return run_tool("timeline", timeline_lua_bc, sizeof timeline_lua_bc, argc, argv);
}
