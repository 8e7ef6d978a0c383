/* main - the concur binary: command line, configuration, dispatch */
#include "concur/config.h"
#include "concur/error.h"
#include "concur/sched.h"
#include "host.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: concur run SCRIPT [ARG]... [-p KEY=VALUE]... [--config FILE] [--time-scale X]\n"
    "                         [--timeout S] [--metrics FILE] [--strict-locks]\n"
    "                         [--trace FILE] [--timeline [--width N]]\n"
    "                         [--sim [--seed N] [--strategy random|pct|first] [--depth D]\n"
    "                                [--replay SCHEDULE] [--quantum K]] [-- ARG...]\n"
    "       concur batch FILE.yaml [--jobs N] [--out DIR] [--format table|md|csv|json]\n"
    "                              [--filter GLOB] [--exclude GLOB] [--repeat N]\n"
    "                              [--shard I/N] [--keep-traces]\n"
    "       concur report DIR|FILE... [--format table|md|csv|json]\n"
    "       concur explore SCRIPT [-p KEY=VALUE]... [--runs N] [--strategy random|pct]\n"
    "                      [--depth D] [--check EXPR] [--seed S] [--jobs N] [--no-shrink]\n"
    "       concur timeline FILE.json [--width N]\n"
    "       concur --help | --version\n";

static const char help[] =
    "concur - a concurrency sandbox: real processes, locks, queues, pools,\n"
    "driven by Lua scenario scripts.\n\n"
    "commands:\n"
    "  run SCRIPT [ARG]... run a Lua scenario script; its arguments fill `arg`\n"
    "                      and `...` as lua does (after --, they may start with -)\n"
    "  batch FILE.yaml     run the experiments of a batch file, each run a fresh\n"
    "                      process, in parallel; print a summary; exit 1 when an\n"
    "                      expectation is not met\n"
    "  report DIR...       summarise the runs.jsonl of one or more batches\n"
    "                      (shards of one batch, other machines)\n"
    "  explore SCRIPT      run the script under --sim seed after seed until a run\n"
    "                      fails (error, deadlock, --check false) or --runs pass;\n"
    "                      print the outcomes, the first failure's shrunk schedule\n"
    "                      and the command that replays it\n"
    "  timeline FILE.json  draw a trace (of run --trace) as swimlanes: one lane\n"
    "                      per thread, time across, in 80 columns (--width N)\n"
    "options of run:\n"
    "  -p KEY=VALUE        a parameter, in concur.params (numbers and booleans\n"
    "                      are converted); may be repeated\n"
    "  --config FILE       settings to use instead of config/concur.yaml\n"
    "  --time-scale X      multiply every sleep and timeout by X (X > 0)\n"
    "  --timeout S         end the run after S seconds (limits.run_timeout)\n"
    "  --metrics FILE      append what concur.report records, as JSON lines\n"
    "                      (default: $CONCUR_METRICS, set by concur batch)\n"
    "  --strict-locks      a lock-order warning (locks taken in both orders)\n"
    "                      fails the run: exit 1\n"
    "  --trace FILE        write what every thread of the run did, and when,\n"
    "                      as Chrome trace-event JSON (open it in Perfetto)\n"
    "  --sim               be the scheduler: one thread of the run runs at a time,\n"
    "                      picked at every operation by a seeded strategy; sleeps\n"
    "                      and timeouts are virtual; the same seed gives the same run\n"
    "  --seed N            the schedule's seed (0)\n"
    "  --strategy S        random (default), pct (priorities; --depth D), first\n"
    "  --replay SCHEDULE   run the schedule a failed --sim run printed\n"
    "  --quantum K         Lua instructions between two scheduling points (1000)\n"
    "  --steps N           pct: about how many decisions the run makes (2000);\n"
    "                      its change points fall among them\n"
    "  --timeline          after the run, draw its trace as swimlanes (as\n"
    "                      concur timeline does), in --width N columns\n"
    "exit status: 0 ok, 1 script error (or a lock-order warning with\n"
    "             --strict-locks), 2 usage or config error, 3 deadlock,\n"
    "             4 timeout, 130 interrupted (Ctrl-C)\n";

static int bad(const char *fmt, const char *arg) {
  fprintf(stderr, "concur: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", usage);
  return EXIT_USAGE;
}

/* A number >= 0 for opt; what it accepts is `what`. */
static int number_arg(const char *opt, const char *what, const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || v < 0 || v != v || isinf(v)) {
    fprintf(stderr, "concur: %s takes %s, not '%s'\n", opt, what, s);
    return -1;
  }
  *out = v;
  return 0;
}

/* Fills o from the arguments of `run` (argv[0] is "run"); 0 or an exit
 * code. The first argument that is not an option is the script; the
 * others are its own, and so is everything after "--". */
