/* run - concur run: a supervisor that owns the run, and the Lua runner it forks */
#include "concur.h"
#include "concur/deadlock.h"
#include "concur/error.h"
#include "concur/fault.h"
#include "concur/lockorder.h"
#include "concur/proc.h"
#include "concur/sched.h"
#include "concur/trace.h"
#include "concur/wait.h"
#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * DESIGN. `concur run` is two processes. The supervisor makes the arena,
 * becomes a child subreaper and forks the runner, which is the run's main
 * process and runs the script in Lua. Orphans of the run are re-parented to
 * the supervisor, which reaps them. Whatever the runner does (returns,
 * raises, spins in C, is killed), the supervisor sees it end or the run's
 * timeout pass, and then kills and reaps every process left below it: nothing
 * of a run outlives it. Nor does anything outlive the supervisor itself,
 * SIGKILLed: every process of the run is tied to it (cc_runtime_tether)
 * and the kernel kills them all when it goes.
 */

static int msgh(lua_State *L) {
  if (lua_istable(L, 1) && luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1; /* a concur error object carries its own traceback */
  }
  const char *msg = lua_tostring(L, 1);
  if (!msg)
    msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* A parameter's value: integers, floats and booleans are converted. */
static void push_param(lua_State *L, const char *v) {
  if (!strcmp(v, "true"))
    lua_pushboolean(L, 1);
  else if (!strcmp(v, "false"))
    lua_pushboolean(L, 0);
  else if (!lua_stringtonumber(L, v))
    lua_pushstring(L, v);
}

static int error_kind_is(lua_State *L, int idx, const char *kind) {
  if (!lua_istable(L, idx))
    return 0;
  lua_getfield(L, idx, "kind");
  int is = lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), kind);
  lua_pop(L, 1);
  return is;
}

