/* lconcur - what the Lua bindings share: errors, deadlines, object wrappers */
#ifndef CONCUR_LCONCUR_H
#define CONCUR_LCONCUR_H

#include "concur.h"
#include "concur/arena.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

/* Raises the concur error object {kind=, message=, traceback=} of a code
 * of the one error table (its kind), with a message of its own or the
 * code's message when fmt is NULL. */
int cc__lraise_code(lua_State *L, int err, const char *fmt, ...);
/* Pushes the error object of a code (not raised). */
void cc__lpush_error(lua_State *L, int err, const char *msg);

/* The private table: what the module's embedded Lua chunks (and its tests,
 * through require "concur.private") use of C, and nobody else; never a
 * field of the public concur table. cc__lpush_private pushes it (made on
 * first use); cc__lset_private pops the value on the top into its field
 * `name`; cc__lprivate_funcs sets functions there. */
void cc__lpush_private(lua_State *L);
void cc__lset_private(lua_State *L, const char *name);
void cc__lprivate_funcs(lua_State *L, const luaL_Reg *funcs);

/* The deadline of an optional timeout argument in seconds (nil: none),
 * scaled by time_scale, or of a {timeout = s} table in its place (lobj.c).
 * Negative timeouts, and anything but a number, are refused. */
int64_t cc__ldeadline(lua_State *L, int idx);
double cc__ltime_scale(void);
void cc__lset_time_scale(double s);

/* Pushes a wrapper of o and records one hold of it by this process; with
 * adopt, o's creation reference becomes the hold. Raises ArenaFull. */
void cc__lpush_obj(lua_State *L, cc_obj *o, int adopt);
/* A constructor's trailing options table: its name, copied out. */
typedef struct cc_lopts {
  char name[CC_OBJ_NAME_MAX];
  size_t len; /* 0: none given */
} cc_lopts;
/* Takes a constructor's trailing options: a plain table as its last
 * argument, at most its argument #most (a table that is a positional
 * argument, such as a dict's contents, sits at a lower place). Its keys
 * must be among known (NULL-ended, "name" among them); its name is checked
 * (a string of 1 to 63 bytes) and copied into *opts, and the table is
 * dropped from the stack, so that the positional arguments parse as when it
 * is not there. Returns the table's argument number, or 0. */
int cc__ltake_options(lua_State *L, int most, const char *const *known, cc_lopts *opts);
/* Reads the name field of the options table at idx into *opts (checked as
 * cc__ltake_options does), leaving the stack as it was. */
void cc__lread_name(lua_State *L, int idx, cc_lopts *opts);
/* The known keys of options that are only a name. */
extern const char *const cc__lname_only[];
/* Gives o the name of opts, if any (raises ArenaFull). */
void cc__lname_obj(lua_State *L, cc_obj *o, const cc_lopts *opts);
/* Raises ArenaFull when o is NULL (a constructor's allocation failed). */
void *cc__lcheck_alloc(lua_State *L, void *o);
/* The object of the wrapper at idx, of the named type (NULL tname: any
 * concur object); raises for a wrong type and for a closed wrapper. */
cc_obj *cc__lcheck_obj(lua_State *L, int idx, const char *tname);
/* True when the value at idx is a userdata whose metatable has `flag` set. */
int cc__lmetaflag(lua_State *L, int idx, const char *flag);
/* The object at idx if it is a concur object wrapper of type tname, or NULL. */
cc_obj *cc__ltest_obj(lua_State *L, int idx, const char *tname);

/* A wrapper is recognised by its size and a magic number, without a look
 * into its metatable: method calls check their object on every call. It
 * keeps its object's type too, so that the check does not read the object:
 * its header shares a cache line with what other processes write (a lock
 * word, a queue's counters), and the operation itself is the one to pay
 * for bringing that line over. */
#define CC_WRAPPER_MAGIC 0x636f6e6375727772ULL
typedef struct cc_wrapper {
  uint64_t magic;
  cc_obj *o;       /* NULL once closed */
  uint32_t type;   /* o's type tag, which never changes */
  uint16_t busy;   /* calls waiting on o (cc__lbusy) */
  uint16_t closed; /* closed while busy: the last of them drops the hold */
  uint32_t spare;  /* (its name, once closed, is its uservalue 2) */
} cc_wrapper;

