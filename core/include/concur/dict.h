/* dict - Manager dicts, lists and Namespaces: encoded values in the arena */
#ifndef CONCUR_DICT_H
#define CONCUR_DICT_H

#include "concur/lock.h"
#include "concur/queue.h"

#include <stdint.h>

/* Keys and values are encoded bytes (the codec's) kept in arena blobs; a
 * value's object references belong to the container. Every operation holds
 * the container's lock and becomes visible with one store; the next holder
 * after a process killed in the middle of one finishes or forgets what it
 * began, so the container stays whole, and frees what it had allocated for
 * it (values are copied into the arena under the lock for that). */
/* Blocks an operation has made or is letting go of, which a death would
 * leave nobody's: recorded (under the lock) from the moment they are
 * made, so that the next holder frees them if they are not in the table. */
enum { CC_DICT_PENDING = 5 };

typedef struct cc_dict {
  cc_obj hdr;
  cc_lock lock;
  _Atomic uint32_t table; /* arena offset of the current table */
  uint32_t is_list;
  _Atomic uint64_t pending[CC_DICT_PENDING]; /* offset | generation << 32 */
} cc_dict;

extern const cc_type cc_dict_type;
extern const cc_type cc_list_type;
extern const cc_type cc_namespace_type;

enum { CC_DICT, CC_LIST, CC_NAMESPACE };

/* A new, empty container with one reference owned by the caller; NULL when
 * the arena is full. */
cc_dict *cc_dict_new(int kind);
/* The number of keys (or items) into *n. 0, or CC_EINTR (Ctrl-C) while it
 * waits for the container's lock; every operation below can also return
 * CC_EINTR, and CC_EDEADLK, before it changed anything. */
int cc_dict_len(cc_dict *d, uint32_t *n);

/* Dicts and Namespaces, by key bytes (CC_EVALUE on a list, as the list
 * calls below return it on a dict). Values come out as copies with their
 * own references (the caller's); values go in with their references (the
 * container's, on success). */
/* 0 (out filled), CC_EEMPTY when there is no such key, CC_ENOMEM when out
 * cannot grow. */
int cc_dict_get(cc_dict *d, const char *key, size_t klen, cc_msg *out);
/* 0 or CC_EARENAFULL. */
int cc_dict_set(cc_dict *d, const char *key, size_t klen, const cc_msg *val);
/* Removes the key; its value goes to out (or is dropped when out is NULL).
 * 0, CC_EEMPTY, or CC_ENOMEM (the key is gone and out could not grow for
 * its value, which is dropped). */
int cc_dict_del(cc_dict *d, const char *key, size_t klen, cc_msg *out);

/* Read-modify-write under the lock: fn gets the old value (NULL when absent;
 * its references are fn's to keep or drop) and fills `val` with the new one
 * (whose references go to the container); a non-zero return from fn aborts
 * the update and is returned. */
typedef int (*cc_dict_fn)(void *ud, const cc_msg *old, cc_msg *val);
int cc_dict_update(cc_dict *d, const char *key, size_t klen, cc_dict_fn fn, void *ud);

/* Lists, by 0-based index. */
int cc_list_get(cc_dict *d, uint32_t i, cc_msg *out);  /* 0 or CC_EEMPTY */
int cc_list_set(cc_dict *d, uint32_t i, const cc_msg *val); /* 0, CC_EEMPTY, CC_EARENAFULL */
/* Inserts before i (i == len, or CC_LIST_END, appends: CC_LIST_END reads the
 * length under the lock, so concurrent appends keep their order).
 * 0, CC_EEMPTY (i > len), CC_EARENAFULL. */
#define CC_LIST_END UINT32_MAX
int cc_list_insert(cc_dict *d, uint32_t i, const cc_msg *val);
/* Removes item i into out (or drops it). 0 or CC_EEMPTY. */
int cc_list_pop(cc_dict *d, uint32_t i, cc_msg *out);

/* A snapshot: every key (dicts) and value, copied with their references,
 * into arrays the caller frees with cc_dict_snapshot_free. */
typedef struct cc_snapshot {
  cc_msg *keys; /* NULL for lists */
  cc_msg *vals;
  uint32_t n;
} cc_snapshot;
int cc_dict_snapshot(cc_dict *d, cc_snapshot *s);
void cc_dict_snapshot_free(cc_snapshot *s);

#endif