/* Reports a failed script the way lua.c does, with concur's prefix. */
static void report_error(lua_State *L) {
  fflush(stdout);
  if (lua_istable(L, -1)) {
    const char *s = luaL_tolstring(L, -1, NULL);
    lua_getfield(L, -2, "traceback");
    fprintf(stderr, "concur: %s\n%s\n", s, luaL_optstring(L, -1, ""));
    lua_pop(L, 2);
  } else {
    fprintf(stderr, "concur: %s\n", luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
  }
  fflush(stderr);
}

static int run_script(const run_opts *o);

/* The runner: the script's run, traced from its first step to its end
 * when the run is. */
static int runner(const run_opts *o, int traced) {
  if (traced) {
    cc_trace_start();
    cc__trace_process("MainProcess");
    cc__trace_thread("MainThread");
  }
  int code = run_script(o);
  cc__trace_event(CC_TRACE_EXIT, NULL, code, 0, NULL);
  cc__trace_end();
  return code;
}

static int run_script(const run_opts *o) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "concur: not enough memory for Lua\n");
    return EXIT_SCRIPT;
  }
  luaL_openlibs(L);
  cc_lhost h = {o->cfg.arena_size, o->cfg.max_processes, o->cfg.time_scale,
                o->metrics, o->cfg.switch_interval, o->cfg.pool_processes,
                o->quantum >= 0 ? o->quantum : 1000};
  cc_lhost_configure(&h);
  luaL_requiref(L, "concur", luaopen_concur, 0);
  lua_getfield(L, -1, "params");
  for (int i = 0; i < o->nparams; i++) {
    const char *eq = strchr(o->params[i], '=');
    lua_pushlstring(L, o->params[i], (size_t)(eq - o->params[i]));
    push_param(L, eq + 1);
    lua_settable(L, -3);
  }
  lua_pop(L, 2);
  luaL_requiref(L, "concur.yaml", host_open_yaml, 0);
  lua_pop(L, 1);
  cc_lhost_os_exit(L);
  /* As lua.c: arg[0] the script, arg[1]... its arguments, and what came
   * before the script (the binary, "run", options) at arg[-1], arg[-2]... */
  lua_createtable(L, o->nargs, o->script_at + 2);
  lua_pushstring(L, o->script);
  lua_rawseti(L, -2, 0);
  lua_pushstring(L, o->argv[-1]);
  lua_rawseti(L, -2, -o->script_at - 1);
  for (int i = 0; i < o->script_at; i++) {
    lua_pushstring(L, o->argv[i]);
    lua_rawseti(L, -2, i - o->script_at);
  }
  for (int i = 0; i < o->nargs; i++) {
    lua_pushstring(L, o->args[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");

  int code = EXIT_OK;
  lua_pushcfunction(L, msgh);
  int status = luaL_loadfile(L, o->script);
  if (status == LUA_OK) {
    luaL_checkstack(L, o->nargs, "too many arguments to the script");
    for (int i = 0; i < o->nargs; i++)
      lua_pushstring(L, o->args[i]);
    status = lua_pcall(L, o->nargs, 0, -2 - o->nargs);
  }
  if (status != LUA_OK) {
    if (error_kind_is(L, -1, cc_errkind(CC_EEXIT))) {
      lua_getfield(L, -1, "code");
      code = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
    } else if (error_kind_is(L, -1, cc_errkind(CC_EINTR))) {
      fprintf(stderr, "concur: interrupted\n");
      code = EXIT_INTERRUPTED;
    } else {
      report_error(L);
      code = EXIT_SCRIPT;
    }
    lua_pop(L, 1);
  }
  /* A Ctrl-C the script caught still ends the run as interrupted, unless
   * the script chose its exit code (os.exit). */
  if (code == EXIT_OK && cc_linterrupt_taken() && status == LUA_OK) {
    fprintf(stderr, "concur: interrupted\n");
    code = EXIT_INTERRUPTED;
  }
  /* CPython's rule at the end of the main script, error or interrupt or
   * not: terminate the daemon children, join the others (another Ctrl-C
   * stops that, as the supervisor ends the run at a second one). */
  if (cc_lfinish(L) == CC_EINTR) {
    cc_linterrupt_take();
    fprintf(stderr, "concur: interrupted while joining the children\n");
    code = EXIT_INTERRUPTED;
  }
  cc_lclose(L);
  fflush(NULL);
  return code;
}

/* Kills every process below the supervisor and reaps them all. They are
 * all stopped first: killed one by one, a process that still ran would
 * see another die holding a lock, take it over and say so, after the
 * run's last word (a deadlock's report). */
static void kill_all(void) {
  cc_proc_stop_tree(getpid());
  for (int round = 0; round < 1000; round++) {
    cc_proc_kill_tree(getpid(), SIGKILL);
    int st, pid;
    while ((pid = cc_proc_reap_any(&st)) > 0)
      ;
    if (pid == CC_ESYS)
      return; /* no children left */
    cc_sleep_until(cc_now() + 1000000);
  }
}

/* The run's trace: written into path.part, and renamed to path once it is
 * whole, so that a run killed while it writes leaves no trace that looks
 * whole. Without --trace (a timeline alone), path is a scratch file,
 * removed once drawn. */
typedef struct trace_file {
  FILE *f;
  char path[PATH_MAX], part[PATH_MAX + 8];
  int scratch;
} trace_file;

/* Opens the trace's file and makes its buffer, before anything runs: a run
 * whose trace cannot be kept does not start. 0, or an exit code (said). */
static int trace_open(trace_file *t, const run_opts *o) {
  if (o->trace) {
    if (snprintf(t->path, sizeof t->path, "%s", o->trace) >= (int)sizeof t->path) {
      fprintf(stderr, "concur: the trace's path is too long: %.60s...\n", o->trace);
      return EXIT_USAGE;
    }
  } else {
    const char *tmp = getenv("TMPDIR");
    tmp = tmp && *tmp ? tmp : "/tmp";
    int fd = -1;
    if (snprintf(t->path, sizeof t->path, "%s/concur-trace-XXXXXX", tmp) < (int)sizeof t->path)
      fd = mkstemp(t->path);
    if (fd < 0) {
      fprintf(stderr, "concur: cannot make a file for the timeline's trace in %s: %s "
                      "(set TMPDIR to a directory that can be written)\n",
              tmp, errno ? strerror(errno) : "the path is too long");
      return EXIT_USAGE;
    }
    close(fd);
    t->scratch = 1;
  }
  snprintf(t->part, sizeof t->part, "%s.part", t->path);
  /* Close-on-exec: not a file of the run's processes, nor what they exec. */
  t->f = fopen(t->part, "we");
  if (!t->f) {
    fprintf(stderr, "concur: cannot write the trace '%s': %s\n", t->path, strerror(errno));
    if (t->scratch)
      unlink(t->path);
    return EXIT_USAGE;
  }
  int r = cc_trace_init(0);
  if (r) {
    fprintf(stderr, "concur: cannot make the trace's buffer: %s\n", cc_strerror(r));
    return EXIT_USAGE;
  }
  return 0;
}

/* Forgets the trace (a run that did not start, a drawn timeline's). */
static void trace_discard(trace_file *t) {
  if (t->f)
    fclose(t->f);
  t->f = NULL;
  unlink(t->part);
  if (t->scratch)
    unlink(t->path);
}

/* Writes the trace of the run, whose every process has ended. Says on
 * stderr what went wrong or was dropped. 0, or -1 (no trace). */
static int trace_write(trace_file *t, int main_pid) {
  long n = cc_trace_write(t->f, main_pid);
  if (fclose(t->f) != 0 && n >= 0)
    n = CC_ESYS;
  t->f = NULL;
  if (n >= 0 && rename(t->part, t->path) != 0)
    n = CC_ESYS;
  uint64_t dropped = cc_trace_dropped();
  if (dropped)
    fprintf(stderr, "concur: the trace's buffer was full: %llu events were not recorded "
                    "(trace a shorter run)\n", (unsigned long long)dropped);
  if (n >= 0)
    return 0;
  fprintf(stderr, "concur: cannot write the trace '%s': %s\n", t->path,
          n == CC_ESYS ? strerror(errno) : cc_strerror((int)n));
  trace_discard(t);
  return -1;
}

/* After a run under the scheduler: what it decided, on stderr when the run
 * failed (with the command that replays it), and as JSON in
 * $CONCUR_SIM_OUT for explore and the batch runner. */
static void sim_summary(const run_opts *o, int code) {
  static char schedule[CC_SCHED_PICKS * 12];
  cc_sched_result r;
  cc_sched_result_get(&r, schedule, sizeof schedule);
  if (code != EXIT_OK) {
    fflush(stdout);
    fprintf(stderr, "concur: --sim seed %llu (%s): %llu decisions, %llu preemptions; "
                    "replay: concur run --sim --replay '%s' %s\n",
            (unsigned long long)r.seed, cc_sched_strategy_name(r.strategy),
            (unsigned long long)r.decisions, (unsigned long long)r.preemptions, schedule,
            o->script);
  }
  const char *out = getenv("CONCUR_SIM_OUT");
  if (out && *out) {
    FILE *f = fopen(out, "w");
    if (f) {
      fprintf(f, "{\"seed\":%llu,\"strategy\":\"%s\",\"decisions\":%llu,\"preemptions\":%llu,"
                 "\"virtual_s\":%.6f,\"overflow\":%s,\"tasks\":%u,\"schedule\":\"%s\"}\n",
              (unsigned long long)r.seed, cc_sched_strategy_name(r.strategy),
              (unsigned long long)r.decisions, (unsigned long long)r.preemptions,
              (double)r.vnow / 1e9, r.overflow ? "true" : "false", r.tasks, schedule);
      fclose(f);
    }
  }
}

/* How often the supervisor looks at a --sim run's decisions, and how long
 * it lets one task hold the run without deciding. */
#define SIM_WATCH_NS 100000000LL
#define SIM_STALL_NS 1000000000LL

int host_run(const run_opts *o) {
  /* A syntax error is reported before anything runs. */
  lua_State *C = luaL_newstate();
  if (luaL_loadfile(C, o->script) != LUA_OK) {
    fprintf(stderr, "concur: %s\n", lua_tostring(C, -1));
    lua_close(C);
    return EXIT_SCRIPT;
  }
  lua_close(C);

  int r = cc_runtime_init(o->cfg.arena_size, o->cfg.max_processes);
  if (r) {
    fprintf(stderr, "concur: cannot make an arena of %zu bytes: %s\n",
            o->cfg.arena_size, cc_strerror(r));
    return EXIT_USAGE;
  }
  trace_file trace = {0};
  int traced = o->trace || o->timeline;
  if (traced && (r = trace_open(&trace, o))) {
    trace_discard(&trace);
    return r;
  }
  if (cc_fault_from_env()) {
    trace_discard(&trace);
    return EXIT_USAGE;
  }
  cc_runtime_subreaper();
  /* A deadlock found in the run is reported by one of its threads, which
   * then sends SIGUSR1 here: the run ends with exit 3. */
  cc_deadlock_set_supervisor(getpid());
  if (o->sim) {
    cc_sched_opts so = {.seed = (uint64_t)o->seed, .strategy = o->strategy, .depth = o->depth,
                        .steps = o->steps,
                        .schedule = o->replay, .supervisor = getpid()};
    if ((r = cc_sched_init(&so)) != 0) {
      if (r == CC_EVALUE)
        fprintf(stderr, "concur: --replay takes a schedule as a failed --sim run prints it "
                        "(decision:task,...), not '%s'\n", o->replay);
      else
        fprintf(stderr, "concur: cannot make the scheduler: %s\n", cc_strerror(r));
      trace_discard(&trace);
      return r == CC_EVALUE ? EXIT_USAGE : EXIT_USAGE;
    }
  }
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, &old);
  int tie[2];
  if (pipe2(tie, O_CLOEXEC) != 0) {
    fprintf(stderr, "concur: cannot make a pipe: %s\n", strerror(errno));
    trace_discard(&trace);
    return EXIT_USAGE;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "concur: cannot fork: %s\n", strerror(errno));
    trace_discard(&trace);
    return EXIT_USAGE;
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(tie[1]); /* the supervisor's alone */
    if (cc_runtime_tether(tie[0], (int)getppid()) != 0) {
      fprintf(stderr, "concur: cannot tie the run to its supervisor: %s\n", strerror(errno));
      _exit(EXIT_USAGE);
    }
    cc_runtime_become_main();
    cc_sched_start(o->sim ? 0 : -1);
    exit(runner(o, traced));
  }
  /* tie[0] stays open: the run's processes open theirs through it. */

  int64_t deadline = o->cfg.run_timeout > 0 ? cc_deadline(o->cfg.run_timeout)
                                            : CC_FOREVER;
  int code = -1, interrupted = 0;
  const char *cause = NULL; /* what the supervisor ended the run for */
  /* Under --sim the run's decisions are watched: a task that holds the
   * run, makes none and sleeps in the kernel at every look for a second of
   * real time is blocked in a call concur does not control, and nothing
   * else can run until it returns. */
  uint64_t steps = 0;
  int64_t moved = cc_now();
  while (code < 0) {
    int64_t until = o->sim && cc_now() + SIM_WATCH_NS < deadline ? cc_now() + SIM_WATCH_NS
                                                                  : deadline;
    int s = cc_wait_signal(&set, until);
    if (s == CC_ETIMEDOUT && until != deadline) {
      if (cc_sched_steps() != steps || !cc_sched_holder_asleep()) {
        steps = cc_sched_steps();
        moved = cc_now();
      } else if (cc_now() - moved >= SIM_STALL_NS) {
        char who[256];
        cc_sched_holder(who, sizeof who);
        fflush(stdout);
        fprintf(stderr, "concur: --sim: %s has not come back to concur for %g s: it waits in "
                        "a call that concur does not control (a socket, os.execute, a read "
                        "from a terminal), and nothing else may run meanwhile; run this "
                        "scenario without --sim (sim: false in a batch)\n",
                who, SIM_STALL_NS / 1e9);
        code = EXIT_SCRIPT;
        cause = "stall";
        break;
      }
      continue;
    }
    if (s == CC_ETIMEDOUT) {
      fflush(stdout);
      fprintf(stderr, "concur: the run timed out after %g s "
              "(limits.run_timeout or --timeout); every process of it was killed\n",
              o->cfg.run_timeout);
      code = EXIT_TIMEOUT;
      cause = "timeout";
      break;
    }
    /* The first Ctrl-C is the runner's (the terminal sends it to every
     * process of the run): the script may catch it and clean up. A second
     * one ends the run at once. */
    if (s == SIGINT && !interrupted) {
      interrupted = 1;
      continue;
    }
    if (s == SIGINT) {
      fprintf(stderr, "concur: interrupted again: every process of the run was killed\n");
      code = EXIT_INTERRUPTED;
      cause = "interrupted";
      break;
    }
    if (s == SIGUSR1) {
      code = EXIT_DEADLOCK;
      cause = "deadlock";
      break;
    }
    if (s == SIGTERM || s == SIGHUP) {
      code = 128 + s;
      break;
    }
    int st, p;
    while ((p = cc_proc_reap_any(&st)) > 0) {
      if (p != pid)
        continue;
      if (WIFEXITED(st)) {
        code = WEXITSTATUS(st);
      } else {
        fprintf(stderr, "concur: the script's process died of signal %d (%s)\n",
                WTERMSIG(st), strsignal(WTERMSIG(st)));
        code = 128 + WTERMSIG(st);
      }
    }
  }
  kill_all();
  int drawn = traced && trace_write(&trace, pid) == 0 && o->timeline;
  if (!cause && interrupted && code == EXIT_INTERRUPTED)
    cause = "interrupted";
  /* Every process of the run has ended: its lock orders are all in. */
  fflush(stdout);
  if (cc_lockorder_report(stderr) && o->strict_locks && code == EXIT_OK) {
    fprintf(stderr, "concur: the run fails (--strict-locks): locks were taken in orders that "
                    "can deadlock; take them in one order everywhere\n");
    code = EXIT_SCRIPT;
    cause = "lock_order";
  }
  if (o->sim)
    sim_summary(o, code);
  /* Exit codes 3 and 4 are also a script's own (os.exit(3)): whoever ran
   * this (the batch runner) learns the real cause from $CONCUR_STATUS. */
  const char *status = getenv("CONCUR_STATUS");
  if (status && *status && cause) {
    FILE *f = fopen(status, "w");
    if (f) {
      fprintf(f, "%s\n", cause);
      fclose(f);
    }
  }
  /* The chart comes last: after every report of the run, which a trace
   * too big to draw cannot then lose. */
  if (drawn) {
    fflush(NULL);
    char *targv[] = {"timeline", trace.path, o->width ? "--width" : NULL, (char *)o->width,
                     NULL};
    if (host_timeline(o->width ? 4 : 2, targv) != EXIT_OK && code == EXIT_OK)
      code = EXIT_USAGE;
  }
  if (trace.scratch)
    unlink(trace.path);
  return code;
}
