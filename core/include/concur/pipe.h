/* pipe - the pipe transport: framed messages, and descriptors beside them */
#ifndef CONCUR_PIPE_H
#define CONCUR_PIPE_H

#include "concur/msg.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * DESIGN. A connection is one end of a socketpair (a duplex Pipe, through
 * which descriptors travel with SCM_RIGHTS) or of a pipe(2) (a one-way
 * Pipe, as CPython's: the kernel takes a small write to a pipe for a third
 * of what a socket costs). Either way the lesson holds: a receiver sees EOF
 * only when every copy of the other end, in every process, is closed. A
 * message is a frame: {length | CC_FRAME_RAW, number of refs, number of
 * descriptors, check}, the refs, the payload; the descriptors ride with
 * the frame's first byte. The check (a hash of the header and one of the
 * rest) finds a frame torn by a writer that died in it: a pipe takes
 * writes of up to PIPE_BUF (4 KiB) whole, a longer one in pieces, and
 * another writer's bytes may follow the piece that went. Received bytes are buffered (one read often holds
 * several frames), and so are received descriptors, which belong to the
 * frames in order. What send_nowait cannot send at once waits in the
 * connection, whole frames in order, and goes before the next send.
 *
 * A connection lives in the memory of one process, and a forked child has
 * a copy: what waited to be sent is the parent's to send, and the child's
 * copy forgets it. Its threads may use it at once: they take turns, one
 * receiver and one sender at a time, each for a whole frame, so no message
 * is torn or mixed with another; and a close while others are inside
 * makes them leave (CC_ECLOSED), the last one closing the descriptor, so
 * that no wait is left on a descriptor that is gone or reused.
 */

#define CC_CONN_READ 1
#define CC_CONN_WRITE 2
#define CC_CONN_OSPIPE 4      /* a pipe(2) end: no descriptors travel */
#define CC_FRAME_RAW 0x80000000u /* a frame of bytes (send_bytes), not a message */
#define CC_CONN_FDQ 64
/* In `inside`: close() came; whoever brings the count to 0 with it set
 * (the closer, or the last thread to leave) closes, exactly once. */
#define CC_CONN_CLOSING 0x80000000u

typedef struct cc_conn {
  int fd; /* -1 once closed */
  int flags;
  int pid;                    /* the process whose copy this is */
  _Atomic uint32_t rturn;     /* the receivers' turn: 0 free, 1 taken, 2 others wait */
  _Atomic uint32_t wturn;     /* the senders' */
  _Atomic uint32_t inside;    /* threads inside a call, | CC_CONN_CLOSING */
  char *rbuf;
  size_t rcap, rlen, roff;
  int fdq[CC_CONN_FDQ];       /* descriptors received, not yet taken by a frame */
  int nfdq;
  char *wbuf;                 /* what send_nowait could not send yet */
  size_t wcap, wlen, woff;
  size_t wstart;              /* where its frames start: after the rest of one */
  char label[32];             /* "Connection (fd 5)", for reports of its waits */
} cc_conn;

/* Makes a Pipe: duplex (a socketpair, both ends both ways) or one way (a
 * pipe(2): a receives, b sends). 0 or CC_ESYS (errno set). */
int cc_pipe_new(cc_conn *a, cc_conn *b, int duplex);
/* Makes c the connection of a descriptor it now owns (one received, or
 * any: a Descriptor has flags 0). */
void cc_conn_init(cc_conn *c, int fd, int flags);
/* True when c is open and no close is under way. */
int cc_conn_open(const cc_conn *c);

/* Sends m (raw: as bytes, for recv_bytes) with its descriptors, whole,
 * waiting while the other end is full, after what waits from send_nowait.
 * *went tells whether the frame went or is committed to go (its refs then
 * travel with it; otherwise they stay the caller's): an interrupt after
 * part of it went leaves its rest waiting in c, to go first with the next
 * send, so that the stream stays whole. 0, CC_EEOF (the other end is
 * closed), CC_EINTR, CC_ETIMEDOUT, CC_ECLOSED, CC_EVALUE (this end does not
 * send; descriptors on a one-way pipe; a frame over 2 GiB), CC_ENOMEM,
 * CC_ESYS (errno set). */
int cc_conn_send(cc_conn *c, const cc_msg *m, uint32_t raw, const cc_fds *fds,
                 int64_t deadline, int *went);
/* Sends m without waiting for the other end (only for another thread's
 * send under way): what it cannot take now waits in c. *went as for
 * cc_conn_send (once queued, m's refs go with it, or with what waits when
 * it is dropped). 0 when all went, 1 when some waits, or an error as
 * cc_conn_send's. */
int cc_conn_send_nowait(cc_conn *c, const cc_msg *m, int *went);
/* Sends what waits without blocking: 0 when nothing is left, 1 when some
 * is, CC_EEOF (what waited is dropped, with its refs) or CC_ESYS. */
int cc_conn_flush(cc_conn *c);
/* The same, but only when no other thread sends meanwhile (then 0, as if
 * nothing were left): for a wait on many objects, which must not block. */
int cc_conn_try_flush(cc_conn *c);

/* Receives one frame into m (its refs become the caller's) and its
 * descriptors into fds (the caller's to close). Returns 0 for a message, 1
 * for raw bytes; CC_EEOF at the end of the stream; CC_ETORN when it ends
 * inside a frame; CC_ETOOLONG when the frame is longer than maxlen (as
 * CPython, c is then closed: the rest cannot be skipped safely);
 * CC_ECORRUPT; CC_ETIMEDOUT or CC_EINTR (what came of a frame stays
 * buffered); CC_ECLOSED; CC_EVALUE (this end does not receive);
 * CC_ENOMEM; CC_ESYS. */
int cc_conn_recv(cc_conn *c, cc_msg *m, cc_fds *fds, size_t maxlen, int64_t deadline);
/* Waits until there is something to receive (or the end): 0, CC_ETIMEDOUT,
 * CC_EINTR, CC_ECLOSED. */
int cc_conn_poll(cc_conn *c, int64_t deadline);
/* Waits until one of n connections has something to receive, or its end,
 * or was closed, sending what waits in them meanwhile; ready[i] is set for
 * those. label says what is waited on, in reports ("waits on <label>").
 * The number ready (0 at the deadline), or CC_EINTR, CC_ENOMEM. */
int cc_conn_wait(cc_conn *const *cs, int n, uint8_t *ready, const char *label,
                 int64_t deadline);

/* Closes c (what waits to be sent is dropped, with its refs). Threads
 * inside a call on it leave with CC_ECLOSED; the last one closes the
 * descriptor. Idempotent. */
void cc_conn_close(cc_conn *c);
/* The descriptor, which c no longer owns (c is closed without it); -1
 * while another thread is inside a call on it. */
int cc_conn_detach(cc_conn *c);

#endif
