/* config - the run's settings: compiled-in defaults, overridden by YAML */
#ifndef CONCUR_CONFIG_H
#define CONCUR_CONFIG_H

#include <stddef.h>

typedef struct cc_config {
  size_t arena_size;         /* arena.size, bytes */
  unsigned max_processes;    /* limits.max_processes */
  double run_timeout;        /* limits.run_timeout, seconds; 0: none */
  double switch_interval;    /* threads.switch_interval, seconds */
  double time_scale;         /* time_scale: sleeps and timeouts are scaled */
  unsigned pool_processes;   /* pool.processes; 0: cpu_count() */
} cc_config;

void cc_config_defaults(cc_config *c);
/* Overrides c with the settings of the YAML file at path. On failure returns
 * CC_ECONFIG and writes "path:line:col: what is wrong and what to do" to err;
 * c may then be partly overridden. */
int cc_config_load(cc_config *c, const char *path, char *err, size_t errlen);
/* Parses a size: a whole number of bytes, or one with a K, M or G suffix
 * (KiB, MiB, GiB). -1 when it is none of those. */
long long cc_config_parse_size(const char *s);
/* The known key nearest to `key` (edit distance), or NULL if none is close. */
const char *cc_config_nearest(const char *key, const char *const *known);

#endif