/* The wrapper at idx, open or closed, or NULL. */
static inline cc_wrapper *cc__lwrapper_any(lua_State *L, int idx) {
  cc_wrapper *w = lua_touserdata(L, idx);
  /* lua_rawlen is 0 for a light userdata: its pointer is never read. */
  if (!w || lua_rawlen(L, idx) != sizeof *w || w->magic != CC_WRAPPER_MAGIC)
    return NULL;
  return w;
}

/* The open wrapper at idx, or NULL. */
static inline cc_wrapper *cc__lwrapper(lua_State *L, int idx) {
  cc_wrapper *w = cc__lwrapper_any(L, idx);
  return w && w->o ? w : NULL;
}

/* The open object at idx when it is of type t1 or t2, else NULL: inline,
 * for the check_<type> of types whose methods are called in tight loops. */
static inline cc_obj *cc__ltest_type(lua_State *L, int idx, const cc_type *t1,
                                     const cc_type *t2) {
  cc_wrapper *w = cc__lwrapper(L, idx);
  if (!w)
    return NULL;
  const cc_type *t = cc_type_get(w->type);
  return t == t1 || t == t2 ? w->o : NULL;
}
/* A call that waits on the object of the wrapper at idx (which it checked)
 * marks it busy for the length of the core call, and idle after it, before
 * anything is raised: a close of the wrapper by another thread while this
 * one waits (the GIL let go) then takes effect when the last such call is
 * done, and the object outlives every wait on it. Both run with the GIL
 * held; the core call must not raise. */
static inline cc_wrapper *cc__lbusy(lua_State *L, int idx) {
  cc_wrapper *w = cc__lwrapper_any(L, idx);
  w->busy++;
  return w;
}
void cc__lidle(cc_wrapper *w, cc_obj *o);

/* Makes the metatable "concur.<tname>" with methods, meta (__gc, __close and
 * __tostring are added when missing) and __index = methods. */
void cc__lnew_class(lua_State *L, const char *tname, const luaL_Reg *methods,
                    const luaL_Reg *meta);
/* __gc and __close of every object wrapper (idempotent). */
int cc__lobj_close(lua_State *L);

/* acquire/release/hold/with, shared by Lock, RLock, Semaphore, Condition. */
typedef struct cc_acquirable {
  int (*acquire)(cc_obj *o, int64_t deadline); /* 0, or CC_E* */
  int (*release)(cc_obj *o);
} cc_acquirable;
/* Pushes a to-be-closed guard that releases o through a (acquire first). */
int cc__lhold(lua_State *L, int idx, const cc_acquirable *a);
/* obj:with(fn, ...): acquire, call, release whatever happens, return fn's
 * results or raise its error. */
int cc__lwith(lua_State *L, int idx, const cc_acquirable *a);

/* Raises "bad argument #arg to 'fn' (unknown option 'x' (did you mean
 * 'y'?))" for a key of the table at idx that is not one of known (a
 * NULL-ended list), naming the nearest or else all of them. */
void cc__lcheck_fields(lua_State *L, int idx, const char *fn, int arg,
                       const char *const *known);
/* The same for the place `level` up (luaL_where), or with fn NULL for the
 * running C function's argument #arg (luaL_argerror). */
void cc__lcheck_fields_at(lua_State *L, int idx, const char *fn, int arg,
                          const char *const *known, int level);
/* Warns on stderr that l's holder died holding it (l is of's lock). */
struct cc_lock;
void cc__lwarn_owner_died(struct cc_lock *l, const cc_obj *of);
/* The same for any object of that a holder in process `dead` died holding;
 * part follows its name ("'s lock", or ""). */
void cc__lwarn_died(const cc_obj *of, const char *part, int dead);
/* Pushes the results of acquire for a core code: true, true and
 * "owner_died", or false on a timeout; raises for anything else. */
int cc__lpush_acquired(lua_State *L, int r);
/* The deadline of (block, timeout) arguments starting at idx, or of a
 * {block = b, timeout = s} table in their place (lobj.c): 0 when block is
 * false, else the timeout's. A block that is not a boolean is refused. */
int64_t cc__lblock_deadline(lua_State *L, int idx);

/* concur.wait's protocol (lwait.c). Arena objects are waited on as their
 * cc_type's `ready` says, sockets through getfd(); a userdata of another
 * kind is waitable when its metatable's __concur_watch is a light userdata
 * pointing to a cc_lwaitable, and a Lua value when its __waitable(self)
 * returns something waitable (a Thread returns its handle). */
