/* pipe - the pipe transport: framed messages, and descriptors beside them */
#include "concur/pipe.h"
#include "concur/arena.h"
#include "concur/error.h"
#include "concur/ready.h"
#include "concur/ident.h"
#include "concur/wait.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

typedef struct frame {
  uint32_t len; /* | CC_FRAME_RAW */
  uint32_t nrefs;
  uint32_t nfds;
  uint32_t check; /* frame_check: 16 bits of the header's, 16 of the rest's */
} frame;

/* A hash of bytes, 8 at a time: not against an adversary, but so that a
 * frame torn by a writer that died in the middle of it (and the bytes of
 * another writer's frame that then follow) is never read as a message. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (; n >= 8; b += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, b, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15u;
    h ^= h >> 32;
  }
  if (n) {
    uint64_t w = 0;
    memcpy(&w, b, n);
    h = (h ^ w ^ ((uint64_t)n << 56)) * 0x9e3779b97f4a7c15u;
    h ^= h >> 32;
  }
  return h;
}

static uint32_t fold16(uint64_t h) {
  h ^= h >> 32;
  return (uint32_t)((h ^ (h >> 16)) & 0xffff);
}

static uint32_t head_check(const frame *f) {
  uint32_t w[3] = {f->len, f->nrefs, f->nfds};
  return fold16(hash_bytes(0x636f6e63, w, sizeof w));
}

static uint32_t body_check(const frame *f, const void *refs, const void *data) {
  uint64_t h = hash_bytes(head_check(f), refs, f->nrefs * sizeof(uint32_t));
  return fold16(hash_bytes(h, data, f->len & ~CC_FRAME_RAW));
}

static frame frame_make(const cc_msg *m, uint32_t raw, uint32_t nfds) {
  frame f = {(uint32_t)m->len | raw, m->nrefs, nfds, 0};
  f.check = head_check(&f) << 16 | body_check(&f, m->refs, m->data);
  return f;
}

/* Frames up to this size are written from one piece: the kernel takes one
 * piece for less than a vector of three. */
#define SMALL_FRAME 1024
/* More than any message sends; a frame that says more is corrupt. */
#define MAX_REFS 4096
/* What a read asks for at least. */
#define READ_CHUNK 4096

/* ------------------------------------------------------------- SIGPIPE */

static void on_sigpipe(int sig) { (void)sig; }

/* A write to a pipe whose readers are all gone must fail with EPIPE (EOF),
 * not kill the process: SIGPIPE gets a handler that does nothing (not
 * SIG_IGN, so that programs this process runs get the default back),
 * unless the program chose something else for it already. Sockets are
 * written with MSG_NOSIGNAL instead. */
