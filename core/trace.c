/* trace - what every thread of a run did and when, written as Chrome trace-event JSON */
#include "concur/trace.h"
#include "concur/arena.h"
#include "concur/error.h"
#include "concur/ident.h"
#include "concur/wait.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define REC sizeof(cc__trace_rec)
#define PER_CHUNK (CC_TRACE_CHUNK_BYTES / REC)
/* The longest text a record carries (a name, a Lua place). */
#define TEXT_MAX 160
#define FLOW_SLOTS 4096

_Static_assert(sizeof(cc__trace_rec) == 32, "a trace record is 32 bytes");

/* The buffer's head, in its first chunks; the chunks follow. */
typedef struct head {
  _Atomic uint64_t used; /* bytes of chunks handed out */
  uint64_t room;         /* bytes of chunks there are */
  _Atomic uint64_t dropped;
  _Atomic uint32_t next_flow;
  int64_t t0, tsc0; /* the clock and the ticks at the start */
  /* The last wake-up of each word (hashed): the word's tag << 32 | flow. */
  _Atomic uint64_t flows[FLOW_SLOTS];
} head;

#define HEAD_ROOM (((sizeof(head) + CC_TRACE_CHUNK_BYTES - 1) / CC_TRACE_CHUNK_BYTES) * CC_TRACE_CHUNK_BYTES)

int cc__trace_on __attribute__((visibility("hidden")));
int cc__trace_tsc __attribute__((visibility("hidden")));
/* Threads: the mapping is made before the run's first fork and is the same
 * in every process; each thread writes only into its own chunk. */
static head *H;
static size_t mapped;
static _Thread_local struct {
  cc__trace_rec *at, *end;
  uint32_t flow_in; /* the wake-up that ended this thread's sleep */
  int full;
} me;

static cc__trace_rec *chunks(void) { return (cc__trace_rec *)((char *)H + HEAD_ROOM); }

/* A child's forking thread must not go on writing into its parent's chunk. */
static void forget_chunk(void) { memset(&me, 0, sizeof me); }

/* Whether the processor's time stamp counter runs at one rate on every
 * core, whatever the power state (Linux says so in its flags). */
static int steady_tsc(void) {
#if defined(__x86_64__)
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return 0;
  char line[4096];
  int constant = 0, nonstop = 0;
  while (fgets(line, sizeof line, f) && !(constant && nonstop)) {
    if (strncmp(line, "flags", 5))
      continue;
    constant = strstr(line, " constant_tsc") != NULL;
    nonstop = strstr(line, " nonstop_tsc") != NULL;
    break;
  }
  fclose(f);
  /* And the kernel keeps time with it: it found it in step on every core
   * (not so on some machines, and in some virtual ones). */
  char source[32] = "";
  f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
  if (f) {
    if (!fgets(source, sizeof source, f))
      source[0] = '\0';
    fclose(f);
  }
  return constant && nonstop && !strcmp(source, "tsc\n");
#else
  return 0;
#endif
}

/* A reading of the ticks and the clock at one instant: of a few tries, the
 * one whose clock reads, before and after the ticks, came closest (one
 * preempted between its reads would be off by as long as it waited). */
static void calibrate(int64_t *ticks, int64_t *ns) {
  int64_t best = INT64_MAX;
  for (int i = 0; i < 8; i++) {
    int64_t a = cc_now(), t = cc__trace_ticks(), b = cc_now();
    if (b - a < best) {
      best = b - a;
      *ticks = t;
      *ns = a + (b - a) / 2;
    }
  }
}

int cc_trace_init(size_t size) {
  if (!size)
    size = CC_TRACE_SIZE_DEFAULT;
  if (size < HEAD_ROOM + 4 * CC_TRACE_CHUNK_BYTES)
    return CC_EVALUE;
  void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (m == MAP_FAILED)
    return CC_ESYS;
  H = m;
  mapped = size;
  forget_chunk();
  H->room = (size - HEAD_ROOM) / CC_TRACE_CHUNK_BYTES * CC_TRACE_CHUNK_BYTES;
  cc__trace_tsc = steady_tsc();
  calibrate(&H->tsc0, &H->t0);
  static int registered;
  if (!registered++)
    pthread_atfork(NULL, NULL, forget_chunk);
  return 0;
}

