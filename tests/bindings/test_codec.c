/* test_codec - the codec: any arena type travels, and bad bytes never crash */
#include "../core/helpers.h"

#include "codec.h"
#include "concur/error.h"
#include "concur/queue.h"
#include "lconcur.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

/* A type the codec has never heard of: registered here, sent by handle. */
typedef struct widget {
  cc_obj hdr;
  int x;
} widget;

static const cc_type widget_type = {.name = "Widget", .size = sizeof(widget)};

static int widget_x(lua_State *L) {
  lua_pushinteger(L, ((widget *)cc__lcheck_obj(L, 1, "Widget"))->x);
  return 1;
}

static lua_State *L;

static int setup(void **state) {
  (void)state;
  if (group_setup(state))
    return -1;
  cc_type_register(&widget_type);
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "concur", luaopen_concur, 1);
  lua_pop(L, 1);
  static const luaL_Reg methods[] = {{"x", widget_x}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{NULL, NULL}};
  cc__lnew_class(L, "Widget", methods, meta);
  return 0;
}

static int teardown(void **state) {
  lua_close(L);
  return group_teardown(state);
}

static int send_widget(void *arg, int i) {
  (void)i;
  cc_queue *q = arg;
  widget *w = cc_obj_new(&widget_type);
  w->x = 42;
  cc__lpush_obj(L, &w->hdr, 1);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "w");
  cc_msg m = {0};
  assert_int_equal(cc__lencode(L, -1, 1, &m, NULL, "item"), LUA_OK);
  return cc_queue_put(q, &m, CC_FOREVER) ? 1 : 0;
}

static void a_new_type_travels_by_handle(void **state) {
  (void)state;
  cc_queue *q = cc_queue_new(CC_QUEUE_PLAIN, 0);
  assert_int_equal(await(spawn(send_widget, q, 0), 10), 0);
  cc_msg m = {0};
  assert_int_equal(cc_queue_get(q, &m, 0), 0);
  assert_int_equal(cc__ldecode(L, &m, NULL), 1);
  lua_getfield(L, -1, "w");
  lua_getfield(L, -1, "x");
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1);
  assert_int_equal(lua_tointeger(L, -1), 42);
  lua_settop(L, 0);
  cc_msg_free(&m);
  cc_obj_unref(&q->hdr);
}

static int decode_fn(lua_State *S) {
  const cc_msg *m = lua_touserdata(S, 1);
  int n = cc__ldecode(S, m, NULL);
  return n < 0 ? lua_error(S) : n;
}

/* Decodes bytes that may be bad: 0 for a value, 1 for a clean ValueError;
 * anything else fails the test (a crash ends it). */
static int try_decode(const char *data, size_t n, const uint32_t *refs, uint32_t nrefs) {
  cc_msg m = {.data = (char *)data, .len = n, .refs = (uint32_t *)refs, .nrefs = nrefs};
  /* The decoder takes the message's references over: give it its own. */
  for (uint32_t i = 0; i < nrefs; i++)
    cc_obj_ref(cc_obj_from_off(refs[i]));
  lua_pushcfunction(L, decode_fn);
  lua_pushlightuserdata(L, &m);
  int st = lua_pcall(L, 1, LUA_MULTRET, 0);
  int r = 0;
  if (st != LUA_OK) {
    lua_getfield(L, -1, "kind");
    if (!lua_isstring(L, -1) || strcmp(lua_tostring(L, -1), "ValueError") != 0)
      fail_msg("decoding bad bytes raised %s", luaL_tolstring(L, -2, NULL));
    r = 1;
  }
  lua_settop(L, 0);
  return r;
}

static void sample(cc_msg *m) {
  const char *code =
      "local c = require 'concur'\n"
      "local up = {10, 'x'}\n"
      "local t = {nil, true, false, 1, -7, math.maxinteger, 2.5, 0/0, 'str', up = up,\n"
      "  f = function(a) return a + up[1] end, lib = string.rep, lock = c.Lock(),\n"
      "  nested = {{{1}}}, [3.5] = 'float key'}\n"
      "t.me = t\n"
      "return t";
  assert_int_equal(luaL_dostring(L, code), 0);
  assert_int_equal(cc__lencode(L, -1, 1, m, NULL, "sample"), LUA_OK);
  lua_settop(L, 0);
}

static void truncated_and_flipped_bytes_never_crash(void **state) {
  (void)state;
  cc_msg m = {0};
  sample(&m);
  assert_true(m.len > 100);
  assert_int_equal(m.nrefs, 1);
  assert_int_equal(try_decode(m.data, m.len, m.refs, m.nrefs), 0);
  /* Every truncation is refused. */
  for (size_t n = 0; n < m.len; n++)
    assert_int_equal(try_decode(m.data, n, m.refs, m.nrefs), 1);
  /* Every single bit flip decodes or is refused; none crashes. */
  char *copy = malloc(m.len);
  int refused = 0, decoded = 0;
  for (size_t i = 0; i < m.len; i++)
    for (int b = 0; b < 8; b++) {
      memcpy(copy, m.data, m.len);
      copy[i] ^= (char)(1 << b);
      if (try_decode(copy, m.len, m.refs, m.nrefs))
        refused++;
      else
        decoded++;
    }
  /* A flipped bit in the function's code or signature is always caught. */
  assert_true(refused > 0);
  print_message("%zu bytes: %d flips refused, %d decoded to another value\n", m.len,
                refused, decoded);
  /* References that do not name a live object are refused too. */
  uint32_t bogus = 12345;
  assert_int_equal(try_decode(m.data, m.len, &bogus, 0), 1);
  free(copy);
  cc_msg_unref(&m);
  cc_msg_free(&m);
  lua_gc(L, LUA_GCCOLLECT);
}

/* A plain value goes without a protected call both ways: it comes back as
 * it went, and its bad bytes are refused as any others. */
static void plain_values_round_trip_and_refuse_bad_bytes(void **state) {
  (void)state;
  const char *values[] = {"nil", "true", "false", "0", "-7", "math.maxinteger",
                          "math.mininteger", "2.5", "2.0", "''", "('x'):rep(300)"};
  for (size_t v = 0; v < sizeof values / sizeof *values; v++) {
    char code[64];
    snprintf(code, sizeof code, "return %s", values[v]);
    assert_int_equal(luaL_dostring(L, code), 0);
    cc_msg m = {0};
    assert_int_equal(cc__lencode(L, -1, 1, &m, NULL, "v"), LUA_OK);
    assert_int_equal(m.nrefs, 0);
    lua_pushcfunction(L, decode_fn);
    lua_pushlightuserdata(L, &m);
    assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
    assert_true(lua_rawequal(L, -1, -2) || (lua_isnil(L, -1) && lua_isnil(L, -2)));
    assert_int_equal(lua_type(L, -1), lua_type(L, -2));
    assert_int_equal(lua_isinteger(L, -1), lua_isinteger(L, -2));
    lua_settop(L, 0);
    for (size_t n = 0; n < m.len; n++)
      assert_int_equal(try_decode(m.data, n, NULL, 0), 1);
    char *copy = malloc(m.len);
    for (size_t i = 0; i < m.len; i++)
      for (int b = 0; b < 8; b++) {
        memcpy(copy, m.data, m.len);
        copy[i] ^= (char)(1 << b);
        try_decode(copy, m.len, NULL, 0);
      }
    free(copy);
    free(m.data);
    free(m.refs);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_new_type_travels_by_handle),
      cmocka_unit_test(truncated_and_flipped_bytes_never_crash),
      cmocka_unit_test(plain_values_round_trip_and_refuse_bad_bytes),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
