/* lhost - concur.host: what the batch runner needs from C (spawn, wait, JSON, a sandbox) */
#include "concur/error.h"
#include "concur/wait.h"
#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <jansson.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* spawn{argv = {...}, env = {K = V}, stdout = path, stderr = path}: starts a
 * program in a process group of its own (so that its whole tree can be
 * killed) and returns its pid and a pidfd to wait on. */
static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "argv");
  luaL_argcheck(L, lua_istable(L, -1), 1, "argv must be a list");
  int argc = (int)luaL_len(L, -1);
  luaL_argcheck(L, argc >= 1, 1, "argv must not be empty");
  const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
  for (int i = 1; i <= argc; i++) {
    /* The strings stay alive in the argv table. */
    luaL_argcheck(L, lua_geti(L, -2, i) == LUA_TSTRING, 1, "argv must hold strings");
    argv[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  argv[argc] = NULL;
  const char *out = (lua_getfield(L, 1, "stdout"), lua_tostring(L, -1));
  const char *err = (lua_getfield(L, 1, "stderr"), lua_tostring(L, -1));
  lua_getfield(L, 1, "env");
  int env_idx = lua_gettop(L);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    return luaL_error(L, "cannot fork: %s", strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (lua_istable(L, env_idx)) {
      lua_pushnil(L);
      while (lua_next(L, env_idx)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
          const char *v = luaL_tolstring(L, -1, NULL); /* pushes: key is at -3 */
          setenv(lua_tostring(L, -3), v, 1);
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      }
    }
    int fd = open("/dev/null", O_RDONLY);
    if (fd >= 0)
      dup2(fd, 0);
    if (out && (fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644)) >= 0)
      dup2(fd, 1);
    if (err && (fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644)) >= 0)
      dup2(fd, 2);
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "concur: cannot run '%s': %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid); /* also here, so that a kill right away reaches the group */
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  lua_pushinteger(L, pid);
  lua_pushinteger(L, pidfd);
  return 2;
}

/* wait_any({fd, ...}, timeout): the position of a pidfd whose process ended,
 * or nil when the timeout passed first. Raises "interrupted" on Ctrl-C. */
static int l_wait_any(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double t = luaL_optnumber(L, 2, -1);
  int n = (int)luaL_len(L, 1);
  if (n == 0) {
    lua_pushnil(L);
    return 1;
  }
  struct pollfd *fds = lua_newuserdatauv(L, sizeof *fds * (size_t)n, 0);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    fds[i].fd = (int)lua_tointeger(L, -1);
    fds[i].events = POLLIN;
    fds[i].revents = 0;
    lua_pop(L, 1);
  }
  int r = cc_wait_fds(fds, n, t < 0 ? CC_FOREVER : cc_deadline(t));
  if (r == CC_EINTR)
    return luaL_error(L, "interrupted");
  if (r <= 0) {
    lua_pushnil(L);
    return 1;
  }
  for (int i = 0; i < n; i++)
    if (fds[i].revents) {
      lua_pushinteger(L, i + 1);
      return 1;
    }
  lua_pushnil(L);
  return 1;
}

/* reap(pid, [pidfd]): {exit=, signal=, user=, sys=, maxrss_kb=} of a child
 * that ended or was killed, waited for. */
static int l_reap(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int pidfd = (int)luaL_optinteger(L, 2, -1);
  int st;
  struct rusage ru;
  /* The child ended or was killed, so this wait is short: a Ctrl-C does not
   * cut it (the runner then kills and reaps its other runs), it is kept. */
  int was = cc_interrupt_clear(), r;
  while ((r = cc_wait_child(pid, pidfd, &st, &ru, CC_FOREVER)) == CC_EINTR)
    was |= cc_interrupt_clear();
  cc_interrupt_restore(was);
  if (r)
    return luaL_error(L, "cannot reap %d: %s", (int)pid, strerror(errno));
  lua_createtable(L, 0, 5);
  if (WIFEXITED(st)) {
    lua_pushinteger(L, WEXITSTATUS(st));
    lua_setfield(L, -2, "exit");
  } else if (WIFSIGNALED(st)) {
    lua_pushinteger(L, WTERMSIG(st));
    lua_setfield(L, -2, "signal");
  }
  lua_pushnumber(L, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6);
  lua_setfield(L, -2, "user");
  lua_pushnumber(L, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
  lua_setfield(L, -2, "sys");
  lua_pushinteger(L, ru.ru_maxrss);
  lua_setfield(L, -2, "maxrss_kb");
  return 1;
}

static int l_killpg(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  killpg(pid, (int)luaL_optinteger(L, 2, SIGKILL));
  return 0;
}

static int l_close(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)cc_now() / 1e9);
  return 1;
}

