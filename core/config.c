/* config - the run's settings: their list, defaults, sizes and near names */
#include "concur/config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

void cc_config_defaults(cc_config *c) {
#define CC__CONFIG_DEFAULT(type, field, key, def) c->field = (type)(def);
  CC_CONFIG_MAP(CC__CONFIG_DEFAULT)
#undef CC__CONFIG_DEFAULT
}

long long cc_config_parse_size(const char *s) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || errno || v < 0)
    return -1;
  int shift = 0;
  switch (*end) {
  case 'K': case 'k': shift = 10; end++; break;
  case 'M': case 'm': shift = 20; end++; break;
  case 'G': case 'g': shift = 30; end++; break;
  default: break;
  }
  if (shift && (*end == 'i' || *end == 'I'))
    end++;
  if (shift && (*end == 'B' || *end == 'b'))
    end++;
  if (*end || v > (LLONG_MAX >> shift))
    return -1;
  return v << shift;
}

static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), row[64];
  if (lb >= 64)
    return 99;
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      size_t best = diag + cost;
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

const char *cc_config_nearest(const char *key, const char *const *known) {
  const char *best = NULL;
  size_t bd = 99;
  for (; *known; known++) {
    size_t d = distance(key, *known);
    if (d < bd) {
      bd = d;
      best = *known;
    }
  }
  size_t len = strlen(key);
  return bd <= (len < 6 ? 2 : len / 2) ? best : NULL;
}

/* The keys, as dotted paths; sections are the prefixes before a dot. */
