/* config - concur.yaml read into the run's settings, for the host */
#include "concur/config.h"
#include "concur/error.h"
#include "concur/proctab.h"
#include "host.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static const char *const known_keys[] = {
#define CC__CONFIG_KEY(type, field, key, def) key,
    CC_CONFIG_MAP(CC__CONFIG_KEY)
#undef CC__CONFIG_KEY
    NULL};
/* The top-level names: each key's first part ("arena" of "arena.size"),
 * once, in the list's order. The host reads its configuration before any
 * thread. */
static const char *known_sections[sizeof known_keys / sizeof *known_keys];
static char section_names[sizeof known_keys / sizeof *known_keys][32];

static void list_sections(void) {
  if (known_sections[0])
    return;
  size_t n = 0;
  for (const char *const *k = known_keys; *k; k++) {
    char part[32];
    snprintf(part, sizeof part, "%.*s", (int)strcspn(*k, "."), *k);
    size_t i = 0;
    while (i < n && strcmp(known_sections[i], part))
      i++;
    if (i == n) {
      memcpy(section_names[n], part, sizeof part);
      known_sections[n] = section_names[n];
      n++;
    }
  }
  known_sections[n] = NULL;
}

typedef struct parser {
  yaml_parser_t y;
  const char *path;
  char *err;
  size_t errlen;
  cc_config *c;
} parser;

static int fail(parser *p, const yaml_mark_t *m, const char *fmt, ...) {
  int n = snprintf(p->err, p->errlen, "%s:%zu:%zu: ", p->path, m->line + 1,
                   m->column + 1);
  va_list ap;
  va_start(ap, fmt);
  if (n >= 0 && (size_t)n < p->errlen)
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return CC_ECONFIG;
}

static int next(parser *p, yaml_event_t *ev) {
  if (yaml_parser_parse(&p->y, ev))
    return 0;
  yaml_mark_t m = p->y.problem_mark;
  return fail(p, &m, "malformed YAML: %s%s%s", p->y.problem,
              p->y.context ? " " : "", p->y.context ? p->y.context : "");
}

/* The next key of a mapping in *ev: 0; 1 at the mapping's end; or an error. */
static int next_key(parser *p, yaml_event_t *ev) {
  int r = next(p, ev);
  if (r)
    return r;
  if (ev->type == YAML_MAPPING_END_EVENT) {
    yaml_event_delete(ev);
    return 1;
  }
  if (ev->type != YAML_SCALAR_EVENT) {
    r = fail(p, &ev->start_mark, "keys must be plain names, not lists or mappings");
    yaml_event_delete(ev);
    return r;
  }
  return 0;
}

static int number(parser *p, yaml_event_t *ev, const char *key, double *out) {
  const char *s = (const char *)ev->data.scalar.value;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !isfinite(v))
    return fail(p, &ev->start_mark, "%s must be a number, not '%s'", key, s);
  if (v < 0)
    return fail(p, &ev->start_mark, "%s must not be negative (got %s)", key, s);
  *out = v;
  return 0;
}

static int whole(parser *p, yaml_event_t *ev, const char *key, double min,
                 double max, unsigned *out) {
  double v = 0;
  int r = number(p, ev, key, &v);
  if (r)
    return r;
  if (v != floor(v) || v < min || v > max)
    return fail(p, &ev->start_mark, "%s must be a whole number from %.0f to %.0f (got %s)",
                key, min, max, (const char *)ev->data.scalar.value);
  *out = (unsigned)v;
  return 0;
}

static int set(parser *p, const char *key, yaml_event_t *ev) {
  const char *s = (const char *)ev->data.scalar.value;
  if (ev->type != YAML_SCALAR_EVENT)
    return fail(p, &ev->start_mark, "%s must be a single value, not a %s", key,
                ev->type == YAML_MAPPING_START_EVENT ? "mapping" : "list");
  cc_config *c = p->c;
  if (!strcmp(key, "arena.size")) {
    if (s[0] == '-')
      return fail(p, &ev->start_mark, "arena.size must not be negative (got %s)", s);
    long long v = cc_config_parse_size(s);
    if (v < 0)
      return fail(p, &ev->start_mark,
                  "arena.size must be a size in bytes such as 67108864 or 64M, not '%s'", s);
    if (v < (long long)CC_ARENA_SIZE_MIN || v > (long long)CC_ARENA_SIZE_MAX)
      return fail(p, &ev->start_mark, "arena.size must be from 4M to 16G (got %s)", s);
    c->arena_size = (size_t)v;
    return 0;
  }
  if (!strcmp(key, "limits.max_processes"))
    return whole(p, ev, key, 1, CC_MAX_PROCESSES, &c->max_processes);
  if (!strcmp(key, "limits.run_timeout"))
    return number(p, ev, key, &c->run_timeout);
  if (!strcmp(key, "threads.switch_interval")) {
    int r = number(p, ev, key, &c->switch_interval);
    if (!r && (c->switch_interval <= 0 || c->switch_interval > 10))
      return fail(p, &ev->start_mark,
                  "threads.switch_interval is in seconds, as CPython's "
                  "sys.setswitchinterval: above 0 and at most 10, such as 0.005 (got %s)", s);
    return r;
  }
  if (!strcmp(key, "pool.processes"))
    return whole(p, ev, key, 0, CC_MAX_PROCESSES, &c->pool_processes);
  if (!strcmp(key, "time_scale")) {
    int r = number(p, ev, key, &c->time_scale);
    if (!r && (c->time_scale == 0 || isinf(c->time_scale)))
      return fail(p, &ev->start_mark, "time_scale must be a factor greater than 0 (got %s)", s);
    return r;
  }
  return 0;
}