/* Room for n records in the calling thread's chunk, or NULL (counted). */
static cc__trace_rec *claim(unsigned n) {
  if (me.at && me.at + n <= me.end) {
    cc__trace_rec *r = me.at;
    me.at += n;
    return r;
  }
  if (!me.full) {
    uint64_t off = atomic_fetch_add(&H->used, CC_TRACE_CHUNK_BYTES);
    if (off + CC_TRACE_CHUNK_BYTES <= H->room) {
      cc__trace_rec *c = chunks() + off / REC;
      c->ts = cc_now();
      c->a = cc_pid();
      c->b = cc_tid();
      atomic_store_explicit(&c->kind, CC_TRACE_CHUNK, memory_order_release);
      me.at = c + 1 + n;
      me.end = c + PER_CHUNK;
      return c + 1;
    }
    me.full = 1;
  }
  atomic_fetch_add(&H->dropped, 1);
  return NULL;
}

static void emit(int kind, const cc_obj *o, int64_t ts, int64_t a, int64_t b, int sub,
                 const char *text) {
  size_t len = text ? strnlen(text, TEXT_MAX) : 0;
  unsigned nt = text ? 1 + (unsigned)((len + REC - 1) / REC) : 0;
  cc__trace_rec *r = claim(nt + 1);
  if (!r)
    return;
  if (text) {
    memcpy(r + 1, text, len);
    r->ts = ts;
    r->a = (int64_t)len;
    atomic_store_explicit(&r->kind, CC_TRACE_TEXT, memory_order_release);
    r += nt;
  }
  r->ts = ts;
  r->a = a;
  r->b = b;
  r->obj = o ? o->id : 0;
  r->type = o ? (uint8_t)o->type : 0;
  r->sub = (uint8_t)sub;
  atomic_store_explicit(&r->kind, (uint16_t)kind, memory_order_release);
}

int64_t cc__trace_now(void) { return cc__trace_on ? cc_now() : 0; }

void cc__trace_process(const char *name) {
  if (cc__trace_on)
    emit(CC_TRACE_PROCESS, NULL, cc_now(), 0, 0, 0, name);
}

void cc__trace_thread(const char *name) {
  if (cc__trace_on)
    emit(CC_TRACE_THREAD, NULL, cc_now(), 0, 0, 0, name);
}

void cc__trace_end(void) {
  if (cc__trace_on)
    emit(CC_TRACE_END, NULL, cc_now(), 0, 0, 0, NULL);
}

void cc__trace_named(const cc_obj *o) {
  const char *name = cc_arena_ptr(o->name);
  if (cc__trace_on && name)
    emit(CC_TRACE_NAMED, o, cc_now(), 0, 0, 0, name);
}

/* Objects that are not the user's (inside a Thread's handle, made with no
 * cc_obj_new) have no type: what they do is said by the wait they serve. */
void cc__trace_span(int kind, const cc_obj *o, int64_t since, const char *text) {
  if (cc__trace_on && (!o || o->type)) {
    int64_t now = cc_now();
    emit(kind, o, since, now - since, 0, 0, text);
  }
}

/* Holds: times in ticks, said so by sub. */
#define TICKS 1

void cc__trace_take(const cc_obj *o, int64_t ticks) {
  if (o->type)
    emit(CC_TRACE_TAKE, o, ticks, 0, 0, TICKS, NULL);
}

void cc__trace_give(const cc_obj *o, int64_t ticks, int64_t now) {
  if (!ticks) {
    if (o->type)
      emit(CC_TRACE_GIVE, o, now, 0, 0, TICKS, NULL);
    return;
  }
  cc__trace_rec *r = me.at ? me.at - 1 : NULL;
  if (r && atomic_load_explicit(&r->kind, memory_order_relaxed) == CC_TRACE_TAKE &&
      r->ts == ticks && r->obj == o->id && r->type == o->type) {
    r->a = now - ticks;
    atomic_store_explicit(&r->kind, CC_TRACE_HOLD, memory_order_release);
  } else if (o->type) {
    emit(CC_TRACE_HOLD, o, ticks, now - ticks, 0, TICKS, NULL);
  }
}

void cc__trace_event(int kind, const cc_obj *o, int64_t a, int64_t b, const char *text) {
  if (cc__trace_on && (!o || o->type))
    emit(kind, o, cc_now(), a, b, 0, text);
}

/* wait.c's tracer. */

static void where(char *buf, size_t n) { cc_ident_where(buf, n); }

static void wait_began(const cc_waiting *w) {
  /* The text is where, and for a wait on no object, what it waits on. */
  char text[TEXT_MAX];
  where(text, sizeof text);
  if (!w->obj && w->label) {
    size_t at = strlen(text);
    snprintf(text + at, sizeof text - at, "\n%s", w->label);
  }
  emit(CC_TRACE_BEGIN, w->obj, w->since, 0, 0, w->kind, text);
}

