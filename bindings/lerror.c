/* lerror - concur error objects: {kind=, message=, traceback=} and concur.is */
#include "concur/config.h"
#include "concur/deadlock.h"
#include "concur/error.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERROR_MT "concur.Error"

/* The error object of a kind: the table's, or one a user named
 * (concur.error). */
static void push_error(lua_State *L, const char *kind, const char *msg) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, -2, "traceback");
  luaL_setmetatable(L, ERROR_MT);
}

void cc__lpush_error(lua_State *L, int err, const char *msg) {
  push_error(L, cc_errkind(err), msg);
}

static int vraise(lua_State *L, const char *kind, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  push_error(L, kind, msg);
  return lua_error(L);
}

static int raise_kind(lua_State *L, const char *kind, const char *fmt, ...) {
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
int cc_linterrupt_taken(void) { return interrupt_taken; }

void cc_linterrupt_take(void) {
  interrupt_pending = 0;
  interrupt_taken = 1;
  cc_interrupt_clear();
  if (main_state)
    lua_sethook(main_state, NULL, 0, 0);
}

int cc__lraise_code(lua_State *L, int err, const char *fmt, ...) {
  if (err == CC_EINTR) {
    cc_linterrupt_take();
    if (!fmt)
      return raise_kind(L, cc_errkind(err), "interrupted (Ctrl-C)");
  }
  if (err == CC_EARENAFULL && !fmt)
    return raise_kind(L, cc_errkind(err), "%s", cc_arena_full_message());
  if (err == CC_EDEADLK && !fmt)
    return raise_kind(L, cc_errkind(err), "%s", cc_deadlock_report());
  if (!fmt)
    return raise_kind(L, cc_errkind(err), "%s", cc_strerror(err));
  va_list ap;
  va_start(ap, fmt);
  return vraise(L, cc_errkind(err), fmt, ap);
}

/* Raises what the message on the stack's top says about argument #arg:
 * as luaL_argerror does (fn NULL: the running C function, by its name),
 * or as "bad argument #arg to 'fn' (...)" at the given level's place. */
static int field_error(lua_State *L, const char *fn, int arg, int level) {
  const char *msg = lua_tostring(L, -1);
  if (!fn)
    return luaL_argerror(L, arg, msg);
  luaL_where(L, level);
  lua_pushfstring(L, "bad argument #%d to '%s' (%s)", arg, fn, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

void cc__lcheck_fields_at(lua_State *L, int idx, const char *fn, int arg,
                          const char *const *known, int level) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pushfstring(L, "an option's name must be a string, not %s", luaL_typename(L, -1));
      field_error(L, fn, arg, level);
    }
    const char *k = lua_tostring(L, -1);
    int ok = 0;
    for (const char *const *o = known; *o && !ok; o++)
      ok = strcmp(k, *o) == 0;
    if (ok)
      continue;
    const char *near = cc_config_nearest(k, known); /* the config's own rule */
    if (!*known) {
      lua_pushfstring(L, "unknown option '%s': it takes none", k);
    } else if (near) {
      lua_pushfstring(L, "unknown option '%s' (did you mean '%s'?)", k, near);
    } else {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      lua_pushfstring(L, "unknown option '%s'; the options are ", k);
      luaL_addvalue(&b);
      for (const char *const *o = known; *o; o++) {
        luaL_addstring(&b, o == known ? "" : ", ");
        luaL_addstring(&b, *o);
      }
      luaL_pushresult(&b);
    }
    field_error(L, fn, arg, level);
  }
}

void cc__lcheck_fields(lua_State *L, int idx, const char *fn, int arg,
                       const char *const *known) {
  cc__lcheck_fields_at(L, idx, fn, arg, known, 1);
}

/* check_fields(t, fn, arg, {names}, [level=2]): cc__lcheck_fields for the
 * embedded Lua (Pool, Manager, Thread), said at the place `level` up from
 * the Lua function that checks (2: its caller's). */
static int l_check_fields(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *fn = luaL_checkstring(L, 2);
  int arg = (int)luaL_checkinteger(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  int n = (int)luaL_len(L, 4);
  const char *known[33];
  luaL_argcheck(L, n <= 32, 4, "at most 32 names");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 4, i + 1);
    known[i] = lua_tostring(L, -1); /* kept alive by the table */
    lua_pop(L, 1);
  }
  known[n] = NULL;
  /* By default the place is the caller's of the Lua function that checks:
   * the user's Pool{...}, not pool.lua's line. */
  cc__lcheck_fields_at(L, 1, fn, arg, known, (int)luaL_optinteger(L, 5, 2));
  return 0;
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

/* raise(code, message): the error of a code of the table, raised. */
static int l_raise(lua_State *L) {
  int err = (int)luaL_checkinteger(L, 1);
  luaL_argcheck(L, err < 0 && -err < CC__I_COUNT, 1, "a code of the error table (E.VALUE, ...)");
  return cc__lraise_code(L, err, "%s", luaL_optstring(L, 2, ""));
}

/* kind(code) -> the kind of a code of the table ("ValueError"). */
static int l_kind(lua_State *L) {
  lua_pushstring(L, cc_errkind((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* concur.error(kind, message): raises a concur error from Lua. */
static int l_error(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *msg = luaL_optstring(L, 2, "");
  return raise_kind(L, kind, "%s", msg);
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
  static const luaL_Reg internal[] = {
      {"check_fields", l_check_fields}, {"raise", l_raise}, {"kind", l_kind}, {NULL, NULL}};
  cc__lprivate_funcs(L, internal);
  /* E: the codes of the one error table, by name (E.VALUE), for the
   * embedded chunks to raise and test errors by. */
  cc__lpush_private(L);
  lua_createtable(L, 0, CC__I_COUNT);
#define CC__ERR_FIELD(name, kind, msg)                                         \
  lua_pushinteger(L, CC_E##name);                                              \
  lua_setfield(L, -2, #name);
  CC_ERRNO_MAP(CC__ERR_FIELD)
#undef CC__ERR_FIELD
  lua_setfield(L, -2, "E");
  lua_pop(L, 1);
}
