/* shm - Value and Array: typed numbers and arrays in shared memory */
#include "concur/shm.h"

#include <string.h>

static void shm_destroy(cc_obj *o) {
  cc_shm *s = (cc_shm *)o;
  if (s->lock)
    cc_obj_unref(&s->lock->hdr);
}

const cc_type cc_value_type = {.name = "Value", .size = sizeof(cc_shm), .destroy = shm_destroy};
const cc_type cc_array_type = {.name = "Array", .size = sizeof(cc_shm), .destroy = shm_destroy};

int cc_shm_itemsize(char t) {
  switch (t) {
  case 'b': case 'B': case 'c':
    return 1;
  case 'h': case 'H':
    return 2;
  case 'i': case 'I': case 'f':
    return 4;
  case 'l': case 'L': case 'q': case 'Q': case 'd':
    return 8;
  default:
    return 0;
  }
}

cc_shm *cc_shm_new(char typecode, int is_array, uint32_t length, cc_lock *lock) {
  int size = cc_shm_itemsize(typecode);
  if (!size)
    return NULL;
  cc_shm *s = cc_obj_new_sized(is_array ? &cc_array_type : &cc_value_type,
                               sizeof(cc_shm) + (size_t)size * length + 8);
  if (!s)
    return NULL;
  s->data = s->items;
  s->typecode = typecode;
  s->itemsize = (uint8_t)size;
  s->is_array = (uint16_t)is_array;
  s->length = length;
  if (lock) {
    cc_obj_ref(&lock->hdr);
    s->lock = lock;
  }
  return s;
}

/* An RLock with room for one item after it: 48 bytes, so with its block
 * header one 64-byte block, which the arena puts on a cache line of its own. */
typedef struct lock_with_item {
  cc_lock lock;
  uint64_t item;
} lock_with_item;

_Static_assert(sizeof(lock_with_item) <= CC_CACHE_LINE - 16,
               "a Value's lock and item must fit one cache line");

cc_shm *cc_shm_new_locked(char typecode) {
  if (!cc_shm_itemsize(typecode))
    return NULL;
  lock_with_item *li = cc_obj_new_sized(&cc_rlock_type, sizeof *li);
  if (!li)
    return NULL;
  cc_lock_init(&li->lock, 1);
  cc_lock_set_known(&li->lock, &li->lock.hdr); /* get_lock() gives it to its user */
  cc_shm *s = cc_shm_new(typecode, 0, 1, &li->lock);
  cc_obj_unref(&li->lock.hdr); /* s holds it now, or nobody does */
  if (s)
    s->data = &li->item;
  return s;
}