static void wait_ended(const cc_waiting *w) {
  int64_t now = cc_now();
  emit(CC_TRACE_WAIT, w->obj, w->since, now - w->since, me.flow_in, w->kind, NULL);
  me.flow_in = 0;
}

static void slept(int64_t since) {
  char text[TEXT_MAX];
  where(text, sizeof text);
  emit(CC_TRACE_SLEEP, NULL, since, cc_now() - since, 0, 0, text);
}

/* The high bits of a multiplicative hash: words a cache line apart differ
 * there. */
static size_t slot(const void *word) {
  return (size_t)(((uint64_t)(uintptr_t)word * 0x9e3779b97f4a7c15ull) >> 52) % FLOW_SLOTS;
}
static uint64_t tag(const void *word) { return (uint32_t)((uintptr_t)word >> 2); }

/* The number is left before the FUTEX_WAKE: the woken may look at once. */
static uint32_t wake(const void *word) {
  uint32_t flow = atomic_fetch_add(&H->next_flow, 1) + 1;
  atomic_store(&H->flows[slot(word)], tag(word) << 32 | flow);
  return flow;
}

static void woke(uint32_t flow, int64_t since, int n) {
  emit(CC_TRACE_WAKE, NULL, since, cc_now() - since, (int64_t)((uint64_t)n << 32 | flow), 0,
       NULL);
}

static void woken(const void *word) {
  uint64_t v = atomic_load(&H->flows[slot(word)]);
  if (v >> 32 == tag(word))
    me.flow_in = (uint32_t)v;
}

static const cc_wait_tracer tracer = {wait_began, wait_ended, slept, wake, woke, woken};

int cc_trace_start(void) {
  if (!H)
    return CC_EVALUE;
  cc__trace_on = 1;
  cc_wait_set_tracer(&tracer);
  return 0;
}

void cc_trace_fini(void) {
  cc__trace_on = 0;
  cc_wait_set_tracer(NULL);
  forget_chunk();
  if (H)
    munmap(H, mapped);
  H = NULL;
}

uint64_t cc_trace_dropped(void) { return H ? atomic_load(&H->dropped) : 0; }

/* The JSON writer: the supervisor's, after the run. */

/* One event of the trace, as the writer sees it. */
typedef struct item {
  int64_t ts, end;
  const cc__trace_rec *r; /* NULL for a thread's life */
  const char *text;       /* the record's text, or the life's name */
  uint32_t tlen, seq;
  int32_t pid, tid;
  int part;    /* a span cut in two at another's end: its second part */
  int unended; /* a wait or hold that its thread's end cut short */
  int64_t full_end; /* before it was cut: a wait's flow ends there */
} item;

typedef struct items {
  item *v;
  size_t n, cap;
} items;

static int push(items *s, item it) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    item *v = realloc(s->v, cap * sizeof *v);
    if (!v)
      return -1;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = it;
  return 0;
}

/* A map of 64-bit keys (never 0) to items (names, ends), by linear probing. */
typedef struct map {
  uint64_t *keys;
  item *vals;
  size_t cap, n;
} map;

static item *map_get(map *m, uint64_t key) {
  if (!m->cap)
    return NULL;
  for (size_t i = key * 11400714819323198485ull % m->cap;; i = (i + 1) % m->cap) {
    if (m->keys[i] == key)
      return &m->vals[i];
    if (!m->keys[i])
      return NULL;
  }
}

static int map_put(map *m, uint64_t key, item v) {
  item *had = map_get(m, key);
  if (had) {
    *had = v;
    return 0;
  }
  if ((m->n + 1) * 2 > m->cap) {
    map old = *m;
    size_t cap = old.cap ? old.cap * 2 : 256;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
      free(m->keys);
      free(m->vals);
      *m = old;
      return -1;
    }
    m->cap = cap;
    m->n = 0;
    for (size_t i = 0; i < old.cap; i++)
      if (old.keys[i])
        map_put(m, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
  }
  size_t i = key * 11400714819323198485ull % m->cap;
  while (m->keys[i])
    i = (i + 1) % m->cap;
  m->keys[i] = key;
  m->vals[i] = v;
  m->n++;
  return 0;
}

static void map_free(map *m) {
  free(m->keys);
  free(m->vals);
}

static uint64_t key2(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b | 1ull << 63; }

/* A begun wait or a taken lock of a thread, by when it began: the span
 * that ends it has the same start. */
