/* codec - Lua values to bytes and back, for queues, pipes, pools and managers */
#include "codec.h"
#include "sign.h"
#include "concur/arena.h"
#include "concur/error.h"
#include "concur/proctab.h"
#include "lconcur.h"

#include <lauxlib.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * DESIGN. A message is a version byte and then values, each a tag byte and
 * its body: integers as zigzag varints, floats as 8 raw bytes, strings with
 * a varint length, tables as their array part, then key/value pairs, then
 * END. The first time a table or function is met it gets the next id; met
 * again, it is a REF to that id, so shared references and cycles survive.
 * Lua functions travel as bytecode (with debug info, for tracebacks), signed
 * with the run's secret (SipHash-2-4), and their upvalues by value; _ENV is
 * rebound to the receiver's globals. C functions travel by their name in
 * package.loaded, and so do loaded modules (a function that uses `concur`
 * or `math` as an upvalue sends their names). Arena objects travel by handle (an index into the
 * message's refs), whatever their type, so a new primitive needs no codec
 * change. The decoder checks every length against what is left, and loads
 * bytecode only when its signature is right: bytes from outside the run
 * cannot crash it.
 */

enum {
  VERSION = 2,
  T_NIL = 0, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_REF, T_FUNC,
  T_CFUNC, T_OBJ, T_SENDABLE, T_CUSTOM, T_END, T_MODULE
};

#define MAX_DEPTH 200
#define UP_VALUE 0
#define UP_ENV 1


/* ---------------------------------------------------------------- encode */

/* Where the encoder is, for Unsendable messages: one segment per level,
 * recorded cheaply (an index, or the stack slot of the key) and spelled
 * out only when a message cannot be sent. */
enum { SEG_ROOT, SEG_ARG, SEG_INDEX, SEG_KEY, SEG_UPVALUE };
typedef struct seg {
  int kind;
  int key;         /* SEG_KEY: the stack slot holding the key */
  lua_Integer i;   /* SEG_ARG, SEG_INDEX */
  const char *name; /* SEG_UPVALUE */
} seg;

typedef struct cc_lenc {
  lua_State *L;
  cc_msg *m;
  cc_fds *fds;
  int seen;     /* stack index of {value = id} */
  int next_id;
  int depth;
  const char *root; /* what the whole message is called, for Unsendable */
  seg path[MAX_DEPTH + 2];
} enc;

/* Room for n more bytes; a message grows by doubling. */
static void grow(enc *e, size_t n) {
  cc_msg *m = e->m;
  size_t cap = m->cap ? m->cap : 256;
  while (cap < m->len + n)
    cap *= 2;
  char *d = realloc(m->data, cap);
  if (!d)
    luaL_error(e->L, "not enough memory to encode a message");
  m->data = d;
  m->cap = cap;
}

static inline unsigned char *reserve(enc *e, size_t n) {
  if (e->m->len + n > e->m->cap)
    grow(e, n);
  return (unsigned char *)e->m->data + e->m->len;
}

static inline void put(enc *e, const void *p, size_t n) {
  memcpy(reserve(e, n), p, n);
  e->m->len += n;
}

static inline void put_byte(enc *e, int b) {
  *reserve(e, 1) = (unsigned char)b;
  e->m->len++;
}

/* An integer: its tag, then zigzag as a varint (small of either sign stay
 * short). The commonest value in a message, so written in one go. */
static inline void put_int(enc *e, lua_Integer v) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  unsigned char *b = reserve(e, 11);
  int n = 0;
  b[n++] = T_INT;
  while (z >= 0x80) {
    b[n++] = (unsigned char)(z | 0x80);
    z >>= 7;
  }
  b[n++] = (unsigned char)z;
  e->m->len += (size_t)n;
}

static void put_varint(enc *e, uint64_t v) {
  unsigned char b[10];
  int n = 0;
  do {
    b[n] = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v)
      b[n] |= 0x80;
    n++;
  } while (v);
  put(e, b, (size_t)n);
}