static void catch_sigpipe_once(void) {
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT; /* threads: pthread_once */

/* ----------------------------------------------------- users and turns */

/* Empties the write buffer. The frames not wholly sent will never be
 * decoded, so the references they carry are dropped. (The buffer starts
 * with a frame, or with the rest of one whose start went at once: wstart
 * is where its frames begin.) */
static void drop_unsent(cc_conn *c) {
  size_t at = c->wstart;
  while (at + sizeof(frame) <= c->wlen) {
    frame f;
    memcpy(&f, c->wbuf + at, sizeof f);
    size_t end = at + sizeof f + f.nrefs * sizeof(uint32_t) + (f.len & ~CC_FRAME_RAW);
    if (end > c->woff)
      cc_refs_unref(c->wbuf + at + sizeof f, f.nrefs);
    at = end;
  }
  c->woff = c->wlen = c->wstart = 0;
}

/* The close itself, once no thread is inside. */
static void finish_close(cc_conn *c, int keep_fd) {
  if (c->fd >= 0 && !keep_fd)
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
  c->wcap = 0;
}

/* A forked child's copy starts over: no thread of the parent is inside it
 * here, and what waited to be sent is the parent's (so are its refs). */
static void own(cc_conn *c) {
  int me = cc_pid();
  if (c->pid == me)
    return;
  c->pid = me;
  atomic_store(&c->rturn, 0);
  atomic_store(&c->wturn, 0);
  c->woff = c->wlen = c->wstart = 0;
  uint32_t bit = atomic_load(&c->inside) & CC_CONN_CLOSING;
  atomic_store(&c->inside, bit);
  if (bit && c->fd >= 0)
    finish_close(c, 0);
}

static int closing(const cc_conn *c) { return (atomic_load(&c->inside) & CC_CONN_CLOSING) != 0; }

int cc_conn_open(const cc_conn *c) { return c->fd >= 0 && !closing(c); }

/* One count and one bit in one word: a thread comes in only while no close
 * has come, and exactly one party (the closer, or the last to leave) sees
 * the count reach 0 with the bit set, and closes. */
static int enter(cc_conn *c) {
  own(c);
  uint32_t s = atomic_load(&c->inside);
  do {
    if (s & CC_CONN_CLOSING || c->fd < 0)
      return CC_ECLOSED;
  } while (!atomic_compare_exchange_weak(&c->inside, &s, s + 1));
  return 0;
}

static void leave(cc_conn *c) {
  if (atomic_fetch_sub(&c->inside, 1) - 1 == CC_CONN_CLOSING)
    finish_close(c, 0);
}

/* Whether only the run's processes can end a wait on c: a Pipe's end, not
 * a Descriptor (any descriptor, which the world outside may make ready). */
static int of_the_run(const cc_conn *c) {
  return (c->flags & (CC_CONN_READ | CC_CONN_WRITE)) != 0;
}

static int64_t slice(int64_t deadline) {
  int64_t end = cc_now() + CC_WAIT_SLICE_NS;
  return end < deadline ? end : deadline;
}

/* Takes the receivers' or senders' turn (a futex lock of 0, 1, 2 as in
 * Drepper's "Futexes are tricky"), looking at `closing` every slice. */
static int take_turn(cc_conn *c, _Atomic uint32_t *t, int64_t deadline) {
  uint32_t z = 0;
  if (atomic_compare_exchange_strong(t, &z, 1))
    return 0;
  cc_waiting w = {.kind = t == &c->rturn ? CC_WAIT_RECV : CC_WAIT_SEND, .label = c->label,
                  .deadline = deadline};
  if (of_the_run(c))
    cc_wait_begin(&w);
  int r;
  for (;;) {
    if (atomic_exchange(t, 2) == 0) {
      r = 0;
      break;
    }
    if (closing(c)) {
      r = CC_ECLOSED;
      break;
    }
    r = cc_futex_wait(t, 2, slice(deadline));
    if (r == CC_EINTR || r == CC_EDEADLK)
      break;
    if (r == CC_ETIMEDOUT && cc_now() >= deadline)
      break;
  }
  cc_wait_end(&w);
  return r;
}

static void give_turn(_Atomic uint32_t *t) {
  if (atomic_exchange(t, 0) == 2)
    cc_futex_wake(t, 1);
}

/* Waits for c's descriptor to be ready for ev, a slice at a time, so that
 * a close from another thread is seen. soon: an answer is likely within
 * microseconds (cc_wait_fd_soon). */
static int wait_io(cc_conn *c, short ev, int64_t deadline, int soon) {
  cc_waiting w = {.kind = ev == POLLIN ? CC_WAIT_RECV : CC_WAIT_SEND, .label = c->label,
                  .deadline = deadline};
  if (of_the_run(c))
    cc_wait_begin(&w);
  int r;
  for (;;) {
    if (closing(c)) {
      r = CC_ECLOSED;
      break;
    }
    int64_t end = slice(deadline);
    r = soon ? cc_wait_fd_soon(c->fd, ev, end) : cc_wait_fd(c->fd, ev, end);
    soon = 0;
    if (r == 0 || r == CC_EINTR || r == CC_EDEADLK)
      break;
    if (cc_now() >= deadline) {
      r = CC_ETIMEDOUT;
      break;
    }
  }
  cc_wait_end(&w);
  return r;
}

/* ------------------------------------------------------------- making */

void cc_conn_init(cc_conn *c, int fd, int flags) {
  memset(c, 0, sizeof *c);
  c->fd = fd;
  struct stat st;
  c->flags = flags | (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) ? CC_CONN_OSPIPE : 0);
  c->pid = cc_pid();
  snprintf(c->label, sizeof c->label, "Connection (fd %d)", fd);
}