static int l_cpu_count(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static int l_fnmatch(lua_State *L) {
  lua_pushboolean(L, fnmatch(luaL_checkstring(L, 1), luaL_checkstring(L, 2), 0) == 0);
  return 1;
}

static int l_mkdir(lua_State *L) {
  char path[4096];
  snprintf(path, sizeof path, "%s", luaL_checkstring(L, 1));
  for (char *p = path + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0755);
      *p = '/';
    }
  if (mkdir(path, 0755) != 0 && errno != EEXIST)
    return luaL_error(L, "cannot make the folder %s: %s", path, strerror(errno));
  return 0;
}

/* mkdir_new(path): makes a folder no one else has: path, or path-2,
 * path-3, ... (mkdir is the arbiter: two batches started in the same
 * second get two folders). Returns the one made. */
static int l_mkdir_new(lua_State *L) {
  const char *base = luaL_checkstring(L, 1);
  char path[4096];
  snprintf(path, sizeof path, "%s", base);
  for (char *p = path + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0755);
      *p = '/';
    }
  for (int n = 1; n < 10000; n++) {
    if (n > 1)
      snprintf(path, sizeof path, "%s-%d", base, n);
    if (mkdir(path, 0755) == 0) {
      lua_pushstring(L, path);
      return 1;
    }
    if (errno != EEXIST)
      return luaL_error(L, "cannot make the folder %s: %s", path, strerror(errno));
  }
  return luaL_error(L, "cannot make a new folder %s-N: 10000 are there", base);
}

static int l_timestamp(lua_State *L) {
  char buf[64];
  time_t t = time(NULL);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  lua_pushstring(L, buf);
  return 1;
}

/* JSON through jansson. Tables that are sequences become arrays. */
static json_t *to_json(lua_State *L, int idx, int depth) {
  if (depth > 64)
    luaL_error(L, "value nested too deeply for JSON");
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return json_null();
  case LUA_TBOOLEAN:
    return json_boolean(lua_toboolean(L, idx));
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      return json_integer(lua_tointeger(L, idx));
    if (!isfinite(lua_tonumber(L, idx)))
      return json_null();
    return json_real(lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    json_t *j = json_stringn(s, n);
    return j ? j : json_string("<not UTF-8>");
  }
  case LUA_TTABLE: {
    lua_Integer n = luaL_len(L, idx);
    int array = n > 0;
    if (array) {
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            lua_tointeger(L, -1) > n) {
          array = 0;
          lua_pop(L, 1);
          break;
        }
      }
    }
    if (array) {
      json_t *a = json_array();
      for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        json_array_append_new(a, to_json(L, -1, depth + 1));
        lua_pop(L, 1);
      }
      return a;
    }
    json_t *o = json_object();
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) == LUA_TSTRING || lua_type(L, -2) == LUA_TNUMBER) {
        lua_pushvalue(L, -2);
        const char *k = lua_tostring(L, -1);
        if (k[0] != '_' || k[1] != '_')
          json_object_set_new(o, k, to_json(L, -2, depth + 1));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    return o;
  }
  default:
    return json_string(luaL_tolstring(L, idx, NULL));
  }
}

static void from_json(lua_State *L, json_t *j) {
  luaL_checkstack(L, 4, "JSON nested too deeply");
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    lua_createtable(L, 0, (int)json_object_size(j));
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
      from_json(L, v);
      lua_setfield(L, -2, k);
    }
    return;
  }
  case JSON_ARRAY: {
    lua_createtable(L, (int)json_array_size(j), 0);
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) {
      from_json(L, v);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return;
  }
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(j), json_string_length(j));
    return;
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(j));
    return;
  case JSON_REAL:
    lua_pushnumber(L, json_real_value(j));
    return;
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    return;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    return;
  default:
    lua_pushnil(L);
    return;
  }
}

static int l_json_encode(lua_State *L) {
  json_t *j = to_json(L, 1, 0);
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  json_decref(j);
  if (!s)
    return luaL_error(L, "cannot encode JSON");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

/* json_decode(s) -> value, or nil and the error with its position. */
static int l_json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  json_error_t e;
  json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &e);
  if (!j) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s at line %d, column %d", e.text, e.line, e.column);
    return 2;
  }
  from_json(L, j);
  json_decref(j);
  return 1;
}

/* The sandbox: a fresh Lua state with base (no file or load functions),
 * string, math and table; a check may run 10 million instructions. */
#define SANDBOX_BUDGET 10000000

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luaL_error(L, "the expression ran too long");
}

