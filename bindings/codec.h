/* codec - Lua values to bytes and back, for queues, pipes, pools and managers */
#ifndef CONCUR_CODEC_H
#define CONCUR_CODEC_H

#include "concur/queue.h"

#include <lua.h>

/* Encodes the n values at idx.. into m (replacing what it held). Arena
 * objects go by handle: m->refs gets one new reference per object, which
 * the message owns. With fds NULL, a Connection is Unsendable; otherwise its
 * descriptor is added to fds. Returns LUA_OK, or an error status with the
 * error on the stack (Unsendable, with the path to the value: root names
 * the first value, "args", "item", ...), m left empty: the caller gives
 * back its buffers, then raises it. */
int cc__lencode(lua_State *L, int idx, int n, cc_msg *m, cc_fds *fds,
                const char *root);
/* Decodes m, pushing its values, and returns how many; m's refs are taken
 * over (each becomes a hold of this process, or is dropped). Bad bytes
 * return -1 with the error on the stack (ValueError "corrupt message:
 * ..."), for the caller to raise once its buffers are back; they never
 * crash. */
int cc__ldecode(lua_State *L, const cc_msg *m, const cc_fds *fds);

/* Decodes the message of len bytes at s, which holds one list, into the
 * table at target: its items go to target[off + 1 ...]. Raises ValueError
 * for bad bytes. */
int cc__ldecode_list_into(lua_State *L, const char *s, size_t len, int target,
                          lua_Integer off);

/* A message buffer of the calling thread's, its own until it is given back
 * (in every path, before raising): see the DESIGN note in codec.c. Raises
 * only for a lack of memory. */
cc_msg *cc__lmsg_take(lua_State *L);
void cc__lmsg_give(cc_msg *m);
/*
 * The send protocol. A type of userdata that travels says how when its
 * binding opens (cc__lcodec_register), as LuaLanes' deep userdata do: the
 * codec knows it by its metatable, not by its name. `encode` writes the
 * value at idx into the message with the cc__lput_* calls; `decode` reads
 * it back with the cc__lget_* calls and pushes it. A type whose values
 * arrive as something the codec knows (a view arrives as the list it
 * shows) has no decode, and writes that value. Arena objects need none of
 * this: they travel by handle, whatever their type; nor do Lua tables with
 * a __concur_encode metamethod (error objects, Manager proxies), whose
 * decoders are in the registry's "concur.codec.types".
 */
typedef struct cc_lenc cc_lenc;
typedef struct cc_ldec cc_ldec;
typedef struct cc_lsendable {
  const char *tname; /* the metatable's name */
  void (*encode)(cc_lenc *e, lua_State *L, int idx);
  void (*decode)(cc_ldec *d, lua_State *L); /* NULL: it arrives as what it writes */
} cc_lsendable;
/* Makes values of t's metatable (made already) travel with t's hooks (t
 * is kept); up to 16 types. */
void cc__lcodec_register(lua_State *L, const cc_lsendable *t);

void cc__lput_byte(cc_lenc *e, int b);
void cc__lput_varint(cc_lenc *e, uint64_t v);
/* The value at idx, whatever it is, as its i-th item (for Unsendable's
 * path to it). */
void cc__lput_item(cc_lenc *e, lua_Integer i, int idx);
/* A list of n items follows (then cc__lput_item each, then
 * cc__lput_list_end), standing for the value at idx; 0 when that value
 * was met before in the message and went as a reference (write nothing
 * more). */
int cc__lput_list(cc_lenc *e, int idx, lua_Integer n);
void cc__lput_list_end(cc_lenc *e);
/* A descriptor travels beside the message (its index, to write): raises
 * Unsendable when the message cannot carry descriptors (a Queue's). */
int cc__lput_fd(cc_lenc *e, int fd, const char *what);
/* Raises Unsendable: what cannot go, with where it is in the message. */
int cc__lunsendable(cc_lenc *e, const char *what);

int cc__lget_byte(cc_ldec *d);
uint64_t cc__lget_varint(cc_ldec *d);
/* The descriptor of index i that came with the message. */
int cc__lget_fd(cc_ldec *d, uint64_t i);
/* Raises ValueError "corrupt message: why". */
int cc__lcorrupt(cc_ldec *d, const char *why);

#endif
