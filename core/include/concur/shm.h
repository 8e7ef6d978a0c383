/* shm - Value and Array: typed numbers and arrays in shared memory */
#ifndef CONCUR_SHM_H
#define CONCUR_SHM_H

#include "concur/lock.h"

#include <stdint.h>

/* Items live right after the header. Each item is read and written whole
 * (atomically, for 1, 2, 4 and 8 bytes); `v.value = v.value + 1` is still a
 * read and then a write, and races without the lock, as in the lessons. */
typedef struct cc_shm {
  cc_obj hdr;
  cc_lock *lock; /* an RLock or Lock (referenced), or NULL for Raw* */
  void *data;    /* the items: `items` below, or in the lock's block */
  char typecode;
  uint8_t itemsize;
  uint16_t is_array;
  uint32_t length;
  uint64_t items[]; /* aligned for every typecode */
} cc_shm;

extern const cc_type cc_value_type;
extern const cc_type cc_array_type;

/* The size of one item of a typecode (b B h H i I l L q Q f d c), or 0 when
 * the typecode is unknown. */
int cc_shm_itemsize(char typecode);
/* A zeroed Value (is_array 0, length 1) or Array of `length` items with one
 * reference owned by the caller; lock is referenced when not NULL. NULL
 * when the arena is full. */
cc_shm *cc_shm_new(char typecode, int is_array, uint32_t length, cc_lock *lock);
/* A zeroed Value with a new RLock of its own (CPython's default), with one
 * reference owned by the caller; NULL when the arena is full. Its item lives
 * in the lock's block, in the lock word's cache line: the CAS that takes the
 * lock brings the value along, so processes that take turns at
 * `v.value = v.value + 1` miss the cache once per turn instead of twice. */
cc_shm *cc_shm_new_locked(char typecode);
static inline void *cc_shm_item(cc_shm *s, uint32_t i) {
  return (char *)s->data + (size_t)i * s->itemsize;
}

/* Whole-item loads and stores of the item's bytes, inline: a Value's read
 * and write are most of `v.value = v.value + 1`. Loads acquire and stores
 * release, so a flag written after the data it announces is seen after it,
 * on every architecture (plain moves on x86). */
static inline void cc_shm_load(cc_shm *s, uint32_t i, void *out) {
  void *p = cc_shm_item(s, i);
  switch (s->itemsize) {
  case 1: *(uint8_t *)out = __atomic_load_n((uint8_t *)p, __ATOMIC_ACQUIRE); break;
  case 2: *(uint16_t *)out = __atomic_load_n((uint16_t *)p, __ATOMIC_ACQUIRE); break;
  case 4: *(uint32_t *)out = __atomic_load_n((uint32_t *)p, __ATOMIC_ACQUIRE); break;
  default: *(uint64_t *)out = __atomic_load_n((uint64_t *)p, __ATOMIC_ACQUIRE); break;
  }
}

static inline void cc_shm_store(cc_shm *s, uint32_t i, const void *in) {
  void *p = cc_shm_item(s, i);
  switch (s->itemsize) {
  case 1: __atomic_store_n((uint8_t *)p, *(const uint8_t *)in, __ATOMIC_RELEASE); break;
  case 2: __atomic_store_n((uint16_t *)p, *(const uint16_t *)in, __ATOMIC_RELEASE); break;
  case 4: __atomic_store_n((uint32_t *)p, *(const uint32_t *)in, __ATOMIC_RELEASE); break;
  default: __atomic_store_n((uint64_t *)p, *(const uint64_t *)in, __ATOMIC_RELEASE); break;
  }
}

#endif