static uint64_t begin_key(int32_t tid, const cc__trace_rec *r, int kind) {
  uint64_t k = (uint64_t)r->ts * 0x9e3779b97f4a7c15ull;
  k ^= ((uint64_t)(uint32_t)tid << 20 | (uint64_t)r->type << 12 | (uint64_t)kind) * 0xff51afd7ed558ccdull;
  k ^= (uint64_t)r->obj * 0xc4ceb9fe1a85ec53ull;
  return k | 1;
}

typedef struct writer {
  FILE *f;
  int64_t t0, tsc0;
  double ns_per_tick;
  int main_pid;
  map procs, threads, objs, ends, flows, begun;
  long events;
  uint32_t next_flow;
} writer;

/* The length of the UTF-8 sequence at s (of n bytes), or 0 when it is not
 * one: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (!len || len > n)
    return 0;
  unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
  if (c == 0xe0)
    lo = 0xa0;
  else if (c == 0xed)
    hi = 0x9f;
  else if (c == 0xf0)
    lo = 0x90;
  else if (c == 0xf4)
    hi = 0x8f;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t k = 2; k < len; k++)
    if ((s[k] & 0xc0) != 0x80)
      return 0;
  return len;
}

/* Writes s (n bytes) as a JSON string: bytes that are not UTF-8 become
 * U+FFFD. */
static void put_str(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      fputc('\\', f);
      fputc(c, f);
    } else if (c < 0x20) {
      fprintf(f, "\\u%04x", c);
    } else if (c < 0x80) {
      fputc(c, f);
    } else {
      size_t len = utf8_len((const unsigned char *)s + i, n - i);
      if (len) {
        fwrite(s + i, 1, len, f);
        i += len - 1;
      } else {
        fputs("\\ufffd", f);
      }
    }
  }
  fputc('"', f);
}

/* An object as reports say it: "Lock 'fork'", or "Lock-3" unnamed. */
static void describe(writer *w, char *buf, size_t n, uint8_t type, uint32_t id) {
  const cc_type *t = cc_type_get(type);
  const char *tn = t ? t->name : "Object";
  item *named = map_get(&w->objs, key2(type, (int32_t)id));
  if (named)
    snprintf(buf, n, "%s '%.*s'", tn, (int)named->tlen, named->text);
  else
    snprintf(buf, n, "%s-%u", tn, id);
}

/* Microseconds from the start of the run, to the nanosecond. */
static void put_ts(writer *w, const char *key, int64_t t) {
  int64_t d = t - w->t0;
  fprintf(w->f, ",\"%s\":%s%lld.%03lld", key, d < 0 ? "-" : "", (long long)(llabs(d) / 1000),
          (long long)(llabs(d) % 1000));
}

static void begin_event(writer *w, char ph, int32_t pid, int32_t tid, int64_t ts) {
  fprintf(w->f, "%s{\"ph\":\"%c\",\"pid\":%d,\"tid\":%d", w->events++ ? ",\n" : "", ph, pid, tid);
  put_ts(w, "ts", ts);
}

/* ,"key":"s" (or without the comma, first in an object). */
static void put_named(writer *w, const char *key, const char *s, size_t n) {
  fprintf(w->f, "%s\"%s\":", key[0] == '{' ? "" : ",", key + (key[0] == '{'));
  put_str(w->f, s, n);
}

static void put_name(writer *w, const char *s) { put_named(w, "name", s, strlen(s)); }

/* The first line of an item's text (its Lua place), and the rest. */
static void split_text(const item *it, size_t *first, const char **rest, size_t *nrest) {
  const char *nl = it->text ? memchr(it->text, '\n', it->tlen) : NULL;
  *first = nl ? (size_t)(nl - it->text) : it->tlen;
  *rest = nl ? nl + 1 : NULL;
  *nrest = nl ? it->tlen - *first - 1 : 0;
}

static void write_span(writer *w, const item *it, const char *cat, const char *name) {
  begin_event(w, 'X', it->pid, it->tid, it->ts);
  put_ts(w, "dur", it->end - it->ts + w->t0);
  fprintf(w->f, ",\"cat\":\"%s\"", cat);
  put_name(w, name);
  size_t first, nrest;
  const char *rest;
  split_text(it, &first, &rest, &nrest);
  int args = 0;
  if (it->r && it->r->kind != CC_TRACE_TASK && first) {
    fputs(",\"args\":{", w->f);
    put_named(w, "{where", it->text, first);
    args = 1;
  }
  if (it->part)
    fprintf(w->f, "%s\"continued\":true", args++ ? "," : ",\"args\":{");
  if (it->unended)
    fprintf(w->f, "%s\"ended\":false", args++ ? "," : ",\"args\":{");
  fputs(args ? "}}" : "}", w->f);
}