int cc_pipe_new(cc_conn *a, cc_conn *b, int duplex) {
  int sv[2];
  if (!duplex) {
    /* Non-blocking: every read and write here is a try, then a wait. */
    if (pipe2(sv, O_CLOEXEC | O_NONBLOCK) != 0)
      return CC_ESYS;
    pthread_once(&sigpipe_once, catch_sigpipe_once);
    cc_conn_init(a, sv[0], CC_CONN_READ);
    cc_conn_init(b, sv[1], CC_CONN_WRITE);
    return 0;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return CC_ESYS;
  cc_conn_init(a, sv[0], CC_CONN_READ | CC_CONN_WRITE);
  cc_conn_init(b, sv[1], CC_CONN_READ | CC_CONN_WRITE);
  return 0;
}

void cc_conn_close(cc_conn *c) {
  own(c);
  if (c->fd < 0)
    return;
  uint32_t s = atomic_fetch_or(&c->inside, CC_CONN_CLOSING);
  cc_ready_ring(); /* a concur.wait on it finds it closed */
  if (s == 0)
    finish_close(c, 0);
  /* Else (unless a close came already) the threads inside see the bit
   * within a slice, and the last one to leave closes it. */
}

int cc_conn_detach(cc_conn *c) {
  own(c);
  uint32_t idle = 0;
  if (c->fd < 0 || !atomic_compare_exchange_strong(&c->inside, &idle, CC_CONN_CLOSING))
    return -1; /* another thread is inside, or it is closed */
  int fd = c->fd;
  finish_close(c, 1);
  return fd;
}

/* -------------------------------------------------------------- writes */

static int write_error(void) {
  return errno == EPIPE || errno == ECONNRESET ? CC_EEOF : CC_ESYS;
}

/* Appends n bytes to the write buffer. */
static int queue_bytes(cc_conn *c, const void *p, size_t n) {
  if (c->wlen + n > c->wcap) {
    size_t cap = c->wcap ? c->wcap : 65536;
    while (cap < c->wlen + n)
      cap *= 2;
    char *b = realloc(c->wbuf, cap);
    if (!b)
      return CC_ENOMEM;
    c->wbuf = b;
    c->wcap = cap;
  }
  memcpy(c->wbuf + c->wlen, p, n);
  c->wlen += n;
  return 0;
}

/* One non-blocking write of n bytes: what went, or -1 (errno set). */
static ssize_t write_some(cc_conn *c, const void *p, size_t n) {
  return c->flags & CC_CONN_OSPIPE ? write(c->fd, p, n)
                                   : send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Sends what waits without blocking, the senders' turn held: 0 when all
 * went, 1 when some is left, or an error. */
static int try_flush(cc_conn *c) {
  while (c->woff < c->wlen) {
    ssize_t w = write_some(c, c->wbuf + c->woff, c->wlen - c->woff);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return 1;
      return write_error();
    }
    c->woff += (size_t)w;
  }
  c->woff = c->wlen = c->wstart = 0;
  return 0;
}

/* Sends what waits, waiting for room, the senders' turn held. */
static int drain(cc_conn *c, int64_t deadline) {
  for (;;) {
    int r = try_flush(c);
    if (r <= 0) {
      if (r < 0)
        drop_unsent(c);
      return r;
    }
    r = wait_io(c, POLLOUT, deadline, 0);
    if (r)
      return r;
  }
}

/* Writes the pieces iov[0..niov) whole (iov is consumed), the descriptors
 * with the first byte. When a wait fails after some bytes went, the rest
 * is queued (it goes first with the next send) and *went is set. */
static int write_all(cc_conn *c, struct iovec *iov, int niov, const cc_fds *fds,
                     int64_t deadline, int *went) {
  int first = 1;
  while (niov > 0 && iov->iov_len == 0) {
    iov++;
    niov--;
  }
  while (niov > 0) {
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
    char cbuf[CMSG_SPACE(sizeof(int) * CC_FDS_MAX)];
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
      w = write_some(c, iov->iov_base, iov->iov_len);
    else
      w = c->flags & CC_CONN_OSPIPE ? writev(c->fd, iov, niov)
                                    : sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN) {
        /* The other end is gone (or broken): nothing of this frame will be
         * decoded, so its refs stay the caller's, to drop. */
        *went = 0;
        return write_error();
      }
      int r = wait_io(c, POLLOUT, deadline, 0);
      if (r && !first) {
        /* Part of the frame went: its rest waits, to go before anything
         * else (the buffer is empty: drain emptied it). */
        for (int i = 0; i < niov; i++)
          if (queue_bytes(c, iov[i].iov_base, iov[i].iov_len)) {
            /* The stream is torn: end it. What was queued is no frame of
             * its own, and the frame's refs will never be decoded. */
            c->wstart = c->wlen;
            *went = 0;
            cc_conn_close(c);
            return CC_ENOMEM;
          }
        c->wstart = c->wlen;
      }
      if (r)
        return r;
      continue;
    }
    if (first)
      *went = 1;
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

static int check_send(const cc_conn *c, const cc_msg *m, const cc_fds *fds) {
  if (!(c->flags & CC_CONN_WRITE))
    return CC_EVALUE;
  if (fds && fds->n > 0 && (c->flags & CC_CONN_OSPIPE))
    return CC_EVALUE;
  if (m->len >= CC_FRAME_RAW || m->nrefs > MAX_REFS || (fds && fds->n > CC_FDS_MAX))
    return CC_EVALUE;
  return 0;
}

static int write_frame(cc_conn *c, const cc_msg *m, uint32_t raw, const cc_fds *fds,
                       int64_t deadline, int *went) {
  frame f = frame_make(m, raw, fds ? (uint32_t)fds->n : 0);
  size_t refs_len = m->nrefs * sizeof(uint32_t);
  if (sizeof f + refs_len + m->len <= SMALL_FRAME) {
    char one[SMALL_FRAME];
    memcpy(one, &f, sizeof f);
    if (refs_len)
      memcpy(one + sizeof f, m->refs, refs_len);
    if (m->len)
      memcpy(one + sizeof f + refs_len, m->data, m->len);
    struct iovec iov = {one, sizeof f + refs_len + m->len};
    return write_all(c, &iov, 1, fds, deadline, went);
  }
  struct iovec iov[3] = {{&f, sizeof f}, {m->refs, refs_len}, {m->data, m->len}};
  return write_all(c, iov, 3, fds, deadline, went);
}

int cc_conn_send(cc_conn *c, const cc_msg *m, uint32_t raw, const cc_fds *fds,
                 int64_t deadline, int *went) {
  *went = 0;
  int r = enter(c);
  if (r)
    return r;
  r = check_send(c, m, fds);
  if (!r)
    r = take_turn(c, &c->wturn, deadline);
  if (!r) {
    r = drain(c, deadline); /* what send_nowait left goes first */
    if (!r)
      r = write_frame(c, m, raw, fds, deadline, went);
    give_turn(&c->wturn);
  }
  leave(c);
  return r;
}

int cc_conn_send_nowait(cc_conn *c, const cc_msg *m, int *went) {
  *went = 0;
  int r = enter(c);
  if (r)
    return r;
  r = check_send(c, m, NULL);
  /* Waits for another thread's send under way only, never for the other
   * end. */
  if (!r)
    r = take_turn(c, &c->wturn, CC_FOREVER);
  if (!r) {
    frame f = frame_make(m, 0, 0);
    size_t at = c->wlen;
    r = queue_bytes(c, &f, sizeof f);
    if (!r && m->nrefs)
      r = queue_bytes(c, m->refs, m->nrefs * sizeof(uint32_t));
    if (!r && m->len)
      r = queue_bytes(c, m->data, m->len);
    if (r) {
      c->wlen = at; /* none of it: its refs stay the caller's */
    } else {
      *went = 1;
      r = try_flush(c);
    }
    if (r < 0 && r != CC_ENOMEM)
      drop_unsent(c);
    give_turn(&c->wturn);
  }
  leave(c);
  return r;
}

int cc_conn_try_flush(cc_conn *c) {
  int r = enter(c);
  if (r)
    return r;
  uint32_t z = 0;
  if (c->woff < c->wlen && atomic_compare_exchange_strong(&c->wturn, &z, 1)) {
    r = try_flush(c);
    if (r < 0)
      drop_unsent(c); /* the other end is gone: recv will say EOF */
    give_turn(&c->wturn);
  }
  leave(c);
  return r;
}

int cc_conn_flush(cc_conn *c) {
  int r = enter(c);
  if (r)
    return r;
  if (c->woff < c->wlen) {
    r = take_turn(c, &c->wturn, CC_FOREVER);
    if (!r) {
      r = try_flush(c);
      if (r < 0)
        drop_unsent(c);
      give_turn(&c->wturn);
    }
  }
  leave(c);
  return r;
}

/* --------------------------------------------------------------- reads */

/* Keeps the descriptors a read brought, in order. */
static void take_fds(cc_conn *c, struct msghdr *mh) {
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      int nf = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < nf; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
        if (c->nfdq < CC_CONN_FDQ)
          c->fdq[c->nfdq++] = fd;
        else
          close(fd);
      }
    }
}