/* The path segment at level i: .name, [1], ["a b"], [?], <upvalue x>. */
static void add_segment(enc *e, luaL_Buffer *b, const seg *g) {
  lua_State *L = e->L;
  char s[64];
  switch (g->kind) {
  case SEG_ROOT:
    luaL_addstring(b, e->root);
    return;
  case SEG_ARG:
    snprintf(s, sizeof s, "%.30s[%lld]", e->root, (long long)g->i);
    break;
  case SEG_INDEX:
    snprintf(s, sizeof s, "[%lld]", (long long)g->i);
    break;
  case SEG_UPVALUE:
    snprintf(s, sizeof s, "<upvalue %.30s>", g->name && *g->name ? g->name : "?");
    break;
  default:
    if (lua_type(L, g->key) == LUA_TSTRING) {
      const char *k = lua_tostring(L, g->key);
      int ident = (k[0] == '_' || (k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z'));
      for (const char *c = k; ident && *c; c++)
        ident = *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                (*c >= '0' && *c <= '9');
      snprintf(s, sizeof s, ident ? ".%.40s" : "[\"%.36s\"]", k);
    } else if (lua_isinteger(L, g->key)) {
      snprintf(s, sizeof s, "[%lld]", (long long)lua_tointeger(L, g->key));
    } else {
      snprintf(s, sizeof s, "[%s]", luaL_typename(L, g->key));
    }
  }
  luaL_addstring(b, s);
}

static int unsendable(enc *e, const char *what) {
  luaL_Buffer b;
  luaL_buffinit(e->L, &b);
  /* A deep path is cut in its middle: its start and its end say where. */
  for (int i = 0; i <= e->depth; i++) {
    if (e->depth > 12 && i == 4) {
      char gap[48];
      snprintf(gap, sizeof gap, ".<%d levels>", e->depth - 7);
      luaL_addstring(&b, gap);
      i = e->depth - 3;
    }
    add_segment(e, &b, &e->path[i]);
  }
  luaL_pushresult(&b);
  return cc__lraise_code(e->L, CC_EUNSENDABLE, "%s: %s", lua_tostring(e->L, -1), what);
}

/* A length written after what it counts: the slot of VARINT_SLOT bytes
 * left at `at` gets the varint, and what follows moves up to it. */
#define VARINT_SLOT 5

static void fill_slot(enc *e, size_t at, uint64_t v) {
  unsigned char b[VARINT_SLOT];
  int n = 0;
  while (v >= 0x80) {
    b[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  b[n++] = (unsigned char)v;
  char *d = e->m->data;
  memmove(d + at + n, d + at + VARINT_SLOT, e->m->len - at - VARINT_SLOT);
  memcpy(d + at, b, (size_t)n);
  e->m->len -= (size_t)(VARINT_SLOT - n);
}

static void encode(enc *e, int idx);

/* Tables and functions already met are sent as a REF to their id, and
 * loaded modules (package.loaded[name] == the table: string, math, concur,
 * ...) by name. One table maps both, made at the first table or function
 * (plain values need none) from package.loaded: one pass per message, and
 * one look-up per table in it. */
static int seen_before(enc *e, int idx) {
  lua_State *L = e->L;
  if (!e->seen) {
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -1) == LUA_TTABLE && lua_type(L, -2) == LUA_TSTRING) {
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -5) == LUA_TNIL) { /* the first name found */
          lua_pushvalue(L, -2);
          lua_pushvalue(L, -4);
          lua_rawset(L, -7);
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_replace(L, 2); /* the slot encode_all keeps for it */
    e->seen = 2;
  }
  lua_pushvalue(L, idx);
  int kind = lua_rawget(L, e->seen);
  if (kind == LUA_TNUMBER) {
    put_byte(e, T_REF);
    put_varint(e, (uint64_t)lua_tointeger(L, -1));
    lua_pop(L, 1);
    return 1;
  }
  if (kind == LUA_TSTRING) {
    size_t n;
    const char *mod = lua_tolstring(L, -1, &n);
    put_byte(e, T_MODULE);
    put_varint(e, n);
    put(e, mod, n);
    lua_pop(L, 1);
    return 1;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, e->next_id++);
  lua_rawset(L, e->seen);
  return 0;
}

static void encode_table(enc *e, int idx) {
  lua_State *L = e->L;
  if (seen_before(e, idx)) /* or a module */
    return;
  if (lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    if (luaL_getmetafield(L, idx, "__concur_encode") != LUA_TNIL) {
      /* A type that says how to send itself: name and state. */
      lua_pushvalue(L, idx);
      lua_call(L, 1, 2);
      put_byte(e, T_CUSTOM);
      size_t n;
      const char *name = luaL_checklstring(L, -2, &n);
      put_varint(e, n);
      put(e, name, n);
      encode(e, lua_gettop(L));
      lua_pop(L, 2);
      return;
    }
    /* Its fields would travel and its class would not: refused rather
     * than arriving as another thing. */
    unsendable(e, "a table with a metatable (its class does not travel: send a plain table, "
                  "or give the metatable __concur_encode)");
  }
  /* One pass of lua_next: the keys 1, 2, 3... that come first (Lua's
   * array part, in order) are the list, sent without their keys; the rest
   * go as pairs. The list's length goes before it, in a slot of the
   * longest varint, made as short as it needs once the table is done. */
  put_byte(e, T_TABLE);
  size_t slot = e->m->len;
  reserve(e, VARINT_SLOT);
  e->m->len += VARINT_SLOT;
  lua_Integer narr = 0;
  int listing = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (listing && lua_isinteger(L, -2) && lua_tointeger(L, -2) == narr + 1) {
      narr++;
      if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1)) {
        put_int(e, lua_tointeger(L, -1)); /* the common case, without the path */
      } else {
        e->path[e->depth + 1] = (seg){.kind = SEG_INDEX, .i = narr};
        e->depth++;
        encode(e, lua_gettop(L));
        e->depth--;
      }
      lua_pop(L, 1);
      continue;
    }
    listing = 0;
    e->path[e->depth + 1] = (seg){.kind = SEG_KEY, .key = lua_gettop(L) - 1};
    e->depth++;
    encode(e, lua_gettop(L) - 1);
    encode(e, lua_gettop(L));
    e->depth--;
    lua_pop(L, 1);
  }
  put_byte(e, T_END);
  fill_slot(e, slot, (uint64_t)narr);
}

