/* ready - the run's doorbell: waiting for any of many objects at once */
#include "concur/ready.h"
#include "concur/arena.h"
#include "concur/error.h"
#include "concur/proctab.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

cc__bell *cc__the_bell;
static int bell_fd = -1; /* outlives an arena that a test unmapped */

int cc_ready_init(void) {
  cc__the_bell = NULL;
  if (bell_fd >= 0)
    close(bell_fd);
  bell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (bell_fd < 0)
    return CC_ESYS;
  cc__bell *b = cc_arena_alloc(sizeof *b);
  if (!b)
    return CC_EARENAFULL;
  memset(b, 0, sizeof *b);
  b->nslots = cc_proctab_capacity();
  b->by_slot = cc_arena_alloc(sizeof *b->by_slot * b->nslots);
  if (!b->by_slot) {
    cc_arena_free(b);
    return CC_EARENAFULL;
  }
  memset(b->by_slot, 0, sizeof *b->by_slot * b->nslots);
  b->fd = bell_fd;
  cc__the_bell = b;
  return 0;
}

void cc__ready_forget_slot(int slot) {
  cc__bell *b = cc__the_bell;
  if (!b || slot < 0 || (uint32_t)slot >= b->nslots)
    return;
  atomic_fetch_sub(&b->watchers, atomic_exchange(&b->by_slot[slot].watchers, 0));
  atomic_fetch_sub(&b->pollers, atomic_exchange(&b->by_slot[slot].pollers, 0));
}

/* Counts the calling thread's wait in (n 1) or out (n -1), by its process's
 * slot too. */
static void count(cc__bell *b, int polls, int n) {
  int slot = cc_proc_self_slot();
  int mine = slot >= 0 && (uint32_t)slot < b->nslots;
  if (polls) {
    atomic_fetch_add(&b->pollers, (uint32_t)n);
    if (mine)
      atomic_fetch_add(&b->by_slot[slot].pollers, (uint32_t)n);
  }
  atomic_fetch_add(&b->watchers, (uint32_t)n);
  if (mine)
    atomic_fetch_add(&b->by_slot[slot].watchers, (uint32_t)n);
}

void cc__ready_ring(void) {
  cc__bell *b = cc__the_bell;
  atomic_fetch_add(&b->epoch, 1);
  cc_futex_wake(&b->epoch, INT32_MAX);
  if (atomic_load(&b->pollers)) {
    uint64_t one = 1;
    ssize_t n = write(b->fd, &one, sizeof one);
    (void)n; /* EAGAIN after 2^64 - 2 rings: it is ready already */
  }
}

/* An epoll set that is ready once after each ring (the eventfd's writes,
 * edge-triggered), or -1. */
static int bell_set(cc__bell *b) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    return -1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, b->fd, &ev) != 0) {
    close(ep);
    return -1;
  }
  return ep;
}

int cc_ready_wait(cc_ready_check check, void *ctx, struct pollfd *fds, int nfds, cc_waiting *w,
                  int64_t deadline) {
  cc__bell *b = cc__the_bell;
  if (!b)
    return CC_ESYS;
  struct pollfd small[17], *pf = small;
  int ep = -1, r;
  if (nfds && nfds + 1 > (int)(sizeof small / sizeof *small) &&
      !(pf = malloc(sizeof *pf * (size_t)(nfds + 1))))
    return CC_ENOMEM;
  count(b, nfds > 0, 1);
  if (nfds && (ep = bell_set(b)) < 0) {
    r = CC_ESYS;
    goto out;
  }
  for (int i = 0; i < nfds; i++)
    fds[i].revents = 0;
  if (w)
    cc_wait_begin(w);
  for (;;) {
    uint32_t seen = atomic_load(&b->epoch);
    r = check(ctx, fds, nfds);
    if (r != 0)
      break;
    if (cc_now() >= deadline)
      break;
    if (!nfds) {
      r = cc_futex_wait(&b->epoch, seen, deadline);
    } else {
      memcpy(pf, fds, sizeof *pf * (size_t)nfds);
      pf[nfds] = (struct pollfd){.fd = ep, .events = POLLIN};
      int64_t now = cc_now(), slice = now + CC_WAIT_SLICE_NS;
      r = cc_wait_fds(pf, nfds + 1, slice < deadline ? slice : deadline);
      for (int i = 0; i < nfds; i++)
        fds[i].revents = r > 0 ? pf[i].revents : 0;
      if (r > 0 && pf[nfds].revents) {
        struct epoll_event ev;
        while (epoll_wait(ep, &ev, 1, 0) > 0)
          ; /* the ring is seen: the next one makes it ready again */
      }
    }
    if (r == CC_EINTR || r == CC_EDEADLK || r == CC_ESYS)
      break;
    r = 0; /* rang, ready, a slice or the deadline: look */
  }
  if (w)
    cc_wait_end(w);
out:
  count(b, nfds > 0, -1);
  if (nfds) {
    if (ep >= 0)
      close(ep);
    if (pf != small)
      free(pf);
  }
  return r;
}
