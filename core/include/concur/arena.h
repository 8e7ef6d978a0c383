/* arena - the one shared mapping every concur object lives in */
#ifndef CONCUR_ARENA_H
#define CONCUR_ARENA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Every shared object starts with this header. `type` indexes the type
 * registry (the same in every process, since all are forks of the one that
 * registered the types); `refs` counts process holds plus references from
 * other objects (a Condition holds its Lock). */
typedef struct cc_obj {
  uint32_t type;
  _Atomic uint32_t refs;
  uint32_t id;   /* its serial among the run's objects of its type, from 1 */
  uint32_t name; /* the arena offset of the name it was given, or 0 */
} cc_obj;

/* The bytes of a name, its NUL included. */
#define CC_OBJ_NAME_MAX 64

typedef struct cc_type {
  const char *name;
  size_t size;
  /* Releases what the object holds (not the object's own block); may be NULL. */
  void (*destroy)(cc_obj *o);
  /* Whether thread tid holds o (a Lock, an RWLock), for a deadlock's
   * report of what each party holds; NULL for a type nobody holds. */
  int (*held_by)(const cc_obj *o, int32_t tid);
  /* Whether concur.wait finds o ready (a Queue not empty, an Event set, a
   * Semaphore above 0); NULL for a type it cannot wait on. A change that
   * makes an object ready calls cc_ready_ring (ready.h) after it. */
  int (*ready)(const cc_obj *o);
} cc_type;

#define CC_TYPES_MAX 64

/* Maps `size` bytes of shared anonymous memory (MAP_NORESERVE: untouched pages
 * cost nothing) and makes it this process's arena. Call once, before the first
 * fork. Fails with CC_ESYS (mmap) or CC_EVALUE (size too small or too big). */
int cc_arena_init(size_t size);
/* Unmaps the arena; only for tests that make several. */
void cc_arena_fini(void);
int cc_arena_ready(void);

#define CC_CACHE_LINE 64

/* Allocates `n` bytes, 16-byte aligned, not zeroed; a block of 64 bytes or
 * more (n > 16, with its header) is alone in its cache lines. Returns NULL
 * when the arena is full. Safe between processes and threads; lock-free. */
void *cc_arena_alloc(size_t n);
/* The same, zeroed: a block never used before is left as the mapping made
 * it (zeros, its pages not yet touched), a used one is cleared. */
void *cc_arena_zalloc(size_t n);
void cc_arena_free(void *p);
/* A block's generation: it changes at every allocation of the block, so
 * that one recorded with it can be told from a later allocation at the
 * same place (a dead process's half-done operation, mended by another).
 * cc_arena_is_gen: the block is live and still of that generation. */
uint32_t cc_arena_gen(const void *p);
int cc_arena_is_gen(const void *p, uint32_t gen);
/* The usable size of a block from cc_arena_alloc. */
size_t cc_arena_block_size(const void *p);

size_t cc_arena_size(void);
size_t cc_arena_used(void);
/* Bytes never yet cut into blocks (freed blocks keep their size class). */
size_t cc_arena_untouched(void);
/* Blocks allocated and not freed, for leak tests. */
size_t cc_arena_live_blocks(void);
/* A message naming the configured size and what to do, for ArenaFull. */
const char *cc_arena_full_message(void);

/* 16 random bytes made with the arena: known to every process of the run
 * and to nobody else (the codec signs bytecode with it). */
const uint8_t *cc_arena_secret(void);

/* Arena offsets (stable across processes, in 16-byte units) and back. */
uint32_t cc_arena_off(const void *p);
void *cc_arena_ptr(uint32_t off);
/* Positions of 8-byte aligned places, in 8-byte units from the arena's
 * start (32 bits reach 32 GiB, the arena at most 16), and back: for
 * records that lie inside blocks (a queue's). */
uint32_t cc_arena_pos(const void *p);
void *cc_arena_at(uint32_t pos);
/* True when p points into the arena. */
int cc_arena_contains(const void *p);
/* Room for the process table, reserved at init. */
/* The room the arena keeps at its start for the process table. */
#define CC__ARENA_RESERVED (2u << 20)
void *cc__arena_reserved(size_t *len);

/* Type registry. Registering the same type twice returns the same tag. Every
 * process registers the same types in the same order before its first fork
 * (cc_proc_init), so a tag means the same type everywhere. */
int cc_type_register(const cc_type *t);
const cc_type *cc_type_find(const char *name);

/* The registry, read inline: bindings check an object's type on every
 * method call. */
extern const cc_type *cc__types[CC_TYPES_MAX];
extern int cc__ntypes;

static inline const cc_type *cc_type_get(uint32_t tag) {
  return tag >= 1 && (int)tag <= cc__ntypes ? cc__types[tag] : NULL;
}

/* Allocates a zeroed object of type t (t->size bytes) with one reference,
 * owned by the caller. NULL when the arena is full. */
void *cc_obj_new(const cc_type *t);
/* The same with `size` bytes instead of t->size (objects with a variable
 * tail, such as Arrays). */
void *cc_obj_new_sized(const cc_type *t, size_t size);
void cc_obj_ref(cc_obj *o);
/* Drops one reference; the last one destroys and frees the object. */
void cc_obj_unref(cc_obj *o);
const char *cc_obj_typename(const cc_obj *o);
/* Names o (a copy of name, 1 to CC_OBJ_NAME_MAX - 1 bytes, freed with o):
 * 0, CC_EVALUE for a name of no or too many bytes, CC_EARENAFULL. */
int cc_obj_set_name(cc_obj *o, const char *name, size_t len);
/* Writes o's name, given or "<Type>-<id>" ("Lock-3"), into buf (of
 * CC_OBJ_NAME_MAX bytes) and returns buf. */
const char *cc_obj_name(const cc_obj *o, char *buf);
/* o for a report, in buf (of CC_OBJ_NAME_MAX + 24 bytes): "Lock 'fork'"
 * when it was named, else "Lock-3". Returns buf. */
const char *cc_obj_describe(const cc_obj *o, char *buf);
/* True when t is o's type. */
static inline int cc_obj_is(const cc_obj *o, const cc_type *t) {
  return cc_type_get(o->type) == t;
}
/* Validates an offset received from elsewhere: an object in the arena, live. */
cc_obj *cc_obj_from_off(uint32_t off);

#endif
