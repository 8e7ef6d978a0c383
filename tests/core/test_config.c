/* test_config - the settings' defaults, sizes and the nearest known key */
#include "helpers.h"

#include "concur/config.h"
#include "concur/error.h"

#include <string.h>

static void sizes(void **state) {
  (void)state;
  assert_int_equal(cc_config_parse_size("4096"), 4096);
  assert_int_equal(cc_config_parse_size("64M"), 64LL << 20);
  assert_int_equal(cc_config_parse_size("2GiB"), 2LL << 30);
  assert_int_equal(cc_config_parse_size("1k"), 1024);
  assert_int_equal(cc_config_parse_size("12X"), -1);
  assert_int_equal(cc_config_parse_size("-1"), -1);
  assert_int_equal(cc_config_parse_size(""), -1);
}

/* The defaults come from the one list; a misspelt key finds its name. */
static void defaults_and_near_names(void **state) {
  (void)state;
  cc_config c;
  cc_config_defaults(&c);
  assert_int_equal(c.arena_size, (size_t)256 << 20);
  assert_int_equal(c.max_processes, 512);
  assert_true(c.switch_interval == 0.005);
  assert_true(c.time_scale == 1);
  static const char *const known[] = {"arena.size", "limits.max_processes", NULL};
  assert_string_equal(cc_config_nearest("arena.sise", known), "arena.size");
  assert_null(cc_config_nearest("colour", known));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults_and_near_names),
      cmocka_unit_test(sizes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