/* As lstrlib.c's str_dump: the buffer starts inside the writer, once
 * lua_dump has taken the function from the top of the stack. */
typedef struct dump_state {
  int init;
  luaL_Buffer b;
} dump_state;

static int writer(lua_State *L, const void *p, size_t n, void *ud) {
  dump_state *st = ud;
  if (!st->init) {
    st->init = 1;
    luaL_buffinit(L, &st->b);
  }
  luaL_addlstring(&st->b, p, n);
  return 0;
}

/* The name of a library C function, from a table built once per state. */
static const char *cfunc_name(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_getfield(L, LUA_REGISTRYINDEX, "concur.codec.cnames") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_istable(L, -1) && lua_type(L, -2) == LUA_TSTRING) {
        const char *lib = lua_tostring(L, -2);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
          if (lua_iscfunction(L, -1) && lua_type(L, -2) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -7) == LUA_TNIL) {
              lua_pop(L, 1);
              lua_pushvalue(L, -1);
              lua_pushfstring(L, "%s.%s", lib, lua_tostring(L, -3));
              lua_rawset(L, -8);
            } else {
              lua_pop(L, 1);
            }
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "concur.codec.cnames");
  }
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  const char *name = lua_tostring(L, -1);
  lua_pop(L, 2); /* the name stays alive in the registry's table */
  return name;
}

static void encode_function(enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_iscfunction(L, idx)) {
    const char *name = cfunc_name(L, idx);
    if (!name)
      unsendable(e, "a C function that is not in a loaded library");
    put_byte(e, T_CFUNC);
    size_t n = strlen(name);
    put_varint(e, n);
    put(e, name, n);
    return;
  }
  if (seen_before(e, idx))
    return;
  int fn = lua_absindex(L, idx);
  dump_state st = {0};
  lua_pushvalue(L, idx);
  lua_dump(L, writer, &st, 0);
  if (!st.init)
    unsendable(e, "a function that cannot be dumped");
  luaL_pushresult(&st.b);
  size_t n;
  const char *code = lua_tolstring(L, -1, &n);
  put_byte(e, T_FUNC);
  put_varint(e, n);
  put(e, code, n);
  uint64_t tag = cc__lsign(code, n);
  put(e, &tag, sizeof tag);
  lua_pop(L, 2);
  int nups = 0;
  while (lua_getupvalue(L, fn, nups + 1)) {
    lua_pop(L, 1);
    nups++;
  }
  put_varint(e, (uint64_t)nups);
  for (int i = 1; i <= nups; i++) {
    const char *name = lua_getupvalue(L, fn, i);
    if (name && strcmp(name, "_ENV") == 0) {
      put_byte(e, UP_ENV);
    } else {
      put_byte(e, UP_VALUE);
      e->path[e->depth + 1] = (seg){.kind = SEG_UPVALUE, .name = name};
      e->depth++;
      encode(e, lua_gettop(L));
      e->depth--;
    }
    lua_pop(L, 1);
  }
}

/* The send protocol's types, by their wire number (their index here):
 * registered when the module opens, before any fork or thread, in the same
 * order in every process. */
#define SENDABLES_MAX 16
static const cc_lsendable *sendables[SENDABLES_MAX];
static int nsendables;
#define SENDABLE_KEY "__concur_sendable"

void cc__lcodec_register(lua_State *L, const cc_lsendable *t) {
  int id = 0;
  while (id < nsendables && sendables[id] != t)
    id++;
  if (id == nsendables) {
    if (nsendables == SENDABLES_MAX)
      luaL_error(L, "more than %d types of userdata that travel", SENDABLES_MAX);
    sendables[nsendables++] = t;
  }
  luaL_getmetatable(L, t->tname);
  lua_pushinteger(L, id);
  lua_setfield(L, -2, SENDABLE_KEY);
  lua_pop(L, 1);
}

void cc__lput_byte(cc_lenc *e, int b) { put_byte(e, b); }
void cc__lput_varint(cc_lenc *e, uint64_t v) { put_varint(e, v); }
int cc__lunsendable(cc_lenc *e, const char *what) { return unsendable(e, what); }

void cc__lput_item(cc_lenc *e, lua_Integer i, int idx) {
  lua_State *L = e->L;
  if (lua_type(L, idx) == LUA_TNUMBER && lua_isinteger(L, idx)) {
    put_int(e, lua_tointeger(L, idx));
    return;
  }
  e->path[e->depth + 1] = (seg){.kind = SEG_INDEX, .i = i};
  e->depth++;
  encode(e, lua_absindex(L, idx));
  e->depth--;
}

int cc__lput_list(cc_lenc *e, int idx, lua_Integer n) {
  if (seen_before(e, idx)) /* it takes an id, as the table it becomes */
    return 0;
  put_byte(e, T_TABLE);
  put_varint(e, (uint64_t)n);
  return 1;
}