static void write_instant(writer *w, const item *it, const char *name, const char *arg,
                          int64_t v) {
  begin_event(w, 'i', it->pid, it->tid, it->ts);
  fputs(",\"s\":\"t\"", w->f);
  put_name(w, name);
  if (arg)
    fprintf(w->f, ",\"args\":{\"%s\":%lld}", arg, (long long)v);
  fputc('}', w->f);
}

static void write_counter(writer *w, const item *it, const char *name, const char *arg,
                          int64_t v) {
  begin_event(w, 'C', w->main_pid, 0, it->ts);
  put_name(w, name);
  fprintf(w->f, ",\"args\":{\"%s\":%lld}}", arg, (long long)v);
}

static void write_flow(writer *w, const item *it, char ph, uint32_t id, int64_t ts) {
  begin_event(w, ph, it->pid, it->tid, ts);
  fprintf(w->f, ",\"id\":%u,\"cat\":\"flow\",\"name\":\"wakes\",\"bp\":\"e\"}", id);
}

static const char *proc_name(writer *w, int32_t pid, char *buf, size_t n) {
  item *p = map_get(&w->procs, key2(pid, 0));
  if (p)
    snprintf(buf, n, "%.*s", (int)p->tlen, p->text);
  else
    snprintf(buf, n, "pid %d", (int)pid);
  return buf;
}

static void write_item(writer *w, const item *it) {
  char name[TEXT_MAX + 3 * CC_OBJ_NAME_MAX], what[2 * CC_OBJ_NAME_MAX], pn[TEXT_MAX];
  if (!it->r) {
    snprintf(name, sizeof name, "%.*s", (int)it->tlen, it->text);
    write_span(w, it, "thread", name);
    return;
  }
  const cc__trace_rec *r = it->r;
  describe(w, what, sizeof what, r->type, r->obj);
  switch (r->kind) {
  case CC_TRACE_WAIT:
  case CC_TRACE_BEGIN: {
    size_t first, nrest;
    const char *rest;
    split_text(it, &first, &rest, &nrest);
    if (r->obj)
      snprintf(name, sizeof name, "waits %s %s", cc_wait_verb(r->sub), what);
    else
      snprintf(name, sizeof name, "waits %s %.*s", cc_wait_verb(r->sub), (int)nrest,
               rest ? rest : "");
    write_span(w, it, "wait", name);
    /* Its own arrow from the wake-up that ended it (one wake-up may end
     * several waits: each has an arrow), at its end. */
    item *wake = r->b ? map_get(&w->flows, (uint32_t)r->b) : NULL;
    if (wake && it->end == it->full_end) {
      uint32_t id = ++w->next_flow;
      int64_t d = wake->end - wake->ts, e = it->end - it->ts;
      write_flow(w, wake, 's', id, wake->ts + (d > 2 ? 1 : 0));
      write_flow(w, it, 'f', id, it->end - (e > 2 ? 1 : 0));
    }
    break;
  }
  case CC_TRACE_HOLD:
  case CC_TRACE_TAKE:
    snprintf(name, sizeof name, "holds %s", what);
    write_span(w, it, "hold", name);
    break;
  case CC_TRACE_SLEEP:
    write_span(w, it, "sleep", "sleeps");
    break;
  case CC_TRACE_GIL:
    write_span(w, it, "gil", "waits for the GIL");
    break;
  case CC_TRACE_TASK:
    snprintf(name, sizeof name, "task %.*s", (int)it->tlen, it->text ? it->text : "");
    write_span(w, it, "task", name);
    break;
  case CC_TRACE_WAKE:
    snprintf(name, sizeof name, "wakes %d", (int)(r->b >> 32));
    write_span(w, it, "wake", name);
    break;
  case CC_TRACE_FORK:
    snprintf(name, sizeof name, "starts %.*s", (int)it->tlen, it->text ? it->text : "");
    write_instant(w, it, name, "pid", r->a);
    break;
  case CC_TRACE_EXIT:
    snprintf(name, sizeof name, "exits %lld", (long long)r->a);
    write_instant(w, it, name, "exitcode", r->a);
    break;
  case CC_TRACE_REAP:
    snprintf(name, sizeof name, "reaps %s", proc_name(w, (int32_t)r->a, pn, sizeof pn));
    write_instant(w, it, name, "exitcode", r->b);
    break;
  case CC_TRACE_SET:
  case CC_TRACE_CLEAR:
    snprintf(name, sizeof name, "%s %s", r->kind == CC_TRACE_SET ? "sets" : "clears", what);
    write_instant(w, it, name, NULL, 0);
    break;
  case CC_TRACE_PUT:
  case CC_TRACE_GET:
    snprintf(name, sizeof name, "%s %s", r->kind == CC_TRACE_PUT ? "puts on" : "gets from",
             what);
    write_instant(w, it, name, "length", r->a);
    write_counter(w, it, what, "length", r->a);
    break;
  case CC_TRACE_VALUE:
    write_counter(w, it, what, "value", r->a);
    break;
  default:
    break;
  }
}