static int parse_run(int argc, char **argv, run_opts *o) {
  const char *config = NULL;
  double time_scale = -1, timeout = -1;
  int script_at = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--")) {
      if (script_at < 0 && i + 1 < argc)
        script_at = ++i;
      while (++i < argc)
        o->args[o->nargs++] = argv[i];
      break;
    } else if (!strcmp(a, "-p")) {
      if (!more || !strchr(argv[i + 1], '=') || argv[i + 1][0] == '=')
        return bad("-p takes KEY=VALUE%s", "");
      o->params[o->nparams++] = argv[++i];
    } else if (!strncmp(a, "-p", 2) && strchr(a, '=')) {
      o->params[o->nparams++] = a + 2;
    } else if (!strcmp(a, "--config")) {
      if (!more)
        return bad("--config takes a file%s", "");
      config = argv[++i];
    } else if (!strcmp(a, "--time-scale")) {
      if (!more)
        return bad("--time-scale takes a factor%s", "");
      const char *what = "a factor greater than 0 (0.01 runs sleeps 100 times faster)";
      if (number_arg(a, what, argv[++i], &time_scale) || time_scale == 0) {
        if (time_scale == 0)
          fprintf(stderr, "concur: --time-scale takes %s, not '0'\n", what);
        return EXIT_USAGE;
      }
    } else if (!strcmp(a, "--timeout")) {
      if (!more)
        return bad("--timeout takes seconds%s", "");
      if (number_arg(a, "seconds, 0 or more (0: no limit)", argv[++i], &timeout))
        return EXIT_USAGE;
    } else if (!strcmp(a, "--strict-locks")) {
      o->strict_locks = 1;
    } else if (!strcmp(a, "--trace")) {
      if (!more)
        return bad("--trace takes a file%s", "");
      o->trace = argv[++i];
    } else if (!strcmp(a, "--timeline")) {
      o->timeline = 1;
    } else if (!strcmp(a, "--width")) {
      if (!more)
        return bad("--width takes a number of columns%s", "");
      o->width = argv[++i];
    } else if (!strcmp(a, "--sim")) {
      o->sim = 1;
    } else if (!strcmp(a, "--seed") || !strcmp(a, "--depth") || !strcmp(a, "--quantum") ||
               !strcmp(a, "--steps")) {
      double v;
      if (!more)
        return bad("%s takes a whole number", a);
      if (number_arg(a, "a whole number, 0 or more", argv[++i], &v))
        return EXIT_USAGE;
      if (v != floor(v) || v > 1.8e19)
        return bad("%s takes a whole number", a);
      if (a[2] == 's' && a[3] == 'e')
        o->seed = v;
      else if (a[2] == 's')
        o->steps = (long long)v;
      else if (a[2] == 'd')
        o->depth = (int)(v > 16 ? 16 : v);
      else
        o->quantum = (int)(v > 1e6 ? 1e6 : v);
      o->sim = 1;
    } else if (!strcmp(a, "--strategy")) {
      if (!more || cc_sched_strategy(argv[i + 1]) < 0)
        return bad("--strategy takes random, pct, replay or first%s", "");
      o->strategy = cc_sched_strategy(argv[++i]);
      o->sim = 1;
    } else if (!strcmp(a, "--replay")) {
      if (!more)
        return bad("--replay takes a schedule (as a failed run under --sim prints it)%s", "");
      o->replay = argv[++i];
      o->strategy = CC_SCHED_REPLAY;
      o->sim = 1;
    } else if (!strcmp(a, "--metrics")) {
      if (!more)
        return bad("--metrics takes a file%s", "");
      o->metrics = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      return bad("unknown option '%s' (an argument of the script that starts with '-' "
                 "goes after --)", a);
    } else if (script_at < 0) {
      script_at = i;
    } else {
      o->args[o->nargs++] = a;
    }
  }
  if (script_at < 0)
    return bad("run needs a script%s", "");
  if (o->replay)
    o->strategy = CC_SCHED_REPLAY; /* whatever --strategy came after it */
  if (o->width && !o->timeline)
    return bad("--width is the width of --timeline's chart: give --timeline too%s", "");
  o->script = argv[script_at];
  o->script_at = script_at;
  if (!o->metrics)
    o->metrics = getenv("CONCUR_METRICS");
  char err[512];
  if (!config && access("config/concur.yaml", F_OK) == 0)
    config = "config/concur.yaml";
  if (config && host_config_load(&o->cfg, config, err, sizeof err)) {
    fprintf(stderr, "concur: %s\n", err);
    return EXIT_USAGE;
  }
  if (time_scale > 0)
    o->cfg.time_scale = time_scale;
  if (timeout >= 0)
    o->cfg.run_timeout = timeout;
  struct stat st;
  const char *why = access(o->script, R_OK) != 0 || stat(o->script, &st) != 0
                        ? strerror(errno)
                    : S_ISDIR(st.st_mode) ? "it is a directory"
                                          : NULL;
  if (why) {
    fprintf(stderr, "concur: cannot read the script '%s': %s\n", o->script, why);
    return EXIT_USAGE;
  }
  return 0;
}

static int cmd_run(int argc, char **argv) {
  run_opts o;
  memset(&o, 0, sizeof o);
  cc_config_defaults(&o.cfg);
  o.params = calloc((size_t)argc + 1, sizeof *o.params);
  o.args = calloc((size_t)argc + 1, sizeof *o.args);
  if (!o.params || !o.args)
    return EXIT_USAGE;
  o.argv = argv;
  o.quantum = -1;
  int r = parse_run(argc, argv, &o);
  if (r == 0)
    r = host_run(&o);
  free(o.params);
  free(o.args);
  return r;
}

int main(int argc, char **argv) {
  if (argc < 2)
    return bad("a command is needed%s", "");
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    fputs(usage, stdout);
    fputs("\n", stdout);
    fputs(help, stdout);
    return EXIT_OK;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("concur %s\n", CONCUR_VERSION);
    return EXIT_OK;
  }
  if (!strcmp(argv[1], "run"))
    return cmd_run(argc - 1, argv + 1);
  if (!strcmp(argv[1], "batch") || !strcmp(argv[1], "report") || !strcmp(argv[1], "explore"))
    return host_batch(argc - 1, argv + 1);
  if (!strcmp(argv[1], "timeline"))
    return host_timeline(argc - 1, argv + 1);
  return bad("unknown command '%s' (try concur --help)", argv[1]);
}