void cc__lput_list_end(cc_lenc *e) { put_byte(e, T_END); }

int cc__lput_fd(cc_lenc *e, int fd, const char *what) {
  if (!e->fds) {
    char why[96];
    snprintf(why, sizeof why, "a %s travels through a Pipe, not through a Queue", what);
    unsendable(e, why);
  }
  if (e->fds->n >= (int)(sizeof e->fds->fd / sizeof *e->fds->fd))
    unsendable(e, "more than 16 descriptors in one message");
  e->fds->fd[e->fds->n] = fd;
  return e->fds->n++;
}

static void encode_userdata(enc *e, int idx) {
  lua_State *L = e->L;
  cc_obj *o = cc__ltest_obj(L, idx, NULL);
  if (o) {
    uint32_t off = cc_arena_off(o);
    uint32_t i = 0;
    while (i < e->m->nrefs && e->m->refs[i] != off)
      i++;
    if (i == e->m->nrefs) {
      if (e->m->nrefs == e->m->refcap) {
        uint32_t cap = e->m->refcap ? e->m->refcap * 2 : 8;
        uint32_t *r = realloc(e->m->refs, cap * sizeof *r);
        if (!r)
          luaL_error(L, "not enough memory to encode a message");
        e->m->refs = r;
        e->m->refcap = cap;
      }
      cc_obj_ref(o); /* the message's own reference */
      e->m->refs[e->m->nrefs++] = off;
    }
    put_byte(e, T_OBJ);
    put_varint(e, i);
    return;
  }
  if (luaL_getmetafield(L, idx, SENDABLE_KEY) == LUA_TNUMBER) {
    lua_Integer id = lua_tointeger(L, -1);
    lua_pop(L, 1);
    /* The metatable itself is checked: a copy of its fields on another
     * userdata must not make that one pass for this type. */
    if (id >= 0 && id < nsendables && luaL_testudata(L, idx, sendables[id]->tname)) {
      const cc_lsendable *t = sendables[id];
      if (t->decode) {
        put_byte(e, T_SENDABLE);
        put_varint(e, (uint64_t)id);
      }
      t->encode(e, L, lua_absindex(L, idx));
      return;
    }
  }
  if (luaL_getmetafield(L, idx, "__concur_encode") != LUA_TNIL) {
    lua_pop(L, 1);
    encode_table(e, idx);
    return;
  }
  const char *tn = luaL_getmetafield(L, idx, "__name") == LUA_TSTRING
                       ? lua_tostring(L, -1) : NULL;
  char what[96];
  snprintf(what, sizeof what, "userdata%s%.60s", tn ? " " : "", tn ? tn : "");
  unsendable(e, what);
}

static void encode(enc *e, int idx) {
  lua_State *L = e->L;
  if (e->depth >= MAX_DEPTH)
    unsendable(e, "nested too deeply (more than 200 levels)");
  int type = lua_type(L, idx);
  if (type >= LUA_TTABLE) /* what nests, or pushes as it goes */
    luaL_checkstack(L, 8, "message nested too deeply");
  switch (type) {
  case LUA_TNIL:
    put_byte(e, T_NIL);
    return;
  case LUA_TBOOLEAN:
    put_byte(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    return;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      put_int(e, lua_tointeger(L, idx));
    } else {
      double d = lua_tonumber(L, idx);
      put_byte(e, T_FLOAT);
      put(e, &d, sizeof d);
    }
    return;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    put_byte(e, T_STR);
    put_varint(e, n);
    put(e, s, n);
    return;
  }
  case LUA_TTABLE:
    encode_table(e, idx);
    return;
  case LUA_TFUNCTION:
    encode_function(e, idx);
    return;
  case LUA_TUSERDATA:
    encode_userdata(e, idx);
    return;
  case LUA_TLIGHTUSERDATA:
    unsendable(e, "light userdata");
    return;
  default:
    unsendable(e, luaL_typename(L, idx));
  }
}

/* encode_all(enc, n, values...), in a protected call; slot 2 (n) becomes
 * the table of what was seen, when there is one. */
static int encode_all(lua_State *L) {
  enc *e = lua_touserdata(L, 1);
  int first = 3, n = (int)lua_tointeger(L, 2);
  e->L = L;
  e->seen = 0;
  put_byte(e, VERSION);
  put_varint(e, (uint64_t)n);
  for (int i = 0; i < n; i++) {
    if (n > 1)
      e->path[0] = (seg){.kind = SEG_ARG, .i = i + 1};
    encode(e, first + i);
  }
  return 0;
}

