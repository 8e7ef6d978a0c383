/* arena - the one shared mapping every concur object lives in */
#include "concur/arena.h"
#include "concur/config.h"
#include "concur/error.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/*
 * DESIGN. The arena is one MAP_SHARED|MAP_ANONYMOUS mapping made before the
 * first fork, so it has the same address in every process of a run and a
 * pointer into it means the same object everywhere.
 *
 * Blocks come in power-of-two size classes (32 bytes and up). Each class has
 * a lock-free free list (a Treiber stack); its head packs a 32-bit ABA tag
 * with the first block's offset in 16-byte units, so one 64-bit CAS pops or
 * pushes even while other processes do the same. Fresh blocks are cut from the
 * untouched end with a CAS on the bump offset. There is no lock, so a process
 * SIGKILLed in the middle of an allocation leaks at most one block and never
 * blocks anybody. Freed blocks keep their class: memory given to small
 * objects is not reused for big ones (the price of being lock-free).
 *
 * Blocks of 64 bytes and more start on a cache line, so two objects never
 * share one (a lock taken in one process does not slow down its neighbour's
 * users) and a 64-byte object is one line. Cutting one may skip up to 48
 * bytes of the untouched end, which stay unused.
 */

#define ARENA_MAGIC 0x636f6e637572a7e1ULL
#define BLOCK_LIVE 0x4c495645u
#define BLOCK_FREE 0x46524545u
#define MIN_SHIFT 5
#define CLASSES 32
#define HDR 16

typedef struct block {
  uint32_t cls;
  _Atomic uint32_t magic;
  _Atomic uint32_t next; /* free list link, offset in 16-byte units */
  _Atomic uint32_t gen;  /* one more at each allocation (cc_arena_gen) */
} block;

typedef struct arena {
  uint64_t magic;
  size_t size;
  size_t reserved_off;
  size_t reserved_len;
  _Atomic size_t bump;
  _Atomic size_t used;
  _Atomic size_t live;
  _Atomic uint32_t serial[CC_TYPES_MAX]; /* the last id of each type */
  uint8_t secret[16];
  _Atomic uint64_t freelist[CLASSES];
} arena;

/* Threads: these are written by cc_arena_init and cc_type_register, before
 * the first thread or fork, and only read after; the arena itself is
 * lock-free. */
static arena *A;
const cc_type *cc__types[CC_TYPES_MAX];
int cc__ntypes;
static char full_msg[160];

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

int cc_arena_init(size_t size) {
  if (size < CC_ARENA_SIZE_MIN || size > CC_ARENA_SIZE_MAX)
    return CC_EVALUE;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return CC_ESYS;
  A = p;
  A->magic = ARENA_MAGIC;
  A->size = size;
  A->reserved_off = align16(sizeof(arena));
  A->reserved_len = CC__ARENA_RESERVED;
  atomic_init(&A->bump, A->reserved_off + A->reserved_len);
  atomic_init(&A->used, 0);
  atomic_init(&A->live, 0);
  for (int i = 0; i < CLASSES; i++)
    atomic_init(&A->freelist[i], 0);
  if (getrandom(A->secret, sizeof A->secret, 0) != (ssize_t)sizeof A->secret) {
    /* No entropy source: a weaker secret still differs from run to run. */
    uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)p;
    memcpy(A->secret, &t, sizeof t);
    memcpy(A->secret + 8, &t, sizeof t);
  }
  double mib = (double)size / (1 << 20);
  snprintf(full_msg, sizeof full_msg,
           "arena is full (arena.size = %.0f MiB); raise arena.size in "
           "concur.yaml or pass a config with a larger one",
           mib);
  return 0;
}

void cc_arena_fini(void) {
  if (A)
    munmap(A, A->size);
  A = NULL;
}

int cc_arena_ready(void) { return A != NULL; }
size_t cc_arena_size(void) { return A ? A->size : 0; }
size_t cc_arena_used(void) { return A ? atomic_load(&A->used) : 0; }
size_t cc_arena_untouched(void) { return A ? A->size - atomic_load(&A->bump) : 0; }
size_t cc_arena_live_blocks(void) { return A ? atomic_load(&A->live) : 0; }
const char *cc_arena_full_message(void) { return full_msg; }
const uint8_t *cc_arena_secret(void) { return A->secret; }

