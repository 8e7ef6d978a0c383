/* lpipe - Lua binding of Pipe and its Connections (the transport is core/pipe.c) */
#include "codec.h"
#include "concur/error.h"
#include "concur/pipe.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

/* A Connection is a userdata holding its cc_conn, which the core keeps
 * safe between the process's threads (one receiver and one sender at a
 * time; a close while others wait makes them leave). Every call encodes
 * and decodes in buffers of its own (codec.h). */

#define CONN_MT CC_LCONN_MT

static cc_conn *check_conn(lua_State *L, int idx) {
  cc_conn *c = luaL_checkudata(L, idx, CONN_MT);
  if (!cc_conn_open(c))
    luaL_error(L, "attempt to use a closed Connection");
  return c;
}

static void push_conn(lua_State *L) {
  cc_conn *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->fd = -1;
  luaL_setmetatable(L, CONN_MT);
}

/* The send protocol: a Connection travels through a Pipe as its
 * descriptor (beside the message, SCM_RIGHTS) and which ways it goes. */
static void conn_encode(cc_lenc *e, lua_State *L, int idx) {
  cc_conn *c = lua_touserdata(L, idx);
  if (!cc_conn_open(c))
    cc__lunsendable(e, "a closed Connection");
  cc__lput_varint(e, (uint64_t)cc__lput_fd(e, c->fd, "Connection"));
  cc__lput_byte(e, c->flags & (CC_CONN_READ | CC_CONN_WRITE));
}

static void conn_decode(cc_ldec *d, lua_State *L) {
  int fd = cc__lget_fd(d, cc__lget_varint(d));
  int flags = cc__lget_byte(d);
  push_conn(L);
  cc_conn_init(lua_touserdata(L, -1), fd, flags & (CC_CONN_READ | CC_CONN_WRITE));
}

static const cc_lsendable conn_sendable = {CONN_MT, conn_encode, conn_decode};

/* concur.wait's, beside other kinds: readable, at its end or closed; what
 * waits to be sent goes when there is room. */
static int conn_ready(cc_lwatch *w, short revents) {
  cc_conn *c = w->p;
  if (revents & POLLOUT)
    cc_conn_try_flush(c);
  w->events = (short)(POLLIN | (c->wlen > c->woff ? POLLOUT : 0));
  int r = cc_conn_poll(c, 0);
  return r != CC_ETIMEDOUT && r != CC_EINTR;
}

static void conn_watch(lua_State *L, int idx, cc_lwatch *w) {
  cc_conn *c = check_conn(L, idx);
  w->p = c;
  w->ready = conn_ready;
  w->what = c->label;
  w->outside = !(c->flags & (CC_CONN_READ | CC_CONN_WRITE)); /* a Descriptor */
  w->events = (short)(POLLIN | (c->wlen > c->woff ? POLLOUT : 0));
  /* A copy: a close by another thread meanwhile cannot give the number to
   * another file under the poll. */
  w->fd = c->fd >= 0 ? fcntl(c->fd, F_DUPFD_CLOEXEC, 0) : -1;
}

static const cc_lwaitable conn_waitable = {"Connection", conn_watch};

/* Pipe([duplex=true]) or Pipe{duplex = b}, as Python's keyword -> a, b; one
 * way: a only receives, b only sends. */
static int l_pipe(lua_State *L) {
  if (lua_istable(L, 1)) {
    static const char *const known[] = {"duplex", NULL};
    cc__lcheck_fields(L, 1, "Pipe", 1, known);
    lua_getfield(L, 1, "duplex");
    lua_replace(L, 1);
  }
  luaL_argcheck(L, lua_gettop(L) <= 1, 2, "Pipe takes one argument, duplex (a boolean)");
  if (!lua_isnoneornil(L, 1) && !lua_isboolean(L, 1))
    luaL_argerror(L, 1, lua_pushfstring(L, "duplex must be a boolean, not %s",
                                        luaL_typename(L, 1)));
  int duplex = lua_isnoneornil(L, 1) || lua_toboolean(L, 1);
  push_conn(L);
  push_conn(L);
  if (cc_pipe_new(lua_touserdata(L, -2), lua_touserdata(L, -1), duplex))
    return cc__lraise_code(L, CC_ESYS, "cannot make a pipe: %s", strerror(errno));
  return 2;
}