/* Makes `need` bytes available in the read buffer, the receivers' turn
 * held. 0; 1 at the end with nothing buffered; CC_ETORN at the end with
 * some; or a wait's error. */
static int fill(cc_conn *c, size_t need, int64_t deadline) {
  while (c->rlen - c->roff < need) {
    if (c->roff && c->rcap - c->rlen < need) {
      memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
      c->rlen -= c->roff;
      c->roff = 0;
    }
    if (c->rcap - c->roff < need || c->rcap - c->rlen < READ_CHUNK) {
      size_t cap = c->rcap ? c->rcap : 65536;
      while (cap - c->roff < need || cap - c->rlen < READ_CHUNK)
        cap *= 2;
      char *b = realloc(c->rbuf, cap);
      if (!b)
        return CC_ENOMEM;
      c->rbuf = b;
      c->rcap = cap;
    }
    struct iovec iov = {c->rbuf + c->rlen, c->rcap - c->rlen};
    char cbuf[CMSG_SPACE(sizeof(int) * CC_FDS_MAX)];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf};
    ssize_t k = c->flags & CC_CONN_OSPIPE
                    ? read(c->fd, iov.iov_base, iov.iov_len)
                    : recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN)
        return errno == ECONNRESET ? (c->rlen == c->roff ? 1 : CC_ETORN) : CC_ESYS;
      int r = wait_io(c, POLLIN, deadline, 1);
      if (r)
        return r;
      continue;
    }
    if (!(c->flags & CC_CONN_OSPIPE))
      take_fds(c, &mh);
    if (k == 0)
      return c->rlen == c->roff ? 1 : CC_ETORN;
    c->rlen += (size_t)k;
  }
  return 0;
}

