/* lpipe - Lua binding of Pipe and its Connections: framed messages on sockets */
#include "codec.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/wait.h"
#include "lconcur.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * A Connection is one end of a socketpair (a duplex Pipe), so that
 * descriptors can travel with SCM_RIGHTS, or of a pipe(2) (a simplex one, as
 * CPython's: the kernel takes a small write to a pipe for a third of what a
 * socket costs, which is most of what a one-way stream of messages costs).
 * Either way the lesson holds: recv sees EOF only when every copy of the
 * other end, in every process, is closed. A message is a frame: {length |
 * RAW bit, number of refs}, the refs, the payload.
 */

#define CONN_MT "concur.Connection"
#define READABLE 1
#define WRITABLE 2
#define OS_PIPE 4 /* a pipe(2) end: read and write, no descriptors */
#define RAW 0x80000000u
/* Frames up to this size are written from one piece. */
#define SMALL_FRAME 1024

/* Received bytes are buffered per connection (one read often holds several
 * frames), and so are received descriptors, which belong to the frames in
 * order: each frame says how many are its own. */
typedef struct conn {
  int fd;
  int flags;
  char *rbuf;
  size_t rcap, rlen, roff;
  char *wbuf; /* what send_nowait could not send yet: whole frames, in order */
  size_t wcap, wlen, woff;
  int wpid; /* the process whose frames wait in wbuf (a child has a copy) */
  int fdq[64];
  int nfdq;
} conn;

typedef struct frame {
  uint32_t len;
  uint32_t nrefs;
  uint32_t nfds;
  uint32_t pad;
} frame;

static conn *check_conn(lua_State *L, int idx) {
  conn *c = luaL_checkudata(L, idx, CONN_MT);
  if (c->fd < 0)
    luaL_error(L, "attempt to use a closed Connection");
  return c;
}

static void push_conn(lua_State *L, int fd, int flags) {
  conn *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->fd = fd;
  struct stat st;
  c->flags = flags | (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) ? OS_PIPE : 0);
  luaL_setmetatable(L, CONN_MT);
}

int cc__lpipe_fd(lua_State *L, int idx, int *flags) {
  conn *c = luaL_testudata(L, idx, CONN_MT);
  if (!c || c->fd < 0)
    return -1;
  *flags = c->flags;
  return c->fd;
}

void cc__lpipe_wrap(lua_State *L, int fd, int flags) {
  push_conn(L, fd, flags & (READABLE | WRITABLE));
}

static void on_sigpipe(int sig) { (void)sig; }

/* A write to a pipe whose readers are all gone must fail with EPIPE (raised
 * as EOF), not kill the process: SIGPIPE gets a handler that does nothing
 * (not SIG_IGN, so that programs this process runs get the default back),
 * unless the program chose something else for it already. */
static void catch_sigpipe(void) {
  static int done;
  if (done)
    return;
  done = 1;
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
    cc__lcatch(SIGPIPE, on_sigpipe, 1, NULL);
}