int cc__lencode(lua_State *L, int idx, int n, cc_msg *m, cc_fds *fds,
                const char *root) {
  idx = lua_absindex(L, idx);
  m->len = 0;
  m->nrefs = 0;
  if (fds)
    fds->n = 0;
  /* One plain value (the commonest message: a number, a string) cannot
   * fail but for memory, and needs no protected call, nor a path. */
  int type = lua_type(L, idx);
  if (n == 1 && type <= LUA_TSTRING && type != LUA_TLIGHTUSERDATA) {
    enc e;
    e.L = L;
    e.m = m;
    e.depth = 0;
    put_byte(&e, VERSION);
    put_byte(&e, 1);
    encode(&e, idx);
    return LUA_OK;
  }
  /* The encoder's state is big (the path): one is kept for reuse. Threads:
   * `busy` is read and set with the GIL held, and a call that finds it set
   * (a nested encode from a __concur_encode, or another thread's while a
   * finalizer in this one let go of the GIL) makes its own. */
  static enc cached;
  static int busy;
  enc *e = busy ? malloc(sizeof *e) : &cached;
  if (!e)
    luaL_error(L, "not enough memory to encode a message");
  int mine = e == &cached;
  busy |= mine;
  e->m = m;
  e->fds = fds;
  e->next_id = 0;
  e->depth = 0;
  e->root = root;
  e->path[0] = (seg){.kind = SEG_ROOT};
  luaL_checkstack(L, n + 4, "too many values to encode");
  lua_pushcfunction(L, encode_all);
  lua_pushlightuserdata(L, e);
  lua_pushinteger(L, n);
  for (int i = 0; i < n; i++)
    lua_pushvalue(L, idx + i);
  int st = lua_pcall(L, n + 2, 0, 0);
  if (mine)
    busy = 0;
  else
    free(e);
  if (st != LUA_OK) {
    cc_msg_unref(m);
    m->len = 0;
  }
  return st;
}

/* ------------------------------------------------------- message buffers */

/*
 * DESIGN. A call that sends or receives takes its buffers for its own
 * length and gives them back before it returns or raises, so that nothing
 * of one call sits in a buffer another thread can take while this one
 * waits (a put that blocks lets go of the GIL). Each thread keeps the
 * buffers given back for reuse, so that a call allocates nothing once they
 * have grown to its messages' size; a call that finds none free (a nested
 * one, from a __concur_encode or a finalizer) makes another. A buffer over
 * KEEP_BYTES, or beyond KEEP_BUFFERS free ones, is freed when given back.
 * A memory error raised while a buffer is out leaves it out until the
 * thread ends, when every buffer of the thread is freed.
 */
#define KEEP_BUFFERS 4
#define KEEP_BYTES ((size_t)256 << 10)

typedef struct buf {
  cc_msg m; /* first: a cc_msg * is its buf * */
  struct buf *next, *prev;
  int out;
} buf;

static _Thread_local buf *bufs; /* this thread's, out or free */
static _Thread_local int nfree;
static pthread_key_t bufs_key;                      /* threads: made once (pthread_once) */
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT; /* and then only read */

static void buf_free(buf *b) {
  if (b->prev)
    b->prev->next = b->next;
  else
    bufs = b->next;
  if (b->next)
    b->next->prev = b->prev;
  cc_msg_free(&b->m);
  free(b);
}

/* pthread's key destructor: a thread's buffers go with it. */
static void bufs_end(void *unused) {
  (void)unused;
  while (bufs)
    buf_free(bufs);
  nfree = 0;
}

static void bufs_key_make(void) { pthread_key_create(&bufs_key, bufs_end); }

cc_msg *cc__lmsg_take(lua_State *L) {
  buf *b = bufs;
  if (nfree > 0)
    while (b->out)
      b = b->next;
  else {
    b = calloc(1, sizeof *b);
    if (!b)
      luaL_error(L, "not enough memory for a message");
    pthread_once(&bufs_once, bufs_key_make);
    pthread_setspecific(bufs_key, b); /* non-NULL: the destructor will run */
    b->next = bufs;
    if (bufs)
      bufs->prev = b;
    bufs = b;
    nfree++;
  }
  b->out = 1;
  nfree--;
  return &b->m;
}

void cc__lmsg_give(cc_msg *m) {
  buf *b = (buf *)m;
  b->out = 0;
  m->len = 0;
  m->nrefs = 0;
  if (nfree == KEEP_BUFFERS || m->cap > KEEP_BYTES)
    buf_free(b);
  else
    nfree++;
}

/* ---------------------------------------------------------------- decode */

typedef struct cc_ldec {
  lua_State *L;
  const unsigned char *p, *start, *end;
  const cc_msg *m;
  const cc_fds *fds;
  uint8_t *adopted; /* per ref: wrapped already */
  int refs;         /* stack index of {id = value} */
  int next_id;
  int depth;
} dec;

static int corrupt(dec *d, const char *why) {
  return cc__lraise_code(d->L, CC_EVALUE, "corrupt message: %s (at byte %d)", why,
                    (int)(d->p - d->start));
}

int cc__lcorrupt(cc_ldec *d, const char *why) { return corrupt(d, why); }

static int get_byte(dec *d) {
  if (d->p >= d->end)
    corrupt(d, "it ends too soon");
  return *d->p++;
}

