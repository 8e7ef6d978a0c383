/* lerror - concur error objects: {kind=, message=, traceback=} and concur.is */
#include "concur/error.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERROR_MT "concur.Error"

void cc__lpush_error(lua_State *L, const char *kind, const char *msg) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, -2, "traceback");
  luaL_setmetatable(L, ERROR_MT);
}

static int vraise(lua_State *L, const char *kind, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  cc__lpush_error(L, kind, msg);
  return lua_error(L);
}

int cc__lraise(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  return vraise(L, kind, fmt, ap);
}

/* Ctrl-C, raised as Interrupted once (lruntime.c's handler pends it): the
 * first raise takes it, and the main state's hook, set by the handler to
 * stop its Lua code, goes with it. Process-wide, as the signal. */
static lua_State *main_state; /* set before any thread */
static volatile sig_atomic_t interrupt_pending, interrupt_taken;

void cc__linterrupt_state(lua_State *L) { main_state = L; }
void cc__linterrupt_pend(void) { interrupt_pending = 1; }
int cc__linterrupt_pending(void) { return interrupt_pending; }
int cc__linterrupt_taken(void) { return interrupt_taken; }

void cc__linterrupt_take(void) {
  interrupt_pending = 0;
  interrupt_taken = 1;
  cc_interrupt_clear();
  if (main_state)
    lua_sethook(main_state, NULL, 0, 0);
}

int cc__lraise_code(lua_State *L, int err, const char *fmt, ...) {
  if (err == CC_EINTR) {
    cc__linterrupt_take();
    if (!fmt)
      return cc__lraise(L, "Interrupted", "interrupted (Ctrl-C)");
  }
  if (err == CC_EARENAFULL && !fmt)
    return cc__lraise(L, "ArenaFull", "%s", cc_arena_full_message());
  if (!fmt)
    return cc__lraise(L, cc_errkind(err), "%s", cc_strerror(err));
  va_list ap;
  va_start(ap, fmt);
  return vraise(L, cc_errkind(err), fmt, ap);
}

static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "concur.%s: %s", luaL_optstring(L, -2, "Error"),
                  luaL_optstring(L, -1, ""));
  return 1;
}

/* concur.is(err, kind): err is a concur error of that kind. */
static int l_is(lua_State *L) {
  const char *kind = luaL_checkstring(L, 2);
  if (!lua_getmetatable(L, 1)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  luaL_getmetatable(L, ERROR_MT);
  int ours = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!ours) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_getfield(L, 1, "kind");
  const char *k = lua_tostring(L, -1);
  lua_pushboolean(L, k && strcmp(k, kind) == 0);
  return 1;
}

/* concur.error(kind, message): raises a concur error from Lua. */
static int l_error(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *msg = luaL_optstring(L, 2, "");
  return cc__lraise(L, kind, "%s", msg);
}

/* An error object travels (a Queue, a Pipe) as itself: its fields, and
 * its class again on the other side. */
static int error_encode(lua_State *L) {
  lua_pushliteral(L, ERROR_MT);
  lua_createtable(L, 0, 3);
  static const char *const fields[] = {"kind", "message", "traceback"};
  for (int i = 0; i < 3; i++) {
    lua_getfield(L, 1, fields[i]);
    lua_setfield(L, -2, fields[i]);
  }
  return 2;
}

static int error_decode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_setmetatable(L, ERROR_MT);
  return 1;
}

void cc__open_error(lua_State *L) {
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, error_encode);
    lua_setfield(L, -2, "__concur_encode");
  }
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "concur.codec.types");
  lua_pushcfunction(L, error_decode);
  lua_setfield(L, -2, ERROR_MT);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_is);
  lua_setfield(L, -2, "is");
  lua_pushcfunction(L, l_error);
  lua_setfield(L, -2, "error");
}
