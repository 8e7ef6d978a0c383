/* lyaml - concur.yaml: YAML documents as Lua values, for the host's tools */
#include "host.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

/* Plain scalars become numbers, booleans and nil as YAML 1.2's core schema
 * says; quoted ones stay strings. Each mapping and list gets a field
 * __marks = {key or index = "line:col"}, so that callers can point at the
 * place of a bad value. */
static void push_scalar(lua_State *L, const yaml_event_t *ev) {
  const char *s = (const char *)ev->data.scalar.value;
  size_t n = ev->data.scalar.length;
  if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
    if (!strcmp(s, "true") || !strcmp(s, "True")) {
      lua_pushboolean(L, 1);
      return;
    }
    if (!strcmp(s, "false") || !strcmp(s, "False")) {
      lua_pushboolean(L, 0);
      return;
    }
    if (!strcmp(s, "null") || !strcmp(s, "~") || n == 0) {
      lua_pushnil(L);
      return;
    }
    if (lua_stringtonumber(L, s))
      return;
  }
  lua_pushlstring(L, s, n);
}

typedef struct reader {
  yaml_parser_t p;
  FILE *f; /* NULL once closed */
  const char *path;
} reader;

static int parse_error(lua_State *L, reader *r) {
  return luaL_error(L, "%s:%d:%d: malformed YAML: %s", r->path,
                    (int)r->p.problem_mark.line + 1,
                    (int)r->p.problem_mark.column + 1,
                    r->p.problem ? r->p.problem : "?");
}

static void value(lua_State *L, reader *r, yaml_event_t *ev);

/* Reads the next node and pushes its value. */
static void node(lua_State *L, reader *r) {
  yaml_event_t ev;
  if (!yaml_parser_parse(&r->p, &ev))
    parse_error(L, r);
  value(L, r, &ev);
  yaml_event_delete(&ev);
}

static void value(lua_State *L, reader *r, yaml_event_t *ev) {
  luaL_checkstack(L, 8, "YAML nested too deeply");
  switch (ev->type) {
  case YAML_SCALAR_EVENT:
    push_scalar(L, ev);
    return;
  case YAML_SEQUENCE_START_EVENT: {
    lua_newtable(L);
    lua_newtable(L); /* marks of the items */
    int i = 0;
    for (;;) {
      yaml_event_t e;
      if (!yaml_parser_parse(&r->p, &e))
        parse_error(L, r);
      if (e.type == YAML_SEQUENCE_END_EVENT) {
        yaml_event_delete(&e);
        lua_setfield(L, -2, "__marks");
        return;
      }
      lua_pushfstring(L, "%d:%d", (int)e.start_mark.line + 1,
                      (int)e.start_mark.column + 1);
      lua_rawseti(L, -2, ++i);
      value(L, r, &e);
      yaml_event_delete(&e);
      lua_rawseti(L, -3, i);
    }
  }
  case YAML_MAPPING_START_EVENT: {
    lua_newtable(L);
    lua_newtable(L); /* marks of the keys */
    for (;;) {
      yaml_event_t k;
      if (!yaml_parser_parse(&r->p, &k))
        parse_error(L, r);
      if (k.type == YAML_MAPPING_END_EVENT) {
        yaml_event_delete(&k);
        lua_setfield(L, -2, "__marks");
        return;
      }
      int line = (int)k.start_mark.line + 1, col = (int)k.start_mark.column + 1;
      value(L, r, &k);
      yaml_event_delete(&k);
      if (lua_isnil(L, -1))
        luaL_error(L, "%s:%d:%d: a key may not be empty", r->path, line, col);
      lua_pushvalue(L, -1);
      lua_pushfstring(L, "%d:%d", line, col);
      lua_rawset(L, -4);
      node(L, r);
      lua_rawset(L, -4);
    }
  }
  case YAML_ALIAS_EVENT:
    luaL_error(L, "%s:%d: YAML aliases are not supported here", r->path,
               (int)ev->start_mark.line + 1);
    return;
  default:
    lua_pushnil(L);
    return;
  }
}

/* The reader lives in a userdata, so that an error raised anywhere in the
 * parse (a longjmp) still frees the parser and closes the file. */
static int reader_gc(lua_State *L) {
  reader *r = lua_touserdata(L, 1);
  if (r->f) {
    yaml_parser_delete(&r->p);
    fclose(r->f);
    r->f = NULL;
  }
  return 0;
}

/* load(path) -> value; mappings and lists carry __marks. */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  reader *r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  if (luaL_newmetatable(L, "concur.yaml.reader")) {
    lua_pushcfunction(L, reader_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return luaL_error(L, "%s: is a folder, not a batch file (give the path of a .yaml in it)",
                      path);
  FILE *f = fopen(path, "rb");
  if (!f)
    return luaL_error(L, "%s: cannot open: %s", path, strerror(errno));
  r->path = path;
  yaml_parser_initialize(&r->p);
  yaml_parser_set_input_file(&r->p, f);
  r->f = f;
  lua_pushnil(L);
  for (;;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&r->p, &ev))
      return parse_error(L, r);
    yaml_event_type_t t = ev.type;
    if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT ||
        t == YAML_MAPPING_START_EVENT) {
      lua_pop(L, 1);
      value(L, r, &ev);
    }
    yaml_event_delete(&ev);
    if (t == YAML_STREAM_END_EVENT || t == YAML_DOCUMENT_END_EVENT)
      break;
  }
  lua_pushcfunction(L, reader_gc);
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  return 1;
}

int host_open_yaml(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_load);
  lua_setfield(L, -2, "load");
  return 1;
}