/* The M events that name the processes (on their pid's track) or the
 * threads (`what`). */
static void write_names(writer *w, const map *m, const char *what, int processes) {
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i])
      continue;
    const item *it = &m->vals[i];
    begin_event(w, 'M', it->pid, processes ? it->pid : it->tid, it->ts);
    fprintf(w->f, ",\"name\":\"%s\",\"args\":{", what);
    put_named(w, "{name", it->text, it->tlen);
    fputs("}}", w->f);
  }
}

static int by_object_time(const void *x, const void *y) {
  const item *a = x, *b = y;
  if (a->r->type != b->r->type)
    return a->r->type < b->r->type ? -1 : 1;
  if (a->r->obj != b->r->obj)
    return a->r->obj < b->r->obj ? -1 : 1;
  if (a->ts != b->ts)
    return a->ts < b->ts ? -1 : 1;
  return (a->r->kind == CC_TRACE_GIVE) - (b->r->kind == CC_TRACE_GIVE); /* takes first */
}

/* A Lock given by another thread than its holder ends the hold of the
 * last thread that took it before: in each object's order of time, a GIVE
 * closes the latest TAKE still open. The closed holds go into s. Returns
 * nonzero out of memory. */
static int give_back(writer *w, items *gives, items *s) {
  if (!gives->n)
    return 0;
  items all = {0};
  for (size_t i = 0; i < w->begun.cap; i++)
    if (w->begun.keys[i] && w->begun.vals[i].r && w->begun.vals[i].r->kind == CC_TRACE_TAKE) {
      item it = w->begun.vals[i];
      it.seq = (uint32_t)i; /* where it is in the map */
      if (push(&all, it))
        return free(all.v), 1;
    }
  for (size_t i = 0; i < gives->n; i++)
    if (push(&all, gives->v[i]))
      return free(all.v), 1;
  qsort(all.v, all.n, sizeof *all.v, by_object_time);
  int failed = 0;
  for (size_t i = 0; i < all.n && !failed; i++) {
    const item *g = &all.v[i];
    if (g->r->kind != CC_TRACE_GIVE)
      continue;
    for (size_t k = i; k-- > 0;) {
      item *t = &all.v[k];
      if (t->r->type != g->r->type || t->r->obj != g->r->obj)
        break;
      if (t->r->kind != CC_TRACE_TAKE || !w->begun.vals[t->seq].r)
        continue;
      item span = w->begun.vals[t->seq];
      span.end = g->ts;
      w->begun.vals[t->seq].r = NULL; /* closed */
      failed = push(s, span);
      break;
    }
  }
  free(all.v);
  return failed;
}