/* One frame into m and fds, the receivers' turn held. */
static int read_frame(cc_conn *c, cc_msg *m, cc_fds *fds, size_t maxlen, int64_t deadline) {
  int r = fill(c, sizeof(frame), deadline);
  if (r)
    return r == 1 ? CC_EEOF : r;
  frame f;
  memcpy(&f, c->rbuf + c->roff, sizeof f);
  uint32_t raw = f.len & CC_FRAME_RAW, len = f.len & ~CC_FRAME_RAW;
  /* Not a frame's header: what the last frame's writer did not write when
   * it died is here, and every receive says so from now on (nothing of
   * the stream is taken: where the next frame starts cannot be known). */
  if (f.check >> 16 != head_check(&f))
    return CC_ETORN;
  if (f.nrefs > MAX_REFS || f.nfds > CC_FDS_MAX)
    return CC_ECORRUPT;
  if (len > maxlen) {
    /* As in CPython: the rest of the message cannot be skipped safely. */
    cc_conn_close(c);
    return CC_ETOOLONG;
  }
  size_t head = sizeof f + f.nrefs * sizeof(uint32_t);
  r = fill(c, head + len, deadline);
  if (r)
    return r == 1 ? CC_ETORN : r;
  const char *p = c->rbuf + c->roff + sizeof f;
  if ((f.check & 0xffff) != body_check(&f, p, p + f.nrefs * sizeof(uint32_t)))
    return CC_ETORN; /* its writer died in it; another's bytes follow */
  if (cc_msg_reserve(m, len, f.nrefs))
    return CC_ENOMEM;
  if (f.nrefs)
    memcpy(m->refs, p, f.nrefs * sizeof(uint32_t));
  if (len)
    memcpy(m->data, p + f.nrefs * sizeof(uint32_t), len);
  c->roff += head + len;
  m->len = len;
  m->nrefs = f.nrefs;
  /* This frame's descriptors are the first ones queued. */
  int take = (int)f.nfds < c->nfdq ? (int)f.nfds : c->nfdq;
  fds->n = 0;
  for (int i = 0; i < take; i++)
    fds->fd[fds->n++] = c->fdq[i];
  memmove(c->fdq, c->fdq + take, (size_t)(c->nfdq - take) * sizeof(int));
  c->nfdq -= take;
  return raw ? 1 : 0;
}