/* Pipe([duplex=true]) -> a, b; simplex: a only receives, b only sends. */
static int l_pipe(lua_State *L) {
  int duplex = lua_isnoneornil(L, 1) || lua_toboolean(L, 1);
  int sv[2];
  if (!duplex) {
    /* Non-blocking: every read and write here is a try, then a wait. */
    if (pipe2(sv, O_CLOEXEC | O_NONBLOCK) != 0)
      return cc__lraise(L, "OSError", "cannot make a pipe: %s", strerror(errno));
    catch_sigpipe();
    push_conn(L, sv[0], READABLE);
    push_conn(L, sv[1], WRITABLE);
    return 2;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return cc__lraise(L, "OSError", "cannot make a pipe: %s", strerror(errno));
  push_conn(L, sv[0], READABLE | WRITABLE);
  push_conn(L, sv[1], READABLE | WRITABLE);
  return 2;
}

static int broken(lua_State *L, conn *c, const char *what) {
  int e = errno;
  if (e == EPIPE || e == ECONNRESET)
    return cc__lraise(L, "EOF", "%s: the other end is closed", what);
  (void)c;
  return cc__lraise(L, "OSError", "%s: %s", what, strerror(e));
}

/* Writes the pieces iov[0..niov) of the frame in scratch whole (iov is
 * consumed), the descriptors with the first byte. When it raises, the
 * references the frame carried are dropped: nobody will receive them. */
static int write_all(lua_State *L, conn *c, cc_msg *scratch, struct iovec *iov, int niov,
                     const cc_fds *fds) {
  int first = 1;
  while (niov > 0 && iov->iov_len == 0) {
    iov++;
    niov--;
  }
  if (c->flags & OS_PIPE && fds && fds->n > 0) {
    cc__lmsg_unref(scratch);
    return cc__lraise(L, "ValueError",
                      "a one-way Pipe cannot carry Connections or Descriptors: "
                      "send them through a two-way Pipe (Pipe() or Pipe(true))");
  }
  while (niov > 0) {
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
    char cbuf[CMSG_SPACE(sizeof(int) * 16)];
    if (first && fds && fds->n > 0) {
      memset(cbuf, 0, sizeof cbuf);
      mh.msg_control = cbuf;
      mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)fds->n);
      struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)fds->n);
      memcpy(CMSG_DATA(cm), fds->fd, sizeof(int) * (size_t)fds->n);
    }
    ssize_t w;
    if (niov == 1 && !mh.msg_control) /* one piece: no vector to import */
      w = c->flags & OS_PIPE ? write(c->fd, iov->iov_base, iov->iov_len)
                             : send(c->fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    else
      w = c->flags & OS_PIPE ? writev(c->fd, iov, niov)
                             : sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        int r = cc_wait_fd(c->fd, POLLOUT, CC_FOREVER);
        if (r) {
          cc__lmsg_unref(scratch);
          return cc__lraise_code(L, r, NULL);
        }
        continue;
      }
      int e = errno;
      cc__lmsg_unref(scratch);
      errno = e;
      return broken(L, c, "send");
    }
    first = 0;
    size_t done = (size_t)w;
    while (niov > 0 && done >= iov->iov_len) {
      done -= iov->iov_len;
      iov++;
      niov--;
    }
    if (niov > 0) {
      iov->iov_base = (char *)iov->iov_base + done;
      iov->iov_len -= done;
    }
  }
  return 0;
}

/* Empties the write buffer. The frames not wholly sent will never be
 * decoded, so the references they carry are dropped, by the process that
 * queued them only: a forked child's copy of the buffer holds no
 * references of its own. */
static void drop_unsent(conn *c) {
  if (c->wpid == cc_pid()) {
    size_t at = 0;
    while (at + sizeof(frame) <= c->wlen) {
      frame f;
      memcpy(&f, c->wbuf + at, sizeof f);
      size_t end = at + sizeof f + f.nrefs * sizeof(uint32_t) + (f.len & ~RAW);
      if (end > c->woff)
        cc__lrefs_unref(c->wbuf + at + sizeof f, f.nrefs);
      at = end;
    }
  }
  c->woff = c->wlen = 0;
}

/* Sends what waits in the write buffer without blocking: 0 when it is all
 * gone, 1 when some is left, -1 (errno set) when it cannot go. What a
 * forked child inherited is its parent's to send, not the child's. */
static int try_flush(conn *c) {
  if (c->wlen && c->wpid != cc_pid())
    drop_unsent(c);
  while (c->woff < c->wlen) {
    const char *p = c->wbuf + c->woff;
    size_t n = c->wlen - c->woff;
    ssize_t w = c->flags & OS_PIPE ? write(c->fd, p, n)
                                   : send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return 1;
      return -1;
    }
    c->woff += (size_t)w;
  }
  c->woff = c->wlen = 0;
  return 0;
}

/* As try_flush; raises EOF or OSError when the bytes cannot go. */
static int flush(lua_State *L, conn *c) {
  int r = try_flush(c);
  return r < 0 ? broken(L, c, "send") : r;
}

