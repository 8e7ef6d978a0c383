/* luadump - a Lua source as bytecode, made at build time by the Lua the binary links */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * luadump IN.lua OUT NAME: compiles IN as the chunk "=NAME" (the name its
 * errors and tracebacks give, as when the source is loaded) and writes its
 * bytecode, with its debug information, into OUT. The host loads that
 * instead of compiling the source at every start, which took a third of an
 * empty run's time. Exit 0, or 1 with the reason on stderr.
 */

static int writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return fwrite(p, 1, n, ud) != n;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *more = realloc(buf, cap *= 2);
      if (!more)
        free(buf);
      buf = more;
    }
  }
  fclose(f);
  *len = n;
  return buf;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: luadump IN.lua OUT NAME\n");
    return 1;
  }
  size_t len;
  char *src = slurp(argv[1], &len);
  if (!src) {
    perror(argv[1]);
    return 1;
  }
  lua_State *L = luaL_newstate();
  char name[256];
  snprintf(name, sizeof name, "=%s", argv[3]);
  int code = 1;
  if (!L) {
    fprintf(stderr, "luadump: not enough memory\n");
  } else if (luaL_loadbufferx(L, src, len, name, "t") != LUA_OK) {
    fprintf(stderr, "luadump: %s\n", lua_tostring(L, -1));
  } else {
    FILE *out = fopen(argv[2], "wb");
    if (!out)
      perror(argv[2]);
    else if (lua_dump(L, writer, out, 0) != 0 || fclose(out) != 0)
      fprintf(stderr, "luadump: cannot write %s\n", argv[2]);
    else
      code = 0;
  }
  if (L)
    lua_close(L);
  free(src);
  return code;
}