static uint64_t get_varint(dec *d) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    int b = get_byte(d);
    if (shift == 63 && (b & 0x7e))
      corrupt(d, "a number is too large");
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return v;
  }
  corrupt(d, "a number is too long");
  return 0;
}

int cc__lget_byte(cc_ldec *d) { return get_byte(d); }
uint64_t cc__lget_varint(cc_ldec *d) { return get_varint(d); }

int cc__lget_fd(cc_ldec *d, uint64_t i) {
  if (!d->fds || i >= (uint64_t)d->fds->n)
    corrupt(d, "a descriptor that did not come with the message");
  return d->fds->fd[i];
}

static size_t get_len(dec *d) {
  uint64_t n = get_varint(d);
  if (n > (uint64_t)(d->end - d->p))
    corrupt(d, "a length runs past the end");
  return (size_t)n;
}

static void decode(dec *d);

static void remember(dec *d) {
  if (!d->refs) {
    lua_newtable(d->L);
    lua_replace(d->L, 2); /* the slot decode_all keeps for it */
    d->refs = 2;
  }
  lua_pushvalue(d->L, -1);
  lua_rawseti(d->L, d->refs, d->next_id++);
}

/* The list part of a table: narr items into t[off + 1 ...]. */
static void decode_items(dec *d, int t, lua_Integer off, size_t narr) {
  lua_State *L = d->L;
  for (size_t i = 1; i <= narr; i++) {
    if (d->p < d->end && *d->p == T_INT) { /* the common case, inline */
      d->p++;
      uint64_t z = get_varint(d);
      lua_pushinteger(L, (lua_Integer)((z >> 1) ^ (~(z & 1) + 1)));
    } else {
      decode(d);
    }
    lua_rawseti(L, t, off + (lua_Integer)i);
  }
}

/* True, past it, at the end of a table's pairs. */
static int table_end(dec *d) {
  if (d->p < d->end && *d->p == T_END) {
    d->p++;
    return 1;
  }
  return 0;
}

/* A table, made here or (premade, a stack index) by the caller. */
static void decode_table_in(dec *d, int premade) {
  lua_State *L = d->L;
  /* Each item takes at least one byte, so the message's size bounds the
   * table made for it. */
  size_t narr = get_len(d);
  if (narr > INT_MAX)
    corrupt(d, "a table is too long");
  if (premade)
    lua_pushvalue(L, premade);
  else
    lua_createtable(L, (int)narr, 0);
  remember(d);
  int t = lua_gettop(L);
  decode_items(d, t, 0, narr);
  while (!table_end(d)) {
    decode(d);
    if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1)))
      corrupt(d, "a table key is nil or NaN");
    decode(d);
    lua_rawset(L, t);
  }
}

static void decode_table(dec *d) { decode_table_in(d, 0); }

/* What stands for a value of a class with __from_state while its state is
 * decoded: met there, the value refers to itself, which cannot be made. */
static const char placeholder = 0; /* only its address is used */

static void decode_function(dec *d) {
  lua_State *L = d->L;
  size_t n = get_len(d);
  const unsigned char *code = d->p;
  d->p += n;
  if ((size_t)(d->end - d->p) < 8)
    corrupt(d, "a function's signature is missing");
  uint64_t tag;
  memcpy(&tag, d->p, 8);
  d->p += 8;
  if (tag != cc__lsign(code, n))
    corrupt(d, "a function does not come from this run (bad signature)");
  if (luaL_loadbufferx(L, (const char *)code, n, "=message", "b") != LUA_OK)
    corrupt(d, lua_tostring(L, -1));
  remember(d);
  int fn = lua_gettop(L);
  uint64_t nups = get_varint(d);
  for (uint64_t i = 1; i <= nups; i++) {
    int kind = get_byte(d);
    if (kind == UP_ENV)
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    else if (kind == UP_VALUE)
      decode(d);
    else
      corrupt(d, "an unknown upvalue kind");
    if (!lua_setupvalue(L, fn, (int)i))
      corrupt(d, "more upvalues than the function has");
  }
}

static void decode_obj(dec *d) {
  uint64_t i = get_varint(d);
  if (i >= d->m->nrefs)
    corrupt(d, "an object index is out of range");
  cc_obj *o = cc_obj_from_off(d->m->refs[i]);
  if (!o)
    corrupt(d, "an object reference is not a live object");
  /* The message's reference becomes the first wrapper's hold (marked first:
   * cc__lpush_obj drops it itself if it fails). */
  int adopt = !d->adopted[i];
  d->adopted[i] = 1;
  cc__lpush_obj(d->L, o, adopt);
}

