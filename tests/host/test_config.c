/* test_config - concur.yaml: overrides, the shipped defaults and every kind of bad configuration */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <unistd.h>

#include "concur/config.h"
#include "concur/error.h"
#include "host.h"

#include <string.h>

static const char *write_tmp(const char *text) {
  static char path[64];
  strcpy(path, "/tmp/concur-test-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

static int load(const char *text, cc_config *c, char *err) {
  cc_config_defaults(c);
  const char *path = write_tmp(text);
  int r = host_config_load(c, path, err, 512);
  unlink(path);
  return r;
}

static void overrides(void **state) {
  (void)state;
  cc_config c;
  char err[512] = "";
  assert_int_equal(load("arena:\n  size: 64M\nlimits:\n  max_processes: 20\n"
                        "  run_timeout: 2.5\ntime_scale: 0.01\n"
                        "threads: {switch_interval: 0.002}\npool: {processes: 3}\n",
                        &c, err), 0);
  assert_int_equal(c.arena_size, 64u << 20);
  assert_int_equal(c.max_processes, 20);
  assert_true(c.run_timeout == 2.5);
  assert_true(c.time_scale == 0.01);
  assert_true(c.switch_interval == 0.002);
  assert_int_equal(c.pool_processes, 3);
  assert_int_equal(load("", &c, err), 0); /* an empty file keeps the defaults */
  assert_int_equal(c.max_processes, 512);
}

static void expect_error(const char *text, const char *where, const char *what) {
  cc_config c;
  char err[512] = "";
  assert_int_equal(load(text, &c, err), CC_ECONFIG);
  if (!strstr(err, where) || !strstr(err, what))
    fail_msg("error '%s' lacks '%s' or '%s'", err, where, what);
}

static void bad_input_is_refused_precisely(void **state) {
  (void)state;
  expect_error("limits:\n  max_processes: 3\n run_timeout: 1\n", ":3:2:", "malformed YAML");
  expect_error("limits: {max_processes: 3\n", ":2:1:", "malformed YAML");
  expect_error("arena:\n  size: [1, 2]\n", ":2:9:", "must be a single value");
  expect_error("limits:\n  max_procesess: 3\n", ":2:3:",
               "unknown key 'limits.max_procesess'; did you mean 'max_processes'?");
  expect_error("arenna:\n  size: 1\n", ":1:1:", "did you mean 'arena'?");
  expect_error("limits:\n  max_processes: many\n", ":2:18:", "must be a number");
  expect_error("arena:\n  size: -5M\n", ":2:9:", "must not be negative");
  expect_error("limits:\n  run_timeout: -1\n", ":2:16:", "must not be negative");
  expect_error("limits: 3\n", ":1:9:", "must be a mapping");
  expect_error("time_scale: 0\n", ":1:13:", "greater than 0");
  expect_error("threads:\n  switch_interval: 1000\n", ":2:20:", "is in seconds");
  expect_error("- a\n", ":1:1:", "must be a mapping");
  cc_config c;
  char err[512];
  cc_config_defaults(&c);
  assert_int_equal(host_config_load(&c, "/nonexistent/concur.yaml", err, sizeof err),
                   CC_ECONFIG);
  assert_non_null(strstr(err, "cannot open"));
}

/* The shipped config/concur.yaml sets every key, each to its default:
 * loaded over a config of other values, it gives the defaults. */
static void the_shipped_file_says_the_defaults(void **state) {
  (void)state;
  cc_config shipped, defaults;
  cc_config_defaults(&defaults);
#define CC__CONFIG_OTHER(type, field, key, def) shipped.field = (type)(defaults.field + 1);
  CC_CONFIG_MAP(CC__CONFIG_OTHER)
#undef CC__CONFIG_OTHER
  char err[512];
  assert_int_equal(host_config_load(&shipped, CONCUR_SOURCE_DIR "/config/concur.yaml", err,
                                  sizeof err), 0);
#define CC__CONFIG_SAME(type, field, key, def)                                 \
  if (shipped.field != defaults.field)                                         \
    fail_msg("config/concur.yaml: %s is not its default (or not there)", key);
  CC_CONFIG_MAP(CC__CONFIG_SAME)
#undef CC__CONFIG_SAME
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(overrides),
      cmocka_unit_test(bad_input_is_refused_precisely),
      cmocka_unit_test(the_shipped_file_says_the_defaults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