static void queue_bytes(lua_State *L, conn *c, const char *p, size_t n) {
  if (c->wlen + n > c->wcap) {
    size_t cap = c->wcap ? c->wcap : 65536;
    while (cap < c->wlen + n)
      cap *= 2;
    char *b = realloc(c->wbuf, cap);
    if (!b)
      luaL_error(L, "not enough memory to queue a message");
    c->wbuf = b;
    c->wcap = cap;
  }
  memcpy(c->wbuf + c->wlen, p, n);
  c->wlen += n;
  c->wpid = cc_pid();
}

static void send_frame(lua_State *L, conn *c, cc_msg *scratch, uint32_t raw, const cc_fds *fds) {
  /* Whatever send_nowait left goes first, to keep the order. */
  while (c->wlen && flush(L, c)) {
    int r = cc_wait_fd(c->fd, POLLOUT, CC_FOREVER);
    if (r)
      cc__lraise_code(L, r, NULL);
  }
  if (!(c->flags & WRITABLE))
    cc__lraise(L, "ValueError", "this end of the pipe only receives");
  if (scratch->len >= RAW)
    cc__lraise(L, "ValueError", "a message of %d bytes is too large for a pipe",
               (int)scratch->len);
  frame f = {(uint32_t)scratch->len | raw, scratch->nrefs,
             fds ? (uint32_t)fds->n : 0, 0};
  /* A small frame is copied into one piece, which the kernel takes for
   * less than a vector of three; a bigger one goes as its three pieces in
   * one call, with no copy. */
  size_t refs_len = scratch->nrefs * sizeof(uint32_t);
  if (sizeof f + refs_len + scratch->len <= SMALL_FRAME) {
    char one[SMALL_FRAME];
    memcpy(one, &f, sizeof f);
    if (refs_len)
      memcpy(one + sizeof f, scratch->refs, refs_len);
    if (scratch->len)
      memcpy(one + sizeof f + refs_len, scratch->data, scratch->len);
    struct iovec iov = {one, sizeof f + refs_len + scratch->len};
    write_all(L, c, scratch, &iov, 1, fds);
    return;
  }
  struct iovec iov[3] = {{&f, sizeof f}, {scratch->refs, refs_len}, {scratch->data, scratch->len}};
  write_all(L, c, scratch, iov, 3, fds);
}

static int conn_send(lua_State *L) {
  conn *c = check_conn(L, 1);
  luaL_checkany(L, 2);
  cc_fds fds;
  cc_msg *scratch = cc__lmsg_take(L);
  if (cc__lencode(L, 2, 1, scratch, &fds, "obj") != LUA_OK) {
    cc__lmsg_give(scratch);
    return lua_error(L);
  }
  send_frame(L, c, scratch, 0, &fds);
  cc__lmsg_give(scratch);
  return 0;
}

/* send_nowait(v): sends without blocking; what the socket cannot take now
 * waits in the connection and goes out in later sends, flush() or
 * concur.wait. For a process that must keep reading while it sends (a pool
 * feeding workers that answer). A message with Connections or Descriptors
 * in it is sent whole, as send() does. */