void *cc__arena_reserved(size_t *len) {
  *len = A->reserved_len;
  return (char *)A + A->reserved_off;
}

uint32_t cc_arena_off(const void *p) {
  return p ? (uint32_t)(((const char *)p - (const char *)A) >> 4) : 0;
}

void *cc_arena_ptr(uint32_t off) {
  return off ? (char *)A + ((size_t)off << 4) : NULL;
}

uint32_t cc_arena_pos(const void *p) {
  return (uint32_t)(((const char *)p - (const char *)A) >> 3);
}

void *cc_arena_at(uint32_t pos) { return (char *)A + ((size_t)pos << 3); }

int cc_arena_contains(const void *p) {
  return A && (const char *)p >= (const char *)A &&
         (const char *)p < (const char *)A + A->size;
}

static int class_of(size_t n) {
  size_t need = n + HDR;
  int c = 0;
  while (((size_t)1 << (c + MIN_SHIFT)) < need)
    c++;
  return c;
}

static block *pop(int c) {
  _Atomic uint64_t *head = &A->freelist[c];
  uint64_t old = atomic_load(head);
  for (;;) {
    uint32_t off = (uint32_t)old;
    if (!off)
      return NULL;
    block *b = cc_arena_ptr(off);
    uint32_t next = atomic_load_explicit(&b->next, memory_order_relaxed);
    uint64_t nw = ((old >> 32) + 1) << 32 | next;
    if (atomic_compare_exchange_weak(head, &old, nw))
      return b;
  }
}

static void push(block *b) {
  _Atomic uint64_t *head = &A->freelist[b->cls];
  uint32_t off = cc_arena_off(b);
  uint64_t old = atomic_load(head);
  do {
    atomic_store_explicit(&b->next, (uint32_t)old, memory_order_relaxed);
  } while (!atomic_compare_exchange_weak(head, &old,
                                         ((old >> 32) + 1) << 32 | off));
}

/* A block for n bytes; *fresh: cut from the untouched end, whose bytes
 * are still the mapping's zeros. */
static void *take(size_t n, int *fresh) {
  if (!A || n > A->size)
    return NULL;
  int c = class_of(n);
  if (c >= CLASSES)
    return NULL;
  size_t bs = (size_t)1 << (c + MIN_SHIFT);
  block *b = pop(c);
  *fresh = !b;
  if (!b) {
    size_t line = bs < CC_CACHE_LINE ? 16 : CC_CACHE_LINE;
    size_t cur = atomic_load(&A->bump), start;
    do {
      start = (cur + line - 1) & ~(line - 1);
      if (start + bs > A->size)
        return NULL;
    } while (!atomic_compare_exchange_weak(&A->bump, &cur, start + bs));
    b = (block *)((char *)A + start);
    b->cls = (uint32_t)c;
  }
  atomic_fetch_add(&b->gen, 1);
  atomic_store(&b->magic, BLOCK_LIVE);
  atomic_fetch_add(&A->used, bs);
  atomic_fetch_add(&A->live, 1);
  return (char *)b + HDR;
}

void *cc_arena_alloc(size_t n) {
  int fresh;
  return take(n, &fresh);
}

void *cc_arena_zalloc(size_t n) {
  int fresh;
  void *p = take(n, &fresh);
  /* A fresh block is not written: its pages are touched only as it is used
   * (a table of thousands of entries, few of them taken). */
  if (p && !fresh)
    memset(p, 0, n);
  return p;
}

void cc_arena_free(void *p) {
  if (!p)
    return;
  block *b = (block *)((char *)p - HDR);
  uint32_t expect = BLOCK_LIVE;
  /* A double free would corrupt the free list; refuse it loudly instead. */
  if (!atomic_compare_exchange_strong(&b->magic, &expect, BLOCK_FREE)) {
    fprintf(stderr, "concur: internal error: arena block %p freed twice\n", p);
    return;
  }
  atomic_fetch_sub(&A->used, (size_t)1 << (b->cls + MIN_SHIFT));
  atomic_fetch_sub(&A->live, 1);
  push(b);
}

