/* error - error codes of the concur core and their messages */
#ifndef CONCUR_ERROR_H
#define CONCUR_ERROR_H

/* One table: code, Lua error kind, message. Core calls return 0 or a negative
 * CC_E* code; the bindings map the kind to a concur error object. */
#define CC_ERRNO_MAP(X)                                                        \
  X(EMPTY, "Empty", "queue is empty")                                          \
  X(FULL, "Full", "queue is full")                                             \
  X(EOF, "EOF", "end of file")                                                 \
  X(TIMEDOUT, "Timeout", "timed out")                                          \
  X(BROKEN, "BrokenBarrier", "barrier is broken")                              \
  X(OWNERDEAD, "OwnerDied", "the previous owner died holding it")              \
  X(VALUE, "ValueError", "invalid value")                                      \
  X(PROC, "ProcessError", "process error")                                     \
  X(REMOTE, "RemoteError", "remote call failed")                               \
  X(LOST, "WorkerLost", "worker lost")                                         \
  X(ARENAFULL, "ArenaFull", "arena is full")                                   \
  X(CLOSED, "Closed", "object is closed")                                      \
  X(UNSENDABLE, "Unsendable", "value cannot be sent")                          \
  X(CONFIG, "ConfigError", "bad configuration")                                \
  X(INTR, "Interrupted", "interrupted")                                        \
  X(NOTOWNER, "ValueError", "not owned by the caller")                         \
  X(LIMIT, "ProcessError", "too many processes")                               \
  X(SYS, "OSError", "system call failed")                                      \
  X(DEADLK, "Deadlock", "threads wait for each other forever")                 \
  X(NOMEM, "OSError", "not enough memory")                                     \
  X(TORN, "EOF", "a writer died in the middle of a message")            \
  X(TOOLONG, "OSError", "a message is longer than maxlength")                  \
  X(CORRUPT, "ValueError", "corrupt message")                                  \
  X(EXIT, "SystemExit", "the process exits")

enum cc__err_index {
  CC__I_NONE,
#define CC__ERR_INDEX(name, kind, msg) CC__I_##name,
  CC_ERRNO_MAP(CC__ERR_INDEX)
#undef CC__ERR_INDEX
  CC__I_COUNT
};

/* The codes themselves: CC_OK and the negatives CC_EEMPTY, CC_EFULL, ... */
typedef enum cc_err {
  CC_OK = 0,
#define CC__ERR_CODE(name, kind, msg) CC_E##name = -CC__I_##name,
  CC_ERRNO_MAP(CC__ERR_CODE)
#undef CC__ERR_CODE
} cc_err;

/* The message of a code (0 or negative); never NULL. */
const char *cc_strerror(int err);
/* The Lua error kind of a code ("Timeout", ...); never NULL. */
const char *cc_errkind(int err);

#endif