/* Raises the error of a send or receive. */
static int raise_io(lua_State *L, int r, const char *what) {
  switch (r) {
  case CC_EEOF:
    return strcmp(what, "send") == 0
               ? cc__lraise_code(L, CC_EEOF, "send: the other end is closed")
               : cc__lraise_code(L, CC_EEOF, "end of file: every sending end of the pipe is closed");
  case CC_ETORN:
    return cc__lraise_code(L, CC_EEOF, "a writer died (or closed its end) in the middle of a message: "
                      "the rest of this pipe cannot be read");
  case CC_ECLOSED:
    return cc__lraise_code(L, CC_ECLOSED, "%s: the Connection was closed by another thread", what);
  case CC_ECORRUPT:
    return cc__lraise_code(L, CC_EVALUE, "corrupt message: a frame of the pipe is not one");
  case CC_ESYS:
    return cc__lraise_code(L, CC_ESYS, "%s: %s", what, strerror(errno));
  default:
    return cc__lraise_code(L, r, NULL);
  }
}

static void check_sends(lua_State *L, cc_conn *c) {
  if (!(c->flags & CC_CONN_WRITE))
    cc__lraise_code(L, CC_EVALUE, "this end of the pipe only receives");
}

static void check_receives(lua_State *L, cc_conn *c) {
  if (!(c->flags & CC_CONN_READ))
    cc__lraise_code(L, CC_EVALUE, "this end of the pipe only sends");
}

/* Encodes the value at 2 into a buffer of the call's own, with the
 * descriptors of the Connections in it; raises with nothing taken. */
static cc_msg *encode(lua_State *L, cc_conn *c, cc_fds *fds) {
  cc_msg *m = cc__lmsg_take(L);
  if (cc__lencode(L, 2, 1, m, fds, "obj") != LUA_OK) {
    cc__lmsg_give(m);
    lua_error(L);
  }
  const char *why = NULL;
  if (fds->n > 0 && (c->flags & CC_CONN_OSPIPE))
    why = "a one-way Pipe cannot carry Connections or Descriptors: "
          "send them through a two-way Pipe (Pipe() or Pipe(true))";
  else if (m->len >= CC_FRAME_RAW)
    why = "a message of 2 GiB or more is too large for a pipe";
  if (why) {
    cc_msg_unref(m);
    cc__lmsg_give(m);
    cc__lraise_code(L, CC_EVALUE, "%s", why);
  }
  return m;
}

/* Sends m, then gives it back; what did not go drops its references. */
static int send_msg(lua_State *L, cc_conn *c, cc_msg *m, uint32_t raw, const cc_fds *fds) {
  int went;
  int r = cc_conn_send(c, m, raw, fds, CC_FOREVER, &went);
  if (!went)
    cc_msg_unref(m);
  cc__lmsg_give(m);
  if (r)
    return raise_io(L, r, "send");
  return 0;
}

static int conn_send(lua_State *L) {
  cc_conn *c = check_conn(L, 1);
  luaL_checkany(L, 2);
  check_sends(L, c);
  cc_fds fds;
  cc_msg *m = encode(L, c, &fds);
  return send_msg(L, c, m, 0, &fds);
}

/* send_nowait(v): sends without blocking; what the other end cannot take
 * now waits in the connection and goes out in later sends, flush() or
 * concur.wait. For a process that must keep reading while it sends (a
 * pool feeding workers that answer). A message with Connections or
 * Descriptors in it is sent whole, as send() does. */
