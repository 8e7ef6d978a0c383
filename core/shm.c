/* shm - Value and Array: typed numbers and arrays in shared memory */
#include "concur/shm.h"

#include <string.h>

static void shm_destroy(cc_obj *o) {
  cc_shm *s = (cc_shm *)o;
  if (s->lock)
    cc_obj_unref(&s->lock->hdr);
}

const cc_type cc_value_type = {"Value", sizeof(cc_shm), shm_destroy};
const cc_type cc_array_type = {"Array", sizeof(cc_shm), shm_destroy};

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

void *cc_shm_item(cc_shm *s, uint32_t i) {
  return (char *)s->items + (size_t)i * s->itemsize;
}

void cc_shm_load(cc_shm *s, uint32_t i, void *out) {
  void *p = cc_shm_item(s, i);
  switch (s->itemsize) {
  case 1: *(uint8_t *)out = __atomic_load_n((uint8_t *)p, __ATOMIC_SEQ_CST); break;
  case 2: *(uint16_t *)out = __atomic_load_n((uint16_t *)p, __ATOMIC_SEQ_CST); break;
  case 4: *(uint32_t *)out = __atomic_load_n((uint32_t *)p, __ATOMIC_SEQ_CST); break;
  default: *(uint64_t *)out = __atomic_load_n((uint64_t *)p, __ATOMIC_SEQ_CST); break;
  }
}

void cc_shm_store(cc_shm *s, uint32_t i, const void *in) {
  void *p = cc_shm_item(s, i);
  switch (s->itemsize) {
  case 1: __atomic_store_n((uint8_t *)p, *(const uint8_t *)in, __ATOMIC_SEQ_CST); break;
  case 2: __atomic_store_n((uint16_t *)p, *(const uint16_t *)in, __ATOMIC_SEQ_CST); break;
  case 4: __atomic_store_n((uint32_t *)p, *(const uint32_t *)in, __ATOMIC_SEQ_CST); break;
  default: __atomic_store_n((uint64_t *)p, *(const uint64_t *)in, __ATOMIC_SEQ_CST); break;
  }
}
