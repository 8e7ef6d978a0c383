/* levent - Lua binding of Event */
#include "concur/error.h"
#include "concur/event.h"
#include "lconcur.h"

static cc_event *check_event(lua_State *L, int idx) {
  return (cc_event *)cc__lcheck_obj(L, idx, "Event");
}

static int l_event(lua_State *L) {
  cc_lopts opts;
  cc__ltake_options(L, 1, cc__lname_only, &opts);
  cc_event *e = cc__lcheck_alloc(L, cc_event_new());
  cc__lpush_obj(L, &e->hdr, 1);
  cc__lname_obj(L, &e->hdr, &opts);
  return 1;
}

static int event_set(lua_State *L) {
  cc_event_set(check_event(L, 1));
  return 0;
}

static int event_clear(lua_State *L) {
  cc_event_clear(check_event(L, 1));
  return 0;
}

static int event_is_set(lua_State *L) {
  lua_pushboolean(L, cc_event_is_set(check_event(L, 1)));
  return 1;
}

static int event_wait(lua_State *L) {
  cc_event *e = check_event(L, 1);
  int64_t dl = cc__ldeadline(L, 2);
  cc_wrapper *w = cc__lbusy(L, 1);
  int r = cc_event_wait(e, dl);
  cc__lidle(w, &e->hdr);
  if (r != 0 && r != CC_ETIMEDOUT) /* Interrupted, Deadlock */
    return cc__lraise_code(L, r, NULL);
  lua_pushboolean(L, r == 0);
  return 1;
}

static int event_tostring(lua_State *L) {
  cc_event *e = check_event(L, 1);
  char nm[CC_OBJ_NAME_MAX];
  lua_pushfstring(L, "Event(%s, %s)", cc_obj_name(&e->hdr, nm),
                  cc_event_is_set(e) ? "set" : "clear");
  return 1;
}

static const luaL_Reg methods[] = {{"set", event_set},
                                   {"clear", event_clear},
                                   {"is_set", event_is_set},
                                   {"wait", event_wait},
                                   {NULL, NULL}};

static const luaL_Reg meta[] = {{"__tostring", event_tostring}, {NULL, NULL}};

void cc__open_event(lua_State *L) {
  cc__lnew_class(L, "Event", methods, meta);
  lua_pushcfunction(L, l_event);
  lua_setfield(L, -2, "Event");
}