static int conn_send_nowait(lua_State *L) {
  conn *c = check_conn(L, 1);
  luaL_checkany(L, 2);
  if (!(c->flags & WRITABLE))
    return cc__lraise(L, "ValueError", "this end of the pipe only receives");
  cc_fds fds;
  cc_msg *scratch = cc__lmsg_take(L);
  if (cc__lencode(L, 2, 1, scratch, &fds, "obj") != LUA_OK) {
    cc__lmsg_give(scratch);
    return lua_error(L);
  }
  if (fds.n > 0) {
    /* Descriptors ride with a frame's first byte: such a frame (small, as
     * a rule) is sent as send() does, after what waits. */
    send_frame(L, c, scratch, 0, &fds);
    cc__lmsg_give(scratch);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (scratch->len >= RAW)
    return cc__lraise(L, "ValueError", "a message of %d bytes is too large for a pipe",
                      (int)scratch->len);
  frame f = {(uint32_t)scratch->len, scratch->nrefs, 0, 0};
  queue_bytes(L, c, (const char *)&f, sizeof f);
  if (scratch->nrefs)
    queue_bytes(L, c, (const char *)scratch->refs, scratch->nrefs * sizeof(uint32_t));
  if (scratch->len)
    queue_bytes(L, c, scratch->data, scratch->len);
  cc__lmsg_give(scratch);
  lua_pushboolean(L, flush(L, c) == 0);
  return 1;
}

/* flush() -> true when nothing waits to be sent any more (does not block). */
static int conn_flush(lua_State *L) {
  lua_pushboolean(L, flush(L, check_conn(L, 1)) == 0);
  return 1;
}

static int conn_send_bytes(lua_State *L) {
  conn *c = check_conn(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  cc_msg *scratch = cc__lmsg_take(L);
  if (n > scratch->cap) {
    char *d = realloc(scratch->data, n);
    if (!d)
      return luaL_error(L, "not enough memory");
    scratch->data = d;
    scratch->cap = n;
  }
  if (n)
    memcpy(scratch->data, s, n);
  scratch->len = n;
  scratch->nrefs = 0;
  send_frame(L, c, scratch, RAW, NULL);
  cc__lmsg_give(scratch);
  return 0;
}

/* Makes `need` bytes available in the buffer, reading what the socket has.
 * Returns 0, or 1 at EOF with nothing buffered. */
static int fill(lua_State *L, conn *c, size_t need) {
  while (c->rlen - c->roff < need) {
    if (c->roff && c->rcap - c->rlen < need) {
      memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
      c->rlen -= c->roff;
      c->roff = 0;
    }
    if (c->rcap - c->roff < need || c->rcap - c->rlen < 4096) {
      size_t cap = c->rcap ? c->rcap : 65536;
      while (cap - c->roff < need || cap - c->rlen < 4096)
        cap *= 2;
      char *b = realloc(c->rbuf, cap);
      if (!b)
        return luaL_error(L, "not enough memory for a message of %d bytes", (int)need);
      c->rbuf = b;
      c->rcap = cap;
    }
    struct iovec iov = {c->rbuf + c->rlen, c->rcap - c->rlen};
    char cbuf[CMSG_SPACE(sizeof(int) * 16)];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf};
    ssize_t k = c->flags & OS_PIPE ? read(c->fd, iov.iov_base, iov.iov_len)
                                   : recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (c->flags & OS_PIPE)
      mh.msg_controllen = 0; /* no descriptors come through a pipe */
    if (k < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        /* A reply often comes within microseconds: look again for a
         * little while before sleeping. */
        int r = cc_wait_fd_soon(c->fd, POLLIN, CC_FOREVER);
        if (r)
          return cc__lraise_code(L, r, NULL);
        continue;
      }
      return broken(L, c, "recv");
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        int nf = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < nf; i++) {
          int fd;
          memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
          if (c->nfdq < (int)(sizeof c->fdq / sizeof *c->fdq))
            c->fdq[c->nfdq++] = fd;
          else
            close(fd);
        }
      }
    if (k == 0) {
      if (c->rlen == c->roff)
        return 1;
      return cc__lraise(L, "EOF", "the other end closed in the middle of a message");
    }
    c->rlen += (size_t)k;
  }
  return 0;
}

/* Reads one frame into scratch, and its descriptors into fds. Returns its
 * RAW bit, or raises EOF. */