static int conn_send_nowait(lua_State *L) {
  cc_conn *c = check_conn(L, 1);
  luaL_checkany(L, 2);
  check_sends(L, c);
  cc_fds fds;
  cc_msg *m = encode(L, c, &fds);
  if (fds.n > 0) {
    /* Descriptors ride with a frame's first byte: such a frame (small, as
     * a rule) is sent as send() does, after what waits. */
    send_msg(L, c, m, 0, &fds);
    lua_pushboolean(L, 1);
    return 1;
  }
  int went;
  int r = cc_conn_send_nowait(c, m, &went);
  if (!went)
    cc_msg_unref(m);
  cc__lmsg_give(m);
  if (r < 0)
    return raise_io(L, r, "send");
  lua_pushboolean(L, r == 0);
  return 1;
}

/* flush() -> true when nothing waits to be sent any more (does not block). */
static int conn_flush(lua_State *L) {
  int r = cc_conn_flush(check_conn(L, 1));
  if (r < 0)
    return raise_io(L, r, "send");
  lua_pushboolean(L, r == 0);
  return 1;
}

static int conn_send_bytes(lua_State *L) {
  cc_conn *c = check_conn(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  check_sends(L, c);
  luaL_argcheck(L, n < CC_FRAME_RAW, 2, "2 GiB or more is too large for a pipe");
  /* The string is the message's bytes as it is: no copy. */
  cc_msg m = {.data = (char *)s, .len = n};
  int went;
  int r = cc_conn_send(c, &m, CC_FRAME_RAW, NULL, CC_FOREVER, &went);
  if (r)
    return raise_io(L, r, "send");
  return 0;
}

/* Receives one frame into a buffer of the call's own. Returns it (given
 * back by the caller) and whether it is raw; raises with nothing taken. */
static cc_msg *recv_frame(lua_State *L, cc_conn *c, cc_fds *fds, size_t maxlen, int *raw) {
  check_receives(L, c);
  cc_msg *m = cc__lmsg_take(L);
  int r = cc_conn_recv(c, m, fds, maxlen, CC_FOREVER);
  if (r < 0) {
    cc__lmsg_give(m);
    if (r == CC_ETOOLONG)
      return cc__lraise_code(L, CC_ESYS, "message longer than maxlength %d; the connection is "
                        "closed", (int)maxlen), NULL;
    return raise_io(L, r, "recv"), NULL;
  }
  *raw = r == 1;
  return m;
}

static int conn_recv(lua_State *L) {
  cc_conn *c = check_conn(L, 1);
  cc_fds fds;
  int raw = 0;
  cc_msg *m = recv_frame(L, c, &fds, CC_FRAME_RAW - 1, &raw);
  int n = 1;
  if (raw)
    lua_pushlstring(L, m->data, m->len);
  else
    n = cc__ldecode(L, m, &fds);
  cc__lmsg_give(m);
  if (n < 0)
    return lua_error(L);
  if (n != 1)
    return cc__lraise_code(L, CC_EVALUE, "corrupt message: %d values instead of 1", n);
  return 1;
}

static int conn_recv_bytes(lua_State *L) {
  cc_conn *c = check_conn(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, (lua_Integer)CC_FRAME_RAW - 1);
  luaL_argcheck(L, max >= 0, 2, "maxlength must not be negative");
  cc_fds fds;
  int raw = 0;
  cc_msg *m = recv_frame(L, c, &fds, (size_t)max, &raw);
  cc_msg_unref(m);
  for (int i = 0; i < fds.n; i++)
    close(fds.fd[i]);
  lua_pushlstring(L, m->data, m->len); /* a memory error here loses m (codec.c) */
  cc__lmsg_give(m);
  return 1;
}

/* poll([timeout]): is there something to receive? With no argument it does
 * not wait; poll(nil) waits until there is (as poll(None) in CPython). */
static int conn_poll(lua_State *L) {
  cc_conn *c = check_conn(L, 1);
  int64_t dl = lua_isnone(L, 2) ? 0 : cc__ldeadline(L, 2);
  int r = cc_conn_poll(c, dl);
  if (r != 0 && r != CC_ETIMEDOUT) /* Interrupted, Closed, Deadlock */
    return raise_io(L, r, "poll");
  lua_pushboolean(L, r == 0);
  return 1;
}

int cc__lwait_connections(lua_State *L, int idx, int n, const char *label, int64_t dl) {
  /* Per call: the list and the flags, in a userdata whose user values keep
   * the Connections alive while this waits, whatever another thread does
   * to the table meanwhile. */
  size_t size = (sizeof(cc_conn *) + 1) * (size_t)n;
  cc_conn **cs = lua_newuserdatauv(L, size, n);
  uint8_t *ready = (uint8_t *)(cs + n);
  for (int i = 0; i < n; i++) {
    lua_geti(L, idx, i + 1);
    cs[i] = luaL_checkudata(L, -1, CONN_MT);
    lua_setiuservalue(L, -2, i + 1);
  }
  lua_newtable(L);
  int r = cc_conn_wait(cs, n, ready, label, dl);
  if (r < 0)
    return cc__lraise_code(L, r, NULL);
  int k = 0;
  for (int i = 0; i < n; i++)
    if (ready[i]) {
      lua_getiuservalue(L, -2, i + 1);
      lua_rawseti(L, -2, ++k);
    }
  return 1;
}

/* concur.Descriptor(fd): a copy (dup) of any descriptor, to send through a
 * Pipe or to a pool task; the receiver's detach() gives it to a library. */
static int l_descriptor(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0)
    return cc__lraise_code(L, CC_ESYS, "cannot copy descriptor %d: %s", fd, strerror(errno));
  push_conn(L);
  cc_conn_init(lua_touserdata(L, -1), d, 0);
  return 1;
}

