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
void *cc_shm_item(cc_shm *s, uint32_t i);
/* Whole-item loads and stores of the item's bytes. */
void cc_shm_load(cc_shm *s, uint32_t i, void *out);
void cc_shm_store(cc_shm *s, uint32_t i, const void *in);

#endif