static uint32_t recv_frame(lua_State *L, conn *c, cc_msg *scratch, cc_fds *fds, size_t maxlen) {
  if (!(c->flags & READABLE))
    cc__lraise(L, "ValueError", "this end of the pipe only sends");
  if (fill(L, c, sizeof(frame)))
    cc__lraise(L, "EOF", "end of file: every sending end of the pipe is closed");
  frame f;
  memcpy(&f, c->rbuf + c->roff, sizeof f);
  uint32_t raw = f.len & RAW, len = f.len & ~RAW;
  if (f.nrefs > 4096 || f.nfds > 16)
    cc__lraise(L, "ValueError", "corrupt message: %d object references, %d descriptors",
               (int)f.nrefs, (int)f.nfds);
  if (len > maxlen) {
    /* As in CPython: the rest of the message cannot be skipped safely. */
    close(c->fd);
    c->fd = -1;
    cc__lraise(L, "OSError", "message of %d bytes is longer than maxlength %d; "
               "the connection is closed", (int)len, (int)maxlen);
  }
  size_t head = sizeof f + f.nrefs * sizeof(uint32_t);
  if (fill(L, c, head + len))
    cc__lraise(L, "EOF", "the other end closed in the middle of a message");
  if (len > scratch->cap || f.nrefs > scratch->refcap) {
    size_t cap = len > scratch->cap ? len : scratch->cap;
    uint32_t rc = f.nrefs > scratch->refcap ? f.nrefs : scratch->refcap;
    char *d = realloc(scratch->data, cap ? cap : 1);
    uint32_t *r = realloc(scratch->refs, (rc ? rc : 1) * sizeof(uint32_t));
    if (d) {
      scratch->data = d;
      scratch->cap = cap;
    }
    if (r) {
      scratch->refs = r;
      scratch->refcap = rc;
    }
    if (!d || !r)
      luaL_error(L, "not enough memory for a message of %d bytes", (int)len);
  }
  const char *p = c->rbuf + c->roff + sizeof f;
  if (f.nrefs)
    memcpy(scratch->refs, p, f.nrefs * sizeof(uint32_t));
  if (len)
    memcpy(scratch->data, p + f.nrefs * sizeof(uint32_t), len);
  c->roff += head + len;
  scratch->len = len;
  scratch->nrefs = f.nrefs;
  /* This frame's descriptors are the first ones queued. */
  int take = (int)f.nfds < c->nfdq ? (int)f.nfds : c->nfdq;
  fds->n = 0;
  for (int i = 0; i < take; i++)
    fds->fd[fds->n++] = c->fdq[i];
  memmove(c->fdq, c->fdq + take, (size_t)(c->nfdq - take) * sizeof(int));
  c->nfdq -= take;
  return raw;
}

static int conn_recv(lua_State *L) {
  conn *c = check_conn(L, 1);
  cc_fds fds = {.n = 0};
  cc_msg *scratch = cc__lmsg_take(L);
  if (recv_frame(L, c, scratch, &fds, (size_t)RAW - 1)) {
    lua_pushlstring(L, scratch->data, scratch->len);
    cc__lmsg_give(scratch);
    return 1;
  }
  int n = cc__ldecode(L, scratch, &fds);
  cc__lmsg_give(scratch);
  if (n < 0)
    return lua_error(L);
  if (n != 1)
    return cc__lraise(L, "ValueError", "corrupt message: %d values instead of 1", n);
  return 1;
}

static int conn_recv_bytes(lua_State *L) {
  conn *c = check_conn(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, (lua_Integer)RAW - 1);
  luaL_argcheck(L, max >= 0, 2, "maxlength must not be negative");
  cc_fds fds = {.n = 0};
  cc_msg *scratch = cc__lmsg_take(L);
  recv_frame(L, c, scratch, &fds, (size_t)max);
  cc__lmsg_unref(scratch);
  for (int i = 0; i < fds.n; i++)
    close(fds.fd[i]);
  lua_pushlstring(L, scratch->data, scratch->len);
  cc__lmsg_give(scratch);
  return 1;
}

/* poll([timeout]): is there something to receive? With no argument it does
 * not wait; poll(nil) waits until there is (as poll(None) in CPython). */
static int conn_poll(lua_State *L) {
  conn *c = check_conn(L, 1);
  if (c->rlen > c->roff) {
    lua_pushboolean(L, 1);
    return 1;
  }
  int64_t dl = lua_isnone(L, 2) ? 0 : cc__ldeadline(L, 2);
  int r = cc_wait_fd(c->fd, POLLIN, dl);
  if (r == CC_EINTR)
    return cc__lraise_code(L, r, NULL);
  lua_pushboolean(L, r == 0);
  return 1;
}