uint32_t cc_arena_gen(const void *p) {
  return atomic_load(&((const block *)((const char *)p - HDR))->gen);
}

int cc_arena_is_gen(const void *p, uint32_t gen) {
  const block *b = (const block *)((const char *)p - HDR);
  return atomic_load(&b->magic) == BLOCK_LIVE && atomic_load(&b->gen) == gen;
}

size_t cc_arena_block_size(const void *p) {
  const block *b = (const block *)((const char *)p - HDR);
  return ((size_t)1 << (b->cls + MIN_SHIFT)) - HDR;
}

int cc_type_register(const cc_type *t) {
  for (int i = 1; i <= cc__ntypes; i++)
    if (cc__types[i] == t)
      return i;
  if (cc__ntypes + 1 >= CC_TYPES_MAX)
    return CC_EVALUE;
  cc__types[++cc__ntypes] = t;
  return cc__ntypes;
}

const cc_type *cc_type_find(const char *name) {
  for (int i = 1; i <= cc__ntypes; i++)
    if (strcmp(cc__types[i]->name, name) == 0)
      return cc__types[i];
  return NULL;
}

static uint32_t tag_of(const cc_type *t) {
  int tag = cc_type_register(t);
  return tag > 0 ? (uint32_t)tag : 0;
}

void *cc_obj_new(const cc_type *t) { return cc_obj_new_sized(t, t->size); }

void *cc_obj_new_sized(const cc_type *t, size_t size) {
  uint32_t tag = tag_of(t);
  if (!tag || size < sizeof(cc_obj))
    return NULL;
  cc_obj *o = cc_arena_zalloc(size);
  if (!o)
    return NULL;
  o->type = tag;
  atomic_store(&o->refs, 1);
  o->id = atomic_fetch_add(&A->serial[tag], 1) + 1;
  return o;
}

void cc_obj_ref(cc_obj *o) { atomic_fetch_add(&o->refs, 1); }

void cc_obj_unref(cc_obj *o) {
  if (atomic_fetch_sub(&o->refs, 1) != 1)
    return;
  const cc_type *t = cc_type_get(o->type);
  if (t && t->destroy)
    t->destroy(o);
  cc_arena_free(cc_arena_ptr(o->name));
  cc_arena_free(o);
}

const char *cc_obj_typename(const cc_obj *o) {
  const cc_type *t = cc_type_get(o->type);
  return t ? t->name : "?";
}

int cc_obj_set_name(cc_obj *o, const char *name, size_t len) {
  if (len == 0 || len >= CC_OBJ_NAME_MAX || memchr(name, '\0', len))
    return CC_EVALUE;
  char *b = cc_arena_alloc(len + 1);
  if (!b)
    return CC_EARENAFULL;
  memcpy(b, name, len);
  b[len] = '\0';
  uint32_t old = o->name;
  o->name = cc_arena_off(b);
  cc_arena_free(cc_arena_ptr(old));
  return 0;
}

const char *cc_obj_name(const cc_obj *o, char *buf) {
  const char *given = cc_arena_ptr(o->name);
  if (given)
    snprintf(buf, CC_OBJ_NAME_MAX, "%s", given);
  else
    snprintf(buf, CC_OBJ_NAME_MAX, "%s-%u", cc_obj_typename(o), (unsigned)o->id);
  return buf;
}

const char *cc_obj_describe(const cc_obj *o, char *buf) {
  const char *given = cc_arena_ptr(o->name);
  if (given)
    snprintf(buf, CC_OBJ_NAME_MAX + 24, "%s '%s'", cc_obj_typename(o), given);
  else
    cc_obj_name(o, buf); /* its kind is in it */
  return buf;
}

cc_obj *cc_obj_from_off(uint32_t off) {
  if (!A || !off || ((size_t)off << 4) + sizeof(cc_obj) > A->size ||
      ((size_t)off << 4) < A->reserved_off + A->reserved_len + HDR)
    return NULL;
  cc_obj *o = cc_arena_ptr(off);
  block *b = (block *)((char *)o - HDR);
  if (atomic_load(&b->magic) != BLOCK_LIVE || !cc_type_get(o->type) ||
      atomic_load(&o->refs) == 0)
    return NULL;
  return o;
}