static void decode_named(dec *d, int custom) {
  lua_State *L = d->L;
  size_t n = get_len(d);
  lua_pushlstring(L, (const char *)d->p, n);
  d->p += n;
  const char *name = lua_tostring(L, -1);
  if (custom) {
    /* The encoder numbered the value before its state: its number is
     * taken first, and the value made from the state goes there, so that
     * references to it (and to what follows) are right. */
    lua_getfield(L, LUA_REGISTRYINDEX, "concur.codec.types");
    int kind = lua_istable(L, -1) ? lua_getfield(L, -1, name) : LUA_TNIL;
    if (kind != LUA_TFUNCTION && kind != LUA_TTABLE)
      cc__lraise_code(L, CC_EVALUE, "a message holds a value of class '%s', which this process "
                      "has not made: make it (concur.class) before this process starts, or "
                      "in it before it receives one", name);
    if (kind == LUA_TTABLE) {
      /* A class whose instances are their fields: the instance is made
       * first, so that what refers to it inside arrives as itself. */
      if (++d->depth > MAX_DEPTH + 1)
        corrupt(d, "nested too deeply");
      if (get_byte(d) != T_TABLE)
        corrupt(d, "the fields of a class's value are not a table");
      lua_newtable(L);
      remember(d);
      decode_table_in(d, lua_gettop(L));
      lua_pop(L, 1);
      d->depth--;
      lua_pushvalue(L, -2);
      lua_setmetatable(L, -2);
    } else {
      lua_pushvalue(L, -1);
      lua_pushlightuserdata(L, (void *)&placeholder);
      remember(d);
      lua_pop(L, 1);
      int id = d->next_id - 1;
      decode(d);
      lua_call(L, 1, 1);
      lua_pushvalue(L, -1);
      lua_rawseti(L, d->refs, id);
    }
    /* name, types, maker or class, the value */
    lua_replace(L, -4);
    lua_pop(L, 2);
    return;
  }
  const char *dot = strrchr(name, '.');
  if (!dot)
    corrupt(d, "a library function name without a library");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, (size_t)(dot - name));
  if (lua_rawget(L, -2) != LUA_TTABLE || lua_getfield(L, -1, dot + 1) != LUA_TFUNCTION)
    cc__lraise_code(L, CC_EVALUE, "the function %s is not loaded in this process", name);
  lua_replace(L, -4);
  lua_pop(L, 2);
}

static void decode(dec *d) {
  lua_State *L = d->L;
  if (++d->depth > MAX_DEPTH + 1)
    corrupt(d, "nested too deeply");
  luaL_checkstack(L, 8, "message nested too deeply");
  int t = get_byte(d);
  switch (t) {
  case T_NIL:
    lua_pushnil(L);
    break;
  case T_FALSE:
  case T_TRUE:
    lua_pushboolean(L, t == T_TRUE);
    break;
  case T_INT: {
    uint64_t z = get_varint(d);
    lua_pushinteger(L, (lua_Integer)((z >> 1) ^ (~(z & 1) + 1)));
    break;
  }
  case T_FLOAT: {
    double v;
    if (d->end - d->p < 8)
      corrupt(d, "a float is cut short");
    memcpy(&v, d->p, 8);
    d->p += 8;
    lua_pushnumber(L, v);
    break;
  }
  case T_STR: {
    size_t n = get_len(d);
    lua_pushlstring(L, (const char *)d->p, n);
    d->p += n;
    break;
  }
  case T_TABLE:
    decode_table(d);
    break;
  case T_REF: {
    uint64_t id = get_varint(d);
    if (id >= (uint64_t)d->next_id || !d->refs)
      corrupt(d, "a reference to nothing met before");
    lua_rawgeti(L, d->refs, (lua_Integer)id);
    if (lua_touserdata(L, -1) == &placeholder)
      cc__lraise_code(L, CC_EVALUE, "a message holds a value that refers to itself through the "
                      "state its class's __state gives, which its __from_state cannot make: "
                      "leave the reference out of the state, or the two methods out of the class");
    break;
  }
  case T_FUNC:
    decode_function(d);
    break;
  case T_CFUNC:
    decode_named(d, 0);
    break;
  case T_OBJ:
    decode_obj(d);
    break;
  case T_SENDABLE: {
    uint64_t id = get_varint(d);
    if (id >= (uint64_t)nsendables || !sendables[id]->decode)
      corrupt(d, "a value of an unknown type");
    sendables[id]->decode(d, L);
    break;
  }
  case T_CUSTOM:
    decode_named(d, 1);
    break;
  case T_MODULE: {
    size_t n = get_len(d);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushlstring(L, (const char *)d->p, n);
    d->p += n;
    if (lua_rawget(L, -2) != LUA_TTABLE)
      cc__lraise_code(L, CC_EVALUE, "the module %s is not loaded in this process",
                 lua_tostring(L, -1));
    lua_remove(L, -2);
    break;
  }
  default:
    corrupt(d, "an unknown tag");
  }
  d->depth--;
}

/* decode_all(dec): slot 2 becomes the table of tables and functions met,
 * when there is one. */
static int decode_all(lua_State *L) {
  dec *d = lua_touserdata(L, 1);
  d->L = L;
  lua_settop(L, 2);
  d->refs = 0;
  if (get_byte(d) != VERSION)
    corrupt(d, "an unknown version");
  uint64_t n = get_varint(d);
  if (n > (uint64_t)(d->end - d->p))
    corrupt(d, "more values than bytes");
  luaL_checkstack(L, (int)n + 4, "too many values in a message");
  for (uint64_t i = 0; i < n; i++)
    decode(d);
  if (d->p != d->end)
    corrupt(d, "bytes after the last value");
  return (int)n;
}

