/* fault - named points where a test has its own process killed in the middle of an operation */
#include "concur/fault.h"
#include "concur/error.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Both are a process's, shared by its threads: the first thread to reach
 * the nth hit kills them all. A child inherits them armed, as it inherits
 * CONCUR_FAULT. */
_Atomic int cc__fault_armed;
static _Atomic unsigned hits_left;

static const struct {
  const char *name, *what;
} points[CC_FAULT_COUNT] = {
    [CC_FAULT_NONE] = {NULL, NULL},
#define CC__FAULT_ROW(id, name, what) [CC_FAULT_##id] = {name, what},
    CC_FAULT_MAP(CC__FAULT_ROW)
#undef CC__FAULT_ROW
};

void cc__fault_hit(int point) {
  if (atomic_fetch_sub(&hits_left, 1) != 1)
    return;
  (void)point;
  raise(SIGKILL);
}

void cc_fault_arm(int point, unsigned nth) {
  if (point <= CC_FAULT_NONE || point >= CC_FAULT_COUNT || nth == 0) {
    atomic_store(&cc__fault_armed, CC_FAULT_NONE);
    return;
  }
  atomic_store(&hits_left, nth);
  atomic_store(&cc__fault_armed, point);
}

int cc_fault_find(const char *name) {
  for (int i = 1; i < CC_FAULT_COUNT; i++)
    if (strcmp(points[i].name, name) == 0)
      return i;
  return CC_FAULT_NONE;
}

const char *cc_fault_name(int point) {
  return point > CC_FAULT_NONE && point < CC_FAULT_COUNT ? points[point].name : NULL;
}

const char *cc_fault_what(int point) {
  return point > CC_FAULT_NONE && point < CC_FAULT_COUNT ? points[point].what : NULL;
}

int cc_fault_from_env(void) {
  const char *spec = getenv("CONCUR_FAULT");
  if (!spec || !*spec)
    return 0;
  char name[64];
  unsigned nth = 1;
  const char *colon = strchr(spec, ':');
  size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
  char *end = NULL;
  if (colon)
    nth = (unsigned)strtoul(colon + 1, &end, 10);
  int point = n < sizeof name ? (memcpy(name, spec, n), name[n] = 0, cc_fault_find(name)) : 0;
  if (!point || nth == 0 || (colon && *end)) {
    fprintf(stderr, "concur: CONCUR_FAULT=%s names no fault point; use name[:nth], nth >= 1, "
                    "with one of:\n", spec);
    for (int i = 1; i < CC_FAULT_COUNT; i++)
      fprintf(stderr, "  %-20s %s\n", points[i].name, points[i].what);
    return CC_ECONFIG;
  }
  cc_fault_arm(point, nth);
  return 0;
}
