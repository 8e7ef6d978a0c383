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

/* A message buffer of the calling thread's, its own until it is given back
 * (in every path, before raising): see the DESIGN note in codec.c. Raises
 * only for a lack of memory. */
cc_msg *cc__lmsg_take(lua_State *L);
void cc__lmsg_give(cc_msg *m);
/* Hooks of the Connection type (lpipe.c) for the codec. */
int cc__lpipe_fd(lua_State *L, int idx, int *flags);
void cc__lpipe_wrap(lua_State *L, int fd, int flags);

#endif