static int by_thread_time(const void *x, const void *y) {
  const item *a = x, *b = y;
  if (a->pid != b->pid)
    return a->pid < b->pid ? -1 : 1;
  if (a->tid != b->tid)
    return a->tid < b->tid ? -1 : 1;
  if (a->ts != b->ts)
    return a->ts < b->ts ? -1 : 1;
  if (a->end != b->end)
    return a->end > b->end ? -1 : 1; /* the outer span first */
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int is_span(const item *it) {
  return !it->r || it->unended || it->r->kind == CC_TRACE_WAIT || it->r->kind == CC_TRACE_HOLD ||
         it->r->kind == CC_TRACE_SLEEP || it->r->kind == CC_TRACE_TASK ||
         it->r->kind == CC_TRACE_WAKE;
}

/* Less than this past the end of the span it is in, a span ends with it:
 * the two clocks of a trace (ticks for holds) disagree by as much. */
#define JITTER_NS 1000

static int is_kind(const item *it, int a, int b) {
  return it->r && (it->r->kind == a || it->r->kind == b);
}

/* Spans of one thread must nest (Perfetto drops those that overlap). A
 * lock is taken in the last instant of the wait for it: its hold begins
 * when the wait ends. A lock let go out of order (A, B taken; A, then B
 * given) would overlap: such a span is cut at the end of the one it
 * overlaps, and its second part goes on after. Returns how many spans
 * were changed (and need sorting again), or -1 out of memory. */
static long nest(items *s) {
  long changed = 0;
  size_t n = s->n;
  qsort(s->v, n, sizeof *s->v, by_thread_time);
  size_t *stack = malloc((n + 1) * sizeof *stack);
  if (!stack)
    return -1;
  size_t depth = 0;
  for (size_t i = 0; i < n; i++) {
    if (i && (s->v[i].pid != s->v[i - 1].pid || s->v[i].tid != s->v[i - 1].tid))
      depth = 0;
    item *it = &s->v[i];
    if (!is_span(it))
      continue;
    while (depth && s->v[stack[depth - 1]].end <= it->ts)
      depth--;
    const item *top = depth ? &s->v[stack[depth - 1]] : NULL;
    if (top && it->end > top->end && it->end - top->end < JITTER_NS) {
      it->end = top->end;
    } else if (top && it->end > top->end) {
      changed++;
      if (is_kind(top, CC_TRACE_WAIT, CC_TRACE_BEGIN) &&
          is_kind(it, CC_TRACE_HOLD, CC_TRACE_TAKE)) {
        it->ts = top->end;
        continue; /* out of order now: placed at the next sort */
      }
      item rest = *it;
      rest.ts = top->end;
      rest.part = 1;
      it->end = top->end;
      if (push(s, rest)) {
        free(stack);
        return -1;
      }
      it = &s->v[i]; /* push may have moved it */
    }
    stack[depth++] = i;
  }
  free(stack);
  return changed;
}

long cc_trace_write(FILE *f, int main_pid) {
  if (!H)
    return CC_EVALUE;
  writer w = {.f = f, .t0 = H->t0, .tsc0 = H->tsc0, .main_pid = main_pid, .ns_per_tick = 1};
  if (cc__trace_tsc) {
    int64_t ticks = 0, ns = 0;
    calibrate(&ticks, &ns);
    if (ticks > w.tsc0 && ns > w.t0)
      w.ns_per_tick = (double)(ns - w.t0) / (double)(ticks - w.tsc0);
  }
  items s = {0}, gives = {0};
  int64_t last = cc_now(); /* the run has ended: what is still open ends now */
  uint64_t used = atomic_load(&H->used);
  if (used > H->room)
    used = H->room;
  uint32_t seq = 0;
  long failed = 0;
  /* Gathers every record, with the names, the ends of processes and the
   * lives of threads. */
  for (uint64_t off = 0; off < used && !failed; off += CC_TRACE_CHUNK_BYTES) {
    const cc__trace_rec *c = chunks() + off / REC;
    if (atomic_load(&c->kind) != CC_TRACE_CHUNK)
      continue;
    int32_t pid = (int32_t)c->a, tid = (int32_t)c->b;
    const char *text = NULL;
    uint32_t tlen = 0;
    for (size_t i = 1; i < PER_CHUNK && !failed; i++) {
      const cc__trace_rec *r = c + i;
      int kind = atomic_load_explicit(&r->kind, memory_order_acquire);
      if (kind <= CC__TRACE_PAD || kind >= CC_TRACE_KIND_COUNT)
        break;
      if (kind == CC_TRACE_TEXT) {
        text = (const char *)(r + 1);
        tlen = r->a > 0 && r->a <= TEXT_MAX ? (uint32_t)r->a : 0;
        i += (tlen + REC - 1) / REC;
        if (i >= PER_CHUNK)
          break; /* not written whole: a record follows its text */
        continue;
      }
      int64_t ts = r->ts, dur = r->a;
      if ((kind == CC_TRACE_TAKE || kind == CC_TRACE_HOLD || kind == CC_TRACE_GIVE) &&
          r->sub == TICKS) {
        ts = w.t0 + (int64_t)((double)(r->ts - w.tsc0) * w.ns_per_tick);
        dur = (int64_t)((double)r->a * w.ns_per_tick);
      }
      item it = {ts, ts, r, text, tlen, seq++, pid, tid, 0, 0, ts + (kind == CC_TRACE_WAIT ? dur : 0)};
      text = NULL;
      tlen = 0;
      int64_t at = ts;
      switch (kind) {
      case CC_TRACE_PROCESS:
        failed = map_put(&w.procs, key2(pid, 0), it);
        break;
      case CC_TRACE_THREAD:
        it.r = NULL;
        it.end = INT64_MIN; /* open */
        failed = map_put(&w.threads, key2(pid, tid), it);
        break;
      case CC_TRACE_END: {
        item *life = map_get(&w.threads, key2(pid, tid));
        if (life && life->end == INT64_MIN)
          life->end = r->ts;
        break;
      }
      case CC_TRACE_BEGIN:
      case CC_TRACE_TAKE:
        failed = map_put(&w.begun, begin_key(tid, r, kind), it);
        break;
      case CC_TRACE_NAMED:
        failed = map_put(&w.objs, key2(r->type, (int32_t)r->obj), it);
        break;
      case CC_TRACE_EXIT:
        failed = map_put(&w.ends, key2(pid, 0), it) || push(&s, it);
        break;
      case CC_TRACE_REAP:
        if (!map_get(&w.ends, key2((int32_t)r->a, 0)))
          failed = map_put(&w.ends, key2((int32_t)r->a, 0), it);
        failed = failed || push(&s, it);
        break;
      case CC_TRACE_WAKE:
        failed = map_put(&w.flows, (uint32_t)r->b, it);
        it.end = ts + dur;
        at = it.end;
        failed = failed || push(&s, it);
        break;
      case CC_TRACE_WAIT:
      case CC_TRACE_HOLD: {
        /* Its beginning is said: it is not open any more (and a wait's
         * text, where, is there). */
        item *b = map_get(&w.begun, begin_key(tid, r, kind == CC_TRACE_WAIT ? CC_TRACE_BEGIN
                                                                            : CC_TRACE_TAKE));
        if (b) {
          if (!it.text) {
            it.text = b->text;
            it.tlen = b->tlen;
          }
          b->r = NULL;
        }
        it.end = ts + dur;
        at = it.end;
        failed = push(&s, it);
        break;
      }
      case CC_TRACE_GIVE:
        failed = push(&gives, it);
        break;
      case CC_TRACE_SLEEP:
      case CC_TRACE_GIL:
      case CC_TRACE_TASK:
        it.end = ts + dur;
        at = it.end;
        failed = failed || push(&s, it);
        break;
      default:
        failed = push(&s, it);
      }
      if (at > last)
        last = at;
    }
  }
  if (!failed)
    failed = give_back(&w, &gives, &s);
  free(gives.v);
  /* A life still open ends with its process (its exit, or when it was
   * reaped), or with the trace. */
  for (size_t i = 0; i < w.threads.cap && !failed; i++) {
    item *life = &w.threads.vals[i];
    if (!w.threads.keys[i])
      continue;
    if (life->end == INT64_MIN) {
      item *end = map_get(&w.ends, key2(life->pid, 0));
      life->end = end ? end->ts : last;
      if (life->end < life->ts)
        life->end = life->ts;
    }
    failed = push(&s, *life);
  }
  /* A wait or a hold that never ended (a deadlock's, a killed process's)
   * lasts as long as its thread. */
  for (size_t i = 0; i < w.begun.cap && !failed; i++) {
    item *b = &w.begun.vals[i];
    if (!w.begun.keys[i] || !b->r)
      continue;
    item *life = map_get(&w.threads, key2(b->pid, b->tid));
    item span = *b;
    span.end = life && life->end > b->ts ? life->end : last;
    span.unended = 1;
    failed = push(&s, span);
  }
  long cut = failed ? -1 : 0;
  while (cut != -1 && (cut = nest(&s)) > 0)
    ;
  if (cut < 0)
    failed = 1;
  if (!failed) {
    fputs("{\"traceEvents\":[\n", f);
    write_names(&w, &w.procs, "process_name", 1);
    write_names(&w, &w.threads, "thread_name", 0);
    for (size_t i = 0; i < s.n; i++)
      write_item(&w, &s.v[i]);
    fprintf(f, "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"clock\":\"CLOCK_MONOTONIC\","
               "\"dropped\":%llu}}\n",
            (unsigned long long)atomic_load(&H->dropped));
  }
  long events = w.events;
  free(s.v);
  map_free(&w.procs);
  map_free(&w.threads);
  map_free(&w.objs);
  map_free(&w.ends);
  map_free(&w.flows);
  map_free(&w.begun);
  if (failed)
    return CC_ENOMEM;
  return fflush(f) == 0 && !ferror(f) ? events : CC_ESYS;
}
