/* msg - a message as the core carries it: bytes, the objects it refers to, descriptors */
#include "concur/msg.h"
#include "concur/arena.h"
#include "concur/error.h"

#include <stdlib.h>
#include <string.h>

int cc_msg_reserve(cc_msg *m, size_t len, uint32_t nrefs) {
  if (len > m->cap) {
    size_t cap = m->cap ? m->cap : 256;
    while (cap < len)
      cap *= 2;
    char *d = realloc(m->data, cap);
    if (!d)
      return CC_ENOMEM;
    m->data = d;
    m->cap = cap;
  }
  if (nrefs > m->refcap) {
    uint32_t cap = m->refcap ? m->refcap : 8;
    while (cap < nrefs)
      cap *= 2;
    uint32_t *r = realloc(m->refs, cap * sizeof *r);
    if (!r)
      return CC_ENOMEM;
    m->refs = r;
    m->refcap = cap;
  }
  return 0;
}

void cc_refs_unref(const void *refs, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    uint32_t off;
    memcpy(&off, (const char *)refs + i * sizeof off, sizeof off);
    cc_obj *o = cc_obj_from_off(off);
    if (o)
      cc_obj_unref(o);
  }
}

void cc_msg_unref(cc_msg *m) {
  cc_refs_unref(m->refs, m->nrefs);
  m->nrefs = 0;
}

void cc_msg_free(cc_msg *m) {
  free(m->data);
  free(m->refs);
  memset(m, 0, sizeof *m);
}