/* conn:detach() -> the descriptor, which the Connection no longer closes. */
static int conn_detach(lua_State *L) {
  int fd = cc_conn_detach(check_conn(L, 1));
  if (fd < 0)
    return cc__lraise_code(L, CC_EVALUE, "cannot detach a Connection another thread is using");
  lua_pushinteger(L, fd);
  return 1;
}

static int conn_fileno(lua_State *L) {
  lua_pushinteger(L, check_conn(L, 1)->fd);
  return 1;
}

static int conn_close(lua_State *L) {
  cc_conn_close(luaL_checkudata(L, 1, CONN_MT));
  return 0;
}

static int conn_tostring(lua_State *L) {
  cc_conn *c = luaL_checkudata(L, 1, CONN_MT);
  int f = c->flags & (CC_CONN_READ | CC_CONN_WRITE);
  if (!cc_conn_open(c))
    lua_pushliteral(L, "Connection(closed)");
  else if (!f)
    lua_pushfstring(L, "Descriptor(fd=%d)", c->fd);
  else
    lua_pushfstring(L, "Connection(fd=%d, %s)", c->fd,
                    f == (CC_CONN_READ | CC_CONN_WRITE) ? "duplex"
                    : f == CC_CONN_READ                 ? "receives"
                                                        : "sends");
  return 1;
}

static const luaL_Reg methods[] = {
    {"send", conn_send},         {"recv", conn_recv},
    {"send_bytes", conn_send_bytes}, {"recv_bytes", conn_recv_bytes},
    {"poll", conn_poll},         {"fileno", conn_fileno},
    {"close", conn_close},       {"detach", conn_detach},
    {"send_nowait", conn_send_nowait}, {"flush", conn_flush},
    {NULL, NULL}};

static const luaL_Reg meta[] = {{"__gc", conn_close},
                                {"__close", conn_close},
                                {"__tostring", conn_tostring},
                                {NULL, NULL}};

void cc__open_pipe(lua_State *L) {
  luaL_newmetatable(L, CONN_MT);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  cc__lwaitable(L, -1, &conn_waitable);
  lua_pop(L, 1);
  cc__lcodec_register(L, &conn_sendable);
  lua_pushcfunction(L, l_pipe);
  lua_setfield(L, -2, "Pipe");
  lua_pushcfunction(L, l_descriptor);
  lua_setfield(L, -2, "Descriptor");
}