static lua_State *sandbox(void) {
  lua_State *S = luaL_newstate();
  if (!S)
    return NULL;
  luaL_requiref(S, "_G", luaopen_base, 1);
  luaL_requiref(S, "string", luaopen_string, 1);
  luaL_requiref(S, "math", luaopen_math, 1);
  luaL_requiref(S, "table", luaopen_table, 1);
  lua_settop(S, 0);
  static const char *const unsafe[] = {"dofile", "loadfile", "load", "require",
                                       "collectgarbage", "print", NULL};
  for (const char *const *u = unsafe; *u; u++) {
    lua_pushnil(S);
    lua_setglobal(S, *u);
  }
  lua_sethook(S, budget_hook, LUA_MASKCOUNT, SANDBOX_BUDGET);
  return S;
}

/* Copies a value of L (plain data, through JSON) into S. */
static void copy_into(lua_State *L, int idx, lua_State *S) {
  json_t *j = to_json(L, idx, 0);
  from_json(S, j);
  json_decref(j);
}

/* Ctrl-C and SIGTERM, as lua.c takes them: the handler wakes every wait of
 * core/wait.c and, while the runner is in an interruptible phase, sets a hook
 * on the Lua state that runs (the runner's, or a check's sandbox) that raises
 * at its next instruction. The execution of the runs is not such a phase: a
 * raise there could leave a run started and unrecorded, so its loop takes
 * the interrupt (host.take_interrupt) and kills its runs itself.
 * Threads: the batch runner has none; these are its one thread's, and the
 * handler runs on it, between two of its instructions. */
static volatile sig_atomic_t got_signal;
static lua_State *volatile armed;   /* the state to stop, or NULL */
static lua_State *runner;           /* the runner's own state */

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  lua_pushliteral(L, "interrupted");
  lua_error(L);
}

static void arm(lua_State *L) {
  armed = L;
  if (L && got_signal)
    lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void on_signal(int sig) {
  got_signal = sig;
  cc_interrupt();
  lua_State *L = armed;
  if (L)
    lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

int host_catch_signals(lua_State *L) {
  runner = L;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  return 0;
}

/* interruptible(on): whether a Ctrl-C raises "interrupted" wherever the
 * runner is (on), or is only kept for host.take_interrupt() (off). Turning
 * it on after a Ctrl-C not taken raises at once. */
static int l_interruptible(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  arm(lua_toboolean(L, 1) ? runner : NULL);
  return 0;
}

/* take_interrupt(): whether a Ctrl-C came since the last call; the runs'
 * loop takes it and acts on it, so that the phases after it run (a second
 * Ctrl-C stops them). */
static int l_take_interrupt(lua_State *L) {
  int got = got_signal != 0;
  if (got) {
    got_signal = 0;
    cc_interrupt_clear();
  }
  lua_pushboolean(L, got);
  return 1;
}

/* eval(expr, env): evaluates the Lua expression in a fresh sandbox whose
 * globals are env's fields (plain data). Returns ok, value-or-error. With no
 * env, only compiles it. */
static int l_eval(lua_State *L) {
  size_t n;
  const char *expr = luaL_checklstring(L, 1, &n);
  lua_State *S = sandbox();
  if (!S)
    return luaL_error(L, "not enough memory for the sandbox");
  lua_pushfstring(S, "return %s", expr);
  int st = luaL_loadbufferx(S, lua_tostring(S, -1), lua_rawlen(S, -1), "=check", "t");
  if (st == LUA_OK && lua_istable(L, 2)) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        copy_into(L, -1, S);
        lua_setglobal(S, lua_tostring(L, -2));
      }
      lua_pop(L, 1);
    }
    /* A check that loops is stopped by a Ctrl-C like the runner. */
    int was = armed != NULL;
    if (was)
      arm(S);
    st = lua_pcall(S, 0, 1, 0);
    armed = NULL;
    if (was)
      arm(runner);
  }
  lua_pushboolean(L, st == LUA_OK);
  if (st == LUA_OK && lua_istable(L, 2))
    copy_into(S, -1, L);
  else if (st != LUA_OK)
    lua_pushstring(L, lua_tostring(S, -1));
  else
    lua_pushnil(L);
  lua_close(S);
  return 2;
}

int host_open_host(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"spawn", l_spawn},         {"wait_any", l_wait_any},
      {"reap", l_reap},           {"killpg", l_killpg},
      {"close", l_close},         {"now", l_now},
      {"isatty", l_isatty},       {"fnmatch", l_fnmatch},
      {"mkdir", l_mkdir},         {"mkdir_new", l_mkdir_new}, {"timestamp", l_timestamp},
      {"json_encode", l_json_encode}, {"json_decode", l_json_decode},
      {"eval", l_eval},           {"interruptible", l_interruptible},
      {"take_interrupt", l_take_interrupt},
      {"cpu_count", l_cpu_count},
      {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  return 1;
}