static int unknown(parser *p, yaml_event_t *ev, const char *key,
                   const char *const *known, const char *prefix) {
  const char *near = cc_config_nearest(key, known);
  char full[160];
  if (near && prefix) {
    const char *dot = strchr(near, '.');
    near = dot ? dot + 1 : near;
  }
  snprintf(full, sizeof full, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", key);
  if (near)
    return fail(p, &ev->start_mark, "unknown key '%s'; did you mean '%s'?", full, near);
  char keys[256] = "";
  for (const char *const *k = known_keys; *k; k++)
    snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", k == known_keys ? "" : ", ",
             *k);
  return fail(p, &ev->start_mark, "unknown key '%s'; known keys are %s", full, keys);
}

/* A section's mapping: key: scalar pairs checked against the dotted keys. */
static int section(parser *p, const char *name) {
  yaml_event_t ev;
  int r = next(p, &ev);
  if (r)
    return r;
  if (ev.type != YAML_MAPPING_START_EVENT) {
    r = fail(p, &ev.start_mark, "%s must be a mapping of settings (for example %s: {...})",
             name, name);
    yaml_event_delete(&ev);
    return r;
  }
  yaml_event_delete(&ev);
  const char *inner[8];
  size_t ni = 0, plen = strlen(name);
  for (const char *const *k = known_keys; *k; k++)
    if (!strncmp(*k, name, plen) && (*k)[plen] == '.')
      inner[ni++] = *k + plen + 1;
  inner[ni] = NULL;
  for (;;) {
    if ((r = next_key(p, &ev)))
      return r > 0 ? 0 : r;
    char key[128];
    snprintf(key, sizeof key, "%s.%s", name, (const char *)ev.data.scalar.value);
    int ok = 0;
    for (const char *const *k = known_keys; *k; k++)
      ok |= !strcmp(*k, key);
    if (!ok) {
      r = unknown(p, &ev, (const char *)ev.data.scalar.value, inner, name);
      yaml_event_delete(&ev);
      return r;
    }
    yaml_event_delete(&ev);
    if ((r = next(p, &ev)))
      return r;
    r = set(p, key, &ev);
    yaml_event_delete(&ev);
    if (r)
      return r;
  }
}

static int document(parser *p) {
  yaml_event_t ev;
  int r;
  /* STREAM_START, then DOCUMENT_START or an empty stream. */
  for (;;) {
    if ((r = next(p, &ev)))
      return r;
    yaml_event_type_t t = ev.type;
    yaml_mark_t m = ev.start_mark;
    yaml_event_delete(&ev);
    if (t == YAML_STREAM_END_EVENT)
      return 0;
    if (t == YAML_MAPPING_START_EVENT)
      break;
    if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT)
      return fail(p, &m, "the configuration must be a mapping of settings "
                  "(arena:, limits:, threads:, time_scale:, pool:)");
  }
  for (;;) {
    if ((r = next_key(p, &ev)))
      return r > 0 ? 0 : r;
    char name[64];
    snprintf(name, sizeof name, "%s", (const char *)ev.data.scalar.value);
    int ok = 0;
    list_sections();
    for (const char *const *k = known_sections; *k; k++)
      ok |= !strcmp(*k, name);
    if (!ok) {
      r = unknown(p, &ev, name, known_sections, NULL);
      yaml_event_delete(&ev);
      return r;
    }
    yaml_event_delete(&ev);
    if (!strcmp(name, "time_scale")) {
      if ((r = next(p, &ev)))
        return r;
      r = set(p, "time_scale", &ev);
      yaml_event_delete(&ev);
    } else {
      r = section(p, name);
    }
    if (r)
      return r;
  }
}

int host_config_load(cc_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open the configuration: %s", path,
             strerror(errno));
    return CC_ECONFIG;
  }
  parser p = {.path = path, .err = err, .errlen = errlen, .c = c};
  yaml_parser_initialize(&p.y);
  yaml_parser_set_input_file(&p.y, f);
  int r = document(&p);
  yaml_parser_delete(&p.y);
  fclose(f);
  return r;
}
