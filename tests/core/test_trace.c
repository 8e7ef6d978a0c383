/* test_trace - the run's trace buffer: records of every party, written as JSON */
#include "helpers.h"

#include "concur/error.h"
#include "concur/event.h"
#include "concur/lock.h"
#include "concur/trace.h"

#include <string.h>

/* The JSON of the trace so far, in a string the caller frees. */
static char *json(int main_pid) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_true(cc_trace_write(f, main_pid) > 0);
  fclose(f);
  return buf;
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
    n++;
  return n;
}

typedef struct shared {
  cc_lock *lock;
  cc_event *ev;
} shared;

/* Takes and gives the lock, sets the Event, names itself and its thread. */
static int take_and_set(void *arg, int i) {
  shared *s = arg;
  cc__trace_thread("Party");
  for (int k = 0; k < 10; k++) {
    if (cc_lock_acquire(s->lock, CC_FOREVER))
      return 1;
    cc_lock_release(s->lock);
  }
  cc_event_set(s->ev);
  cc__trace_event(CC_TRACE_EXIT, NULL, 40 + i, 0, NULL);
  cc__trace_end();
  return 0;
}

/* Every party's records are in the one trace, and so are those of a
 * process killed before it ended (the buffer is shared, not its own). */
static void every_party_is_in_the_trace(void **state) {
  (void)state;
  assert_int_equal(cc_trace_init(0), 0);
  assert_int_equal(cc_trace_start(), 0);
  cc__trace_process("Test");
  shared *s = cc_arena_alloc(sizeof *s);
  s->lock = cc_lock_new(0);
  assert_int_equal(cc_obj_set_name(&s->lock->hdr, "L", 1), 0);
  cc__trace_named(&s->lock->hdr);
  s->ev = cc_event_new();
  for (int kind = 0; kind < PARTY_KINDS; kind++)
    assert_int_equal(party_join(party_start(kind, take_and_set, s, kind), 10), 0);
  pid_t killed = fork_counted();
  if (killed == 0) {
    cc__trace_thread("Killed");
    cc_lock_acquire(s->lock, CC_FOREVER);
    kill(getpid(), SIGKILL);
  }
  assert_int_equal(await(killed, 10), 128 + SIGKILL);
  char *j = json(getpid());
  assert_int_equal(count(j, "\"name\":\"holds Lock 'L'\""), 3 * 10 + 1);
  assert_int_equal(count(j, "\"ended\":false"), 1); /* the killed one's hold */
  assert_int_equal(count(j, "\"name\":\"sets Event-"), 3);
  for (int kind = 0; kind < PARTY_KINDS; kind++) {
    char exit[32];
    snprintf(exit, sizeof exit, "\"name\":\"exits %d\"", 40 + kind);
    assert_int_equal(count(j, exit), 1);
  }
  assert_int_equal(count(j, "\"name\":\"thread_name\",\"args\":{\"name\":\"Party\"}"), 3);
  assert_int_equal(count(j, "\"name\":\"thread_name\",\"args\":{\"name\":\"Killed\"}"), 1);
  assert_int_equal(count(j, "\"name\":\"process_name\",\"args\":{\"name\":\"Test\"}"), 1);
  free(j);
  assert_int_equal(cc_trace_dropped(), 0);
  cc_obj_unref(&s->lock->hdr);
  cc_obj_unref(&s->ev->hdr);
  cc_arena_free(s);
  cc_trace_fini();
}

/* A full buffer keeps what it has and counts what it could not keep: a
 * chunk of 16 KiB holds 511 records after its own. */
static void a_full_buffer_counts_what_it_drops(void **state) {
  (void)state;
  assert_int_equal(cc_trace_init(100), CC_EVALUE);
  size_t head = 3 * CC_TRACE_CHUNK_BYTES, chunks = 4;
  assert_int_equal(cc_trace_init(head + chunks * CC_TRACE_CHUNK_BYTES), 0);
  assert_int_equal(cc_trace_start(), 0);
  for (int i = 0; i < 3000; i++)
    cc__trace_event(CC_TRACE_EXIT, NULL, 1, 0, NULL);
  assert_int_equal(cc_trace_dropped(), 3000 - chunks * 511);
  char *j = json(getpid());
  assert_int_equal(count(j, "\"name\":\"exits 1\""), chunks * 511);
  assert_non_null(strstr(j, "\"dropped\":956}"));
  free(j);
  cc_trace_fini();
}

/* Names are JSON strings whatever their bytes: quotes and backslashes
 * escaped, bytes that are not UTF-8 replaced. */
static void names_are_escaped(void **state) {
  (void)state;
  assert_int_equal(cc_trace_init(0), 0);
  assert_int_equal(cc_trace_start(), 0);
  cc__trace_thread("a \"quoted\" \\ name\n\xff\xc3\xa9");
  char *j = json(getpid());
  assert_non_null(strstr(j, "\"a \\\"quoted\\\" \\\\ name\\u000a\\ufffd\xc3\xa9\""));
  free(j);
  cc_trace_fini();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_party_is_in_the_trace),
      cmocka_unit_test(a_full_buffer_counts_what_it_drops),
      cmocka_unit_test(names_are_escaped),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
