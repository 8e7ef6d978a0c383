/* fault - named points where a test has its own process killed in the middle of an operation */
#ifndef CONCUR_FAULT_H
#define CONCUR_FAULT_H

#include <stdatomic.h>

/* Every point, once: its id, its name (for CONCUR_FAULT and messages) and
 * what the shared state looks like when a process dies there. A point sits
 * where a kill leaves the most to mend: after a commit and before what
 * follows it. */
#define CC_FAULT_MAP(X)                                                                       \
  X(DICT_VALUE_MADE, "dict.value.made", "a value is copied into the arena, not yet set")     \
  X(DICT_ADD_COUNTED, "dict.add.counted", "a new key's entry is counted, not yet indexed")   \
  X(DICT_ADD_INDEXED, "dict.add.indexed", "a new key is indexed, its count not yet raised")  \
  X(DICT_SET_SWAPPED, "dict.set.swapped", "a key's new value is in, the old not yet freed")  \
  X(DICT_DEL_UNKEYED, "dict.del.unkeyed", "a key is gone, its count not yet lowered")        \
  X(DICT_GROWN, "dict.grown", "a grown table is in, the old one not yet freed")              \
  X(LIST_APPEND_LIVE, "list.append.live", "an item's count is raised, not yet committed")    \
  X(LIST_POP_USED, "list.pop.used", "the last item is gone, its count not yet lowered")    \
  X(HOLD_TAKEN, "hold.taken", "an object's reference is taken, its hold not yet recorded") \
  X(HOLDS_GROWN, "holds.grown", "a grown hold table is in, the old one not yet freed")     \
  X(UNHOLD_SHIFTED, "unhold.shifted", "a deletion moved a hold: a key is in two places")

enum {
  CC_FAULT_NONE,
#define CC__FAULT_ENUM(id, name, what) CC_FAULT_##id,
  CC_FAULT_MAP(CC__FAULT_ENUM)
#undef CC__FAULT_ENUM
  CC_FAULT_COUNT
};

/* The armed point, or 0. Process-wide on purpose: a kill takes the whole
 * process, whichever of its threads gets there. */
extern _Atomic int cc__fault_armed;
void cc__fault_hit(int point);

/* At a point: nothing (one relaxed load) unless a test armed it. */
#define CC_FAULT(id)                                                                          \
  ((void)(atomic_load_explicit(&cc__fault_armed, memory_order_relaxed) == CC_FAULT_##id       \
              ? (cc__fault_hit(CC_FAULT_##id), 0)                                             \
              : 0))

/* Arms a point: the nth time (1 for the first) this process reaches it, the
 * process SIGKILLs itself there. 0 disarms. Meant for tests and `make
 * stress`; a concur process also arms itself from CONCUR_FAULT=name[:nth]
 * (cc_fault_from_env). */
void cc_fault_arm(int point, unsigned nth);
/* A point's id from its name, or 0; its name from its id, or NULL. */
int cc_fault_find(const char *name);
const char *cc_fault_name(int point);
const char *cc_fault_what(int point);
/* Arms the point that CONCUR_FAULT names. 0, or CC_ECONFIG when it names
 * none (the message lists the points). */
int cc_fault_from_env(void);

#endif