typedef struct cc_lwatch {
  int fd;       /* a descriptor polled for `events` (owned: closed after), or -1 */
  short events; /* POLLIN, ... (ready may change them) */
  int outside;  /* the world outside the run may make it ready: not a deadlock */
  /* Whether it is ready, with the revents of the last poll (0 before the
   * first); called between sleeps, holding the GIL, without Lua. */
  int (*ready)(struct cc_lwatch *w, short revents);
  void *p;          /* what ready looks at */
  const char *what; /* for reports: "Connection (fd 5)" */
} cc_lwatch;
typedef struct cc_lwaitable {
  const char *name; /* what it is, for the refusal that lists them: "Connection" */
  /* Fills in w for the value at idx (w->fd is -1, the rest zero, before);
   * raises when it cannot be waited on (a process not started). */
  void (*watch)(lua_State *L, int idx, cc_lwatch *w);
} cc_lwaitable;
/* A Connection's metatable (lpipe.c). */
#define CC_LCONN_MT "concur.Connection"
/* Makes the values whose metatable is at idx waitable through wt (kept). */
void cc__lwaitable(lua_State *L, int idx, const cc_lwaitable *wt);
/* lpipe.c's concur.wait of n Connections only (the table at idx), said in
 * reports as label. */
int cc__lwait_connections(lua_State *L, int idx, int n, const char *label, int64_t deadline);

/* The files of the module, in the order they open: l<name>.c adds its
 * constructors to the module at -1 in cc__open_<name>.
 * A new primitive's file is one line here. */
#define CC_LMODULE_MAP(X)                                                      \
  X(error) X(lock) X(sem) X(event) X(cond) X(barrier) X(proc) X(queue) X(pipe) \
  X(shm) X(dict) X(thread) X(runtime) X(pack) X(rwlock) X(wait)

#define CC__LOPEN_DECL(name) void cc__open_##name(lua_State *L);
CC_LMODULE_MAP(CC__LOPEN_DECL)
#undef CC__LOPEN_DECL
/* Threads: joined at the end of a process; reset in a new child. */
int cc__ljoin_threads(lua_State *L);
void cc__lthreads_after_fork(lua_State *L);
/* Before a fork: threads just made have begun, and those that have ended
 * are joined, so that none is in the middle of its start or its end
 * (holding an allocator's lock) when the child is made. */
void cc__lthreads_before_fork(void);
/* The interpreter hook's normal setting, after Ctrl-C took it over. */
void cc__lhook_restore(lua_State *L);
/* Under the scheduler (lsched.c): makes every C function of the module
 * (at idx) and of its classes a scheduling point, seeds math.random from
 * the run's seed, and sets the count hook (every `quantum` instructions;
 * 0: none). Nothing when no scheduler runs. */
void cc__lsched_open(lua_State *L, int idx, int quantum);
/* The count hook (or none, with no scheduler). */
void cc__lsched_sethook(lua_State *L);
/* In a new child: math.random from the seed and its task. 1 if done. */
int cc__lsched_seed_child(lua_State *L);

/* Under a stock lua5.4 (lend.c): enable makes the state's close end the
 * run with fn (cc_lfinish) and os.exit end the children; renew makes a new
 * sentinel that does it, newer than every handle made so far (the starts
 * of processes and threads call it; nothing under the host). */
void cc__lsentinel_enable(int (*fn)(lua_State *L));
void cc__lsentinel_renew(lua_State *L);

/* Settings and handlers that luaopen_concur installs (lruntime.c, lthread.c). */
void cc__lset_metrics_path(const char *path);
void cc__linstall_sigint(lua_State *L);
/* Ctrl-C, raised as Interrupted (lerror.c): pended by the handler (async-
 * signal-safe), taken by whoever raises it (once), and whether it was, for
 * the end of the run (exit 130); the main state loses its stopping hook
 * when it is taken. */
void cc__linterrupt_state(lua_State *L);
void cc__linterrupt_pend(void);
int cc__linterrupt_pending(void);
/* Installs handler for sig (restarting the calls it interrupts or not);
 * the handler before it goes to *prev unless prev is NULL. */
struct sigaction;
void cc__lcatch(int sig, void (*handler)(int), int restart, struct sigaction *prev);
void cc__lset_switch_interval(double seconds);

/* A view of list[first..last] (lruntime.c's P.view), which the codec sends
 * as that list, without the copy: the Pool's parts of a map. The list is
 * the userdata's user value. */
#define CC_LVIEW "concur.view"
typedef struct cc_lview {
  lua_Integer first, last;
} cc_lview;

#endif
