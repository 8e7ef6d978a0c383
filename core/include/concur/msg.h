/* msg - a message as the core carries it: bytes, the objects it refers to, descriptors */
#ifndef CONCUR_MSG_H
#define CONCUR_MSG_H

#include <stddef.h>
#include <stdint.h>

/* Bytes, and the arena objects they refer to (one reference each travels
 * with the message, as arena offsets). The buffers are the caller's
 * (malloc), reused from call to call; cc_msg_free releases them. A message
 * is never shared between threads: each call has its own. */
typedef struct cc_msg {
  char *data;
  size_t len, cap;
  uint32_t *refs;
  uint32_t nrefs, refcap;
} cc_msg;

/* Makes room for len bytes and nrefs refs (what m held may be lost).
 * 0 or CC_ENOMEM. */
int cc_msg_reserve(cc_msg *m, size_t len, uint32_t nrefs);
void cc_msg_free(cc_msg *m);
/* Drops the references m carries (one per object; nrefs becomes 0): for a
 * message that will not be delivered. */
void cc_msg_unref(cc_msg *m);
/* Drops n object references stored as arena offsets at refs, which need
 * not be aligned (a frame's in a byte buffer). */
void cc_refs_unref(const void *refs, uint32_t n);

/* Descriptors that travel beside a message (Connections through a duplex
 * Pipe), in order. */
#define CC_FDS_MAX 16
typedef struct cc_fds {
  int fd[CC_FDS_MAX];
  int n;
} cc_fds;

#endif