int cc_conn_recv(cc_conn *c, cc_msg *m, cc_fds *fds, size_t maxlen, int64_t deadline) {
  fds->n = 0;
  int r = enter(c);
  if (r)
    return r;
  if (!(c->flags & CC_CONN_READ)) {
    leave(c);
    return CC_EVALUE;
  }
  r = take_turn(c, &c->rturn, deadline);
  if (!r) {
    r = read_frame(c, m, fds, maxlen, deadline);
    give_turn(&c->rturn);
  }
  leave(c);
  return r;
}

int cc_conn_poll(cc_conn *c, int64_t deadline) {
  int r = enter(c);
  if (r)
    return r;
  if (c->rlen == c->roff)
    r = wait_io(c, POLLIN, deadline, 0);
  leave(c);
  return r;
}

int cc_conn_wait(cc_conn *const *cs, int n, uint8_t *ready, const char *label,
                 int64_t deadline) {
  struct pollfd small[16];
  struct pollfd *pf = n <= 16 ? small : malloc(sizeof *pf * (size_t)n);
  if (!pf)
    return CC_ENOMEM;
  int nready = 0;
  for (int i = 0; i < n; i++) {
    cc_conn *c = cs[i];
    /* Closed, or bytes already read: ready (to say so, or to be read). */
    int in = enter(c) == 0;
    ready[i] = !in || c->rlen > c->roff;
    nready += ready[i];
    pf[i].fd = in ? c->fd : -1;
    pf[i].events = POLLIN | (in && c->wlen > c->woff ? POLLOUT : 0);
    pf[i].revents = 0;
  }
  int r = 0, outside = 0;
  for (int i = 0; i < n; i++)
    outside |= !of_the_run(cs[i]);
  cc_waiting w = {.kind = CC_WAIT_WAIT, .label = label, .deadline = deadline};
  while (!nready) {
    if (!outside)
      cc_wait_begin(&w);
    int64_t end = slice(deadline);
    r = cc_wait_fds(pf, n, end);
    if (r == CC_EINTR || r == CC_ESYS || r == CC_EDEADLK)
      break;
    int flushed = 0;
    for (int i = 0; i < n; i++) {
      cc_conn *c = cs[i];
      if (pf[i].fd < 0)
        continue;
      if (closing(c)) {
        ready[i] = 1; /* closed by another thread meanwhile */
      } else if (pf[i].revents & POLLOUT) {
        /* Room to send what waited: send it, and look again. */
        flushed = 1;
        int f = 1;
        uint32_t z = 0;
        if (atomic_compare_exchange_strong(&c->wturn, &z, 1)) {
          f = try_flush(c);
          if (f < 0)
            drop_unsent(c); /* the other end is gone: recv will say EOF */
          give_turn(&c->wturn);
        }
        if (f <= 0)
          pf[i].events = POLLIN;
        if (f < 0)
          ready[i] = 1;
      }
      if (pf[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
        ready[i] = 1;
      nready += ready[i];
      pf[i].revents = 0;
    }
    r = 0;
    if (!nready && !flushed && cc_now() >= deadline)
      break;
  }
  cc_wait_end(&w);
  for (int i = 0; i < n; i++)
    if (pf[i].fd >= 0)
      leave(cs[i]);
  if (pf != small)
    free(pf);
  return r < 0 ? r : nready;
}
