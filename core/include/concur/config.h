/* config - the run's settings: their list, defaults, sizes and near names */
#ifndef CONCUR_CONFIG_H
#define CONCUR_CONFIG_H

#include <stddef.h>

/* The settings, each once: its type, its field, its key in the YAML and
 * its default. Everything that lists them is made from here; the shipped
 * config/concur.yaml says the same defaults (test_config reads it). */
#define CC_CONFIG_MAP(X)                                                       \
  X(size_t, arena_size, "arena.size", (size_t)256 << 20)      /* bytes */      \
  X(unsigned, max_processes, "limits.max_processes", 512)                      \
  X(double, run_timeout, "limits.run_timeout", 0)             /* s; 0: none */ \
  X(double, switch_interval, "threads.switch_interval", 0.005) /* s */         \
  X(double, time_scale, "time_scale", 1)   /* sleeps and timeouts scaled */    \
  X(unsigned, pool_processes, "pool.processes", 0)            /* 0: cores */

/* The arena's size is from 4 MiB to 16 GiB. */
#define CC_ARENA_SIZE_MIN ((size_t)4 << 20)
#define CC_ARENA_SIZE_MAX ((size_t)16 << 30)

/* cc_config_default_<field>(): one setting's default. */
#define CC__CONFIG_DEFAULT(type, field, key, def)                              \
  static inline type cc_config_default_##field(void) { return def; }
CC_CONFIG_MAP(CC__CONFIG_DEFAULT)
#undef CC__CONFIG_DEFAULT

typedef struct cc_config {
#define CC__CONFIG_FIELD(type, field, key, def) type field;
  CC_CONFIG_MAP(CC__CONFIG_FIELD)
#undef CC__CONFIG_FIELD
} cc_config;

/* Fills c with the defaults. */
void cc_config_defaults(cc_config *c);
/* Parses a size: a whole number of bytes, or one with a K, M or G suffix
 * (KiB, MiB, GiB). -1 when it is none of those. */
long long cc_config_parse_size(const char *s);
/* The known key nearest to `key` (edit distance), or NULL if none is close:
 * for messages that name a misspelt key. The host reads config files
 * (bindings/host/config.c): the core links no YAML. */
const char *cc_config_nearest(const char *key, const char *const *known);

#endif