/* concur.wait(connections, [timeout]): those that are ready to receive (or
 * at EOF), as multiprocessing.connection.wait. No timeout waits forever. */
static int l_wait(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  int64_t dl = cc__ldeadline(L, 2);
  struct pollfd *fds = lua_newuserdatauv(L, sizeof *fds * (size_t)(n ? n : 1), 0);
  int buffered = 0;
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    conn *c = check_conn(L, -1);
    fds[i].fd = c->fd;
    fds[i].events = POLLIN | (c->wlen > c->woff ? POLLOUT : 0);
    /* Bytes already read from the socket are ready too. */
    fds[i].revents = c->rlen > c->roff ? POLLIN : 0;
    buffered += fds[i].revents != 0;
    lua_pop(L, 1);
  }
  lua_newtable(L);
  if (n == 0)
    return 1;
  for (;;) {
    int r = buffered ? buffered : cc_wait_fds(fds, n, dl);
    if (r == CC_EINTR)
      return cc__lraise_code(L, r, NULL);
    int k = 0, flushed = 0;
    for (int i = 0; r > 0 && i < n; i++) {
      lua_geti(L, 1, i + 1);
      conn *c = luaL_checkudata(L, -1, CONN_MT);
      lua_pop(L, 1);
      if (c->fd < 0) {
        /* Closed by another thread while this one waited: it is ready,
         * for its next use to say so. */
        fds[i].revents = POLLHUP;
      } else if (fds[i].revents & POLLOUT) {
        /* Room to send what waited: send it, and look again. */
        flushed = 1;
        int f = try_flush(c);
        if (f <= 0)
          fds[i].events = POLLIN;
        if (f < 0) {
          /* The other end is gone: what waited is dropped, and the
           * connection is ready, for recv to say EOF. */
          drop_unsent(c);
          fds[i].revents |= POLLHUP;
        }
      }
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        lua_geti(L, 1, i + 1);
        lua_rawseti(L, -2, ++k);
      }
      fds[i].revents = 0;
    }
    if (k || !flushed || r <= 0)
      return 1;
  }
}

/* concur.Descriptor(fd): a copy (dup) of any descriptor, to send through a
 * Pipe or to a pool task; the receiver's detach() gives it to a library. */
static int l_descriptor(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0)
    return cc__lraise(L, "OSError", "cannot copy descriptor %d: %s", fd, strerror(errno));
  push_conn(L, d, 0);
  return 1;
}

/* conn:detach() -> the descriptor, which the Connection no longer closes. */
static int conn_detach(lua_State *L) {
  conn *c = check_conn(L, 1);
  lua_pushinteger(L, c->fd);
  c->fd = -1;
  return 1;
}

static int conn_fileno(lua_State *L) {
  lua_pushinteger(L, check_conn(L, 1)->fd);
  return 1;
}

static int conn_close(lua_State *L) {
  conn *c = luaL_checkudata(L, 1, CONN_MT);
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  for (int i = 0; i < c->nfdq; i++)
    close(c->fdq[i]);
  c->nfdq = 0;
  free(c->rbuf);
  c->rbuf = NULL;
  c->rcap = c->rlen = c->roff = 0;
  drop_unsent(c);
  free(c->wbuf);
  c->wbuf = NULL;
  c->wcap = c->wlen = c->woff = 0;
  return 0;
}

static int conn_tostring(lua_State *L) {
  conn *c = luaL_checkudata(L, 1, CONN_MT);
  if (c->fd < 0)
    lua_pushliteral(L, "Connection(closed)");
  else
    lua_pushfstring(L, c->flags ? "Connection(fd=%d, %s)" : "Descriptor(fd=%d)", c->fd,
                    c->flags == (READABLE | WRITABLE) ? "duplex"
                    : c->flags == READABLE            ? "receives"
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
  lua_pop(L, 1);
  lua_pushcfunction(L, l_pipe);
  lua_setfield(L, -2, "Pipe");
  lua_pushcfunction(L, l_wait);
  lua_setfield(L, -2, "wait");
  lua_pushcfunction(L, l_descriptor);
  lua_setfield(L, -2, "Descriptor");
}