/* A varint at *p, without raising: false when the bytes are not one. */
static int plain_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    int b = *(*p)++;
    if (shift == 63 && (b & 0x7e))
      return 0;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return 1;
  }
  return 0;
}

/* One plain value (nil, boolean, number, string) that fills the bytes from
 * p to end, pushed; false, pushing nothing, when they are anything else or
 * malformed (the protected path says why). */
static int decode_plain(lua_State *L, const unsigned char *p, const unsigned char *end) {
  uint64_t v;
  switch (*p++) {
  case T_NIL:
    if (p != end)
      return 0;
    lua_pushnil(L);
    return 1;
  case T_FALSE:
  case T_TRUE:
    if (p != end)
      return 0;
    lua_pushboolean(L, p[-1] == T_TRUE);
    return 1;
  case T_INT:
    if (!plain_varint(&p, end, &v) || p != end)
      return 0;
    lua_pushinteger(L, (lua_Integer)((v >> 1) ^ (~(v & 1) + 1)));
    return 1;
  case T_FLOAT: {
    double d;
    if (end - p != 8)
      return 0;
    memcpy(&d, p, 8);
    lua_pushnumber(L, d);
    return 1;
  }
  case T_STR:
    if (!plain_varint(&p, end, &v) || v != (uint64_t)(end - p))
      return 0;
    lua_pushlstring(L, (const char *)p, (size_t)v);
    return 1;
  default:
    return 0;
  }
}

int cc__ldecode(lua_State *L, const cc_msg *m, const cc_fds *fds) {
  /* One plain value, as cc__lencode writes it: no references to take over,
   * nothing to clean up, so no protected call. */
  const unsigned char *b = (const unsigned char *)m->data;
  if (m->nrefs == 0 && m->len >= 3 && b[0] == VERSION && b[1] == 1) {
    luaL_checkstack(L, 4, "no room to decode a message");
    if (decode_plain(L, b + 2, b + m->len))
      return 1;
  }
  int base = lua_gettop(L);
  uint8_t small[64];
  uint8_t *adopted = m->nrefs <= sizeof small ? small : malloc(m->nrefs);
  if (!adopted) {
    lua_pushliteral(L, "not enough memory to decode a message");
    return -1;
  }
  memset(adopted, 0, m->nrefs);
  dec d = {.start = (const unsigned char *)m->data, .m = m, .fds = fds,
           .adopted = adopted};
  d.p = d.start;
  d.end = d.p + m->len;
  lua_pushcfunction(L, decode_all);
  lua_pushlightuserdata(L, &d);
  int st = lua_pcall(L, 1, LUA_MULTRET, 0);
  /* References no wrapper took over are dropped: nothing leaks. */
  for (uint32_t i = 0; i < m->nrefs; i++)
    if (!adopted[i]) {
      cc_obj *o = cc_obj_from_off(m->refs[i]);
      if (o)
        cc_obj_unref(o);
    }
  if (adopted != small)
    free(adopted);
  if (st != LUA_OK)
    return -1;
  return lua_gettop(L) - base;
}

/* ------------------------------------------------------- lists in place */

/* unpack_all(dec, refs slot, target, offset): the list in d put into
 * target[offset + i], in a protected call. */
static int unpack_all(lua_State *L) {
  dec *d = lua_touserdata(L, 1);
  d->L = L;
  d->refs = 0;
  lua_Integer off = lua_tointeger(L, 4);
  if (get_byte(d) != VERSION)
    corrupt(d, "an unknown version");
  if (get_varint(d) != 1 || get_byte(d) != T_TABLE)
    corrupt(d, "not one list");
  size_t narr = get_len(d);
  lua_pushvalue(L, 3);
  remember(d); /* the list is the target, for references to it */
  lua_pop(L, 1);
  decode_items(d, 3, off, narr);
  /* After a nil, the items go as pairs. */
  while (!table_end(d)) {
    decode(d);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
        lua_tointeger(L, -1) > LUA_MAXINTEGER - off)
      corrupt(d, "a list's key is not a position");
    lua_Integer k = lua_tointeger(L, -1);
    lua_pop(L, 1);
    decode(d);
    lua_rawseti(L, 3, off + k);
  }
  if (d->p != d->end)
    corrupt(d, "bytes after the list");
  return 0;
}

int cc__ldecode_list_into(lua_State *L, const char *s, size_t len, int target,
                          lua_Integer off) {
  target = lua_absindex(L, target);
  cc_msg m = {.data = (char *)s, .len = len};
  dec d = {.start = (const unsigned char *)s, .m = &m, .adopted = NULL};
  d.p = d.start;
  d.end = d.p + len;
  lua_pushcfunction(L, unpack_all);
  lua_pushlightuserdata(L, &d);
  lua_pushnil(L); /* the slot for references */
  lua_pushvalue(L, target);
  lua_pushinteger(L, off);
  lua_call(L, 4, 0);
  return 0;
}
